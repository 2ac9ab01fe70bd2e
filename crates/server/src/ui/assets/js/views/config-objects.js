// The Config view's objects: every Istio object of the mesh directory (`/api/v1/mesh/objects`)
// with its validation status; a selected object shows its YAML and the wizards for its kind.
// A wizard writes Istio YAML here, the server validates it and diffs it against the file
// (`/api/v1/mesh/preview`), and Apply (only when the server runs with --mesh-write) writes
// it (`/api/v1/mesh/apply`) and records a config event that can be undone.

import { h, clear, message } from '../dom.js';
import * as url from '../state/url.js';
import * as api from '../api.js';
import { stringify, styleOf } from '../yaml.js';
import * as wz from '../wizards.js';

const STATUS = { valid: ['✓', 'healthy', 'valid'], warning: ['!', 'degraded', 'warning'], error: ['✕', 'failure', 'error'] };

export const objKey = (o) => `${o.kind}/${o.namespace || ''}/${o.name}`;

function statusBadge(v) {
  const [glyph, cls, word] = STATUS[v] || ['–', 'na', v || 'unknown'];
  return h('span', { class: `health health-${cls} obj-status`, dataset: { status: v || '' } }, h('span', { class: 'health-glyph', 'aria-hidden': 'true' }, glyph), ` ${word}`);
}

function findingItems(list) {
  if (!list?.length) return null;
  return h('ul', { class: 'findings' }, list.map((f) => h('li', {},
    h('span', { class: `sev sev-${String(f.severity).toLowerCase()}` }, String(f.severity || '')), ' ',
    h('code', {}, f.code || ''), ' ', f.message || '', f.path ? h('span', { class: 'muted small' }, ` · ${f.path}`) : null)));
}

/** A unified diff with its added and removed lines marked (a sign as well as a colour). */
export function diffBlock(diff) {
  if (!diff) return h('p', { class: 'muted' }, 'No change: the file already says this.');
  return h('pre', { class: 'diff' }, String(diff).split('\n').map((l) => h('span', {
    class: l.startsWith('+++') || l.startsWith('---') ? 'd-file' : l.startsWith('+') ? 'd-add' : l.startsWith('-') ? 'd-del' : l.startsWith('@@') ? 'd-hunk' : '',
  }, `${l}\n`)));
}

