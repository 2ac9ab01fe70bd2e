// Small SVG charts written for this UI: a multi-series line chart with a legend and hover
// values, a scatter plot, and horizontal share bars. No dependencies.

import { h, s, clear } from './dom.js';
import { num, time } from './format.js';

const PALETTE = 10; // colours come from CSS variables --series-0 .. --series-9
const DASHES = ['', '6 3', '2 3', '8 3 2 3', '1 2']; // a second cue besides colour

function niceTicks(min, max, count = 5) {
  if (!(max > min)) { max = min + 1; }
  const span = max - min;
  const step0 = span / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s1) => s1 >= step0) || step0;
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

function timeTicks(t0, t1, count = 6) {
  const steps = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((x) => x * 1000);
  const step = steps.find((st) => (t1 - t0) / st <= count) || steps[steps.length - 1];
  const out = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
  return out;
}

/** The spacing of samples: the smallest gap between neighbours in any series (a range query's step). */
export function sampleStep(series) {
  let step = Infinity;
  for (const se of series) {
    for (let k = 1; k < se.points.length; k++) {
      const d = se.points[k][0] - se.points[k - 1][0];
      if (d > 0 && d < step) step = d;
    }
  }
  return Number.isFinite(step) ? step : 0;
}

/** Splits points into runs without missing samples: a gap of more than 1.5 steps breaks the line. */
export function segments(points, step) {
  const out = [];
  points.forEach((p, k) => {
    if (k === 0 || !step || p[0] - points[k - 1][0] > step * 1.5) out.push([p]);
    else out[out.length - 1].push(p);
  });
  return out;
}

/**
 * Line chart. series: [{name, points: [[ms, value], ...]}].
 * opts: {height, yFmt, title, maxLegend, bands, markers, xRange: [ms, ms]}; bands: [{start, end, label}] (ms) are shaded
 * behind the lines (anomalies) and named in the hover tooltip; markers: [{t, v, label, href}] are exemplars,
 * drawn as diamonds at their value (links when they name a trace). Returns the chart's root element.
 */
