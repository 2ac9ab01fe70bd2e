// Topology: the service graph as an SVG, laid out in layers left to right; pan (drag), zoom
// (wheel, buttons), fit, focus on a node and its neighbours, hide idle nodes. Nodes carry
// their health as colour, a glyph and a border style; edges are labelled with the request
// rate, error share or p95 (a switch). Clicking a node or an edge opens the side panel.
// A node with a firing alert wears a red ring with "!" and names its alerts in its tooltip
// and panel; the marks follow the alerts every 15 s. A graph of several clusters is drawn in
// one labelled band per cluster, and an edge between clusters is traced in a dashed violet
// underlay that leaves its health colour readable.

import { h, s, clear, message } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import { LEVELS, normalise } from '../health.js';
import { loadGraph, appOf, versionOf } from '../graph-data.js';
import { layout, edgePath } from '../graph-layout.js';
import { renderPanel, fillPanelAlerts } from './panel.js';
import { loadFiring, loadAliases, firingFor, nodeNames, alertName, every } from '../alert-match.js';
import { known, isCross, clustersOf, colourClass, filterNote } from '../clusters.js';
import * as anomalies from '../anomalies.js';

export const title = 'Topology';

const TYPES = [['workload', 'Workloads'], ['app', 'Apps'], ['versionedApp', 'Versioned apps'], ['service', 'Services']];
const SOURCES = [['metrics', 'Istio metrics'], ['traces', 'Traces'], ['both', 'Both']];
const EDGE_LABELS = [['rate', 'Request rate'], ['error', 'Error %'], ['p95', 'p95 latency']];

let live = null; // the rendered graph, for update() without refetching

export const edgeKey = (e) => `${e.source}>${e.target}>${e.protocol || ''}`;

/** A lock on an edge whose requests all went over mutual TLS; an open lock on a partly secured one. */
function lockOf(e) {
  if (!(e.mtlsShare > 0)) return '';
  return e.mtlsShare >= 0.995 ? '\u{1F512} ' : '\u{1F513} ';
}

function edgeLabel(e, mode) {
  const lock = lockOf(e);
  if (mode === 'error') return lock + (e.requests > 0 ? fmt.pct(e.errorRate) : '');
  if (mode === 'p95') return lock + (e.responseTimeMs?.p95 !== undefined ? fmt.ms(e.responseTimeMs.p95) : 'p95 –');
  return lock + fmt.rate(e.requestRate);
}

