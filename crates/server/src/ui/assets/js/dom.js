// Tiny DOM helpers: element construction without a framework.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' && !(el instanceof SVGElement)) el.value = v;
    else if (k in el && !(el instanceof SVGElement) && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** h('div', {class: 'x'}, 'text', child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** A status line: kind is 'info', 'warn', 'error' or 'loading'. */
export function message(kind, text) {
  const glyph = { info: 'ℹ', warn: '⚠', error: '✕', loading: '…' }[kind] || '';
  return h('p', { class: `msg msg-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', { 'aria-hidden': 'true', class: 'msg-glyph' }, glyph), ' ', text);
}

/**
 * A sortable table. columns: [{key, label, num, fmt(value,row), render(row) -> node, title}].
 * Sorting is by the column's raw value; the header carries aria-sort.
 */
export function sortableTable(columns, rows, { sortKey, desc = true, caption, rowAttrs, empty = 'No rows.' } = {}) {
  let key = sortKey ?? columns[0].key;
  let descending = desc;
  const table = h('table', { class: 'data' });
  if (caption) table.append(h('caption', {}, caption));
  const thead = h('thead');
  const tbody = h('tbody');
  table.append(thead, tbody);
  const val = (r, c) => (c.value ? c.value(r) : r[c.key]);
  function draw() {
    clear(thead);
    thead.append(h('tr', {}, columns.map((c) => {
      const sorted = c.key === key;
      return h('th', {
        scope: 'col', class: c.num ? 'num' : '',
        'aria-sort': sorted ? (descending ? 'descending' : 'ascending') : 'none',
      }, h('button', {
        type: 'button', class: 'sort', title: `Sort by ${c.label}`,
        onclick: () => {
          if (key === c.key) descending = !descending;
          else { key = c.key; descending = !!c.num; }
          draw();
        },
      }, c.label, h('span', { class: 'sort-ind', 'aria-hidden': 'true' }, sorted ? (descending ? ' ▼' : ' ▲') : '')));
    })));
    const col = columns.find((c) => c.key === key) || columns[0];
    const sorted = [...rows].sort((a, b) => {
      const x = val(a, col), y = val(b, col);
      const r = typeof x === 'number' && typeof y === 'number' ? x - y : String(x ?? '').localeCompare(String(y ?? ''), undefined, { numeric: true });
      return descending ? -r : r;
    });
    clear(tbody);
    if (!sorted.length) {
      tbody.append(h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty)));
    }
    for (const r of sorted) {
      tbody.append(h('tr', rowAttrs ? rowAttrs(r) : {}, columns.map((c) => h('td', { class: c.num ? 'num' : '' },
        c.render ? c.render(r) : c.fmt ? c.fmt(val(r, c), r) : String(val(r, c) ?? '')))));
    }
  }
  draw();
  return table;
}
