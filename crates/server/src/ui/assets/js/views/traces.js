// Traces: search (service, operation, tags, duration bounds, errors only) over the shared
// time range; results as a duration-vs-time scatter and a list; one trace as a waterfall with
// span details, its critical path marked, and each span's service linked to its graph node.
// The cluster filter asks for traces with a span tagged with the cluster: Zipkin's
// annotationQuery has no "or", so one search per tag a cluster is known by (`cluster` from
// Zipkin senders and agents, `k8s.cluster.name` from OTel, `istio.cluster_id` from Istio's
// proxies), merged by trace id. Its limit: a trace none of whose spans carries such a tag is
// never shown while the filter is on, and with a service chosen the tag must be on a span of
// that service (Zipkin's rule for annotationQuery).

import { h, clear, message, sortableTable } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import * as api from '../api.js';
import { scatterChart } from '../chart.js';
import { filterNote } from '../clusters.js';

export const title = 'Traces';

/** The span tags that name a span's cluster, in the order the analyses read them. */
export const CLUSTER_TAGS = ['cluster', 'k8s.cluster.name', 'istio.cluster_id'];

/** The cluster a span names, or ''. */
export const spanCluster = (sp) => CLUSTER_TAGS.map((k) => sp.tags?.[k]).find(Boolean) || '';

/**
 * Searches with the cluster filter: one search per cluster tag, merged by trace id, the
 * newest `limit` kept (each search already gives its newest `limit`).
 */
export async function searchInCluster(q, cluster) {
  if (!cluster) return api.traces(q);
  const and = (t) => [q.annotationQuery, t].filter(Boolean).join(' and ');
  const found = await Promise.all(CLUSTER_TAGS.map((k) => api.traces({ ...q, annotationQuery: and(`${k}=${cluster}`) })));
  const byId = new Map();
  for (const list of found) for (const t of list || []) if (t.length && !byId.has(t[0].traceId)) byId.set(t[0].traceId, t);
  const start = (t) => Math.min(...t.map((sp) => sp.timestamp ?? Infinity));
  return [...byId.values()].sort((a, b) => start(b) - start(a)).slice(0, +q.limit || 100);
}

const isError = (sp) => sp.tags && ('error' in sp.tags || +sp.tags['http.status_code'] >= 500 || sp.tags['otel.status_code'] === 'ERROR');
const svcOf = (sp) => sp.localEndpoint?.serviceName || 'unknown';

/** A summary of one trace (a list of Zipkin v2 spans). */
export function summarise(spans) {
  let start = Infinity, end = -Infinity;
  for (const sp of spans) {
    if (sp.timestamp === undefined) continue;
    start = Math.min(start, sp.timestamp);
    end = Math.max(end, sp.timestamp + (sp.duration || 0));
  }
  const ids = new Set(spans.map((sp) => sp.id));
  const root = spans.find((sp) => !sp.parentId && !sp.shared) || spans.find((sp) => !sp.parentId || !ids.has(sp.parentId)) || spans[0];
  return {
    id: spans[0]?.traceId,
    start: start / 1000,
    durationUs: end > start ? end - start : 0,
    root: root ? `${svcOf(root)}: ${root.name || ''}` : '',
    services: new Set(spans.map(svcOf)).size,
    spans: spans.length,
    errors: spans.filter(isError).length,
    clusters: [...new Set(spans.map(spanCluster).filter(Boolean))].sort(),
  };
}

