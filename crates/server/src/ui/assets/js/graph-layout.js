// A layered left-to-right layout (Sugiyama-style, simplified) for the service graph:
//  1. cycles are broken by ignoring DFS back edges;
//  2. layers by longest path from the sources (callers left, callees right);
//  3. members of one group (an app's versions) share the deepest member's layer and stay
//     adjacent, so the group can be drawn as a box around them;
//  4. order within a layer by alternating barycenter sweeps to reduce crossings, lanes first;
//  5. coordinates: fixed column width, blocks stacked and centred per column within their
//     lane. Lanes (one per cluster) are horizontal bands sharing the columns, so an edge
//     between clusters still runs left to right, from one band into another.
// Linear in nodes + edges per sweep: fine at 500 nodes.

export const NODE_W = 196;
export const NODE_H = 48;
const GAP_X = 110;
const GAP_Y = 18;
const GROUP_PAD = 8;
const GROUP_HEAD = 18;
const LANE_HEAD = 24;
const LANE_PAD = 12;
const LANE_GAP = 26;

/**
 * nodes: [{id}], edges: [{source, target}], groupOf(node) -> key or null, laneOf(node) ->
 * key or null (null: the unboxed lane on top; other lanes follow sorted by key).
 * Returns {pos: Map(id -> {x, y, w, h, layer}), groups: [{key, x, y, w, h, members}],
 * lanes: [{key, x, y, w, h, members}] (keyed lanes only), width, height}.
 */
