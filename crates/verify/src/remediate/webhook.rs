//! The webhook action: one JSON POST, bounded by a timeout; a non-2xx answer is a failure.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("POST {url}: {message}")]
    Failed { url: String, message: String },
    #[error("POST {url}: answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// POSTs `payload` to `url`; Ok with the status on 2xx.
pub async fn post(
    url: &str,
    payload: &serde_json::Value,
    timeout: Duration,
) -> Result<u16, WebhookError> {
    let fail = |message: String| WebhookError::Failed {
        url: redact(url),
        message,
    };
    let body = serde_json::to_vec(payload).map_err(|e| fail(e.to_string()))?;
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "meshlens-remediation")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| fail(format!("invalid request: {e}")))?;
    let client = Client::builder(TokioExecutor::new()).build(connector().map_err(fail)?);
    let work = async {
        let resp = client.request(req).await.map_err(|e| fail(chain(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(WebhookError::Status {
                url: redact(url),
                status,
                body: text,
            });
        }
        Ok(status)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
}

/// The URL as shown in events and the API: its origin only, since a webhook's path or
/// query often holds a token (Slack's, for one).
pub fn redact(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(u) => {
            let origin = format!(
                "{}://{}",
                u.scheme_str().unwrap_or("http"),
                u.authority()
                    .map(|a| match a.port_u16() {
                        Some(p) => format!("{}:{p}", a.host()),
                        None => a.host().to_string(),
                    })
                    .unwrap_or_default()
            );
            let rest = u.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            if rest == "/" || rest.is_empty() {
                origin
            } else {
                format!("{origin}/…")
            }
        }
        Err(_) => "(invalid URL)".into(),
    }
}

/// http:// and https:// (the system's roots, ring).
fn connector() -> Result<HttpsConnector<HttpConnector>, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("setting up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}
