// Gatehouse demo SPA. No build step, no dependencies, nothing stored in the browser:
// the only credential is Gatehouse's HttpOnly session cookie, which this code cannot read.
'use strict';

const APIS = [
  { name: 'profile', path: '/api/profile/me', credential: 'user_token',
    what: 'The signed-in user\'s own access token.' },
  { name: 'billing', path: '/api/billing/plan', credential: 'token_exchange',
    what: 'A token exchanged (RFC 8693) for audience billing-api.' },
  { name: 'notifications', path: '/api/notifications/unread', credential: 'client_credentials',
    what: 'Gatehouse\'s own token: no user in it.' },
  { name: 'weather', path: '/api/weather/today', credential: 'header',
    what: 'A static API key Gatehouse adds; the browser never sees it.' },
  { name: 'dashboard', path: '/api/dashboard', credential: 'composite',
    what: 'One request: profile, notifications and plan called in parallel, each with its own route\'s policy and credential, shaped into one answer.' },
];

// api is the one way this page talks to Gatehouse: same-origin cookie, the CSRF header
// on every request, JSON in and out.
async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  headers.set('X-CSRF', '1');
  headers.set('Accept', 'application/json');
  const res = await fetch(path, { ...init, headers, credentials: 'same-origin', cache: 'no-store' });
  const text = await res.text();
  let body = text;
  try { body = text ? JSON.parse(text) : null; } catch (_) { /* not JSON: keep the text */ }
  return { status: res.status, ok: res.ok, body };
}

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function show(id, on) { $(id).hidden = !on; }

