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
//!
//! Two paths, one result. A store that pairs calls itself (`SpanReader::aggregate_calls`,
//! ClickHouse on its shards) is asked for groups of calls keyed by the raw values this module
//! reads (services, cluster and version tags, status, protocol hints, remote names) with
//! each call's duration; the groups are folded into edges here, by the same helpers the
//! scan uses. Otherwise every span of the window is scanned and paired in memory. Durations
//! travel one per call because the edges' percentiles are exact nearest-rank ones over all
//! of an edge's calls, and several groups can fold into one edge (two status codes, two
//! spellings of one cluster): summaries per group could not be merged into exact figures.

use meshlens_model::{
    CallAggregation, CallGroup, CallRole, Span, SpanDimension, SpanField, SpanFilter, SpanKind,
    SpanReader,
};

use super::{EdgeKey, EdgeMap, GraphQuery, GraphType, NodeKey};
use crate::fx::FxMap;
use crate::stats::{span_cluster, CLUSTER_TAGS};
use crate::AnalysisError;

/// The tags read for a node's version (the first present one).
const VERSION_TAGS: [&str; 3] = ["istio.canonical_revision", "version", "service.version"];
/// The tags read for a response's status (the first present one).
const STATUS_TAGS: [&str; 2] = ["http.status_code", "http.response.status_code"];
/// Tags whose presence marks a gRPC call.
const GRPC_STATUS_TAGS: [&str; 2] = ["grpc.status_code", "rpc.grpc.status_code"];

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

