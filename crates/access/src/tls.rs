//! Turns validated [`TlsSettings`] into a rustls `ServerConfig` on the *ring* provider:
//! certificates and keys are read here, so a missing or bad file is an error at (re)load.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring as ring_provider, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoClientAuth, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::webconfig::{ClientAuth, PemSource, TlsSettings, TlsVersion, WebConfigError};

pub(crate) fn build_server_config(
    t: &TlsSettings,
    http2: bool,
    file: &str,
) -> Result<Arc<ServerConfig>, WebConfigError> {
    let err = |msg: String| WebConfigError::Tls {
        file: file.to_string(),
        msg,
    };
    let provider = Arc::new(provider_for(t));
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if t.min_version <= TlsVersion::Tls12 && t.max_version >= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if t.max_version >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    let certs = read_certs(&t.cert, "cert_file", file)?;
    let key = read_key(&t.key, file)?;
    let verifier: Arc<dyn ClientCertVerifier> = match t.client_auth {
        ClientAuth::NoClientCert => Arc::new(NoClientAuth),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Arc::new(AnyClientCert {
                mandatory: t.client_auth == ClientAuth::RequireAnyClientCert,
                algs: provider.signature_verification_algorithms,
            })
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let Some(ca) = &t.client_ca else {
                return Err(err(
                    "client_ca_file is required to verify client certificates".into(),
                ));
            };
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca, "client_ca_file", file)? {
                roots
                    .add(c)
                    .map_err(|e| err(format!("client_ca_file: {e}")))?;
            }
            let mut b =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if t.client_auth == ClientAuth::VerifyClientCertIfGiven {
                b = b.allow_unauthenticated();
            }
            b.build().map_err(|e| err(format!("client_ca_file: {e}")))?
        }
    };
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| {
            err(format!(
                "versions and cipher suites do not fit together: {e}"
            ))
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| err(format!("cert_file/key_file: {e}")))?;
    cfg.ignore_client_order = t.prefer_server_cipher_suites;
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(cfg))
}

/// Go's `cipher_suites` only restricts TLS 1.2; TLS 1.3 suites stay unless some are named.
fn provider_for(t: &TlsSettings) -> CryptoProvider {
    let mut p = ring_provider::default_provider();
    if !t.cipher_suites.is_empty() {
        let named13: Vec<_> = t
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        let named12 = t
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .copied();
        let mut suites: Vec<_> = if named13.is_empty() {
            p.cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .copied()
                .collect()
        } else {
            named13
        };
        suites.extend(named12);
        p.cipher_suites = suites;
    }
    if !t.curve_preferences.is_empty() {
        p.kx_groups = t.curve_preferences.clone();
    }
    p
}

fn read_pem_bytes(src: &PemSource, what: &str, file: &str) -> Result<Vec<u8>, WebConfigError> {
    match src {
        PemSource::Inline(s) => Ok(s.expose().as_bytes().to_vec()),
        PemSource::File(p) => std::fs::read(p).map_err(|source| WebConfigError::Read {
            file: format!("{file}: tls_server_config.{what} {}", p.display()),
            source,
        }),
    }
}

fn describe(src: &PemSource) -> String {
    match src {
        PemSource::File(p) => p.display().to_string(),
        PemSource::Inline(_) => "(inline)".into(),
    }
}

fn read_certs(
    src: &PemSource,
    what: &str,
    file: &str,
) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let bytes = read_pem_bytes(src, what, file)?;
    crate::pem::parse_certs(&bytes).map_err(|e| WebConfigError::Tls {
        file: file.to_string(),
        msg: format!("{what} {}: {e}", describe(src)),
    })
}

fn read_key(src: &PemSource, file: &str) -> Result<PrivateKeyDer<'static>, WebConfigError> {
    let bytes = read_pem_bytes(src, "key_file", file)?;
    crate::pem::parse_key(&bytes).map_err(|e| WebConfigError::Tls {
        file: file.to_string(),
        msg: format!("key_file {}: {e}", describe(src)),
    })
}

/// Go's RequestClientCert / RequireAnyClientCert: a certificate is asked for (or required)
/// but its chain is not checked; the handshake signature still must be valid.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