export async function render(root, { params, shared }) {
  root.append(h('h1', {}, 'Traces'));
  if (params.get('trace')) return renderTrace(root, params);
  const form = searchForm(params);
  const results = h('div', {}, message('loading', 'Searching…'));
  root.append(filterNote(shared.cluster, `Traces with a span tagged ${CLUSTER_TAGS.map((k) => `${k}=${shared.cluster}`).join(', ')}${params.get('service') ? ` on ${params.get('service')}` : ''}; spans without a cluster tag are left out.`), form, results);
  if (params.get('remote')) {
    form.after(h('p', {}, h('span', { class: 'chip' }, `Calling ${params.get('remote')} `,
      h('button', { type: 'button', class: 'link', onclick: () => url.update({ remote: '' }) }, 'any callee'))));
  }
  fillServices(form, params);
  const q = {
    serviceName: params.get('service') || undefined,
    remoteServiceName: params.get('remote') || undefined,
    spanName: params.get('op') || undefined,
    annotationQuery: [params.get('tags'), params.get('errors') ? 'error' : ''].filter(Boolean).join(' and ') || undefined,
    minDuration: durUs(params.get('min')),
    maxDuration: durUs(params.get('max')),
    lookback: shared.seconds * 1000,
    limit: params.get('limit') || 100,
  };
  // `at` (ms): the window around that moment (an event's link) instead of the last one.
  const at = Number(params.get('at')) || 0;
  if (at) {
    q.endTs = Math.round(Math.min(Date.now(), at + shared.seconds * 500));
    form.after(h('p', {}, h('span', { class: 'chip at-chip' }, `Around ${fmt.time(at, true)} `,
      h('button', { type: 'button', class: 'link', onclick: () => url.update({ at: '' }) }, 'back to now'))));
  }
  let traces;
  try {
    traces = await searchInCluster(q, shared.cluster);
  } catch (e) {
    clear(results).append(message('error', `Search failed: ${e.message}`));
    return;
  }
  clear(results);
  const rows = (traces || []).filter((t) => t.length).map(summarise);
  if (!rows.length) {
    results.append(message('warn', `No traces match in ${at ? `the ${shared.range} around ${fmt.time(at)}` : `the last ${shared.range}`}${shared.cluster ? ` in cluster ${shared.cluster}` : ''}.`));
    return;
  }
  const open = (id) => url.update({ trace: id });
  results.append(
    h('p', { class: 'muted' }, `${rows.length} traces${rows.length >= +q.limit ? ` (the newest ${q.limit}; raise the limit for more)` : ''}.`),
    scatterChart(rows.map((r) => ({
      x: r.start, y: r.durationUs / 1000, error: r.errors > 0,
      label: `${r.root} — ${fmt.us(r.durationUs)} at ${fmt.time(r.start)}${r.errors ? `, ${r.errors} error spans` : ''}`,
      onClick: () => open(r.id),
    })), { title: 'Duration over time (click a point to open the trace)', yFmt: fmt.ms, height: 190 }),
    sortableTable([
      { key: 'start', label: 'Start', num: true, fmt: (v) => fmt.time(v) },
      { key: 'root', label: 'Root span', render: (r) => h('a', { href: url.href('traces', { trace: r.id }), class: 'trace-link' }, r.root) },
      { key: 'durationUs', label: 'Duration', num: true, fmt: fmt.us },
      { key: 'spans', label: 'Spans', num: true },
      { key: 'services', label: 'Services', num: true },
      rows.some((r) => r.clusters.length) ? { key: 'clusters', label: 'Clusters', value: (r) => r.clusters.join(', '), render: (r) => h('span', { class: 'trace-clusters', dataset: { clusters: r.clusters.join(',') } }, r.clusters.join(', ') || '–') } : null,
      { key: 'errors', label: 'Errors', num: true, render: (r) => (r.errors ? h('span', { class: 'sev sev-error' }, `✕ ${r.errors}`) : '0') },
      { key: 'id', label: 'Trace id', render: (r) => h('code', { class: 'small' }, r.id) },
    ].filter(Boolean), rows, { sortKey: 'start', desc: true, caption: 'Matching traces' }));
}

function durUs(text) {
  const v = fmt.parseDuration(text);
  return v === null ? undefined : Math.round(v * 1000);
}

function searchForm(params) {
  const field = (label, input) => h('label', {}, h('span', {}, label), input);
  const service = h('select', { name: 'service', id: 'trace-service' }, h('option', { value: '' }, 'all services'));
  const op = h('select', { name: 'op' }, h('option', { value: '' }, 'all operations'));
  const form = h('form', {
    class: 'search', role: 'search', 'aria-label': 'Trace search',
    onsubmit: (e) => {
      e.preventDefault();
      const d = new FormData(form);
      url.update({
        service: d.get('service'), op: d.get('op'), tags: d.get('tags').trim(), min: d.get('min').trim(),
        max: d.get('max').trim(), errors: d.get('errors') ? '1' : '', limit: d.get('limit') === '100' ? '' : d.get('limit'),
      });
    },
  },
  field('Service', service),
  field('Operation', op),
  field('Tags', h('input', { name: 'tags', value: params.get('tags') || '', placeholder: 'http.status_code=503 and key', size: 22 })),
  field('Min duration', h('input', { name: 'min', value: params.get('min') || '', placeholder: 'e.g. 100ms', size: 7 })),
  field('Max duration', h('input', { name: 'max', value: params.get('max') || '', placeholder: 'e.g. 2s', size: 7 })),
  field('Limit', h('select', { name: 'limit' }, ['20', '100', '500', '1000'].map((v) => h('option', { value: v, selected: v === (params.get('limit') || '100') }, v)))),
  h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'errors', checked: !!params.get('errors') }), ' Errors only'),
  h('button', { type: 'submit', class: 'primary' }, 'Search'));
  service.addEventListener('change', () => fillOps(op, service.value, ''));
  return form;
}

