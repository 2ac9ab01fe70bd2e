//! One scrape's HTTP request: Prometheus's headers, auth, a timeout, gzip, a body limit.

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::tls::{self, TlsSetupError};
use crate::config::{redact_url, Auth, TlsConfig};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

const MAX_BODY_BYTES: usize = 256 << 20;

/// A client for one job: plain HTTP, and HTTPS (rustls) with the job's `tls_config`.
pub fn client(tls: &TlsConfig) -> Result<HttpClient, TlsSetupError> {
    let https = tls::https_connector(tls)?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https))
}

pub struct Fetched {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
}

pub async fn fetch(
    client: &HttpClient,
    url: &str,
    auth: &Auth,
    timeout: Duration,
    native_histograms: bool,
) -> Result<Fetched, String> {
    let accept = if native_histograms {
        meshlens_ingest::exposition::SCRAPE_ACCEPT_HEADER_PROTOBUF
    } else {
        meshlens_ingest::exposition::SCRAPE_ACCEPT_HEADER
    };
    let mut req = http::Request::get(url)
        .header(http::header::ACCEPT, accept)
        .header(http::header::ACCEPT_ENCODING, "gzip")
        .header(
            http::header::USER_AGENT,
            concat!("meshlens/", env!("CARGO_PKG_VERSION")),
        )
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", timeout.as_secs_f64()),
        );
    match auth {
        Auth::None => {}
        Auth::Basic { username, password } => {
            use base64::Engine;
            let pw = password
                .read()
                .map_err(|e| format!("reading password file: {e}"))?;
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", pw.expose()));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {token}"));
        }
        Auth::Authorization { kind, credentials } => {
            let c = credentials
                .read()
                .map_err(|e| format!("reading credentials file: {e}"))?;
            req = req.header(
                http::header::AUTHORIZATION,
                format!("{kind} {}", c.expose()),
            );
        }
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("invalid scrape URL {:?}: {e}", redact_url(url)))?;
    let work = async {
        let resp = client.request(req).await.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            msg
        })?;
        let status = resp.status();
        if status != http::StatusCode::OK {
            return Err(format!("server returned HTTP status {status}"));
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let gzip = resp
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading body: {e}"))?
            .to_bytes();
        let body = if gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(MAX_BODY_BYTES as u64)
                .read_to_end(&mut out)
                .map_err(|e| format!("decompressing body: {e}"))?;
            out
        } else {
            body.to_vec()
        };
        Ok(Fetched { body, content_type })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Get {:?}: context deadline exceeded",
            redact_url(url)
        )),
    }
}
