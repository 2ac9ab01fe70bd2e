//! What the request path knows about the downstream connection a request arrived on: the
//! peer's address and, once the connection is mutual TLS, the identity its certificate
//! proves. Built once per connection and shared by its requests.

use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// How the connection is secured.
    pub security: Security,
    /// The SPIFFE id (`spiffe://TRUST_DOMAIN/ns/NS/sa/SA`) proven by the peer's client
    /// certificate; `None` on a plaintext connection.
    pub principal: Option<Arc<str>>,
}

/// Istio's `connection_security_policy` label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Security {
    #[default]
    None,
    MutualTls,
}

impl Security {
    pub fn label(self) -> &'static str {
        match self {
            Security::None => "none",
            Security::MutualTls => "mutual_tls",
        }
    }
}

impl ConnInfo {
    /// A plaintext connection from `peer`.
    pub fn plain(peer: SocketAddr) -> Arc<Self> {
        Arc::new(ConnInfo {
            peer,
            security: Security::None,
            principal: None,
        })
    }
}
