//! Originating TLS toward an endpoint: the mesh's mutual TLS (ISTIO_MUTUAL and auto mTLS) or
//! a DestinationRule's SIMPLE / MUTUAL settings. A [`TlsTarget`] carries one client
//! configuration per HTTP version (ALPN offers exactly the protocol the proxy will speak) and
//! the tag that keeps its pooled connections apart from plaintext ones and other targets'.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meshlens_identity::{CertSource, HandshakeFailure, SpiffeId};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::Failures;
use crate::conn::Security;

/// How long a TLS handshake toward an endpoint may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TlsTarget {
    h1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
    /// No ALPN: TCP routes carry bytes of no protocol the handshake could name.
    opaque: Arc<ClientConfig>,
    /// Distinguishes pooled connections: `mesh`, or one per SIMPLE/MUTUAL setting.
    pub tag: Arc<str>,
    sni: Option<ServerName<'static>>,
    /// The mesh's mutual TLS: the server's SPIFFE id is reported as `destination_principal`.
    pub mesh: bool,
}

/// What a response learned about the connection it came over, left in its extensions for
/// telemetry.
#[derive(Debug, Clone)]
pub struct UpstreamPeer {
    pub security: Security,
    pub principal: Option<Arc<str>>,
}

fn with_alpn(cfg: &ClientConfig, proto: &[u8]) -> Arc<ClientConfig> {
    let mut c = cfg.clone();
    c.alpn_protocols = vec![proto.to_vec()];
    Arc::new(c)
}

fn without_alpn(cfg: &ClientConfig) -> Arc<ClientConfig> {
    let mut c = cfg.clone();
    c.alpn_protocols.clear();
    Arc::new(c)
}

static CUSTOM_TAGS: AtomicU64 = AtomicU64::new(0);

impl TlsTarget {
    /// The mesh's mutual TLS with this proxy's identity: any identity of the trust domain
    /// is accepted from the server (authorization is the server's side).
    pub fn mesh(source: &Arc<CertSource>) -> TlsTarget {
        Self::mesh_expecting(source, &[])
    }

    /// The mesh's mutual TLS accepting only servers proving one of `expected` (a
    /// DestinationRule's `subjectAltNames`); any of the trust domain when empty.
    pub fn mesh_expecting(source: &Arc<CertSource>, expected: &[SpiffeId]) -> TlsTarget {
        let cfg = meshlens_identity::client_config_expecting(source, expected.to_vec());
        let tag = std::iter::once("mesh".to_string())
            .chain(expected.iter().map(|id| id.to_string()))
            .collect::<Vec<_>>()
            .join(" ");
        TlsTarget {
            h1: with_alpn(&cfg, b"http/1.1"),
            h2: with_alpn(&cfg, b"h2"),
            opaque: without_alpn(&cfg),
            tag: Arc::from(tag),
            sni: None,
            mesh: true,
        }
    }

    /// A DestinationRule's SIMPLE (no client certificate) or MUTUAL TLS, with its files.
    pub fn from_files(
        ca: Option<&str>,
        client: Option<(&str, &str)>,
        sni: Option<String>,
        insecure: bool,
    ) -> Result<TlsTarget, String> {
        let settings = meshlens_access::ClientTls {
            ca_file: ca.map(std::path::Path::new),
            cert_file: client.map(|(c, _)| std::path::Path::new(c)),
            key_file: client.map(|(_, k)| std::path::Path::new(k)),
            server_name: sni.as_deref(),
            insecure_skip_verify: insecure,
            tls13_only: false,
        };
        let cfg = settings.client_config().map_err(|e| e.to_string())?;
        let sni = settings.server_name().map_err(|e| e.to_string())?;
        let n = CUSTOM_TAGS.fetch_add(1, Ordering::Relaxed);
        Ok(TlsTarget {
            h1: with_alpn(&cfg, b"http/1.1"),
            h2: with_alpn(&cfg, b"h2"),
            opaque: without_alpn(&cfg),
            tag: Arc::from(format!("tls{n}")),
            sni,
            mesh: false,
        })
    }

    /// Handshakes over `tcp` to `addr` (`host:port`) offering HTTP/2 or HTTP/1.1 by ALPN;
    /// failures are counted by reason.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        addr: &str,
        http2: bool,
        failures: &Failures,
    ) -> Result<(TlsStream<TcpStream>, UpstreamPeer), String> {
        let cfg = if http2 { &self.h2 } else { &self.h1 };
        self.handshake(cfg, tcp, addr, failures).await
    }

    /// [`Self::connect`] for a TCP route's bytes: no application protocol offered.
    pub async fn connect_opaque(
        &self,
        tcp: TcpStream,
        addr: &str,
        failures: &Failures,
    ) -> Result<(TlsStream<TcpStream>, UpstreamPeer), String> {
        self.handshake(&self.opaque, tcp, addr, failures).await
    }

    async fn handshake(
        &self,
        cfg: &Arc<ClientConfig>,
        tcp: TcpStream,
        addr: &str,
        failures: &Failures,
    ) -> Result<(TlsStream<TcpStream>, UpstreamPeer), String> {
        let name = match &self.sni {
            Some(n) => n.clone(),
            None => server_name(addr),
        };
        let hs = TlsConnector::from(cfg.clone()).connect(name, tcp);
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, hs).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let why = HandshakeFailure::from_io(&e);
                failures.count(why);
                return Err(format!("{addr}: tls handshake failed ({why}): {e}"));
            }
            Err(_) => {
                failures.count(HandshakeFailure::Other);
                return Err(format!("{addr}: tls handshake timeout"));
            }
        };
        let principal = if self.mesh {
            meshlens_identity::peer_identity(tls.get_ref().1.peer_certificates())
                .map(|id| Arc::from(id.to_string()))
        } else {
            None
        };
        let security = if self.mesh {
            Security::MutualTls
        } else {
            Security::None
        };
        Ok((
            tls,
            UpstreamPeer {
                security,
                principal,
            },
        ))
    }
}

/// The name to present: the host of `addr` as an IP address or DNS name (the mesh verifier
/// ignores it; SNI is only sent for DNS names).
fn server_name(addr: &str) -> ServerName<'static> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("mesh.invalid".to_string()).expect("valid name"))
}
