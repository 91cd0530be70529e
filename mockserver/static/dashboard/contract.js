// The proxy's dashboard: the Contract panel, read from GET /_mock/violations and cleared
// with DELETE /_mock/violations. With --control-token, the token comes from ?token= once
// (then this tab keeps it) or from the field in the header, and goes out as X-Mock-Token.
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const BASE = location.pathname.replace(/\/$/, ''); // /_mock
  const REFRESH_MS = 1000;
  let shown = null;

  const query = new URLSearchParams(location.search);
  if (query.has('token')) {
    sessionStorage.setItem('mockToken', query.get('token'));
    query.delete('token');
    history.replaceState(null, '', location.pathname + (query.toString() ? '?' + query : ''));
  }
  $('token').value = sessionStorage.getItem('mockToken') || '';

  async function control(method, path) {
    const headers = {};
    if ($('token').value) headers['X-Mock-Token'] = $('token').value;
    const response = await fetch(BASE + path, { method, headers });
    const json = await response.json();
    if (!response.ok) {
      throw new Error(
        json.code === 'INVALID_MOCK_TOKEN_ERROR'
          ? 'This proxy needs its control token (--control-token): enter it above.'
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
    Object.assign(node, props || {});
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function render(data) {
    $('upstream').textContent = `/api → ${data.upstream}`;
    $('contract-summary').textContent =
      `${data.count} violation(s) in ${data.exchanges} exchange(s)`;
    const json = JSON.stringify(data.items);
    if (json === shown) return;
    shown = json;
    const body = $('violations').tBodies[0];
    body.replaceChildren();
    if (!data.items.length) {
      body.append(el('tr', {}, el('td', { colSpan: 5, className: 'muted' }, 'No violations.')));
      return;
    }
    for (const item of [...data.items].reverse()) {
      const row = el(
        'tr',
        { className: 'failed' },
        el('td', {}, item.time.slice(11, 19)),
        el('td', {}, el('code', {}, item.check)),
        el(
          'td',
          {},
          el('code', {}, item.request),
          el('span', { className: 'tag' }, String(item.status)),
          el('div', { className: 'muted' }, item.rule),
        ),
        el('td', {}, el('code', {}, item.expected)),
        el(
          'td',
          {},
          el('code', {}, item.actual),
          item.curl
            ? el('details', {}, el('summary', {}, 'curl'), el('pre', {}, item.curl))
            : null,
        ),
      );
      row.dataset.check = item.check;
      body.append(row);
    }
  }

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      render(await control('GET', '/violations'));
      document.body.dataset.loaded = 'true';
      if ($('message').className === 'error') say('');
    } catch (error) {
      say(error.message, true);
    } finally {
      busy = false;
    }
  }

  $('clear-violations').addEventListener('click', async () => {
    try {
      render(await control('DELETE', '/violations'));
      say('Violations cleared.');
    } catch (error) {
      say(error.message, true);
    }
  });
  $('refresh').addEventListener('click', refresh);
  $('token').addEventListener('change', () => {
    sessionStorage.setItem('mockToken', $('token').value);
    refresh();
  });
  setInterval(() => {
    if ($('auto').checked && !document.hidden) refresh();
  }, REFRESH_MS);
  refresh();
})();
