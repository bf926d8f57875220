// Ipelya Live operations dashboard. Plain JS, no build step, no external code.
//
// The page shell holds no data: the operator gives a JWT, kept in this tab's sessionStorage,
// and every figure comes from /v1/ops/* (and /v1/moderation/* for actions) with it as a
// bearer token. A 401 or 403 from any of them sends the operator back to the login form.
// All server text goes into the DOM through textContent, never innerHTML.
'use strict';

(() => {
  const TOKEN_KEY = 'ipelya.ops.token';
  const POLL_MS = 5000;

  // ---------- small helpers ----------
  const $ = (sel, root = document) => root.querySelector(sel);

  /** Builds an element: h('td', {class: 'x', onclick: fn}, 'text', child, ...). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      // CSSOM, not the style attribute: the page's CSP refuses inline style attributes.
      else if (k === 'style') el.style.cssText = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  const svgNS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    append(el, children);
    return el;
  }

  /** The first present field among several spellings (the API grows; the page adapts). */
  function pick(obj, ...names) {
    if (!obj) return undefined;
    for (const n of names) {
      const v = n.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
      if (v !== undefined && v !== null) return v;
    }
    return undefined;
  }
  const nf = new Intl.NumberFormat('en-US');
  const fmtNum = (n) => (n == null || Number.isNaN(Number(n)) ? '—' : nf.format(Math.round(Number(n))));
  function fmtDuration(secs) {
    if (secs == null || Number.isNaN(secs)) return '—';
    secs = Math.max(0, Math.floor(secs));
    const hh = Math.floor(secs / 3600), mm = Math.floor((secs % 3600) / 60), ss = secs % 60;
    if (hh) return `${hh}h ${String(mm).padStart(2, '0')}m`;
    if (mm) return `${mm}m ${String(ss).padStart(2, '0')}s`;
    return `${ss}s`;
  }
  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return d.toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' });
  }
  function fmtAgo(iso) {
    if (!iso) return '—';
    const secs = (Date.now() - new Date(iso).getTime()) / 1000;
    if (Number.isNaN(secs)) return '—';
    if (secs < 60) return 'just now';
    if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
    if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
    return `${Math.floor(secs / 86400)} d ago`;
  }
  function fmtIn(iso) {
    const secs = (new Date(iso).getTime() - Date.now()) / 1000;
    if (Number.isNaN(secs)) return '—';
    if (secs <= 0) return 'ended';
    if (secs < 3600) return `in ${Math.ceil(secs / 60)} min`;
    if (secs < 86400) return `in ${Math.round(secs / 3600)} h`;
    return `in ${Math.round(secs / 86400)} d`;
  }
  const shortId = (id) => (id ? String(id).slice(0, 8) : '—');
  const label = (v) => (v ? String(v).replace(/_/g, ' ') : '—');
  function monthNow() {
    const d = new Date();
    return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
  }

  function badge(status) {
    const st = String(status || 'unknown');
    const cls = {
      live: 'badge-live', paused: 'badge-warn', host_disconnected: 'badge-warn', created: 'badge-info',
      ended: 'badge-muted', pending: 'badge-warn', dismissed: 'badge-muted', warned: 'badge-info',
      banned: 'badge-live', active: 'badge-ok', inactive: 'badge-muted', host: 'badge-info',
    }[st] || 'badge-muted';
    return h('span', { class: `badge ${cls}` }, label(st));
  }
  function empty(icon, title, text) {
    return h('div', { class: 'empty' }, h('span', { class: 'empty-icon', 'aria-hidden': 'true' }, icon),
      h('strong', {}, title), text ? h('span', {}, text) : null);
  }
  function panel(title, right, ...body) {
    return h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', {}, title), right || null), ...body);
  }
  function card(lbl, value, foot, extra) {
    return h('div', { class: 'card' }, h('div', { class: 'card-label' }, lbl),
      h('div', { class: 'card-value' }, value), extra || null, foot ? h('div', { class: 'card-foot' }, foot) : null);
  }
  function table(headers, rows, attrs) {
    return h('div', { class: 'table-wrap' }, h('table', attrs || {}, h('thead', {}, h('tr', {}, headers.map((t) => h('th', {}, t)))), h('tbody', {}, rows)));
  }
  function quotaBar(used, quota, projected, opts = {}) {
    const pct = quota > 0 ? (used / quota) * 100 : 0;
    const cls = pct >= 90 ? 'crit' : pct >= 75 ? 'warn' : '';
    const track = h('div', { class: 'quota-track', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': quota, 'aria-valuenow': used },
      h('div', { class: `quota-fill ${cls}`, style: `width:${Math.min(100, pct).toFixed(2)}%` }));
    if (projected != null && quota > 0) {
      const p = Math.min(100, (projected / quota) * 100);
      track.append(h('div', { class: 'quota-proj', style: `left:calc(${p.toFixed(2)}% - 1px)`, title: `Projected: ${fmtNum(projected)}` }));
    }
    return h('div', { class: `quota ${opts.mini ? 'quota-mini' : ''}`, dataset: { quota: opts.name || '' } },
      opts.mini ? null : h('div', { class: 'quota-head' },
        h('strong', {}, opts.title || ''),
        h('span', { class: 'num' }, `${fmtNum(used)} / ${fmtNum(quota)} ${opts.unit || ''} · ${pct.toFixed(1)}%`)),
      track,
      opts.mini ? null : h('div', { class: 'quota-marks' }, h('span', {}, '0'), h('span', {}, '75 % warning · 90 % critical'), h('span', {}, fmtNum(quota))));
  }

  // ---------- toasts and the confirm dialog ----------
  function toast(message, kind = 'info') {
    const el = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
    $('#toasts').append(el);
    setTimeout(() => el.remove(), kind === 'error' ? 7000 : 4000);
  }

  /**
   * A confirm dialog; resolves to the values of its fields, or null when cancelled.
   * fields: [{name, label, type, value, placeholder, required}]
   */
  function confirmDialog({ title, body, confirm = 'Confirm', danger = true, fields = [] }) {
    return new Promise((resolve) => {
      const modal = $('#modal');
      $('#modal-title').textContent = title;
      $('#modal-body').textContent = body || '';
      const box = $('#modal-fields');
      box.replaceChildren(...fields.map((f) => h('label', {}, f.label,
        h('input', { name: f.name, type: f.type || 'text', value: f.value ?? '', placeholder: f.placeholder || '', required: f.required, min: f.min }))));
      const ok = $('#modal-confirm');
      ok.textContent = confirm;
      ok.className = `btn ${danger ? 'btn-danger' : 'btn-primary'}`;
      modal.hidden = false;
      (box.querySelector('input') || ok).focus();
      const done = (value) => {
        modal.hidden = true;
        ok.onclick = null; $('#modal-cancel').onclick = null; document.onkeydown = null;
        resolve(value);
      };
      ok.onclick = () => {
        const values = {};
        for (const input of box.querySelectorAll('input')) {
          if (input.required && !input.value.trim()) { input.focus(); return; }
          values[input.name] = input.value.trim();
        }
        done(values);
      };
      $('#modal-cancel').onclick = () => done(null);
      document.onkeydown = (e) => { if (e.key === 'Escape') done(null); if (e.key === 'Enter' && fields.length) ok.click(); };
    });
  }

  // ---------- the API ----------
  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  async function api(method, path, body) {
    let res;
    try {
      res = await fetch(path, {
        method,
        headers: { Authorization: `Bearer ${token()}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, 'NETWORK', 'The moderation service cannot be reached.');
    }
    let data = null;
    try { data = await res.json(); } catch (_) { /* an empty or non-JSON body */ }
    if (res.status === 401 || (res.status === 403 && (!data || data.errorCode !== 'BANNED' || path.startsWith('/v1/ops')))) {
      const why = res.status === 401 ? 'Your session has expired or the token is not valid.' : 'This account is not an operator.';
      logout(data && data.error ? `${why} (${data.error})` : why);
      throw new ApiError(res.status, data && data.errorCode, why);
    }
    if (!res.ok || (data && data.success === false)) {
      throw new ApiError(res.status, data && data.errorCode, (data && data.error) || `${method} ${path} failed (${res.status})`);
    }
    return data || {};
  }

  /** Runs an action, toasting its outcome; returns whether it succeeded. */
  async function act(what, fn) {
    try {
      await fn();
      toast(typeof what === 'function' ? what() : what, 'ok');
      return true;
    } catch (e) {
      if (e.status !== 401 && e.status !== 403) toast(`${e.message}${e.code ? ` [${e.code}]` : ''}`, 'error');
      else if (e.code === 'BANNED') toast(e.message, 'error');
      return false;
    }
  }

  // ---------- login ----------
  function showLogin(message) {
    stopPolling();
    $('#app').hidden = true;
    $('#login').hidden = false;
    const err = $('#login-error');
    err.hidden = !message;
    err.textContent = message || '';
    $('#token-input').focus();
  }
  function logout(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(message);
  }
  async function login(ev) {
    ev.preventDefault();
    const raw = $('#token-input').value.trim().replace(/^Bearer\s+/i, '');
    if (raw.split('.').length !== 3) { showLogin('That does not look like a JWT (three dot-separated parts).'); return; }
    sessionStorage.setItem(TOKEN_KEY, raw);
    const btn = $('#login-submit');
    btn.disabled = true; btn.textContent = 'Checking…';
    try {
      // Any operator endpoint tells whether the token is an operator's.
      await api('GET', '/v1/ops/sessions?status=live');
      $('#token-input').value = '';
      showApp();
    } catch (e) {
      if (e.status !== 401 && e.status !== 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(e.message);
      }
    } finally {
      btn.disabled = false; btn.textContent = 'Sign in';
    }
  }
  function showApp() {
    $('#login').hidden = true;
    $('#app').hidden = false;
    if (!location.hash || location.hash === '#' || location.hash === '#/') location.hash = '#/live';
    else route();
  }

  // ---------- routing and live refresh ----------
  let current = null; // {page, params}
  let pollTimer = null;
  let lastRender = '';
  function stopPolling() { clearTimeout(pollTimer); pollTimer = null; current = null; }

  function route() {
    if (!token()) { showLogin(); return; }
    const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
    const name = parts[0] || 'live';
    const page = PAGES[name] || PAGES.live;
    current = { page, params: parts.slice(1), name };
    lastRender = '';
    for (const a of document.querySelectorAll('[data-nav]')) {
      a.classList.toggle('active', a.dataset.nav === (page.nav || name));
    }
    $('#page-title').textContent = page.title;
    $('#page-sub').textContent = page.sub || '';
    $('#page-actions').replaceChildren();
    $('#view').replaceChildren(h('div', { class: 'panel panel-body' }, h('div', { class: 'skeleton' }), h('br'), h('div', { class: 'skeleton', style: 'width:60%' })));
    $('#view').dataset.page = name;
    $('#view').dataset.ready = 'false';
    refresh();
  }

  /** Loads the current page's data and renders it when it changed; schedules the next poll. */
  async function refresh() {
    clearTimeout(pollTimer);
    const here = current;
    if (!here) return;
    const dot = $('#refresh-dot');
    try {
      const data = await here.page.load(...here.params);
      if (current !== here) return;
      const key = JSON.stringify(data);
      if (key !== lastRender) {
        lastRender = key;
        const nodes = here.page.render(data, ...here.params);
        $('#view').replaceChildren(...[nodes].flat());
        if (here.page.actions) $('#page-actions').replaceChildren(...[here.page.actions(data, ...here.params)].flat());
      }
      $('#view').dataset.ready = 'true';
      dot.className = 'dot on';
      $('#refresh-text').textContent = `Updated ${new Date().toLocaleTimeString('en-GB')}`;
    } catch (e) {
      if (current !== here) return;
      dot.className = 'dot err';
      $('#refresh-text').textContent = 'Refresh failed';
      if (e.status !== 401 && e.status !== 403) {
        if (!lastRender) $('#view').replaceChildren(panel('Could not load this page', null, empty('⚠', e.message, e.code ? `Error code ${e.code}` : '')));
        toast(e.message, 'error');
      }
      if (e.status === 401 || e.status === 403) return;
    }
    if (here.page.poll !== false) pollTimer = setTimeout(refresh, POLL_MS);
  }
  function reload() { lastRender = ''; refresh(); }

  // The durations of live sessions tick every second between polls.
  setInterval(() => {
    for (const el of document.querySelectorAll('[data-since]')) {
      el.textContent = fmtDuration((Date.now() - new Date(el.dataset.since).getTime()) / 1000);
    }
  }, 1000);

  /** Settles several requests; a failed optional one becomes {error}. */
  async function settle(entries) {
    const out = {};
    const results = await Promise.allSettled(Object.values(entries));
    Object.keys(entries).forEach((k, i) => {
      const r = results[i];
      if (r.status === 'fulfilled') out[k] = r.value;
      else if (r.reason && (r.reason.status === 401 || r.reason.status === 403)) throw r.reason;
      else out[k] = { error: (r.reason && r.reason.message) || 'unavailable', code: r.reason && r.reason.code };
    });
    return out;
  }

  // ---------- session fields ----------
  const sess = {
    id: (x) => pick(x, 'id', 'sessionId'),
    title: (x) => pick(x, 'title') || 'Untitled',
    creator: (x) => pick(x, 'creatorUsername', 'creator.username', 'creatorName', 'username') || shortId(pick(x, 'creatorId', 'creator.id')),
    creatorId: (x) => pick(x, 'creatorId', 'creator.id'),
    type: (x) => pick(x, 'sessionType', 'type'),
    participants: (x) => Number(pick(x, 'participantCount', 'participants', 'activeParticipants', 'viewerCount') ?? 0),
    started: (x) => pick(x, 'startedAt', 'createdAt'),
    duration: (x) => pick(x, 'durationSeconds', 'duration'),
  };
  function durationCell(x) {
    const since = sess.started(x);
    if (x.status !== 'ended' && since) return h('span', { class: 'num', dataset: { since } }, fmtDuration((Date.now() - new Date(since).getTime()) / 1000));
    return h('span', { class: 'num' }, fmtDuration(sess.duration(x)));
  }

  async function terminate(x) {
    const ok = await confirmDialog({
      title: 'Kill this session?',
      body: `“${sess.title(x)}” by ${sess.creator(x)} ends for everyone now: the LiveKit room is deleted and the session is marked admin_terminated.`,
      confirm: 'Kill session',
    });
    if (!ok) return false;
    let msg = 'Session terminated';
    const done = await act(() => msg, async () => {
      const r = await api('POST', `/v1/ops/sessions/${encodeURIComponent(sess.id(x))}/terminate`);
      // 202: session-manager has the durable request but had not applied it yet.
      if (r.terminated === false) msg = 'Termination requested: the session ends in a moment';
    });
    if (done) reload();
    return done;
  }

  async function banUser(userId, who) {
    const v = await confirmDialog({
      title: `Ban ${who || shortId(userId)} from the platform?`,
      body: 'A global ban: no token for any session or call until it ends. Active connections are removed.',
      confirm: 'Ban user',
      fields: [
        { name: 'hours', label: 'Hours', type: 'number', value: '24', min: 1, required: true },
        { name: 'reason', label: 'Reason', placeholder: 'What happened', required: true },
      ],
    });
    if (!v) return false;
    return act('User banned', () => api('POST', `/v1/ops/users/${encodeURIComponent(userId)}/ban`, { hours: Number(v.hours), reason: v.reason }));
  }

  // ---------- pages ----------
  const PAGES = {};

  PAGES.live = {
    title: 'Live overview',
    sub: 'Sessions on air right now, refreshed every few seconds.',
    load: () => settle({
      sessions: api('GET', '/v1/ops/sessions?status=live'),
      usage: api('GET', `/v1/ops/usage?month=${monthNow()}`),
      problems: api('GET', '/v1/ops/stats/problem-sessions'),
      config: api('GET', '/v1/ops/config'),
      recent: api('GET', '/v1/ops/stats/recent-creators?minutes=5'),
    }),
    actions: (d) => [killSwitch(d.config && !d.config.error ? pick(d.config, 'config.liveSessionsDisabled') : undefined)],
    render(d) {
      const list = (d.sessions && (d.sessions.sessions || d.sessions.items)) || [];
      const viewers = pick(d.sessions, 'totalViewers') ?? list.reduce((n, x) => n + sess.participants(x), 0);
      const u = d.usage && !d.usage.error ? (d.usage.usage || d.usage) : null;
      const problems = d.problems && !d.problems.error ? (pick(d.problems, 'sessions', 'problemSessions', 'items') || []) : null;
      const cards = h('div', { class: 'cards' },
        card('Active sessions', h('span', { id: 'stat-active' }, fmtNum(list.length)), `${list.filter((x) => x.status === 'live').length} live · ${list.filter((x) => x.status !== 'live').length} paused or waiting for host`),
        card('Total viewers', h('span', { id: 'stat-viewers' }, fmtNum(viewers)), 'participants across every room'),
        u ? card('Participant minutes', h('span', {}, fmtNum(u.participantMinutes), h('small', {}, ` / ${fmtNum(u.quotaParticipantMinutes)}`)),
          `this month · projected ${fmtNum(u.projectedParticipantMinutes)}`,
          quotaBar(u.participantMinutes, u.quotaParticipantMinutes, u.projectedParticipantMinutes, { mini: true, name: 'minutes' }))
          : card('Participant minutes', '—', 'usage unavailable'),
        problems ? card('Problem sessions', fmtNum(problems.length), 'live over an hour with no one in the room') : card('Problem sessions', '—', 'unavailable'));
      const rows = list.map((x) => h('tr', { dataset: { sessionId: sess.id(x) } },
        h('td', {}, h('a', { href: `#/sessions/${sess.id(x)}`, class: 'cell-title' }, sess.title(x)), h('div', { class: 'cell-sub mono' }, shortId(sess.id(x)))),
        h('td', {}, sess.creator(x)),
        h('td', {}, label(sess.type(x))),
        h('td', {}, badge(x.status)),
        h('td', { class: 'num' }, fmtNum(sess.participants(x))),
        h('td', {}, durationCell(x)),
        h('td', { class: 'actions' },
          h('a', { class: 'btn btn-sm', href: `#/sessions/${sess.id(x)}` }, 'Details'),
          h('button', { class: 'btn btn-sm btn-danger', type: 'button', dataset: { action: 'kill' }, onclick: () => terminate(x) }, 'Kill'))));
      const live = panel('Live sessions', h('span', { class: 'muted' }, `${list.length} active`),
        list.length ? table(['Session', 'Creator', 'Type', 'Status', 'Participants', 'Duration', ''], rows, { id: 'live-table' })
          : empty('◉', 'Nothing on air', 'No session is live right now. New sessions appear here within seconds.'));
      const out = [cards, live];
      if (problems && problems.length) {
        out.push(panel('Problem sessions', h('span', { class: 'muted' }, 'candidates for Kill'),
          table(['Session', 'Creator', 'Status', 'Since', ''], problems.map((x) => h('tr', {},
            h('td', {}, h('a', { href: `#/sessions/${sess.id(x)}` }, sess.title(x))),
            h('td', {}, sess.creator(x)), h('td', {}, badge(x.status)), h('td', {}, fmtAgo(sess.started(x))),
            h('td', { class: 'actions' }, h('button', { class: 'btn btn-sm btn-danger', type: 'button', onclick: () => terminate(x) }, 'Kill')))))));
      }
      const recent = d.recent && !d.recent.error ? (d.recent.creators || []) : [];
      if (recent.length) {
        out.push(panel(`Session creators, last ${d.recent.minutes || 5} minutes`, h('span', { class: 'muted' }, 'many sessions in a short time may be abuse'),
          table(['Creator', 'Sessions', 'Last created'], recent.map((c) => h('tr', {},
            h('td', {}, h('div', { class: 'cell-title' }, c.username || shortId(c.creatorId)), h('div', { class: 'cell-sub mono' }, shortId(c.creatorId))),
            h('td', { class: 'num' }, fmtNum(c.sessions)),
            h('td', {}, fmtAgo(c.lastCreatedAt)))))));
      }
      return out;
    },
  };

  /** The kill switch for new sessions (LIVE_DISABLED). */
  function killSwitch(disabled) {
    const set = async (value) => {
      const ok = await confirmDialog({
        title: value ? 'Stop new sessions?' : 'Allow new sessions again?',
        body: value ? 'Creators get LIVE_DISABLED when they try to go live. Sessions already on air continue.' : 'Creators can start sessions again.',
        confirm: value ? 'Disable new sessions' : 'Enable new sessions',
        danger: value,
      });
      if (ok) await act(value ? 'New sessions are disabled' : 'New sessions are enabled', () => api('PUT', '/v1/ops/config/live-sessions-disabled', { value }));
    };
    const done = async (value) => { await set(value); reload(); };
    return h('div', { class: 'switch', id: 'kill-switch' },
      h('span', { class: 'muted' }, 'New sessions'),
      disabled === true ? h('span', { class: 'badge badge-live' }, 'disabled') : disabled === false ? h('span', { class: 'badge badge-ok' }, 'allowed') : null,
      disabled !== true ? h('button', { class: 'btn btn-sm btn-danger', type: 'button', id: 'kill-switch-on', onclick: () => done(true) }, 'Kill switch') : null,
      disabled !== false ? h('button', { class: 'btn btn-sm', type: 'button', id: 'kill-switch-off', onclick: () => done(false) }, 'Allow new sessions') : null);
  }

  PAGES.usage = {
    title: 'Usage',
    sub: 'Participant minutes from LiveKit’s joins and leaves, held against the monthly quota.',
    month: monthNow(),
    load() { return api('GET', `/v1/ops/usage?month=${encodeURIComponent(this.month)}`); },
    actions() {
      return h('label', { class: 'switch' }, h('span', { class: 'muted' }, 'Month'),
        h('input', { type: 'month', value: this.month, id: 'usage-month', onchange: (e) => { if (e.target.value) { this.month = e.target.value; reload(); } } }));
    },
    render(d) {
      const u = d.usage || d;
      const days = fillMonth(u.month || this.month, u.days || []);
      const pctProj = u.quotaParticipantMinutes ? (u.projectedParticipantMinutes / u.quotaParticipantMinutes) * 100 : 0;
      return [
        h('div', { class: 'cards' },
          card('Participant minutes', fmtNum(u.participantMinutes), `${u.month || this.month} to date`),
          card('Projected by month end', fmtNum(u.projectedParticipantMinutes),
            h('span', {}, pctProj >= 100 ? badge('over quota') : pctProj >= 75 ? badge('near quota') : badge('within quota'), ` ${pctProj.toFixed(0)} % of quota`)),
          card('Peak concurrent', h('span', {}, fmtNum(u.peakConcurrent), h('small', {}, ` / ${fmtNum(u.quotaConcurrent)}`)), 'participants over all rooms at once')),
        panel('Quota', null, h('div', { class: 'panel-body', style: 'display:grid;gap:22px' },
          quotaBar(u.participantMinutes, u.quotaParticipantMinutes, u.projectedParticipantMinutes, { title: 'Participant minutes (white mark: month-end projection)', unit: 'min', name: 'minutes' }),
          quotaBar(u.peakConcurrent, u.quotaConcurrent, null, { title: 'Peak concurrent participants', name: 'concurrent' }))),
        panel('Participant minutes per day', h('span', { class: 'muted' }, 'UTC days'), h('div', { class: 'panel-body chart', id: 'usage-chart' }, barChart(days))),
        panel('Days', null, days.some(used)
          ? table(['Date', 'Participant minutes', 'Peak concurrent'], days.filter(used).reverse()
            .map((x) => h('tr', {}, h('td', {}, x.date), h('td', { class: 'num' }, fmtNum(x.participantMinutes)), h('td', { class: 'num' }, fmtNum(x.peakConcurrent)))))
          : empty('▤', 'No usage this month', 'Minutes appear once participants join rooms.')),
      ];
    },
  };

  const used = (x) => x.participantMinutes > 0 || x.peakConcurrent > 0;

  /** Every day of the month, with zero for days the API did not list. */
  function fillMonth(month, days) {
    const [y, m] = month.split('-').map(Number);
    const n = new Date(Date.UTC(y, m, 0)).getUTCDate();
    const byDate = new Map(days.map((x) => [String(x.date).slice(0, 10), x]));
    const out = [];
    for (let i = 1; i <= n; i++) {
      const date = `${month}-${String(i).padStart(2, '0')}`;
      const x = byDate.get(date) || {};
      out.push({ date, participantMinutes: Number(x.participantMinutes || 0), peakConcurrent: Number(x.peakConcurrent || 0) });
    }
    return out;
  }

  /** A bar chart of participant minutes per day, drawn as SVG. */
  function barChart(days) {
    const W = 900, H = 260, L = 48, R = 10, T = 12, B = 28;
    const max = Math.max(10, ...days.map((x) => x.participantMinutes));
    const nice = niceCeil(max);
    const bw = (W - L - R) / days.length;
    const y = (v) => T + (H - T - B) * (1 - v / nice);
    const today = new Date().toISOString().slice(0, 10);
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'Participant minutes per day' });
    // nice is at least 10 and 1, 2, 2.5 or 5 times a power of ten: fifths are whole numbers.
    for (let i = 0; i <= 5; i++) {
      const v = (nice / 5) * i;
      svg.append(s('line', { class: 'axis', x1: L, x2: W - R, y1: y(v), y2: y(v), 'stroke-dasharray': i ? '3 4' : '' }),
        s('text', { x: L - 8, y: y(v) + 3, 'text-anchor': 'end' }, fmtNum(v)));
    }
    days.forEach((x, i) => {
      const bh = Math.max(x.participantMinutes > 0 ? 2 : 0, (H - T - B) * (x.participantMinutes / nice));
      svg.append(s('rect', { class: `bar${x.date === today ? ' today' : ''}`, x: L + i * bw + bw * 0.15, y: H - B - bh, width: bw * 0.7, height: bh, rx: 2 },
        s('title', {}, `${x.date}: ${fmtNum(x.participantMinutes)} participant minutes, peak ${fmtNum(x.peakConcurrent)}`)));
      if (i % 5 === 0 || i === days.length - 1) svg.append(s('text', { x: L + i * bw + bw / 2, y: H - 10, 'text-anchor': 'middle' }, x.date.slice(8)));
    });
    return svg;
  }
  function niceCeil(v) {
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  PAGES.incidents = {
    title: 'Incidents',
    sub: 'Reports from users, oldest first. Resolve each with dismiss, warn or ban.',
    status: 'pending',
    load() { return api('GET', `/v1/ops/reports?status=${encodeURIComponent(this.status)}`); },
    actions() {
      return h('label', { class: 'switch' }, h('span', { class: 'muted' }, 'Show'),
        h('select', { id: 'reports-status', onchange: (e) => { this.status = e.target.value; reload(); } },
          ['pending', 'dismissed', 'warned', 'banned'].map((v) => h('option', { value: v, selected: v === this.status }, label(v)))));
    },
    render(d) {
      const list = d.reports || d.items || [];
      const pending = this.status === 'pending';
      const count = $('#nav-incidents-count');
      if (pending) { count.hidden = !list.length; count.textContent = String(list.length); }
      const resolve = async (r, action) => {
        const who = pick(r, 'reportedUsername', 'reportedUser.username') || shortId(r.reportedUserId);
        const v = await confirmDialog({
          title: { dismiss: 'Dismiss this report?', warn: `Warn ${who}?`, ban: `Ban ${who}?` }[action],
          body: { dismiss: 'The report is closed with no action.', warn: 'The report is closed and the user gets a warning.', ban: 'The report is closed and the user is banned from the platform.' }[action],
          confirm: { dismiss: 'Dismiss', warn: 'Warn', ban: 'Ban user' }[action],
          danger: action === 'ban',
          fields: action === 'ban' ? [{ name: 'hours', label: 'Hours', type: 'number', value: '24', min: 1, required: true }] : [],
        });
        if (!v) return;
        const body = { action };
        if (action === 'ban') body.hours = Number(v.hours);
        if (await act(`Report ${action === 'dismiss' ? 'dismissed' : action === 'warn' ? 'resolved with a warning' : 'resolved with a ban'}`,
          () => api('POST', `/v1/ops/reports/${encodeURIComponent(r.id)}/resolve`, body))) reload();
      };
      return panel(pending ? 'Pending reports' : `${label(this.status)} reports`, h('span', { class: 'muted' }, `${list.length} shown`),
        list.length ? table(['Reported user', 'Reason', 'Reporter', 'Session', 'When', pending ? '' : 'Status'], list.map((r) => h('tr', { dataset: { reportId: r.id } },
          h('td', {}, h('div', { class: 'cell-title' }, pick(r, 'reportedUsername', 'reportedUser.username') || shortId(r.reportedUserId)), h('div', { class: 'cell-sub mono' }, shortId(r.reportedUserId))),
          h('td', { class: 'wrap' }, h('div', {}, r.reason || '—'), r.details ? h('div', { class: 'cell-sub' }, r.details) : null),
          h('td', {}, pick(r, 'reporterUsername', 'reporter.username') || shortId(r.reporterId)),
          h('td', {}, r.sessionId ? h('a', { href: `#/sessions/${r.sessionId}`, class: 'mono' }, shortId(r.sessionId)) : '—'),
          h('td', { title: fmtTime(r.createdAt) }, fmtAgo(r.createdAt)),
          pending ? h('td', { class: 'actions' },
            h('button', { class: 'btn btn-sm', type: 'button', onclick: () => resolve(r, 'dismiss') }, 'Dismiss'),
            h('button', { class: 'btn btn-sm', type: 'button', onclick: () => resolve(r, 'warn') }, 'Warn'),
            h('button', { class: 'btn btn-sm btn-danger', type: 'button', onclick: () => resolve(r, 'ban') }, 'Ban'))
            : h('td', {}, badge(r.status)))))
          : empty('⚑', pending ? 'Inbox zero' : 'Nothing here', pending ? 'No report is waiting for an operator.' : `No ${this.status} report.`));
    },
  };

  PAGES.bans = {
    title: 'Bans',
    sub: 'Bans in force: global (profiles.banned_until), per session, and by creators.',
    async load() {
      // The list is optional: a service without it still lets operators ban and lift by id.
      try { return await api('GET', '/v1/ops/bans'); } catch (e) {
        if (e.status === 404 || e.status === 405) return { unsupported: true };
        throw e;
      }
    },
    render(d) {
      const b = d.bans || {};
      const global = Array.isArray(b) ? b : (b.global || []);
      const perSession = b.session || [];
      const byCreator = b.creator || [];
      const liftGlobal = async (userId, who) => {
        const ok = await confirmDialog({ title: `Lift the ban of ${who}?`, body: 'They can get tokens again at once.', confirm: 'Lift ban', danger: false });
        if (ok && await act('Ban lifted', () => api('DELETE', `/v1/ops/users/${encodeURIComponent(userId)}/ban`))) reload();
      };
      const liftSession = async (x) => {
        const ok = await confirmDialog({ title: `Lift the session ban of ${shortId(x.userId)}?`, body: `They may join session ${shortId(x.sessionId)} again.`, confirm: 'Lift ban', danger: false });
        if (ok && await act('Session ban lifted', () => api('DELETE', `/v1/moderation/sessions/${encodeURIComponent(x.sessionId)}/bans/${encodeURIComponent(x.userId)}`))) reload();
      };
      const form = h('form', { class: 'inline-form panel-body', id: 'ban-form' },
        h('label', {}, 'User id', h('input', { name: 'userId', placeholder: '00000000-0000-0000-0000-000000000000', required: true, class: 'mono' })),
        h('label', {}, 'Hours', h('input', { name: 'hours', type: 'number', min: 1, value: 24, required: true })),
        h('label', {}, 'Reason', h('input', { name: 'reason', placeholder: 'Why', required: true })),
        h('div', { style: 'display:flex;gap:8px' },
          h('button', { class: 'btn btn-danger', type: 'submit' }, 'Ban'),
          h('button', { class: 'btn', type: 'button', onclick: (e) => { const id = e.target.form.userId.value.trim(); if (id) liftGlobal(id, shortId(id)); } }, 'Lift')));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const f = e.target;
        const ok = await confirmDialog({ title: `Ban ${shortId(f.userId.value)}?`, body: `For ${f.hours.value} hours: “${f.reason.value}”.`, confirm: 'Ban user' });
        if (ok && await act('User banned', () => api('POST', `/v1/ops/users/${encodeURIComponent(f.userId.value.trim())}/ban`, { hours: Number(f.hours.value), reason: f.reason.value.trim() }))) { f.reset(); reload(); }
      });
      if (d.unsupported) {
        return [panel('Ban a user', null, form), panel('Bans in force', null, empty('⊘', 'The ban list is not available', 'This moderation service has no GET /v1/ops/bans; ban and lift by user id above.'))];
      }
      const who = (x) => h('td', {}, h('div', { class: 'cell-title' }, x.username || shortId(x.userId)), h('div', { class: 'cell-sub mono' }, shortId(x.userId)));
      return [
        panel('Ban a user', null, form),
        panel('Global bans', h('span', { class: 'muted' }, `${global.length} in force`), global.length
          ? table(['User', 'Until', 'Ends', ''], global.map((x) => h('tr', { dataset: { userId: x.userId } },
            who(x), h('td', {}, fmtTime(x.bannedUntil)), h('td', {}, fmtIn(x.bannedUntil)),
            h('td', { class: 'actions' }, h('button', { class: 'btn btn-sm', type: 'button', onclick: () => liftGlobal(x.userId, x.username || shortId(x.userId)) }, 'Lift')))), { id: 'global-bans' })
          : empty('⊘', 'No global bans', 'Nobody is banned from the platform right now.')),
        h('div', { class: 'grid-2' },
          panel('Session bans', h('span', { class: 'muted' }, `${perSession.length} recent`), perSession.length
            ? table(['User', 'Session', 'Reason', 'When', ''], perSession.map((x) => h('tr', {},
              who(x), h('td', {}, h('a', { href: `#/sessions/${x.sessionId}`, class: 'mono' }, shortId(x.sessionId))),
              h('td', { class: 'wrap' }, x.reason || '—'), h('td', {}, fmtAgo(x.createdAt)),
              h('td', { class: 'actions' }, h('button', { class: 'btn btn-sm', type: 'button', onclick: () => liftSession(x) }, 'Lift')))))
            : empty('⊘', 'No session bans', 'Hosts and operators have banned nobody from a session.')),
          panel('Creator bans', h('span', { class: 'muted' }, 'lifted by the creator'), byCreator.length
            ? table(['User', 'Creator', 'Reason', 'When'], byCreator.map((x) => h('tr', {},
              who(x), h('td', { class: 'mono' }, shortId(x.creatorId)), h('td', { class: 'wrap' }, x.reason || '—'), h('td', {}, fmtAgo(x.createdAt)))))
            : empty('⊘', 'No creator bans', 'No creator has banned anyone from their sessions.'))),
      ];
    },
  };

  PAGES.sessions = {
    title: 'Session',
    nav: 'live',
    load: (id) => api('GET', `/v1/ops/sessions/${encodeURIComponent(id)}`),
    actions(d) {
      const x = d.session || d;
      return [h('a', { class: 'btn', href: '#/live' }, '← Live overview'),
        x.status !== 'ended' ? h('button', { class: 'btn btn-danger', type: 'button', dataset: { action: 'kill' }, onclick: () => terminate(x) }, 'Kill session') : null];
    },
    render(d, id) {
      const x = d.session || d;
      const participants = pick(d, 'participants', 'session.participants') || [];
      const stats = pick(d, 'stats', 'session.stats') || x;
      const chat = pick(d, 'messages', 'recentChat', 'chat', 'recentMessages', 'session.messages') || [];
      $('#page-title').textContent = sess.title(x);
      $('#page-sub').replaceChildren(badge(x.status), ` ${label(sess.type(x))} by ${sess.creator(x)} · `, h('span', { class: 'mono' }, id));
      const active = participants.filter((p) => pick(p, 'isActive', 'active') !== false);
      const names = new Map(participants.map((p) => [p.userId, p.username]));
      const kick = async (p) => {
        const who = pick(p, 'username') || shortId(p.userId);
        const ok = await confirmDialog({ title: `Kick ${who}?`, body: 'They are removed from the room now and may join again.', confirm: 'Kick' });
        if (ok && await act(`${who} kicked`, () => api('POST', `/v1/ops/participants/${encodeURIComponent(id)}/${encodeURIComponent(p.userId)}/kick`))) reload();
      };
      const sessionBan = async (p) => {
        const who = pick(p, 'username') || shortId(p.userId);
        const v = await confirmDialog({ title: `Ban ${who} from this session?`, body: 'They are removed and cannot get a token for this session again.', confirm: 'Ban from session', fields: [{ name: 'reason', label: 'Reason', required: true }] });
        if (v && await act(`${who} banned from the session`, () => api('POST', `/v1/moderation/sessions/${encodeURIComponent(id)}/bans`, { userId: p.userId, reason: v.reason }))) reload();
      };
      const deleteMessage = async (m) => {
        const ok = await confirmDialog({ title: 'Delete this message?', body: `“${m.body}” is hidden for everyone.`, confirm: 'Delete' });
        if (ok && await act('Message deleted', () => api('DELETE', `/v1/moderation/messages/${encodeURIComponent(m.id)}`))) reload();
      };
      return [
        h('div', { class: 'cards' },
          card('Status', badge(x.status), x.endReason ? `ended: ${label(x.endReason)}` : `started ${fmtAgo(sess.started(x))}`),
          card('Duration', durationCell(x), `since ${fmtTime(sess.started(x))}`),
          card('In the room', fmtNum(pick(stats, 'activeParticipants', 'participantCount', 'viewerCount') ?? active.length), `peak ${fmtNum(pick(stats, 'peakViewers', 'peakParticipants'))} · ${fmtNum(pick(stats, 'uniqueParticipants'))} people in all`),
          card('Chat and gifts', fmtNum(pick(stats, 'totalMessages', 'messages')), `${fmtNum(pick(stats, 'totalGiftsReceived', 'gifts'))} gifts`)),
        h('div', { class: 'grid-2' },
          panel('Participants', h('span', { class: 'muted' }, `${active.length} in the room`), participants.length
            ? table(['User', 'Role', 'State', 'Joined', ''], participants.map((p) => {
              const on = pick(p, 'isActive', 'active') !== false;
              return h('tr', { dataset: { userId: p.userId } },
                h('td', {}, h('div', { class: 'cell-title' }, pick(p, 'username') || shortId(p.userId)), h('div', { class: 'cell-sub mono' }, shortId(p.userId))),
                h('td', {}, label(p.role)),
                h('td', {}, badge(on ? 'active' : 'inactive')),
                h('td', {}, fmtAgo(pick(p, 'joinedAt', 'firstJoinedAt'))),
                h('td', { class: 'actions' }, p.role === 'host' ? null : [
                  on ? h('button', { class: 'btn btn-sm', type: 'button', onclick: () => kick(p) }, 'Kick') : null,
                  h('button', { class: 'btn btn-sm', type: 'button', onclick: () => sessionBan(p) }, 'Ban here'),
                  h('button', { class: 'btn btn-sm btn-danger', type: 'button', onclick: () => banUser(p.userId, pick(p, 'username')).then((ok) => ok && reload()) }, 'Ban')]));
            })) : empty('◌', 'Nobody here', 'No participant has joined this session.')),
          panel('Recent chat', h('span', { class: 'muted' }, `${chat.length} messages`), chat.length
            ? h('ul', { class: 'chat' }, chat.map((m) => h('li', {},
              h('div', { class: 'who' }, pick(m, 'username', 'senderUsername') || names.get(m.userId) || shortId(pick(m, 'userId', 'senderId')), h('span', { class: 'when' }, fmtTime(m.createdAt)),
                m.deletedAt || m.deleted ? null : h('button', { class: 'btn btn-sm btn-ghost', style: 'float:right', type: 'button', onclick: () => deleteMessage(m) }, 'Delete')),
              h('div', { class: m.deletedAt || m.deleted ? 'deleted' : '' }, m.deletedAt || m.deleted ? 'message deleted' : m.body))))
            : empty('✉', 'No messages', 'Chat messages of this session show up here.'))),
      ];
    },
  };

  // ---------- start ----------
  function start() {
    $('#login-form').addEventListener('submit', login);
    $('#logout').addEventListener('click', () => logout());
    window.addEventListener('hashchange', route);
    if (token()) showApp(); else showLogin();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
