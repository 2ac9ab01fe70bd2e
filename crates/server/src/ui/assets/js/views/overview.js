// Overview: every service (workload) with its health, request rate and error share, the
// worst first (by health, then error share, then traffic).

import { h, clear, message, sortableTable } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import { badge, rank, LEVELS, normalise } from '../health.js';
import { loadGraph } from '../graph-data.js';

export const title = 'Overview';

export async function render(root, { shared }) {
  const status = h('div', {}, message('loading', 'Loading services…'));
  root.append(h('h1', {}, 'Overview'), status);
  let g;
  try {
    g = await loadGraph({ type: 'workload', seconds: shared.seconds, cluster: shared.cluster, ns: shared.ns });
  } catch (e) {
    clear(status).append(message('error', `Services could not be loaded: ${e.message}`));
    return;
  }
  clear(status);
  const nodes = g.nodes.filter((n) => n.nodeType !== 'unknown');
  // p95 of what a node receives: the slowest incoming edge's p95 (an upper bound).
  const p95 = new Map();
  for (const e of g.edges) {
    const v = e.responseTimeMs?.p95;
    if (v !== undefined && v > (p95.get(e.target) ?? -1)) p95.set(e.target, v);
  }
  const rows = nodes.map((n) => ({
    ...n,
    healthRank: rank(n.health) * 1e6 + (n.errorRate || 0) * 1e3 + Math.min(999, n.requestRateIn || 0) / 1000,
    p95: p95.get(n.id),
  }));
  const counts = { failure: 0, degraded: 0, healthy: 0, na: 0 };
  for (const n of nodes) counts[normalise(n.health)]++;
  const total = nodes.reduce((a, n) => a + (n.requestRateIn || 0), 0);
  root.append(h('ul', { class: 'cards', 'aria-label': 'Summary' },
    Object.entries(counts).map(([k, n]) => h('li', { class: `card health-${k}` },
      h('span', { class: 'card-num' }, String(n)), h('span', { class: 'card-label' }, h('span', { 'aria-hidden': 'true' }, `${LEVELS[k].glyph} `), LEVELS[k].label))),
    h('li', { class: 'card' }, h('span', { class: 'card-num' }, fmt.rate(total)), h('span', { class: 'card-label' }, 'requests received'))));
  if (!nodes.length) {
    root.append(message('warn', `No service has traffic in the last ${shared.range}.`));
    return;
  }
  root.append(sortableTable([
    { key: 'healthRank', label: 'Health', num: true, render: (r) => badge(r.health) },
    { key: 'name', label: 'Service', render: (r) => h('a', { href: url.href('topology', { sel: r.id }), class: 'svc-link' }, r.name, r.version ? ` ${r.version}` : '') },
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
