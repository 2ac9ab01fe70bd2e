//! Mutual TLS in the proxy: the workload identity it presents, what its inbound listener
//! accepts (PeerAuthentication, [`inbound`]), what it originates toward endpoints
//! (DestinationRule `tls`, [`upstream`]), and the handshake failures it counts.
//!
//! Auto mTLS: with no TLS setting in the DestinationRule, a proxy that has an identity
//! (`--cert-dir`) treats every endpoint as a mesh workload and originates the mesh's mutual
//! TLS, unless the ServiceEntry says `MESH_EXTERNAL`; `tls.mode: DISABLE` opts an endpoint out
//! (a plain backend with no proxy in front). A proxy without an identity speaks plaintext
//! unless a rule asks for SIMPLE or MUTUAL, and fails (UF) a rule that asks for ISTIO_MUTUAL.
//! An inbound proxy (`reporter=destination`) forwards to its own application beside it, so
//! it never originates the mesh's mTLS (as Envoy's inbound listeners ignore DestinationRule
//! TLS), whatever the shared mesh directory says for the service.
//!
//! The identity's files are re-read every reload interval; new handshakes, both ways, take
//! the new certificate while open connections keep theirs.

pub mod inbound;
pub mod policy;
pub mod upstream;

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::Hash;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use meshlens_identity::{CertSource, ClientAuth, HandshakeFailure, IdentityError, SpiffeId};
use rustls::ServerConfig;

use crate::conn::ConnInfo;
use crate::telemetry::metrics::{DestLabels, PeerLabels};
pub use policy::{InboundMtls, MtlsMode, UpstreamTls};
pub use upstream::{TlsTarget, UpstreamPeer};

/// Handshake failures by reason, both directions.
#[derive(Default)]
pub struct Failures {
    by_reason: [AtomicU64; HandshakeFailure::ALL.len()],
}

impl Failures {
    pub fn count(&self, why: HandshakeFailure) {
        let i = HandshakeFailure::ALL
            .iter()
            .position(|w| *w == why)
            .unwrap_or(HandshakeFailure::ALL.len() - 1);
        self.by_reason[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, why: HandshakeFailure) -> u64 {
        HandshakeFailure::ALL
            .iter()
            .position(|w| *w == why)
            .map_or(0, |i| self.by_reason[i].load(Ordering::Relaxed))
    }

    /// `meshlens_proxy_tls_handshake_failures_total{reason="…"}` in the text format.
    pub fn render(&self, out: &mut String) {
        let name = "meshlens_proxy_tls_handshake_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} TLS handshakes that failed, by reason (inbound and outbound).\n# TYPE {name} counter"
        );
        for (i, why) in HandshakeFailure::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{}\"}} {}",
                why.label(),
                self.by_reason[i].load(Ordering::Relaxed)
            );
        }
    }
}

/// The proxy's workload identity and the TLS configurations built on it.
pub struct ProxyIdentity {
    pub source: Arc<CertSource>,
    pub id: SpiffeId,
    /// The identity as a label value.
    pub principal: Arc<str>,
    server_required: Arc<ServerConfig>,
    server_optional: Arc<ServerConfig>,
    pub mesh: Arc<TlsTarget>,
}

impl ProxyIdentity {
    /// Loads `cert-chain.pem`, `key.pem` and `root-cert.pem` from `dir`.
    pub fn load(dir: &Path) -> Result<ProxyIdentity, IdentityError> {
        let source = CertSource::load(dir)?;
        let id = source.current().id.clone();
        Ok(ProxyIdentity {
            principal: Arc::from(id.to_string()),
            id,
            server_required: meshlens_identity::server_config(&source, ClientAuth::Required),
            server_optional: meshlens_identity::server_config(&source, ClientAuth::Optional),
            mesh: Arc::new(TlsTarget::mesh(&source)),
            source,
        })
    }

    pub fn server_config(&self, strict: bool) -> Arc<ServerConfig> {
        if strict {
            self.server_required.clone()
        } else {
            self.server_optional.clone()
        }
    }
}

