// Overview: one row per cluster (its agents, their lag and throughput, its services' worst
// health and error share, a link to its topology), then every service (workload) with its
// health, request rate and error share, the worst first (by health, then error share, then
// traffic). A service with a firing alert carries a red badge linking to its alerts; the
// badges follow the alerts every 15 s. With the cluster filter on, both show that cluster only.
// Last, the Storage card (backend and what it holds), whatever became of the services.

import { h, clear, message, sortableTable } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import { badge, rank, LEVELS, normalise } from '../health.js';
import { loadGraph } from '../graph-data.js';
import { loadFiring, loadAliases, firingFor, nodeNames, alertBadge, every } from '../alert-match.js';
import { loadClusters, clusterHealth, known, colourClass, alertInCluster, filterNote } from '../clusters.js';
import { storageSection } from '../storage.js';

export const title = 'Overview';

export async function render(root, ctx) {
  const storage = storageSection(); // loads meanwhile; placed after the services
  try {
    await services(root, ctx);
  } finally {
    root.append(storage);
  }
}

async function services(root, { shared }) {
  const status = h('div', {}, message('loading', 'Loading services…'));
  root.append(h('h1', {}, 'Overview'),
    filterNote(shared.cluster, `Services of ${shared.cluster} and the alerts that name it or no cluster.`), status);
  let g;
  const alertsP = loadFiring();
  const aliasesP = loadAliases();
  const clustersP = loadClusters();
  try {
    g = await loadGraph({ type: 'workload', seconds: shared.seconds, cluster: shared.cluster, ns: shared.ns });
  } catch (e) {
    clear(status).append(message('error', `Services could not be loaded: ${e.message}`));
    return;
  }
  let alerts = await alertsP;
  const aliases = await aliasesP;
  const hub = await clustersP;
  clear(status);
  const names = (n) => nodeNames(n, aliases);
  const alertsOf = (n) => firingFor(alerts.index, names(n), n.cluster);
  const badgeSlot = (n) => h('span', { class: 'alert-slot', dataset: { nodeId: n.id } }, alertBadge(names(n), alertsOf(n)));
  // The server keeps the edges with an end in the chosen cluster; their other ends are peers.
  const nodes = g.nodes.filter((n) => n.nodeType !== 'unknown' && (!shared.cluster || n.cluster === shared.cluster));
  const firingHere = () => (shared.cluster ? alerts.alerts.filter((a) => alertInCluster(a, shared.cluster)).length : alerts.firing);
  // p95 of what a node receives: the slowest incoming edge's p95 (an upper bound).
  const p95 = new Map();
  for (const e of g.edges) {
    const v = e.responseTimeMs?.p95;
    if (v !== undefined && v > (p95.get(e.target) ?? -1)) p95.set(e.target, v);
  }
  const rows = nodes.map((n) => ({
    ...n,
    healthRank: (alertsOf(n).length ? 1e7 : 0) + rank(n.health) * 1e6 + (n.errorRate || 0) * 1e3 + Math.min(999, n.requestRateIn || 0) / 1000,
    p95: p95.get(n.id),
  }));
  const counts = { failure: 0, degraded: 0, healthy: 0, na: 0 };
  for (const n of nodes) counts[normalise(n.health)]++;
  const total = nodes.reduce((a, n) => a + (n.requestRateIn || 0), 0);
  const alertCard = h('li', { class: 'card alerts-card' });
  const drawAlertCard = () => clear(alertCard).append(
    h('span', { class: 'card-num' }, String(firingHere())),
    h('span', { class: 'card-label' }, h('a', { href: url.href('alerts', { state: 'firing' }) }, 'firing alerts')));
  alertCard.classList.toggle('health-failure', firingHere() > 0);
  drawAlertCard();
  // Follow the alerts without refetching the graph.
  every(root, async () => {
    const next = await loadFiring({ fresh: true });
    if (next.error) return;
    alerts = next;
    alertCard.classList.toggle('health-failure', firingHere() > 0);
    drawAlertCard();
    const byId = new Map(nodes.map((n) => [n.id, n]));
    for (const slot of root.querySelectorAll('.alert-slot')) {
      const n = byId.get(slot.dataset.nodeId);
      if (n) clear(slot).append(...[alertBadge(names(n), alertsOf(n))].filter(Boolean));
    }
  });
  root.append(h('ul', { class: 'cards', 'aria-label': 'Summary' },
    Object.entries(counts).map(([k, n]) => h('li', { class: `card health-${k}` },
      h('span', { class: 'card-num' }, String(n)), h('span', { class: 'card-label' }, h('span', { 'aria-hidden': 'true' }, `${LEVELS[k].glyph} `), LEVELS[k].label))),
    h('li', { class: 'card' }, h('span', { class: 'card-num' }, fmt.rate(total)), h('span', { class: 'card-label' }, 'requests received')),
    alertCard));
  if (alerts.error && !alerts.error.missing) root.append(h('p', { class: 'muted small' }, `Alerts could not be loaded: ${alerts.error.message}`));
  root.append(...clusterSection(g, hub, shared));
  if (!nodes.length) {
    root.append(message('warn', `No service has traffic in the last ${shared.range}.`));
    return;
  }
  root.append(sortableTable([
    { key: 'healthRank', label: 'Health', num: true, render: (r) => badge(r.health) },
    { key: 'name', label: 'Service', render: (r) => h('span', { class: 'svc-cell' },
      h('a', { href: url.href('topology', { sel: r.id }), class: 'svc-link' }, r.name, r.version ? ` ${r.version}` : ''), ' ', badgeSlot(r)) },
    { key: 'namespace', label: 'Namespace' },
    { key: 'cluster', label: 'Cluster' },
    { key: 'requestRateIn', label: 'Requests in', num: true, fmt: fmt.rate },
    { key: 'requestRateOut', label: 'Requests out', num: true, fmt: fmt.rate },
    { key: 'errorRate', label: 'Error share', num: true, fmt: (v) => fmt.pct(v) },
    { key: 'p95', label: 'p95 (slowest caller)', num: true, value: (r) => r.p95 ?? -1, fmt: (v) => (v < 0 ? '–' : fmt.ms(v)) },
    { key: 'links', label: 'Go to', value: () => '', render: (r) => h('span', { class: 'links' },
      h('a', { href: url.href('topology', { focus: r.name, sel: r.id }) }, 'graph'), ' · ',
      h('a', { href: url.href('traces', { service: r.name }) }, 'traces'), ' · ',
      h('a', { href: url.href('stats', { service: r.name }) }, 'stats')) },
  ], rows, { sortKey: 'healthRank', desc: true, caption: `Services over the last ${shared.range}, worst first` }));
}

