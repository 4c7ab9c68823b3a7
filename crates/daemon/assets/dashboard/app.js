'use strict';

// berth's live status dashboard. Plain JavaScript, no framework, no build step: the daemon
// embeds this file as it is.
//
// Data, all JSON from the same origin (the dashboard's cookie goes along by itself):
//   GET /dashboard/api/overview                 daemon, apps, alerts, certificates, deploys, notifiers
//   GET /dashboard/api/series?app=A&window=1h   time series for A's charts (window 1h or 24h)
//   GET /dashboard/api/stream                   Server-Sent Events: `overview` (the overview
//                                               again) and `tick` (new points: fetch series)
// A 401 answer means the token is missing or stale.
//
// Everything the daemon sends is operator data (app names, reasons, errors): it reaches the
// page through textContent and setAttribute only, never as HTML.

const API = '/dashboard/api';
const WINDOWS = ['1h', '24h'];
/** How long to wait before opening the stream again once the server refused it. */
const RETRY_MS = 5000;
const SVG_NS = 'http://www.w3.org/2000/svg';

const state = {
  /** app → '1h' | '24h'. */
  windows: new Map(),
  /** app → the newest series answer for it. */
  series: new Map(),
  /** app → its traffic block, kept across renders so charts and buttons survive updates. */
  traffic: new Map(),
  source: null,
  unauthorized: false,
};

class Unauthorized extends Error {}

// ---------------------------------------------------------------------------------------------
// DOM helpers: children are nodes or text, attributes are set as strings.

function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Formatting.

const DASH = '—';

function fmtBytes(n) {
  if (n === null || n === undefined) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  const digits = i === 0 || Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return `${trim(v.toFixed(digits))} ${units[i]}`;
}

function fmtDuration(secs) {
  if (secs === null || secs === undefined) return DASH;
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return DASH;
  if (ms < 1) return `${trim(ms.toFixed(2))} ms`;
  if (ms < 1000) return `${trim(ms.toFixed(ms < 10 ? 1 : 0))} ms`;
  return `${trim((ms / 1000).toFixed(ms < 10000 ? 2 : 1))} s`;
}

/** A percentage given in percent (CPU). */
function fmtPercent(p) {
  if (p === null || p === undefined) return DASH;
  return `${trim(p.toFixed(p < 10 ? 1 : 0))}%`;
}

/** A percentage given as a fraction (error rate). */
function fmtFraction(f) {
  if (f === null || f === undefined) return DASH;
  const p = f * 100;
  return `${trim(p.toFixed(p === 0 || p >= 10 ? 0 : p < 1 ? 2 : 1))}%`;
}

function fmtRate(r) {
  if (r === null || r === undefined) return DASH;
  return `${trim(r.toFixed(r < 10 ? 2 : r < 100 ? 1 : 0))}/s`;
}

/** "1.50" → "1.5", "2.00" → "2". */
function trim(fixed) {
  return fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed;
}

function fmtDate(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  return new Date(t).toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
}

function fmtClock(unixSecs, withDay) {
  const opts = { hour: '2-digit', minute: '2-digit' };
  if (withDay) Object.assign(opts, { weekday: 'short' });
  return new Date(unixSecs * 1000).toLocaleTimeString(undefined, opts);
}

/** "3 h ago" from a number of seconds. */
function fmtAge(secs) {
  if (secs === null || secs === undefined) return DASH;
  return secs < 5 ? 'just now' : `${fmtDuration(secs)} ago`;
}

/** "3 h ago" from an RFC 3339 time, with the time itself as the element's title. */
function ago(iso) {
  if (!iso) return el('span', {}, DASH);
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return el('span', {}, String(iso));
  const secs = (Date.now() - t) / 1000;
  const text = secs >= 0 ? fmtAge(secs) : `in ${fmtDuration(-secs)}`;
  return el('time', { datetime: iso, title: fmtDate(iso) }, text);
}

