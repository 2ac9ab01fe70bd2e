// Small pieces the Alerts view, the overview and the topology panel share: an alert's state
// and a rule's health as badges that carry a glyph and a word as well as a colour, labels as
// chips, and annotations laid out for reading (summary first, then description, then the
// rest, URLs as links).

import { h } from './dom.js';
import * as fmt from './format.js';
import { alertName } from './alert-match.js';

const STATES = {
  firing: { glyph: '!', label: 'Firing' },
  pending: { glyph: '◔', label: 'Pending' },
  inactive: { glyph: '○', label: 'Inactive' },
};

export const stateRank = (st) => ({ firing: 2, pending: 1 }[st] || 0);

export function stateBadge(state) {
  const st = STATES[state] ? state : 'inactive';
  return h('span', { class: `alert-state state-${st}`, title: STATES[st].label },
    h('span', { class: 'state-glyph', 'aria-hidden': 'true' }, STATES[st].glyph), ` ${STATES[st].label}`);
}

const HEALTH = { ok: ['healthy', '✓', 'ok'], err: ['failure', '✕', 'error'], unknown: ['na', '–', 'unknown'] };

export function healthBadge(health, lastError) {
  const [cls, glyph, word] = HEALTH[health] || HEALTH.unknown;
  return h('span', { class: `health health-${cls} rule-health`, title: lastError || `health: ${word}` },
    h('span', { class: 'health-glyph', 'aria-hidden': 'true' }, glyph), ` ${word}`);
}

/** Labels as `name=value` chips; `skip` leaves some out (e.g. alertname, shown as the title). */
export function labelChips(labels, skip = []) {
  const entries = Object.entries(labels || {}).filter(([k]) => !skip.includes(k)).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return null;
  return h('ul', { class: 'label-chips', 'aria-label': 'Labels' },
    entries.map(([k, v]) => h('li', { class: 'label-chip' }, h('span', { class: 'lk' }, k), '=', h('span', { class: 'lv' }, v))));
}

const isUrl = (v) => /^https?:\/\/\S+$/i.test(String(v || '').trim());

/** Summary as a heading line, description as a paragraph, the others as a small table. */
export function annotationBlock(annotations) {
  const a = annotations || {};
  const rest = Object.entries(a).filter(([k]) => k !== 'summary' && k !== 'description').sort(([x], [y]) => x.localeCompare(y));
  if (!a.summary && !a.description && !rest.length) return null;
  return h('div', { class: 'annotations' },
    a.summary ? h('p', { class: 'ann-summary' }, a.summary) : null,
    a.description ? h('p', { class: 'ann-description' }, a.description) : null,
    rest.length ? h('table', { class: 'kv' }, h('tbody', {}, rest.map(([k, v]) => h('tr', {},
      h('th', { scope: 'row' }, k),
      h('td', {}, isUrl(v) ? h('a', { href: v.trim(), rel: 'noopener noreferrer', target: '_blank' }, v) : v))))) : null);
}

/** "since 3m 20s", with the absolute time as a tooltip. */
export function since(activeAt, now = Date.now()) {
  const t = fmt.parseTime(activeAt);
  return h('span', { class: 'since', title: t === null ? 'never active' : new Date(t).toISOString() },
    t === null ? '–' : fmt.ago(t, now));
}

/** A short list of firing alerts (for the topology's side panel): name, summary, link. */
export function alertList(alerts, linkFor) {
  return h('ul', { class: 'alert-list' }, alerts.map((a) => h('li', {},
    stateBadge(a.state), ' ',
    h('a', { href: linkFor(a), class: 'alert-link' }, alertName(a)),
    a.annotations?.summary ? h('span', { class: 'muted' }, ` — ${a.annotations.summary}`) : null)));
}
