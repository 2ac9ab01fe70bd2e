//! Why a TLS handshake failed, in a few classes worth a counter label each. The same failure
//! is seen differently by the two ends: the side that rejects a certificate has the rustls
//! error, the other side only the alert it was sent, so both are mapped.

use rustls::{AlertDescription, CertificateError, Error};

/// A handshake failure's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HandshakeFailure {
    /// The peer's certificate is expired or not yet valid.
    Expired,
    /// The peer's chain does not lead to the mesh root, or a signature does not verify.
    UnknownCa,
    /// A client connected without a certificate where one is required.
    NoClientCertificate,
    /// The certificate is valid but proves no mesh identity, or not the expected one.
    WrongIdentity,
    /// The first bytes are not a TLS handshake (a plaintext client on an mTLS port).
    NotTls,
    /// Anything else: protocol errors, resets, timeouts.
    Other,
}

impl HandshakeFailure {
    /// Every class, in label order.
    pub const ALL: [HandshakeFailure; 6] = [
        HandshakeFailure::Expired,
        HandshakeFailure::UnknownCa,
        HandshakeFailure::NoClientCertificate,
        HandshakeFailure::WrongIdentity,
        HandshakeFailure::NotTls,
        HandshakeFailure::Other,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Expired => "expired",
            HandshakeFailure::UnknownCa => "unknown_ca",
            HandshakeFailure::NoClientCertificate => "no_client_certificate",
            HandshakeFailure::WrongIdentity => "wrong_identity",
            HandshakeFailure::NotTls => "not_tls",
            HandshakeFailure::Other => "other",
        }
    }

    /// Classifies a rustls error, from either end of the handshake.
    pub fn classify(e: &Error) -> Self {
        use CertificateError as C;
        match e {
            Error::InvalidCertificate(c) => match c {
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => HandshakeFailure::Expired,
                C::UnknownIssuer | C::BadSignature => HandshakeFailure::UnknownCa,
                C::ApplicationVerificationFailure
                | C::NotValidForName
                | C::NotValidForNameContext { .. } => HandshakeFailure::WrongIdentity,
                _ => HandshakeFailure::Other,
            },
            Error::NoCertificatesPresented => HandshakeFailure::NoClientCertificate,
            Error::AlertReceived(a) => match a {
                AlertDescription::CertificateExpired => HandshakeFailure::Expired,
                AlertDescription::UnknownCA | AlertDescription::DecryptError => {
                    HandshakeFailure::UnknownCa
                }
                AlertDescription::CertificateRequired => HandshakeFailure::NoClientCertificate,
                AlertDescription::AccessDenied | AlertDescription::BadCertificate => {
                    HandshakeFailure::WrongIdentity
                }
                _ => HandshakeFailure::Other,
            },
            Error::InvalidMessage(_) => HandshakeFailure::NotTls,
            _ => HandshakeFailure::Other,
        }
    }

    /// Classifies the I/O error tokio-rustls returns (a rustls error inside, or a plain one).
    pub fn from_io(e: &std::io::Error) -> Self {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
            Some(tls) => Self::classify(tls),
            None => HandshakeFailure::Other,
        }
    }
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The first byte of every TLS connection (a handshake record).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Whether a connection's first byte starts a TLS handshake.
pub fn looks_like_tls(first: u8) -> bool {
    first == TLS_HANDSHAKE_RECORD
}
