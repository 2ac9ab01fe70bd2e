// Every request the UI makes goes through here (nothing else calls fetch), on the same
// origin: the Prometheus HTTP API, the Zipkin v2 API and meshlens's analysis endpoints. The
// chosen tenant rides on each one as `X-Scope-OrgID`. Errors become ApiError carrying the
// server's status and its own message, which the views show as they are.

export class ApiError extends Error {
  constructor(url, status, message, { needsTenant = false } = {}) {
    super(message);
    this.url = url;
    this.status = status;
    this.needsTenant = needsTenant;
  }
  /** The endpoint does not exist on this server (used for the optional validations report). */
  get missing() {
    return this.status === 404 || this.status === 405 || this.status === 501;
  }
}

export const TENANT_HEADER = 'X-Scope-OrgID';
export const NEEDS_TENANT = 'this server needs a tenant id: set one in the top bar';

let tenant = '';

/** The tenant id sent with every request from now on; '' sends no header. */
export function setTenant(id) {
  tenant = String(id || '').trim();
}

export const currentTenant = () => tenant;

/**
 * A tenant id as Cortex, Mimir and Loki accept it: letters, digits and `!-_.*'()`, at most 150
 * characters, not `.` or `..`; `a|b` names several tenants for a read. Returns what is wrong, or ''.
 */
export function tenantProblem(id) {
  const v = String(id || '').trim();
  if (!v) return '';
  for (const part of v.split('|')) {
    if (!part) return 'an empty tenant id between "|"';
    if (part.length > 150) return `tenant id "${part.slice(0, 20)}…" is longer than 150 characters`;
    if (part === '.' || part === '..') return `"${part}" is not a tenant id`;
    const bad = /[^A-Za-z0-9!\-_.*'()]/.exec(part);
    if (bad) return `tenant id "${part}" has the character "${bad[0]}" (allowed: letters, digits and !-_.*'())`;
  }
  return '';
}

// A 401 answer about the org id (the tenant header) rather than a password.
const aboutTenant = (text) => /org.?id|x-scope-orgid|tenant/i.test(text);

/** The one place the UI calls the network; an unreachable server becomes an ApiError. */
async function request(url, init) {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw new ApiError(url, 0, `cannot reach the server (${e.message})`);
  }
}

const inflight = new Map();
const cache = new Map();
const CACHE_MS = 5000;