export async function render(root, { params, shared }) {
  live = null;
  const type = params.get('type') || 'workload';
  const source = params.get('source') || 'metrics';
  const mode = params.get('edge') || 'rate';
  const hideIdle = params.get('idle') === 'hide';
  const focus = params.get('focus') || '';
  // `at` (ms): the graph of the window around that moment (an event's link), not of now.
  const at = Number(params.get('at')) || 0;
  const end = at ? Math.min(Date.now() / 1000, at / 1000 + shared.seconds / 2) : undefined;

  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Graph options' },
    h('label', {}, 'Graph ', h('select', { onchange: (e) => url.update({ type: e.target.value }) },
      TYPES.map(([v, l]) => h('option', { value: v, selected: v === type }, l)))),
    h('label', {}, 'Source ', h('select', { onchange: (e) => url.update({ source: e.target.value }) },
      SOURCES.map(([v, l]) => h('option', { value: v, selected: v === source }, l)))),
    h('fieldset', { class: 'switch' }, h('legend', {}, 'Edge labels'),
      EDGE_LABELS.map(([v, l]) => h('label', {}, h('input', {
        type: 'radio', name: 'edge-label', value: v, checked: v === mode,
        onchange: () => url.update({ edge: v === 'rate' ? '' : v }, { replace: true }),
      }), ` ${l}`))),
    h('label', {}, h('input', { type: 'checkbox', checked: hideIdle, onchange: (e) => url.update({ idle: e.target.checked ? 'hide' : '' }) }), ' Hide idle'),
    h('span', { class: 'find' }, h('label', { for: 'node-find' }, 'Find '),
      h('input', { id: 'node-find', type: 'search', list: 'node-names', placeholder: 'node name', size: 16,
        onchange: (e) => e.target.value && url.update({ focus: e.target.value }) }),
      h('datalist', { id: 'node-names' })),
    focus ? h('span', { class: 'chip' }, `Focus: ${focus} `, h('button', { type: 'button', class: 'link', onclick: () => url.update({ focus: '' }) }, 'show all')) : null,
    at ? h('span', { class: 'chip at-chip' }, `Around ${fmt.time(at, true)} `, h('button', { type: 'button', class: 'link', onclick: () => url.update({ at: '' }) }, 'back to now')) : null,
    h('span', { class: 'zoom' },
      h('button', { type: 'button', title: 'Zoom in', 'aria-label': 'Zoom in', onclick: () => live?.zoomBy(1.25) }, '+'),
      h('button', { type: 'button', title: 'Zoom out', 'aria-label': 'Zoom out', onclick: () => live?.zoomBy(0.8) }, '−'),
      h('button', { type: 'button', title: 'Fit the graph', onclick: () => live?.fit() }, 'Fit')));
  const status = h('div', { class: 'status-line' }, message('loading', 'Loading the graph…'));
  const canvas = h('div', { class: 'graph-canvas', tabindex: -1 });
  const panel = h('aside', { class: 'side-panel', 'aria-label': 'Details', hidden: true });
  const legend = h('p', { class: 'graph-legend' }, 'Health: ',
    Object.entries(LEVELS).map(([k, v]) => h('span', { class: `health health-${k}` }, h('span', { class: 'health-glyph', 'aria-hidden': 'true' }, v.glyph), ` ${v.label}  `)),
    ' · dashed border: degraded, double border: failure · \u{1F512} every request over mutual TLS, \u{1F513} some · ',
    h('span', { class: 'alert-key' }, h('span', { class: 'alert-glyph', 'aria-hidden': 'true' }, '!'), ' red ring: a firing alert'),
    ' · ', h('span', { class: 'anomaly-key' }, h('span', { class: 'anomaly-glyph', 'aria-hidden': 'true' }, '∿'), at ? ' violet ring: an anomaly in the window' : ' violet ring: an anomaly now'),
    ' · drag to pan, wheel to zoom, double-click a node to focus');
  root.append(h('h1', {}, 'Topology'), toolbar,
    filterNote(shared.cluster, `Edges with an end in ${shared.cluster}; nodes of other clusters are shown as their peers.`),
    status, h('div', { class: 'graph-wrap' }, canvas, panel), legend);

  let g;
  const alertsP = loadFiring();
  const aliasesP = loadAliases();
  try {
    g = await loadGraph({ type, seconds: shared.seconds, cluster: shared.cluster, ns: shared.ns, source, end: end?.toFixed(3) });
  } catch (e) {
    clear(status).append(message('error', `The graph could not be loaded: ${e.message}`));
    return;
  }
  let nodes = g.nodes, edges = g.edges;
  toolbar.querySelector('#node-names').append(...[...new Set(nodes.map((n) => n.name))].sort().map((n) => h('option', { value: n })));
  if (focus) {
    const centre = new Set(nodes.filter((n) => n.name === focus || n.id === focus).map((n) => n.id));
    const keep = new Set(centre);
    for (const e of edges) {
      if (centre.has(e.source)) keep.add(e.target);
      if (centre.has(e.target)) keep.add(e.source);
    }
    nodes = nodes.filter((n) => keep.has(n.id));
    edges = edges.filter((e) => keep.has(e.source) && keep.has(e.target));
  }
  if (hideIdle) {
    edges = edges.filter((e) => e.requestRate > 0 || e.requests > 0);
    const busy = new Set(edges.flatMap((e) => [e.source, e.target]));
    nodes = nodes.filter((n) => busy.has(n.id) || n.requestRateIn > 0 || n.requestRateOut > 0);
  }
  clear(status);
  if (!nodes.length) {
    const where = [shared.cluster ? ` in cluster ${shared.cluster}` : '', shared.ns ? ` in namespace ${shared.ns}` : ''].join('');
    status.append(message('warn', focus ? `No node named “${focus}” has traffic in the last ${shared.range}.` : `No traffic in the last ${shared.range}${where}.`));
    return;
  }
  const clusters = clustersOf(nodes);
  const byIdAll = new Map(nodes.map((n) => [n.id, n]));
  const crossing = edges.filter((e) => isCross(e, byIdAll.get(e.source), byIdAll.get(e.target))).length;
  status.append(h('p', { class: 'muted' }, `${nodes.length} nodes`, clusters.length > 1 ? ` in ${clusters.length} clusters` : '',
    `, ${edges.length} edges`, crossing ? ` (${crossing} cross-cluster)` : '', ` over the last ${shared.range}.`,
    h('span', { class: 'graph-path' }, ` ${servedBy(g)}`)));
  if (clusters.length > 1 || crossing) {
    legend.append(h('span', { class: 'cluster-legend' }, ' · ', h('span', { class: 'cross-key' }, crossKey(), ' cross-cluster'),
      clusters.length > 1 ? [' · one band per cluster: ', clusters.map((c) => h('span', { class: `cluster-key ${colourClass(c, clusters)}` }, c))] : null));
  }
  draw(canvas, panel, nodes, edges, g, mode, type, clusters);
  const mine = live;
  const [aliases, fired] = await Promise.all([aliasesP, alertsP]);
  if (live !== mine) return; // navigated away meanwhile
  live.aliases = aliases;
  markAlerts(fired.index);
  update(params, null);
  const anomalyWindow = end ? [end * 1000 - shared.seconds * 1000, end * 1000] : null;
  const loadAnomalies = (fresh) => anomalies.load('', { fresh }).then((d) => { if (live === mine) markAnomalies(d, anomalyWindow); }).catch(() => {});
  await loadAnomalies(false);
  every(root, async () => {
    const next = await loadFiring({ fresh: true });
    if (!next.error && live === mine) markAlerts(next.index);
    loadAnomalies(true);
  });
}

