//! From per-edge observations to the graph: filters (cluster, namespace, focus), rates,
//! error shares, quantiles, and Kiali's health per node and edge.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{is_error_code, Edge, EdgeAcc, EdgeKey, EdgeMap, Graph, GraphQuery, GraphType};
use super::{Node, NodeKey, ResponseTimes};
use crate::quantile::{bucket_quantile, exact_quantile};

/// Kiali's health of a node or edge, from its share of 4xx and 5xx responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Health {
    /// No requests in the window.
    Na,
    Healthy,
    Degraded,
    Failure,
}

impl Health {
    /// Kiali's default tolerances: 5xx degraded above 0 %, failure from 10 %; 4xx degraded
    /// from 10 %, failure from 20 %. Code 0 (no response) counts with 5xx.
    pub fn from_codes(codes: &BTreeMap<String, f64>) -> Health {
        let total = codes.values().fold(0.0, |a, n| a + n);
        if total <= 0.0 {
            return Health::Na;
        }
        let share = |f: &dyn Fn(&str) -> bool| {
            codes
                .iter()
                .filter(|(c, _)| f(c))
                .fold(0.0, |a, (_, n)| a + n)
                / total
        };
        let e5 = share(&|c| is_error_code(c));
        let e4 = share(&|c| c.len() == 3 && c.starts_with('4'));
        if e5 >= 0.10 || e4 >= 0.20 {
            Health::Failure
        } else if e5 > 0.0 || e4 >= 0.10 {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }
}

#[derive(Default)]
struct NodeAcc {
    codes_in: BTreeMap<String, f64>,
    codes_out: BTreeMap<String, f64>,
    req_in: f64,
    req_out: f64,
    metrics: bool,
    traces: bool,
}

fn node_type(gt: GraphType, k: &NodeKey) -> &'static str {
    if k.name == "unknown" {
        return "unknown";
    }
    match gt {
        GraphType::Workload => "workload",
        GraphType::App | GraphType::VersionedApp => "app",
        GraphType::Service => "service",
    }
}

fn keep(k: &EdgeKey, q: &GraphQuery) -> bool {
    let either = |f: &dyn Fn(&NodeKey) -> bool| f(&k.src) || f(&k.dst);
    q.cluster
        .as_deref()
        .is_none_or(|c| either(&|n| n.cluster == c))
        && q.namespace
            .as_deref()
            .is_none_or(|ns| either(&|n| n.namespace == ns))
        && q.focus.as_deref().is_none_or(|f| either(&|n| n.name == f))
}

/// Both clusters known (not `unknown`, not empty) and different.
fn cross_cluster(a: &NodeKey, b: &NodeKey) -> bool {
    let known = |c: &str| !c.is_empty() && c != "unknown";
    known(&a.cluster) && known(&b.cluster) && a.cluster != b.cluster
}

fn add_codes(into: &mut BTreeMap<String, f64>, from: &BTreeMap<String, f64>) {
    for (c, n) in from {
        match into.get_mut(c) {
            Some(x) => *x += n,
            None => {
                into.insert(c.clone(), *n);
            }
        }
    }
}

fn sources(metrics: bool, traces: bool) -> Vec<&'static str> {
    let mut v = Vec::new();
    if metrics {
        v.push("metrics");
    }
    if traces {
        v.push("traces");
    }
    v
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn errors(codes: &BTreeMap<String, f64>) -> f64 {
    codes
        .iter()
        .filter(|(c, _)| is_error_code(c))
        .fold(0.0, |a, (_, n)| a + n)
}

fn response_times(acc: &mut EdgeAcc) -> Option<ResponseTimes> {
    if !acc.durations_ms.is_empty() {
        let d = &mut acc.durations_ms;
        return Some(ResponseTimes {
            p50: exact_quantile(0.50, d)?,
            p95: exact_quantile(0.95, d)?,
            p99: exact_quantile(0.99, d)?,
        });
    }
    let b = &mut acc.buckets;
    Some(ResponseTimes {
        p50: bucket_quantile(0.50, b)?,
        p95: bucket_quantile(0.95, b)?,
        p99: bucket_quantile(0.99, b)?,
    })
    .filter(|r| r.p50.is_finite() && r.p95.is_finite() && r.p99.is_finite())
}