/// What the request path needs: the identity (if any), the failure counters, and the
/// label caches that put proven principals into telemetry.
#[derive(Default)]
pub struct Context {
    pub identity: Option<Arc<ProxyIdentity>>,
    /// Destination labels with the upstream's proven principal.
    pub dests: PrincipalCache<DestLabels>,
    /// Caller labels with the principal its client certificate proved.
    pub sources: PrincipalCache<PeerLabels>,
    /// An inbound proxy: no mesh mTLS toward its application (see the module doc).
    pub inbound: bool,
    /// Mesh targets expecting particular server identities, by those identities.
    pub expecting: parking_lot::Mutex<HashMap<Arc<[SpiffeId]>, Arc<TlsTarget>>>,
}

/// Whether a cluster's connections are TLS, and how.
pub enum Origination {
    Plain,
    Tls(Arc<TlsTarget>),
    /// ISTIO_MUTUAL asked for, but this proxy has no identity.
    NoIdentity,
}

impl Context {
    /// The TLS for a cluster's endpoints (see the module doc for auto mTLS).
    pub fn origination(&self, tls: &UpstreamTls, mesh_external: bool) -> Origination {
        match (tls, &self.identity) {
            (UpstreamTls::Disable, _) => Origination::Plain,
            (UpstreamTls::Custom(t), _) => Origination::Tls(t.clone()),
            _ if self.inbound => Origination::Plain,
            (UpstreamTls::IstioMutual(want), Some(id)) if want.is_empty() => {
                Origination::Tls(id.mesh.clone())
            }
            (UpstreamTls::IstioMutual(want), Some(id)) => Origination::Tls(
                self.expecting
                    .lock()
                    .entry(want.clone())
                    .or_insert_with(|| Arc::new(TlsTarget::mesh_expecting(&id.source, want)))
                    .clone(),
            ),
            (UpstreamTls::IstioMutual(_), None) => Origination::NoIdentity,
            (UpstreamTls::Auto, Some(id)) if !mesh_external => Origination::Tls(id.mesh.clone()),
            (UpstreamTls::Auto, _) => Origination::Plain,
        }
    }

    /// The caller's labels with the principal the connection proved (else as given).
    pub fn source_labels(&self, base: Arc<PeerLabels>, conn: &ConnInfo) -> Arc<PeerLabels> {
        match &conn.principal {
            Some(p) => self
                .sources
                .with(&base, p, |l, p| l.principal = p.to_string()),
            None => base,
        }
    }

    /// The destination's labels with the principal its server certificate proved.
    pub fn dest_labels(
        &self,
        base: &Arc<DestLabels>,
        peer: Option<&UpstreamPeer>,
    ) -> Arc<DestLabels> {
        match peer.and_then(|p| p.principal.as_ref()) {
            Some(p) => self
                .dests
                .with(base, p, |l, p| l.peer.principal = p.to_string()),
            None => base.clone(),
        }
    }
}

/// Label sets with a proven principal filled in, shared by the requests of all connections
/// of one peer so that a request costs a lookup, not a copy of a dozen strings. Bounded:
/// past the limit a copy is made per request.
pub struct PrincipalCache<T> {
    map: parking_lot::RwLock<HashMap<PrincipalKey<T>, Arc<T>>>,
}

/// Labels as received, and the principal to put in.
type PrincipalKey<T> = (Arc<T>, Arc<str>);

impl<T> Default for PrincipalCache<T> {
    fn default() -> Self {
        PrincipalCache {
            map: Default::default(),
        }
    }
}

const PRINCIPAL_CACHE_LIMIT: usize = 4096;

impl<T: Clone + Hash + Eq> PrincipalCache<T> {
    /// `base` with `set(principal)` applied.
    pub fn with(&self, base: &Arc<T>, principal: &Arc<str>, set: fn(&mut T, &str)) -> Arc<T> {
        let key = (base.clone(), principal.clone());
        if let Some(v) = self.map.read().get(&key) {
            return v.clone();
        }
        let mut v = (**base).clone();
        set(&mut v, principal);
        let v = Arc::new(v);
        let mut map = self.map.write();
        if map.len() < PRINCIPAL_CACHE_LIMIT {
            map.insert(key, v.clone());
        }
        v
    }
}
