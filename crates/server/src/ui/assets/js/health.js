// Health as the server reports it (Kiali's levels), and its presentation that does not rely
// on colour: every badge has a glyph and a word as well as a colour.

import { h } from './dom.js';

export const LEVELS = {
  failure: { rank: 3, glyph: '✕', label: 'Failure' },
  degraded: { rank: 2, glyph: '!', label: 'Degraded' },
  healthy: { rank: 1, glyph: '✓', label: 'Healthy' },
  na: { rank: 0, glyph: '–', label: 'No traffic' },
};

/** An error code in Istio's metrics: 5xx, or 0 (no response). */
export const isErrorCode = (c) => String(c) === '0' || /^5\d\d$/.test(String(c));

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
