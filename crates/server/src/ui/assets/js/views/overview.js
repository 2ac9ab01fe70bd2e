// Overview: every service (workload) with its health, request rate and error share, the
// worst first (by health, then error share, then traffic). A service with a firing alert
// carries a red badge linking to its alerts; the badges follow the alerts every 15 s.

import { h, clear, message, sortableTable } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import { badge, rank, LEVELS, normalise } from '../health.js';
import { loadGraph } from '../graph-data.js';
import { loadFiring, loadAliases, firingFor, nodeNames, alertBadge, every } from '../alert-match.js';

export const title = 'Overview';

export async function render(root, { shared }) {
  const status = h('div', {}, message('loading', 'Loading services…'));
  root.append(h('h1', {}, 'Overview'), status);
  let g;
  const alertsP = loadFiring();
  const aliasesP = loadAliases();
  try {
    g = await loadGraph({ type: 'workload', seconds: shared.seconds, cluster: shared.cluster, ns: shared.ns });
  } catch (e) {
    clear(status).append(message('error', `Services could not be loaded: ${e.message}`));
    return;
  }
  let alerts = await alertsP;
  const aliases = await aliasesP;
  clear(status);
  const names = (n) => nodeNames(n, aliases);
  const alertsOf = (n) => firingFor(alerts.index, names(n));
  const badgeSlot = (n) => h('span', { class: 'alert-slot', dataset: { nodeId: n.id } }, alertBadge(names(n), alertsOf(n)));
  const nodes = g.nodes.filter((n) => n.nodeType !== 'unknown');
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
    h('span', { class: 'card-num' }, String(alerts.firing)),
    h('span', { class: 'card-label' }, h('a', { href: url.href('alerts', { state: 'firing' }) }, 'firing alerts')));
  alertCard.classList.toggle('health-failure', alerts.firing > 0);
  drawAlertCard();
  // Follow the alerts without refetching the graph.
  every(root, async () => {
    const next = await loadFiring({ fresh: true });
    if (next.error) return;
    alerts = next;
    alertCard.classList.toggle('health-failure', alerts.firing > 0);
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
