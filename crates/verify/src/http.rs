//! The crate's one HTTP client, for the rollout (judge, webhooks, events) and remediation
//! webhooks: a request with an optional JSON body and a timeout gives the answer's status and
//! body, or an error string naming the method and URL. Generic over hyper's connector so a
//! caller can pass its own; [`HttpClient::plain`] and [`HttpClient::https`] cover the usual.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// `http://` only.
pub type Plain = HttpConnector;
/// `http://` and `https://` (rustls, the system's roots).
pub type Https = HttpsConnector<HttpConnector>;

/// A pooled HTTP client.
pub struct HttpClient<C> {
    client: Client<C, Full<Bytes>>,
    user_agent: &'static str,
}

impl<C: Clone> Clone for HttpClient<C> {
    fn clone(&self) -> Self {
        HttpClient {
            client: self.client.clone(),
            user_agent: self.user_agent,
        }
    }
}

impl HttpClient<Plain> {
    /// Plain `http://` (loopback servers, tests, the demo).
    pub fn plain() -> HttpClient<Plain> {
        HttpClient::new(Client::builder(TokioExecutor::new()).build_http())
    }
}

impl HttpClient<Https> {
    /// `http://` and `https://`, trusting the system's roots (none found: https fails its
    /// handshake, saying so, and plain http still works).
    pub fn https() -> Result<HttpClient<Https>, String> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("setting up TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(HttpClient::new(
            Client::builder(TokioExecutor::new()).build(https),
        ))
    }
}

impl<C> HttpClient<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    pub fn new(client: Client<C, Full<Bytes>>) -> HttpClient<C> {
        HttpClient {
            client,
            user_agent: "meshlens",
        }
    }

    /// The same client sending another `User-Agent` (receivers tell callers apart by it).
    pub fn with_user_agent(mut self, user_agent: &'static str) -> HttpClient<C> {
        self.user_agent = user_agent;
        self
    }

    /// One request; the answer's status and body, or why there was none.
    pub async fn request(
        &self,
        method: http::Method,
        url: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), String> {
        self.request_shown(method, url, url, body, timeout).await
    }

    /// The same, its errors naming the URL as `shown` (e.g. [`redact`]ed).
    pub async fn request_shown(
        &self,
        method: http::Method,
        url: &str,
        shown: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), String> {
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .header(http::header::USER_AGENT, self.user_agent);
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("{method} {shown}: invalid request: {e}"))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{method} {shown}: {}", error_chain(&e)))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{method} {shown}: reading the answer: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| format!("{method} {shown}: no answer within {timeout:?}"))?
    }

    /// POSTs a JSON body and wants a 2xx: its status, or an error naming `shown` with the
    /// answer's status and message.
    pub async fn post_ok(
        &self,
        url: &str,
        shown: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, String> {
        let (status, answer) = self
            .request_shown(http::Method::POST, url, shown, Some(body), timeout)
            .await?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "POST {shown}: HTTP {status}: {}",
                answer_message(&answer)
            ));
        }
        Ok(status)
    }
}

/// What an error answer says: its JSON `error` field (meshlens' and Prometheus' envelope),
/// else the start of its text.
pub fn answer_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(serde_json::Value::as_str)
                .map(String::from)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect())
}

/// An error with its causes, `a: b: c`, so "connection refused" or a certificate problem
/// is visible rather than hyper's outer "client error (Connect)".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
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

/// Percent-encodes a query value (all but RFC 3986's unreserved characters).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_the_origin_only() {
        assert_eq!(
            redact("https://hooks.example:8443/services/T0KEN?k=S3CRET"),
            "https://hooks.example:8443/…"
        );
        assert_eq!(redact("http://u:pw@h/"), "http://h");
        assert_eq!(redact("http://h"), "http://h");
        assert_eq!(redact("not a url"), "(invalid URL)");
    }

    #[test]
    fn an_error_answer_is_its_envelope_message_or_its_text() {
        assert_eq!(
            answer_message(br#"{"status":"error","error":"bad service"}"#),
            "bad service"
        );
        assert_eq!(answer_message(b"oops"), "oops");
        assert_eq!(answer_message(&[b'x'; 400]).len(), 300);
    }

    #[test]
    fn urlencode_leaves_unreserved_characters() {
        assert_eq!(urlencode("a-b_c.d~e f&g/é"), "a-b_c.d~e%20f%26g%2F%C3%A9");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_shown_url_only() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook/T0KEN", l.local_addr().unwrap());
        drop(l);
        let err = HttpClient::plain()
            .post_ok(&url, &redact(&url), b"{}".to_vec(), Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(err.starts_with("POST http://127.0.0.1:"), "{err}");
        assert!(!err.contains("T0KEN"), "{err}");
    }
}
