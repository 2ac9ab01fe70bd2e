// The topology's side panel for a node or an edge: its RED charts over the window, its
// response-code breakdown, links to its traces, metrics and Istio config, the validation
// findings on that config, and a node's firing alerts. An edge between clusters says so
// ("east → west"), and the charts select each end by its cluster when the metrics carry one.
// The charts shade the intervals in which the service was anomalous.

import { h, clear, message } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import * as api from '../api.js';
import { badge, isErrorCode } from '../health.js';
import { lineChart, shareBars, matrixSeries } from '../chart.js';
import { appOf } from '../graph-data.js';
import { findingsFor, findingList } from './config.js';
import { alertList } from '../alert-ui.js';
import { nodeNames, alertMatches } from '../alert-match.js';
import { known, isCross } from '../clusters.js';
import * as anomalies from '../anomalies.js';

/** The PromQL matchers that select a node's traffic on one side. */
function matchers(node, side, type) {
  const q = (k, v) => `${side}_${k}="${api.esc(v)}"`;
  const ms = [];
  if (type === 'app') ms.push(q('app', node.name));
  else if (type === 'versionedApp') { ms.push(q('app', node.name)); if (node.version) ms.push(q('version', node.version)); }
  else if (type === 'service' && side === 'destination') ms.push(`destination_service_name="${api.esc(node.name)}"`);
  else ms.push(q('workload', node.name));
  if (node.namespace) ms.push(side === 'destination' && type === 'service' ? `destination_service_namespace="${api.esc(node.namespace)}"` : q('workload_namespace', node.namespace));
  return ms;
}

/**
 * The selectors to try in order: with each end's cluster first (the same workload name can
 * run in several clusters), then without (metrics from before clusters were labelled).
 */
function withClusters(base, ends) {
  const qualified = ends.filter(([n]) => known(n?.cluster)).map(([n, side]) => `${side}_cluster="${api.esc(n.cluster)}"`);
  const plain = base.join(',');
  return qualified.length ? [[...base, ...qualified].join(','), plain] : [plain];
}

export function redQueries(sel, seconds) {
  const step = Math.max(1, Math.round(seconds / 60));
  const w = `${Math.max(60, 4 * step)}s`;
  const m = `{${sel}}`;
  return {
    rate: `sum(rate(istio_requests_total${m}[${w}]))`,
    errors: `(sum(rate(istio_requests_total{${sel},response_code=~"5..|0"}[${w}])) or on() vector(0)) / sum(rate(istio_requests_total${m}[${w}]))`,
    p95: `histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket${m}[${w}])))`,
  };
}

async function redCharts(box, sels, seconds, names = []) {
  // The first selector that has traffic (proxies may report a side with unknown labels).
  let sel = sels[0];
  for (const cand of sels) {
    const v = await api.vector(`sum(increase(istio_requests_total{${cand}}[${seconds}s]))`).catch(() => []);
    if (v.length && v[0].value > 0) { sel = cand; break; }
  }
  const q = redQueries(sel, seconds);
  const spec = [
    ['Requests per second', q.rate, fmt.num, 'rate'],
    ['Error share (5xx, no response)', q.errors, (v) => fmt.pct(v), 'errors'],
    ['p95 duration', q.p95, fmt.ms, 'p99'],
  ];
  const [results, odd] = await Promise.all([
    Promise.allSettled(spec.map(([, query]) => api.queryRange(query, seconds, 60))),
    anomalies.load('').catch(() => null)]);
  clear(box);
  results.forEach((r, i) => {
    const [title, query, yFmt, signal] = spec[i];
    const bands = anomalies.bands(odd, names, signal);
    if (r.status === 'rejected') { box.append(message('error', `${title}: ${r.reason.message}`)); return; }
    const series = matrixSeries(r.value.result).map((se) => ({ ...se, name: title }));
    const chart = lineChart(series, { title, height: 120, width: 340, yFmt, maxLegend: 0, bands });
    chart.append(h('a', { class: 'small', href: url.href('metrics', { q: query }) }, 'open in Metrics'));
    box.append(chart);
  });
}