/** Which path computed the graph's metric figures (the server says, and why not the fast one). */
function servedBy(g) {
  if (g.computedFrom === 'aggregates') return `From per-edge aggregates (${(g.resolutionMs || 0) / 1000} s buckets).`;
  if (g.computedFrom === 'promql') return `From PromQL over raw series${g.fallbackReason ? `: ${g.fallbackReason}` : ''}.`;
  return '';
}

/** The anomalies of a node: current ones, or (for a past window) those overlapping it. */
function anomaliesOf(data, n, window) {
  const names = [n.name, n.app, appOf(n)];
  if (!window) return anomalies.currentOf(data, names).map((a) => `${a.service} ${anomalies.describe(a)}`);
  return (data?.history || []).filter((a) => anomalies.about(a, names) && a.start <= window[1] && (a.end ?? Date.now()) >= window[0])
    .map((a) => `${a.service} ${anomalies.signalName(a.signal)} from ${fmt.time(a.start)}`);
}

/** A node's tooltip and label: its own text, then its firing alerts and anomalies. */
function retitle(el) {
  const alerts = el.dataset.alerts ? `\nFiring: ${el.dataset.alerts.split(',').join(', ')}` : '';
  const odd = el.dataset.anomalies ? `\nAnomaly: ${el.dataset.anomalies}` : '';
  el.querySelector(':scope > title').textContent = el.dataset.title + alerts + odd;
  el.setAttribute('aria-label', el.dataset.label + (alerts ? `; firing alerts: ${el.dataset.alerts.split(',').join(', ')}` : '')
    + (odd ? `; anomaly: ${el.dataset.anomalies}` : ''));
}

/** Puts the anomaly mark (a violet ring with "∿", left of the alert mark) on anomalous nodes. */
function markAnomalies(data, window) {
  if (!live || !data) return;
  for (const n of live.nodes) {
    const el = live.nodeEls.get(n.id);
    const p = live.pos.get(n.id);
    if (!el || !p) continue;
    const list = anomaliesOf(data, n, window);
    el.querySelector(':scope > .anomaly-mark')?.remove();
    el.classList.toggle('anomalous', list.length > 0);
    el.dataset.anomalies = list.join('; ');
    retitle(el);
    if (list.length) {
      el.append(s('g', { class: 'anomaly-mark', transform: `translate(${p.w - 26},2)`, 'aria-hidden': 'true' },
        s('circle', { r: 10, class: 'anomaly-ring' }),
        s('text', { y: 5, 'text-anchor': 'middle', class: 'anomaly-glyph' }, '∿')));
    }
  }
}

