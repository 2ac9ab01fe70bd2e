// The Config view's wizards as pure functions: each takes an Istio object (as parsed from its
// YAML) and a form's values, checks the values, and returns the edited object. Traffic
// shifting and fault injection, timeouts and retries edit one HTTP route of a VirtualService;
// circuit breaking edits a DestinationRule's trafficPolicy (connectionPool, outlierDetection).

import { parse } from './yaml.js';

export class WizardError extends Error {}

const clone = (v) => JSON.parse(JSON.stringify(v ?? null));

/** The object an API entry describes: its parsed value when given, else its YAML parsed. */
export function valueOf(obj) {
  if (obj.value && typeof obj.value === 'object') return clone(obj.value);
  return parse(obj.yaml || '');
}

/** The wizards that apply to a kind: [[id, label]]. */
export function wizardsFor(kind) {
  if (kind === 'VirtualService') return [['shift', 'Traffic shifting'], ['fault', 'Fault injection'], ['timeouts', 'Timeouts and retries']];
  if (kind === 'DestinationRule') return [['breaker', 'Circuit breaking']];
  return [];
}

/** A VirtualService's HTTP routes as [{index, label}]. */
export function routesOf(vs) {
  return (vs?.spec?.http || []).map((r, index) => {
    const dests = (r.route || []).map((d) => [d.destination?.host, d.destination?.subset].filter(Boolean).join('/')).join(', ');
    return { index, label: `${r.name || `route ${index + 1}`}${r.match ? ' (matched)' : ''} → ${dests || 'no destination'}` };
  });
}

/** The route a wizard edits first: one already split across destinations, else the last (the default). */
export function defaultRoute(vs) {
  const http = vs?.spec?.http || [];
  const split = http.findIndex((r) => (r.route || []).length > 1);
  if (split >= 0) return split;
  const plain = http.map((r, i) => [r, i]).filter(([r]) => !r.match);
  return plain.length ? plain[plain.length - 1][1] : Math.max(0, http.length - 1);
}

function routeOf(vs, index) {
  const r = vs?.spec?.http?.[index];
  if (!r) throw new WizardError(`the VirtualService has no HTTP route ${index + 1}`);
  return r;
}

const short = (host) => String(host || '').split('.')[0];

/**
 * What traffic shifting can offer for a route: its destination host and every subset of that
 * host (the route's own and those of DestinationRules in `others`), with today's weights.
 */
export function shiftOptions(vs, index, others = []) {
  const r = routeOf(vs, index);
  const dests = r.route || [];
  const host = dests[0]?.destination?.host || vs?.spec?.hosts?.[0] || '';
  const weights = {};
  for (const d of dests) {
    if (d.destination?.subset === undefined) continue;
    weights[d.destination.subset] = d.weight ?? (dests.length === 1 ? 100 : 0);
  }
  for (const o of others) {
    if (o?.kind !== 'DestinationRule' || short(o.spec?.host) !== short(host)) continue;
    for (const s of o.spec?.subsets || []) if (s?.name && !(s.name in weights)) weights[s.name] = 0;
  }
  return { host, weights };
}

function intIn(v, lo, hi, what) {
  const n = Number(v);
  if (!Number.isInteger(n) || n < lo || n > hi) throw new WizardError(`${what} must be a whole number from ${lo} to ${hi} (got "${v}")`);
  return n;
}

function pctIn(v, what) {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > 100) throw new WizardError(`${what} must be a percentage from 0 to 100 (got "${v}")`);
  return n;
}

const DURATION = /^\d+(\.\d+)?(ms|s|m|h)$/;
function durationOf(v, what) {
  const t = String(v || '').trim();
  if (!DURATION.test(t)) throw new WizardError(`${what} must be a duration such as 500ms, 2s or 1m (got "${v}")`);
  return t;
}

/** Sets the route's weights: {subset: weight}, whole numbers summing to 100. */
export function trafficShift(vs, index, host, weights) {
  const out = clone(vs);
  const r = routeOf(out, index);
  const entries = Object.entries(weights).map(([s, w]) => [s, intIn(w, 0, 100, `the weight of ${s}`)]);
  if (!entries.length) throw new WizardError('no subset to route to: add subsets to the DestinationRule first');
  const sum = entries.reduce((a, [, w]) => a + w, 0);
  if (sum !== 100) throw new WizardError(`the weights add up to ${sum}, not 100`);
  const old = r.route || [];
  const present = new Set(old.map((d) => d.destination?.subset));
  r.route = entries.filter(([s, w]) => w > 0 || present.has(s)).map(([s, w]) => {
    const was = old.find((d) => d.destination?.subset === s) || old[0] || {};
    return { ...clone(was), destination: { ...clone(was.destination || {}), host, subset: s }, weight: w };
  });
  return out;
}

