// Traffic statistics in the manner of OPNFV Clover: requests per service, URL, status code
// and their pairs, user-agent shares and response times per service, every table sortable.
// Reads `GET /api/v1/stats`; on a server without it, computes the same tables in the browser
// from a sample of traces.

import { h, clear, message, sortableTable } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import * as api from '../api.js';

export const title = 'Traffic stats';

const tag = (sp, ...keys) => keys.map((k) => sp.tags?.[k]).find((v) => v !== undefined);

/** The stats shape of /api/v1/stats, from Zipkin traces (SERVER spans, or HTTP spans without kind). */
export function statsFromTraces(traces, service) {
  const count = () => new Map();
  const inc = (m, k, n = 1) => m.set(k, (m.get(k) || 0) + n);
  const perService = count(), perUrl = count(), perStatus = count(), perSU = count(), perUS = count(), ua = count();
  const times = new Map();
  let requests = 0, spans = 0;
  const traceIds = new Set();
  for (const t of traces) for (const sp of t) {
    spans++;
    const svc = sp.localEndpoint?.serviceName || 'unknown';
    if (service && svc !== service) continue;
    const u = tag(sp, 'http.url', 'http.path', 'http.target', 'url.path');
    const isReq = sp.kind === 'SERVER' || (!sp.kind && u !== undefined);
    if (!isReq) continue;
    requests++;
    traceIds.add(sp.traceId);
    const path = u ? String(u).replace(/^[a-z]+:\/\/[^/]+/, '').replace(/\?.*$/, '') || '/' : '(none)';
    const code = String(tag(sp, 'http.status_code', 'http.response.status_code') ?? '(none)');
    inc(perService, svc); inc(perUrl, path); inc(perStatus, code);
    inc(perSU, `${svc}\u0000${path}`); inc(perUS, `${path}\u0000${code}`);
    inc(ua, String(tag(sp, 'user_agent', 'http.user_agent', 'user_agent.original') ?? '(none)'));
    if (!times.has(svc)) times.set(svc, []);
    times.get(svc).push((sp.duration || 0) / 1000);
  }
  const list = (m) => [...m].map(([key, c]) => ({ key, count: c })).sort((a, b) => b.count - a.count || a.key.localeCompare(b.key));
  const pairs = (m) => list(m).map(({ key, count: c }) => { const [k, sub] = key.split('\u0000'); return { key: k, sub, count: c }; });
  const q = (xs, p) => xs[Math.min(xs.length - 1, Math.max(0, Math.ceil(p * xs.length) - 1))];
  return {
    totals: { traces: traceIds.size, spans, requests },
    per_service: list(perService), per_url: list(perUrl), per_status: list(perStatus),
    per_service_url: pairs(perSU), per_url_status: pairs(perUS),
    user_agents: list(ua).map((x) => ({ ...x, share: requests ? x.count / requests : 0 })),
    response_times: [...times].map(([svc, xs]) => {
      xs.sort((a, b) => a - b);
      return { service: svc, count: xs.length, min_ms: xs[0], max_ms: xs[xs.length - 1], avg_ms: xs.reduce((a, b) => a + b, 0) / xs.length, p50_ms: q(xs, 0.5), p90_ms: q(xs, 0.9), p99_ms: q(xs, 0.99) };
    }),
  };
}

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
  root.append(h('h1', {}, 'Traffic stats'));
  const status = h('div', {}, message('loading', 'Computing statistics…'));
  root.append(status);
  let st, note = '';
  try {
    st = await api.stats({ window: `${shared.seconds}s`, cluster: shared.cluster, service });
  } catch (e) {
    if (!e.missing) { clear(status).append(message('error', `Statistics could not be loaded: ${e.message}`)); return; }
    try {
      const traces = await api.traces({ lookback: shared.seconds * 1000, limit: 1000, serviceName: service || undefined });
      st = statsFromTraces(traces || [], service);
      note = `This server has no /api/v1/stats: these figures are computed in the browser from the newest ${traces.length} traces.`;
    } catch (e2) {
      clear(status).append(message('error', `Statistics could not be loaded: ${e2.message}`)); return;
    }
  }
  clear(status);
  if (note) status.append(message('info', note));
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
    root.append(message('warn', `No requests in the last ${shared.range}${service ? ` for ${service}` : ''}.`));
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