/** Puts the alert mark on every node with a firing alert (and takes it off the others). */
function markAlerts(index) {
  if (!live) return;
  live.alerts = index;
  for (const n of live.nodes) {
    const el = live.nodeEls.get(n.id);
    const p = live.pos.get(n.id);
    if (!el || !p) continue;
    const list = live.alertsOf(n);
    const names = [...new Set(list.map(alertName))];
    el.querySelector(':scope > .alert-mark')?.remove();
    el.classList.toggle('alerting', list.length > 0);
    el.dataset.alerts = names.join(',');
    retitle(el);
    if (list.length) {
      el.append(s('g', { class: 'alert-mark', transform: `translate(${p.w - 2},2)`, 'aria-hidden': 'true' },
        s('circle', { r: 10, class: 'alert-ring' }),
        s('text', { y: 5, 'text-anchor': 'middle', class: 'alert-bang' }, '!')));
    }
  }
  const sel = url.current().params.get('sel') || '';
  const node = live.byId.get(sel) || live.nodes.find((n) => n.name === sel);
  const box = live.panel.querySelector('.panel-alerts');
  if (node && box && !live.panel.hidden) fillPanelAlerts(box, node, live.alertsOf(node), live.namesOf(node));
}

/** A short dashed violet line: the legend's sample of a cross-cluster edge. */
function crossKey() {
  return s('svg', { class: 'cross-sample', width: 34, height: 10, 'aria-hidden': 'true' },
    s('path', { d: 'M1,5H33', class: 'edge-cross' }), s('path', { d: 'M1,5H33', class: 'edge-line' }));
}