/** "37 min" since an RFC 3339 time, with the time itself as the element's title. */
function lasting(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return el('span', {}, String(iso));
  return el('time', { datetime: iso, title: `since ${fmtDate(iso)}` }, fmtDuration((Date.now() - t) / 1000));
}

function humanize(name) {
  return String(name).replace(/_/g, ' ');
}

// ---------------------------------------------------------------------------------------------
// Data.

async function getJson(path) {
  const res = await fetch(API + path, {
    credentials: 'same-origin',
    cache: 'no-store',
    headers: { accept: 'application/json' },
  });
  if (res.status === 401) throw new Unauthorized();
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
}

async function start() {
  try {
    render(await getJson('/overview'));
  } catch (err) {
    if (err instanceof Unauthorized) return showUnauthorized();
    showNotice(`Could not load the overview (${err.message}); waiting for the live stream…`);
  }
  connect();
}

function connect() {
  if (state.source) state.source.close();
  const source = new EventSource(`${API}/stream`);
  state.source = source;
  source.addEventListener('open', () => setLive('live'));
  source.addEventListener('overview', (event) => {
    let overview;
    try {
      overview = JSON.parse(event.data);
    } catch {
      showNotice('The live stream sent an overview that is not JSON.');
      return;
    }
    setLive('live');
    render(overview);
  });
  source.addEventListener('tick', () => {
    for (const app of state.traffic.keys()) loadSeries(app);
  });
  source.addEventListener('error', () => {
    if (source.readyState !== EventSource.CLOSED) {
      // EventSource retries by itself.
      setLive('reconnecting');
      return;
    }
    // The server refused the stream (an error status): ask the overview why, then retry.
    source.close();
    setLive('offline');
    getJson('/overview')
      .then((overview) => {
        render(overview);
        setTimeout(connect, RETRY_MS);
      })
      .catch((err) => {
        if (err instanceof Unauthorized) return showUnauthorized();
        setTimeout(connect, RETRY_MS);
      });
  });
}

async function loadSeries(app) {
  const win = windowOf(app);
  const query = new URLSearchParams({ app, window: win });
  let series;
  try {
    series = await getJson(`/series?${query}`);
  } catch (err) {
    if (err instanceof Unauthorized) return showUnauthorized();
    const block = state.traffic.get(app);
    if (block) block.setError(`Could not load the charts (${err.message}).`);
    return;
  }
  if (windowOf(app) !== win) return; // switched meanwhile; the newer answer draws
  state.series.set(app, series);
  const block = state.traffic.get(app);
  if (block) block.draw(series);
}

function windowOf(app) {
  return state.windows.get(app) || WINDOWS[0];
}

// ---------------------------------------------------------------------------------------------
// Page states.

const LIVE_TEXT = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  offline: 'offline',
  'signed-out': 'signed out',
};

function setLive(status) {
  const live = $('live');
  live.className = `live is-${status}`;
  live.textContent = LIVE_TEXT[status];
}

function showNotice(text) {
  const notice = $('notice');
  notice.replaceChildren(text);
  notice.hidden = false;
}

