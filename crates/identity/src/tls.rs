//! rustls configurations for mesh mutual TLS.
//!
//! Both sides verify the peer's chain against the mesh root of the current [`CertSource`]
//! snapshot and then look at its SPIFFE id, never at DNS names: in a mesh the name a client
//! dials (a service host, an endpoint address) is not what the certificate proves, the
//! workload identity is. The server accepts any identity of its trust domain (authorization
//! decides later who may do what); the client accepts any identity of the trust domain, or
//! only those the caller expects (Istio's DestinationRule `subjectAltNames`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{provider, spiffe_of, CertSource, SpiffeId};

/// ALPN protocols offered and accepted by default, preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Whether an inbound listener requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Mutual TLS only (PeerAuthentication STRICT).
    Required,
    /// A client without a certificate gets a one-way TLS session (no principal).
    Optional,
}

/// Maps a chain-building failure to the rustls error its alert is derived from.
fn pki_error(e: webpki::Error) -> Error {
    use webpki::Error as E;
    let c = match e {
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => CertificateError::BadSignature,
        E::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        E::UnsupportedCriticalExtension => CertificateError::UnhandledCriticalExtension,
        _ => CertificateError::BadEncoding,
    };
    Error::InvalidCertificate(c)
}

/// Verifies `end_entity` against the source's current roots for `usage`, and returns the
/// SPIFFE id it proves.
fn verify_chain(
    source: &CertSource,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> Result<SpiffeId, Error> {
    let snap = source.current();
    let ee = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
    ee.verify_for_usage(
        provider().signature_verification_algorithms.all,
        &snap.roots.roots,
        intermediates,
        now,
        usage,
        None,
        None,
    )
    .map_err(pki_error)?;
    let id = spiffe_of(end_entity).ok_or(Error::InvalidCertificate(
        CertificateError::ApplicationVerificationFailure,
    ))?;
    if id.trust_domain() != snap.id.trust_domain() {
        return Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ));
    }
    Ok(id)
}

fn schemes() -> Vec<SignatureScheme> {
    provider()
        .signature_verification_algorithms
        .supported_schemes()
}

#[derive(Clone, Copy)]
enum Tls {
    V12,
    V13,
}

/// The handshake signature check both verifiers make, with the provider's algorithms.
fn handshake_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    version: Tls,
) -> Result<HandshakeSignatureValid, Error> {
    let algs = &provider.signature_verification_algorithms;
    match version {
        Tls::V12 => rustls::crypto::verify_tls12_signature(message, cert, dss, algs),
        Tls::V13 => rustls::crypto::verify_tls13_signature(message, cert, dss, algs),
    }
}

/// Checks client certificates for an inbound listener.
#[derive(Debug)]
struct MeshClientVerifier {
    source: Arc<CertSource>,
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for MeshClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: the client has exactly one certificate to offer anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        verify_chain(
            &self.source,
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        handshake_signature(&self.provider, message, cert, dss, Tls::V12)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        handshake_signature(&self.provider, message, cert, dss, Tls::V13)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// Checks server certificates for an outbound connection.
#[derive(Debug)]
pub(crate) struct MeshServerVerifier {
    pub(crate) source: Arc<CertSource>,
    /// Empty: any identity of the trust domain.
    pub(crate) expected: Vec<SpiffeId>,
    pub(crate) provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let id = verify_chain(
            &self.source,
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        if self.expected.is_empty() || self.expected.contains(&id) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        handshake_signature(&self.provider, message, cert, dss, Tls::V12)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        handshake_signature(&self.provider, message, cert, dss, Tls::V13)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// The inbound side: presents the source's current certificate, verifies client
/// certificates against the mesh root, offers ALPN h2 and http/1.1.
pub fn server_config(source: &Arc<CertSource>, auth: ClientAuth) -> Arc<ServerConfig> {
    let provider = Arc::new(provider());
    let verifier = Arc::new(MeshClientVerifier {
        source: source.clone(),
        mandatory: auth == ClientAuth::Required,
        provider: provider.clone(),
    });
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(source.clone());
    // No resumption (see `client_config`).
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// The outbound side: presents the source's current certificate, verifies the server's
/// chain against the mesh root and its SPIFFE id (in the trust domain, or equal to
/// `expected`), offers ALPN h2 and http/1.1 (narrow `alpn_protocols` to speak one).
pub fn client_config(source: &Arc<CertSource>, expected: Option<SpiffeId>) -> Arc<ClientConfig> {
    client_config_expecting(source, expected.into_iter().collect())
}

/// As [`client_config`], accepting a server only if its identity is one of `expected`
/// (any of the trust domain when empty).
pub fn client_config_expecting(
    source: &Arc<CertSource>,
    expected: Vec<SpiffeId>,
) -> Arc<ClientConfig> {
    let provider = Arc::new(provider());
    let verifier = Arc::new(MeshServerVerifier {
        source: source.clone(),
        expected,
        provider: provider.clone(),
    });
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(source.clone());
    // No session resumption: every connection is checked against the current certificates
    // and root, so a rotation or a revoked root takes effect on the next connection (the
    // proxy pools connections, so full handshakes are rare).
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// The SPIFFE id proven by a completed handshake's peer chain (its first certificate).
pub fn peer_identity(chain: Option<&[CertificateDer<'_>]>) -> Option<SpiffeId> {
    spiffe_of(chain?.first()?)
}
