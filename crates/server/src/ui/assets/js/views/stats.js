// Traffic statistics in the manner of OPNFV Clover: requests per service, URL, status code
// and their pairs, user-agent shares and response times per service, every table sortable.
// Reads `GET /api/v1/stats`: the server is the one place that computes them, so its error
// (status and message) is shown as it is.

import { h, clear, message, sortableTable } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import * as api from '../api.js';
import { filterNote } from '../clusters.js';

export const title = 'Traffic stats';

function shareCell(count, total) {
  const p = total ? count / total : 0;
  return h('span', { class: 'share' }, h('span', { class: 'bar-track', 'aria-hidden': 'true' }, h('span', { class: 'bar-fill', style: { width: `${p * 100}%` } })), ` ${fmt.pct(p)}`);
}

function countTable(caption, keyLabel, rows, total, extra = []) {
  return h('section', { class: 'stat' }, sortableTable([
    { key: 'key', label: keyLabel, render: (r) => h('code', {}, r.key) },
    ...extra,
    { key: 'count', label: 'Requests', num: true },
    { key: 'share', label: 'Share', num: true, value: (r) => r.count, render: (r) => shareCell(r.count, total) },
  ], rows, { sortKey: 'count', caption }));
}

export async function render(root, { params, shared }) {
  const service = params.get('service') || '';
  root.append(h('h1', {}, 'Traffic stats'),
    filterNote(shared.cluster, `Requests of spans recorded in ${shared.cluster} (tag istio.cluster_id, cluster or k8s.cluster.name).`));
  const status = h('div', {}, message('loading', 'Computing statistics…'));
  root.append(status);
  let st;
  try {
    st = await api.stats({ window: `${shared.seconds}s`, cluster: shared.cluster, service });
  } catch (e) {
    clear(status).append(message('error', `Statistics could not be loaded: ${e.message}`));
    return;
  }
  clear(status);
  const total = st.totals?.requests || 0;
  const services = (st.per_service || []).map((x) => x.key);
  if (service && !services.includes(service)) services.unshift(service);
  root.append(h('div', { class: 'toolbar' },
    h('label', {}, 'Service ', h('select', { onchange: (e) => url.update({ service: e.target.value }) },
      h('option', { value: '' }, 'all services'), services.map((s1) => h('option', { value: s1, selected: s1 === service }, s1))))),
  h('ul', { class: 'cards', 'aria-label': 'Totals' },
    [['requests', total], ['traces', st.totals?.traces], ['spans', st.totals?.spans], ['URLs', st.distinct?.urls?.length ?? st.per_url?.length], ['user agents', st.distinct?.user_agents?.length ?? st.user_agents?.length]]
      .map(([k, v]) => h('li', { class: 'card' }, h('span', { class: 'card-num' }, fmt.num(v ?? 0)), h('span', { class: 'card-label' }, k)))));
  if (!total) {
    root.append(message('warn', `No requests in the last ${shared.range}${service ? ` for ${service}` : ''}${shared.cluster ? ` in cluster ${shared.cluster}` : ''}.`));
    return;
  }
  const grid = h('div', { class: 'stats-grid' });
  root.append(grid);
  grid.append(
    countTable('Requests per service', 'Service', st.per_service || [], total),
    countTable('Requests per status code', 'Status', st.per_status || [], total),
    countTable('Requests per URL', 'URL', st.per_url || [], total),
    h('section', { class: 'stat' }, sortableTable([
      { key: 'key', label: 'User agent', render: (r) => h('code', {}, r.key) },
      { key: 'count', label: 'Requests', num: true },
      { key: 'share', label: 'Share', num: true, render: (r) => shareCell(r.count, total) },
    ], st.user_agents || [], { sortKey: 'count', caption: 'User agents' })),
    h('section', { class: 'stat wide' }, sortableTable([
      { key: 'service', label: 'Service', render: (r) => h('a', { href: url.href('topology', { focus: r.service, sel: r.service }) }, r.service) },
      { key: 'count', label: 'Requests', num: true },
      ...['min_ms', 'avg_ms', 'p50_ms', 'p90_ms', 'p99_ms', 'max_ms'].map((k) => ({ key: k, label: k.replace('_ms', '').replace('avg', 'mean'), num: true, fmt: fmt.ms })),
    ], st.response_times || [], { sortKey: 'count', caption: 'Response times per service' })),
    countTable('Requests per service and URL', 'Service', st.per_service_url || [], total, [{ key: 'sub', label: 'URL', render: (r) => h('code', {}, r.sub) }]),
    countTable('Requests per URL and status', 'URL', st.per_url_status || [], total, [{ key: 'sub', label: 'Status' }]));
}