function showUnauthorized() {
  state.unauthorized = true;
  if (state.source) state.source.close();
  state.source = null;
  setLive('signed-out');
  $('alerts').replaceChildren();
  $('apps').replaceChildren();
  $('other').hidden = true;
  const notice = $('notice');
  notice.className = 'notice signin';
  notice.replaceChildren(
    el('h2', {}, 'Access token needed'),
    el('p', {}, 'This dashboard only opens with its token: open the URL from ',
      el('code', {}, 'berth dashboard url'), ' (run it on the server).'),
  );
  notice.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Rendering the overview.

function render(overview) {
  if (state.unauthorized) return;
  $('notice').hidden = true;
  renderHeader(overview.daemon || {});
  renderAlerts(overview.alerts || []);
  renderApps(overview);
}

function renderHeader(daemon) {
  $('version').textContent = daemon.version ? `v${daemon.version}` : '';
  const parts = [];
  if (daemon.uptime_secs !== undefined) parts.push(`up ${fmtDuration(daemon.uptime_secs)}`);
  if (daemon.state_dir) parts.push(daemon.state_dir);
  $('daemon').textContent = parts.join(' · ');
}

const SEVERITY_ORDER = { critical: 0, warning: 1 };

function renderAlerts(alerts) {
  const active = alerts
    .filter((a) => a.state === 'firing' || a.state === 'pending')
    .sort((a, b) => (a.state === 'firing' ? 0 : 1) - (b.state === 'firing' ? 0 : 1)
      || (SEVERITY_ORDER[a.severity] ?? 2) - (SEVERITY_ORDER[b.severity] ?? 2));
  const section = $('alerts');
  if (active.length === 0) {
    section.replaceChildren(el('div', { class: 'calm' }, el('span', { class: 'dot ok' }),
      'No alerts firing'));
    return;
  }
  section.replaceChildren(...active.map((a) => {
    const tone = a.state === 'pending' ? 'pending' : a.severity === 'critical' ? 'critical' : 'warning';
    return el('div', { class: `alert ${tone}` },
      el('span', { class: 'badge' }, `${a.state} · ${a.severity}`),
      el('div', { class: 'alert-body' },
        el('div', { class: 'alert-title' }, humanize(a.alert), ' ',
          el('span', { class: 'muted' }, [a.app, a.subject].filter(Boolean).join(' · '))),
        el('div', { class: 'alert-detail' },
          `${a.value ?? DASH} (threshold ${a.threshold ?? DASH})`,
          a.since ? [' · for ', lasting(a.since)] : null)));
  }));
}

function renderApps(overview) {
  const apps = overview.apps || [];
  const names = new Set(apps.map((a) => a.name));
  const byApp = (list) => (app) => (list || []).filter((item) => item.app === app);
  const lists = {
    certificates: byApp(overview.certificates),
    deploys: byApp(overview.deploys),
    notifiers: byApp(overview.notifiers),
  };
  const cards = apps.map((app) => renderApp(app, lists));
  if (cards.length === 0) {
    cards.push(el('section', { class: 'card empty' },
      el('p', {}, 'No apps yet. Deploy one with ', el('code', {}, 'berth deploy'), '.')));
  }
  $('apps').replaceChildren(...cards);

  for (const app of [...state.traffic.keys()]) {
    if (!names.has(app)) {
      state.traffic.delete(app);
      state.series.delete(app);
    }
  }

  // Certificates, deploys and notifiers of apps no longer deployed.
  const orphan = (item) => !names.has(item.app);
  const other = {
    certificates: (overview.certificates || []).filter(orphan),
    deploys: (overview.deploys || []).filter(orphan),
    notifiers: (overview.notifiers || []).filter(orphan),
  };
  const panels = detailPanels({ ...other, backups: [] }, true);
  const section = $('other');
  section.hidden = panels.length === 0;
  section.replaceChildren(el('h2', {}, 'Other'), el('div', { class: 'panels' }, panels));
}

function renderApp(app, lists) {
  const instances = app.instances || [];
  const ready = instances.filter((i) => i.state === 'ready').length;
  const health = instances.length === 0 ? 'idle' : ready === instances.length ? 'ok' : ready ? 'warn' : 'bad';
  const head = el('div', { class: 'app-head' },
    el('h2', {}, app.name),
    app.release ? el('span', { class: 'tag' }, `release ${app.release}`) : el('span', { class: 'tag muted' }, 'no release'),
    el('span', { class: `summary ${health}` }, el('span', { class: `dot ${health}` }),
      `${ready}/${instances.length} ready`));

  const card = el('section', { class: 'card app', 'data-app': app.name }, head);
  if (app.maintenance) {
    card.append(el('div', { class: 'banner' }, el('strong', {}, 'Maintenance: '), app.maintenance,
      el('span', { class: 'muted' }, ' — its routes answer 503 meanwhile.')));
  }
  card.append(el('div', { class: 'cols' },
    el('div', { class: 'panel instances' }, el('h3', {}, 'Instances'), instancesTable(instances)),
    el('div', { class: 'panel' }, el('h3', {}, 'Routes'), routesList(app.routes || []))));
  card.append(trafficBlock(app.name).node);
  card.append(el('div', { class: 'panels' }, detailPanels({
    certificates: lists.certificates(app.name),
    backups: app.backups || [],
    deploys: lists.deploys(app.name),
    notifiers: lists.notifiers(app.name),
  }, false)));
  return card;
}

const STATE_TONE = {
  ready: 'ok',
  starting: 'warn',
  unready: 'warn',
  stopping: 'warn',
  backoff: 'bad',
  'crash-loop': 'bad',
  failed: 'bad',
  stopped: 'idle',
};

/** The instances table's columns: heading, cell class. On a phone each row becomes a small
 * card, its cells labelled from `data-label`. */
const INSTANCE_COLUMNS = [
  ['Instance', 'c-instance mono'],
  ['State', 'c-state'],
  ['Release', 'opt mono'],
  ['PID', 'opt mono'],
  ['CPU', 'c-cpu num'],
  ['Memory', 'c-memory'],
  ['Restarts', 'c-restarts num'],
  ['Uptime', 'c-uptime num'],
];

function instancesTable(instances) {
  if (instances.length === 0) return el('p', { class: 'muted' }, 'No instances running.');
  const head = el('tr', {}, INSTANCE_COLUMNS.map(([title, cls]) => el('th', { class: cls }, title)));
  const rows = instances.map((i) => {
    const tone = STATE_TONE[i.state] || 'warn';
    const cells = [
      `${i.service}/${i.instance}`,
      el('span', { class: `state ${tone}` }, el('span', { class: `dot ${tone}` }), i.state),
      i.release ?? DASH,
      i.pid ?? DASH,
      fmtPercent(i.cpu_percent),
      memoryCell(i.memory_bytes, i.memory_max),
      i.restarts ?? DASH,
      fmtDuration(i.uptime_secs),
    ];
    return el('tr', { class: 'instance' }, cells.map((cell, c) => {
      const [title, cls] = INSTANCE_COLUMNS[c];
      const warn = c === 6 && i.restarts > 0 ? ' warn-text' : '';
      return el('td', { class: cls + warn, 'data-label': title }, cell);
    }));
  });
  return el('div', { class: 'table-wrap' },
    el('table', {}, el('thead', {}, head), el('tbody', {}, rows)));
}

function memoryCell(bytes, max) {
  if (!max) return el('span', { class: 'num' }, fmtBytes(bytes));
  const share = Math.min(1, (bytes || 0) / max);
  const fill = el('span', { class: `fill ${share > 0.95 ? 'bad' : share > 0.8 ? 'warn' : ''}` });
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  return el('span', { class: 'memory', title: `${fmtFraction(share)} of the limit` },
    el('span', { class: 'num' }, `${fmtBytes(bytes)} / ${fmtBytes(max)}`),
    el('span', { class: 'meter' }, fill));
}

function routesList(routes) {
  if (routes.length === 0) return el('p', { class: 'muted' }, 'No routes.');
  return el('ul', { class: 'list routes' }, routes.map((r) => el('li', {},
    el('span', { class: 'mono' }, `${r.host ?? '*'}${r.path ?? '/'}`),
    el('span', { class: 'arrow', 'aria-hidden': 'true' }, '→'),
    el('span', { class: 'mono' }, r.target))));
}

function detailPanels(lists, withApp) {
  const panels = [];
  const name = (item) => (withApp ? `${item.app}: ` : '');
  if (lists.certificates.length || !withApp) {
    panels.push(panel('Certificates', lists.certificates, 'No certificates.', (c) => {
      const days = c.days_left;
      const tone = c.error || (days !== null && days !== undefined && days < 7) ? 'bad'
        : days !== null && days !== undefined && days < 30 ? 'warn' : 'ok';
      return [
        el('div', { class: 'row' }, el('span', { class: 'mono grow' }, name(c), (c.names || []).join(', ')),
          el('span', { class: `pill ${tone}`, title: c.not_after ? `valid until ${fmtDate(c.not_after)}` : null },
            days === null || days === undefined ? 'none yet' : days < 0 ? 'expired' : `${days} d left`)),
        c.error ? el('div', { class: 'problem' }, c.error) : null,
      ];
    }));
  }
  if (!withApp) {
    panels.push(panel('Backups', lists.backups, 'No backups defined.', (b) => {
      const age = b.age_secs;
      const drill = b.last_drill;
      return [
        el('div', { class: 'row' }, el('span', { class: 'grow' }, el('strong', {}, b.name)),
          b.last_success
            ? el('span', { class: 'pill ok', title: fmtDate(b.last_success) }, age !== null && age !== undefined ? fmtAge(age) : ago(b.last_success))
            : el('span', { class: 'pill warn' }, 'never succeeded')),
        el('div', { class: 'sub' }, 'last drill: ', drill
          ? [el('span', { class: drill.ok ? 'ok-text' : 'bad-text' }, drill.ok ? 'ok' : 'failed'), ' · ', ago(drill.at)]
          : 'none yet'),
        b.problem ? el('div', { class: 'problem' }, b.problem) : null,
      ];
    }));
  }
  if (lists.deploys.length || !withApp) {
    panels.push(panel('Recent deploys', lists.deploys.slice(0, 6), 'No deploys yet.', (d) => [
      el('div', { class: 'row' },
        el('span', { class: 'grow' }, name(d), el('strong', {}, d.kind), ' ', el('span', { class: 'mono' }, d.release ?? '')),
        el('span', { class: `pill ${resultTone(d.result)}` }, humanize(d.result))),
      el('div', { class: 'sub' }, ago(d.started),
        d.duration_ms !== null && d.duration_ms !== undefined ? ` · took ${fmtMs(d.duration_ms)}` : ''),
      d.reason ? el('div', { class: 'problem' }, d.reason) : null,
    ]));
  }
  if (lists.notifiers.length || !withApp) {
    panels.push(panel('Notifiers', lists.notifiers, 'No notifiers configured.', (n) => [
      el('div', { class: 'row' }, el('span', { class: 'grow' }, name(n), n.channel),
        el('span', { class: `pill ${n.ok ? 'ok' : 'bad'}` }, n.ok ? 'ok' : 'failing')),
      n.last_error ? el('div', { class: 'problem' }, n.last_error) : null,
    ]));
  }
  return panels;
}

function resultTone(result) {
  if (result === 'ok' || result === 'succeeded') return 'ok';
  if (result === 'running' || result === 'in_progress') return 'info';
  return 'bad';
}

function panel(title, items, empty, item) {
  return el('div', { class: 'panel' }, el('h3', {}, title),
    items.length === 0
      ? el('p', { class: 'muted' }, empty)
      : el('ul', { class: 'list' }, items.map((i) => el('li', {}, item(i)))));
}

// ---------------------------------------------------------------------------------------------
// Charts: hand-written SVG, one polyline per run of points without a gap. The plot stretches
// to its box (preserveAspectRatio none, strokes that do not scale); its labels are HTML beside
// it, so they keep their size at any width.

const CHARTS = [
  { key: 'requests', title: 'Requests', fmt: fmtRate, floor: 1, lines: [['requests_per_sec', 'req/s']] },
  { key: 'errors', title: 'Error rate', fmt: fmtFraction, floor: 0.01, lines: [['error_rate', 'errors']] },
  { key: 'latency', title: 'Latency', fmt: fmtMs, floor: 10, lines: [['p50_ms', 'p50'], ['p95_ms', 'p95'], ['p99_ms', 'p99']] },
  { key: 'cpu', title: 'CPU', fmt: fmtPercent, floor: 1, lines: [['cpu_percent', 'CPU']] },
  { key: 'memory', title: 'Memory', fmt: fmtBytes, floor: 1 << 20, binary: true, lines: [['memory_bytes', 'memory']] },
];

/** The plot's own coordinates: x 0…W over the window, y 0…H from the top. */
const W = 1000;
const H = 100;

/** The app's traffic block (window switch and charts), made once and kept across renders. */
function trafficBlock(app) {
  let block = state.traffic.get(app);
  if (block) return block;
  const buttons = WINDOWS.map((w) => el('button', { type: 'button', 'data-window': w, 'aria-pressed': String(w === windowOf(app)) }, w));
  const charts = el('div', { class: 'charts' }, el('p', { class: 'muted' }, 'Loading charts…'));
  const node = el('div', { class: 'traffic' },
    el('div', { class: 'traffic-head' }, el('h3', {}, 'Traffic'),
      el('div', { class: 'seg', role: 'group', 'aria-label': 'Time window' }, buttons)),
    charts);
  for (const button of buttons) {
    button.addEventListener('click', () => {
      state.windows.set(app, button.dataset.window);
      for (const b of buttons) b.setAttribute('aria-pressed', String(b === button));
      loadSeries(app);
    });
  }
  block = {
    node,
    draw(series) {
      charts.replaceChildren(...CHARTS.map((spec) => chart(spec, series)));
    },
    setError(text) {
      if (!state.series.has(app)) charts.replaceChildren(el('p', { class: 'problem' }, text));
    },
  };
  state.traffic.set(app, block);
  loadSeries(app);
  return block;
}

function chart(spec, series) {
  const data = spec.lines.map(([key]) => (series.series && series.series[key]) || []);
  const n = Math.max(0, ...data.map((d) => d.length));
  const values = data.flat().filter((v) => v !== null && v !== undefined);
  // The headline: the newest value (of p95 for latency).
  const latest = lastValue(data[spec.lines.length > 1 ? 1 : 0]);
  const figure = el('figure', { class: `chart-box ${spec.key}` },
    el('figcaption', {},
      el('span', { class: 'chart-title' }, spec.title),
      el('span', { class: 'chart-now' }, latest === null ? '' : spec.fmt(latest))));
  if (n === 0 || values.length === 0) {
    figure.append(el('div', { class: 'chart-empty' }, 'no data'));
    return figure;
  }

  const max = niceCeil(Math.max(spec.floor, ...values), spec.binary);
  const x = (i) => (n === 1 ? W : (i * W) / (n - 1));
  const y = (v) => H * (1 - Math.min(Math.max(v, 0), max) / max);
  const step = series.step_secs || 0;
  const start = series.start || 0;
  const end = start + (n - 1) * step;
  const withDay = end - start > 12 * 3600;

  const plot = svg('svg', {
    class: 'chart', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none',
    role: 'img', 'aria-label': `${spec.title}, ${series.window || ''}`,
  },
  svg('line', { class: 'grid', x1: 0, x2: W, y1: 0, y2: 0 }),
  svg('line', { class: 'grid', x1: 0, x2: W, y1: H / 2, y2: H / 2 }),
  svg('line', { class: 'axis', x1: 0, x2: 0, y1: 0, y2: H }),
  svg('line', { class: 'axis', x1: 0, x2: W, y1: H, y2: H }));

  data.forEach((line, s) => {
    for (const run of runs(line)) {
      const points = run.map((i) => `${x(i).toFixed(1)},${y(line[i]).toFixed(2)}`);
      // A lone point: a line of length zero, which round caps draw as a dot.
      if (points.length === 1) points.push(points[0]);
      if (spec.lines.length === 1) {
        const first = x(run[0]).toFixed(1);
        const last = x(run[run.length - 1]).toFixed(1);
        plot.append(svg('polygon', { class: `area s${s}`, points: [...points, `${last},${H}`, `${first},${H}`].join(' ') }));
      }
      plot.append(svg('polyline', { class: `line s${s}`, points: points.join(' ') }));
    }
  });
  const cursor = svg('line', { class: 'cursor', x1: 0, x2: 0, y1: 0, y2: H, visibility: 'hidden' });
  plot.append(cursor);

  const tip = el('div', { class: 'tip', hidden: true });
  const area = el('div', { class: 'plot-area' }, plot, tip);
  figure.append(el('div', { class: 'plot' },
    el('div', { class: 'y-labels' }, el('span', {}, spec.fmt(max)), el('span', {}, spec.fmt(0))),
    area,
    el('div', { class: 'x-labels' }, el('span', {}, fmtClock(start, withDay)), el('span', {}, fmtClock(end, withDay)))));
  if (spec.lines.length > 1) {
    figure.append(el('div', { class: 'legend' }, spec.lines.map(([, label], s) =>
      el('span', {}, el('span', { class: `swatch s${s}` }), label))));
  }

  // Hover (or tap): the values at the nearest point in time.
  const hide = () => {
    cursor.setAttribute('visibility', 'hidden');
    tip.hidden = true;
  };
  const show = (event) => {
    const box = plot.getBoundingClientRect();
    if (box.width === 0) return hide();
    const i = Math.round(((event.clientX - box.left) / box.width) * (n - 1));
    if (i < 0 || i >= n) return hide();
    cursor.setAttribute('x1', x(i).toFixed(1));
    cursor.setAttribute('x2', x(i).toFixed(1));
    cursor.setAttribute('visibility', 'visible');
    const parts = spec.lines.map(([, label], s) => {
      const v = data[s][i] ?? null;
      return spec.lines.length > 1 ? `${label} ${spec.fmt(v)}` : spec.fmt(v);
    });
    tip.replaceChildren(el('span', { class: 'tip-time' }, fmtClock(start + i * step, withDay)),
      el('span', {}, parts.join(' · ')));
    tip.hidden = false;
    // Beside the cursor, on the side with more room, never beyond the plot.
    const at = (x(i) / W) * box.width;
    const width = tip.offsetWidth;
    const left = at > box.width / 2 ? at - width - 8 : at + 8;
    tip.style.left = `${Math.max(0, Math.min(left, box.width - width))}px`;
  };
  plot.addEventListener('pointermove', show);
  plot.addEventListener('pointerdown', show);
  plot.addEventListener('pointerleave', hide);
  return figure;
}

/** The index runs of `line` without nulls: [[0, 1, 2], [5, 6]]. */
function runs(line) {
  const out = [];
  let run = [];
  line.forEach((v, i) => {
    if (v === null || v === undefined || Number.isNaN(v)) {
      if (run.length) out.push(run);
      run = [];
    } else {
      run.push(i);
    }
  });
  if (run.length) out.push(run);
  return out;
}

function lastValue(line) {
  for (let i = (line || []).length - 1; i >= 0; i -= 1) {
    if (line[i] !== null && line[i] !== undefined) return line[i];
  }
  return null;
}

/** A round number at least `v`: 1, 2, 2.5, 5 × a power of ten (of 1024 for bytes). */
function niceCeil(v, binary) {
  if (!(v > 0)) return 1;
  if (binary) {
    let unit = 1;
    while (v / unit >= 1024) unit *= 1024;
    return niceCeil(v / unit, false) * unit;
  }
  const exp = 10 ** Math.floor(Math.log10(v));
  const f = v / exp;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return nice * exp;
}

start();
