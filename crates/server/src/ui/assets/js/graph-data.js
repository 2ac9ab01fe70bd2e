// The service graph's data, as the server computes it (`/api/v1/graph`): the server is the
// one place that builds the graph, so a failing endpoint is shown as its error, never patched
// over with a graph built here. Also the app/version naming the views group nodes by.

import * as api from './api.js';

/** Where an app's versions are grouped: API's versions, metric labels, or a `-vN` suffix. */
export function appOf(node) {
  if (node.app) return node.app;
  if (node.version) return node.name;
  const m = /^(.+)-(v\d+[a-z0-9]*)$/.exec(node.name || '');
  return m ? m[1] : node.name;
}

export function versionOf(node) {
  if (node.version) return node.version;
  const m = /^(.+)-(v\d+[a-z0-9]*)$/.exec(node.name || '');
  return m ? m[2] : '';
}

/**
 * params: {type, seconds, cluster, ns, source, end (Unix s; default now)}. The server applies
 * the cluster and namespace filter; an error (with the server's status and message) is thrown
 * to the view.
 */
export async function loadGraph({ type = 'workload', seconds = 900, cluster = '', ns = '', source = 'metrics', end }) {
  const g = await api.graph({ type, window: `${seconds}s`, cluster, namespace: ns, source, end });
  return { ...g, nodes: g?.nodes || [], edges: g?.edges || [] };
}