/// Turns observations into the graph; output order is deterministic (by node id, then by
/// edge source, target, protocol).
pub(crate) fn assemble(edges: EdgeMap, q: &GraphQuery) -> Graph {
    let secs = q.window_ms as f64 / 1000.0;
    let list: Vec<(EdgeKey, EdgeAcc)> = edges
        .into_iter()
        .filter(|(k, a)| {
            keep(k, q)
                && (a.requests > 0.0
                    || a.tcp_sent.unwrap_or(0.0) + a.tcp_received.unwrap_or(0.0) > 0.0)
        })
        .collect();
    // Sorted through indices: the entries are a few hundred bytes each, and moving them
    // about was a tenth of a large graph's time. Keys are unique, so unstable is exact.
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_unstable_by(|&a, &b| list[a].0.cmp(&list[b].0));
    let mut out_edges = Vec::with_capacity(list.len());
    let mut slots: Vec<Option<(EdgeKey, EdgeAcc)>> = list.into_iter().map(Some).collect();
    let list = order.into_iter().filter_map(|i| slots[i].take());
    let mut nodes: BTreeMap<NodeKey, NodeAcc> = BTreeMap::new();
    for (k, mut acc) in list {
        for (key, inbound) in [(&k.src, false), (&k.dst, true)] {
            if !nodes.contains_key(key) {
                nodes.insert(key.clone(), NodeAcc::default());
            }
            let Some(n) = nodes.get_mut(key) else {
                continue;
            };
            n.metrics |= acc.from_metrics;
            n.traces |= acc.from_traces;
            if inbound {
                n.req_in += acc.requests;
                add_codes(&mut n.codes_in, &acc.codes);
            } else {
                n.req_out += acc.requests;
                add_codes(&mut n.codes_out, &acc.codes);
            }
        }
        let errs = errors(&acc.codes);
        out_edges.push(Edge {
            source: k.src.id(),
            target: k.dst.id(),
            protocol: k.protocol.clone(),
            requests: acc.requests,
            request_rate: acc.requests / secs,
            errors: errs,
            error_rate: ratio(errs, acc.requests),
            response_time_ms: response_times(&mut acc),
            mtls_share: acc.mtls.map(|m| ratio(m, acc.requests)),
            tcp_sent_bytes_rate: acc.tcp_sent.map(|b| b / secs),
            tcp_received_bytes_rate: acc.tcp_received.map(|b| b / secs),
            health: Health::from_codes(&acc.codes),
            response_codes: acc.codes,
            sources: sources(acc.from_metrics, acc.from_traces),
            cross_cluster: cross_cluster(&k.src, &k.dst),
        });
    }
    let nodes = nodes
        .into_iter()
        .map(|(k, n)| {
            let (codes, req) = if n.req_in > 0.0 {
                (&n.codes_in, n.req_in)
            } else {
                (&n.codes_out, n.req_out)
            };
            Node {
                id: k.id(),
                node_type: node_type(q.graph_type, &k).to_string(),
                health: Health::from_codes(codes),
                error_rate: ratio(errors(codes), req),
                requests_in: n.req_in,
                request_rate_in: n.req_in / secs,
                requests_out: n.req_out,
                request_rate_out: n.req_out / secs,
                sources: sources(n.metrics, n.traces),
                cluster: k.cluster,
                namespace: k.namespace,
                name: k.name,
                version: k.version,
            }
        })
        .collect();
    Graph {
        graph_type: q.graph_type,
        source: q.source,
        start_ms: q.end_ms - q.window_ms,
        end_ms: q.end_ms,
        nodes,
        edges: out_edges,
        computed_from: super::ComputedFrom::Promql,
        fallback_reason: None,
        effective_start_ms: q.end_ms - q.window_ms,
        effective_end_ms: q.end_ms,
        resolution_ms: None,
    }
}