/** GETs JSON; identical concurrent requests share one fetch; answers are kept a few seconds. */
export function getJSON(url, { fresh = false } = {}) {
  const key = `${tenant}\u0000${url}`; // one tenant's answer must never serve another's
  const hit = cache.get(key);
  if (!fresh && hit && Date.now() - hit.at < CACHE_MS) return Promise.resolve(hit.value);
  if (inflight.has(key)) return inflight.get(key);
  const headers = { Accept: 'application/json' };
  if (tenant) headers[TENANT_HEADER] = tenant;
  const p = (async () => {
    const res = await request(url, { headers });
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (!res.ok) {
      const msg = (body && (body.error || body.message)) || text.trim().slice(0, 300) || res.statusText;
      const status = `${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
      if (res.status === 401 && aboutTenant(text)) {
        window.dispatchEvent(new CustomEvent('meshlens:tenant-needed', { detail: { url, message: msg } }));
        throw new ApiError(url, 401, `${NEEDS_TENANT} (${status}: ${msg})`, { needsTenant: true });
      }
      throw new ApiError(url, res.status, `${status}: ${msg}`);
    }
    if (body === null && text) throw new ApiError(url, res.status, 'the answer is not JSON');
    if (body && body.status === 'error') throw new ApiError(url, res.status, body.error || 'error');
    cache.set(key, { at: Date.now(), value: body });
    return body;
  })();
  inflight.set(key, p);
  const done = () => inflight.delete(key);
  p.then(done, done);
  return p;
}

const qs = (o) => {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  return u.toString();
};

const nowS = () => Date.now() / 1000;

// ---- Prometheus ----------------------------------------------------------------------

export async function query(q, time) {
  const b = await getJSON(`/api/v1/query?${qs({ query: q, time })}`);
  return b.data;
}

/** A range query over the last `seconds`, with about `points` steps. */
export async function queryRange(q, seconds, points = 120, end = nowS()) {
  const step = Math.max(1, Math.round(seconds / points));
  const b = await getJSON(`/api/v1/query_range?${qs({ query: q, start: (end - seconds).toFixed(3), end: end.toFixed(3), step })}`);
  return b.data;
}

/**
 * Exemplars of the series a query selects, over the last `seconds` up to `end` (s):
 * [{seriesLabels, exemplars: [{labels, value, timestamp}]}]. A server without exemplars
 * (or an error) gives [], so a chart never fails for want of them.
 */
export async function exemplars(q, seconds, end = nowS()) {
  try {
    const b = await getJSON(`/api/v1/query_exemplars?${qs({ query: q, start: (end - seconds).toFixed(3), end: end.toFixed(3) })}`);
    return b.data || [];
  } catch {
    return [];
  }
}

export async function labelNames() {
  return (await getJSON('/api/v1/labels')).data || [];
}

export async function labelValues(name) {
  return (await getJSON(`/api/v1/label/${encodeURIComponent(name)}/values`)).data || [];
}

export const metricNames = () => labelValues('__name__');

/** Values of a PromQL instant vector as [{metric, value}] with numeric values. */
export async function vector(q, time) {
  const d = await query(q, time);
  if (!d || d.resultType !== 'vector') return [];
  return d.result.map((r) => ({ metric: r.metric, value: parseFloat(r.value[1]) }));
}

// ---- Zipkin v2 -------------------------------------------------------------------------

export const services = () => getJSON('/api/v2/services');
export const spanNames = (service) => getJSON(`/api/v2/spans?${qs({ serviceName: service })}`);
export const trace = (id) => getJSON(`/api/v2/trace/${encodeURIComponent(id)}`);

/** params: serviceName, spanName, annotationQuery, minDuration, maxDuration (µs), lookback (ms), limit. */
export function traces(params) {
  return getJSON(`/api/v2/traces?${qs({ endTs: Date.now(), ...params })}`);
}

export function dependencies(lookbackMs) {
  return getJSON(`/api/v2/dependencies?${qs({ endTs: Date.now(), lookback: lookbackMs })}`);
}

// ---- meshlens analyses -----------------------------------------------------------------

export const graph = (params) => getJSON(`/api/v1/graph?${qs(params)}`);
export const stats = (params) => getJSON(`/api/v1/stats?${qs(params)}`);
export const validations = () => getJSON('/api/v1/validations');
/** `/api/v1/clusters`: {status, data: [{name, agents: [...], lastSeen, lagSeconds, samplesPerSecond, ...}]}. */
export const clusters = (opts) => getJSON('/api/v1/clusters', opts);

/** `data` of `/api/v1/status/storage`: {backend, metrics, spans} or {backend, url, cluster, schema_version, shards, totals}. */
export const storageStatus = (opts) => getJSON('/api/v1/status/storage', opts).then((b) => b?.data || {});

// ---- rules, alerts and SLOs -------------------------------------------------------------

/** `data` of Prometheus's `/api/v1/alerts`: {alerts: [{labels, annotations, state, activeAt, value}]}. */
export const alerts = (opts) => getJSON('/api/v1/alerts', opts).then((b) => b?.data || { alerts: [] });
/** `data` of Prometheus's `/api/v1/rules`: {groups: [{name, file, interval, rules: [...]}]}. */
export const rules = (opts) => getJSON('/api/v1/rules', opts).then((b) => b?.data || { groups: [] });
/** `data` of meshlens's `/api/v1/slos`: {slos: [{service, namespace, objective, values, alerts}]}. */
export const slos = (opts) => getJSON('/api/v1/slos', opts).then((b) => b?.data || { slos: [] });

// ---- the loop: events, anomalies, canary verdicts, mesh edits -----------------------------

/** Sends `body` as JSON with `method`; errors as getJSON's, with the answer kept as `e.body`. */
export async function send(method, url, body) {
  const headers = { Accept: 'application/json', 'Content-Type': 'application/json' };
  if (tenant) headers[TENANT_HEADER] = tenant;
  const res = await request(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok || (parsed && parsed.status === 'error')) {
    const msg = (parsed && (parsed.error || parsed.message)) || text.trim().slice(0, 300) || res.statusText;
    const err = new ApiError(url, res.status, `${res.status}${res.statusText ? ` ${res.statusText}` : ''}: ${msg}`);
    err.body = parsed;
    err.reason = msg;
    throw err;
  }
  cache.clear(); // a change makes every kept answer suspect
  return parsed;
}

/** `/api/v1/events`: params {since, until (Unix s), kind, service, limit}; newest first. */
export const events = (params, opts) => getJSON(`/api/v1/events?${qs(params)}`, opts).then((b) => b?.data || []);
/** `/api/v1/anomalies`: {threshold, current: [...], history: [...]}. */
export const anomalies = (params, opts) => getJSON(`/api/v1/anomalies?${qs(params || {})}`, opts)
  .then((b) => ({ threshold: 1, current: [], history: [], ...(b?.data || {}) }));
/** `/api/v1/verify`: the canary report (pass, fail or inconclusive). */
export const verify = (params) => getJSON(`/api/v1/verify?${qs(params)}`, { fresh: true }).then((b) => b?.data ?? b);
/** `/api/v1/mesh/objects`: {writable, dirs, objects: [...]}. */
export const meshObjects = (opts) => getJSON('/api/v1/mesh/objects', opts).then((b) => ({ writable: false, dirs: [], objects: [], ...(b?.data || {}) }));
export const meshPreview = (body) => send('POST', '/api/v1/mesh/preview', body).then((b) => b?.data ?? b);
export const meshApply = (body) => send('POST', '/api/v1/mesh/apply', body).then((b) => b?.data ?? b);

/** Undoes a remediation (`r-…`) or a config change (any other id). */
export function undo(id) {
  const enc = encodeURIComponent(id);
  const path = String(id).startsWith('r-') ? `/api/v1/remediations/${enc}/undo` : `/api/v1/mesh/changes/${enc}/undo`;
  return send('POST', path).then((b) => b?.data ?? b);
}

/** Prometheus-style selectors are built from user values: escape them. */
export function esc(v) {
  return String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
