// Anomalies the server's detector found (`/api/v1/anomalies`), shaped for the charts (shaded
// bands with a tooltip) and the topology (a mark on the nodes of services with a current
// anomaly). A server without the endpoint has no anomalies: nothing is drawn, nothing fails.

import * as api from './api.js';
import * as fmt from './format.js';

/** The anomalies (of `service`, or all); null when the server does not serve them. */
export async function load(service, opts) {
  try {
    return await api.anomalies(service ? { service } : {}, opts);
  } catch (e) {
    if (e.missing) return null;
    throw e;
  }
}

const SIGNALS = { rate: 'request rate', errors: 'error share', p99: 'p99 latency' };
export const signalName = (s) => SIGNALS[s] || s;

/** The service a PromQL query is about, from its matchers (the first one named). */
export function serviceOfQuery(q) {
  const m = /\b(?:destination_service_name|destination_app|destination_workload|service)\s*=\s*"([^"]+)"/.exec(q || '');
  return m ? m[1] : '';
}

/** Whether an anomaly's service is one of `names` (a node's name, app, workload). */
export function about(a, names) {
  return names.filter(Boolean).includes(a.service);
}

/**
 * Chart bands of `names`' anomalies (of `signal` only, when given): history intervals (an
 * open one ends now) and current ones, merged per signal. Each: {start, end, label}.
 */
export function bands(data, names, signal = '', now = Date.now()) {
  if (!data) return [];
  const out = [];
  const seen = new Set();
  const mine = (a) => about(a, names) && (!signal || a.signal === signal);
  for (const a of data.history || []) {
    if (!mine(a)) continue;
    const end = a.end ?? now;
    seen.add(`${a.service}|${a.signal}|${a.start}`);
    out.push({
      start: a.start, end,
      label: `Anomaly: ${a.service} ${signalName(a.signal)}, ${fmt.time(a.start, true)} – ${a.end ? fmt.time(a.end) : 'now'}`
        + (a.peakScore !== undefined ? `, peak score ${fmt.num(a.peakScore)}` : ''),
    });
  }
  for (const a of data.current || []) {
    if (!mine(a) || seen.has(`${a.service}|${a.signal}|${a.since}`)) continue;
    out.push({
      start: a.since ?? now, end: now,
      label: `Anomaly now: ${a.service} ${signalName(a.signal)} score ${fmt.num(a.score)} (value ${fmt.num(a.value)}) since ${fmt.time(a.since ?? now)}`,
    });
  }
  return out;
}

/** The current anomalies of `names`, one line each, for a tooltip. */
export function currentOf(data, names) {
  return (data?.current || []).filter((a) => about(a, names));
}

export const describe = (a) => `${signalName(a.signal)} score ${fmt.num(a.score)}`;
