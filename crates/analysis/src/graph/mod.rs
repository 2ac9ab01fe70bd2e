//! The service graph over a time window, Kiali's four flavours (workload, app, versioned
//! app, service), from Istio's standard metrics ([`metrics`] through PromQL, or the per-edge
//! [`aggregates`] kept at ingest), from traces ([`traces`]), or both merged.
//!
//! Every source reduces to the same intermediate form, an [`EdgeAcc`] per (source node,
//! destination node, protocol) holding request counts over the window, so the figures they
//! produce are computed, rounded and checked by one piece of code ([`assemble`]); the two
//! metric paths also share the folding from Istio's labels to nodes ([`fold`]).

pub mod aggregates;
mod assemble;
mod fold;
mod metrics;
mod traces;

use std::collections::BTreeMap;

use meshlens_model::{MetricReader, SpanReader};
use meshlens_promql::Engine;
use serde::Serialize;

use crate::fx::FxMap;
use crate::AnalysisError;

pub use aggregates::{AggregatesOptions, AggregatingWriter, EdgeAggregates};
pub use assemble::Health;

/// What a node stands for, as in Kiali's graph types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum GraphType {
    Workload,
    App,
    VersionedApp,
    Service,
}

impl GraphType {
    /// Kiali's spellings (`versionedApp`), plus `versioned_app`.
    pub fn parse(s: &str) -> Option<GraphType> {
        match s {
            "workload" => Some(GraphType::Workload),
            "app" => Some(GraphType::App),
            "versionedApp" | "versioned_app" | "versionedapp" => Some(GraphType::VersionedApp),
            "service" => Some(GraphType::Service),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GraphType::Workload => "workload",
            GraphType::App => "app",
            GraphType::VersionedApp => "versionedApp",
            GraphType::Service => "service",
        }
    }
}

/// Where the graph comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum GraphSource {
    Metrics,
    Traces,
    /// Metrics where Istio reports an edge, traces for the edges it does not see.
    Both,
}

