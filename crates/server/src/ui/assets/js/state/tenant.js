// The tenant id across visits: the last one chosen and a short list of recent ones (for the
// top bar's suggestions), kept in localStorage. The URL's `tenant` parameter, when present,
// wins; this is what a bookmark or a fresh tab without one falls back to.

const CURRENT_KEY = 'meshlens.tenant';
const RECENT_KEY = 'meshlens.tenants';
const MAX_RECENT = 10;

function read(key, fallback) {
  try {
    const v = localStorage.getItem(key);
    return v === null ? fallback : v;
  } catch { return fallback; } // storage disabled
}

function write(key, value) {
  try { localStorage.setItem(key, value); } catch { /* storage disabled or full */ }
}

/** The last tenant chosen ('' for none). */
export const saved = () => read(CURRENT_KEY, '');

/** Recently used tenant ids, newest first. */
export function recent() {
  try {
    const list = JSON.parse(read(RECENT_KEY, '[]'));
    return Array.isArray(list) ? list.filter((x) => typeof x === 'string' && x) : [];
  } catch { return []; }
}

/** Remembers `id` as the current tenant ('' clears it) and, if set, as the most recent. */
export function remember(id) {
  write(CURRENT_KEY, id);
  if (id) write(RECENT_KEY, JSON.stringify([id, ...recent().filter((x) => x !== id)].slice(0, MAX_RECENT)));
}
