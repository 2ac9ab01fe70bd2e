// Verify: a canary judged against its baseline (`/api/v1/verify`), as Kayenta does: each
// metric's per-interval figures of both versions compared with Mann-Whitney U, a weighted
// score, and a verdict (pass, fail, or inconclusive when there is too little traffic). The
// form lives in the URL, so a report can be bookmarked and re-run.

import { h, clear, message } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import * as api from '../api.js';

export const title = 'Verify';

const VERDICTS = {
  pass: { glyph: '✓', label: 'Pass', cls: 'healthy' },
  fail: { glyph: '✕', label: 'Fail', cls: 'failure' },
  inconclusive: { glyph: '?', label: 'Inconclusive', cls: 'degraded' },
};
const CLASSES = {
  pass: ['✓', 'pass'], high: ['▲', 'high'], low: ['▼', 'low'], nodata: ['–', 'no data'], info: ['i', 'info'],
};
const WINDOWS = ['5m', '10m', '15m', '30m', '1h', '3h'];
const FIELDS = ['service', 'namespace', 'baseline', 'canary', 'window', 'source'];

/** A verdict as a badge: glyph, word and colour. */
export function verdictBadge(verdict) {
  const v = VERDICTS[verdict] || VERDICTS.inconclusive;
  return h('span', { class: `health health-${v.cls} verdict verdict-${verdict}`, dataset: { verdict: String(verdict) } },
    h('span', { class: 'health-glyph', 'aria-hidden': 'true' }, v.glyph), ` ${v.label}`);
}

function classBadge(c) {
  const [glyph, word] = CLASSES[String(c).toLowerCase()] || ['•', String(c)];
  return h('span', { class: `cls cls-${String(c).toLowerCase()}` }, h('span', { 'aria-hidden': 'true' }, glyph), ` ${word}`);
}

const figure = (sum) => (sum && sum.n ? `${fmt.num(sum.median ?? sum.mean)} (n=${sum.n})` : '–');

function fill(datalist, values) {
  for (const v of [...new Set(values)].filter(Boolean).sort()) datalist.append(h('option', { value: v }));
}

function form(params) {
  const field = (name, label, attrs) => h('label', {}, label, h('input', { name, value: params.get(name) || '', ...attrs }));
  const f = h('form', {
    class: 'search verify-form', id: 'verify-form',
    onsubmit: (e) => {
      e.preventDefault();
      const data = new FormData(f);
      url.update(Object.fromEntries(FIELDS.map((k) => [k, String(data.get(k) || '').trim()])));
    },
  },
  field('service', 'Service', { list: 'vf-services', required: true, placeholder: 'e.g. http-lb', size: 16 }),
  field('namespace', 'Namespace', { placeholder: 'any', size: 10 }),
  field('baseline', 'Baseline version', { list: 'vf-versions', required: true, placeholder: 'e.g. v1', size: 8 }),
  field('canary', 'Canary version', { list: 'vf-versions', required: true, placeholder: 'e.g. v2', size: 8 }),
  h('label', {}, 'Window', h('select', { name: 'window' }, WINDOWS.map((w) => h('option', { value: w, selected: w === (params.get('window') || '10m') }, w)))),
  h('label', {}, 'Source', h('select', { name: 'source' }, ['auto', 'metrics', 'traces'].map((w) => h('option', { value: w, selected: w === (params.get('source') || 'auto') }, w)))),
  h('button', { type: 'submit', class: 'primary' }, 'Judge'),
  h('datalist', { id: 'vf-services' }), h('datalist', { id: 'vf-versions' }));
  api.labelValues('destination_service_name').then((v) => fill(f.querySelector('#vf-services'), v)).catch(() => {});
  api.labelValues('destination_version').then((v) => fill(f.querySelector('#vf-versions'), v.filter((x) => x !== 'unknown'))).catch(() => {});
  return f;
}

function report(r) {
  const metrics = r.metrics || [];
  return h('section', { class: 'verify-report' },
    h('p', { class: 'verdict-line' }, verdictBadge(r.verdict), ' ',
      h('span', { class: 'verify-score' }, 'score ', h('b', {}, r.score === undefined || r.score === null ? '–' : fmt.num(r.score, 1))),
      ' ', h('span', {}, r.reason || '')),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Service'), h('dd', {}, `${r.service || ''}${r.namespace ? ` (namespace ${r.namespace})` : ''}`),
      h('dt', {}, 'Baseline'), h('dd', {}, `${r.baseline?.version ?? '?'}: ${fmt.num(r.baseline?.requests)} requests`),
      h('dt', {}, 'Canary'), h('dd', {}, `${r.canary?.version ?? '?'}: ${fmt.num(r.canary?.requests)} requests`),
      h('dt', {}, 'Window'), h('dd', {}, `${r.window || ''}${r.step ? ` in ${r.step} steps` : ''}${r.start ? `, ${fmt.time(r.start, true)} – ${fmt.time(r.end)}` : ''}`),
      h('dt', {}, 'From'), h('dd', {}, r.source || '')),
    h('table', { class: 'data verify-metrics' },
      h('caption', {}, `${metrics.length} metric${metrics.length === 1 ? '' : 's'}`),
      h('thead', {}, h('tr', {}, ['Metric', 'Baseline (median)', 'Canary (median)', 'Effect', 'p-value', 'Classification', 'Reason']
        .map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, metrics.length ? metrics.map((m) => h('tr', { class: `metric-row cls-row-${String(m.classification).toLowerCase()}`, dataset: { metric: m.name } },
        h('td', {}, h('b', {}, m.name), m.critical ? h('span', { class: 'muted small' }, ' critical') : null,
          h('div', { class: 'muted small' }, `${m.direction ? `${m.direction} is bad` : ''}${m.weight !== undefined ? ` · weight ${fmt.num(m.weight)}` : ''}`)),
        h('td', { class: 'num' }, figure(m.baseline)),
        h('td', { class: 'num' }, figure(m.canary)),
        h('td', { class: 'num' }, m.effect === null || m.effect === undefined ? '–' : `×${fmt.num(m.effect)}`),
        h('td', { class: 'num' }, m.p_value === null || m.p_value === undefined ? '–' : fmt.num(m.p_value, 4)),
        h('td', {}, classBadge(m.classification)),
        h('td', {}, m.reason || '')))
        : h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No metric was judged.')))));
}

export async function render(root, { params }) {
  root.append(h('h1', {}, 'Canary verification'),
    h('p', { class: 'muted' }, 'Compares the canary with the baseline over the window: success rate, p50 and p99 latency from Istio metrics, or from traces tagged service.version.'),
    form(params));
  const out = h('div', { class: 'verify-out' });
  root.append(out);
  const q = Object.fromEntries(FIELDS.map((k) => [k, params.get(k) || '']));
  if (!q.service || !q.baseline || !q.canary) {
    out.append(message('info', 'Name the service and its two versions, then Judge.'));
    return;
  }
  out.append(message('loading', `Judging ${q.canary} against ${q.baseline}…`));
  try {
    const r = await api.verify({ ...q, window: q.window || '10m', source: q.source || 'auto' });
    clear(out).append(report(r));
  } catch (e) {
    clear(out).append(e.missing
      ? message('info', 'Canary verification is not available on this server (/api/v1/verify).')
      : e.status === 400 ? message('warn', `The server refused the request: ${e.message}`)
        : message('error', `The verdict could not be computed: ${e.message}`));
  }
}