impl GraphSource {
    pub fn parse(s: &str) -> Option<GraphSource> {
        match s {
            "metrics" => Some(GraphSource::Metrics),
            "traces" => Some(GraphSource::Traces),
            "both" => Some(GraphSource::Both),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GraphQuery {
    pub graph_type: GraphType,
    pub window_ms: i64,
    /// End of the window, milliseconds since the epoch; the window is `(end - window, end]`.
    pub end_ms: i64,
    /// Only edges with at least one end in this cluster.
    pub cluster: Option<String>,
    /// Only edges with at least one end in this namespace.
    pub namespace: Option<String>,
    /// Only nodes named this (any namespace) and their direct neighbours.
    pub focus: Option<String>,
    pub source: GraphSource,
}

/// The identity of a node; `version` is set only in versioned-app graphs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NodeKey {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl NodeKey {
    /// `cluster/namespace/name[/version]`: stable, readable, unique within a graph.
    pub fn id(&self) -> String {
        match &self.version {
            Some(v) => format!("{}/{}/{}/{v}", self.cluster, self.namespace, self.name),
            None => format!("{}/{}/{}", self.cluster, self.namespace, self.name),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub id: String,
    /// `workload`, `app`, `service`, or `unknown` for traffic without a source identity.
    pub node_type: String,
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub health: Health,
    /// Requests received in the window, and per second.
    pub requests_in: f64,
    pub request_rate_in: f64,
    pub requests_out: f64,
    pub request_rate_out: f64,
    /// Share (0..1) of received requests that failed (5xx or no response); of sent
    /// requests for nodes that receive none.
    pub error_rate: f64,
    /// Which sources saw this node: `metrics`, `traces`.
    pub sources: Vec<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    pub source: String,
    pub target: String,
    /// `http`, `grpc`, `tcp` (or what Istio's request_protocol says).
    pub protocol: String,
    /// Requests in the window, and per second.
    pub requests: f64,
    pub request_rate: f64,
    pub errors: f64,
    /// Share (0..1) of requests that failed (5xx or no response).
    pub error_rate: f64,
    /// Requests per response code (`200`, `503`, `0` for no response).
    pub response_codes: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_time_ms: Option<ResponseTimes>,
    /// Share (0..1) of requests over mutual TLS; absent when the source cannot tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_sent_bytes_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_received_bytes_rate: Option<f64>,
    pub health: Health,
    pub sources: Vec<&'static str>,
    /// The two ends are in different clusters (both known): traffic crossing the network
    /// between clusters, which a multi-cluster view wants to tell apart.
    pub cross_cluster: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ResponseTimes {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Graph {
    pub graph_type: GraphType,
    pub source: GraphSource,
    /// The window asked for.
    pub start_ms: i64,
    pub end_ms: i64,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// How the metric figures were computed (`traces` for a trace-only graph).
    pub computed_from: ComputedFrom,
    /// Why the PromQL path served a metrics graph rather than the aggregates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// The window the metric figures cover, over which rates are computed: the one asked
    /// for, or from the aggregates, the one asked for snapped to their buckets.
    pub effective_start_ms: i64,
    pub effective_end_ms: i64,
    /// The aggregates' bucket width, when they served the graph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution_ms: Option<i64>,
}

/// Which path produced a graph's metric figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ComputedFrom {
    /// The per-edge aggregates kept at ingest.
    Aggregates,
    /// Instant PromQL queries over the raw series.
    Promql,
    /// No metrics: spans only.
    Traces,
}

/// An edge's identity in the intermediate form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EdgeKey {
    pub src: NodeKey,
    pub dst: NodeKey,
    pub protocol: String,
}

/// What one source observed on one edge over the window.
#[derive(Clone, Debug, Default)]
pub(crate) struct EdgeAcc {
    pub requests: f64,
    pub codes: BTreeMap<String, f64>,
    /// Requests over mutual TLS, when the source can tell.
    pub mtls: Option<f64>,
    /// Duration histogram increases: (upper bound in ms, cumulative count), from metrics.
    pub buckets: Vec<(f64, f64)>,
    /// Raw durations in ms, from traces.
    pub durations_ms: Vec<f64>,
    pub tcp_sent: Option<f64>,
    pub tcp_received: Option<f64>,
    pub from_metrics: bool,
    pub from_traces: bool,
}

pub(crate) type EdgeMap = FxMap<EdgeKey, EdgeAcc>;

/// A response code that counts as an error: 5xx, or 0 (Envoy's "no response").
pub(crate) fn is_error_code(code: &str) -> bool {
    code == "0" || (code.len() == 3 && code.starts_with('5'))
}

/// Builds the graph the query asks for, the metric figures through PromQL.
pub fn build_graph(
    metrics: &dyn MetricReader,
    spans: &dyn SpanReader,
    engine: &Engine,
    q: &GraphQuery,
) -> Result<Graph, AnalysisError> {
    build(None, metrics, spans, engine, q)
}

/// Builds the graph the query asks for, the metric figures from the aggregates when they
/// cover the window (else through PromQL, and the answer says why).
pub fn build_graph_with_aggregates(
    aggregates: &EdgeAggregates,
    metrics: &dyn MetricReader,
    spans: &dyn SpanReader,
    engine: &Engine,
    q: &GraphQuery,
) -> Result<Graph, AnalysisError> {
    build(Some(aggregates), metrics, spans, engine, q)
}

/// How the metric edges were computed, over which window.
struct Served {
    from: ComputedFrom,
    reason: Option<String>,
    start_ms: i64,
    end_ms: i64,
    resolution_ms: Option<i64>,
}

fn metric_edges(
    aggregates: Option<&EdgeAggregates>,
    metrics: &dyn MetricReader,
    engine: &Engine,
    q: &GraphQuery,
) -> Result<(EdgeMap, Served), AnalysisError> {
    let reason = match aggregates {
        None => "no graph aggregates are kept for this data".to_string(),
        Some(a) => match a.plan(q, meshlens_model::time::now_ms()) {
            Ok(plan) => {
                let served = Served {
                    from: ComputedFrom::Aggregates,
                    reason: None,
                    start_ms: plan.start_ms,
                    end_ms: plan.end_ms,
                    resolution_ms: Some(plan.resolution_ms),
                };
                return Ok((a.edges(&plan, q.graph_type), served));
            }
            Err(reason) => reason,
        },
    };
    let served = Served {
        from: ComputedFrom::Promql,
        reason: Some(reason),
        start_ms: q.end_ms - q.window_ms,
        end_ms: q.end_ms,
        resolution_ms: None,
    };
    Ok((metrics::edges(metrics, engine, q)?, served))
}

fn build(
    aggregates: Option<&EdgeAggregates>,
    metrics: &dyn MetricReader,
    spans: &dyn SpanReader,
    engine: &Engine,
    q: &GraphQuery,
) -> Result<Graph, AnalysisError> {
    let (edges, served) = match q.source {
        GraphSource::Metrics => metric_edges(aggregates, metrics, engine, q)?,
        GraphSource::Traces => (
            traces::edges(spans, q)?,
            Served {
                from: ComputedFrom::Traces,
                reason: None,
                start_ms: q.end_ms - q.window_ms,
                end_ms: q.end_ms,
                resolution_ms: None,
            },
        ),
        GraphSource::Both => {
            let (mut m, served) = metric_edges(aggregates, metrics, engine, q)?;
            let pairs: std::collections::HashSet<(NodeKey, NodeKey)> =
                m.keys().map(|k| (k.src.clone(), k.dst.clone())).collect();
            for (k, v) in traces::edges(spans, q)? {
                if !pairs.contains(&(k.src.clone(), k.dst.clone())) {
                    m.insert(k, v);
                }
            }
            (m, served)
        }
    };
    // Rates are per second of the window the figures cover.
    let effective = GraphQuery {
        window_ms: served.end_ms - served.start_ms,
        end_ms: served.end_ms,
        ..q.clone()
    };
    let mut g = assemble::assemble(edges, &effective);
    g.start_ms = q.end_ms - q.window_ms;
    g.end_ms = q.end_ms;
    g.computed_from = served.from;
    g.fallback_reason = served.reason;
    g.effective_start_ms = served.start_ms;
    g.effective_end_ms = served.end_ms;
    g.resolution_ms = served.resolution_ms;
    Ok(g)
}
