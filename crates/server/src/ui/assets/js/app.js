// The shell: navigation, the shared time range, cluster/namespace filter and tenant (kept in
// the URL), and hash routing to one module per view.

import { h, clear, message } from './dom.js';
import * as url from './state/url.js';
import * as tenants from './state/tenant.js';
import * as api from './api.js';
import { clusterOptions } from './clusters.js';
import * as overview from './views/overview.js';
import * as topology from './views/topology.js';
import * as traces from './views/traces.js';
import * as metrics from './views/metrics.js';
import * as stats from './views/stats.js';
import * as alerts from './views/alerts.js';
import * as config from './views/config.js';
import * as events from './views/events.js';
import * as verify from './views/verify.js';

const VIEWS = { overview, topology, traces, metrics, stats, alerts, config, events, verify };
const main = document.getElementById('view');
const nav = document.getElementById('nav');
const controls = document.getElementById('controls');

let prev = null; // {view, params}
let timer = null;
let generation = 0;

function drawNav(view) {
  clear(nav).append(h('ul', {}, Object.entries(VIEWS).map(([name, mod]) => h('li', {},
    h('a', { href: url.href(name), 'aria-current': name === view ? 'page' : null, id: `nav-${name}` }, mod.title)))));
}

async function options(labels) {
  const all = await Promise.all(labels.map((l) => api.labelValues(l).catch(() => [])));
  return [...new Set(all.flat())].filter((v) => v && v !== 'unknown').sort();
}

/** The tenant field: free text with the recently used ids as suggestions; empty sends no header. */
function tenantField(current) {
  const input = h('input', {
    id: 'f-tenant', type: 'text', list: 'tenant-ids', value: current, size: 12, placeholder: 'none',
    autocomplete: 'off', spellcheck: false, title: `Sent as ${api.TENANT_HEADER} on every request; a|b reads across tenants`,
    onchange: (e) => {
      const v = e.target.value.trim();
      const problem = api.tenantProblem(v);
      e.target.setCustomValidity(problem);
      if (problem) { e.target.reportValidity(); return; }
      e.target.removeAttribute('aria-invalid');
      tenants.remember(v);
      url.update({ tenant: v });
    },
  });
  return h('label', { for: 'f-tenant', class: 'tenant' }, 'Tenant ', input,
    h('datalist', { id: 'tenant-ids' }, tenants.recent().map((t) => h('option', { value: t }))));
}

// A 401 about the org id: point at the field that fixes it.
window.addEventListener('meshlens:tenant-needed', () => {
  const input = document.getElementById('f-tenant');
  if (input) input.setAttribute('aria-invalid', 'true');
});

/**
 * The URL names the tenant; without one, the last tenant chosen (localStorage) applies, so a
 * bookmark or a typed address keeps it. A tenant in the URL becomes the one remembered.
 */
function resolveTenant() {
  const { view, params } = url.current();
  if (params.has('tenant')) {
    const t = (params.get('tenant') || '').trim();
    if (!api.tenantProblem(t)) tenants.remember(t);
    return;
  }
  const saved = tenants.saved();
  if (!saved || api.tenantProblem(saved)) return;
  params.set('tenant', saved);
  history.replaceState(null, '', `#/${view}?${params}`);
}

function drawControls(sh) {
  const select = (id, label, values, current, key, allLabel) => h('label', { for: id }, label, ' ',
    h('select', { id, onchange: (e) => url.update({ [key]: e.target.value }) },
      allLabel !== undefined ? h('option', { value: '' }, allLabel) : null,
      [...new Set([...values, current].filter(Boolean))].map((v) => h('option', { value: v, selected: v === current }, v))));
  const cluster = select('f-cluster', 'Cluster', [], sh.cluster, 'cluster', 'all');
  const ns = select('f-ns', 'Namespace', [], sh.ns, 'ns', 'all');
  clear(controls).append(
    select('f-range', 'Last', url.RANGES, sh.range, 'range'),
    cluster, ns, tenantField(sh.tenant),
    h('label', { for: 'f-refresh' }, 'Refresh ', h('select', { id: 'f-refresh', onchange: (e) => url.update({ refresh: e.target.value }, { replace: true }) },
      [['', 'off'], ['15s', '15s'], ['30s', '30s'], ['1m', '1m']].map(([v, l]) => h('option', { value: v, selected: v === sh.refresh }, l)))),
    h('button', { type: 'button', id: 'reload', title: 'Reload the view', onclick: () => route(true) }, '↻ Reload'));
  cluster.classList.toggle('filter-on', !!sh.cluster);
  cluster.title = sh.cluster ? `Every view shows cluster ${sh.cluster} only` : 'Show one cluster in every view';
  clusterOptions().then((vs) => {
    const s1 = cluster.querySelector('select');
    for (const v of vs) if (v !== sh.cluster) s1.append(h('option', { value: v }, v));
  });
  options(['destination_workload_namespace', 'source_workload_namespace', 'destination_service_namespace']).then((vs) => {
    const s1 = ns.querySelector('select');
    for (const v of vs) if (v !== sh.ns) s1.append(h('option', { value: v }, v));
  });
}

async function route(force = false) {
  resolveTenant();
  const { view: name, params } = url.current();
  const view = VIEWS[name] ? name : url.DEFAULT_VIEW;
  const mod = VIEWS[view];
  const sh = url.shared(params);
  // Set before anything fetches (the filter's options included); invalid ids send no header.
  const badTenant = api.tenantProblem(sh.tenant);
  api.setTenant(badTenant ? '' : sh.tenant);
  const sharedKey = url.SHARED.map((k) => params.get(k)).join('|');
  const prevShared = prev && url.SHARED.map((k) => prev.params.get(k)).join('|');
  if (!force && prev && prev.view === view && prevShared === sharedKey && mod.update && mod.update(params, prev.params)) {
    prev = { view, params };
    return;
  }
  if (!prev || prevShared !== sharedKey || prev.view !== view) { drawNav(view); drawControls(sh); }
  prev = { view, params };
  document.title = `${mod.title} · meshlens`;
  const gen = ++generation;
  const box = h('div', { class: `view view-${view}` });
  clear(main).append(box);
  main.dataset.state = 'loading';
  main.dataset.view = view;
  const t0 = performance.now();
  try {
    if (badTenant) box.append(message('error', `The tenant in the address is not valid: ${badTenant}. Change it in the top bar.`));
    else await mod.render(box, { params, shared: sh });
  } catch (e) {
    box.append(message('error', `This view failed: ${e.message}`));
  }
  if (gen === generation) {
    main.dataset.state = 'ready';
    main.dataset.renderMs = String(Math.round(performance.now() - t0));
  }
  clearInterval(timer);
  const every = url.rangeSeconds(sh.refresh);
  if (sh.refresh && every >= 5) timer = setInterval(() => { if (document.visibilityState === 'visible') route(true); }, every * 1000);
}

window.addEventListener('hashchange', () => route());
route();
