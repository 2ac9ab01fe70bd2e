//! The graph from traces, as Tempo's service-graph processor pairs spans: a CLIENT span and
//! the SERVER span whose parent it is (or which shares its id) make one request from the
//! client's service to the server's. A SERVER span whose parent is a non-CLIENT span of
//! another service is a call too (an uninstrumented client library); a root SERVER span is
//! a call from `unknown` (outside the mesh); a CLIENT span nobody answered is a call to its
//! remote service (`remoteEndpoint`, `peer.service`, or Envoy's `upstream_cluster` host) if
//! it names one. Each request is counted once, with the server's status and duration when
//! there is a server side (as Istio's destination reporter does).
//!
//! Nodes are the spans' local service names, read the Istio way (`name.namespace`, Envoy's
//! default service cluster); all four graph types therefore give service-named nodes, with
//! versions from `istio.canonical_revision` / `version` tags in versioned-app graphs. Each
//! side's cluster is its own span's cluster tag, so calls between clusters keep both.

use meshlens_model::{Span, SpanKind, SpanReader};

use super::{EdgeKey, EdgeMap, GraphQuery, GraphType, NodeKey};
use crate::fx::FxMap;
use crate::stats::span_cluster;
use crate::AnalysisError;

type SpanRef = (u64, u64, u64);

/// The figures of one side of a call.
struct Side {
    node: u32,
    dur_us: u64,
    code: String,
    protocol: &'static str,
}

struct Client {
    side: Side,
    remote: Option<NodeKey>,
    paired: bool,
}

struct Server {
    trace: (u64, u64),
    parent: Option<u64>,
    id: u64,
    shared: bool,
    side: Side,
}

/// Splits Envoy's `name.namespace` service names; a dotted remainder (`api.stripe.com`)
/// is a host name, not a namespace.
fn split_service(s: &str) -> (&str, &str) {
    match s.split_once('.') {
        Some((name, ns)) if !ns.contains('.') && !name.is_empty() => (name, ns),
        _ => (s, "unknown"),
    }
}

fn tag<'a>(s: &'a Span, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| s.tags.get(*k).map(String::as_str))
}

/// A node from a service name; `own` is a span of that service (for its version), the
/// cluster comes from `s`. A callee whose own SERVER span answers is keyed by that span, so
/// it sits in its own cluster (a call from east to west is a cross-cluster edge); only a
/// remote peer nobody answered is placed in its caller's cluster, for want of better.
fn node_key(service: &str, s: &Span, own: bool, gt: GraphType) -> NodeKey {
    let (name, ns) = split_service(service);
    let cluster = span_cluster(s);
    let version = (gt == GraphType::VersionedApp).then(|| {
        own.then(|| {
            tag(
                s,
                &["istio.canonical_revision", "version", "service.version"],
            )
        })
        .flatten()
        .unwrap_or("unknown")
        .to_string()
    });
    NodeKey {
        cluster: cluster.to_string(),
        namespace: ns.to_string(),
        name: name.to_string(),
        version,
    }
}

fn code(s: &Span) -> String {
    match tag(s, &["http.status_code", "http.response.status_code"]) {
        Some(c) => c.to_string(),
        // No HTTP status: an error tag means a failure without a response.
        None if s.tags.contains_key("error") => "0".to_string(),
        None => "200".to_string(),
    }
}

fn protocol(s: &Span) -> &'static str {
    let grpc = tag(s, &["rpc.system"]) == Some("grpc")
        || tag(s, &["grpc.status_code", "rpc.grpc.status_code"]).is_some();
    if grpc {
        "grpc"
    } else if s.tags.keys().any(|k| k.starts_with("http.")) {
        "http"
    } else {
        "tcp"
    }
}

/// The service a CLIENT span calls when no server span answers.
fn remote_of(s: &Span) -> Option<String> {
    if let Some(r) = s.remote_service().or_else(|| tag(s, &["peer.service"])) {
        return Some(r.to_string());
    }
    let uc = tag(s, &["upstream_cluster"])?;
    let host = uc.split('|').nth(3).filter(|h| !h.is_empty())?;
    Some(
        host.strip_suffix(".svc.cluster.local")
            .unwrap_or(host)
            .to_string(),
    )
}

