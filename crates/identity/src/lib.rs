//! meshlens-identity: workload identities and the mesh's mutual TLS. A small CA ([`Ca`])
//! signs short-lived certificates whose URI name is a SPIFFE id ([`SpiffeId`]); a
//! [`CertSource`] serves a workload's certificate from files and follows their rotation; the
//! [`tls`] module builds rustls configurations that authenticate peers by SPIFFE id against
//! the mesh root; [`HandshakeFailure`] names why a handshake failed, for counting.
//!
//! Design decision: identities are checked by URI name and trust domain, never by DNS name,
//! and the files are Istio's (`cert-chain.pem`, `key.pem`, `root-cert.pem`) so that the same
//! directory layout works with Istio's tooling. rustls with the ring provider only.

pub mod ca;
pub mod failure;
pub mod source;
pub mod spiffe;
pub mod tls;

use std::path::PathBuf;

use rustls_pki_types::CertificateDer;

pub use ca::{Ca, Issued, DEFAULT_TTL};
pub use failure::HandshakeFailure;
pub use source::{CertSource, Snapshot};
pub use spiffe::{SpiffeError, SpiffeId};
pub use tls::{client_config, client_config_expecting, peer_identity, server_config, ClientAuth};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a CA already exists in {dir} ({file} is there); refusing to overwrite it")]
    CaExists { dir: PathBuf, file: PathBuf },
    #[error("no CA in {dir}: {missing} is missing")]
    NoCa { dir: PathBuf, missing: PathBuf },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Spiffe(#[from] SpiffeError),
    #[error("the certificate lifetime must be longer than zero")]
    Ttl,
    #[error("signing a certificate: {0}")]
    Sign(#[from] rcgen::Error),
}

/// The crypto provider every config and check here uses.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The SPIFFE id in a certificate's URI names (the first that parses), if any. Does not
/// verify the certificate.
pub fn spiffe_of(cert: &CertificateDer<'_>) -> Option<SpiffeId> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    let id = ee.valid_uri_names().find_map(|u| u.parse().ok());
    id
}

/// A certificate's serial number (big-endian bytes), if it parses.
pub fn serial_of(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    Some(ee.serial().to_vec())
}

#[cfg(test)]
mod handshake_tests;