export function lineChart(series, { height = 220, yFmt = num, title = '', maxLegend = 40, width = 640, bands = [], markers = [], xRange = null } = {}) {
  const root = h('figure', { class: 'chart' });
  if (title) root.append(h('figcaption', {}, title));
  const hidden = new Set();
  const W = width, H = height, L = 56, R = 12, T = 10, B = 24;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-label': title || 'line chart', preserveAspectRatio: 'none' });
  const tip = h('div', { class: 'chart-tip', hidden: true, role: 'tooltip' });
  const plot = h('div', { class: 'chart-plot' }, svg, tip);
  root.append(plot);
  const legend = h('ul', { class: 'legend' });
  root.append(legend);

  const all = series.map((se, i) => ({ ...se, i, points: se.points.filter((p) => Number.isFinite(p[1])) }));
  let x0 = Infinity, x1 = -Infinity;
  for (const se of all) for (const [t] of se.points) { if (t < x0) x0 = t; if (t > x1) x1 = t; }
  if (!(x1 > x0)) { x0 = (x0 === Infinity ? Date.now() : x0) - 60000; x1 = x0 + 120000; }
  if (xRange && xRange[1] > xRange[0]) [x0, x1] = xRange; // the queried window, data or not
  const X = (t) => L + ((t - x0) / (x1 - x0)) * (W - L - R);
  const step = sampleStep(all);
  const shown = (bands || []).filter((b) => b.end >= x0 && b.start <= x1);
  const anomalies = shown.filter((b) => !b.cls).length;
  if (anomalies) {
    root.classList.add('has-bands');
    root.dataset.bands = String(anomalies);
  }

  function draw() {
    clear(svg);
    const vis = all.filter((se) => !hidden.has(se.i));
    let y0 = Infinity, y1 = -Infinity;
    for (const se of vis) for (const [, v] of se.points) { if (v < y0) y0 = v; if (v > y1) y1 = v; }
    const marks = (markers || []).filter((m) => Number.isFinite(m.v) && m.t >= x0 && m.t <= x1);
    for (const m of marks) { if (m.v < y0) y0 = m.v; if (m.v > y1) y1 = m.v; }
    if (y0 === Infinity) { y0 = 0; y1 = 1; }
    if (y0 > 0 && y0 < y1 * 0.5) y0 = 0;
    if (y1 === y0) { y1 = y0 + (Math.abs(y0) || 1); if (y0 > 0) y0 = 0; }
    const ticks = niceTicks(y0, y1);
    y0 = Math.min(y0, ticks[0]); y1 = Math.max(y1, ticks[ticks.length - 1]);
    const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
    const axes = s('g', { class: 'axes' });
    for (const v of ticks) {
      axes.append(s('line', { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: 'grid' }),
        s('text', { x: L - 4, y: Y(v) + 3, 'text-anchor': 'end' }, yFmt(v)));
    }
    const xTicks = timeTicks(x0, x1);
    const secs = xTicks.some((t) => t % 60000 !== 0); // ticks under a minute apart need seconds
    for (const t of xTicks) {
      axes.append(s('line', { x1: X(t), x2: X(t), y1: T, y2: H - B, class: 'grid' }),
        s('text', { x: X(t), y: H - 8, 'text-anchor': 'middle' }, secs ? time(t) : time(t).slice(0, 5)));
    }
    svg.append(axes);
    for (const b of shown) {
      const a = X(Math.max(b.start, x0)), z = X(Math.min(b.end, x1));
      svg.append(s('rect', { class: `band ${b.cls || 'band-anomaly'}`, x: a.toFixed(1), y: T, width: Math.max(2, z - a).toFixed(1), height: H - T - B },
        s('title', {}, b.label)));
    }
    for (const se of vis) {
      const cls = `series s${se.i % PALETTE}`;
      const dash = DASHES[Math.floor(se.i / PALETTE) % DASHES.length] || null;
      for (const run of segments(se.points, step)) {
        // A one-point path has no length and draws nothing: an isolated sample gets a marker.
        if (run.length === 1) {
          const [t, v] = run[0];
          svg.append(s('circle', { cx: X(t).toFixed(1), cy: Y(v).toFixed(1), r: 3, class: `${cls} point` }));
        } else {
          const d = run.map(([t, v], k) => `${k ? 'L' : 'M'}${X(t).toFixed(1)},${Y(v).toFixed(1)}`).join('');
          svg.append(s('path', { d, class: cls, 'stroke-dasharray': dash }));
        }
      }
    }
    for (const m of marks) {
      const x = X(m.t), y = Y(m.v), r = 5;
      const shape = s('path', { d: `M${x.toFixed(1)},${(y - r).toFixed(1)}l${r},${r}l${-r},${r}l${-r},${-r}z`, class: 'exemplar-mark' });
      const label = m.label || `exemplar ${yFmt(m.v)}`;
      svg.append(m.href
        ? s('a', { href: m.href, class: 'exemplar', 'aria-label': label }, s('title', {}, label), shape)
        : s('g', { class: 'exemplar', 'aria-label': label }, s('title', {}, label), shape));
    }
    const cursor = s('line', { class: 'cursor', y1: T, y2: H - B, x1: -10, x2: -10 });
    svg.append(cursor);
    svg.onmousemove = (ev) => {
      const rect = svg.getBoundingClientRect();
      const px = ((ev.clientX - rect.left) / rect.width) * W;
      const t = x0 + ((px - L) / (W - L - R)) * (x1 - x0);
      const rows = [];
      let tt = null;
      for (const se of vis) {
        let best = null;
        for (const p of se.points) if (!best || Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
        if (best) { rows.push([se, best[1]]); tt = tt ?? best[0]; }
      }
      const inBands = shown.filter((b) => t >= b.start && t <= b.end);
      if (!rows.length && !inBands.length) return;
      rows.sort((a, b) => b[1] - a[1]);
      tt = tt ?? t;
      cursor.setAttribute('x1', X(tt)); cursor.setAttribute('x2', X(tt));
      clear(tip).append(h('div', { class: 'tip-time' }, time(tt, true)),
        ...rows.slice(0, 12).map(([se, v]) => h('div', { class: 'tip-row' },
          h('span', { class: `swatch s${se.i % PALETTE}`, 'aria-hidden': 'true' }), ` ${se.name}: `, h('b', {}, yFmt(v)))),
        ...(rows.length > 12 ? [h('div', {}, `… ${rows.length - 12} more`)] : []),
        ...inBands.map((b) => h('div', { class: 'tip-band' }, `▨ ${b.label}`)));
      tip.hidden = false;
      const left = ev.clientX - rect.left;
      tip.style.left = `${Math.min(left + 12, rect.width - 260)}px`;
      tip.style.top = '4px';
    };
    svg.onmouseleave = () => { tip.hidden = true; cursor.setAttribute('x1', -10); cursor.setAttribute('x2', -10); };
  }

  if (!maxLegend) legend.remove();
  all.slice(0, maxLegend).forEach((se) => {
    const item = h('li', {}, h('button', {
      type: 'button', class: 'legend-item', 'aria-pressed': 'true', title: 'Show or hide this series',
      onclick: (ev) => {
        if (hidden.has(se.i)) hidden.delete(se.i); else hidden.add(se.i);
        ev.currentTarget.setAttribute('aria-pressed', String(!hidden.has(se.i)));
        draw();
      },
    }, h('span', { class: `swatch s${se.i % PALETTE}`, 'aria-hidden': 'true' }), se.name || '{}'));
    legend.append(item);
  });
  if (maxLegend && all.length > maxLegend) legend.append(h('li', { class: 'muted' }, `… and ${all.length - maxLegend} more series`));
  if (anomalies) root.append(h('p', { class: 'chart-key band-key' }, h('span', { class: 'band-swatch', 'aria-hidden': 'true' }), ` shaded: ${anomalies} anomal${anomalies === 1 ? 'y' : 'ies'} (hover for details)`));
  if (markers && markers.length) {
    root.dataset.exemplars = String(markers.length);
    root.append(h('p', { class: 'chart-key exemplar-key' }, h('span', { class: 'exemplar-swatch', 'aria-hidden': 'true' }, '◆'),
      ` ${markers.length} exemplar${markers.length === 1 ? '' : 's'}${markers.some((m) => m.href) ? ': click one to open its trace' : ''}`));
  }
  if (!all.some((se) => se.points.length)) plot.append(h('p', { class: 'chart-empty' }, 'No data points in this window.'));
  draw();
  return root;
}

/**
 * Scatter plot. points: [{x: ms, y: number, error: bool, label, onClick}].
 * Errors are drawn as crosses, others as circles (shape, not only colour).
 */
export function scatterChart(points, { height = 200, width = 900, yFmt = num, title = '', x0, x1 } = {}) {
  const root = h('figure', { class: 'chart scatter' });
  if (title) root.append(h('figcaption', {}, title));
  const W = width, H = height, L = 60, R = 12, T = 10, B = 24;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-label': title || 'scatter plot' });
  root.append(h('div', { class: 'chart-plot' }, svg));
  if (x0 === undefined) x0 = Math.min(...points.map((p) => p.x));
  if (x1 === undefined) x1 = Math.max(...points.map((p) => p.x));
  if (!(x1 > x0)) { x0 = (Number.isFinite(x0) ? x0 : Date.now()) - 60000; x1 = x0 + 120000; }
  const ymax = Math.max(1e-9, ...points.map((p) => p.y));
  const ticks = niceTicks(0, ymax);
  const y1 = ticks[ticks.length - 1];
  const X = (t) => L + ((t - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - v / y1) * (H - T - B);
  for (const v of ticks) {
    svg.append(s('line', { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: 'grid' }),
      s('text', { x: L - 4, y: Y(v) + 3, 'text-anchor': 'end', class: 'axis-text' }, yFmt(v)));
  }
  for (const t of timeTicks(x0, x1)) {
    svg.append(s('text', { x: X(t), y: H - 8, 'text-anchor': 'middle', class: 'axis-text' }, time(t).slice(0, 5)));
  }
  for (const p of points) {
    const x = X(p.x), y = Y(p.y);
    const title1 = s('title', {}, p.label || '');
    const g = s('g', {
      class: `pt${p.error ? ' pt-error' : ''}`, tabindex: p.onClick ? 0 : null, role: p.onClick ? 'link' : null,
      'aria-label': p.label, onclick: p.onClick,
      onkeydown: p.onClick ? (e) => { if (e.key === 'Enter') p.onClick(e); } : null,
    }, title1);
    if (p.error) g.append(s('path', { d: `M${x - 4},${y - 4}L${x + 4},${y + 4}M${x - 4},${y + 4}L${x + 4},${y - 4}` }));
    else g.append(s('circle', { cx: x, cy: y, r: 4 }));
    svg.append(g);
  }
  root.append(h('p', { class: 'chart-key' }, '○ trace   ✕ trace with an error'));
  return root;
}

/** Horizontal share bars: rows [{key, value, cls}] → list with a bar, the value and a share. */
export function shareBars(rows, { fmt = num, label = 'share' } = {}) {
  const total = rows.reduce((a, r) => a + r.value, 0) || 1;
  return h('ul', { class: 'bars', 'aria-label': label }, rows.map((r) => h('li', { class: r.cls || '' },
    h('span', { class: 'bar-key' }, r.key),
    h('span', { class: 'bar-track', 'aria-hidden': 'true' }, h('span', { class: 'bar-fill', style: { width: `${(100 * r.value) / total}%` } })),
    h('span', { class: 'bar-val' }, `${fmt(r.value)} (${((100 * r.value) / total).toFixed(1)}%)`))));
}

/**
 * `query_exemplars` data → chart markers: one per exemplar at its time and value, linked to
 * the trace its `trace_id` label names (`traceHref(id)`), labelled with its series and labels.
 */
export function exemplarMarkers(data, traceHref) {
  const out = [];
  for (const se of data || []) {
    for (const e of se.exemplars || []) {
      const id = e.labels?.trace_id || e.labels?.traceID || e.labels?.traceId;
      const ls = Object.entries(e.labels || {}).map(([k, v]) => `${k}="${v}"`).join(', ');
      out.push({
        t: e.timestamp * 1000,
        v: parseFloat(e.value),
        href: id ? traceHref(id) : null,
        label: `exemplar ${e.value} {${ls}} of ${seriesName(se.seriesLabels || {})}${id ? ': open the trace' : ''}`,
      });
    }
  }
  return out;
}

/** Prometheus matrix → chart series, named by their labels. */
// A native histogram series is drawn as its count of observations over time.
export function matrixSeries(result) {
  return (result || []).flatMap((r) => {
    const out = [];
    if (r.values) out.push({ name: seriesName(r.metric), points: r.values.map(([t, v]) => [t * 1000, parseFloat(v)]) });
    if (r.histograms) {
      out.push({
        name: `${seriesName(r.metric)} (histogram count)`,
        points: r.histograms.map(([t, hist]) => [t * 1000, parseFloat(hist.count)]),
      });
    }
    return out;
  });
}

export function seriesName(metric) {
  const m = { ...metric };
  const name = m.__name__ || '';
  delete m.__name__;
  const ls = Object.entries(m).map(([k, v]) => `${k}="${v}"`).join(', ');
  return ls ? `${name}{${ls}}` : name || '{}';
}