#[derive(Default)]
struct Collector {
    nodes: FxMap<NodeKey, u32>,
    keys: Vec<NodeKey>,
    clients: FxMap<SpanRef, Client>,
    servers: Vec<Server>,
    /// Spans of other kinds: who may be a server span's parent.
    others: FxMap<SpanRef, u32>,
}

impl Collector {
    fn node(&mut self, k: NodeKey) -> u32 {
        if let Some(&i) = self.nodes.get(&k) {
            return i;
        }
        let i = self.keys.len() as u32;
        self.keys.push(k.clone());
        self.nodes.insert(k, i);
        i
    }

    fn visit(&mut self, s: &Span, gt: GraphType) {
        let Some(service) = s.local_service() else {
            return;
        };
        let node = self.node(node_key(service, s, true, gt));
        let trace = (s.trace_id.high, s.trace_id.low);
        let side = || Side {
            node,
            dur_us: s.duration.unwrap_or(0),
            code: code(s),
            protocol: protocol(s),
        };
        match s.kind {
            Some(SpanKind::Client | SpanKind::Producer) => {
                let remote = remote_of(s).map(|r| node_key(&r, s, false, gt));
                let c = Client {
                    side: side(),
                    remote,
                    paired: false,
                };
                self.clients.insert((trace.0, trace.1, s.id), c);
            }
            Some(SpanKind::Server | SpanKind::Consumer) => self.servers.push(Server {
                trace,
                parent: s.parent_id,
                id: s.id,
                shared: s.shared,
                side: side(),
            }),
            None => {
                self.others.insert((trace.0, trace.1, s.id), node);
            }
        }
    }

    fn finish(mut self, gt: GraphType) -> EdgeMap {
        let mut out = EdgeMap::default();
        // Keyed as the metrics graph keys a caller without identity, so that `source=both`
        // shows it as one node (versioned-app ids have a version part, `unknown` too).
        let unknown = NodeKey {
            cluster: "unknown".into(),
            namespace: "unknown".into(),
            name: "unknown".into(),
            version: (gt == GraphType::VersionedApp).then(|| "unknown".into()),
        };
        let servers = std::mem::take(&mut self.servers);
        for s in &servers {
            let (t0, t1) = s.trace;
            let via = s.parent.map(|p| (t0, t1, p));
            let client = match (s.shared, via) {
                (true, _) if self.clients.contains_key(&(t0, t1, s.id)) => Some((t0, t1, s.id)),
                (_, Some(p)) if self.clients.contains_key(&p) => Some(p),
                _ => None,
            };
            let src = match (client, via) {
                (Some(c), _) => {
                    let c = self.clients.get_mut(&c).expect("checked");
                    c.paired = true;
                    self.keys[c.side.node as usize].clone()
                }
                (None, Some(p)) => match self.others.get(&p) {
                    Some(&n) if n != s.side.node => self.keys[n as usize].clone(),
                    // A parent we cannot see or in the same service: not a call we can name.
                    _ => continue,
                },
                (None, None) => unknown.clone(),
            };
            let dst = self.keys[s.side.node as usize].clone();
            record(&mut out, src, dst, &s.side);
        }
        for c in self.clients.values() {
            if let (false, Some(remote)) = (c.paired, &c.remote) {
                let src = self.keys[c.side.node as usize].clone();
                record(&mut out, src, remote.clone(), &c.side);
            }
        }
        out
    }
}

fn record(out: &mut EdgeMap, src: NodeKey, dst: NodeKey, side: &Side) {
    let a = out
        .entry(EdgeKey {
            src,
            dst,
            protocol: side.protocol.to_string(),
        })
        .or_default();
    a.from_traces = true;
    a.requests += 1.0;
    *a.codes.entry(side.code.clone()).or_default() += 1.0;
    a.durations_ms.push(side.dur_us as f64 / 1000.0);
}

pub(crate) fn edges(spans: &dyn SpanReader, q: &GraphQuery) -> Result<EdgeMap, AnalysisError> {
    // The window (end - window, end], as PromQL's range selectors have it.
    let start_us = (q.end_ms - q.window_ms).max(0) as u64 * 1000 + 1;
    let end_us = q.end_ms.max(0) as u64 * 1000;
    let mut c = Collector::default();
    spans.scan(start_us, end_us, &mut |s| c.visit(s, q.graph_type))?;
    Ok(c.finish(q.graph_type))
}
