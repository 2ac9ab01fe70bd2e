// Events: the loop's one timeline (`/api/v1/events`): rollout steps, canary verdicts,
// anomalies, alerts, remediations and config changes, newest first, filtered by kind and
// service over the shared time range and refreshed every 10 s. Each row links to the graph,
// the charts and the traces around its moment; an action that can be undone has a button.

import { h, clear, message } from '../dom.js';
import * as url from '../state/url.js';
import * as fmt from '../format.js';
import * as api from '../api.js';
import { every } from '../alert-match.js';
import { verdictBadge } from './verify.js';

export const title = 'Events';

export const KINDS = {
  rollout: { glyph: '⇆', label: 'Rollout' },
  verdict: { glyph: '⚖', label: 'Verdict' },
  anomaly: { glyph: '∿', label: 'Anomaly' },
  alert: { glyph: '!', label: 'Alert' },
  remediation: { glyph: '⚕', label: 'Remediation' },
  config: { glyph: '✎', label: 'Config' },
};
const SEVERITIES = { critical: '✕', warning: '!', info: 'i' };
const REFRESH_MS = 10_000;
/** The range the links open: a quarter of an hour, centred on the event where it can be. */
const AROUND = '15m';

const undone = new Map(); // event id -> {ok, text}, kept across redraws

export function kindBadge(kind) {
  const k = KINDS[kind] || { glyph: '•', label: kind || 'event' };
  return h('span', { class: `kind kind-${kind}`, title: k.label }, h('span', { 'aria-hidden': 'true' }, k.glyph), ` ${k.label}`);
}

function sevBadge(sev) {
  const k = SEVERITIES[sev] ? sev : 'info';
  return h('span', { class: `sev sev-${k}` }, h('span', { 'aria-hidden': 'true', class: 'sev-glyph' }, SEVERITIES[k]), ` ${k}`);
}

/** The RED query of a service's received traffic by version (the Metrics view's link). */
export function serviceQuery(service) {
  return `sum by (destination_version) (rate(istio_requests_total{reporter="destination",destination_service_name="${api.esc(service)}"}[1m]))`;
}

/** Links to the graph, charts and traces around `timeMs` for `service`. */
export function momentLinks(service, timeMs) {
  const at = String(Math.round(timeMs));
  const base = { range: AROUND, at };
  return h('span', { class: 'moment-links' },
    h('a', { class: 'ev-graph', href: url.href('topology', { ...base, focus: service || '' }), title: 'The service graph at that moment' }, 'graph'),
    service ? h('a', { class: 'ev-metrics', href: url.href('metrics', { ...base, q: serviceQuery(service) }), title: 'Request rate by version around that moment' }, 'metrics') : null,
    h('a', { class: 'ev-traces', href: url.href('traces', { ...base, service: service || '' }), title: 'Traces around that moment' }, 'traces'));
}

function detailOf(ev) {
  const d = ev.detail;
  if (d === null || d === undefined || (typeof d === 'object' && !Object.keys(d).length)) return null;
  const verdict = d.report?.verdict || (ev.kind === 'verdict' ? d.verdict : null);
  // A verdict names its versions: judge them again, now, in the Verify view.
  const baseline = d.report?.baseline?.version || d.stable || d.baseline;
  const canary = d.report?.canary?.version || d.canary;
  const service = d.report?.service || d.service || ev.service;
  const again = verdict && service && typeof baseline === 'string' && typeof canary === 'string'
    ? h('a', { class: 'small ev-verify', href: url.href('verify', { service, baseline, canary, window: d.report?.window || '' }) }, ' judge again') : null;
  return h('span', {},
    verdict ? [' ', verdictBadge(verdict), d.report?.score !== undefined ? h('span', { class: 'muted small' }, ` score ${fmt.num(d.report.score)}`) : null, again] : null,
    d.weight !== undefined ? h('span', { class: 'muted small' }, ` weight ${d.weight}%`) : null,
    h('details', { class: 'ev-detail' }, h('summary', {}, 'detail'), h('pre', {}, JSON.stringify(d, null, 2))));
}