async function fillServices(form, params) {
  const sel = form.querySelector('select[name=service]');
  const want = params.get('service') || '';
  let list = [];
  try { list = await api.services(); } catch { /* the search itself reports errors */ }
  if (want && !list.includes(want)) list = [want, ...list];
  sel.append(...list.map((s1) => h('option', { value: s1, selected: s1 === want }, s1)));
  fillOps(form.querySelector('select[name=op]'), want, params.get('op') || '');
}

async function fillOps(sel, service, want) {
  clear(sel).append(h('option', { value: '' }, 'all operations'));
  if (!service) return;
  let list = [];
  try { list = await api.spanNames(service); } catch { /* optional */ }
  if (want && !list.includes(want)) list = [want, ...list];
  sel.append(...list.map((n) => h('option', { value: n, selected: n === want }, n)));
}

// ---- the waterfall ---------------------------------------------------------------------

/** Orders spans as a tree (depth first, by start), joining shared client/server halves. */
export function tree(spans) {
  const nodes = spans.map((sp, i) => ({ sp, i, kids: [], depth: 0, parent: null }));
  const byId = new Map();
  for (const n of nodes) {
    if (!byId.has(n.sp.id)) byId.set(n.sp.id, []);
    byId.get(n.sp.id).push(n);
  }
  for (const n of nodes) {
    let parent = null;
    if (n.sp.shared) parent = (byId.get(n.sp.id) || []).find((m) => m !== n && !m.sp.shared) || null;
    if (!parent && n.sp.parentId) {
      const cands = (byId.get(n.sp.parentId) || []).filter((m) => m !== n);
      parent = cands.find((m) => m.sp.kind === 'SERVER' || m.sp.shared) || cands.find((m) => m.sp.kind !== 'CLIENT') || cands[0] || null;
    }
    // Guard against cycles from malformed input.
    for (let p = parent; p; p = p.parent) if (p === n) { parent = null; break; }
    n.parent = parent;
  }
  const roots = [];
  for (const n of nodes) (n.parent ? n.parent.kids : roots).push(n);
  const byStart = (a, b) => (a.sp.timestamp || 0) - (b.sp.timestamp || 0);
  const out = [];
  const walk = (n, d) => { n.depth = d; out.push(n); n.kids.sort(byStart).forEach((k) => walk(k, d + 1)); };
  roots.sort(byStart).forEach((r) => walk(r, 0));
  return { rows: out, roots };
}

/** Marks the critical path: from each root, the child that finishes last, then recursively before it. */
export function criticalPath(roots) {
  const on = new Set();
  const end = (n) => (n.sp.timestamp || 0) + (n.sp.duration || 0);
  const visit = (n, bound) => {
    on.add(n);
    let cursor = Math.min(end(n), bound);
    const kids = [...n.kids].sort((a, b) => end(b) - end(a));
    for (const k of kids) {
      if (cursor <= (n.sp.timestamp || 0)) break;
      if ((k.sp.timestamp || 0) >= cursor) continue;
      visit(k, cursor);
      cursor = k.sp.timestamp || 0;
    }
  };
  const main = [...roots].sort((a, b) => (b.sp.duration || 0) - (a.sp.duration || 0))[0];
  if (main) visit(main, Infinity);
  return on;
}

