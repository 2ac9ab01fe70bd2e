// Number, duration and time formatting shared by the views.

export function num(v, digits = 2) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + 'G';
  if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  if (a >= 100) return v.toFixed(0);
  if (a === 0) return '0';
  if (a < 0.0001) return v.toExponential(1);
  if (a < 0.01) return String(+v.toPrecision(2));
  return String(+v.toFixed(digits));
}

/** Bytes in binary units: 0 B, 512 B, 1.5 KiB, 20 MiB, 3.2 GiB. */
export function bytes(v) {
  const n = Number(v);
  if (v === null || v === undefined || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let x = n;
  let i = 0;
  while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return i === 0 ? `${x} B` : `${x >= 100 ? x.toFixed(0) : x.toFixed(1)} ${units[i]}`;
}

export const rate = (v) => (v === null || v === undefined ? '–' : `${num(v)}/s`);

/** A 0..1 share as a percentage. */
export function pct(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (v > 0 && v < 0.001) return '<0.1%';
  return `${(v * 100).toFixed(digits).replace(/\.0+$/, '')}%`;
}

/** Milliseconds, human sized. */
export function ms(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (v >= 60000) return `${(v / 60000).toFixed(1)}min`;
  if (v >= 1000) return `${(v / 1000).toFixed(2).replace(/\.?0+$/, '')}s`;
  if (v >= 10) return `${v.toFixed(0)}ms`;
  if (v >= 1) return `${v.toFixed(1).replace(/\.0$/, '')}ms`;
  return `${(v * 1000).toFixed(0)}µs`;
}

/** Microseconds (Zipkin's unit), human sized. */
export const us = (v) => ms(v / 1000);

export function time(msSinceEpoch, withDate = false) {
  const d = new Date(msSinceEpoch);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  const t = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return withDate ? `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${t}` : t;
}

/** Parses '250ms', '1.5s', '2m', '300us', or a bare number of ms; returns ms or null. */
export function parseDuration(text) {
  const m = String(text || '').trim().match(/^(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)?$/i);
  if (!m) return null;
  const n = parseFloat(m[1]);
  const unit = (m[2] || 'ms').toLowerCase();
  return n * { us: 0.001, 'µs': 0.001, ms: 1, s: 1000, m: 60000, h: 3600000 }[unit];
}

/** Seconds as a Prometheus-style duration: 90 → "1m30s", 3600 → "1h", 0 → "0s". */
export function duration(seconds) {
  const v = Number(seconds);
  if (!Number.isFinite(v) || v < 0) return '–';
  if (v > 0 && v < 1) return ms(v * 1000);
  let rest = Math.round(v);
  if (!rest) return '0s';
  let out = '';
  for (const [unit, n] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
    if (rest >= n) { out += `${Math.floor(rest / n)}${unit}`; rest %= n; }
  }
  return out;
}

/**
 * An RFC 3339 time (Go's JSON, up to nanoseconds) as ms since the epoch; null for Go's zero
 * time ("never") or anything unparsable.
 */
export function parseTime(text) {
  if (!text || /^0001-01-01/.test(text)) return null;
  // Date.parse wants at most milliseconds.
  const t = Date.parse(String(text).replace(/(\.\d{3})\d+/, '$1'));
  return Number.isFinite(t) ? t : null;
}

/** How long ago `msSinceEpoch` was, coarsely: "45s", "3m 20s", "2h 5m", "3d 4h"; "never" for null. */
export function ago(msSinceEpoch, now = Date.now()) {
  if (msSinceEpoch === null || msSinceEpoch === undefined) return 'never';
  const s = Math.max(0, Math.round((now - msSinceEpoch) / 1000));
  const parts = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];
  for (let i = 0; i < parts.length; i++) {
    const [u, n] = parts[i];
    if (s >= n || u === 's') {
      const next = parts[i + 1];
      const rem = next ? Math.floor((s % n) / next[1]) : 0;
      return `${Math.floor(s / n)}${u}${rem && u !== 's' ? ` ${rem}${next[0]}` : ''}`;
    }
  }
  return `${s}s`;
}
