//! Peer identity exchange, so that an inbound (`reporter="destination"`) proxy can name its
//! caller in the `source_*` labels.
//!
//! Istio's sidecars exchange peer metadata in `x-envoy-peer-metadata` (a base64 protobuf
//! `Struct` of the node's labels) and `x-envoy-peer-metadata-id`. meshlens uses the same idea
//! with a header that is cheap to write and read and easy to debug:
//!
//! ```text
//! x-meshlens-peer: workload=productpage-v1;app=productpage;version=v1;namespace=default;cluster=Kubernetes
//! ```
//!
//! Values are percent-encoded where they hold anything but `[A-Za-z0-9._~:/+-]`; unknown keys
//! are ignored and missing ones read as `unknown`. An outbound (`reporter="source"`) proxy
//! sets the header on every upstream request (replacing whatever the application sent); an
//! inbound proxy reads it, and removes it before forwarding to its application. The header
//! value is rendered once per proxy; the inbound side caches parsed values, so neither side
//! allocates per request once warm.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use parking_lot::RwLock;

use super::metrics::{DestLabels, PeerLabels};

/// The header carrying the caller's identity.
pub const PEER_HEADER: HeaderName = HeaderName::from_static("x-meshlens-peer");

/// Entries kept in each cache. A client can send any header or Host, and neither the caches
/// nor the metrics' label sets may grow without bound: past the limit, new values read as
/// `unknown`.
const CACHE_LIMIT: usize = 1024;

/// The header value naming `p`.
pub fn encode(p: &PeerLabels) -> HeaderValue {
    let mut s = String::with_capacity(96);
    for (k, v) in [
        ("workload", &p.workload),
        ("app", &p.app),
        ("version", &p.version),
        ("namespace", &p.workload_namespace),
        ("cluster", &p.cluster),
    ] {
        if !s.is_empty() {
            s.push(';');
        }
        s.push_str(k);
        s.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"._~:/+-".contains(&b) {
                s.push(b as char);
            } else {
                s.push_str(&format!("%{b:02X}"));
            }
        }
    }
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Reads a header value; `None` when it names no workload.
pub fn decode(v: &[u8]) -> Option<PeerLabels> {
    let s = std::str::from_utf8(v).ok()?;
    let unknown = || "unknown".to_string();
    let mut p = PeerLabels {
        workload: unknown(),
        workload_namespace: unknown(),
        principal: unknown(),
        app: unknown(),
        version: unknown(),
        canonical_service: unknown(),
        canonical_revision: "latest".into(),
        cluster: unknown(),
    };
    let mut any = false;
    for kv in s.split(';') {
        let Some((k, v)) = kv.trim().split_once('=') else {
            continue;
        };
        let Some(v) = unescape(v).filter(|v| !v.is_empty()) else {
            continue;
        };
        match k {
            "workload" => {
                p.workload = v;
                any = true;
            }
            "app" => p.app = v,
            "version" => p.version = v,
            "namespace" => p.workload_namespace = v,
            "cluster" => p.cluster = v,
            _ => {}
        }
    }
    if !any {
        return None;
    }
    if p.app != "unknown" {
        p.canonical_service = p.app.clone();
    }
    if p.version != "unknown" {
        p.canonical_revision = p.version.clone();
    }
    Some(p)
}