function codeBars(codes) {
  const rows = Object.entries(codes || {}).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1])
    .map(([k, v]) => ({ key: k === '0' ? '0 (no response)' : k, value: v, cls: isErrorCode(k) ? 'bad' : /^4/.test(k) ? 'warn' : '' }));
  if (!rows.length) return h('p', { class: 'muted' }, 'No requests in the window.');
  return shareBars(rows, { fmt: (v) => fmt.num(v, 0), label: 'Response codes' });
}

async function findings(box, names) {
  try {
    const report = await api.validations();
    const list = findingsFor(report, names);
    clear(box).append(list.length ? findingList(list) : h('p', { class: 'muted' }, `No validation findings on the config of ${names[0]}.`));
  } catch (e) {
    clear(box).append(message(e.missing ? 'info' : 'error', e.missing ? 'This server does not serve /api/v1/validations.' : `Validations: ${e.message}`));
  }
}

/** A node's firing alerts, each linking to the Alerts view filtered to what it is about. */
export function fillPanelAlerts(box, node, alerts, names = nodeNames(node)) {
  clear(box);
  if (!alerts.length) { box.append(h('p', { class: 'muted' }, `No alert is firing for ${node.name}.`)); return; }
  const about = (a) => names.find((n) => alertMatches(a, [n])) || node.name;
  box.append(alertList(alerts, (a) => url.href('alerts', { service: about(a) })),
    h('a', { class: 'small', href: url.href('alerts', { service: about(alerts[0]) }) }, `All alerts of ${about(alerts[0])}`));
}

