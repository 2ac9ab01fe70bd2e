//! The compiled routing table: what the request path reads. Built from a `MeshConfig` by
//! `compile`, swapped whole on reload, never mutated (runtime state such as outlier ejections
//! lives in `ClusterState`, shared across reloads).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderName;
use meshlens_model::hash::FxMap;
use parking_lot::Mutex;

use crate::balance::LbPolicy;
use crate::resilience::fault::Fault;
use crate::resilience::outlier::{EndpointHealth, OutlierPolicy};
use crate::resilience::pool::Limiter;
use crate::resilience::retry::RetryPolicy;
use crate::route::Match;
use crate::telemetry::metrics::DestLabels;

/// Host → virtual host, as an outbound sidecar sees the mesh.
///
/// Host maps are Fx-hashed: they are looked up on every request, built only from the mesh
/// config (request hosts are never inserted), so SipHash's flooding defence buys nothing.
pub struct Table {
    pub exact: FxMap<String, Arc<VirtualHost>>,
    /// Short forms of `exact`'s Kubernetes names (`reviews`, `reviews.prod`,
    /// `reviews.prod.svc`) as completed in `namespace`: found without building the completed
    /// name for every request.
    pub short: FxMap<String, Arc<VirtualHost>>,
    /// `*.suffix` patterns (and `*`), most specific first.
    pub wildcard: Vec<(String, Arc<VirtualHost>)>,
    /// The namespace short request hosts are completed in.
    pub namespace: String,
    /// The AuthorizationPolicies of the proxy's workload (enforced by inbound proxies).
    pub authz: crate::authz::Policies,
    /// Routes of the TCP listeners, by service port.
    pub tcp: super::tcp::TcpTable,
    /// What the inbound listener accepts (PeerAuthentication).
    pub inbound_mtls: crate::tls::InboundMtls,
}

/// The routes of one VirtualService (or the default route of a ServiceEntry host).
pub struct VirtualHost {
    /// `namespace/name` of the VirtualService, for logs.
    pub name: String,
    pub routes: Vec<Route>,
}

pub struct Route {
    pub name: String,
    /// Blocks are ORed; an empty list matches every request.
    pub matches: Vec<Match>,
    pub action: Action,
    pub fault: Option<Fault>,
    /// None: no timeout (Istio's default).
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub mirrors: Vec<Mirror>,
    pub rewrite: Option<Rewrite>,
    pub headers: HeaderOps,
}

pub enum Action {
    Forward(Vec<WeightedCluster>),
    Redirect(Redirect),
    Direct { status: u16, body: Bytes },
}

pub struct WeightedCluster {
    pub weight: u32,
    pub cluster: Arc<Cluster>,
    pub headers: HeaderOps,
}

pub struct Mirror {
    pub cluster: Arc<Cluster>,
    /// 0..=100.
    pub percent: f64,
}

pub struct Rewrite {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub regex: Option<(regex::Regex, String)>,
}

pub struct Redirect {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub port: Option<u16>,
    pub scheme: Option<String>,
    pub code: u16,
}

/// Header edits for the request and the response.
#[derive(Default, Clone)]
pub struct HeaderOps {
    pub request: HeaderEdit,
    pub response: HeaderEdit,
}

#[derive(Default, Clone)]
pub struct HeaderEdit {
    pub set: Vec<(HeaderName, http::HeaderValue)>,
    pub add: Vec<(HeaderName, http::HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderEdit {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
    /// Every header name the edit sets, adds or removes.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        let set = self.set.iter().map(|(n, _)| n);
        set.chain(self.add.iter().map(|(n, _)| n))
            .chain(&self.remove)
    }

    pub fn apply(&self, h: &mut http::HeaderMap) {
        for n in &self.remove {
            h.remove(n);
        }
        for (n, v) in &self.set {
            h.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            h.append(n.clone(), v.clone());
        }
    }
}

/// An Envoy-style cluster: one destination host, port and subset.
pub struct Cluster {
    /// `outbound|9080|v1|reviews.default.svc.cluster.local`; port 0 when taken from the request.
    pub name: String,
    /// Destination labels for requests that get no endpoint (UH).
    pub labels: Arc<DestLabels>,
    /// None: the request's port is used (a host dialled directly without a known port).
    pub port: Option<u16>,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// The route names a subset the DestinationRule does not define (503 NC).
    pub missing_subset: bool,
    pub lb: LbPolicy,
    pub limiter: Option<Arc<Limiter>>,
    pub outlier: Option<OutlierPolicy>,
    pub http2: bool,
    pub state: Arc<ClusterState>,
    /// DestinationRule TLS for the endpoints.
    pub tls: crate::tls::UpstreamTls,
    /// The ServiceEntry says MESH_EXTERNAL: no auto mTLS.
    pub mesh_external: bool,
}

/// One upstream address.
pub struct Endpoint {
    /// Host or IP, dialled with `port` (or the request's port).
    pub host: String,
    pub port: Option<u16>,
    pub labels: BTreeMap<String, String>,
    pub dest_labels: Arc<DestLabels>,
    pub health: Arc<EndpointHealth>,
    /// `host:port` when the port is known, formatted once (see [`Endpoint::address`]).
    pub dial: Option<Arc<str>>,
}

impl Endpoint {
    pub fn new(
        host: String,
        port: Option<u16>,
        labels: BTreeMap<String, String>,
        dest_labels: Arc<DestLabels>,
        health: Arc<EndpointHealth>,
    ) -> Self {
        let dial = port.map(|p| Arc::from(format_address(&host, p)));
        Endpoint {
            host,
            port,
            labels,
            dest_labels,
            health,
            dial,
        }
    }

    /// `host:port` to dial; `default_port` when the endpoint has none.
    pub fn address(&self, default_port: u16) -> Arc<str> {
        match &self.dial {
            Some(a) => a.clone(),
            None => Arc::from(format_address(&self.host, default_port)),
        }
    }
}

fn format_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Per-cluster state that survives config reloads.
#[derive(Default)]
pub struct ClusterState {
    pub rr: AtomicU64,
    /// Endpoint health by address, so ejections survive a reload.
    pub endpoints: Mutex<HashMap<String, Arc<EndpointHealth>>>,
    pub limiter: Mutex<Option<Arc<Limiter>>>,
}

impl ClusterState {
    pub fn next_rr(&self) -> u64 {
        self.rr.fetch_add(1, Ordering::Relaxed)
    }
}

/// Cluster states by cluster name, owned by the proxy.
#[derive(Default)]
pub struct StateRegistry {
    pub clusters: Mutex<HashMap<String, Arc<ClusterState>>>,
}

impl StateRegistry {
    pub fn cluster(&self, name: &str) -> Arc<ClusterState> {
        self.clusters
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Forgets clusters the current config no longer has.
    pub fn retain(&self, live: &std::collections::HashSet<String>) {
        self.clusters.lock().retain(|k, _| live.contains(k));
    }
}
