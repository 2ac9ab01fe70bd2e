//! A set's `tls_config` as a rustls client configuration (ring provider, no OpenSSL): the CA
//! to trust (else the system's roots), a client certificate, `insecure_skip_verify`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::{AmTls, NotifierError};

/// The name `server_name` asks to verify, if any.
pub(crate) fn server_name(tls: &AmTls) -> Result<Option<ServerName<'static>>, NotifierError> {
    tls.server_name
        .as_ref()
        .filter(|n| !n.is_empty())
        .map(|n| {
            let bare = n.trim_start_matches('[').trim_end_matches(']');
            ServerName::try_from(bare.to_string()).map_err(|_| NotifierError::ServerName(n.clone()))
        })
        .transpose()
}

/// Builds the rustls configuration for one set; reads the files named in it.
pub(crate) fn client_config(tls: &AmTls) -> Result<ClientConfig, NotifierError> {
    // Chosen explicitly so that no process-wide default provider needs installing.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
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
    Ok(match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("cert_file", cert)?;
            let bytes = read("key_file", key)?;
            let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| NotifierError::Pem {
                field: "key_file",
                path: key.clone(),
                reason: format!("no usable PEM private key ({e})"),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(NotifierError::CertWithoutKey),
    })
}

/// The CA file's certificates when given (then only those, as Prometheus does), else the
/// system's.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, NotifierError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs("ca_file", path)? {
                store.add(cert).map_err(|e| NotifierError::Pem {
                    field: "ca_file",
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            // Without system roots an https Alertmanager fails its handshake, which the
            // error counter and log then show; plain http is unaffected.
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::debug!(errors = ?found.errors, "no system CA certificates found");
            }
        }
    }
    Ok(store)
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, NotifierError> {
    std::fs::read(path).map_err(|source| NotifierError::Read {
        field,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, NotifierError> {
    let bytes = read(field, path)?;
    let pem_err = |reason: String| NotifierError::Pem {
        field,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no PEM certificate found".into()));
    }
    Ok(certs)
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