export async function renderObjects(box, { params, shared }) {
  box.append(h('h2', {}, 'Istio objects'));
  const body = h('div', {}, message('loading', 'Loading the mesh objects…'));
  box.append(body);
  let data;
  try {
    data = await api.meshObjects({ fresh: true });
  } catch (e) {
    clear(body).append(e.missing
      ? message('info', 'This server does not list the mesh objects (/api/v1/mesh/objects is not available).')
      : message('error', `The mesh objects could not be loaded: ${e.message}`));
    return;
  }
  clear(body);
  body.append(h('p', { class: `write-mode ${data.writable ? 'writable' : 'read-only'}` }, data.writable
    ? [h('b', {}, 'Writable: '), `Apply writes to ${(data.dirs || [])[0] || 'the mesh directory'} (the server runs with --mesh-write); every change is an event you can undo.`]
    : [h('b', {}, 'Read-only: '), 'wizards preview and validate; start the server with --mesh-write to apply.']));
  if (data.errors?.length) body.append(message('warn', `Some mesh files could not be read: ${data.errors.join('; ')}`));
  const needle = (params.get('q') || '').toLowerCase();
  const all = data.objects || [];
  const list = all.filter((o) => (!shared.ns || !o.namespace || o.namespace === shared.ns)
    && (!needle || [o.kind, o.namespace, o.name, o.file].some((x) => String(x || '').toLowerCase().includes(needle))));
  const sel = params.get('obj') || '';
  body.append(h('table', { class: 'data mesh-objects' },
    h('caption', {}, `${list.length} of ${all.length} objects`),
    h('thead', {}, h('tr', {}, ['Kind', 'Namespace', 'Name', 'File', 'Validation'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, list.length ? list.map((o) => h('tr', { class: `obj-row${objKey(o) === sel ? ' selected' : ''}`, dataset: { key: objKey(o), kind: o.kind, name: o.name } },
      h('td', {}, o.kind), h('td', {}, o.namespace || ''),
      h('td', {}, h('a', { href: url.href('config', { ...Object.fromEntries(url.current().params), obj: objKey(o), wiz: '' }), class: 'obj-link' }, o.name)),
      h('td', {}, h('code', {}, `${o.file || ''}${o.line ? `:${o.line}` : ''}`)),
      h('td', {}, statusBadge(o.validation))))
      : h('tr', {}, h('td', { colspan: 5, class: 'empty' }, all.length ? 'No object matches the filter.' : 'The mesh directory holds no Istio object.')))));
  const obj = all.find((o) => objKey(o) === sel);
  if (sel && !obj) body.append(message('warn', `No object ${sel} in the mesh directory.`));
  if (obj) body.append(objectDetail(obj, all, data.writable, params.get('wiz') || ''));
}

function objectDetail(obj, all, writable, wiz) {
  const wizards = wz.wizardsFor(obj.kind);
  const box = h('section', { class: 'obj-detail', 'aria-label': `${obj.kind} ${obj.name}` },
    h('h3', {}, `${obj.kind} ${obj.namespace ? `${obj.namespace}/` : ''}${obj.name}`, ' ', statusBadge(obj.validation)),
    findingItems(obj.findings),
    h('details', { class: 'obj-yaml', open: !wiz }, h('summary', {}, `YAML (${obj.file}${obj.line ? `:${obj.line}` : ''})`), h('pre', { class: 'yaml' }, obj.yaml || '')),
    wizards.length ? h('nav', { class: 'wizard-tabs', 'aria-label': 'Wizards' }, 'Change it: ',
      wizards.map(([id, label]) => h('a', { href: url.href('config', { ...Object.fromEntries(url.current().params), wiz: id }), class: `wiz-link${id === wiz ? ' active' : ''}`, id: `wiz-${id}`, 'aria-current': id === wiz ? 'true' : null }, label)))
      : h('p', { class: 'muted' }, `No wizard for a ${obj.kind}.`));
  if (wiz && wizards.some(([id]) => id === wiz)) {
    let value;
    try {
      value = wz.valueOf(obj);
    } catch (e) {
      box.append(message('warn', `The wizard cannot read this object's YAML: ${e.message}`));
      return box;
    }
    const others = all.filter((o) => o !== obj).map((o) => { try { return wz.valueOf(o); } catch { return null; } }).filter(Boolean);
    box.append(wizard(wiz, value, others, writable, styleOf(obj.yaml)));
  }
  return box;
}

const num = (name, label, value, attrs = {}) => h('label', {}, label, h('input', { name, value: value ?? '', inputmode: 'numeric', size: 6, ...attrs }));
const text = (name, label, value, attrs = {}) => h('label', {}, label, h('input', { name, value: value ?? '', size: 8, ...attrs }));

function routeSelect(value, index, onchange) {
  return h('label', {}, 'HTTP route', h('select', { name: 'route', onchange },
    wz.routesOf(value).map((r) => h('option', { value: r.index, selected: r.index === index }, r.label))));
}

/** The form fields of one wizard for `value` and route `index`; `gen(form)` builds the object. */
function fields(kind, value, others, index, redraw) {
  const r = value?.spec?.http?.[index] || {};
  if (kind === 'shift') {
    const { host, weights } = wz.shiftOptions(value, index, others);
    return {
      nodes: [routeSelect(value, index, redraw), h('span', { class: 'muted small' }, `to ${host}: `),
        Object.entries(weights).map(([s, w]) => num(`w-${s}`, `Weight of ${s}`, w, { dataset: { subset: s }, class: 'weight' }))],
      gen: (f) => wz.trafficShift(value, index, host, Object.fromEntries([...f.querySelectorAll('input.weight')].map((i) => [i.dataset.subset, i.value.trim()]))),
    };
  }
  if (kind === 'fault') {
    return {
      nodes: [routeSelect(value, index, redraw),
        num('abortPct', 'Abort %', r.fault?.abort?.percentage?.value ?? 0), num('abortStatus', 'with status', r.fault?.abort?.httpStatus ?? 503),
        num('delayPct', 'Delay %', r.fault?.delay?.percentage?.value ?? 0), text('delay', 'by', r.fault?.delay?.fixedDelay ?? '2s')],
      gen: (f) => wz.faultInjection(value, index, Object.fromEntries(new FormData(f))),
    };
  }
  if (kind === 'timeouts') {
    return {
      nodes: [routeSelect(value, index, redraw), text('timeout', 'Timeout', r.timeout ?? ''),
        num('attempts', 'Retry attempts', r.retries?.attempts ?? ''), text('perTryTimeout', 'Per try', r.retries?.perTryTimeout ?? ''),
        text('retryOn', 'Retry on', r.retries?.retryOn ?? '5xx,connect-failure,reset', { size: 22 })],
      gen: (f) => wz.timeoutsRetries(value, index, Object.fromEntries(new FormData(f))),
    };
  }
  const b = wz.breakerValues(value);
  return {
    nodes: [h('fieldset', {}, h('legend', {}, 'Connection pool'),
      num('maxConnections', 'Max connections', b.maxConnections), num('maxPending', 'Max pending requests', b.maxPending),
      num('maxRequestsPerConnection', 'Max requests per connection', b.maxRequestsPerConnection)),
    h('fieldset', {}, h('legend', {}, 'Outlier detection'),
      num('consecutive5xxErrors', 'Consecutive 5xx', b.consecutive5xxErrors), text('interval', 'Interval', b.interval),
      text('baseEjectionTime', 'Base ejection', b.baseEjectionTime), num('maxEjectionPercent', 'Max ejection %', b.maxEjectionPercent))],
    gen: (f) => wz.circuitBreaking(value, Object.fromEntries(new FormData(f))),
  };
}

function wizard(kind, value, others, writable, style) {
  const box = h('section', { class: 'wizard', id: 'wizard', dataset: { wizard: kind } });
  let index = wz.defaultRoute(value);
  const yamlBox = h('textarea', { id: 'wiz-yaml', rows: 14, spellcheck: false, 'aria-label': 'The YAML to apply' });
  const result = h('div', { class: 'wiz-result', 'aria-live': 'polite' });
  let previewed = null; // the YAML the last valid preview was for
  const applyBtn = h('button', { type: 'button', id: 'wiz-apply', class: 'primary', disabled: true,
    title: writable ? 'Write it to the mesh directory' : 'The server is read-only: start it with --mesh-write' }, 'Apply');
  const syncApply = () => { applyBtn.disabled = !(writable && previewed !== null && previewed === yamlBox.value); };
  yamlBox.addEventListener('input', syncApply);
  const form = h('form', { class: 'search wiz-form' });
  const draw = () => {
    const f = fields(kind, value, others, index, (e) => { index = Number(e.target.value); draw(); });
    clear(form).append(...f.nodes.flat(), h('button', { type: 'submit', id: 'wiz-preview' }, 'Preview'));
    form.onsubmit = async (e) => {
      e.preventDefault();
      previewed = null;
      syncApply();
      let next;
      try {
        next = f.gen(form);
      } catch (err) {
        clear(result).append(message('warn', err.message));
        return;
      }
      yamlBox.value = stringify(next, style);
      await preview();
    };
  };
  const preview = async () => {
    previewed = null;
    syncApply();
    clear(result).append(message('loading', 'Validating…'));
    const yaml = yamlBox.value;
    try {
      const p = await api.meshPreview({ yaml });
      clear(result).append(...[
        h('p', { class: 'preview-verdict' }, p.valid ? h('span', { class: 'health health-healthy' }, '✓ valid') : h('span', { class: 'health health-failure' }, '✕ would add errors'),
          ` · ${p.file || ''}`),
        findingItems([...(p.addedErrors || []), ...(p.addedWarnings || [])]),
        diffBlock(p.diff)].filter(Boolean));
      if (p.valid) previewed = yaml;
      if (!writable) result.append(h('p', { class: 'muted' }, 'Read-only server: this change can be copied, not applied.'));
    } catch (e) {
      clear(result).append(e.missing ? message('info', 'Previews are not available on this server (/api/v1/mesh/preview).')
        : message('warn', `The server refused the YAML: ${e.reason || e.message}`));
    }
    syncApply();
  };
  applyBtn.onclick = async () => {
    applyBtn.disabled = true;
    const yaml = yamlBox.value;
    try {
      const r = await api.meshApply({ yaml });
      previewed = null;
      const undo = h('button', { type: 'button', id: 'wiz-undo', onclick: async () => {
        undo.disabled = true;
        try {
          await api.undo(r.id);
          note.append(h('span', { class: 'undo-result ok', role: 'status' }, ' Undone.'));
        } catch (e) {
          note.append(h('span', { class: 'undo-result bad', role: 'status' }, ` Not undone: ${e.reason || e.message}`));
        }
      } }, 'Undo');
      const note = h('p', { class: 'applied', dataset: { change: r.id || '' } }, h('b', {}, '✓ Applied'),
        ` as change ${r.id}${r.event?.id !== undefined ? `, event #${r.event.id}` : ''}. `,
        h('a', { href: url.href('events', { kind: 'config' }) }, 'See it in Events'), ' ', undo);
      result.prepend(note);
    } catch (e) {
      result.prepend(e.status === 403 ? message('warn', 'The server is read-only: start it with --mesh-write to apply.')
        : e.status === 422 ? message('warn', `Not applied, the YAML is invalid: ${e.reason || e.message}`)
          : message('warn', `Not applied: ${e.reason || e.message}`));
    }
    syncApply();
  };
  draw();
  box.append(h('h4', {}, wz.wizardsFor(value.kind).find(([id]) => id === kind)?.[1] || kind), form,
    h('label', { for: 'wiz-yaml', class: 'muted small' }, 'YAML (generated; edit it and Validate again if you like)'), yamlBox,
    h('div', { class: 'toolbar' }, h('button', { type: 'button', id: 'wiz-validate', onclick: preview }, 'Validate'), applyBtn), result);
  return box;
}
