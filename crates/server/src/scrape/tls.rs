//! A scrape job's `tls_config` as a rustls client configuration, built by meshlens-access's
//! shared client builder (the notifier and the probes use the same one).

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use meshlens_access::{ClientTls, ClientTlsError};

use crate::config::{TlsConfig, TlsVersion};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("tls_config.server_name {0:?} is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error(transparent)]
    Client(ClientTlsError),
}

impl From<ClientTlsError> for TlsSetupError {
    fn from(e: ClientTlsError) -> Self {
        match e {
            ClientTlsError::ServerName(n) => TlsSetupError::ServerName(n),
            e => TlsSetupError::Client(e),
        }
    }
}

fn settings(tls: &TlsConfig) -> ClientTls<'_> {
    ClientTls {
        ca_file: tls.ca_file.as_deref(),
        cert_file: tls.cert_file.as_deref(),
        key_file: tls.key_file.as_deref(),
        server_name: tls.server_name.as_deref(),
        insecure_skip_verify: tls.insecure_skip_verify,
        tls13_only: tls.min_version == Some(TlsVersion::Tls13),
    }
}

/// The job's HTTP(S) connector; reads the files named in its `tls_config`.
pub fn https_connector(tls: &TlsConfig) -> Result<HttpsConnector<HttpConnector>, TlsSetupError> {
    Ok(settings(tls).https_connector()?)
}
