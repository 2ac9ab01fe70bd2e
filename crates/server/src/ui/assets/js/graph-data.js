// The service graph's data: meshlens's `/api/v1/graph` when the server has it, otherwise
// built here from Istio's standard metrics (PromQL) or from Zipkin's dependency links, so
// the topology also works on a plain Prometheus + Zipkin fed server. Every path yields the
// same shape as `/api/v1/graph`: {nodes: [...], edges: [...], origin, note}.

import * as api from './api.js';
import { fromCodes, isErrorCode } from './health.js';

/** Where an app's versions are grouped: API's versions, metric labels, or a `-vN` suffix. */
export function appOf(node) {
  if (node.app) return node.app;
  if (node.version) return node.name;
  const m = /^(.+)-(v\d+[a-z0-9]*)$/.exec(node.name || '');
  return m ? m[1] : node.name;
}

export function versionOf(node) {
  if (node.version) return node.version;
  const m = /^(.+)-(v\d+[a-z0-9]*)$/.exec(node.name || '');
  return m ? m[2] : '';
}

/**
 * params: {type, seconds, cluster, ns, source, focus}. Returns the graph, with `origin`
 * saying where it came from and `note` explaining a fallback.
 */
export async function loadGraph({ type = 'workload', seconds = 900, cluster = '', ns = '', source = 'metrics' }) {
  const window = `${seconds}s`;
  try {
    const g = await api.graph({ type, window, cluster, namespace: ns, source });
    return finish({ ...g, origin: 'api' }, { cluster, ns });
  } catch (e) {
    if (!e.missing) throw e;
  }
  const note = 'This server has no /api/v1/graph: the graph is built in the browser from ';
  if (source === 'traces') {
    return finish({ ...(await fromTraces(seconds)), origin: 'traces', note: `${note}Zipkin dependency links.` }, { cluster, ns });
  }
  const g = await fromMetrics(type, seconds);
  if (source === 'both') {
    const t = await fromTraces(seconds).catch(() => null);
    if (t) merge(g, t);
  }
  return finish({ ...g, origin: 'promql', note: `${note}Istio metrics (PromQL).` }, { cluster, ns });
}

const known = (v) => (v && v !== 'unknown' ? v : '');

/**
 * One end of a metric series as a node. Identity is namespace/name[/version]: proxies do not
 * always know their peer's cluster (`unknown` on one side, the real one on the other), so the
 * cluster is an attribute here, not part of the id.
 */
function sideKey(type, m, side) {
  const wl = known(m[`${side}_workload`]) || 'unknown';
  const app = known(m[`${side}_app`]) || known(m[`${side}_canonical_service`]);
  const version = known(m[`${side}_version`]) || known(m[`${side}_canonical_revision`]);
  const cluster = known(m[`${side}_cluster`]);
  const namespace = known(m[`${side}_workload_namespace`]) || (side === 'destination' ? known(m.destination_service_namespace) : '');
  let name = wl, ver = '';
  if (type === 'app' || type === 'versionedApp') {
    name = app || wl;
    if (type === 'versionedApp') ver = version;
  } else if (type === 'service' && side === 'destination') {
    name = known(m.destination_service_name) || wl;
  }
  const id = name === 'unknown' ? 'unknown' : [namespace, name, ver].filter((x, i) => i < 2 || x).join('/');
  return { id, cluster, namespace: name === 'unknown' ? '' : namespace, name, version: ver || undefined };
}

const GROUP = ['source_workload', 'source_workload_namespace', 'source_cluster', 'source_app', 'source_version',
  'destination_workload', 'destination_workload_namespace', 'destination_cluster', 'destination_app',
  'destination_version', 'destination_service_name', 'destination_service_namespace', 'request_protocol'];