export function layout(nodes, edges, groupOf = () => null, laneOf = () => null) {
  const ids = nodes.map((n) => n.id);
  const index = new Map(ids.map((id, i) => [id, i]));
  const out = ids.map(() => []);
  const inn = ids.map(() => []);
  for (const e of edges) {
    const a = index.get(e.source), b = index.get(e.target);
    if (a === undefined || b === undefined || a === b) continue;
    out[a].push(b); inn[b].push(a);
  }

  // 1. DFS from nodes without callers first, then the rest; mark back edges.
  const state = new Uint8Array(ids.length); // 0 new, 1 on stack, 2 done
  const back = new Set();
  const roots = [...ids.keys()].sort((a, b) => inn[a].length - inn[b].length);
  for (const r of roots) {
    if (state[r]) continue;
    const stack = [[r, 0]];
    state[r] = 1;
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [v, k] = top;
      if (k < out[v].length) {
        top[1]++;
        const w = out[v][k];
        if (state[w] === 1) back.add(`${v}>${w}`);
        else if (!state[w]) { state[w] = 1; stack.push([w, 0]); }
      } else { state[v] = 2; stack.pop(); }
    }
  }
  const dagOut = out.map((ws, v) => ws.filter((w) => !back.has(`${v}>${w}`)));
  const dagIn = ids.map(() => []);
  dagOut.forEach((ws, v) => ws.forEach((w) => dagIn[w].push(v)));

  // 2. Longest path layering (Kahn order).
  const layer = new Int32Array(ids.length);
  const indeg = dagIn.map((x) => x.length);
  const queue = [...ids.keys()].filter((v) => indeg[v] === 0);
  const topo = [];
  while (queue.length) {
    const v = queue.shift();
    topo.push(v);
    for (const w of dagOut[v]) {
      layer[w] = Math.max(layer[w], layer[v] + 1);
      if (--indeg[w] === 0) queue.push(w);
    }
  }

  // Lanes: the unkeyed one first, then in the direction of the traffic (by their nodes' mean
  // layer, so callers' clusters sit above their callees'), then by key.
  const laneKey = nodes.map((n) => laneOf(n) ?? null);
  const depth = new Map();
  laneKey.forEach((k, v) => { const d = depth.get(k) || [0, 0]; d[0] += layer[v]; d[1]++; depth.set(k, d); });
  const mean = (k) => depth.get(k)[0] / depth.get(k)[1];
  const laneKeys = [...depth.keys()].sort((a, b) => (a === null ? -1 : b === null ? 1 : mean(a) - mean(b) || String(a).localeCompare(String(b))));
  const laneIx = laneKey.map((k) => laneKeys.indexOf(k));

  // 3. Groups share a layer (and a lane: a group's members never span two).
  const group = nodes.map((n, v) => { const g = groupOf(n); return g === null || g === undefined ? null : `${laneIx[v]}\u0000${g}`; });
  const members = new Map();
  group.forEach((g, v) => { if (g) { if (!members.has(g)) members.set(g, []); members.get(g).push(v); } });
  for (const [g, vs] of members) {
    if (vs.length < 2) { members.delete(g); vs.forEach((v) => { group[v] = null; }); continue; }
    const l = Math.max(...vs.map((v) => layer[v]));
    vs.forEach((v) => { layer[v] = l; });
  }

  // Blocks: a group in a layer, or a single node.
  const nLayers = ids.length ? Math.max(...layer) + 1 : 0;
  const layers = Array.from({ length: nLayers }, () => []);
  const blockOf = new Map();
  for (const v of topo) {
    const g = group[v];
    const key = g ? `g:${g}` : `n:${v}`;
    if (blockOf.has(key)) { blockOf.get(key).vs.push(v); continue; }
    const b = { key, group: g, vs: [v], layer: layer[v], lane: laneIx[v] };
    blockOf.set(key, b);
    layers[layer[v]].push(b);
  }
  for (const b of blockOf.values()) b.vs.sort((x, y) => String(nodes[x].name ?? ids[x]).localeCompare(String(nodes[y].name ?? ids[y]), undefined, { numeric: true }));

  // 4. Barycenter sweeps over node ranks.
  const rank = new Float64Array(ids.length);
  const setRanks = (l) => { let r = 0; for (const b of layers[l]) for (const v of b.vs) rank[v] = r++; };
  for (let l = 0; l < nLayers; l++) { layers[l].sort((x, y) => x.lane - y.lane); setRanks(l); }
  const bary = (b, nbrs) => {
    let sum = 0, n = 0;
    for (const v of b.vs) for (const w of nbrs[v]) { sum += rank[w]; n++; }
    return n ? sum / n : null;
  };
  for (let it = 0; it < 6; it++) {
    const down = it % 2 === 0;
    const order = down ? [...Array(nLayers).keys()].slice(1) : [...Array(nLayers).keys()].reverse().slice(1);
    for (const l of order) {
      const nb = down ? inn : out;
      const keyed = layers[l].map((b, i) => ({ b, i, k: bary(b, nb) }));
      keyed.forEach((x) => { if (x.k === null) x.k = x.i; });
      keyed.sort((x, y) => x.b.lane - y.b.lane || x.k - y.k || x.i - y.i);
      layers[l] = keyed.map((x) => x.b);
      setRanks(l);
    }
  }

  // 5. Coordinates: per lane, each layer's blocks stacked and centred in the lane's height.
  const pos = new Map();
  const groups = [];
  const lanes = [];
  const boxed = laneKeys.some((k) => k !== null);
  const xOff = boxed ? LANE_PAD : 0;
  const colX = (l) => xOff + l * (NODE_W + GAP_X + 2 * GROUP_PAD);
  const width = Math.max(nLayers * (NODE_W + GAP_X + 2 * GROUP_PAD) - GAP_X, NODE_W) + 2 * xOff;
  let top = 0;
  laneKeys.forEach((key, li) => {
    const heights = layers.map((bs) => bs.filter((b) => b.lane === li).reduce((a, b) => a + blockHeight(b) + GAP_Y, -GAP_Y));
    const inner = Math.max(0, ...heights);
    const head = key === null ? 0 : LANE_HEAD;
    const pad = key === null ? 0 : LANE_PAD;
    layers.forEach((bs, l) => {
      let y = top + head + pad + (inner - heights[l]) / 2;
      const x = colX(l);
      for (const b of bs) {
        if (b.lane !== li) continue;
        const bh = blockHeight(b);
        if (b.group) {
          groups.push({ key: b.group.slice(b.group.indexOf('\u0000') + 1), x, y, w: NODE_W + 2 * GROUP_PAD, h: bh, members: b.vs.map((v) => ids[v]) });
          let yy = y + GROUP_HEAD + GROUP_PAD;
          for (const v of b.vs) {
            pos.set(ids[v], { x: x + GROUP_PAD, y: yy, w: NODE_W, h: NODE_H, layer: l });
            yy += NODE_H + GAP_Y / 2;
          }
        } else {
          pos.set(ids[b.vs[0]], { x: x + GROUP_PAD, y, w: NODE_W, h: NODE_H, layer: l });
        }
        y += bh + GAP_Y;
      }
    });
    const h = head + 2 * pad + inner;
    if (key !== null) {
      lanes.push({ key, x: 0, y: top, w: width, h, members: ids.filter((_, v) => laneIx[v] === li) });
    }
    top += h + (li < laneKeys.length - 1 ? LANE_GAP : 0);
  });
  return { pos, groups, lanes, width, height: Math.max(top, NODE_H) };
}

function blockHeight(b) {
  if (!b.group) return NODE_H;
  return GROUP_HEAD + 2 * GROUP_PAD + b.vs.length * NODE_H + (b.vs.length - 1) * (GAP_Y / 2);
}

/** An SVG path from the right side of `a` to the left side of `b`; backward edges loop below. */
export function edgePath(a, b) {
  const x1 = a.x + a.w, y1 = a.y + a.h / 2;
  const x2 = b.x, y2 = b.y + b.h / 2;
  if (x2 > x1 + 1) {
    const dx = (x2 - x1) / 2;
    return { d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`, mx: (x1 + x2) / 2, my: (y1 + y2) / 2 };
  }
  // Same column or backwards: leave right, loop under both, enter left.
  const low = Math.max(a.y + a.h, b.y + b.h) + 30;
  const d = `M${x1},${y1} C${x1 + 60},${y1} ${x1 + 60},${low} ${(x1 + x2) / 2},${low} S${x2 - 60},${y2} ${x2},${y2}`;
  return { d, mx: (x1 + x2) / 2, my: low };
}
