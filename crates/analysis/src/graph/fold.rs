//! From Istio's identity labels to graph edges: the one folding both metric paths share.
//!
//! The PromQL path ([`super::metrics`]) and the per-edge aggregates ([`super::aggregates`])
//! each produce groups of figures (request counts by code, duration buckets by `le`, TCP
//! bytes) under a set of Istio identity labels; this module turns them into the
//! [`EdgeMap`] per graph type, so both paths name nodes, pick reporters and merge figures the
//! same way and can only differ in the numbers they start from.
//!
//! Like Kiali, an edge reported by the destination proxy is taken from `reporter=
//! "destination"`; `reporter="source"` only fills in edges no destination reports (calls to
//! services outside the mesh), so no request is counted twice.

use meshlens_model::Labels;

use super::{EdgeAcc, EdgeKey, EdgeMap, GraphType, NodeKey};
use crate::fx::{FxMap, FxSet};

/// The labels every metric query groups by (and the aggregates key edges by): enough to
/// name both ends of an edge in all four graph types.
pub(crate) const IDENTITY: [&str; 16] = [
    "reporter",
    "cluster",
    "source_cluster",
    "destination_cluster",
    "source_workload",
    "source_workload_namespace",
    "source_app",
    "source_version",
    "destination_workload",
    "destination_workload_namespace",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
];

/// What one figure of a group counts, over the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Figure<'a> {
    /// Requests answered with `code` (`0`: no response); `mtls`: over mutual TLS.
    Requests {
        code: &'a str,
        mtls: bool,
    },
    /// Requests that took at most `le` ms (cumulative, as Prometheus's buckets).
    Bucket {
        le: f64,
    },
    TcpSent,
    TcpReceived,
}

/// Figures observed under one set of identity labels (which may hold further labels, such
/// as PromQL's `response_code`; only the identity ones are read).
pub(crate) struct Group<'a> {
    pub labels: &'a Labels,
    pub figures: Vec<(Figure<'a>, f64)>,
}

// Positions in IDENTITY.
const REPORTER: usize = 0;
const CLUSTER: usize = 1;
const SOURCE_CLUSTER: usize = 2;
const DESTINATION_CLUSTER: usize = 3;
const SOURCE_WORKLOAD: usize = 4;
const SOURCE_WORKLOAD_NAMESPACE: usize = 5;
const SOURCE_APP: usize = 6;
const SOURCE_VERSION: usize = 7;
const DESTINATION_WORKLOAD: usize = 8;
const DESTINATION_WORKLOAD_NAMESPACE: usize = 9;
const DESTINATION_APP: usize = 10;
const DESTINATION_VERSION: usize = 11;
const DESTINATION_SERVICE: usize = 12;
const DESTINATION_SERVICE_NAME: usize = 13;
const DESTINATION_SERVICE_NAMESPACE: usize = 14;
const REQUEST_PROTOCOL: usize = 15;

/// A group's identity values by position in [`IDENTITY`], read in one pass over its labels:
/// naming both ends takes some twenty lookups, which binary searches over the label set
/// made the largest cost of a graph.
struct Ident<'a>([Option<&'a str>; IDENTITY.len()]);

impl<'a> Ident<'a> {
    fn of(labels: &'a Labels) -> Ident<'a> {
        let mut v = [None; IDENTITY.len()];
        for l in labels {
            let i = match l.name.as_str() {
                "reporter" => REPORTER,
                "cluster" => CLUSTER,
                "source_cluster" => SOURCE_CLUSTER,
                "destination_cluster" => DESTINATION_CLUSTER,
                "source_workload" => SOURCE_WORKLOAD,
                "source_workload_namespace" => SOURCE_WORKLOAD_NAMESPACE,
                "source_app" => SOURCE_APP,
                "source_version" => SOURCE_VERSION,
                "destination_workload" => DESTINATION_WORKLOAD,
                "destination_workload_namespace" => DESTINATION_WORKLOAD_NAMESPACE,
                "destination_app" => DESTINATION_APP,
                "destination_version" => DESTINATION_VERSION,
                "destination_service" => DESTINATION_SERVICE,
                "destination_service_name" => DESTINATION_SERVICE_NAME,
                "destination_service_namespace" => DESTINATION_SERVICE_NAMESPACE,
                "request_protocol" => REQUEST_PROTOCOL,
                _ => continue,
            };
            v[i] = Some(l.value.as_str());
        }
        Ident(v)
    }
}

/// The first of the labels that is set and not `unknown`, else `unknown`.
fn get<'a>(l: &Ident<'a>, names: &[usize]) -> &'a str {
    names
        .iter()
        .filter_map(|&n| l.0[n])
        .find(|v| !v.is_empty() && *v != "unknown")
        .unwrap_or("unknown")
}

/// Which service a workload serves, learnt from the destination labels, so that a service
/// graph can name the source of a call by its service.
type ServiceOf = FxMap<(String, String, String), String>;

fn src_key(l: &Ident<'_>, gt: GraphType, services: &ServiceOf) -> NodeKey {
    let cluster = get(l, &[SOURCE_CLUSTER, CLUSTER]).to_string();
    let namespace = get(l, &[SOURCE_WORKLOAD_NAMESPACE]).to_string();
    let workload = get(l, &[SOURCE_WORKLOAD]);
    let (name, version) = match gt {
        GraphType::Workload => (workload.to_string(), None),
        GraphType::App => (get(l, &[SOURCE_APP, SOURCE_WORKLOAD]).to_string(), None),
        GraphType::VersionedApp => (
            get(l, &[SOURCE_APP, SOURCE_WORKLOAD]).to_string(),
            Some(get(l, &[SOURCE_VERSION]).to_string()),
        ),
        GraphType::Service => (
            services
                .get(&(cluster.clone(), namespace.clone(), workload.to_string()))
                .cloned()
                .unwrap_or_else(|| workload.to_string()),
            None,
        ),
    };
    NodeKey {
        cluster,
        namespace,
        name,
        version,
    }
}