function fmtDuration(s) {
  if (s <= 0) return 'expired';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  const pad = (n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}h ${pad(m)}m ${pad(sec)}s` : `${m}m ${pad(sec)}s`;
}

let countdownTimer = null;

function startCountdown(user) {
  const t0 = Date.now();
  const tick = () => {
    const gone = (Date.now() - t0) / 1000;
    const left = (claimValue(user, 'gatehouse:session_absolute_expires_in') || 0) - gone;
    const idle = (claimValue(user, 'bff:session_expires_in') || 0) - gone;
    $('countdown').textContent = fmtDuration(left);
    $('idle-countdown').textContent = fmtDuration(idle);
    if (left <= 0 || idle <= 0) { clearInterval(countdownTimer); loadUser(); }
  };
  clearInterval(countdownTimer);
  tick();
  countdownTimer = setInterval(tick, 1000);
}

// /bff/user answers Duende BFF's shape: an array of {type, value}; a claim with several
// values appears once per value.
function claimValue(user, type) {
  const c = user.find((x) => x.type === type);
  return c ? c.value : undefined;
}

function renderClaims(user) {
  const rows = user.filter((c) => !c.type.startsWith('bff:') && !c.type.startsWith('gatehouse:')).map((c) => {
    const v = c.value;
    return el('tr', {}, el('th', {}, c.type), el('td', {}, typeof v === 'object' ? JSON.stringify(v) : String(v)));
  });
  $('claims').replaceChildren(...rows);
}

function renderBrowserChecks() {
  const cookies = document.cookie;
  $('check-cookie').replaceChildren(cookies === ''
    ? el('span', { class: 'ok' }, '✔ document.cookie is empty: the session cookie is HttpOnly.')
    : el('span', { class: 'bad' }, '✘ document.cookie shows: ' + cookies.split(';').map((c) => c.split('=')[0].trim()).join(', ')));
  const n = localStorage.length + sessionStorage.length;
  $('check-storage').replaceChildren(n === 0
    ? el('span', { class: 'ok' }, '✔ localStorage and sessionStorage are empty: no token in the page.')
    : el('span', { class: 'bad' }, `✘ ${n} item(s) in web storage.`));
}

function apiCard(a) {
  const out = el('div', { class: 'result', id: `result-${a.name}`, 'aria-live': 'polite' });
  const btn = el('button', { class: 'button primary', type: 'button', id: `call-${a.name}` }, `GET ${a.path}`);
  btn.addEventListener('click', () => callAPI(a, out, btn));
  return el('article', { class: 'card api', dataset: { route: a.name } },
    el('div', { class: 'row' }, el('h3', {}, a.name), el('span', { class: 'pill' }, a.credential)),
    el('p', { class: 'muted small' }, a.what),
    btn, out);
}

function summary(a, body) {
  switch (a.name) {
    case 'profile': return `${body.name || '?'} <${body.email || '?'}>`;
    case 'billing': return `plan ${body.plan}: ${(body.features || []).join(', ')}`;
    case 'notifications': return `${body.unread} unread: ${(body.items || []).filter((i) => i.unread).map((i) => i.title).join('; ')}`;
    case 'weather': return `${body.city}: ${body.temp_c} °C, ${body.description}`;
    case 'dashboard': return `${body.name || '?'}: plan ${body.plan}, ${body.unread} unread (${(body.features || []).join(', ')})`;
    default: return '';
  }
}

async function callAPI(a, out, btn) {
  btn.disabled = true;
  out.replaceChildren(el('p', { class: 'muted' }, 'calling…'));
  try {
    const r = await api(a.path);
    const body = r.body && typeof r.body === 'object' ? r.body : {};
    const cred = body.credential || (body.echo && body.echo.credential) || null;
    out.dataset.status = String(r.status);
    out.dataset.kind = cred ? cred.kind : '';
    const parts = [el('p', { class: r.ok ? 'status ok' : 'status bad' }, `HTTP ${r.status}`)];
    if (r.ok) parts.push(el('p', { class: 'summary' }, summary(a, body)));
    else if (body.error) parts.push(el('p', { class: 'bad' }, `${body.error}: ${body.message || ''}`));
    if (cred) {
      const facts = [['kind', cred.kind], ['looks like', cred.looks_like]];
      const c = cred.claims || {};
      for (const k of ['sub', 'aud', 'scope', 'client_id', 'act']) {
        if (c[k] !== undefined) facts.push([k, typeof c[k] === 'object' ? JSON.stringify(c[k]) : String(c[k])]);
      }
      if (cred.api_key) facts.push(['api key', cred.api_key]);
      parts.push(el('p', { class: 'small muted' }, 'The upstream received:'));
      parts.push(el('dl', { class: 'facts' }, ...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])));
      if (cred.note) parts.push(el('p', { class: 'small muted' }, cred.note));
    }
    parts.push(el('details', {}, el('summary', {}, 'raw response'), el('pre', {}, JSON.stringify(r.body, null, 2))));
    out.replaceChildren(...parts);
  } catch (e) {
    out.replaceChildren(el('p', { class: 'bad' }, 'request failed: ' + e.message));
  } finally {
    btn.disabled = false;
    loadAudit();
  }
}

async function loadAudit() {
  const r = await api('/api/audit/tail?n=40');
  // The tail's own calls (route audit) are left out: they would crowd out everything else.
  const recs = ((r.body && r.body.records) || []).filter((x) => x.route !== 'audit');
  const rows = recs.slice().reverse().map((x) => el('tr', { class: x.outcome === 'allow' || x.outcome === 'success' ? '' : 'deny' },
    el('td', {}, x.seq), el('td', {}, (x.time || '').replace('T', ' ').replace('Z', '')),
    el('td', {}, x.event || ''), el('td', {}, (x.outcome || '') + (x.reason && x.reason !== 'allowed' ? ` (${x.reason})` : '')), el('td', {}, x.route || ''),
    el('td', {}, [x.method, x.path].filter(Boolean).join(' ')), el('td', {}, x.status || '')));
  if (!r.ok) rows.push(el('tr', {}, el('td', { colspan: '7', class: 'bad' }, `audit tail: HTTP ${r.status}`)));
  rows.splice(12);
  $('audit').replaceChildren(...rows);
}

async function loadUser() {
  let r;
  try {
    r = await api('/bff/user');
  } catch (e) {
    show('loading', false);
    $('error').textContent = 'Gatehouse is not reachable: ' + e.message;
    show('error', true);
    return;
  }
  show('loading', false);
  if (r.status === 401) {
    clearInterval(countdownTimer);
    show('signed-in', false); show('who', false); show('signed-out', true);
    return;
  }
  if (!r.ok || !Array.isArray(r.body)) {
    $('error').textContent = `GET /bff/user answered HTTP ${r.status}`;
    show('error', true);
    return;
  }
  const user = r.body;
  currentUser = user;
  const name = ['name', 'preferred_username', 'email', 'sub'].map((t) => claimValue(user, t)).find(Boolean);
  $('who-name').textContent = name;
  const logoutURL = claimValue(user, 'bff:logout_url');
  if (logoutURL) $('signout').setAttribute('href', logoutURL);
  renderClaims(user);
  startCountdown(user);
  renderBrowserChecks();
  show('signed-out', false); show('signed-in', true); show('who', true);
  loadAudit();
  loadAgents();
}

// The agent token lives in this variable only (never in web storage): it is
// shown once, as Gatehouse answers it once.
let agentToken = '';

async function mintAgent() {
  const r = await api('/bff/agents/tokens', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'demo agent', routes: ['profile'], methods: ['GET'], ttl: '5m' }),
  });
  if (r.status !== 201) {
    $('agent-calls').replaceChildren(el('p', { class: 'bad' }, `mint: HTTP ${r.status} ${(r.body && r.body.error) || ''}`));
    show('agent-minted', true);
    return;
  }
  agentToken = r.body.token;
  $('agent-token').textContent = agentToken;
  $('agent-curl').textContent = `curl -H 'Authorization: Bearer ${agentToken}' ${location.origin}/api/profile/me`;
  $('agent-calls').replaceChildren();
  show('agent-minted', true);
  loadAgents();
  loadAudit();
}

// callAsAgent calls an API the way the agent would: the bearer token only,
// no cookie (credentials: 'omit') and no CSRF header.
async function callAsAgent(path, id) {
  const res = await fetch(path, { headers: { Authorization: 'Bearer ' + agentToken, Accept: 'application/json' },
    credentials: 'omit', cache: 'no-store' });
  let body = {};
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  const line = el('p', { id, class: res.ok ? 'status ok' : 'status bad', dataset: { status: String(res.status) } },
    `GET ${path} → HTTP ${res.status}` + (body.error ? ` ${body.error}: ${body.message || ''}` : ''));
  const old = document.getElementById(id);
  if (old) old.remove();
  $('agent-calls').append(line);
  loadAudit();
}

async function loadAgents() {
  const r = await api('/bff/agents/tokens');
  const list = (r.body && r.body.tokens) || [];
  $('agent-list').replaceChildren(...list.map((g) => {
    const btn = el('button', { class: 'button ghost', type: 'button' }, 'Revoke');
    btn.addEventListener('click', async () => { await api('/bff/agents/tokens/' + g.id, { method: 'DELETE' }); loadAgents(); loadAudit(); });
    return el('tr', { dataset: { grant: g.id } }, el('th', {}, g.name),
      el('td', {}, `${(g.routes || []).join(', ')} · ${(g.methods || []).join(', ')} · until ${(g.expires_at || '').replace('T', ' ').replace('Z', '')}`),
      el('td', {}, btn));
  }));
}

// refusal shows one refused call: the status and Gatehouse's error code and message.
function refusal(out, r, note) {
  const body = r.body && typeof r.body === 'object' ? r.body : {};
  out.dataset.status = String(r.status);
  out.dataset.error = body.error || '';
  out.replaceChildren(
    el('p', { class: r.ok ? 'status ok' : 'status bad' }, `HTTP ${r.status}${r.ok ? '' : ' — refused'}`),
    body.error ? el('p', { class: 'bad' }, `${body.error}: ${body.message || ''}`) : null,
    note ? el('p', { class: 'small muted' }, note) : null);
}

async function tryPolicy() {
  const r = await api('/api/reports/q3');
  refusal($('result-policy'), r, 'Decided by the route\'s policy before any upstream was contacted; the audit log records the reason (cel_denied).');
  loadAudit();
}

async function tryCSRF() {
  // Exactly what a forged cross-site request carries: the cookie, no custom header.
  const res = await fetch('/api/profile/me', { credentials: 'same-origin', cache: 'no-store' });
  let body = null;
  try { body = await res.json(); } catch (_) { /* keep null */ }
  refusal($('result-csrf'), { status: res.status, ok: res.ok, body }, 'The upstream never saw it. Duende BFF answers 401 here too.');
  loadAudit();
}

async function tryRevoke() {
  const out = $('result-revoke');
  const sid = new URL(claimValue(currentUser, 'bff:logout_url'), location.origin).searchParams.get('sid');
  const rv = await api('/api/operator/revoke?sid=' + encodeURIComponent(sid), { method: 'POST' });
  const adminStatus = rv.body && rv.body.admin_status;
  const r = await api('/api/profile/me');
  refusal(out, r, `The admin API answered ${adminStatus} to DELETE /admin/sessions/{id}; this is the next call.`);
  const cont = el('button', { class: 'button ghost', type: 'button', id: 'revoke-continue' }, 'Continue (signed out)');
  cont.addEventListener('click', loadUser);
  out.append(cont);
}

let currentUser = [];

function init() {
  $('apis').replaceChildren(...APIS.map(apiCard));
  $('try-policy').addEventListener('click', tryPolicy);
  $('try-csrf').addEventListener('click', tryCSRF);
  $('try-revoke').addEventListener('click', tryRevoke);
  $('audit-refresh').addEventListener('click', loadAudit);
  $('agent-mint').addEventListener('click', mintAgent);
  $('agent-call-granted').addEventListener('click', () => callAsAgent('/api/profile/me', 'agent-granted'));
  $('agent-call-refused').addEventListener('click', () => callAsAgent('/api/billing/plan', 'agent-refused'));
  loadUser();
}

document.addEventListener('DOMContentLoaded', init);
