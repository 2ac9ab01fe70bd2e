//! A Prometheus-style `tls_config` as a rustls client configuration (ring provider, no
//! OpenSSL): the CA to trust (else the system's roots), a client certificate, the name to
//! verify, TLS 1.3 only or not, and `insecure_skip_verify`. One builder for the scrape, the
//! notifier and the probe clients, so they trust and refuse the same peers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::pem::{parse_certs, parse_key};

/// Why a client TLS configuration could not be built; `field` is the setting's name
/// (`ca_file`, `cert_file`, `key_file`), for the caller to place in its own message.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
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
    #[error("cert_file and key_file must be configured together")]
    CertWithoutKey,
    #[error("{0:?} is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A client's TLS settings, borrowed from whichever configuration holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientTls<'a> {
    /// Trust only these CAs (as Prometheus does); without it the system's roots.
    pub ca_file: Option<&'a Path>,
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
    /// The name to verify (and send as SNI) instead of the address's host; empty is unset.
    pub server_name: Option<&'a str>,
    pub insecure_skip_verify: bool,
    /// `min_version: TLS13`; otherwise TLS 1.2 and 1.3 (all rustls speaks).
    pub tls13_only: bool,
}

impl ClientTls<'_> {
    /// Builds the configuration, reading the files named; the roots are the CA file's or
    /// the system's.
    pub fn client_config(&self) -> Result<ClientConfig, ClientTlsError> {
        let roots = if self.insecure_skip_verify {
            RootCertStore::empty()
        } else {
            roots(self.ca_file)?
        };
        self.client_config_with_roots(Arc::new(roots))
    }

    /// As [`client_config`](Self::client_config), trusting `roots` instead of reading
    /// `ca_file`: for a caller that keeps the roots (e.g. to report chain expiry).
    pub fn client_config_with_roots(
        &self,
        roots: Arc<RootCertStore>,
    ) -> Result<ClientConfig, ClientTlsError> {
        let provider = provider();
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls13_only {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                    algorithms: provider.signature_verification_algorithms,
                }))
        } else {
            builder.with_root_certificates(roots)
        };
        Ok(match (self.cert_file, self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = read_certs("cert_file", cert)?;
                let bytes = read("key_file", key)?;
                let key = parse_key(&bytes).map_err(|e| pem_error("key_file", key, e))?;
                builder.with_client_auth_cert(chain, key)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(ClientTlsError::CertWithoutKey),
        })
    }

    /// The name `server_name` asks to verify, if set and not empty.
    pub fn server_name(&self) -> Result<Option<ServerName<'static>>, ClientTlsError> {
        self.server_name
            .filter(|n| !n.is_empty())
            .map(parse_server_name)
            .transpose()
    }

    /// A hyper connector for plain HTTP and, with these settings, HTTPS (HTTP/1.1), as every
    /// outgoing client (scrapes, Alertmanager) builds one whatever a URL's scheme.
    pub fn https_connector(
        &self,
    ) -> Result<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        ClientTlsError,
    > {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.client_config()?)
            .https_or_http();
        let builder = match self.server_name()? {
            Some(name) => {
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        Ok(builder.enable_http1().wrap_connector(http))
    }
}

/// The provider every client uses, chosen explicitly so that no process-wide default
/// needs installing.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A DNS name or an IP address (brackets around an IPv6 address allowed).
pub fn parse_server_name(name: &str) -> Result<ServerName<'static>, ClientTlsError> {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|_| ClientTlsError::ServerName(name.into()))
}

/// The certificates of a PEM file; at least one. `field` names the setting in errors.
pub fn read_certs(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
    let bytes = read(field, path)?;
    parse_certs(&bytes).map_err(|e| pem_error(field, path, e))
}

/// The system's CA certificates; none (logged at debug) when the system has none.
pub fn system_root_certs() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        tracing::debug!(errors = ?found.errors, "no system CA certificates found");
    }
    found.certs
}

/// The CA file's certificates when given (then only those), else the system's. Without
/// system roots every https peer fails its handshake, which the caller's errors then show.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, ClientTlsError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs("ca_file", path)? {
                store.add(cert).map_err(|e| pem_error("ca_file", path, e))?;
            }
        }
        None => {
            store.add_parsable_certificates(system_root_certs());
        }
    }
    Ok(store)
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, ClientTlsError> {
    std::fs::read(path).map_err(|source| ClientTlsError::Read {
        field,
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(field: &'static str, path: &Path, e: impl std::fmt::Display) -> ClientTlsError {
    ClientTlsError::Pem {
        field,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write test file");
        p
    }

    #[test]
    fn reads_ca_and_client_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).expect("ca");
        let ca_file = write(dir.path(), "ca.pem", &ca.cert.pem());
        let cert_file = write(dir.path(), "c.pem", &ca.cert.pem());
        let key_file = write(dir.path(), "k.pem", &ca.key_pair.serialize_pem());
        let tls = ClientTls {
            ca_file: Some(&ca_file),
            cert_file: Some(&cert_file),
            key_file: Some(&key_file),
            server_name: Some("[::1]"),
            tls13_only: true,
            ..ClientTls::default()
        };
        let config = tls.client_config().expect("config");
        assert!(config.client_auth_cert_resolver.has_certs());
        assert!(matches!(
            tls.server_name(),
            Ok(Some(ServerName::IpAddress(_)))
        ));
    }

    #[test]
    fn refuses_bad_files_and_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = write(dir.path(), "empty.pem", "nothing here");
        let ca = ClientTls {
            ca_file: Some(&empty),
            ..ClientTls::default()
        };
        let err = ca.client_config().expect_err("empty CA file accepted");
        assert!(
            matches!(
                &err,
                ClientTlsError::Pem {
                    field: "ca_file",
                    ..
                }
            ),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        let cert_only = ClientTls {
            cert_file: Some(&missing),
            insecure_skip_verify: true,
            ..ClientTls::default()
        };
        assert!(matches!(
            cert_only.client_config(),
            Err(ClientTlsError::CertWithoutKey)
        ));
        let no_cert = ClientTls {
            cert_file: Some(&missing),
            key_file: Some(&missing),
            insecure_skip_verify: true,
            ..ClientTls::default()
        };
        assert!(matches!(
            no_cert.client_config(),
            Err(ClientTlsError::Read {
                field: "cert_file",
                ..
            })
        ));
        let bad_name = ClientTls {
            server_name: Some("not a name"),
            ..ClientTls::default()
        };
        assert!(matches!(
            bad_name.server_name(),
            Err(ClientTlsError::ServerName(_))
        ));
        let unset = ClientTls {
            server_name: Some(""),
            ..ClientTls::default()
        };
        assert!(matches!(unset.server_name(), Ok(None)));
    }
}
