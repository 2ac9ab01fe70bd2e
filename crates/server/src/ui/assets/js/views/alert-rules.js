// The Alerts view's rules: `/api/v1/rules` grouped as the server evaluates them, each group
// with its file, interval and last evaluation, each rule with its type, state, health (the
// last error as text), query, `for` and labels. Filtering is done here, on what was fetched.

import { h, message } from '../dom.js';
import * as fmt from '../format.js';
import { alertMatches } from '../alert-match.js';
import { stateBadge, healthBadge, labelChips, annotationBlock } from '../alert-ui.js';

const LONG_QUERY = 160;

/** Text a rule is found by: its name, query, group, labels and annotations. */
function ruleText(rule, group) {
  return [rule.name, rule.query, group.name, group.file, ...Object.entries(rule.labels || {}).flat(),
    ...Object.values(rule.annotations || {})].join('\n').toLowerCase();
}

/** A rule belongs to a service by its labels or by one of its alerts. */
function ruleForService(rule, service) {
  return alertMatches({ labels: rule.labels }, [service]) || (rule.alerts || []).some((a) => alertMatches(a, [service]));
}

/** filter: {service, q, type, state}; groups left without rules are dropped. */
export function filterRules(groups, { service = '', q = '', type = '', state = '' } = {}) {
  const needle = q.trim().toLowerCase();
  return (groups || []).map((g) => ({
    ...g,
    rules: (g.rules || []).filter((r) => (!type || r.type === type)
      && (!state || (r.type === 'alerting' && (r.state || 'inactive') === state))
      && (!service || ruleForService(r, service))
      && (!needle || ruleText(r, g).includes(needle))),
  })).filter((g) => g.rules.length);
}

function lastEval(t, took) {
  const at = fmt.parseTime(t);
  return h('span', { title: at === null ? 'not evaluated yet' : new Date(at).toISOString() },
    at === null ? 'never' : `${fmt.ago(at)} ago`, took !== undefined && at !== null ? h('span', { class: 'muted' }, ` (${fmt.ms(took * 1000)})`) : null);
}

/** A long query starts folded to its beginning, so a group of generated rules stays readable. */
function queryCell(q) {
  const text = String(q || '');
  if (text.length <= LONG_QUERY) return h('code', {}, text);
  return h('details', { class: 'q-long' }, h('summary', { title: 'Show the whole query' }, h('code', {}, `${text.slice(0, LONG_QUERY - 40)}…`)), h('code', {}, text));
}

function ruleRow(r) {
  const alerting = r.type === 'alerting';
  const active = (r.alerts || []).length;
  return h('tr', { class: `rule rule-${r.type}`, dataset: { rule: r.name, type: r.type, health: r.health || 'unknown' } },
    h('td', {}, h('span', { class: `rule-type type-${r.type}` }, alerting ? 'alert' : 'record')),
    h('td', { class: 'rule-name' }, h('strong', {}, r.name),
      alerting && active ? h('div', { class: 'muted small' }, `${active} active`) : null,
      r.annotations && Object.keys(r.annotations).length
        ? h('details', { class: 'rule-ann' }, h('summary', {}, 'annotations'), annotationBlock(r.annotations)) : null),
    h('td', {}, alerting ? stateBadge(r.state) : h('span', { class: 'muted' }, '–')),
    h('td', {}, healthBadge(r.health, r.lastError),
      r.lastError ? h('div', { class: 'rule-error' }, r.lastError) : null),
    h('td', { class: 'rule-query' }, queryCell(r.query)),
    h('td', { class: 'num' }, alerting ? fmt.duration(r.duration) : ''),
    h('td', { class: 'rule-labels' }, labelChips(r.labels)),
    h('td', {}, lastEval(r.lastEvaluation, r.evaluationTime)));
}

/** A group starts open when it needs a look (an active alert, a failing rule) or is small. */
function groupSection(g, open) {
  const errs = g.rules.filter((r) => r.health === 'err').length;
  const active = g.rules.filter((r) => r.state === 'firing' || r.state === 'pending').length;
  return h('details', { class: 'rule-group', dataset: { group: g.name }, open: open || errs > 0 || active > 0 || g.rules.length <= 8 },
    h('summary', {},
      h('h3', {}, g.name),
      h('span', { class: 'muted small' }, ` ${g.rules.length} rule${g.rules.length === 1 ? '' : 's'}`,
        active ? h('span', { class: 'rule-active' }, ` · ${active} active`) : null),
      h('span', { class: 'muted small' },
        g.file ? h('code', {}, g.file) : null,
        ` · every ${fmt.duration(g.interval)} · last evaluated `, lastEval(g.lastEvaluation, g.evaluationTime),
        errs ? h('span', { class: 'rule-errors' }, ` · ${errs} failing`) : null)),
    h('table', { class: 'data rules' },
      h('thead', {}, h('tr', {}, ['Type', 'Name', 'State', 'Health', 'Query', 'For', 'Labels', 'Last evaluation']
        .map((c) => h('th', { scope: 'col', class: c === 'For' ? 'num' : '' }, c)))),
      h('tbody', {}, g.rules.map(ruleRow))));
}

/**
 * Draws the groups into `box`; `all` are the groups before filtering (for the empty states);
 * `filtering` opens every group shown. `wasOpen`: groups the user opened or closed, by name.
 */
export function renderRules(box, all, filtered, filtering = false, wasOpen = new Map()) {
  if (!all.length) {
    box.append(message('info', 'No rules loaded: add rule_files to the config or start with --slo FILE.'));
    return;
  }
  if (!filtered.length) {
    box.append(message('info', 'No rule matches the filter.'));
    return;
  }
  box.append(...filtered.map((g) => {
    const el = groupSection(g, filtering);
    if (wasOpen.has(g.name)) el.open = wasOpen.get(g.name);
    return el;
  }));
}
