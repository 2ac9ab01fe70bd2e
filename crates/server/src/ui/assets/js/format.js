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
