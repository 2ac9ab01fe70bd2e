// Metrics: a PromQL input with history (localStorage) and completion of metric names,
// label names and functions (names from the server's API); results as a line chart (legend,
// hover values) over the shared time range, or as a table of the instant values.

import { h, clear, message, sortableTable } from '../dom.js';
import * as url from '../state/url.js';
import * as api from '../api.js';
import { lineChart, matrixSeries, seriesName, exemplarMarkers } from '../chart.js';
import { filterNote } from '../clusters.js';
import * as fmt from '../format.js';
import * as anomalies from '../anomalies.js';

export const title = 'Metrics';

const HISTORY_KEY = 'meshlens.promql.history';
const EXAMPLE = 'sum by (destination_workload) (rate(istio_requests_total{reporter="source"}[1m]))';
const FUNCTIONS = ['abs', 'absent', 'avg', 'avg_over_time', 'bottomk', 'ceil', 'changes', 'clamp_max', 'clamp_min', 'count',
  'count_over_time', 'delta', 'deriv', 'floor', 'group', 'histogram_quantile', 'idelta', 'increase', 'irate', 'label_replace',
  'max', 'max_over_time', 'min', 'min_over_time', 'quantile', 'quantile_over_time', 'rate', 'resets', 'round', 'scalar',
  'sort', 'sort_desc', 'stddev', 'sum', 'sum_over_time', 'time', 'topk', 'vector', 'by', 'without', 'offset', 'on', 'ignoring',
  // Prometheus 3: native histograms, info metrics, sampling, fill modifiers, query parameters.
  'histogram_count', 'histogram_sum', 'histogram_avg', 'histogram_fraction', 'histogram_stddev', 'histogram_stdvar',
  'info', 'limitk', 'limit_ratio', 'first_over_time', 'ts_of_first_over_time', 'ts_of_last_over_time',
  'ts_of_min_over_time', 'ts_of_max_over_time', 'fill', 'fill_left', 'fill_right', 'step', 'range', 'start', 'end',
  'min_of', 'max_of'];

export function history() {
  try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]').filter((x) => typeof x === 'string'); } catch { return []; }
}

function remember(q) {
  const list = [q, ...history().filter((x) => x !== q)].slice(0, 30);
  try { localStorage.setItem(HISTORY_KEY, JSON.stringify(list)); } catch { /* private mode */ }
}

// Per tenant: one tenant's metric and label names must never be offered to another.
let names = null; // {tenant, list: Promise<{metrics, labels}>}
async function loadNames() {
  const tenant = api.currentTenant();
  if (!names || names.tenant !== tenant) {
    names = {
      tenant,
      list: Promise.all([api.metricNames().catch(() => []), api.labelNames().catch(() => [])])
        .then(([metrics, labels]) => ({ metrics, labels })),
    };
  }
  return names.list;
}

