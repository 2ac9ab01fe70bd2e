// A small YAML reader and writer for the Config view's wizards: enough of YAML 1.2 for Istio
// objects as people write them (block and flow mappings and sequences, plain and quoted
// scalars, comments, literal and folded blocks). Anchors, tags and multi-line plain scalars are
// not read; the server validates whatever the wizard writes, so a misread shows as a finding.

export class YamlError extends Error {
  constructor(message, line) {
    super(line ? `line ${line}: ${message}` : message);
    this.line = line;
  }
}

/** Strips a comment (a `#` after a space or at the start, outside quotes) from one line. */
function stripComment(text) {
  let q = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (q) {
      if (c === '\\' && q === '"') i++;
      else if (c === q) q = '';
    } else if (c === '"' || c === "'") {
      if (i === 0 || /[\s[{,:-]/.test(text[i - 1])) q = c;
    } else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]))) {
      return text.slice(0, i).trimEnd();
    }
  }
  return text.trimEnd();
}

/** A plain or quoted scalar's value. */
export function scalar(raw) {
  const t = raw.trim();
  if (t.startsWith('"')) {
    if (!t.endsWith('"') || t.length < 2) throw new YamlError(`unterminated string ${t}`);
    return JSON.parse(t.replace(/\\([^"\\/bfnrtu])/g, '$1').replace(/\t/g, '\\t'));
  }
  if (t.startsWith("'")) {
    if (!t.endsWith("'") || t.length < 2) throw new YamlError(`unterminated string ${t}`);
    return t.slice(1, -1).replace(/''/g, "'");
  }
  if (t === '' || t === '~' || /^(null|Null|NULL)$/.test(t)) return null;
  if (/^(true|True|TRUE)$/.test(t)) return true;
  if (/^(false|False|FALSE)$/.test(t)) return false;
  if (/^[-+]?\d+$/.test(t)) return parseInt(t, 10);
  if (/^0x[0-9a-fA-F]+$/.test(t)) return parseInt(t, 16);
  if (/^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$/.test(t)) return parseFloat(t);
  return t;
}

/** Flow collections (`[a, {b: c}]`) from `s` at `pos`: returns [value, next position]. */
function flow(s, pos, line) {
  const ws = () => { while (pos < s.length && /\s/.test(s[pos])) pos++; };
  const token = (stops) => {
    ws();
    if (s[pos] === '"' || s[pos] === "'") {
      const q = s[pos];
      let j = pos + 1;
      for (; j < s.length; j++) {
        if (q === '"' && s[j] === '\\') { j++; continue; }
        if (s[j] === q) { if (q === "'" && s[j + 1] === "'") { j++; continue; } break; }
      }
      if (j >= s.length) throw new YamlError('unterminated string', line);
      const v = scalar(s.slice(pos, j + 1));
      pos = j + 1;
      return v;
    }
    if (s[pos] === '[' || s[pos] === '{') {
      const [v, p] = flow(s, pos, line);
      pos = p;
      return v;
    }
    let j = pos;
    while (j < s.length && !stops(j)) j++;
    const v = scalar(s.slice(pos, j));
    pos = j;
    return v;
  };
  const endOf = (close) => (j) => s[j] === ',' || s[j] === close;
  ws();
  if (s[pos] === '[') {
    pos++;
    const out = [];
    for (;;) {
      ws();
      if (s[pos] === ']') return [out, pos + 1];
      out.push(token(endOf(']')));
      ws();
      if (s[pos] === ',') { pos++; continue; }
      if (s[pos] === ']') return [out, pos + 1];
      throw new YamlError(`expected "," or "]" in ${s}`, line);
    }
  }
  if (s[pos] === '{') {
    pos++;
    const out = {};
    for (;;) {
      ws();
      if (s[pos] === '}') return [out, pos + 1];
      const key = token((j) => s[j] === ':' && (j + 1 >= s.length || /[\s,}\]]/.test(s[j + 1])) || s[j] === ',' || s[j] === '}');
      ws();
      let value = null;
      if (s[pos] === ':') { pos++; ws(); if (s[pos] !== ',' && s[pos] !== '}') value = token(endOf('}')); }
      out[String(key)] = value;
      ws();
      if (s[pos] === ',') { pos++; continue; }
      if (s[pos] === '}') return [out, pos + 1];
      throw new YamlError(`expected "," or "}" in ${s}`, line);
    }
  }
  throw new YamlError(`not a flow collection: ${s}`, line);
}

/** Where `key: value` splits: the first `:` outside quotes followed by a space or the end. */
function keySplit(text) {
  let q = '';
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (q) { if (c === '\\' && q === '"') i++; else if (c === q) q = ''; continue; }
    if ((c === '"' || c === "'") && i === 0) { q = c; continue; }
    if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') depth--;
    else if (c === ':' && depth === 0 && (i + 1 === text.length || text[i + 1] === ' ')) return i;
  }
  return -1;
}

/** A path into a value (keys and indices), as a string key. */
export const pathKey = (path) => JSON.stringify(path);

/**
 * Parses the first document of `text`. `flowPaths`, when given, receives the path of every
 * collection written in flow style (`[a]`, `{k: v}`), so an edit can be written back alike.
 */
export function parse(text, flowPaths = null) {
  const raw = String(text).replace(/\r\n?/g, '\n').split('\n');
  const lines = [];
  for (let n = 0; n < raw.length; n++) {
    const t = raw[n];
    if (/^(---|\.\.\.)(\s|$)/.test(t)) { if (lines.length) break; continue; }
    const body = stripComment(t);
    if (!body.trim()) { lines.push({ n: n + 1, indent: -1, text: '', raw: t }); continue; }
    if (/^\s*\t/.test(t)) throw new YamlError('a tab in the indentation', n + 1);
    const indent = body.length - body.trimStart().length;
    lines.push({ n: n + 1, indent, text: body.trim(), raw: t });
  }
  let i = 0;
  const skip = () => { while (i < lines.length && lines[i].indent < 0) i++; };

  function value(rest, ind, lineNo, path) {
    if (rest === '') {
      skip();
      if (i < lines.length && (lines[i].indent > ind || (lines[i].indent === ind && /^-(\s|$)/.test(lines[i].text)))) {
        return block(lines[i].indent, path);
      }
      return null;
    }
    if (/^[|>][-+]?\d*$/.test(rest)) return blockScalar(rest, ind);
    if (rest[0] === '[' || rest[0] === '{') {
      let s = rest;
      // A flow collection may continue on the next lines.
      for (;;) {
        try {
          const [v, p] = flow(s, 0, lineNo);
          if (s.slice(p).trim()) throw new YamlError(`unexpected text after ${s.slice(0, p)}`, lineNo);
          if (flowPaths) flowPaths.add(pathKey(path));
          return v;
        } catch (e) {
          if (i >= lines.length || !/unterminated|expected/.test(e.message)) throw e;
          if (lines[i].indent >= 0) s += ` ${lines[i].text}`;
          i++;
        }
      }
    }
    if (/^[&*!]/.test(rest)) throw new YamlError(`anchors, aliases and tags are not supported: ${rest}`, lineNo);
    return scalar(rest);
  }

  function blockScalar(head, ind) {
    const out = [];
    let base = -1;
    while (i < lines.length) {
      const l = lines[i];
      const ownIndent = l.raw.length - l.raw.trimStart().length;
      if (l.raw.trim() && ownIndent <= ind) break;
      if (l.raw.trim() && base < 0) base = ownIndent;
      out.push(l.raw.trim() ? l.raw.slice(base) : '');
      i++;
    }
    while (out.length && out[out.length - 1] === '') out.pop();
    const body = head[0] === '|' ? out.join('\n') : out.join(' ').replace(/ {2,}/g, ' ');
    return head.includes('-') ? body : `${body}\n`;
  }

  function block(ind, path) {
    skip();
    if (i >= lines.length) return null;
    if (/^-(\s|$)/.test(lines[i].text)) return seq(ind, path);
    return map(ind, path);
  }

  function seq(ind, path) {
    const out = [];
    for (;;) {
      skip();
      if (i >= lines.length) return out;
      const l = lines[i];
      if (l.indent < ind) return out;
      if (l.indent > ind) throw new YamlError('bad indentation in a sequence', l.n);
      if (!/^-(\s|$)/.test(l.text)) return out;
      const rest = l.text.slice(1).trimStart();
      if (!rest) { i++; out.push(value('', ind, l.n, [...path, out.length])); continue; }
      const off = l.text.length - rest.length;
      if (/^-(\s|$)/.test(rest) || (keySplit(rest) > 0 && rest[0] !== '[' && rest[0] !== '{')) {
        // "- key: v" opens a mapping (or "- - x" a sequence) indented at the text's column.
        lines[i] = { ...l, indent: l.indent + off, text: rest };
        out.push(block(l.indent + off, [...path, out.length]));
      } else {
        i++;
        out.push(value(rest, ind, l.n, [...path, out.length]));
      }
    }
  }

  function map(ind, path) {
    const out = {};
    for (;;) {
      skip();
      if (i >= lines.length) return out;
      const l = lines[i];
      if (l.indent < ind) return out;
      if (l.indent > ind) throw new YamlError('bad indentation in a mapping', l.n);
      if (/^-(\s|$)/.test(l.text)) return out;
      const at = keySplit(l.text);
      if (at < 0) throw new YamlError(`expected "key: value", found ${l.text}`, l.n);
      const key = String(scalar(l.text.slice(0, at)));
      i++;
      out[key] = value(l.text.slice(at + 1).trim(), ind, l.n, [...path, key]);
    }
  }

  skip();
  if (i >= lines.length) return null;
  const first = lines[i];
  if (first.indent === 0 && keySplit(first.text) < 0 && !/^-(\s|$)/.test(first.text)) {
    return value(first.text, -1, first.n, []);
  }
  const v = block(first.indent, []);
  skip();
  if (i < lines.length) throw new YamlError(`unexpected text: ${lines[i].text}`, lines[i].n);
  return v;
}

const PLAIN_UNSAFE = /^$|^[\s\-?:,[\]{}#&*!|>'"%@`]|\s$|: |:$| #|\n|\t/;

/** A scalar as YAML; `inFlow`: inside `[…]` or `{…}`, where a comma or bracket ends it. */
function emitScalar(v, inFlow = false) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean' || typeof v === 'number') return String(v);
  const s = String(v);
  if (PLAIN_UNSAFE.test(s) || typeof scalar(s) !== 'string' || (inFlow && /[,[\]{}]/.test(s))) return JSON.stringify(s);
  return s;
}

const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isEmpty = (v) => (Array.isArray(v) ? !v.length : isMap(v) ? !Object.keys(v).length : true);

/**
 * Emits `v` (at `path`) at indentation `ind`. style: {paths: the paths written in flow style
 * in the original (kept so), flow: the widest new collection written inline (0: never), seq:
 * how far a sequence's "- " is indented under its key}. A new sequence of mappings stays in
 * block style; its items follow their first sibling's style.
 */
function emitInto(out, v, ind, style, path) {
  const pad = ' '.repeat(ind);
  const flowOk = (x, p) => {
    if (isEmpty(x)) return true;
    const key = pathKey(p);
    if (style.known.has(key)) return style.paths.has(key);
    const last = p[p.length - 1];
    if (typeof last === 'number' && last > 0) {
      const first = pathKey([...p.slice(0, -1), 0]);
      if (style.known.has(first)) return style.paths.has(first) && inline(x).length <= 2 * style.flow;
    }
    if (Array.isArray(x) && x.some((y) => y !== null && typeof y === 'object')) return false;
    return style.flow > 0 && inline(x).length <= style.flow;
  };
  if (Array.isArray(v)) {
    v.forEach((item, n) => {
      const p = [...path, n];
      if (isEmpty(item) || flowOk(item, p)) {
        out.push(`${pad}- ${inline(item)}`);
      } else if (isMap(item)) {
        const sub = [];
        emitInto(sub, item, ind + 2, style, p);
        sub[0] = `${pad}- ${sub[0].slice(ind + 2)}`;
        out.push(...sub);
      } else {
        out.push(`${pad}-`);
        emitInto(out, item, ind + 2, style, p);
      }
    });
    return;
  }
  for (const [k, x] of Object.entries(v)) {
    if (x === undefined) continue;
    const key = emitScalar(k);
    const p = [...path, k];
    if (isEmpty(x) || flowOk(x, p)) {
      out.push(`${pad}${key}: ${inline(x)}`);
    } else {
      out.push(`${pad}${key}:`);
      emitInto(out, x, Array.isArray(x) ? ind + style.seq : ind + 2, style, p);
    }
  }
}

function inline(v) {
  if (Array.isArray(v)) return v.length ? `[${v.map(inline).join(', ')}]` : '[]';
  if (isMap(v)) return `{${Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => `${emitScalar(k, true)}: ${inline(x)}`).join(', ')}}`;
  return emitScalar(v, true);
}

/** Every collection's path in `v`, for telling which paths the original had. */
function collectionPaths(v, path = [], out = new Set()) {
  if (v === null || typeof v !== 'object') return out;
  out.add(pathKey(path));
  if (Array.isArray(v)) v.forEach((x, n) => collectionPaths(x, [...path, n], out));
  else for (const [k, x] of Object.entries(v)) collectionPaths(x, [...path, k], out);
  return out;
}

/**
 * The style of `text` (an object's YAML as written), so that an edit keeps it and its diff
 * shows only what changed: which collections are in flow style, whether new short ones
 * should be (when it has any), and its sequence indentation.
 */
export function styleOf(text) {
  const t = String(text || '');
  const paths = new Set();
  let known = new Set();
  try {
    known = collectionPaths(parse(t, paths));
  } catch { /* unreadable: block style for all */ }
  const flow = paths.size ? 72 : 0;
  const m = /^( *)[^\s#-][^\n]*:\s*\n( *)- /m.exec(t);
  const seq = m && m[2].length > m[1].length ? m[2].length - m[1].length : 0;
  return { flow, seq, paths, known };
}

/** YAML of `v` in `style` (default: block style), ending with a newline. */
export function stringify(v, style = {}) {
  if (!isMap(v) && !Array.isArray(v)) return `${emitScalar(v)}\n`;
  const out = [];
  emitInto(out, v, 0, { flow: 0, seq: 0, paths: new Set(), known: new Set(), ...style }, []);
  return `${out.join('\n')}\n`;
}