/** Adds (or with zero percentages removes) an abort and a delay fault on the route. */
export function faultInjection(vs, index, { abortPct, abortStatus, delayPct, delay }) {
  const out = clone(vs);
  const r = routeOf(out, index);
  const fault = {};
  const ap = pctIn(abortPct || 0, 'The abort percentage');
  if (ap > 0) fault.abort = { percentage: { value: ap }, httpStatus: intIn(abortStatus, 200, 599, 'The abort status') };
  const dp = pctIn(delayPct || 0, 'The delay percentage');
  if (dp > 0) fault.delay = { percentage: { value: dp }, fixedDelay: durationOf(delay, 'The delay') };
  if (Object.keys(fault).length) r.fault = fault;
  else delete r.fault;
  return out;
}

/** Sets the route's timeout and retry policy; empty fields are removed. */
export function timeoutsRetries(vs, index, { timeout, attempts, perTryTimeout, retryOn }) {
  const out = clone(vs);
  const r = routeOf(out, index);
  if (String(timeout || '').trim()) r.timeout = durationOf(timeout, 'The timeout');
  else delete r.timeout;
  const n = String(attempts ?? '').trim() === '' ? 0 : intIn(attempts, 0, 100, 'The retry attempts');
  if (n > 0) {
    r.retries = { attempts: n };
    if (String(perTryTimeout || '').trim()) r.retries.perTryTimeout = durationOf(perTryTimeout, 'The per-try timeout');
    if (String(retryOn || '').trim()) r.retries.retryOn = String(retryOn).trim();
  } else {
    delete r.retries;
  }
  return out;
}

/** Sets the DestinationRule's connection pool and outlier detection; empty fields are left out. */
export function circuitBreaking(dr, f) {
  const out = clone(dr);
  out.spec = out.spec || {};
  const tp = (out.spec.trafficPolicy = out.spec.trafficPolicy || {});
  const num = (k, what, lo = 1, hi = 1e9) => (String(f[k] ?? '').trim() === '' ? undefined : intIn(f[k], lo, hi, what));
  const tcp = { maxConnections: num('maxConnections', 'Max connections') };
  const http = {
    http1MaxPendingRequests: num('maxPending', 'Max pending requests'),
    maxRequestsPerConnection: num('maxRequestsPerConnection', 'Max requests per connection'),
  };
  const od = {
    consecutive5xxErrors: num('consecutive5xxErrors', 'Consecutive 5xx errors'),
    interval: String(f.interval || '').trim() ? durationOf(f.interval, 'The interval') : undefined,
    baseEjectionTime: String(f.baseEjectionTime || '').trim() ? durationOf(f.baseEjectionTime, 'The base ejection time') : undefined,
    maxEjectionPercent: num('maxEjectionPercent', 'Max ejection percent', 0, 100),
  };
  const prune = (o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  const pool = prune({ tcp: Object.keys(prune(tcp)).length ? prune(tcp) : undefined, http: Object.keys(prune(http)).length ? prune(http) : undefined });
  if (Object.keys(pool).length) tp.connectionPool = pool;
  else delete tp.connectionPool;
  if (Object.keys(prune(od)).length) tp.outlierDetection = prune(od);
  else delete tp.outlierDetection;
  if (!Object.keys(tp).length) delete out.spec.trafficPolicy;
  return out;
}

/** A DestinationRule's current circuit-breaking figures, for the form's defaults. */
export function breakerValues(dr) {
  const tp = dr?.spec?.trafficPolicy || {};
  const cp = tp.connectionPool || {};
  const od = tp.outlierDetection || {};
  return {
    maxConnections: cp.tcp?.maxConnections ?? '',
    maxPending: cp.http?.http1MaxPendingRequests ?? '',
    maxRequestsPerConnection: cp.http?.maxRequestsPerConnection ?? '',
    consecutive5xxErrors: od.consecutive5xxErrors ?? 5,
    interval: od.interval ?? '10s',
    baseEjectionTime: od.baseEjectionTime ?? '30s',
    maxEjectionPercent: od.maxEjectionPercent ?? 50,
  };
}