async function renderTrace(root, params) {
  const id = params.get('trace');
  const back = h('a', { href: url.href('traces', Object.fromEntries([...params].filter(([k]) => !['trace', 'span', ...url.SHARED].includes(k)))) }, '← Back to the search');
  const body = h('div', {}, message('loading', `Loading trace ${id}…`));
  root.append(h('p', {}, back), body);
  let spans;
  try {
    spans = await api.trace(id);
  } catch (e) {
    clear(body).append(message('error', e.status === 404 ? `Trace ${id} was not found (it may be past retention).` : `Trace ${id}: ${e.message}`));
    return;
  }
  clear(body);
  const sum = summarise(spans);
  const { rows, roots } = tree(spans);
  const crit = criticalPath(roots);
  const t0 = Math.min(...spans.map((sp) => sp.timestamp ?? Infinity));
  const total = Math.max(1, sum.durationUs);
  const manyClusters = sum.clusters.length > 1;
  body.append(h('h2', {}, sum.root, ' ', h('span', { class: 'muted' }, fmt.us(sum.durationUs))),
    h('p', { class: 'muted' }, `Trace ${id} · ${fmt.time(sum.start, true)} · ${sum.spans} spans · ${sum.services} services`,
      sum.clusters.length ? ` · cluster${manyClusters ? 's' : ''} ${sum.clusters.join(', ')}` : '', ` · ${sum.errors} with errors`),
    h('p', { class: 'wf-legend' }, h('span', { class: 'wf-bar-key crit' }, '◆'), ' on the critical path   ',
      h('span', { class: 'wf-bar-key err' }, '✕'), ' span with an error   click a span for its details'));
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  const wf = h('div', { class: 'waterfall', role: 'table', 'aria-label': 'Spans of the trace' },
    h('div', { class: 'wf-row wf-head', role: 'row' },
      h('div', { class: 'wf-name', role: 'columnheader' }, 'Service: operation'),
      h('div', { class: 'wf-time', role: 'columnheader' }, ticks.map((f) => h('span', { class: 'wf-tick', style: { left: `${f * 100}%` } }, fmt.us(f * total))))));
  const selected = params.get('span') || '';
  for (const n of rows) {
    const sp = n.sp;
    const left = (((sp.timestamp ?? t0) - t0) / total) * 100;
    const width = Math.max(0.3, ((sp.duration || 0) / total) * 100);
    const err = isError(sp);
    const onCrit = crit.has(n);
    const svc = svcOf(sp);
    const key = `${sp.id}${sp.shared ? ':s' : ''}`;
    const details = h('div', { class: 'wf-details', hidden: selected !== key }, spanDetails(sp));
    const row = h('div', { class: `wf-row${onCrit ? ' crit' : ''}${err ? ' err' : ''}`, role: 'row', dataset: { spanId: sp.id } },
      h('div', { class: 'wf-name', role: 'cell', style: { paddingLeft: `${0.4 + n.depth * 0.9}em` } },
        onCrit ? h('span', { class: 'crit-mark', title: 'on the critical path' }, '◆ ') : null,
        err ? h('span', { class: 'err-mark', title: 'error' }, '✕ ') : null,
        h('a', { href: url.href('topology', { focus: svc, sel: svc }), class: 'svc-link', title: `${svc} in the service graph` }, svc),
        manyClusters && spanCluster(sp) ? h('span', { class: 'span-cluster', title: 'the cluster this span was recorded in' }, ` @${spanCluster(sp)}`) : null,
        ': ',
        h('button', { type: 'button', class: 'link span-toggle', 'aria-expanded': String(selected === key),
          onclick: (e) => { details.hidden = !details.hidden; e.currentTarget.setAttribute('aria-expanded', String(!details.hidden)); } },
        `${sp.name || '(unnamed)'}${sp.kind ? ` [${sp.kind.toLowerCase()}]` : ''}`)),
      h('div', { class: 'wf-time', role: 'cell' },
        h('span', { class: 'wf-bar', style: { left: `${left}%`, width: `${width}%` }, title: `${fmt.us(sp.duration || 0)} from +${fmt.us((sp.timestamp ?? t0) - t0)}` }),
        h('span', { class: 'wf-dur', style: { left: `${Math.min(left + width, 88)}%` } }, fmt.us(sp.duration || 0))));
    wf.append(row, details);
  }
  body.append(wf);
}

function spanDetails(sp) {
  const rows = [
    ['Span id', sp.id], ['Parent id', sp.parentId || '(root)'], ['Kind', sp.kind || '–'],
    ['Start', sp.timestamp ? `${fmt.time(sp.timestamp / 1000, true)}.${String(Math.floor(sp.timestamp % 1e6)).padStart(6, '0')}` : '–'],
    ['Duration', fmt.us(sp.duration || 0)],
    ['Local endpoint', endpoint(sp.localEndpoint)], ['Remote endpoint', endpoint(sp.remoteEndpoint)],
    ['Shared', sp.shared ? 'yes' : 'no'],
  ];
  return h('div', {},
    h('table', { class: 'kv' }, h('tbody', {},
      rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, h('code', {}, v)))),
      Object.entries(sp.tags || {}).sort().map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, h('code', {}, v)))))),
    sp.annotations?.length ? h('ul', { class: 'small' }, sp.annotations.map((a) => h('li', {}, `${fmt.time(a.timestamp / 1000)} ${a.value}`))) : null);
}

function endpoint(e) {
  if (!e) return '–';
  return [e.serviceName, e.ipv4 || e.ipv6, e.port].filter(Boolean).join(' ');
}
