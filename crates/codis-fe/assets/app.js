// codis-fe console: plain JavaScript, no framework.
//
// Hash routes: #/ (products) and #/<product>/<page>. Every page polls the dashboard
// through codis-fe (`?forward=<product>`); changes put the placeholder segment XAUTH
// where the route takes its xauth, and codis-fe fills it in from the login session.
'use strict';

const PAGES = [
  ['overview', 'Overview'], ['proxies', 'Proxies'], ['groups', 'Groups'],
  ['slots', 'Slots'], ['sentinels', 'Sentinels'], ['events', 'Events'],
];
const POLL_MS = 2000;
const COLORS = ['#3b7dd8', '#e3822f', '#34a06a', '#c94a6a', '#8a63c9', '#1aa3a8', '#b58b16', '#6b7f99',
  '#d45fb0', '#5aa02c', '#9c5b2e', '#3c4fb0'];

const state = {
  product: '', page: '', session: {}, topom: null, history: [], events: [],
  expanded: new Set(), infos: {}, timer: null, busy: false,
};

/// What the last action said in each message cell, so polling does not wipe it.
const savedMsgs = {};
const $ = (sel, el = document) => el.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const groupColor = (gid) => (gid > 0 ? COLORS[(gid - 1) % COLORS.length] : '#e9edf2');

function fmtBytes(n) {
  n = Number(n) || 0;
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}
const fmtNum = (n) => (Number(n) || 0).toLocaleString('en-US');
const fmtTime = (ms) => new Date(ms).toLocaleTimeString('en-GB');

// ---- HTTP ----------------------------------------------------------------------------

/// Calls the dashboard through codis-fe; resolves to {ok, data, error} where error is
/// the dashboard's `Cause` (or codis-fe's) as readable text.
async function api(method, path, body) {
  const sep = path.includes('?') ? '&' : '?';
  const url = path + sep + 'forward=' + encodeURIComponent(state.product);
  return call(method, url, body);
}