function undoCell(ev, redraw) {
  if (!ev.undo) return null;
  const done = undone.get(ev.id);
  const btn = h('button', {
    type: 'button', class: 'undo', disabled: !!done?.ok, dataset: { undo: ev.undo },
    title: `Undo ${ev.undo}`,
    onclick: async () => {
      btn.disabled = true;
      btn.textContent = 'Undoing…';
      try {
        const r = await api.undo(ev.undo);
        undone.set(ev.id, { ok: true, text: `Undone${r?.event?.id !== undefined ? ` (event #${r.event.id})` : ''}` });
      } catch (e) {
        const text = e.missing ? `Undo is not available on this server (${e.status}).`
          : e.status === 409 ? `Not undone: the file changed since (${e.reason || e.message}).` : `Not undone: ${e.reason || e.message}`;
        undone.set(ev.id, { ok: false, text });
      }
      redraw();
    },
  }, 'Undo');
  return h('span', {}, btn, done ? h('span', { class: `undo-result ${done.ok ? 'ok' : 'bad'}`, role: 'status' }, ` ${done.text}`) : null);
}

function table(events, redraw) {
  return h('table', { class: 'data events' },
    h('caption', {}, `${events.length} event${events.length === 1 ? '' : 's'}, newest first`),
    h('thead', {}, h('tr', {}, ['Time', 'Kind', 'Severity', 'Service', 'What', 'Around then', ''].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, events.length ? events.map((ev) => h('tr', { class: `event-row kind-row-${ev.kind}`, dataset: { id: String(ev.id), kind: ev.kind } },
      h('td', { class: 'nowrap' }, h('time', { datetime: new Date(ev.timeMs).toISOString(), title: new Date(ev.timeMs).toISOString() }, fmt.time(ev.timeMs, true))),
      h('td', {}, kindBadge(ev.kind)),
      h('td', {}, sevBadge(ev.severity)),
      h('td', {}, ev.service ? h('a', { href: url.href('events', { ...Object.fromEntries(url.current().params), service: ev.service }), title: `Only ${ev.service}'s events` }, ev.service) : h('span', { class: 'muted' }, '–')),
      h('td', { class: 'ev-title' }, ev.title, detailOf(ev)),
      h('td', {}, momentLinks(ev.service, ev.timeMs)),
      h('td', {}, undoCell(ev, redraw))))
      : h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No event matches.'))));
}

export async function render(root, { params, shared }) {
  const kind = params.get('kind') || '';
  const service = params.get('service') || '';
  const serviceInput = h('input', { type: 'search', id: 'ev-service', value: service, list: 'ev-services', placeholder: 'any service', size: 16 });
  root.append(h('h1', {}, 'Events'),
    h('p', { class: 'muted' }, 'Rollout steps, canary verdicts, anomalies, alerts, remediations and config changes: one timeline. Refreshed every 10 s.'),
    h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); url.update({ service: serviceInput.value.trim() }); } },
      h('label', {}, 'Kind ', h('select', { id: 'ev-kind', onchange: (e) => url.update({ kind: e.target.value }) },
        h('option', { value: '' }, 'all'),
        Object.entries(KINDS).map(([k, v]) => h('option', { value: k, selected: k === kind }, v.label)))),
      h('label', { for: 'ev-service' }, 'Service '), serviceInput, h('datalist', { id: 'ev-services' }),
      h('button', { type: 'submit' }, 'Filter'),
      service || kind ? h('button', { type: 'button', class: 'link', onclick: () => url.update({ service: '', kind: '' }) }, 'clear filters') : null,
      h('span', { class: 'muted small ev-updated' })));
  const box = h('div', { class: 'events-box' }, message('loading', 'Loading events…'));
  root.append(box);
  const query = () => ({ since: (Date.now() / 1000 - shared.seconds).toFixed(0), kind, service, limit: 500 });
  let last = [];
  const draw = () => clear(box).append(table(last, draw));
  const load = async (fresh) => {
    try {
      last = await api.events(query(), { fresh });
    } catch (e) {
      clear(box).append(e.missing
        ? message('info', 'This server does not keep an event timeline (/api/v1/events is not available).')
        : message('error', `Events could not be loaded: ${e.message}`));
      return false;
    }
    draw();
    const dl = root.querySelector('#ev-services');
    const names = [...new Set(last.map((e) => e.service).filter(Boolean))].sort();
    if (dl && !dl.children.length) dl.append(...names.map((n) => h('option', { value: n })));
    const upd = root.querySelector('.ev-updated');
    if (upd) upd.textContent = `updated ${fmt.time(Date.now())}`;
    return true;
  };
  if (await load(false)) every(root, () => load(true), REFRESH_MS);
}
