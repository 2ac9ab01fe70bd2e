//! A set's `tls_config` as a rustls client configuration, built by meshlens-access's shared
//! client builder (the scrapes and the probes use the same one).

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use meshlens_access::{ClientTls, ClientTlsError};

use crate::{AmTls, NotifierError};

impl From<ClientTlsError> for NotifierError {
    fn from(e: ClientTlsError) -> Self {
        match e {
            ClientTlsError::Read {
                field,
                path,
                source,
            } => NotifierError::Read {
                field,
                path,
                source,
            },
            ClientTlsError::Pem {
                field,
                path,
                reason,
            } => NotifierError::Pem {
                field,
                path,
                reason,
            },
            ClientTlsError::CertWithoutKey => NotifierError::CertWithoutKey,
            ClientTlsError::ServerName(n) => NotifierError::ServerName(n),
            ClientTlsError::Rustls(e) => NotifierError::Tls(e),
        }
    }
}

fn settings(tls: &AmTls) -> ClientTls<'_> {
    ClientTls {
        ca_file: tls.ca_file.as_deref(),
        cert_file: tls.cert_file.as_deref(),
        key_file: tls.key_file.as_deref(),
        server_name: tls.server_name.as_deref(),
        insecure_skip_verify: tls.insecure_skip_verify,
        tls13_only: tls.tls13_only,
    }
}

/// The set's HTTP(S) connector; reads the files named in its `tls_config`.
pub(crate) fn https_connector(tls: &AmTls) -> Result<HttpsConnector<HttpConnector>, NotifierError> {
    Ok(settings(tls).https_connector()?)
}
