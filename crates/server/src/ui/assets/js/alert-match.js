// Which firing alerts belong to a service or a graph node, shared by the overview and the
// topology, and the 15 s poll the live views use. An alert belongs to a name when one of the
// labels Istio-based rules group by (service, destination_service_name, app,
// destination_app) equals it; the Alerts view filters with the same rule. An alert that
// names a cluster (`cluster` label) belongs only to nodes of that cluster.

import { h } from './dom.js';
import * as api from './api.js';
import * as url from './state/url.js';
import { appOf } from './graph-data.js';

export const MATCH_LABELS = ['service', 'destination_service_name', 'app', 'destination_app'];
export const POLL_MS = 15000;

/** The names an alert is about (the values of its matching labels). */
export function alertTargets(alert) {
  const l = alert?.labels || {};
  return [...new Set(MATCH_LABELS.map((k) => l[k]).filter(Boolean))];
}

export const alertName = (alert) => alert?.labels?.alertname || '(unnamed)';

/** Does `alert` belong to any of `names`? */
export const alertMatches = (alert, names) => alertTargets(alert).some((t) => names.includes(t));

/** Firing alerts indexed by every name they belong to. */
export function firingIndex(alerts) {
  const index = new Map();
  for (const a of alerts || []) {
    if (a.state !== 'firing') continue;
    for (const t of alertTargets(a)) {
      if (!index.has(t)) index.set(t, []);
      index.get(t).push(a);
    }
  }
  return index;
}

/**
 * The app and service names each workload answers to, from Istio's destination labels:
 * `namespace/workload` → [names]. A workload node (`reviews-v1`) then matches alerts about
 * its app or service (`reviews`). Never throws: without metrics, nodes match by name only.
 */
export async function loadAliases() {
  const q = 'group by (destination_workload, destination_workload_namespace, destination_app, destination_service_name) (istio_requests_total)';
  const rows = await api.vector(q).catch(() => []);
  const out = new Map();
  const known = (v) => v && v !== 'unknown';
  for (const { metric: m } of rows) {
    if (!known(m.destination_workload)) continue;
    const key = `${m.destination_workload_namespace || ''}/${m.destination_workload}`;
    if (!out.has(key)) out.set(key, new Set());
    for (const v of [m.destination_app, m.destination_service_name]) if (known(v)) out.get(key).add(v);
  }
  return out;
}

/** A graph node's names: its own (service, app or workload), its app's, and its aliases. */
export function nodeNames(node, aliases = new Map()) {
  const more = aliases.get(`${node.namespace || ''}/${node.name}`) || [];
  return [...new Set([node.name, node.app, appOf(node), ...more].filter(Boolean))];
}

const knownCluster = (c) => !!c && c !== 'unknown';

/** The firing alerts of any of `names`, each once; with `cluster`, not those of another cluster. */
export function firingFor(index, names, cluster = '') {
  const out = new Set();
  for (const n of names) {
    for (const a of index.get(n) || []) {
      const ac = a.labels?.cluster;
      if (knownCluster(cluster) && knownCluster(ac) && ac !== cluster) continue;
      out.add(a);
    }
  }
  return [...out];
}

/**
 * Fetches the firing alerts. Never throws: a server without rules (or an older one without
 * the endpoint) gives an empty index and the error for a quiet note.
 */
export async function loadFiring({ fresh = false } = {}) {
  try {
    const d = await api.alerts({ fresh });
    const alerts = (d.alerts || []).filter((a) => a.state === 'firing');
    return { index: firingIndex(d.alerts), firing: alerts.length, alerts, error: null };
  } catch (e) {
    return { index: new Map(), firing: 0, alerts: [], error: e };
  }
}

/** The overview's red badge: how many alerts fire for one of `names`, linking to them. */
export function alertBadge(names, alerts) {
  if (!alerts.length) return null;
  const name = names.find((n) => alerts.some((a) => alertMatches(a, [n]))) || names[0];
  const titles = [...new Set(alerts.map(alertName))];
  return h('a', {
    class: 'alert-badge', href: url.href('alerts', { service: name }),
    title: `Firing: ${titles.join(', ')}`, 'aria-label': `${alerts.length} firing alert${alerts.length > 1 ? 's' : ''} for ${name}: ${titles.join(', ')}`,
  }, h('span', { class: 'alert-glyph', 'aria-hidden': 'true' }, '!'), ` ${alerts.length} firing`);
}

/** Calls `fn` every `ms` while `root` is in the page and the tab is visible. */
export function every(root, fn, ms = POLL_MS) {
  const id = setInterval(() => {
    if (!root.isConnected) { clearInterval(id); return; }
    if (document.visibilityState === 'visible') fn();
  }, ms);
  return () => clearInterval(id);
}
