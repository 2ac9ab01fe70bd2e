//! One scrape's HTTP request: Prometheus's headers, auth, a timeout, gzip, a body limit.

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_tls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::config::{Auth, TlsConfig};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

const MAX_BODY_BYTES: usize = 256 << 20;

/// A client for one job: plain HTTP, and HTTPS with the job's `tls_config`.
pub fn client(tls: &TlsConfig) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let mut b = native_tls::TlsConnector::builder();
    if let Some(ca) = &tls.ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| format!("reading ca_file {}: {e}", ca.display()))?;
        let cert = native_tls::Certificate::from_pem(&pem)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        b.add_root_certificate(cert);
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        let c = std::fs::read(cert)
            .map_err(|e| format!("reading cert_file {}: {e}", cert.display()))?;
        let k =
            std::fs::read(key).map_err(|e| format!("reading key_file {}: {e}", key.display()))?;
        b.identity(
            native_tls::Identity::from_pkcs8(&c, &k)
                .map_err(|e| format!("client certificate: {e}"))?,
        );
    }
    if tls.insecure_skip_verify {
        b.danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    let tls = b.build().map_err(|e| format!("tls: {e}"))?;
    let https = HttpsConnector::from((http, tokio_native_tls::TlsConnector::from(tls)));
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
) -> Result<Fetched, String> {
    let mut req = http::Request::get(url)
        .header(
            http::header::ACCEPT,
            meshlens_ingest::exposition::SCRAPE_ACCEPT_HEADER,
        )
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
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{pw}"));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {token}"));
        }
        Auth::Authorization { kind, credentials } => {
            let c = credentials
                .read()
                .map_err(|e| format!("reading credentials file: {e}"))?;
            req = req.header(http::header::AUTHORIZATION, format!("{kind} {c}"));
        }
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("invalid scrape URL {url:?}: {e}"))?;
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
        Err(_) => Err(format!("Get {url:?}: context deadline exceeded")),
    }
}
