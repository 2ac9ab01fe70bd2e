//! A scrape job's `tls_config` as a rustls client configuration (ring provider, no OpenSSL):
//! the CA to trust (else the system's roots), a client certificate, the name to verify,
//! the lowest protocol version, and `insecure_skip_verify`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::{TlsConfig, TlsVersion};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("reading {field} {path}: {source}")]
    Read {
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{field} {path}: {reason}")]
    Pem {
        field: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("tls_config.server_name {0:?} is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The provider every scrape client uses, chosen explicitly so that no process-wide default
/// needs installing.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The name `tls_config.server_name` asks to verify, if any.
pub fn server_name(tls: &TlsConfig) -> Result<Option<ServerName<'static>>, TlsSetupError> {
    tls.server_name
        .as_ref()
        .map(|n| {
            let bare = n.trim_start_matches('[').trim_end_matches(']');
            ServerName::try_from(bare.to_string()).map_err(|_| TlsSetupError::ServerName(n.clone()))
        })
        .transpose()
}

/// Builds the rustls configuration for one job.
pub fn client_config(tls: &TlsConfig) -> Result<ClientConfig, TlsSetupError> {
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
    } else {
        builder.with_root_certificates(roots(tls.ca_file.as_deref())?)
    };
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("cert_file", cert)?;
            let bytes = read("key_file", key)?;
            let key = meshlens_access::parse_key(&bytes).map_err(|e| TlsSetupError::Pem {
                field: "key_file",
                path: key.to_path_buf(),
                reason: e.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// The CA file's certificates when given (then only those, as Prometheus does), else the
/// system's.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs("ca_file", path)? {
                store.add(cert).map_err(|e| TlsSetupError::Pem {
                    field: "ca_file",
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            // With no system roots every https target fails its handshake with an unknown
            // issuer, which /api/v1/targets then shows; plain-http targets are unaffected.
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::debug!(errors = ?found.errors, "no system CA certificates found");
            }
        }
    }
    Ok(store)
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        field,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = read(field, path)?;
    meshlens_access::parse_certs(&bytes).map_err(|e| TlsSetupError::Pem {
        field,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `insecure_skip_verify`: any certificate and any name are accepted; the handshake's
/// signatures are still checked, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