fn dst_key(l: &Ident<'_>, gt: GraphType) -> NodeKey {
    let cluster = get(l, &[DESTINATION_CLUSTER, CLUSTER]).to_string();
    let svc = [DESTINATION_SERVICE_NAME, DESTINATION_SERVICE];
    let (ns, name, version) = match gt {
        GraphType::Service => (get(l, &[DESTINATION_SERVICE_NAMESPACE]), get(l, &svc), None),
        GraphType::Workload => (
            get(
                l,
                &[
                    DESTINATION_WORKLOAD_NAMESPACE,
                    DESTINATION_SERVICE_NAMESPACE,
                ],
            ),
            get(l, &[DESTINATION_WORKLOAD, svc[0], svc[1]]),
            None,
        ),
        GraphType::App | GraphType::VersionedApp => (
            get(
                l,
                &[
                    DESTINATION_WORKLOAD_NAMESPACE,
                    DESTINATION_SERVICE_NAMESPACE,
                ],
            ),
            get(l, &[DESTINATION_APP, DESTINATION_WORKLOAD, svc[0], svc[1]]),
            (gt == GraphType::VersionedApp).then(|| get(l, &[DESTINATION_VERSION])),
        ),
    };
    NodeKey {
        cluster,
        namespace: ns.to_string(),
        name: name.to_string(),
        version: version.map(str::to_string),
    }
}

/// The services workloads serve, from every group with request or TCP figures.
fn services(groups: &[Group<'_>], idents: &[Ident<'_>]) -> ServiceOf {
    let mut services = ServiceOf::default();
    for (g, l) in groups.iter().zip(idents) {
        let counts_calls = g
            .figures
            .iter()
            .any(|(f, _)| !matches!(f, Figure::Bucket { .. }));
        if !counts_calls {
            continue;
        }
        let w = get(l, &[DESTINATION_WORKLOAD]);
        let svc = get(l, &[DESTINATION_SERVICE_NAME, DESTINATION_SERVICE]);
        if w != "unknown" && svc != "unknown" {
            let cluster = get(l, &[DESTINATION_CLUSTER, CLUSTER]).to_string();
            let ns = get(l, &[DESTINATION_WORKLOAD_NAMESPACE]).to_string();
            services
                .entry((cluster, ns, w.to_string()))
                .or_insert(svc.to_string());
        }
    }
    services
}

/// Folds the groups into edges for one graph type.
pub(crate) fn fold(groups: &[Group<'_>], gt: GraphType) -> EdgeMap {
    let idents: Vec<Ident<'_>> = groups.iter().map(|g| Ident::of(g.labels)).collect();
    let services = if gt == GraphType::Service {
        services(groups, &idents)
    } else {
        ServiceOf::default()
    };
    // Edges per reporter (0 = destination, 1 = source).
    let mut by_reporter = [
        EdgeMap::with_capacity_and_hasher(groups.len(), Default::default()),
        EdgeMap::default(),
    ];
    for (g, l) in groups.iter().zip(&idents) {
        let map = &mut by_reporter[usize::from(l.0[REPORTER] == Some("source"))];
        // The protocol defaults to `tcp` for TCP figures, `http` for the rest, when Istio
        // did not say: at most two edges per group, each looked up once.
        for tcp in [false, true] {
            let is_tcp = |f: &Figure<'_>| matches!(f, Figure::TcpSent | Figure::TcpReceived);
            let mut figures = g
                .figures
                .iter()
                .filter(|(f, _)| is_tcp(f) == tcp)
                .peekable();
            if figures.peek().is_none() {
                continue;
            }
            let key = EdgeKey {
                src: src_key(l, gt, &services),
                dst: dst_key(l, gt),
                protocol: l.0[REQUEST_PROTOCOL]
                    .unwrap_or(if tcp { "tcp" } else { "http" })
                    .to_string(),
            };
            let a = map.entry(key).or_default();
            a.from_metrics = true;
            for &(figure, v) in figures {
                add(a, figure, v);
            }
        }
    }
    let [mut dest, source] = by_reporter;
    if source.is_empty() {
        return dest;
    }
    let reported: FxSet<(&NodeKey, &NodeKey)> = dest.keys().map(|k| (&k.src, &k.dst)).collect();
    let extra: Vec<(EdgeKey, EdgeAcc)> = source
        .into_iter()
        .filter(|(k, _)| !reported.contains(&(&k.src, &k.dst)))
        .collect();
    dest.extend(extra);
    dest
}

fn add(a: &mut EdgeAcc, figure: Figure<'_>, v: f64) {
    match figure {
        Figure::Requests { code, mtls } => {
            a.requests += v;
            match a.codes.get_mut(code) {
                Some(n) => *n += v,
                None => {
                    a.codes.insert(code.to_string(), v);
                }
            }
            let m = a.mtls.get_or_insert(0.0);
            if mtls {
                *m += v;
            }
        }
        Figure::Bucket { le } => match a.buckets.iter_mut().find(|b| b.0 == le) {
            Some(b) => b.1 += v,
            None => a.buckets.push((le, v)),
        },
        Figure::TcpSent => *a.tcp_sent.get_or_insert(0.0) += v,
        Figure::TcpReceived => *a.tcp_received.get_or_insert(0.0) += v,
    }
}
