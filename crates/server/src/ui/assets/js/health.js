// Kiali's health from response codes, and its presentation that does not rely on colour:
// every badge has a glyph and a word as well as a colour.

import { h } from './dom.js';

export const LEVELS = {
  failure: { rank: 3, glyph: '✕', label: 'Failure' },
  degraded: { rank: 2, glyph: '!', label: 'Degraded' },
  healthy: { rank: 1, glyph: '✓', label: 'Healthy' },
  na: { rank: 0, glyph: '–', label: 'No traffic' },
};

/** An error code in Istio's metrics: 5xx, or 0 (no response). */
export const isErrorCode = (c) => String(c) === '0' || /^5\d\d$/.test(String(c));

/** Kiali's default tolerances: 5xx > 0 % degraded, >= 10 % failure; 4xx >= 10 % / >= 20 %. */
export function fromCodes(codes) {
  let total = 0, e5 = 0, e4 = 0;
  for (const [c, n] of Object.entries(codes || {})) {
    total += n;
    if (isErrorCode(c)) e5 += n;
    else if (/^4\d\d$/.test(c)) e4 += n;
  }
  if (total <= 0) return 'na';
  if (e5 / total >= 0.10 || e4 / total >= 0.20) return 'failure';
  if (e5 > 0 || e4 / total >= 0.10) return 'degraded';
  return 'healthy';
}

export function normalise(level) {
  const l = String(level || 'na').toLowerCase();
  return LEVELS[l] ? l : 'na';
}

export const rank = (level) => LEVELS[normalise(level)].rank;

export function badge(level) {
  const l = normalise(level);
  const info = LEVELS[l];
  return h('span', { class: `health health-${l}`, title: info.label },
    h('span', { class: 'health-glyph', 'aria-hidden': 'true' }, info.glyph), ' ', info.label);
}
