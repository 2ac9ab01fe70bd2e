// Config: the mesh directory's Istio objects with their YAML and the wizards that change them
// (config-objects.js), then the validation findings, grouped by object, with severity, file
// and line, from `GET /api/v1/validations` (the same report as `meshlens validate --format json`).

import { h, clear, message } from '../dom.js';
import * as url from '../state/url.js';
import * as api from '../api.js';
import { filterNote } from '../clusters.js';
import { renderObjects } from './config-objects.js';

export const title = 'Config';

const SEV = {
  error: { glyph: '✕', rank: 0, label: 'Error' },
  warning: { glyph: '!', rank: 1, label: 'Warning' },
  info: { glyph: 'i', rank: 2, label: 'Info' },
};

/** The report, whichever envelope it came in. */
export function reportOf(body) {
  const r = body && body.status === 'success' && body.data ? body.data : body;
  if (Array.isArray(r)) return { findings: r };
  return r || { findings: [] };
}

const sevOf = (f) => (SEV[String(f.severity).toLowerCase()] ? String(f.severity).toLowerCase() : 'info');
const objOf = (f) => f.object || { kind: f.kind || '', namespace: f.namespace || '', name: f.name || '' };

/** Findings about the config of any of `names` (an object named like the app, or a prefix of it). */
export function findingsFor(body, names) {
  const want = names.filter(Boolean).map((n) => n.toLowerCase());
  return (reportOf(body).findings || []).filter((f) => {
    const n = String(objOf(f).name || '').toLowerCase();
    return n && want.some((w) => w === n || (w.startsWith(n) && /^[-\d]/.test(w.slice(n.length))));
  });
}

export function sevBadge(f) {
  const k = sevOf(f);
  return h('span', { class: `sev sev-${k}` }, h('span', { 'aria-hidden': 'true', class: 'sev-glyph' }, SEV[k].glyph), ` ${SEV[k].label}`);
}

function location(f) {
  if (!f.file) return '';
  return `${f.file}${f.line ? `:${f.line}` : ''}`;
}

/** A flat list of findings (for the side panel). */
export function findingList(list) {
  return h('ul', { class: 'findings' }, list.map((f) => {
    const o = objOf(f);
    return h('li', {}, sevBadge(f), ' ', h('code', {}, f.code || ''), ' ', `${o.kind} ${o.namespace}/${o.name}: `, f.message,
      h('div', { class: 'muted small' }, [f.path, location(f)].filter(Boolean).join(' · ')));
  }));
}

export async function render(root, { params, shared }) {
  const q = params.get('q') || '';
  const sev = params.get('sev') || '';
  const filter = h('input', {
    type: 'search', id: 'config-filter', value: q, placeholder: 'object, code, file or text',
    onchange: (e) => url.update({ q: e.target.value }, { replace: true }),
  });
  root.append(h('h1', {}, 'Config'),
    filterNote(shared.cluster, 'does not apply here: the Istio config is validated as one mesh.'),
    h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); url.update({ q: filter.value }, { replace: true }); } },
      h('label', { for: 'config-filter' }, 'Filter '), filter,
      h('label', {}, 'Severity ', h('select', { onchange: (e) => url.update({ sev: e.target.value }, { replace: true }) },
        [['', 'all'], ['error', 'errors'], ['warning', 'warnings and worse'], ['info', 'everything']].map(([v, l]) => h('option', { value: v, selected: v === sev }, l))))));
  const objects = h('section', { class: 'mesh-objects-box' });
  const body = h('div', {}, message('loading', 'Loading validations…'));
  root.append(objects, h('h2', {}, 'Validation findings'), body);
  const objectsDone = renderObjects(objects, { params, shared });
  let report;
  try {
    report = reportOf(await api.validations());
  } catch (e) {
    clear(body).append(message(e.missing ? 'warn' : 'error', e.missing
      ? 'This server does not serve /api/v1/validations, so there are no config findings to show. Run `meshlens validate FILES` to check Istio YAML from the command line.'
      : `Validations could not be loaded: ${e.message}`));
    await objectsDone;
    return;
  }
  const all = report.findings || [];
  const needle = q.toLowerCase();
  const maxRank = sev ? SEV[sev]?.rank ?? 2 : 2;
  const list = all.filter((f) => {
    const o = objOf(f);
    if (shared.ns && o.namespace && o.namespace !== shared.ns) return false;
    if (SEV[sevOf(f)].rank > maxRank) return false;
    if (!needle) return true;
    return [o.kind, o.namespace, o.name, f.code, f.file, f.message, f.path].some((x) => String(x || '').toLowerCase().includes(needle));
  });
  clear(body);
  const counts = { error: 0, warning: 0, info: 0 };
  for (const f of all) counts[sevOf(f)]++;
  body.append(h('p', { class: 'summary' },
    `${report.files ?? '?'} files, ${report.objects ?? '?'} objects checked: `,
    Object.entries(counts).map(([k, n]) => h('span', { class: `sev sev-${k}` }, h('span', { 'aria-hidden': 'true', class: 'sev-glyph' }, SEV[k].glyph), ` ${n} ${SEV[k].label.toLowerCase()}${n === 1 ? '' : 's'} `))));
  if (!all.length) body.append(message('info', 'No findings: the config passes every check.'));
  else if (!list.length) body.append(message('info', 'No findings match the filter.'));
  const groups = new Map();
  for (const f of list) {
    const o = objOf(f);
    const key = o.kind ? `${o.kind} ${o.namespace}/${o.name}` : `(file) ${f.file || ''}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(f);
  }
  const sorted = [...groups.entries()].sort((a, b) => Math.min(...a[1].map((f) => SEV[sevOf(f)].rank)) - Math.min(...b[1].map((f) => SEV[sevOf(f)].rank)) || a[0].localeCompare(b[0]));
  for (const [key, fs] of sorted) {
    fs.sort((a, b) => SEV[sevOf(a)].rank - SEV[sevOf(b)].rank || (a.line || 0) - (b.line || 0));
    body.append(h('section', { class: 'finding-group' },
      h('h2', {}, key, h('span', { class: 'muted small' }, `  ${fs.length} finding${fs.length === 1 ? '' : 's'}`)),
      h('table', { class: 'data' },
        h('thead', {}, h('tr', {}, ['Severity', 'Code', 'Message', 'Path', 'File:line'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, fs.map((f) => h('tr', {},
          h('td', {}, sevBadge(f)), h('td', {}, h('code', {}, f.code || '')), h('td', {}, f.message || ''),
          h('td', {}, h('code', {}, f.path || '')), h('td', {}, h('code', {}, location(f)))))))));
  }
  const na = report.not_applicable || report.notApplicable || [];
  if (na.length) {
    body.append(h('details', {}, h('summary', {}, `${na.length} checks not applicable`),
      h('ul', {}, na.map((n) => h('li', {}, h('code', {}, n.code), ` ${n.reason}`)))));
  }
  await objectsDone;
}
