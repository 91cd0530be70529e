// The mock's dashboard: reads and steers the mock through the control API's JSON
// endpoints only (/_mock/users, /killswitches, /clock, /ratelimits, /requests, /reset).
// With --control-token, the token comes from ?token= once (then this tab keeps it) or
// from the field in the header, and goes out as X-Mock-Token.
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const BASE = location.pathname.replace(/\/$/, ''); // /_mock
  const REFRESH_MS = 2000;
  const rendered = {}; // last JSON per panel, so unchanged panels are not redrawn

  const query = new URLSearchParams(location.search);
  if (query.has('token')) {
    sessionStorage.setItem('mockToken', query.get('token'));
    query.delete('token'); // keep it out of the address bar and the history
    history.replaceState(null, '', location.pathname + (query.toString() ? '?' + query : ''));
  }
  $('token').value = sessionStorage.getItem('mockToken') || '';

  class ControlError extends Error {}

  async function control(method, path, body) {
    const headers = {};
    const token = $('token').value;
    if (token) headers['X-Mock-Token'] = token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await response.json();
    if (!response.ok) {
      const needsToken = json.code === 'INVALID_MOCK_TOKEN_ERROR';
      throw new ControlError(
        needsToken
          ? 'This mock needs its control token (--control-token): enter it above.'
          : `${method} ${path}: ${response.status} ${json.code}: ${json.message}`,
      );
    }
    return json;
  }

  function say(text, isError) {
    $('message').textContent = text || '';
    $('message').className = isError ? 'error' : '';
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function changed(panel, data) {
    const json = JSON.stringify(data);
    if (rendered[panel] === json) return false;
    rendered[panel] = json;
    return true;
  }

  function seconds(value) {
    const s = Math.max(0, Math.round(value));
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${Math.round(s / 3600)} h`;
    return `${Math.round(s / 86400)} days`;
  }

  let clockNow = null;

  function renderClock(clock) {
    clockNow = clock.now;
    if (!changed('clock', clock)) return;
    $('clock-iso').textContent = clock.iso;
    const ahead = clock.offset >= 0 ? `${seconds(clock.offset)} ahead of` : `${seconds(-clock.offset)} behind`;
    $('clock-detail').textContent = `(${clock.frozen ? 'frozen, ' : ''}${ahead} real time)`;
    $('freeze').textContent = clock.frozen ? 'Unfreeze' : 'Freeze';
    $('freeze').dataset.frozen = String(clock.frozen);
  }

  function renderProfile(profile) {
    if (!changed('profile', profile)) return;
    const select = $('profile');
    select.replaceChildren(
      el('option', { value: '' }, 'the contract'),
      ...profile.available.map((name) => el('option', { value: name }, `deployed ${name}, bugs included`)),
    );
    select.value = profile.profile ?? '';
    select.title = profile.deviations.map((d) => `${d.decision}: ${d.service}`).join('\n');
    document.body.dataset.profile = profile.profile ?? '';
  }

  function renderSwitches(list) {
    if (!changed('switches', list)) return;
    $('killswitches').replaceChildren(
      ...list.items.map((s) => {
        const box = el('input', {
          type: 'checkbox',
          role: 'switch',
          checked: s.state,
          dataset: { switch: String(s.id) },
        });
        box.addEventListener('change', () =>
          act(() => control('PUT', `/killswitches/${s.id}`, { state: box.checked }),
            `${s.name} ${box.checked ? 'on: its operations answer 503' : 'off'}`),
        );
        return el('li', { className: s.state ? 'on' : '' },
          el('label', {}, box, ` ${s.id} ${s.name}`));
      }),
    );
  }

  function renderUsers(users) {
    if (!changed('users', users)) return;
    $('users').tBodies[0].replaceChildren(
      ...users.items.map((u) => {
        const kind = [u.staff ? 'staff' : 'user', u.banned ? 'banned' : null].filter(Boolean).join(', ');
        const sessions = u.sessions.length
          ? el('ul', { className: 'sessions' },
            ...u.sessions.map((s) => el('li', { dataset: { session: s.id } },
              el('code', {}, s.id), ` ${s.name}`,
              s.permissionFlags === null ? null : el('span', { className: 'tag' }, `scoped ${s.permissionFlags}`),
              el('span', { className: 'muted' }, clockNow ? ` expires in ${seconds(s.exp - clockNow)}` : ''))))
          : el('span', { className: 'muted' }, 'none');
        return el('tr', { dataset: { user: u.username } },
          el('td', {}, el('strong', {}, u.username)),
          el('td', {}, el('code', {}, u.id)),
          el('td', {}, kind),
          el('td', {}, u.secondFactors.join(', ') || '—'),
          el('td', {}, sessions));
      }),
    );
  }

  function renderBuckets(buckets) {
    if (!changed('ratelimits', buckets)) return;
    const rows = buckets.items.map((b) =>
      el('tr', {},
        el('td', {}, b.ip),
        el('td', {}, el('code', {}, b.route)),
        el('td', {}, b.user || 'anonymous'),
        el('td', { className: b.count >= b.limit ? 'error' : '' }, `${b.count} / ${b.limit}`),
        el('td', {}, seconds(b.reset))));
    $('ratelimits').tBodies[0].replaceChildren(
      ...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 5, className: 'muted' }, 'No buckets yet.'))]),
    );
  }

  function renderJournal(journal) {
    if (!changed('journal', journal)) return;
    const rows = journal.items.slice().reverse().map((e) => {
      const headers = e.responseHeaders || {};
      const limit = headers['RateLimit-Limit']
        ? `${headers['RateLimit-Remaining']}/${headers['RateLimit-Limit']}, resets in ${headers['RateLimit-Reset']} s` +
          (headers['RateLimit-Reason'] ? ` (${headers['RateLimit-Reason']})` : '')
        : headers['RateLimit-Skipped'] ? 'skipped' : '';
      const details = el('details', {},
        el('summary', {}, `${e.method} ${e.path}${e.query ? '?' + e.query : ''}`),
        el('pre', {}, 'request: ' + JSON.stringify(e.requestBody, null, 2) +
          '\nresponse: ' + JSON.stringify(e.responseBody, null, 2)));
      return el('tr', { className: e.status >= 400 ? 'failed' : '' },
        el('td', {}, new Date(e.time * 1000).toISOString().slice(11, 23)),
        el('td', {}, details),
        el('td', {}, e.operationId || '—'),
        el('td', { className: 'status' }, String(e.status)),
        el('td', {}, limit),
        el('td', {}, String(e.durationMs ?? '')));
    });
    $('journal').tBodies[0].replaceChildren(
      ...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 6, className: 'muted' }, 'No requests yet.'))]),
    );
  }

  let busy = false;
  let again = false; // a refresh asked for while one was running runs right after it

  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const [profile, clock, switches, users, buckets, journal] = await Promise.all([
        control('GET', '/profile'),
        control('GET', '/clock'),
        control('GET', '/killswitches'),
        control('GET', '/users'),
        control('GET', '/ratelimits'),
        control('GET', '/requests?limit=100'),
      ]);
      renderProfile(profile);
      renderClock(clock);
      renderSwitches(switches);
      renderUsers(users);
      renderBuckets(buckets);
      renderJournal(journal);
      document.body.dataset.loaded = 'true';
      if ($('message').className === 'error') say('');
    } catch (error) {
      say(error.message, true);
    } finally {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  async function act(action, done) {
    try {
      await action();
      say(done);
    } catch (error) {
      say(error.message, true);
    }
    await refresh();
  }

  for (const button of document.querySelectorAll('[data-advance]')) {
    button.addEventListener('click', () => {
      const by = Number(button.dataset.advance);
      act(() => control('POST', '/clock', { advance: by }), `Clock moved ${seconds(by)} ahead.`);
    });
  }
  $('advance').addEventListener('click', () => {
    const by = Number($('advance-by').value);
    act(() => control('POST', '/clock', { advance: by }), `Clock moved ${seconds(by)} ahead.`);
  });
  $('freeze').addEventListener('click', () => {
    const frozen = $('freeze').dataset.frozen !== 'true';
    act(() => control('POST', '/clock', { frozen }), frozen ? 'Clock frozen.' : 'Clock running.');
  });
  $('profile').addEventListener('change', () => {
    const name = $('profile').value || null;
    act(
      () => control('PUT', '/profile', { profile: name }),
      name ? `Now answering like the deployed service ${name}, bugs included.` : 'Now answering by the contract.',
    );
  });
  $('reset').addEventListener('click', () =>
    act(() => control('POST', '/reset'), 'Reset: seed users, no sessions, switches off, real time.'));
  $('clear-ratelimits').addEventListener('click', () =>
    act(() => control('DELETE', '/ratelimits'), 'Rate-limit buckets emptied.'));
  $('clear-journal').addEventListener('click', () =>
    act(() => control('DELETE', '/requests'), 'Journal cleared.'));
  $('refresh').addEventListener('click', refresh);
  $('token').addEventListener('change', () => {
    sessionStorage.setItem('mockToken', $('token').value);
    for (const key of Object.keys(rendered)) delete rendered[key];
    refresh();
  });

  setInterval(() => {
    if ($('auto').checked && !document.hidden) refresh();
  }, REFRESH_MS);
  refresh();
})();
