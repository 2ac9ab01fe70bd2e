// The URL is the state: `#/<view>?range=1h&cluster=..&ns=..&tenant=..&<view params>`.
// The time range, the cluster/namespace filter and the tenant are shared by every view; links
// between views carry them, so any view can be bookmarked and shared as it is shown.

export const SHARED = ['range', 'cluster', 'ns', 'refresh', 'tenant'];
export const DEFAULT_VIEW = 'overview';
export const RANGES = ['5m', '15m', '30m', '1h', '3h', '6h', '12h', '24h', '2d', '7d'];
export const DEFAULT_RANGE = '15m';

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const view = (q < 0 ? raw : raw.slice(0, q)) || DEFAULT_VIEW;
  const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
  return { view, params };
}

/** The current route: view name and its parameters (shared ones included). */
export function current() {
  return parseHash();
}

/** The shared parameters, with defaults. */
export function shared(params = current().params) {
  const range = RANGES.includes(params.get('range')) ? params.get('range') : DEFAULT_RANGE;
  return {
    range,
    seconds: rangeSeconds(range),
    cluster: params.get('cluster') || '',
    ns: params.get('ns') || '',
    refresh: params.get('refresh') || '',
    tenant: (params.get('tenant') || '').trim(),
  };
}

export function rangeSeconds(r) {
  const m = /^(\d+)([smhd])$/.exec(r || '');
  if (!m) return 900;
  return +m[1] * { s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
}

/** A href to `view` with `params`, carrying the shared parameters of the current URL. */
export function href(view, params = {}) {
  const cur = current().params;
  const out = new URLSearchParams();
  for (const k of SHARED) if (cur.get(k)) out.set(k, cur.get(k));
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '' || v === false) out.delete(k);
    else out.set(k, String(v));
  }
  const qs = out.toString();
  return `#/${view}${qs ? `?${qs}` : ''}`;
}

/** Changes parameters of the current view (null/'' deletes); `replace` avoids a history entry. */
export function update(changes, { replace = false } = {}) {
  const { view, params } = current();
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined || v === null || v === '' || v === false) params.delete(k);
    else params.set(k, String(v));
  }
  const qs = params.toString();
  const next = `#/${view}${qs ? `?${qs}` : ''}`;
  if (next === location.hash) return;
  if (replace) history.replaceState(null, '', next);
  else location.hash = next;
  if (replace) window.dispatchEvent(new HashChangeEvent('hashchange'));
}

export function go(view, params) {
  location.hash = href(view, params);
}
