//! PEM certificate chains and private keys from bytes, one reading for the listeners' TLS and
//! for the scrape clients that trust a CA or present a certificate.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why PEM text gave no certificate chain or key; it never quotes the key's text.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("{0}")]
    Certificate(rustls_pki_types::pem::Error),
    #[error("no PEM certificate found")]
    NoCertificate,
    #[error("no usable PEM private key ({0})")]
    Key(rustls_pki_types::pem::Error),
}

/// Every certificate in `bytes`, in order; none at all is an error.
pub fn parse_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PemError::Certificate)?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// The first private key in `bytes` (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(PemError::Key)
}
