// Alerts: the firing and pending alerts (`/api/v1/alerts`), the services' SLOs
// (`/api/v1/slos`) and the rules by group (`/api/v1/rules`), refreshed every 15 s. The filter
// (service, text, state, rule type) lives in the URL, so the overview and the topology link
// straight to one service's alerts; changing it redraws from what was fetched. With the
// cluster filter on, an alert shows when its `cluster` label names that cluster or it has
// none (rules and SLOs are the hub's, not a cluster's, so they stay whole).

import { h, clear, message, sortableTable } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import * as api from '../api.js';
import { alertMatches, alertName, alertTargets, every } from '../alert-match.js';
import { stateBadge, stateRank, labelChips, annotationBlock, since } from '../alert-ui.js';
import { filterRules, renderRules } from './alert-rules.js';
import { filterSlos, renderSlos } from './alert-slos.js';
import { alertInCluster, filterNote } from '../clusters.js';

export const title = 'Alerts';

const FILTERS = ['service', 'q', 'state', 'type'];
let live = null; // {root, data, boxes, controls}

const filterOf = (params) => Object.fromEntries(FILTERS.map((k) => [k, (params.get(k) || '').trim()]));

/** Fetches the three endpoints; each failure stays with its own section. */
async function load(fresh) {
  const [alerts, rules, slos] = await Promise.allSettled([api.alerts({ fresh }), api.rules({ fresh }), api.slos({ fresh })]);
  const val = (r, k) => (r.status === 'fulfilled' ? r.value?.[k] || [] : []);
  return {
    alerts: val(alerts, 'alerts'),
    groups: val(rules, 'groups'),
    slos: val(slos, 'slos'),
    errors: {
      alerts: alerts.status === 'rejected' ? alerts.reason : null,
      rules: rules.status === 'rejected' ? rules.reason : null,
      slos: slos.status === 'rejected' ? slos.reason : null,
    },
    at: Date.now(),
  };
}

function failure(e, path) {
  return e.missing ? message('info', `This server does not serve ${path}.`) : message('error', `${path}: ${e.message}`);
}

function filterAlerts(alerts, { service, q, state }) {
  const needle = q.toLowerCase();
  return alerts.filter((a) => (!service || alertMatches(a, [service]))
    && (!state || a.state === state)
    && (!needle || JSON.stringify([a.labels, a.annotations]).toLowerCase().includes(needle)));
}

function alertsTable(rows, now) {
  return sortableTable([
    { key: 'rank', label: 'State', num: true, value: (a) => stateRank(a.state) * 1e13 + (1e13 - (fmt.parseTime(a.activeAt) ?? 0)), render: (a) => stateBadge(a.state) },
    { key: 'name', label: 'Alert', value: alertName, render: (a) => h('span', {},
      h('strong', { class: 'alert-name' }, alertName(a)),
      a.labels?.severity ? h('span', { class: `severity sev-${a.labels.severity}` }, ` ${a.labels.severity}`) : null,
      alertTargets(a).length ? h('div', { class: 'small' }, alertTargets(a).map((t, i) => [i ? ', ' : '',
        h('a', { href: url.href('topology', { focus: t, sel: t }) }, t)])) : null) },
    { key: 'details', label: 'Summary', value: (a) => a.annotations?.summary || '', render: (a) => annotationBlock(a.annotations) || h('span', { class: 'muted' }, 'no annotations') },
    { key: 'labels', label: 'Labels', value: (a) => JSON.stringify(a.labels), render: (a) => labelChips(a.labels, ['alertname', 'severity']) },
    { key: 'since', label: 'Since', num: true, value: (a) => -(fmt.parseTime(a.activeAt) ?? now), render: (a) => since(a.activeAt, now) },
    { key: 'value', label: 'Value', num: true, value: (a) => parseFloat(a.value), fmt: (v) => fmt.num(v) },
  ], rows, {
    sortKey: 'rank', desc: true, caption: 'Firing first, then the longest active',
    rowAttrs: (a) => ({ class: `alert-row state-row-${a.state}`, dataset: { alertname: alertName(a), state: a.state } }),
    empty: 'No alert matches the filter.',
  });
}