/// A node from a service name; `own` says the version (`version`, the first present of
/// [`VERSION_TAGS`]) is that of a span of this service, and `cluster` is the span's. A callee
/// whose own SERVER span answers is keyed by that span, so it sits in its own cluster (a call
/// from east to west is a cross-cluster edge); only a remote peer nobody answered is placed
/// in its caller's cluster, for want of better.
fn node_key(
    service: &str,
    cluster: &str,
    version: Option<&str>,
    own: bool,
    gt: GraphType,
) -> NodeKey {
    let (name, ns) = split_service(service);
    let version = (gt == GraphType::VersionedApp).then(|| {
        own.then_some(version)
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

fn span_node(service: &str, s: &Span, own: bool, gt: GraphType) -> NodeKey {
    node_key(service, span_cluster(s), tag(s, &VERSION_TAGS), own, gt)
}

/// The response code: the status tag, else `0` for an error without a response, else 200.
fn code_of(status: Option<&str>, error: bool) -> String {
    match status {
        Some(c) => c.to_string(),
        None if error => "0".to_string(),
        None => "200".to_string(),
    }
}

fn protocol_of(grpc: bool, http: bool) -> &'static str {
    if grpc {
        "grpc"
    } else if http {
        "http"
    } else {
        "tcp"
    }
}

/// The service a CLIENT span calls when no server span answers: its remote service, else
/// `peer.service`, else the host in Envoy's `upstream_cluster` (`dir|port|subset|host`).
fn remote_from(remote: Option<&str>, peer: Option<&str>, upstream: Option<&str>) -> Option<String> {
    if let Some(r) = remote.or(peer) {
        return Some(r.to_string());
    }
    let host = upstream?.split('|').nth(3).filter(|h| !h.is_empty())?;
    Some(
        host.strip_suffix(".svc.cluster.local")
            .unwrap_or(host)
            .to_string(),
    )
}

fn code(s: &Span) -> String {
    code_of(tag(s, &STATUS_TAGS), s.tags.contains_key("error"))
}

fn protocol(s: &Span) -> &'static str {
    let grpc = tag(s, &["rpc.system"]) == Some("grpc") || tag(s, &GRPC_STATUS_TAGS).is_some();
    protocol_of(grpc, s.tags.keys().any(|k| k.starts_with("http.")))
}

fn remote_of(s: &Span) -> Option<String> {
    remote_from(
        s.remote_service(),
        tag(s, &["peer.service"]),
        tag(s, &["upstream_cluster"]),
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
        let node = self.node(span_node(service, s, true, gt));
        let trace = (s.trace_id.high, s.trace_id.low);
        let side = || Side {
            node,
            dur_us: s.duration.unwrap_or(0),
            code: code(s),
            protocol: protocol(s),
        };
        match s.kind {
            Some(SpanKind::Client | SpanKind::Producer) => {
                let remote = remote_of(s).map(|r| span_node(&r, s, false, gt));
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
        let unknown = unknown_node(gt);
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
            let side = &s.side;
            record(
                &mut out,
                src,
                dst,
                side.protocol,
                &side.code,
                &[side.dur_us],
            );
        }
        for c in self.clients.values() {
            if let (false, Some(remote)) = (c.paired, &c.remote) {
                let src = self.keys[c.side.node as usize].clone();
                let side = &c.side;
                record(
                    &mut out,
                    src,
                    remote.clone(),
                    side.protocol,
                    &side.code,
                    &[side.dur_us],
                );
            }
        }
        out
    }
}

/// The caller of a call from outside the mesh, keyed as the metrics graph keys a caller
/// without identity, so that `source=both` shows it as one node (versioned-app ids have a
/// version part, `unknown` too).
fn unknown_node(gt: GraphType) -> NodeKey {
    NodeKey {
        cluster: "unknown".into(),
        namespace: "unknown".into(),
        name: "unknown".into(),
        version: (gt == GraphType::VersionedApp).then(|| "unknown".into()),
    }
}

/// Adds calls with one protocol and code, and these durations (µs), to an edge.
fn record(
    out: &mut EdgeMap,
    src: NodeKey,
    dst: NodeKey,
    protocol: &str,
    code: &str,
    durations_us: &[u64],
) {
    let a = out
        .entry(EdgeKey {
            src,
            dst,
            protocol: protocol.to_string(),
        })
        .or_default();
    let n = durations_us.len() as f64;
    a.from_traces = true;
    a.requests += n;
    match a.codes.get_mut(code) {
        Some(c) => *c += n,
        None => {
            a.codes.insert(code.to_string(), n);
        }
    }
    a.durations_ms
        .extend(durations_us.iter().map(|&d| d as f64 / 1000.0));
}

// Positions of the values read from each side, in the pushed-down aggregation.
const SERVICE: usize = 0;
const CLUSTER: usize = 1;
const CALLER_REMOTE: usize = 2;
const CALLER_PEER: usize = 3;
const CALLER_UPSTREAM: usize = 4;
const CALLER_VERSION: usize = 5;
const CALLEE_STATUS: usize = 2;
const CALLEE_VERSION: usize = 3;
const FLAG_ERROR: usize = 0;
const FLAG_GRPC: usize = 1;
const FLAG_HTTP: usize = 2;

fn first_tag(keys: &[&str], non_empty: bool, absent: Option<&str>) -> SpanDimension {
    SpanDimension {
        field: SpanField::Tag {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            non_empty,
        },
        absent: absent.map(str::to_string),
    }
}

/// The pairing a store is asked for: what the scan reads from each span, as dimensions and
/// flags (versions only in versioned-app graphs, where nodes have them).
fn call_aggregation(start_us: u64, end_us: u64, gt: GraphType) -> CallAggregation {
    let field = |f: SpanField| SpanDimension {
        field: f,
        absent: None,
    };
    let cluster = first_tag(&CLUSTER_TAGS, true, Some("unknown"));
    let version = first_tag(&VERSION_TAGS, false, None);
    let mut caller = vec![
        field(SpanField::LocalService),
        cluster.clone(),
        field(SpanField::RemoteService),
        first_tag(&["peer.service"], false, None),
        first_tag(&["upstream_cluster"], false, None),
    ];
    let mut callee = vec![
        field(SpanField::LocalService),
        cluster,
        first_tag(&STATUS_TAGS, false, None),
    ];
    if gt == GraphType::VersionedApp {
        caller.push(version.clone());
        callee.push(version);
    }
    let mut grpc = vec![SpanFilter::Equals(
        first_tag(&["rpc.system"], false, None),
        "grpc".into(),
    )];
    grpc.extend(
        GRPC_STATUS_TAGS
            .iter()
            .map(|k| SpanFilter::HasTag(k.to_string())),
    );
    CallAggregation {
        start_us,
        end_us,
        caller,
        callee,
        callee_flags: vec![
            SpanFilter::HasTag("error".into()),
            SpanFilter::Any(grpc),
            SpanFilter::TagKeyPrefix("http.".into()),
        ],
    }
}

fn value(v: &[Option<String>], i: usize) -> Option<&str> {
    v.get(i).and_then(|x| x.as_deref())
}

/// Folds a store's groups of calls into edges, as `Collector::finish` pairs spans.
fn fold_calls(groups: Vec<CallGroup>, gt: GraphType) -> EdgeMap {
    let mut out = EdgeMap::default();
    let node = |v: &[Option<String>], version: usize| -> Option<NodeKey> {
        Some(node_key(
            value(v, SERVICE)?,
            value(v, CLUSTER).unwrap_or("unknown"),
            value(v, version),
            true,
            gt,
        ))
    };
    for g in groups {
        let flag = |i: usize| g.flags.get(i).copied().unwrap_or(false);
        let Some(callee) = node(&g.callee, CALLEE_VERSION) else {
            continue;
        };
        let (src, dst) = match g.role {
            CallRole::Answered => match node(&g.caller, CALLER_VERSION) {
                Some(src) => (src, callee),
                None => continue,
            },
            CallRole::UnderOther => match node(&g.caller, CALLER_VERSION) {
                // A parent in the same node: not a call we can name.
                Some(src) if src != callee => (src, callee),
                _ => continue,
            },
            CallRole::Root => (unknown_node(gt), callee),
            CallRole::Unanswered => {
                let c = &g.caller;
                let remote = remote_from(
                    value(c, CALLER_REMOTE),
                    value(c, CALLER_PEER),
                    value(c, CALLER_UPSTREAM),
                );
                let Some(remote) = remote else { continue };
                let cluster = value(c, CLUSTER).unwrap_or("unknown");
                (callee, node_key(&remote, cluster, None, false, gt))
            }
        };
        let code = code_of(value(&g.callee, CALLEE_STATUS), flag(FLAG_ERROR));
        let protocol = protocol_of(flag(FLAG_GRPC), flag(FLAG_HTTP));
        record(&mut out, src, dst, protocol, &code, &g.durations_us);
    }
    out
}

pub(crate) fn edges(spans: &dyn SpanReader, q: &GraphQuery) -> Result<EdgeMap, AnalysisError> {
    // The window (end - window, end], as PromQL's range selectors have it.
    let start_us = (q.end_ms - q.window_ms).max(0) as u64 * 1000 + 1;
    let end_us = q.end_ms.max(0) as u64 * 1000;
    let a = call_aggregation(start_us, end_us, q.graph_type);
    if let Some(groups) = spans.aggregate_calls(&a)? {
        return Ok(fold_calls(groups, q.graph_type));
    }
    let mut c = Collector::default();
    spans.scan(start_us, end_us, &mut |s| c.visit(s, q.graph_type))?;
    Ok(c.finish(q.graph_type))
}
