//! Admitting a downstream connection under PeerAuthentication: STRICT takes only mutual TLS
//! with a mesh certificate, PERMISSIVE tells TLS from plaintext by the first byte (a TLS
//! handshake record is 0x16, which starts no HTTP request), DISABLE takes plaintext as it
//! comes. A proxy without an identity cannot serve TLS: under STRICT it refuses every
//! connection (fail closed), otherwise it serves plaintext.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshlens_identity::failure::looks_like_tls;
use meshlens_identity::HandshakeFailure;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::{MtlsMode, ProxyIdentity};
use crate::config::reload::ConfigState;
use crate::conn::{ConnInfo, Security};

/// How long a new connection may take to send its first byte and finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The inbound side's TLS state, one per proxy.
pub struct Inbound {
    pub identity: Option<Arc<ProxyIdentity>>,
    pub config: Arc<ConfigState>,
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
}

/// What to serve a new connection as.
pub enum Admitted {
    Plain(TcpStream),
    /// A TLS session, the connection's context, and whether ALPN chose HTTP/2 (`Some(true)`),
    /// HTTP/1.1 (`Some(false)`) or nothing.
    Tls(Box<TlsStream<TcpStream>>, Arc<ConnInfo>, Option<bool>),
    Refused,
}

impl Inbound {
    /// Decides by the policy in force for the listener's port when the connection arrived.
    pub async fn admit(&self, stream: TcpStream, peer: SocketAddr) -> Admitted {
        let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
        let mode = self.config.table().inbound_mtls.for_port(port);
        let identity = match (mode, &self.identity) {
            (MtlsMode::Disable, _) | (MtlsMode::Permissive, None) => {
                return Admitted::Plain(stream)
            }
            (MtlsMode::Strict, None) => {
                tracing::debug!(%peer, "STRICT mTLS but no workload certificate: connection refused");
                self.metrics
                    .counters
                    .tls_handshake_failures
                    .count(HandshakeFailure::Other);
                return Admitted::Refused;
            }
            (_, Some(id)) => id,
        };
        let strict = mode == MtlsMode::Strict;
        let mut first = [0u8; 1];
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
            Ok(Ok(1)) => {}
            _ => return Admitted::Refused,
        }
        if !looks_like_tls(first[0]) {
            if strict {
                tracing::debug!(%peer, "plaintext connection refused under STRICT mTLS");
                self.metrics
                    .counters
                    .tls_handshake_failures
                    .count(HandshakeFailure::NotTls);
                return Admitted::Refused;
            }
            return Admitted::Plain(stream);
        }
        let accept = TlsAcceptor::from(identity.server_config(strict)).accept(stream);
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                let why = HandshakeFailure::from_io(&e);
                tracing::debug!(%peer, reason = %why, error = %e, "inbound tls handshake failed");
                self.metrics.counters.tls_handshake_failures.count(why);
                return Admitted::Refused;
            }
            Err(_) => {
                self.metrics
                    .counters
                    .tls_handshake_failures
                    .count(HandshakeFailure::Other);
                return Admitted::Refused;
            }
        };
        let session = tls.get_ref().1;
        let principal = meshlens_identity::peer_identity(session.peer_certificates())
            .map(|id| Arc::<str>::from(id.to_string()));
        let h2 = session.alpn_protocol().map(|p| p == b"h2");
        let conn = Arc::new(ConnInfo {
            peer,
            security: if principal.is_some() {
                Security::MutualTls
            } else {
                Security::None
            },
            principal,
        });
        Admitted::Tls(Box::new(tls), conn, h2)
    }
}
