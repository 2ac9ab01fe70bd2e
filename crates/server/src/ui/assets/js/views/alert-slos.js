// The Alerts view's SLOs (`/api/v1/slos`): per service its objective, the error budget left
// as a bar, and every value the server computes (burn rates per window, …) listed by key, so
// a new key shows without a UI change. A burn rate above 1 spends the budget faster than the
// window allows and is marked; a spent budget is 0% and red.

import { h, message } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import { alertList } from '../alert-ui.js';

const isBudget = (k) => /budget_remaining/.test(k);
const isBurn = (k) => /^burn_rate/.test(k);

/** Enough digits for 99.95% and a burn rate of 0.0123, no noise. */
const precise = (v) => String(Number(v.toPrecision(4)));

function valueText(key, v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return v === null || v === undefined ? 'no data' : String(v);
  if (isBurn(key)) return `${precise(v)}×`;
  if (isBudget(key) || /objective|ratio|availability/.test(key)) return `${precise(v * 100)}%`;
  return precise(v);
}

/** Seconds of a window suffix (`burn_rate_1h` → 3600, `_4w2d` → 30 days), for ordering. */
function windowSeconds(key) {
  const m = /_((?:\d+[smhdwy])+)$/.exec(key);
  if (!m) return Infinity;
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
  return [...m[1].matchAll(/(\d+)([smhdwy])/g)].reduce((a, [, n, u]) => a + +n * unit[u], 0);
}

/** Burn rates first, shortest window first; then the other keys by name. */
const byKind = ([, a], [, b]) => (isBurn(b) - isBurn(a)) || (windowSeconds(a) - windowSeconds(b)) || a.localeCompare(b);

/** `values` as [label, key, number|null] rows; a per-indicator object becomes one row each. */
function flatValues(values) {
  const rows = [];
  for (const [k, v] of Object.entries(values || {})) {
    if (v !== null && typeof v === 'object') for (const [sub, x] of Object.entries(v)) rows.push([`${k} (${sub})`, k, typeof x === 'number' ? x : null]);
    else rows.push([k, k, typeof v === 'number' ? v : null]);
  }
  return rows;
}

function budgetBar(label, v) {
  if (v === null) return h('div', { class: 'budget' }, h('span', { class: 'budget-label' }, label), h('span', { class: 'muted' }, ' no data yet'));
  const share = Math.min(1, Math.max(0, v));
  const cls = v <= 0 ? 'bad' : v < 0.25 ? 'warn' : 'ok';
  return h('div', { class: `budget budget-${cls}`, dataset: { budget: String(v) } },
    h('span', { class: 'budget-label' }, label),
    h('span', { class: 'budget-track', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(share * 100), 'aria-label': label },
      h('span', { class: 'budget-fill', style: { width: `${share * 100}%` } })),
    h('span', { class: 'budget-val' }, v <= 0 ? `✕ spent (${valueText('budget_remaining', v)})` : valueText('budget_remaining', v)));
}

function objectiveText(o) {
  if (typeof o !== 'number') return '–';
  return o <= 1 ? `${precise(o * 100)}%` : `${precise(o)}%`;
}

function sloCard(slo) {
  const rows = flatValues(slo.values);
  const budgets = rows.filter(([, k]) => isBudget(k));
  const others = rows.filter(([, k]) => !isBudget(k)).sort(byKind);
  const alerts = slo.alerts || [];
  const lat = slo.latency;
  return h('section', { class: 'slo', dataset: { service: slo.service }, 'aria-label': `SLO of ${slo.service}` },
    h('header', {},
      h('h3', {}, slo.service, slo.namespace ? h('span', { class: 'muted small' }, ` ${slo.namespace}`) : null),
      h('span', { class: 'muted small' }, `availability ${objectiveText(slo.objective)}`,
        lat ? ` · latency ${objectiveText(lat.objective)} under ${fmt.ms(lat.threshold_ms)}` : '',
        ` · window ${slo.window || '–'}`)),
    budgets.map(([label, , v]) => budgetBar(label.replace(/_/g, ' '), v)),
    h('table', { class: 'kv slo-values' }, h('tbody', {}, others.map(([label, k, v]) => {
      const hot = isBurn(k) && v !== null && v > 1;
      return h('tr', { class: hot ? 'burn-hot' : '', dataset: { key: label } },
        h('th', { scope: 'row' }, label),
        h('td', {}, hot ? h('span', { 'aria-hidden': 'true' }, '⚠ ') : null, valueText(k, v), hot ? h('span', { class: 'sr-only' }, ' (above 1: spending budget too fast)') : null));
    }))),
    alerts.length
      ? alertList(alerts, () => url.href('alerts', { service: slo.service }))
      : h('p', { class: 'muted small' }, 'No alert active for this SLO.'),
    h('a', { class: 'small', href: url.href('alerts', { service: slo.service }) }, `Alerts of ${slo.service}`));
}

/** filter: {service, q}. */
export function filterSlos(slos, { service = '', q = '' } = {}) {
  const needle = q.trim().toLowerCase();
  return (slos || []).filter((s) => (!service || s.service === service)
    && (!needle || `${s.service} ${s.namespace || ''}`.toLowerCase().includes(needle)));
}

export function renderSlos(box, all, filtered) {
  if (!all.length) {
    box.append(message('info', 'No SLOs loaded: start the server with --slo FILE (write one with `meshlens slo`).'));
    return;
  }
  if (!filtered.length) {
    box.append(message('info', 'No SLO matches the filter.'));
    return;
  }
  box.append(h('div', { class: 'slo-grid' }, filtered.map(sloCard)));
}
