// A front end on its own origin that logs in, lists the user's sessions, revokes one and
// shows the RateLimit-* headers of the last response. Plain fetch, no build step.
//
// Every call carries the token in `Authorization` (as is, no "Bearer "), so the browser
// sends a CORS preflight first; the mock answers it and exposes the RateLimit-* headers.
(function () {
  'use strict';

  const RATELIMIT_HEADERS = [
    'RateLimit-Limit',
    'RateLimit-Remaining',
    'RateLimit-Reset',
    'RateLimit-Skipped',
    'RateLimit-Reason',
  ];
  const $ = (id) => document.getElementById(id);
  let token = null;
  let challengeToken = null;

  // ?api=http://127.0.0.1:8000/api points the page at another mock.
  const fromQuery = new URLSearchParams(location.search).get('api');
  if (fromQuery) $('api').value = fromQuery;

  class ApiError extends Error {
    constructor(status, body) {
      super(body.message || 'HTTP ' + status);
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, path, body) {
    const headers = {};
    if (token) headers.Authorization = token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch($('api').value.replace(/\/$/, '') + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    showRateLimit(response);
    const json = await response.json();
    const status = `${method} ${path} → ${response.status}`;
    if (!response.ok) {
      showStatus(`${status} ${json.code}: ${json.message}`, true);
      throw new ApiError(response.status, json);
    }
    showStatus(status, false);
    return json;
  }

  function showStatus(text, isError) {
    $('status').textContent = text;
    $('status').className = isError ? 'error' : '';
  }

  function showRateLimit(response) {
    const rows = RATELIMIT_HEADERS.filter((name) => response.headers.has(name)).map((name) => {
      const row = document.createElement('tr');
      row.dataset.header = name;
      for (const text of [name, response.headers.get(name)]) {
        const cell = document.createElement('td');
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    });
    $('ratelimit').tBodies[0].replaceChildren(...rows);
  }

  async function logIn(event) {
    event.preventDefault();
    const body = challengeToken
      ? { '2fa': { token: challengeToken, type: 'totp', code: $('code').value.trim() } }
      : { username: $('username').value, password: $('password').value };
    try {
      const result = await api('POST', '/login', body);
      token = result.token;
      challengeToken = null;
      $('code-row').hidden = true;
      $('login').hidden = true;
      $('signed-in').hidden = false;
      await listSessions();
    } catch (error) {
      if (error.body && error.body.code === 'SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR') {
        challengeToken = error.body.token;
        $('code-row').hidden = false;
        $('code').focus();
      }
    }
  }

  async function listSessions() {
    const current = await api('GET', '/users/me/sessions/me');
    const list = await api('GET', '/users/me/sessions?limit=50');
    $('session-count').textContent = `(${list.count})`;
    $('sessions').replaceChildren(
      ...list.items.map((session) => {
        const item = document.createElement('li');
        item.dataset.id = session.id;
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = session.name;
        item.append(name);
        if (session.id === current.id) {
          const mark = document.createElement('span');
          mark.className = 'current';
          mark.textContent = 'this browser';
          item.append(mark);
        } else {
          const revoke = document.createElement('button');
          revoke.type = 'button';
          revoke.textContent = 'Revoke';
          revoke.addEventListener('click', () => revokeSession(session.id));
          item.append(revoke);
        }
        return item;
      }),
    );
  }

  async function revokeSession(id) {
    try {
      await api('DELETE', '/users/me/sessions/' + encodeURIComponent(id));
      await listSessions();
    } catch (error) {
      // The status line already shows the error.
    }
  }

  async function logOut() {
    try {
      await api('DELETE', '/users/me/sessions/me');
    } finally {
      token = null;
      $('signed-in').hidden = true;
      $('login').hidden = false;
    }
  }

  $('login').addEventListener('submit', logIn);
  $('refresh').addEventListener('click', () => listSessions().catch(() => {}));
  $('logout').addEventListener('click', () => logOut().catch(() => {}));
})();
