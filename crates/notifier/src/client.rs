//! One POST of a batch to one Alertmanager: the set's client (plain HTTP or rustls), its
//! credentials, a timeout over the whole exchange, success meaning any 2xx status.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::{tls, AmAuth, AmTls, NotifierError};

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Alertmanager answers a push with a short JSON body; more than this is not read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why one request failed; counted in `prometheus_notifications_errors_total`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("reading credentials file: {0}")]
    Credentials(std::io::Error),
    #[error("building request: {0}")]
    Request(#[from] http::Error),
    #[error("{0}")]
    Transport(String),
    #[error("bad response status {0}")]
    Status(http::StatusCode),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// A client for one set: http and https (with the set's `tls_config`) alike, as Prometheus
/// builds one client per set whatever its scheme.
pub(crate) fn build(tls: &AmTls) -> Result<HttpClient, NotifierError> {
    let https = tls::https_connector(tls)?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https))
}

/// POSTs `payload` (a JSON array of alerts) to `url`.
pub(crate) async fn post(
    client: &HttpClient,
    url: &str,
    auth: &AmAuth,
    payload: Bytes,
    timeout: Duration,
) -> Result<(), SendError> {
    let mut req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("meshlens/", env!("CARGO_PKG_VERSION")),
        );
    match auth {
        AmAuth::None => {}
        AmAuth::Basic { username, password } => {
            use base64::Engine;
            let pw = password.read().map_err(SendError::Credentials)?;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{pw}"));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {token}"));
        }
        AmAuth::Authorization { kind, credentials } => {
            let c = credentials.read().map_err(SendError::Credentials)?;
            req = req.header(http::header::AUTHORIZATION, format!("{kind} {c}"));
        }
    }
    let req = req.body(Full::new(payload))?;
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| SendError::Transport(chain(&e)))?;
        let status = resp.status();
        // Read (a bounded amount of) the body so the connection can be reused.
        let _ = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await;
        if !status.is_success() {
            return Err(SendError::Status(status));
        }
        Ok(())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(SendError::Timeout(timeout)))
}

/// An error and its sources on one line: hyper's own message alone says little
/// ("client error (Connect)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}