/** What to complete at `pos` in `text`: {kind: 'label'|'metric', word, start}. */
export function completionContext(text, pos) {
  const before = text.slice(0, pos);
  const word = /[a-zA-Z_:][a-zA-Z0-9_:]*$/.exec(before)?.[0] || '';
  const start = pos - word.length;
  const head = before.slice(0, start);
  const opens = (head.match(/\{/g) || []).length - (head.match(/\}/g) || []).length;
  if (opens > 0) {
    const inner = head.slice(head.lastIndexOf('{') + 1);
    const last = inner.split(',').pop();
    if (/["'=~!]/.test(last)) return null; // a matcher's operator or value, not a label name
    return { kind: 'label', word, start };
  }
  if (/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*,)?\s*$/.test(head)) return { kind: 'label', word, start };
  if (/\[[^\]]*$/.test(head)) return null; // a range duration
  return { kind: 'metric', word, start };
}

export async function render(root, { params, shared }) {
  const q = params.get('q') || '';
  const tab = params.get('tab') === 'table' ? 'table' : 'graph';
  const input = h('textarea', {
    id: 'promql', rows: 2, spellcheck: false, autocomplete: 'off', value: q || '',
    placeholder: EXAMPLE, role: 'combobox', 'aria-autocomplete': 'list', 'aria-expanded': 'false', 'aria-controls': 'promql-suggest',
  });
  const list = h('ul', { id: 'promql-suggest', role: 'listbox', class: 'suggest', hidden: true, 'aria-label': 'Completions' });
  const run = () => {
    const text = input.value.trim() || EXAMPLE;
    remember(text);
    url.update({ q: text });
  };
  const hist = history();
  root.append(h('h1', {}, 'Metrics'),
    filterNote(shared.cluster, h('span', {}, 'does not apply to raw PromQL: add ',
      h('code', {}, `cluster="${shared.cluster}"`), ' (series an agent forwarded) or ',
      h('code', {}, `destination_cluster="${shared.cluster}"`), ' (Istio metrics) to your selectors.')),
    h('form', { class: 'promql-form', onsubmit: (e) => { e.preventDefault(); run(); } },
      h('label', { for: 'promql' }, 'PromQL query'),
      h('div', { class: 'promql-box' }, input, list),
      h('div', { class: 'toolbar' },
        h('button', { type: 'submit', class: 'primary' }, 'Run'),
        h('span', { class: 'tabs', role: 'tablist', 'aria-label': 'Result as' },
          ['graph', 'table'].map((t) => h('button', {
            type: 'button', role: 'tab', 'aria-selected': String(t === tab), class: t === tab ? 'active' : '',
            onclick: () => url.update({ tab: t === 'graph' ? '' : t, q: input.value.trim() || q }, { replace: true }),
          }, t === 'graph' ? 'Graph' : 'Table'))),
        h('span', { class: 'muted small' }, 'Enter runs, Shift+Enter for a new line, Tab completes. The cluster/namespace filter does not apply to raw PromQL.')),
      hist.length ? h('details', { class: 'history' }, h('summary', {}, `History (${hist.length})`),
        h('ul', {}, hist.map((x) => h('li', {}, h('a', { href: url.href('metrics', { q: x, tab: tab === 'table' ? 'table' : '' }) }, h('code', {}, x)))))) : null));
  completion(input, list, run);
  const out = h('div', { class: 'result' });
  root.append(out);
  if (!q) {
    out.append(message('info', 'Type a query, or run the example: request rate per workload.'));
    return;
  }
  clear(out).append(message('loading', 'Querying…'));
  // `at` (ms): the window around that moment (an event's link), marked on the chart.
  const at = Number(params.get('at')) || 0;
  const end = at ? Math.min(Date.now() / 1000, at / 1000 + shared.seconds / 2) : undefined;
  const service = anomalies.serviceOfQuery(q);
  try {
    if (tab === 'graph') {
      const [d, odd, ex] = await Promise.all([api.queryRange(q, shared.seconds, 240, end),
        service ? anomalies.load(service).catch(() => null) : null,
        api.exemplars(q, shared.seconds, end)]);
      clear(out);
      if (d.resultType !== 'matrix') { out.append(message('warn', `A ${d.resultType} result cannot be graphed; see the table.`)); return; }
      const series = matrixSeries(d.result);
      const bands = anomalies.bands(odd, [service]);
      if (at) bands.push({ start: at, end: at, cls: 'band-event', label: `The event at ${fmt.time(at, true)}` });
      out.append(h('p', { class: 'muted' }, `${series.length} series over `,
        at ? [`${shared.range} around ${fmt.time(at, true)} `, h('a', { href: url.href('metrics', { q, at: '' }) }, 'back to now')] : `the last ${shared.range}`,
        service && bands.some((b) => !b.cls) ? `; shaded: anomalies of ${service}` : '', '.'),
      lineChart(series, { height: 320, width: 1000, title: q, bands, markers: exemplarMarkers(ex, (id) => url.href('traces', { trace: id })), xRange: [((end ?? Date.now() / 1000) - shared.seconds) * 1000, (end ?? Date.now() / 1000) * 1000] }));
    } else {
      const d = await api.query(q);
      clear(out).append(resultTable(d));
    }
  } catch (e) {
    clear(out).append(message('error', e.message));
  }
}

function resultTable(d) {
  if (d.resultType === 'scalar' || d.resultType === 'string') {
    return h('p', {}, `${d.resultType}: `, h('b', {}, String(d.result[1])));
  }
  const num = (v) => (Number.isFinite(v) ? String(+v.toPrecision(6)) : String(v));
  const rows = d.result.map((r) => {
    // A native histogram: the instant one, or a range's newest.
    const hist = r.histogram?.[1] ?? r.histograms?.[r.histograms.length - 1]?.[1];
    return {
      series: seriesName(r.metric),
      value: hist ? parseFloat(hist.count)
        : r.value ? parseFloat(r.value[1]) : parseFloat(r.values?.[r.values.length - 1]?.[1]),
      hist,
    };
  });
  const columns = [
    { key: 'series', label: 'Series', render: (r) => h('code', {}, r.series) },
    {
      key: 'value', label: 'Value', num: true, fmt: num,
      render: (r) => (r.hist ? h('span', { class: 'hist-value' }, `count ${num(r.value)}, sum ${num(parseFloat(r.hist.sum))}`) : num(r.value)),
    },
  ];
  if (rows.some((r) => r.hist)) {
    columns.push({ key: 'buckets', label: 'Buckets', render: (r) => (r.hist ? bucketBars(r.hist) : '') });
  }
  return sortableTable(columns, rows, { sortKey: 'value', desc: true, caption: `${rows.length} series`, empty: 'Empty result.' });
}

// A native histogram's buckets as bars, one per bucket in bound order, each titled with its
// range and count; the lowest and highest bounds under them.
export function bucketBars(hist) {
  const buckets = (hist.buckets || []).map(([rule, lo, hi, c]) => ({ rule, lo: parseFloat(lo), hi: parseFloat(hi), c: parseFloat(c) }));
  if (!buckets.length) return h('span', { class: 'muted' }, 'no observations');
  const max = Math.max(...buckets.map((b) => b.c)) || 1;
  const w = 8, height = 40, gap = 1;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'hist-bars');
  svg.setAttribute('width', String(buckets.length * (w + gap)));
  svg.setAttribute('height', String(height));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${buckets.length} buckets`);
  const open = (rule) => [rule === 0 || rule === 2 ? '(' : '[', rule === 1 || rule === 2 ? ')' : ']'];
  buckets.forEach((b, i) => {
    const bar = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    const barHeight = Math.max(1, (b.c / max) * height);
    bar.setAttribute('x', String(i * (w + gap)));
    bar.setAttribute('y', String(height - barHeight));
    bar.setAttribute('width', String(w));
    bar.setAttribute('height', String(barHeight));
    bar.setAttribute('class', 'hist-bar');
    const [l, r] = open(b.rule);
    const title = document.createElementNS('http://www.w3.org/2000/svg', 'title');
    title.textContent = `${l}${b.lo}, ${b.hi}${r}: ${b.c}`;
    bar.append(title);
    svg.append(bar);
  });
  return h('span', { class: 'hist' }, svg,
    h('span', { class: 'muted hist-range' }, ` ${buckets[0].lo} … ${buckets[buckets.length - 1].hi}`));
}

function completion(input, list, run) {
  let items = [], active = -1, ctx = null;
  const close = () => { list.hidden = true; input.setAttribute('aria-expanded', 'false'); input.removeAttribute('aria-activedescendant'); active = -1; };
  const accept = (i) => {
    const item = items[i];
    if (!item || !ctx) return;
    const v = input.value;
    input.value = v.slice(0, ctx.start) + item + v.slice(input.selectionStart);
    const p = ctx.start + item.length;
    input.setSelectionRange(p, p);
    close();
    input.focus();
  };
  const highlight = (i) => {
    active = i;
    [...list.children].forEach((li, k) => li.setAttribute('aria-selected', String(k === i)));
    if (i >= 0) { input.setAttribute('aria-activedescendant', `sug-${i}`); list.children[i]?.scrollIntoView({ block: 'nearest' }); }
  };
  const refresh = async () => {
    ctx = completionContext(input.value, input.selectionStart);
    if (!ctx || (!ctx.word && ctx.kind === 'metric')) { close(); return; }
    const n = await loadNames();
    const pool = ctx.kind === 'label' ? n.labels : [...n.metrics, ...FUNCTIONS];
    const w = ctx.word.toLowerCase();
    const pre = pool.filter((x) => x.toLowerCase().startsWith(w));
    const mid = pool.filter((x) => !x.toLowerCase().startsWith(w) && x.toLowerCase().includes(w));
    items = [...new Set([...pre, ...mid])].filter((x) => x !== ctx.word).slice(0, 12);
    clear(list);
    if (!items.length) { close(); return; }
    items.forEach((x, i) => list.append(h('li', {
      id: `sug-${i}`, role: 'option', 'aria-selected': 'false',
      onmousedown: (e) => { e.preventDefault(); accept(i); },
    }, x, h('span', { class: 'muted small' }, ctx.kind === 'label' ? ' label' : FUNCTIONS.includes(x) ? ' function' : ' metric'))));
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    highlight(0);
  };
  input.addEventListener('input', refresh);
  input.addEventListener('focus', () => { loadNames(); });
  input.addEventListener('blur', () => setTimeout(close, 100));
  input.addEventListener('keydown', (e) => {
    const open = !list.hidden;
    if (open && e.key === 'ArrowDown') { e.preventDefault(); highlight((active + 1) % items.length); }
    else if (open && e.key === 'ArrowUp') { e.preventDefault(); highlight((active - 1 + items.length) % items.length); }
    else if (open && (e.key === 'Tab' || (e.key === 'Enter' && active >= 0))) { e.preventDefault(); accept(active); }
    else if (open && e.key === 'Escape') { e.preventDefault(); close(); }
    else if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); run(); }
  });
}