async function fromMetrics(type, seconds) {
  const w = `${seconds}s`;
  const by = GROUP.join(', ');
  const [counts, p95] = await Promise.all([
    api.vector(`sum by (${by}, response_code) (increase(istio_requests_total{reporter="source"}[${w}]))`),
    api.vector(`histogram_quantile(0.95, sum by (${by}, le) (rate(istio_request_duration_milliseconds_bucket{reporter="source"}[${w}])))`).catch(() => []),
  ]);
  const nodes = new Map();
  const edges = new Map();
  const node = (k) => {
    if (!nodes.has(k.id)) nodes.set(k.id, { ...k, nodeType: k.name === 'unknown' ? 'unknown' : type, codesIn: {}, codesOut: {}, requestsIn: 0, requestsOut: 0, sources: ['metrics'] });
    const n = nodes.get(k.id);
    if (!n.cluster && k.cluster) n.cluster = k.cluster;
    return n;
  };
  for (const { metric: m, value } of counts) {
    if (!(value > 0)) continue;
    const src = node(sideKey(type, m, 'source'));
    const dst = node(sideKey(type, m, 'destination'));
    const proto = m.request_protocol || 'http';
    const key = `${src.id}→${dst.id}→${proto}`;
    if (!edges.has(key)) edges.set(key, { source: src.id, target: dst.id, protocol: proto, requests: 0, errors: 0, responseCodes: {}, sources: ['metrics'] });
    const e = edges.get(key);
    const code = m.response_code || '0';
    e.requests += value;
    if (isErrorCode(code)) e.errors += value;
    e.responseCodes[code] = (e.responseCodes[code] || 0) + value;
    dst.requestsIn += value; src.requestsOut += value;
    dst.codesIn[code] = (dst.codesIn[code] || 0) + value;
    src.codesOut[code] = (src.codesOut[code] || 0) + value;
  }
  for (const { metric: m, value } of p95) {
    if (!Number.isFinite(value)) continue;
    const key = `${sideKey(type, m, 'source').id}→${sideKey(type, m, 'destination').id}→${m.request_protocol || 'http'}`;
    const e = edges.get(key);
    if (e) e.responseTimeMs = { p95: Math.max(value, e.responseTimeMs?.p95 || 0) };
  }
  for (const e of edges.values()) {
    e.requestRate = e.requests / seconds;
    e.errorRate = e.requests ? e.errors / e.requests : 0;
    e.health = fromCodes(e.responseCodes);
  }
  for (const n of nodes.values()) {
    n.requestRateIn = n.requestsIn / seconds;
    n.requestRateOut = n.requestsOut / seconds;
    const codes = n.requestsIn > 0 ? n.codesIn : n.codesOut;
    const total = Object.values(codes).reduce((a, b) => a + b, 0);
    const errs = Object.entries(codes).filter(([c]) => isErrorCode(c)).reduce((a, [, v]) => a + v, 0);
    n.errorRate = total ? errs / total : 0;
    n.health = fromCodes(codes);
  }
  return { graphType: type, nodes: [...nodes.values()], edges: [...edges.values()] };
}

async function fromTraces(seconds) {
  const links = await api.dependencies(seconds * 1000);
  const nodes = new Map();
  const node = (name) => {
    if (!nodes.has(name)) nodes.set(name, { id: name, name, namespace: '', cluster: '', nodeType: 'service', requestsIn: 0, requestsOut: 0, errIn: 0, errOut: 0, sources: ['traces'] });
    return nodes.get(name);
  };
  const edges = [];
  for (const l of links || []) {
    const p = node(l.parent), c = node(l.child);
    const n = l.callCount || 0, err = l.errorCount || 0;
    p.requestsOut += n; p.errOut += err; c.requestsIn += n; c.errIn += err;
    const codes = { 200: n - err, 500: err };
    edges.push({
      source: p.id, target: c.id, protocol: 'http', requests: n, requestRate: n / seconds, errors: err,
      errorRate: n ? err / n : 0, responseCodes: codes, health: fromCodes(codes), sources: ['traces'],
    });
  }
  for (const n of nodes.values()) {
    n.requestRateIn = n.requestsIn / seconds;
    n.requestRateOut = n.requestsOut / seconds;
    const [t, e] = n.requestsIn > 0 ? [n.requestsIn, n.errIn] : [n.requestsOut, n.errOut];
    n.errorRate = t ? e / t : 0;
    n.health = fromCodes(t ? { 200: t - e, 500: e } : {});
  }
  return { graphType: 'service', nodes: [...nodes.values()], edges };
}

/** Adds trace edges whose endpoints (by name) the metrics graph does not connect. */
function merge(g, t) {
  const byName = new Map(g.nodes.map((n) => [n.name, n]));
  const has = new Set(g.edges.map((e) => `${byName.get(e.source)?.name}|${e.target}`));
  const idOf = (name) => byName.get(name)?.id || name;
  for (const n of t.nodes) if (!byName.has(n.name)) { g.nodes.push(n); byName.set(n.name, n); }
  for (const e of t.edges) {
    const key = `${e.source}|${idOf(e.target)}`;
    if (!has.has(key)) g.edges.push({ ...e, source: idOf(e.source), target: idOf(e.target) });
  }
}

/** Normalises, applies the cluster / namespace filter (an edge stays if either end matches). */
function finish(g, { cluster, ns }) {
  const nodes = (g.nodes || []).map((n) => ({ ...n, health: String(n.health || 'na').toLowerCase() }));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  let edges = (g.edges || []).filter((e) => byId.has(e.source) && byId.has(e.target))
    .map((e) => ({ ...e, health: String(e.health || 'na').toLowerCase() }));
  const match = (n) => (!cluster || n.cluster === cluster) && (!ns || n.namespace === ns);
  if (cluster || ns) {
    edges = edges.filter((e) => match(byId.get(e.source)) || match(byId.get(e.target)));
    const keep = new Set(edges.flatMap((e) => [e.source, e.target]));
    return { ...g, nodes: nodes.filter((n) => keep.has(n.id) || match(n)), edges };
  }
  return { ...g, nodes, edges };
}