function drawAlerts(box, d, f, cluster) {
  clear(box);
  if (d.errors.alerts) { box.append(failure(d.errors.alerts, '/api/v1/alerts')); return; }
  const here = d.alerts.filter((a) => alertInCluster(a, cluster));
  if (cluster && d.alerts.length && !here.length) {
    box.append(message('info', `No alert firing or pending is about cluster ${cluster}; ${d.alerts.length} in other clusters.`));
    return;
  }
  if (!d.alerts.length) {
    box.append(message('info', d.groups.length
      ? 'No alert is firing or pending.'
      : 'No alert is firing or pending, and no alerting rule is loaded: add rule_files to the config or start with --slo FILE.'));
    return;
  }
  box.append(alertsTable(filterAlerts(here, f), d.at));
}

/** A rule's folded parts (annotations, long query) by rule and part, to survive a redraw. */
const foldKey = (d) => `${d.closest('tr').dataset.rule}|${d.className}`;

/**
 * Redraws the sections from `live.data` with the URL's filter. `keep` (a poll's redraw)
 * keeps what the reader opened or closed; a new filter opens every rule group it shows.
 */
function draw(params, keep = false) {
  const { data: d, boxes } = live;
  const f = filterOf(params);
  const cluster = url.shared(params).cluster;
  const folds = new Set(keep ? [...boxes.rules.querySelectorAll('tr[data-rule] details[open]')].map(foldKey) : []);
  const groups = new Map(keep ? [...boxes.rules.querySelectorAll('details.rule-group')].map((g) => [g.dataset.group, g.open]) : []);
  drawAlerts(boxes.alerts, d, f, cluster);
  clear(boxes.rules);
  if (d.errors.rules) boxes.rules.append(failure(d.errors.rules, '/api/v1/rules'));
  else renderRules(boxes.rules, d.groups, filterRules(d.groups, f), Object.values(f).some(Boolean), groups);
  for (const x of boxes.rules.querySelectorAll('tr[data-rule] details')) if (folds.has(foldKey(x))) x.open = true;
  clear(boxes.slos);
  if (d.errors.slos) boxes.slos.append(failure(d.errors.slos, '/api/v1/slos'));
  else renderSlos(boxes.slos, d.slos, filterSlos(d.slos, f));
  drawSummary(boxes.summary, d, cluster);
  const names = new Set([...d.alerts.flatMap(alertTargets), ...d.slos.map((x) => x.service)]);
  clear(live.controls.services).append(...[...names].sort().map((n) => h('option', { value: n })));
  boxes.updated.textContent = `updated ${fmt.time(d.at)}, every 15 s`;
}

function drawSummary(box, d, cluster) {
  const count = (st) => d.alerts.filter((a) => a.state === st && alertInCluster(a, cluster)).length;
  const rules = d.groups.flatMap((g) => g.rules || []);
  const failing = rules.filter((r) => r.health === 'err').length;
  const spent = d.slos.filter((x) => Object.entries(x.values || {}).some(([k, v]) => /budget_remaining/.test(k) && typeof v === 'number' && v <= 0)).length;
  const card = (n, label, cls, link) => h('li', { class: `card ${cls}` },
    h('span', { class: 'card-num' }, String(n)),
    h('span', { class: 'card-label' }, link ? h('a', { href: link }, label) : label));
  clear(box).append(
    card(count('firing'), 'firing', count('firing') ? 'health-failure' : '', url.href('alerts', { ...filterOf(url.current().params), state: 'firing' })),
    card(count('pending'), 'pending', count('pending') ? 'health-degraded' : '', url.href('alerts', { ...filterOf(url.current().params), state: 'pending' })),
    card(rules.length, failing ? `rules, ${failing} failing` : 'rules', failing ? 'health-failure' : ''),
    card(d.slos.length, spent ? `SLOs, ${spent} out of budget` : 'SLOs', spent ? 'health-failure' : ''));
}