fn unescape(v: &str) -> Option<String> {
    if !v.contains('%') {
        return Some(v.to_string());
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What an inbound proxy needs to label a request: its own identity (the `destination_*`
/// side) and its callers' (the `source_*` side, from [`PEER_HEADER`]).
pub struct Inbound {
    /// The proxy's own workload, as destination labels.
    own: PeerLabels,
    namespace: String,
    unknown_source: Arc<PeerLabels>,
    sources: RwLock<HashMap<Bytes, Arc<PeerLabels>>>,
    /// Destination labels by resolved service FQDN.
    by_service: RwLock<HashMap<String, Arc<DestLabels>>>,
    /// Destination labels by request host (no service resolved).
    by_host: RwLock<HashMap<String, Arc<DestLabels>>>,
    /// Past the cache limit of hosts.
    unknown_host: Arc<DestLabels>,
}

impl Inbound {
    pub fn new(own: PeerLabels) -> Self {
        let namespace = own.workload_namespace.clone();
        let unknown_host = Arc::new(DestLabels {
            peer: own.clone(),
            ..DestLabels::unknown()
        });
        Inbound {
            own,
            unknown_host,
            namespace,
            unknown_source: Arc::new(DestLabels::unknown().peer),
            sources: RwLock::default(),
            by_service: RwLock::default(),
            by_host: RwLock::default(),
        }
    }

    /// The caller named by the request's [`PEER_HEADER`], or all-`unknown`.
    pub fn source(&self, header: Option<&HeaderValue>) -> Arc<PeerLabels> {
        let Some(h) = header else {
            return self.unknown_source.clone();
        };
        if let Some(p) = self.sources.read().get(h.as_bytes()) {
            return p.clone();
        }
        let mut cache = self.sources.write();
        if cache.len() >= CACHE_LIMIT {
            return self.unknown_source.clone();
        }
        let p = match decode(h.as_bytes()) {
            Some(p) => Arc::new(p),
            None => self.unknown_source.clone(),
        };
        cache.insert(Bytes::copy_from_slice(h.as_bytes()), p.clone());
        p
    }

    /// Destination labels: this proxy's workload, and the service the route resolved
    /// (`routed.service != "unknown"`) or else the request's host (without port, completed
    /// to a cluster name in this proxy's namespace).
    pub fn dest(&self, routed: &DestLabels, authority: &str) -> Arc<DestLabels> {
        if routed.service != "unknown" {
            let key = routed.service.as_str();
            if let Some(d) = self.by_service.read().get(key) {
                return d.clone();
            }
            let d = Arc::new(DestLabels {
                peer: self.own.clone(),
                service: routed.service.clone(),
                service_name: routed.service_name.clone(),
                service_namespace: routed.service_namespace.clone(),
            });
            return Self::remember(&self.by_service, key, d);
        }
        let (host, _) = crate::route::split_authority(authority, 80);
        if let Some(d) = self.by_host.read().get(&*host) {
            return d.clone();
        }
        // As a routed request would name it: the host completed in this namespace.
        let service = meshlens_mesh::host::fqdn(&host, &self.namespace);
        let (name, ns) = meshlens_mesh::host::service_name_namespace(&service, &self.namespace);
        let d = Arc::new(DestLabels {
            peer: self.own.clone(),
            service_name: name.to_string(),
            service_namespace: ns.to_string(),
            service,
        });
        if self.by_host.read().len() >= CACHE_LIMIT {
            return self.unknown_host.clone();
        }
        Self::remember(&self.by_host, &host, d)
    }

    fn remember(
        map: &RwLock<HashMap<String, Arc<DestLabels>>>,
        key: &str,
        d: Arc<DestLabels>,
    ) -> Arc<DestLabels> {
        map.write().entry(key.to_string()).or_insert(d).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_escapes() {
        let p = PeerLabels {
            workload: "product page;v1".into(),
            workload_namespace: "default".into(),
            principal: "unknown".into(),
            app: "productpage".into(),
            version: "v1".into(),
            canonical_service: "productpage".into(),
            canonical_revision: "v1".into(),
            cluster: "Kubernetes".into(),
        };
        let h = encode(&p);
        assert_eq!(
            h.to_str().unwrap(),
            "workload=product%20page%3Bv1;app=productpage;version=v1;namespace=default;cluster=Kubernetes"
        );
        assert_eq!(decode(h.as_bytes()), Some(p));
        assert_eq!(decode(b"app=x"), None, "no workload");
        assert_eq!(decode(b"workload=%zz"), None, "bad escape");
        let partial = decode(b"workload=w").unwrap();
        assert_eq!(partial.app, "unknown");
        assert_eq!(partial.canonical_revision, "latest");
    }
}