/** The age of an agent's last contact: a warning past a minute, a failure past five. */
function seenCell(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(+seconds)) return h('span', { class: 'muted' }, '–');
  const cls = seconds > 300 ? 'stale-bad' : seconds > 60 ? 'stale-warn' : '';
  return h('span', { class: cls, title: cls ? 'no contact from its agents for a while' : '' }, `${fmt.duration(Math.round(+seconds))} ago`);
}

const agentWord = (n) => `${n} agent${n === 1 ? '' : 's'}`;

/**
 * The clusters table: the hub's clusters (with their agents) and the clusters of the graph's
 * nodes, each with its services' worst health and error share. Nothing when no cluster is
 * known (metrics without cluster labels): the services table says it all then.
 */
function clusterSection(g, hub, shared) {
  const health = clusterHealth(g);
  const fromHub = new Map(hub.list.map((c) => [c.name, c]));
  let names = [...new Set([...fromHub.keys(), ...health.keys()])].filter(known).sort();
  if (shared.cluster) names = names.filter((n) => n === shared.cluster);
  const out = [];
  if (hub.error && !hub.error.needsTenant && !hub.error.missing) out.push(h('p', { class: 'muted small' }, `Agents could not be loaded: ${hub.error.message}`));
  if (!names.length) return out;
  if (hub.error?.missing) out.push(h('p', { class: 'muted small' }, 'This server does not serve /api/v1/clusters: the clusters come from the service graph, without their agents.'));
  const all = [...new Set([...fromHub.keys(), ...health.keys()])].filter(known).sort();
  const rows = names.map((name) => {
    const c = fromHub.get(name) || {};
    const x = health.get(name) || { services: 0, health: 'na', rateIn: 0, errorRate: null, crossIn: 0, crossOut: 0 };
    const agents = Array.isArray(c.agents) ? c.agents : [];
    return {
      name, agents, nAgents: agents.length,
      seen: c.secondsSinceSeen ?? null, lag: c.lagSeconds ?? null,
      samples: c.samplesPerSecond ?? null, spans: c.spansPerSecond ?? null, series: c.series ?? null,
      ...x, healthRank: rank(x.health) * 1e3 + (x.errorRate || 0),
    };
  });
  const dash = (v, f) => (v === null || v === undefined ? '–' : f(v));
  out.push(h('section', { class: 'clusters', 'aria-label': 'Clusters' }, sortableTable([
    { key: 'name', label: 'Cluster', render: (r) => h('a', {
      href: url.href('topology', { cluster: r.name }), class: `cluster-link ${colourClass(r.name, all)}`, title: `The topology of ${r.name}`,
    }, h('span', { class: 'cluster-swatch', 'aria-hidden': 'true' }), r.name) },
    { key: 'healthRank', label: 'Health', num: true, render: (r) => badge(r.health) },
    { key: 'services', label: 'Services', num: true },
    { key: 'rateIn', label: 'Requests in', num: true, fmt: fmt.rate },
    { key: 'errorRate', label: 'Error share', num: true, value: (r) => r.errorRate ?? -1, fmt: (v) => (v < 0 ? '–' : fmt.pct(v)) },
    all.length > 1 ? { key: 'cross', label: 'Cross-cluster in / out', num: true, value: (r) => r.crossIn + r.crossOut, render: (r) => `${fmt.rate(r.crossIn)} / ${fmt.rate(r.crossOut)}` } : null,
    { key: 'nAgents', label: 'Agents', num: true, render: (r) => (hub.error ? h('span', { class: 'muted' }, '–') : r.nAgents
      ? h('span', { title: r.agents.map((a) => `${a.id}: seen ${fmt.duration(Math.round(+a.secondsSinceSeen || 0))} ago, lag ${dash(a.lagSeconds, fmt.duration)}`).join('\n') }, agentWord(r.nAgents))
      : h('span', { class: 'muted', title: 'Its data reaches this server directly, not through an agent' }, 'none')) },
    { key: 'seen', label: 'Last seen', num: true, value: (r) => r.seen ?? Infinity, render: (r) => (r.nAgents ? seenCell(r.seen) : h('span', { class: 'muted' }, '–')) },
    { key: 'lag', label: 'Lag', num: true, value: (r) => r.lag ?? -1, render: (r) => dash(r.lag, (v) => fmt.duration(v)) },
    // Only what agents forward is counted: a cluster without one shows no rate, not zero.
    { key: 'samples', label: 'Samples/s', num: true, value: (r) => r.samples ?? -1, render: (r) => (r.nAgents ? dash(r.samples, (v) => fmt.num(v)) : '–') },
    { key: 'spans', label: 'Spans/s', num: true, value: (r) => r.spans ?? -1, render: (r) => (r.nAgents ? dash(r.spans, (v) => fmt.num(v)) : '–') },
  ].filter(Boolean), rows, {
    sortKey: 'name', desc: false,
    caption: names.length === 1 ? `Cluster over the last ${shared.range}` : `${names.length} clusters over the last ${shared.range}`,
    rowAttrs: (r) => ({ class: 'cluster-row', dataset: { cluster: r.name, agents: String(r.nAgents) } }),
  })));
  return out;
}