function draw(canvas, panel, nodes, edges, g, mode, type, clusters = []) {
  const grouped = type === 'workload' || type === 'versionedApp';
  const groupOf = (n) => (grouped && n.nodeType !== 'unknown' && (versionOf(n) || n.app) ? `${n.cluster}/${n.namespace}/${appOf(n)}` : null);
  const multi = clusters.length > 1;
  const laneOf = (n) => (multi && known(n.cluster) ? n.cluster : null);
  const L = layout(nodes, edges, groupOf, laneOf);
  const byId = new Map(nodes.map((n) => [n.id, n]));

  const view = s('g', { class: 'viewport' });
  const svg = s('svg', { class: 'graph', role: 'group', 'aria-label': 'Service graph' },
    s('defs', {}, ...['healthy', 'degraded', 'failure', 'na', 'sel', 'cross'].map((k) => s('marker', {
      id: `arrow-${k}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
    }, s('path', { d: 'M0,0L10,5L0,10z', class: `arrow arrow-${k}` })))),
    view);
  clear(canvas).append(svg);

  const gLanes = s('g', { class: 'lanes' });
  for (const lane of L.lanes) {
    gLanes.append(s('g', { class: `cluster-lane ${colourClass(lane.key, clusters)}`, dataset: { cluster: lane.key } },
      s('rect', { x: lane.x, y: lane.y, width: lane.w, height: lane.h, rx: 10 }),
      s('text', { x: lane.x + 12, y: lane.y + 17, class: 'lane-label' }, `cluster ${lane.key}`,
        s('tspan', { class: 'lane-count' }, `  ${lane.members.length} node${lane.members.length === 1 ? '' : 's'}`))));
  }
  const gGroups = s('g', { class: 'groups' });
  for (const gr of L.groups) {
    const name = gr.key.split('/').pop();
    gGroups.append(s('g', { class: 'app-group' },
      s('rect', { x: gr.x, y: gr.y, width: gr.w, height: gr.h, rx: 8 }),
      s('text', { x: gr.x + 8, y: gr.y + 14 }, `app ${name}`)));
  }
  const gEdges = s('g', { class: 'edges' });
  const edgeEls = new Map();
  for (const e of edges) {
    const a = L.pos.get(e.source), b = L.pos.get(e.target);
    if (!a || !b) continue;
    const p = edgePath(a, b);
    const hl = normalise(e.health);
    const labelText = s('text', { x: p.mx, y: p.my - 4, 'text-anchor': 'middle', class: 'edge-label' }, edgeLabel(e, mode));
    const src = byId.get(e.source), dst = byId.get(e.target);
    const srcName = src?.name, dstName = dst?.name;
    const cross = isCross(e, src, dst);
    const across = cross ? ` (cross-cluster: ${src?.cluster} → ${dst?.cluster})` : '';
    const secured = e.mtlsShare > 0 ? `, mTLS ${fmt.pct(e.mtlsShare)}` : '';
    const el = s('g', {
      class: `edge health-${hl}${cross ? ' cross-cluster' : ''}${e.mtlsShare >= 0.995 ? ' secured' : ''}`, tabindex: 0, role: 'button',
      'aria-label': `Edge ${srcName} to ${dstName}${across}: ${fmt.rate(e.requestRate)}, ${fmt.pct(e.errorRate)} errors${secured}, ${LEVELS[hl].label}`,
      dataset: { source: srcName, target: dstName, sourceCluster: src?.cluster || '', targetCluster: dst?.cluster || '', crossCluster: String(cross), mtls: e.mtlsShare === undefined ? '' : String(e.mtlsShare) },
      onclick: () => url.update({ sel: `edge:${edgeKey(e)}` }),
      onkeydown: (ev) => { if (ev.key === 'Enter') url.update({ sel: `edge:${edgeKey(e)}` }); },
    }, s('title', {}, `${srcName} → ${dstName}${across}`),
    s('path', { d: p.d, class: 'edge-hit' }),
    cross ? s('path', { d: p.d, class: 'edge-cross' }) : null,
    s('path', { d: p.d, class: 'edge-line', 'marker-end': `url(#arrow-${cross && (hl === 'healthy' || hl === 'na') ? 'cross' : hl})` }),
    labelText);
    edgeEls.set(edgeKey(e), { el, label: labelText, e });
    gEdges.append(el);
  }
  spreadLabels([...edgeEls.values()].map((x) => x.label));
  const gNodes = s('g', { class: 'nodes' });
  const nodeEls = new Map();
  for (const n of nodes) {
    const p = L.pos.get(n.id);
    const hl = normalise(n.health);
    const info = LEVELS[hl];
    const ver = versionOf(n);
    const sub = `${fmt.rate(n.requestRateIn || n.requestRateOut)}${n.requestRateIn ? ' in' : ' out'} · ${fmt.pct(n.errorRate)} err`;
    const select = () => url.update({ sel: n.id });
    const tip = `${n.name} (${n.namespace || 'no namespace'}${n.cluster ? `, ${n.cluster}` : ''}) — ${info.label}`;
    const label = `${n.name}${ver && n.version ? ` ${ver}` : ''}${multi && known(n.cluster) ? ` in cluster ${n.cluster}` : ''}: ${info.label}, ${sub}`;
    const el = s('g', {
      class: `node health-${hl} type-${n.nodeType || 'workload'}${multi && known(n.cluster) ? ` ${colourClass(n.cluster, clusters)}` : ''}`, tabindex: 0, role: 'button',
      transform: `translate(${p.x},${p.y})`,
      'aria-label': label,
      dataset: { nodeName: n.name, nodeId: n.id, cluster: n.cluster || '', title: tip, label },
      onclick: select,
      ondblclick: (ev) => { ev.stopPropagation(); url.update({ focus: n.name, sel: n.id }); },
      onkeydown: (ev) => { if (ev.key === 'Enter') select(); },
    }, s('title', {}, tip),
    s('rect', { width: p.w, height: p.h, rx: 6, class: 'node-box' }),
    multi && known(n.cluster) ? s('rect', { x: 1, y: 6, width: 4, height: p.h - 12, rx: 2, class: 'cluster-stripe', 'aria-hidden': 'true' }) : null,
    hl === 'failure' ? s('rect', { x: 3, y: 3, width: p.w - 6, height: p.h - 6, rx: 4, class: 'node-inner' }) : null,
    s('text', { x: 10, y: 20, class: 'node-glyph', 'aria-hidden': 'true' }, info.glyph),
    s('text', { x: 26, y: 20, class: 'node-name' }, clip(n.name + (n.version ? ` ${n.version}` : ''), 22)),
    s('text', { x: 26, y: 38, class: 'node-sub' }, sub));
    nodeEls.set(n.id, el);
    gNodes.append(el);
  }
  view.append(gLanes, gGroups, gEdges, gNodes);

  // Pan and zoom.
  const t = { k: 1, x: 0, y: 0 };
  const apply = () => {
    view.setAttribute('transform', `translate(${t.x},${t.y}) scale(${t.k})`);
    svg.classList.toggle('far', t.k < 0.5);
  };
  const size = () => { const r = svg.getBoundingClientRect(); return [r.width || 800, r.height || 500]; };
  const fit = () => {
    const [w, hgt] = size();
    t.k = Math.min(1.4, (w - 40) / L.width, (hgt - 40) / L.height);
    t.k = Math.max(t.k, 0.05);
    t.x = (w - L.width * t.k) / 2;
    t.y = (hgt - L.height * t.k) / 2;
    apply();
  };
  const zoomAt = (f, cx, cy) => {
    const k = Math.min(4, Math.max(0.05, t.k * f));
    t.x = cx - ((cx - t.x) * k) / t.k;
    t.y = cy - ((cy - t.y) * k) / t.k;
    t.k = k;
    apply();
  };
  svg.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    const r = svg.getBoundingClientRect();
    zoomAt(ev.deltaY < 0 ? 1.15 : 1 / 1.15, ev.clientX - r.left, ev.clientY - r.top);
  }, { passive: false });
  let drag = null;
  svg.addEventListener('pointerdown', (ev) => {
    if (ev.target.closest('.node, .edge')) return;
    drag = { x: ev.clientX - t.x, y: ev.clientY - t.y };
    svg.setPointerCapture(ev.pointerId);
    svg.classList.add('dragging');
  });
  svg.addEventListener('pointermove', (ev) => {
    if (!drag) return;
    t.x = ev.clientX - drag.x; t.y = ev.clientY - drag.y; apply();
  });
  const end = () => { drag = null; svg.classList.remove('dragging'); };
  svg.addEventListener('pointerup', end);
  svg.addEventListener('pointercancel', end);
  fit();

  live = {
    g, nodes, edges, byId, nodeEls, edgeEls, panel, mode, pos: L.pos,
    alerts: new Map(),
    aliases: new Map(),
    namesOf: (n) => nodeNames(n, live.aliases),
    alertsOf: (n) => firingFor(live.alerts, live.namesOf(n), n.cluster),
    fit,
    zoomBy: (f) => { const [w, hgt] = size(); zoomAt(f, w / 2, hgt / 2); },
    centreOn: (id) => {
      const p = L.pos.get(id);
      if (!p) return;
      const [w, hgt] = size();
      if (t.k < 0.6) t.k = 0.8;
      t.x = w / 2 - (p.x + p.w / 2) * t.k; t.y = hgt / 2 - (p.y + p.h / 2) * t.k;
      apply();
    },
  };
}

/** Nudges edge labels that would overlap (same gap between columns) apart vertically. */
function spreadLabels(labels) {
  const cols = new Map();
  for (const t of labels) {
    const x = Math.round(+t.getAttribute('x') / 40);
    if (!cols.has(x)) cols.set(x, []);
    cols.get(x).push(t);
  }
  for (const ts of cols.values()) {
    ts.sort((a, b) => +a.getAttribute('y') - +b.getAttribute('y'));
    let last = -Infinity;
    for (const t of ts) {
      const y = Math.max(+t.getAttribute('y'), last + 13);
      t.setAttribute('y', y);
      last = y;
    }
  }
}

const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

/** Handles changes that need no refetch: the selection and the edge label mode. */
export function update(params, prev) {
  if (!live) return false;
  if (prev) {
    for (const k of new Set([...params.keys(), ...prev.keys()])) {
      if (!['sel', 'edge'].includes(k) && params.get(k) !== prev.get(k)) return false;
    }
  }
  const mode = params.get('edge') || 'rate';
  if (mode !== live.mode) {
    live.mode = mode;
    for (const { label, e } of live.edgeEls.values()) label.textContent = edgeLabel(e, mode);
  }
  const sel = params.get('sel') || '';
  // `sel` is a node id, a node name (links from traces and stats), or `edge:<key>`.
  const node = live.byId.get(sel) || live.nodes.find((n) => n.name === sel);
  const selId = node ? node.id : sel;
  for (const [id, el] of live.nodeEls) el.classList.toggle('selected', id === selId);
  for (const [k, { el }] of live.edgeEls) el.classList.toggle('selected', `edge:${k}` === sel);
  const wasHidden = live.panel.hidden;
  const done = () => { if (wasHidden !== live.panel.hidden) live.fit(); return true; };
  if (!sel) { live.panel.hidden = true; return done(); }
  const edge = sel.startsWith('edge:') ? live.edgeEls.get(sel.slice(5))?.e : null;
  if (!node && !edge) { live.panel.hidden = true; return done(); }
  live.panel.hidden = false;
  renderPanel(live.panel, { node, edge, graph: live, params });
  done();
  if (node && !prev && live.nodes.length > 40) live.centreOn(node.id);
  return true;
}