export function renderPanel(panel, { node, edge, graph }) {
  clear(panel);
  const type = graph.g.graphType || 'workload';
  const seconds = url.shared().seconds;
  const close = h('button', { type: 'button', class: 'close', 'aria-label': 'Close the panel', onclick: () => url.update({ sel: '' }) }, '×');
  const charts = h('div', { class: 'panel-charts' }, message('loading', 'Loading charts…'));
  const conf = h('div', {}, message('loading', 'Loading findings…'));
  if (node) {
    const inbound = node.requestRateIn > 0 || !(node.requestRateOut > 0);
    const codes = {};
    for (const e of graph.g.edges) {
      if ((inbound ? e.target : e.source) !== node.id) continue;
      for (const [c, v] of Object.entries(e.responseCodes || {})) codes[c] = (codes[c] || 0) + v;
    }
    const sels = inbound
      ? [...withClusters(['reporter="destination"', ...matchers(node, 'destination', type)], [[node, 'destination']]),
        ...withClusters(['reporter="source"', ...matchers(node, 'destination', type)], [[node, 'destination']])]
      : withClusters(['reporter="source"', ...matchers(node, 'source', type)], [[node, 'source']]);
    const sel = sels[0];
    const app = appOf(node);
    const alertsBox = h('div', { class: 'panel-alerts' });
    if (graph.alertsOf) fillPanelAlerts(alertsBox, node, graph.alertsOf(node), graph.namesOf(node));
    panel.append(
      h('header', {}, h('h2', {}, node.name, node.version ? ` ${node.version}` : ''), close),
      h('p', {}, badge(node.health), ` ${node.nodeType || type}`, node.namespace ? ` · namespace ${node.namespace}` : '', node.cluster ? ` · cluster ${node.cluster}` : ''),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Requests in'), h('dd', {}, fmt.rate(node.requestRateIn)),
        h('dt', {}, 'Requests out'), h('dd', {}, fmt.rate(node.requestRateOut)),
        h('dt', {}, 'Error share'), h('dd', {}, fmt.pct(node.errorRate))),
      h('h3', {}, 'Firing alerts'), alertsBox,
      h('nav', { class: 'panel-links', 'aria-label': 'Related' },
        h('a', { href: url.href('traces', { service: node.name }), class: 'traces-link' }, `Traces of ${node.name}`),
        h('a', { href: url.href('topology', { ...Object.fromEntries(url.current().params), focus: node.name, sel: node.id }) }, 'Focus on its neighbours'),
        h('a', { href: url.href('config', { q: app }) }, `Istio config for ${app}`),
        h('a', { href: url.href('metrics', { q: redQueries(sel, seconds).rate }) }, 'Metrics')),
      h('h3', {}, inbound ? 'Received traffic' : 'Sent traffic'), charts,
      h('h3', {}, 'Response codes'), codeBars(codes),
      h('h3', {}, 'Config validation'), conf);
    if (node.nodeType === 'unknown') clear(charts).append(h('p', { class: 'muted' }, 'Traffic from outside the mesh has no metrics of its own.'));
    else redCharts(charts, sels, seconds, [node.name, app]);
    findings(conf, [app, node.name]);
  } else {
    const a = graph.byId.get(edge.source), b = graph.byId.get(edge.target);
    const sels = withClusters(['reporter="source"', ...matchers(a, 'source', type), ...matchers(b, 'destination', type)], [[a, 'source'], [b, 'destination']]);
    const rt = edge.responseTimeMs;
    const cross = isCross(edge, a, b);
    const slow = h('div', { class: 'edge-exemplars' }, message('loading', 'Looking for exemplars…'));
    panel.append(
      h('header', {}, h('h2', {}, `${a.name} → ${b.name}`), close),
      h('p', {}, badge(edge.health), ` ${edge.protocol || 'http'}`),
      cross ? h('p', { class: 'cross-cluster-note', dataset: { source: a.cluster, target: b.cluster } },
        h('span', { class: 'cross-badge' }, 'cross-cluster'), ' ', h('b', {}, `${a.cluster} → ${b.cluster}`))
        : known(a.cluster) ? h('p', { class: 'muted' }, `within cluster ${a.cluster}`) : '',
      h('dl', { class: 'facts' },
        h('dt', {}, 'Requests'), h('dd', {}, fmt.rate(edge.requestRate)),
        h('dt', {}, 'Error share'), h('dd', {}, fmt.pct(edge.errorRate)),
        rt ? [h('dt', {}, 'p50 / p95 / p99'), h('dd', {}, [rt.p50, rt.p95, rt.p99].map((v) => (v === undefined ? '–' : fmt.ms(v))).join(' / '))] : null,
        edge.mtlsShare !== undefined ? [h('dt', {}, 'mTLS'), h('dd', {}, fmt.pct(edge.mtlsShare))] : null),
      h('nav', { class: 'panel-links', 'aria-label': 'Related' },
        h('a', { href: url.href('traces', { service: a.name, remote: b.name }), class: 'traces-link' }, `Traces of ${a.name} calling ${b.name}`),
        h('a', { href: url.href('traces', { service: b.name }) }, `Traces of ${b.name}`),
        h('a', { href: url.href('config', { q: appOf(b) }) }, `Istio config routing to ${appOf(b)}`)),
      h('h3', {}, 'Slowest exemplar traces'), slow,
      h('h3', {}, 'Traffic on this edge'), charts,
      h('h3', {}, 'Response codes'), codeBars(edge.responseCodes),
      h('h3', {}, 'Config validation'), conf);
    slowTraces(slow, sels, seconds);
    redCharts(charts, sels, seconds, [b.name, appOf(b)]);
    findings(conf, [appOf(b), b.name]);
  }
}

/**
 * The edge's slowest requests that left an exemplar on its duration histogram, each a link
 * to its trace: the way from "this edge is slow" to a slow request's spans.
 */
async function slowTraces(out, sels, seconds) {
  const q = `istio_request_duration_milliseconds_bucket{${sels.join(',')}}`;
  const data = await api.exemplars(q, seconds);
  const seen = new Map();
  for (const se of data) {
    for (const e of se.exemplars || []) {
      const id = e.labels?.trace_id;
      const v = parseFloat(e.value);
      if (id && !(seen.get(id)?.v >= v)) seen.set(id, { id, v, t: e.timestamp * 1000 });
    }
  }
  const top = [...seen.values()].sort((x, y) => y.v - x.v).slice(0, 5);
  clear(out).append(top.length
    ? h('ol', { class: 'exemplar-traces' }, top.map((x) => h('li', {},
      h('a', { href: url.href('traces', { trace: x.id }), class: 'exemplar-trace' }, `${fmt.ms(x.v)} at ${fmt.time(x.t, true)}`),
      h('span', { class: 'muted small' }, ` trace ${x.id}`))))
    : h('p', { class: 'muted' }, 'No exemplars on this edge\'s request durations in this window.'));
}
