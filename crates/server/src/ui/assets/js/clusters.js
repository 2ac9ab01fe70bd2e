// Many clusters, one pane: the clusters the hub knows (`/api/v1/clusters`: each with its
// agents, their lag and throughput), the cluster filter's choices, each cluster's health as
// the service graph shows it, a colour per cluster, and the note a view shows while the
// filter is on (so a filtered view never passes for the whole mesh).

import { h } from './dom.js';
import * as api from './api.js';
import * as url from './state/url.js';
import { rank, normalise } from './health.js';

/** A cluster name that says something: Istio writes `unknown` where a proxy had none. */
export const known = (c) => !!c && c !== 'unknown';

const byName = (a, b) => String(a.name).localeCompare(String(b.name));

/**
 * The hub's clusters, sorted by name. Never throws: a server without the endpoint (or a
 * failing one) gives an empty list and the error, and the callers fall back to labels.
 */
export async function loadClusters({ fresh = false } = {}) {
  try {
    const b = await api.clusters({ fresh });
    const list = (Array.isArray(b?.data) ? b.data : []).filter((c) => c && known(c.name));
    return { list: list.sort(byName), error: null };
  } catch (e) {
    return { list: [], error: e };
  }
}

// Istio's cluster labels, and the one an agent adds to every series it forwards.
const LABELS = ['source_cluster', 'destination_cluster', 'cluster'];

/** The filter's choices: the hub's clusters and every value of the cluster labels. */
export async function clusterOptions() {
  const [c, ...values] = await Promise.all([loadClusters(), ...LABELS.map((l) => api.labelValues(l).catch(() => []))]);
  return [...new Set([...c.list.map((x) => x.name), ...values.flat()])].filter(known).sort();
}

/** Does edge `e` (between nodes `a` and `b`) cross clusters? The server says; older ones do not. */
export function isCross(e, a, b) {
  if (typeof e.crossCluster === 'boolean') return e.crossCluster;
  return !!a && !!b && known(a.cluster) && known(b.cluster) && a.cluster !== b.cluster;
}

/** The known clusters of a graph's nodes, sorted. */
export const clustersOf = (nodes) => [...new Set(nodes.map((n) => n.cluster).filter(known))].sort();

const COLOURS = 6;

/** A CSS class giving cluster `name` its colour: by its place in `all` (sorted names). */
export function colourClass(name, all) {
  const i = all.indexOf(name);
  return i < 0 ? 'cl-none' : `cl-${i % COLOURS}`;
}

/**
 * Per known cluster of a workload graph: its services, their worst health, the requests its
 * services received (rate, count, errors, error share) and the cross-cluster traffic in and
 * out of it (rates). Unknown nodes (callers outside the mesh) belong to no cluster.
 */
export function clusterHealth(g) {
  const byId = new Map(g.nodes.map((n) => [n.id, n]));
  const out = new Map();
  const of = (c) => {
    if (!out.has(c)) out.set(c, { services: 0, health: 'na', rateIn: 0, requests: 0, errors: 0, errorRate: null, crossIn: 0, crossOut: 0 });
    return out.get(c);
  };
  for (const n of g.nodes) {
    if (n.nodeType === 'unknown' || !known(n.cluster)) continue;
    const c = of(n.cluster);
    c.services++;
    if (rank(n.health) > rank(c.health)) c.health = normalise(n.health);
    c.rateIn += n.requestRateIn || 0;
  }
  for (const e of g.edges) {
    const a = byId.get(e.source), b = byId.get(e.target);
    if (b && known(b.cluster)) {
      const c = of(b.cluster);
      c.requests += e.requests || 0;
      c.errors += e.errors || 0;
    }
    if (isCross(e, a, b)) {
      if (b && known(b.cluster)) of(b.cluster).crossIn += e.requestRate || 0;
      if (a && known(a.cluster)) of(a.cluster).crossOut += e.requestRate || 0;
    }
  }
  for (const c of out.values()) c.errorRate = c.requests > 0 ? c.errors / c.requests : null;
  return out;
}

/** Does an alert concern `cluster`? Yes when it names that cluster or none. */
export const alertInCluster = (alert, cluster) => !cluster || !known(alert?.labels?.cluster) || alert.labels.cluster === cluster;

/**
 * The line a view shows while the cluster filter is on: what the filter does there, and a way
 * out. Off, an empty fragment, so that a caller can append it either way.
 */
export function filterNote(cluster, what) {
  if (!cluster) return document.createDocumentFragment();
  return h('p', { class: 'filter-note', dataset: { filter: 'cluster', cluster }, role: 'status' },
    h('span', { class: 'chip' }, 'Cluster: ', h('b', {}, cluster)), ' ', what, ' ',
    h('button', { type: 'button', class: 'link filter-clear', onclick: () => url.update({ cluster: '' }) }, 'show all clusters'));
}
