//! A scrape job's `tls_config` as a rustls client configuration, built by meshlens-access's
//! shared client builder (the notifier and the probes use the same one).

use meshlens_access::{ClientTls, ClientTlsError};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

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

/// The name `tls_config.server_name` asks to verify, if any.
pub fn server_name(tls: &TlsConfig) -> Result<Option<ServerName<'static>>, TlsSetupError> {
    Ok(settings(tls).server_name()?)
}

/// Builds the rustls configuration for one job.
pub fn client_config(tls: &TlsConfig) -> Result<ClientConfig, TlsSetupError> {
    Ok(settings(tls).client_config()?)
}