function toolbar(f) {
  let typing = null;
  const services = h('datalist', { id: 'alert-services' });
  const select = (id, label, key, options) => h('label', { for: id }, `${label} `,
    h('select', { id, onchange: (e) => url.update({ [key]: e.target.value }) },
      options.map(([v, l]) => h('option', { value: v, selected: v === f[key] }, l))));
  const bar = h('div', { class: 'toolbar', role: 'search', 'aria-label': 'Filter alerts and rules' },
    h('label', { for: 'alert-service' }, 'Service ', h('input', {
      id: 'alert-service', type: 'search', list: 'alert-services', value: f.service, size: 16, placeholder: 'any',
      onchange: (e) => url.update({ service: e.target.value.trim() }),
    })), services,
    h('label', { for: 'alert-q' }, 'Text ', h('input', {
      id: 'alert-q', type: 'search', value: f.q, size: 20, placeholder: 'name, label, query…',
      oninput: (e) => { clearTimeout(typing); typing = setTimeout(() => url.update({ q: e.target.value }, { replace: true }), 250); },
    })),
    select('alert-state', 'State', 'state', [['', 'any'], ['firing', 'firing'], ['pending', 'pending'], ['inactive', 'inactive (rules)']]),
    select('alert-type', 'Rules', 'type', [['', 'all'], ['alerting', 'alerting'], ['recording', 'recording']]),
    h('button', { type: 'button', id: 'alert-clear', onclick: () => url.update({ service: '', q: '', state: '', type: '' }) }, 'Clear filter'));
  return { bar, services };
}

/** Puts the URL's filter back into the fields (history navigation). */
function syncControls(f) {
  const set = (id, v) => { const el = document.getElementById(id); if (el && el.value !== v && document.activeElement !== el) el.value = v; };
  set('alert-service', f.service); set('alert-q', f.q); set('alert-state', f.state); set('alert-type', f.type);
}

export async function render(root, { params, shared }) {
  live = null;
  const f = filterOf(params);
  const { bar, services } = toolbar(f);
  const note = filterNote(shared.cluster, `Alerts whose cluster label is ${shared.cluster}, and those without one; rules and SLOs are not per cluster.`);
  const boxes = {
    summary: h('ul', { class: 'cards', 'aria-label': 'Summary' }),
    alerts: h('div', { id: 'active-alerts' }, message('loading', 'Loading alerts…')),
    rules: h('div', { id: 'alert-rules' }, message('loading', 'Loading rules…')),
    slos: h('div', { id: 'slos' }, message('loading', 'Loading SLOs…')),
    updated: h('span', { class: 'muted small' }),
  };
  root.append(h('h1', {}, 'Alerts ', boxes.updated), note, bar, boxes.summary,
    h('section', { class: 'alerts-section', 'aria-labelledby': 'h-active' }, h('h2', { id: 'h-active' }, 'Firing and pending'), boxes.alerts),
    h('section', { class: 'alerts-section', 'aria-labelledby': 'h-slos' }, h('h2', { id: 'h-slos' }, 'Service level objectives'), boxes.slos),
    h('section', { class: 'alerts-section', 'aria-labelledby': 'h-rules' }, h('h2', { id: 'h-rules' }, 'Rules'), boxes.rules));
  const data = await load(false);
  live = { root, data, boxes, controls: { services } };
  draw(params);
  every(root, async () => {
    const next = await load(true);
    if (!live || live.root !== root) return;
    live.data = next;
    draw(url.current().params, true);
  });
}

/** Filter changes redraw from the fetched data; anything else renders anew. */
export function update(params, prev) {
  if (!live || !live.root.isConnected) return false;
  for (const k of new Set([...params.keys(), ...prev.keys()])) {
    if (!FILTERS.includes(k) && params.get(k) !== prev.get(k)) return false;
  }
  syncControls(filterOf(params));
  draw(params);
  return true;
}