async function call(method, url, body) {
  let resp;
  try {
    resp = await fetch(url, {
      method, credentials: 'same-origin',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    return { ok: false, error: 'codis-fe is not reachable: ' + e.message };
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (resp.ok) return { ok: true, data };
  let error = (data && data.Cause) || (typeof data === 'string' && data) || resp.statusText;
  if (resp.status === 401 && !url.startsWith('/fe/login')) error += ' (use "Log in" at the top right)';
  else if (!(data && data.Cause)) error = 'HTTP ' + resp.status + ': ' + error;
  return { ok: false, status: resp.status, error };
}

/// Runs a change and shows its outcome in `msgEl` (next to the control that made it).
async function act(msgEl, method, path, body, okText) {
  if (msgEl) { msgEl.className = 'msg'; msgEl.textContent = 'working…'; }
  const r = await api(method, path, body);
  if (msgEl) {
    if (r.ok) { msgEl.className = 'msg ok'; msgEl.textContent = okText || 'done'; }
    else { msgEl.className = 'msg err'; msgEl.textContent = r.error; }
    if (msgEl.id) savedMsgs[msgEl.id] = { cls: msgEl.className, text: msgEl.textContent, at: Date.now() };
  }
  if (r.ok) refresh();
  return r;
}

// ---- shell: products, navigation, login -----------------------------------------------

async function loadSession() {
  const r = await call('GET', '/fe/session');
  state.session = r.ok ? r.data : {};
  const a = $('#auth');
  if (state.session.logged_in) {
    const who = state.session.all_products ? 'all products' : (state.session.products || []).join(', ');
    a.innerHTML = `<span class="who">logged in (${esc(who)})</span><button id="btn-logout">Log out</button>`;
    $('#btn-logout').onclick = async () => { await call('POST', '/fe/logout'); await loadSession(); render(); };
  } else {
    a.innerHTML = `<span class="who">read-only</span><button id="btn-login" class="primary">Log in</button>`;
    $('#btn-login').onclick = openLogin;
  }
  const b = $('#banner');
  b.textContent = state.session.logged_in || !state.product ? '' :
    'Read-only view: log in with the product\'s admin secret (or the codis-fe password) to make changes.';
}

async function loadProducts() {
  const r = await call('GET', '/list');
  const list = r.ok && Array.isArray(r.data) ? r.data : [];
  const opts = list.map((p) => `<option value="${esc(p)}">${esc(p)}</option>`).join('');
  $('#product').innerHTML = '<option value="">— product —</option>' + opts;
  $('#login-product').innerHTML = opts;
  return { list, error: r.ok ? '' : r.error };
}

function openLogin() {
  $('#login-product').value = state.product || $('#login-product').value;
  $('#login-msg').textContent = '';
  $('#login-msg').className = 'msg';
  $('#login-secret').value = '';
  $('#login').showModal();
  $('#login-secret').focus();
}

async function submitLogin(ev) {
  ev.preventDefault();
  const r = await call('POST', '/fe/login', { product: $('#login-product').value, secret: $('#login-secret').value });
  if (!r.ok) { $('#login-msg').className = 'msg err'; $('#login-msg').textContent = r.error; return; }
  $('#login').close();
  await loadSession();
  render();
}

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  return { product: parts[0] || '', page: parts[1] || 'overview' };
}

function go(product, page) { location.hash = '#/' + encodeURIComponent(product) + '/' + page; }

async function route() {
  const { product, page } = parseHash();
  const changed = product !== state.product;
  state.product = product;
  state.page = product ? page : '';
  if (changed) { state.topom = null; state.history = []; state.events = []; state.infos = {}; }
  $('#product').value = product;
  $('#nav').innerHTML = product ? PAGES.map(([id, name]) =>
    `<a href="#/${encodeURIComponent(product)}/${id}" class="${id === state.page ? 'active' : ''}" data-page="${id}">${name}</a>`).join('') : '';
  await Promise.all([loadSession(), loadProducts()]);
  $('#product').value = product;
  renderSkeleton();
  await refresh();
}

// ---- polling -----------------------------------------------------------------------------

async function refresh() {
  if (!state.product) { render(); return; }
  const p = state.product;
  const reqs = [api('GET', '/topom')];
  if (state.page === 'overview') reqs.push(call('GET', '/fe/history?forward=' + encodeURIComponent(p)));
  if (state.page === 'events' || state.page === 'overview') reqs.push(call('GET', '/fe/events?forward=' + encodeURIComponent(p)));
  if (state.page === 'proxies') {
    for (const k of state.expanded) {
      if (k.startsWith('cmd-')) {
        call('GET', `/fe/proxy-stats?forward=${encodeURIComponent(p)}&token=${encodeURIComponent(k.slice(4))}`)
          .then((r) => { state.infos[k] = r.ok ? ((r.data.ops || {}).cmd || []) : r.error; });
      }
    }
  }
  const [t, h, e] = await Promise.all(reqs);
  if (p !== state.product) return;
  state.error = t.ok ? '' : t.error;
  if (t.ok) state.topom = t.data;
  if (state.page === 'overview') { if (h && h.ok) state.history = h.data; if (e && e.ok) state.events = e.data; }
  if (state.page === 'events' && h && h.ok) state.events = h.data;
  render();
}

function schedule() {
  clearInterval(state.timer);
  state.timer = setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
}

// ---- pages -------------------------------------------------------------------------------

/// Static parts of a page (forms keep what the operator typed across refreshes).
function renderSkeleton() {
  const m = $('#main');
  const f = SKELETONS[state.page] || (() => '');
  m.innerHTML = state.product ? `<div id="load-error" class="msg"></div>` + f() : `<div id="products"></div>`;
  if (BIND[state.page]) BIND[state.page]();
}

async function render() {
  if (!state.product) {
    const r = await call('GET', '/fe/products');
    const el = $('#products');
    if (!el) return;
    const list = r.ok ? r.data : [];
    const row = (p) => {
      const n = encodeURIComponent(p.name), l = p.latest;
      return `<tr data-product="${esc(p.name)}"><td><a href="#/${n}/overview">${esc(p.name)}</a></td><td class="mono">${esc(p.dashboard)}</td>
        <td>${l ? fmtNum(l.qps) : '–'}</td><td>${l ? fmtNum(l.sessions) : '–'}</td><td>${l ? fmtBytes(l.memory) : '–'}</td><td>${l ? fmtNum(l.keys) : '–'}</td>
        <td>${PAGES.map(([id, name]) => `<a href="#/${n}/${id}">${name}</a>`).join(' · ')}</td></tr>`;
    };
    el.innerHTML = `<h2>Products</h2><div class="card products">${!r.ok ? `<div class="msg err">${esc(r.error)}</div>` :
      list.length ? `<table><tr><th>Product</th><th>Dashboard</th><th>QPS</th><th>Sessions</th><th>Memory</th><th>Keys</th><th>Pages</th></tr>${list.map(row).join('')}</table>` :
        '<p class="hint">No products yet: start a codis-dashboard on the coordinator (or add it to the dashboard list file).</p>'}</div>`;
    return;
  }
  const le = $('#load-error');
  if (le) { le.className = state.error ? 'msg err' : 'msg'; le.textContent = state.error ? 'Cannot load the dashboard: ' + state.error : ''; }
  if (!state.topom) return;
  const f = RENDER[state.page];
  if (f) f(state.topom);
  const ro = !state.session.logged_in && state.session.read_only_without_login !== false;
  for (const b of document.querySelectorAll('button[data-mut]')) b.disabled = ro;
}

const stats = () => state.topom.stats;

// Overview

function chart(title, samples, key, fmt) {
  const pts = samples.map((s) => [s.t, s[key]]);
  const cur = pts.length ? fmt(pts[pts.length - 1][1]) : '–';
  const W = 600, H = 150, P = 4;
  let path = '', area = '', axis = '';
  if (pts.length > 1) {
    const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
    const max = Math.max(1, ...pts.map((p) => p[1]));
    const x = (t) => P + (W - 2 * P) * (t - t0) / Math.max(1, t1 - t0);
    const y = (v) => H - 18 - (H - 30) * v / max;
    path = pts.map((p, i) => (i ? 'L' : 'M') + x(p[0]).toFixed(1) + ',' + y(p[1]).toFixed(1)).join('');
    area = path + `L${x(t1).toFixed(1)},${H - 18}L${x(t0).toFixed(1)},${H - 18}Z`;
    axis = `<div class="axis"><span>${fmtTime(t0)}</span><span>max ${esc(fmt(max))}</span><span>${fmtTime(t1)}</span></div>`;
  }
  return `<div class="card chart" data-chart="${key}"><h3>${title}<span class="cur">${esc(cur)}</span></h3>
    <svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none"><line x1="0" x2="${W}" y1="${H - 18}" y2="${H - 18}" stroke="#dde3ea"/>
    <path d="${area}" fill="rgba(40,100,200,.12)"/><path d="${path}" fill="none" stroke="#2864c8" stroke-width="2" vector-effect="non-scaling-stroke"/></svg>${axis}</div>`;
}

const SKELETONS = {
  overview: () => `<h2>Overview</h2><div id="ov-info" class="grid"></div><div id="ov-charts" class="grid"></div>
    <div class="card"><h3>Recent events</h3><div id="ov-events"></div></div>`,
  proxies: () => `<h2>Proxies</h2><div class="card"><div class="row"><label>Admin address <input id="proxy-addr" class="addr" placeholder="127.0.0.1:11080"></label>
    <button id="proxy-add" class="primary" data-mut>Add proxy</button></div><div id="proxy-msg" class="msg"></div></div>
    <div class="card"><div id="proxy-table"></div><div id="proxy-row-msg" class="msg"></div></div>`,
  groups: () => `<h2>Groups</h2><div class="card"><div class="row"><label>Group id <input id="group-id" class="num" type="number" min="1"></label>
    <button id="group-create" class="primary" data-mut>Create group</button>
    <span style="width:20px"></span><label>Add server <input id="server-addr" class="addr" placeholder="127.0.0.1:6379"></label>
    <label>to group <input id="server-gid" class="num" type="number" min="1"></label><label>datacenter <input id="server-dc" class="num"></label>
    <button id="server-add" class="primary" data-mut>Add server</button>
    <span style="width:20px"></span><button id="group-resync-all" data-mut>Resync all</button></div>
    <div id="group-msg" class="msg"></div></div><div id="group-list"></div>`,
  slots: () => `<h2>Slots</h2><div class="card"><h3>Slot map</h3><div id="slot-legend" class="legend"></div><div id="slot-map" class="slotmap"></div>
    <p class="hint">Each cell is one of 1024 slots, coloured by its group; striped cells are migrating or queued.</p></div>
    <div class="grid">
    <div class="card"><h3>Assign slots (no data moves)</h3><div class="row"><label>slots <input id="assign-beg" class="num" type="number" min="0" max="1023"></label>
      <label>to <input id="assign-end" class="num" type="number" min="0" max="1023"></label><label>group <input id="assign-gid" class="num" type="number" min="0"></label>
      <button id="assign-go" class="primary" data-mut>Assign</button></div>
      <p class="hint">For slots no data lives in yet (a new cluster); group 0 takes them offline. Use migrations to move slots holding data.</p><div id="assign-msg" class="msg"></div></div>
    <div class="card"><h3>Migrate</h3>
      <div class="row"><label>slots <input id="mig-beg" class="num" type="number" min="0" max="1023"></label><label>to <input id="mig-end" class="num" type="number" min="0" max="1023"></label>
        <label>→ group <input id="mig-gid" class="num" type="number" min="1"></label><button id="mig-range" class="primary" data-mut>Migrate range</button></div>
      <div class="row"><label>slot <input id="mig-slot" class="num" type="number" min="0" max="1023"></label><label>→ group <input id="mig-slot-gid" class="num" type="number" min="1"></label>
        <button id="mig-one" data-mut>Migrate slot</button></div>
      <div class="row"><label>count <input id="some-num" class="num" type="number" min="1"></label><label>from group <input id="some-src" class="num" type="number" min="1"></label>
        <label>→ group <input id="some-dst" class="num" type="number" min="1"></label><button id="mig-some" data-mut>Migrate some</button></div>
      <div id="mig-msg" class="msg"></div></div>
    <div class="card"><h3>Migration controls</h3><div id="action-status" class="kv"></div>
      <div class="row" style="margin-top:8px"><button id="mig-pause" data-mut>Pause</button><button id="mig-resume" data-mut>Resume</button>
        <label>interval µs <input id="mig-interval" class="num" type="number" min="0" max="1000000"></label><button id="mig-interval-set" data-mut>Set</button></div>
      <div class="row"><button id="rebalance-preview" data-mut>Rebalance: preview</button><button id="rebalance-confirm" class="danger" data-mut>Rebalance: apply</button></div>
      <div id="ctl-msg" class="msg"></div><div id="rebalance-plan"></div></div>
    </div>
    <div class="card"><h3>Migrations</h3><div id="mig-table"></div><div id="mig-row-msg" class="msg"></div></div>`,
  sentinels: () => `<h2>Sentinels</h2><div class="card"><div class="row"><label>Sentinel address <input id="sentinel-addr" class="addr" placeholder="127.0.0.1:26379"></label>
    <button id="sentinel-add" class="primary" data-mut>Add sentinel</button><button id="sentinel-resync" data-mut>Resync all</button></div><div id="sentinel-msg" class="msg"></div></div>
    <div class="card"><div id="sentinel-table"></div><div id="sentinel-row-msg" class="msg"></div></div>`,
  events: () => `<h2>Events</h2><div class="card"><p class="hint">Topology changes codis-fe saw while watching this product (newest first; the last 500 are kept in codis-fe's memory).</p><div id="event-table"></div></div>`,
};

const val = (id) => $('#' + id).value.trim();
const onClick = (id, f) => { const b = $('#' + id); if (b) b.onclick = f; };

const BIND = {
  proxies() {
    onClick('proxy-add', () => act($('#proxy-msg'), 'PUT', `/api/topom/proxy/create/XAUTH/${encodeURIComponent(val('proxy-addr'))}`, undefined, 'proxy added'));
    $('#proxy-table').onclick = (ev) => rowAction(ev, $('#proxy-row-msg'));
  },
  groups() {
    onClick('group-create', () => act($('#group-msg'), 'PUT', `/api/topom/group/create/XAUTH/${val('group-id')}`, undefined, `group-${val('group-id')} created`));
    onClick('server-add', () => {
      const dc = val('server-dc');
      const path = `/api/topom/group/add/XAUTH/${val('server-gid')}/${encodeURIComponent(val('server-addr'))}` + (dc ? '/' + encodeURIComponent(dc) : '');
      act($('#group-msg'), 'PUT', path, undefined, `server ${val('server-addr')} added to group-${val('server-gid')}`);
    });
    onClick('group-resync-all', () => act($('#group-msg'), 'PUT', '/api/topom/group/resync-all/XAUTH', undefined, 'all groups resynced'));
    $('#group-list').onclick = (ev) => rowAction(ev, null);
  },
  slots() {
    onClick('assign-go', () => {
      const beg = +val('assign-beg'), end = +val('assign-end'), gid = +val('assign-gid');
      const msg = $('#assign-msg');
      if (!(val('assign-beg') && val('assign-end') && beg <= end)) { msg.className = 'msg err'; msg.textContent = 'give a slot range, first ≤ last, within 0-1023'; return; }
      const body = [];
      for (let i = beg; i <= end; i++) body.push({ id: i, group_id: gid });
      act(msg, 'PUT', '/api/topom/slots/assign/XAUTH', body, `slots ${beg}-${end} assigned to group-${gid}`);
    });
    onClick('mig-range', () => act($('#mig-msg'), 'PUT', `/api/topom/slots/action/create-range/XAUTH/${val('mig-beg')}/${val('mig-end')}/${val('mig-gid')}`, undefined, 'migration queued'));
    onClick('mig-one', () => act($('#mig-msg'), 'PUT', `/api/topom/slots/action/create/XAUTH/${val('mig-slot')}/${val('mig-slot-gid')}`, undefined, 'migration queued'));
    onClick('mig-some', () => act($('#mig-msg'), 'PUT', `/api/topom/slots/action/create-some/XAUTH/${val('some-src')}/${val('some-dst')}/${val('some-num')}`, undefined, 'migrations queued'));
    onClick('mig-pause', () => act($('#ctl-msg'), 'PUT', '/api/topom/slots/action/disabled/XAUTH/1', undefined, 'migrations paused'));
    onClick('mig-resume', () => act($('#ctl-msg'), 'PUT', '/api/topom/slots/action/disabled/XAUTH/0', undefined, 'migrations resumed'));
    onClick('mig-interval-set', () => act($('#ctl-msg'), 'PUT', `/api/topom/slots/action/interval/XAUTH/${val('mig-interval')}`, undefined, 'interval set'));
    onClick('rebalance-preview', () => rebalance(false));
    onClick('rebalance-confirm', () => {
      if (confirm('Apply the rebalance plan? Slots will migrate between groups.')) rebalance(true);
    });
    $('#mig-table').onclick = (ev) => rowAction(ev, $('#mig-row-msg'));
  },
  sentinels() {
    onClick('sentinel-add', () => act($('#sentinel-msg'), 'PUT', `/api/topom/sentinels/add/XAUTH/${encodeURIComponent(val('sentinel-addr'))}`, undefined, 'sentinel added'));
    onClick('sentinel-resync', () => act($('#sentinel-msg'), 'PUT', '/api/topom/sentinels/resync-all/XAUTH', undefined, 'sentinels resynced'));
    $('#sentinel-table').onclick = (ev) => rowAction(ev, $('#sentinel-row-msg'));
  },
};

async function rebalance(confirmIt) {
  const msg = $('#ctl-msg');
  const r = await act(msg, 'PUT', `/api/topom/slots/rebalance/XAUTH/${confirmIt ? 1 : 0}`, undefined, confirmIt ? 'rebalance queued' : 'plan below (nothing changed yet)');
  const el = $('#rebalance-plan');
  if (!r.ok) { el.innerHTML = ''; return; }
  const plan = r.data || {};
  const moves = {};
  for (const [sid, gid] of Object.entries(plan)) (moves[gid] = moves[gid] || []).push(+sid);
  const rows = Object.entries(moves).map(([gid, sids]) => `<tr><td>group-${esc(gid)}</td><td>${sids.length}</td><td class="mono">${esc(ranges(sids.sort((a, b) => a - b)))}</td></tr>`).join('');
  el.innerHTML = rows ? `<table><tr><th>To</th><th>Slots</th><th>Which</th></tr>${rows}</table>` : '<p class="hint">Already balanced: nothing to move.</p>';
}

function ranges(ids) {
  const out = [];
  for (let i = 0; i < ids.length; i++) {
    let j = i;
    while (j + 1 < ids.length && ids[j + 1] === ids[j] + 1) j++;
    out.push(i === j ? String(ids[i]) : ids[i] + '-' + ids[j]);
    i = j;
  }
  return out.join(', ');
}

/// Buttons inside tables carry data-act and data-path; the message goes next to
/// the row's own message cell when there is one.
async function rowAction(ev, msgEl) {
  const b = ev.target.closest('button[data-act]');
  if (!b) return;
  const kind = b.dataset.act;
  const target = b.dataset.msg ? document.getElementById(b.dataset.msg) : msgEl;
  if (kind === 'toggle') {
    const k = b.dataset.key;
    if (state.expanded.has(k)) state.expanded.delete(k); else state.expanded.add(k);
    refresh();
    return;
  }
  if (kind === 'info') {
    const r = await api('GET', b.dataset.path);
    state.infos[b.dataset.key] = !r.ok ? 'error: ' + r.error : r.data && typeof r.data === 'object' && !Array.isArray(r.data)
      ? Object.entries(r.data).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join('\n')
      : JSON.stringify(r.data, null, 2);
    state.expanded.add(b.dataset.key);
    render();
    return;
  }
  if (b.dataset.confirm && !confirm(b.dataset.confirm)) return;
  await act(target, 'PUT', b.dataset.path, undefined, b.dataset.ok || 'done');
}

const btn = (label, path, opts = {}) =>
  `<button data-act="${opts.act || 'put'}" data-mut ${path ? `data-path="${esc(path)}"` : ''} ${opts.key ? `data-key="${esc(opts.key)}"` : ''} ${opts.msg ? `data-msg="${esc(opts.msg)}"` : ''} ${opts.ok ? `data-ok="${esc(opts.ok)}"` : ''} ${opts.confirm ? `data-confirm="${esc(opts.confirm)}"` : ''} class="${opts.cls || ''}" ${opts.id ? `id="${esc(opts.id)}"` : ''}>${label}</button>`;
const viewBtn = (label, path, key, id) =>
  `<button data-act="${path ? 'info' : 'toggle'}" ${path ? `data-path="${esc(path)}"` : ''} data-key="${esc(key)}" ${id ? `id="${esc(id)}"` : ''}>${label}</button>`;

function keysOf(info) {
  let n = 0;
  for (const [k, v] of Object.entries(info || {})) {
    const m = /^db\d+$/.test(k) && /keys=(\d+)/.exec(v);
    if (m) n += +m[1];
  }
  return n;
}

const RENDER = {
  overview(t) {
    const s = t.stats, c = t.config || {};
    const servers = s.group.models.reduce((n, g) => n + g.servers.length, 0);
    const assigned = s.slots.filter((m) => m.group_id > 0).length;
    const migrating = s.slots.filter((m) => m.action && m.action.state).length;
    const last = state.history[state.history.length - 1] || {};
    $('#ov-info').innerHTML = `<div class="card"><h3>Product</h3><dl class="kv">
        <dt>product</dt><dd id="ov-product">${esc(t.model.product_name)}</dd><dt>dashboard</dt><dd>${esc(t.model.admin_addr)}</dd>
        <dt>coordinator</dt><dd>${esc(c.coordinator_name)} ${esc(c.coordinator_addr)}</dd><dt>version</dt><dd>${esc(t.version)}</dd>
        <dt>started</dt><dd>${esc(t.model.start_time)}</dd></dl></div>
      <div class="card"><h3>Cluster</h3><div class="grid" style="grid-template-columns:repeat(3,1fr);gap:8px">
        <div><div class="stat" id="ov-groups">${s.group.models.length}</div><small class="hint">groups</small></div>
        <div><div class="stat">${servers}</div><small class="hint">servers</small></div>
        <div><div class="stat">${s.proxy.models.length}</div><small class="hint">proxies</small></div>
        <div><div class="stat">${assigned}<small>/1024</small></div><small class="hint">slots assigned</small></div>
        <div><div class="stat">${migrating}</div><small class="hint">slots migrating</small></div>
        <div><div class="stat">${s.slot_action.disabled ? '<span class="badge warn">paused</span>' : '<span class="badge ok">on</span>'}</div><small class="hint">migrations</small></div>
      </div></div>
      <div class="card"><h3>Now</h3><dl class="kv"><dt>QPS</dt><dd>${fmtNum(last.qps)}</dd><dt>sessions</dt><dd>${fmtNum(last.sessions)}</dd>
        <dt>memory</dt><dd>${fmtBytes(last.memory)}</dd><dt>keys</dt><dd>${fmtNum(last.keys)}</dd><dt>history</dt><dd>${state.history.length} samples</dd></dl></div>`;
    const h = state.history;
    $('#ov-charts').innerHTML = chart('QPS', h, 'qps', fmtNum) + chart('Sessions', h, 'sessions', fmtNum) +
      chart('Memory', h, 'memory', fmtBytes) + chart('Keys', h, 'keys', fmtNum);
    $('#ov-events').innerHTML = eventTable(state.events.slice(0, 8));
  },

  proxies(t) {
    const s = t.stats.proxy;
    const rows = s.models.map((p) => {
      const st = s.stats[p.token] || {};
      const ps = st.stats || {};
      const status = st.error ? `<span class="badge bad" title="${esc(st.error.Cause)}">error</span>` : st.timeout ? '<span class="badge bad">timeout</span>'
        : ps.online ? '<span class="badge ok">online</span>' : '<span class="badge warn">offline</span>';
      const ops = ps.ops || {}, ses = ps.sessions || {};
      const key = 'cmd-' + p.token, mid = 'pmsg-' + p.id;
      let sub = '';
      if (state.expanded.has(key)) {
        const got = state.infos[key];
        const cmds = Array.isArray(got) ? got.slice().sort((a, b) => b.calls - a.calls) : [];
        sub = `<tr class="sub"><td colspan="10">${typeof got === 'string' ? `<div class="msg err">${esc(got)}</div>` : got === undefined ? '<span class="hint">loading…</span>' : cmds.length ? `<table><tr><th>Command</th><th>Calls</th><th>µs/call</th><th>Fails</th><th>Redis errors</th></tr>${cmds.map((c) => `<tr><td class="mono">${esc(c.opstr)}</td><td>${fmtNum(c.calls)}</td><td>${fmtNum(c.usecs_percall)}</td><td>${fmtNum(c.fails)}</td><td>${fmtNum(c.redis_errtype)}</td></tr>`).join('')}</table>` : '<span class="hint">No commands yet.</span>'}</td></tr>`;
      }
      return `<tr data-proxy="${esc(p.admin_addr)}"><td>${p.id}</td><td class="mono">${esc(p.proxy_addr)}</td><td class="mono">${esc(p.admin_addr)}</td><td>${esc(p.datacenter)}</td>
        <td>${status}</td><td>${fmtNum(ses.alive)} / ${fmtNum(ses.total)}</td><td>${fmtNum(ops.total)}</td><td>${fmtNum(ops.fails)}</td><td>${fmtNum(ops.qps)}</td>
        <td>${viewBtn('Commands', '', key)} ${btn('Reinit', `/api/topom/proxy/reinit/XAUTH/${p.token}`, { msg: mid, ok: 'reinitialized' })}
        ${btn('Remove', `/api/topom/proxy/remove/XAUTH/${p.token}/0`, { msg: mid, cls: 'danger', confirm: `Remove proxy ${p.admin_addr}?`, ok: 'removed' })}
        ${btn('Force remove', `/api/topom/proxy/remove/XAUTH/${p.token}/1`, { msg: mid, cls: 'danger', confirm: `Force-remove proxy ${p.admin_addr} (even if unreachable)?`, ok: 'removed' })}
        <div id="${mid}" class="msg"></div></td></tr>${sub}`;
    }).join('');
    $('#proxy-table').innerHTML = s.models.length ? `<table><tr><th>Id</th><th>Proxy</th><th>Admin</th><th>DC</th><th>Status</th><th>Sessions alive/total</th><th>Commands</th><th>Fails</th><th>QPS</th><th></th></tr>${rows}</table>`
      : '<p class="hint">No proxies: start codis-proxy with --dashboard, or add its admin address above.</p>';
    keepMessages('#proxy-table');
  },

  groups(t) {
    const g = t.stats.group;
    const html = g.models.map((grp) => {
      const st = g.states[grp.id] || {};
      const health = !grp.servers.length ? '<span class="badge">empty</span>' : st.consistent ? '<span class="badge ok">in sync</span>'
        : `<span class="badge warn">${esc(st.master_status === 'up' ? 'replicas not in sync' : 'master ' + (st.master_status || 'unknown'))}</span>`;
      const promoting = grp.promoting && grp.promoting.state ? `<span class="badge warn">promoting (${esc(grp.promoting.state)})</span>` : '';
      const oos = grp.out_of_sync ? '<span class="badge bad">out of sync</span>' : '';
      const gm = 'gmsg-' + grp.id;
      const rows = grp.servers.map((srv, i) => {
        const rs = g.stats[srv.server] || {};
        const info = rs.stats || {};
        const rep = (st.replicas || []).find((r) => r.addr === srv.server) || {};
        const role = i === 0 ? '<span class="badge master">master</span>' : '<span class="badge">replica</span>';
        const up = rs.error ? `<span class="badge bad" title="${esc(rs.error.Cause)}">down</span>` :
          i === 0 ? (st.master_status === 'up' ? '<span class="badge ok">up</span>' : `<span class="badge warn">${esc(st.master_status || '?')}</span>`) :
            rep.link === 'up' ? '<span class="badge ok">link up</span>' : `<span class="badge bad">link ${esc(rep.link || '?')}</span>`;
        const lag = i === 0 ? '' : rep.lag_bytes != null ? fmtBytes(rep.lag_bytes) + (rep.last_io_seconds != null ? ` · ${rep.last_io_seconds}s` : '') : '–';
        const mode = g.modes[srv.server] || '';
        const key = 'info-' + srv.server;
        const sub = state.expanded.has(key) && state.infos[key] ? `<tr class="sub"><td colspan="9"><pre class="info">${esc(state.infos[key])}</pre> ${viewBtn('Hide', '', key)}</td></tr>` : '';
        return `<tr data-server="${esc(srv.server)}"><td>${role}</td><td class="mono">${esc(srv.server)}</td><td>${esc(srv.datacenter)}</td><td>${up}</td><td>${lag}</td>
          <td>${info.used_memory ? fmtBytes(info.used_memory) : '–'}</td><td>${fmtNum(keysOf(info))}</td><td class="hint">${esc(mode)}</td>
          <td>${viewBtn('Info', `/api/topom/group/info/${srv.server}`, key)}
          ${i > 0 ? btn('Sync', `/api/topom/group/action/create/XAUTH/${srv.server}`, { msg: gm, ok: `${srv.server} will replicate the master` }) : ''}
          ${btn(srv.replica_group ? 'Replica reads: on' : 'Replica reads: off', `/api/topom/group/replica-groups/XAUTH/${grp.id}/${srv.server}/${srv.replica_group ? 0 : 1}`, { msg: gm, ok: srv.replica_group ? `${srv.server} no longer serves reads` : `${srv.server} serves reads for its slots (replica groups)` })}
          ${i > 0 ? btn('Promote', `/api/topom/group/promote/XAUTH/${grp.id}/${srv.server}`, { msg: gm, ok: `${srv.server} promoted`, confirm: `Promote ${srv.server} to master of group-${grp.id}?` }) : ''}
          ${btn('Remove', `/api/topom/group/del/XAUTH/${grp.id}/${srv.server}`, { msg: gm, cls: 'danger', ok: 'removed', confirm: `Remove ${srv.server} from group-${grp.id}?` })}</td></tr>${sub}`;
      }).join('');
      const slots = t.stats.slots.filter((m) => m.group_id === grp.id).length;
      return `<div class="card group-card" data-group="${grp.id}"><h3><i style="display:inline-block;width:12px;height:12px;border-radius:2px;background:${groupColor(grp.id)}"></i>group-${grp.id}
        ${health} ${promoting} ${oos}<span class="hint">${slots} slots</span><span class="spacer"></span>
        ${btn('Resync', `/api/topom/group/resync/XAUTH/${grp.id}`, { msg: gm, ok: 'resynced' })}
        ${btn('Remove group', `/api/topom/group/remove/XAUTH/${grp.id}`, { msg: gm, cls: 'danger', ok: 'removed', confirm: `Remove group-${grp.id}?` })}</h3>
        ${grp.servers.length ? `<table><tr><th>Role</th><th>Server</th><th>DC</th><th>Status</th><th>Lag</th><th>Memory</th><th>Keys</th><th>Migration</th><th></th></tr>${rows}</table>` : '<p class="hint">No servers yet: add one above; the first one is the master.</p>'}
        ${st.last_failover ? `<p class="hint">last switch: ${esc(st.last_failover.kind)} of ${esc(st.last_failover.from)} to ${esc(st.last_failover.to)}${st.last_failover.switched_at ? ' at ' + esc(new Date(st.last_failover.switched_at).toLocaleString('en-GB')) : ''}</p>` : ''}<div id="${gm}" class="msg"></div></div>`;
    }).join('');
    $('#group-list').innerHTML = html || '<div class="card hint">No groups yet: create one above.</div>';
    keepMessages('#group-list');
  },

  slots(t) {
    const s = t.stats;
    const counts = {};
    const cells = s.slots.map((m) => {
      counts[m.group_id] = (counts[m.group_id] || 0) + 1;
      const mig = m.action && m.action.state;
      const title = `slot ${m.id} · group ${m.group_id || 'none'}` + (mig ? ` · ${m.action.state} → group ${m.action.target_id}` : '');
      return `<div style="background-color:${groupColor(m.group_id)}" class="${mig ? 'mig' : ''}" title="${title}"></div>`;
    });
    $('#slot-map').innerHTML = cells.join('');
    $('#slot-legend').innerHTML = Object.keys(counts).sort((a, b) => a - b).map((g) =>
      `<span data-legend="${g}"><i style="background:${groupColor(+g)}"></i>${+g ? 'group-' + g : 'offline'}: ${counts[g]}</span>`).join('');
    const a = s.slot_action;
    $('#action-status').innerHTML = `<dt>state</dt><dd id="mig-state">${a.disabled ? '<span class="badge warn">paused</span>' : '<span class="badge ok">running</span>'}</dd>
      <dt>interval</dt><dd>${fmtNum(a.interval)} µs</dd><dt>executors</dt><dd>${a.executor}</dd><dt>last step</dt><dd>${esc(a.progress.status || '–')}</dd>`;
    const prog = {};
    for (const p of a.progress.slots || []) prog[p.slot] = p;
    const pending = s.slots.filter((m) => m.action && m.action.state && !prog[m.id]);
    const all = Object.values(prog).sort((x, y) => (x.finished_at ? 1 : 0) - (y.finished_at ? 1 : 0) || x.slot - y.slot);
    const rows = all.map((p) => {
      const done = p.state === 'finished' || p.finished_at;
      const total = p.remaining == null ? null : p.moved + p.remaining;
      const pct = done ? 100 : total ? Math.floor(100 * p.moved / total) : 0;
      const label = done ? `done · ${fmtNum(p.moved)} keys` : p.error ? 'error' : !p.started ? 'queued'
        : pct === 100 ? `completing · ${fmtNum(p.moved)} keys` : `${pct}% · ${fmtNum(p.moved)} keys`;
      return `<tr data-slot="${p.slot}"><td>${p.slot}</td><td>group-${p.from} → group-${p.to}</td><td>${esc(p.state)}</td>
        <td><div class="bar ${done ? 'done' : p.error ? 'err' : ''}" data-pct="${pct}"><i style="width:${pct}%"></i><b>${label}</b></div></td>
        <td>${p.keys_per_sec ? fmtNum(Math.round(p.keys_per_sec)) + '/s' : ''}</td><td>${p.elapsed_ms >= 1000 ? (p.elapsed_ms / 1000).toFixed(1) + ' s' : p.elapsed_ms ? p.elapsed_ms + ' ms' : p.started ? '<1 ms' : ''}</td>
        <td>${p.error ? `<div class="msg err">${esc(p.error)}</div>` : ''}</td></tr>`;
    });
    const prow = pending.map((m) => `<tr data-slot="${m.id}"><td>${m.id}</td><td>group-${m.group_id} → group-${m.action.target_id}</td><td>${esc(m.action.state)}</td>
      <td><div class="bar" data-pct="0"><i style="width:0"></i><b>${m.action.state === 'pending' ? 'queued' : esc(m.action.state)}</b></div></td><td></td><td></td>
      <td>${m.action.state === 'pending' ? btn('Cancel', `/api/topom/slots/action/remove/XAUTH/${m.id}`, { ok: 'cancelled' }) : ''}</td></tr>`);
    const nDone = all.filter((p) => p.state === 'finished' || p.finished_at).length;
    const nTotal = all.length + pending.length;
    const pctAll = nTotal ? Math.floor(100 * nDone / nTotal) : 0;
    const summary = nTotal ? `<div class="row"><span>${nDone} of ${nTotal} slots done · ${all.length - nDone} in progress · ${pending.length} queued</span>
      <div class="bar ${nDone === nTotal ? 'done' : ''}" id="mig-overall" data-pct="${pctAll}" style="flex:1"><i style="width:${pctAll}%"></i><b>${pctAll}%</b></div></div>` : '';
    $('#mig-table').innerHTML = summary + (rows.length || prow.length ? `<div class="scroll"><table><tr><th>Slot</th><th>Move</th><th>State</th><th>Progress</th><th>Speed</th><th>Elapsed</th><th></th></tr>${rows.join('')}${prow.join('')}</table></div>`
      : '<p class="hint">No migrations in the last 10 minutes.</p>');
  },

  sentinels(t) {
    const s = t.stats.sentinels;
    const rows = (s.model.servers || []).map((addr, i) => {
      const st = s.stats[addr];
      const status = !st ? '<span class="badge">not polled</span>' : st.error ? `<span class="badge bad" title="${esc(st.error.Cause)}">error</span>` : '<span class="badge ok">ok</span>';
      const mon = st && st.stats ? Object.entries(st.stats).map(([k, v]) => `${esc(k)}: ${esc(v)}`).join('<br>') : (st && st.error ? esc(st.error.Cause) : '');
      const key = 'sinfo-' + addr, mid = 'smsg-' + i;
      const sub = state.expanded.has(key) && state.infos[key] ? `<tr class="sub"><td colspan="4"><pre class="info">${esc(state.infos[key])}</pre> ${viewBtn('Hide', '', key)}</td></tr>` : '';
      return `<tr data-sentinel="${esc(addr)}"><td class="mono">${esc(addr)}</td><td>${status}</td><td class="mono">${mon}</td>
        <td>${viewBtn('Info', `/api/topom/sentinels/info/${addr}`, key)} ${btn('Remove', `/api/topom/sentinels/del/XAUTH/${addr}/0`, { msg: mid, cls: 'danger', ok: 'removed', confirm: `Remove sentinel ${addr}?` })}
        ${btn('Force remove', `/api/topom/sentinels/del/XAUTH/${addr}/1`, { msg: mid, cls: 'danger', ok: 'removed', confirm: `Force-remove sentinel ${addr}?` })}<div id="${mid}" class="msg"></div></td></tr>${sub}`;
    }).join('');
    const masters = Object.entries(s.masters || {}).map(([g, a]) => `group-${esc(g)}: ${esc(a)}`).join(', ');
    $('#sentinel-table').innerHTML = (rows ? `<table><tr><th>Sentinel</th><th>Status</th><th>Monitored masters</th><th></th></tr>${rows}</table>`
      : '<p class="hint">No sentinels: without them a dead master is not failed over automatically.</p>') +
      (s.model.out_of_sync ? '<p><span class="badge bad">out of sync</span> resync the sentinels</p>' : '') +
      (masters ? `<p class="hint">masters agreed by the sentinels: ${masters}</p>` : '');
    keepMessages('#sentinel-table');
  },

  events() {
    $('#event-table').innerHTML = eventTable(state.events);
  },
};

function eventTable(evs) {
  if (!evs.length) return '<p class="hint">No events yet.</p>';
  return `<table class="events"><tr><th>Time</th><th>Kind</th><th>What happened</th></tr>${evs.map((e) =>
    `<tr><td>${esc(new Date(e.t).toLocaleString('en-GB'))}</td><td><span class="badge">${esc(e.kind)}</span></td><td>${esc(e.message)}</td></tr>`).join('')}</table>`;
}

/// Row message cells are re-rendered every poll: keep what the last action said.
function keepMessages(sel) {
  for (const el of document.querySelectorAll(sel + ' .msg[id]')) {
    const saved = savedMsgs[el.id];
    if (saved && Date.now() - saved.at < 20000) { el.className = saved.cls; el.textContent = saved.text; }
  }
}

// ---- start -------------------------------------------------------------------------------

$('#product').onchange = (e) => { if (e.target.value) go(e.target.value, state.page || 'overview'); else location.hash = '#/'; };
$('#login-form').onsubmit = submitLogin;
$('#login-cancel').onclick = () => $('#login').close();
window.addEventListener('hashchange', route);
route().then(schedule);
