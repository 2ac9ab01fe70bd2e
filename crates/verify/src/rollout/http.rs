//! The rollout's HTTP side, shared by the CLI and the demo: webhooks, a judge that asks a
//! meshlens server's `GET /api/v1/verify`, and an event sink that posts to its
//! `POST /api/v1/events`. Generic over hyper's connector so the CLI can pass its TLS one.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{BoxFuture, HookClient, Judge, JudgeAnswer, JudgeRequest};
use crate::events::{Event, EventError, EventSink, NewEvent};
use crate::judge::Verdict;

/// A pooled HTTP client.
pub struct HttpClient<C> {
    client: Client<C, Full<Bytes>>,
}

impl<C> Clone for HttpClient<C>
where
    C: Clone,
{
    fn clone(&self) -> Self {
        HttpClient {
            client: self.client.clone(),
        }
    }
}

impl HttpClient<HttpConnector> {
    /// Plain `http://` (loopback servers, tests, the demo).
    pub fn plain() -> HttpClient<HttpConnector> {
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl<C> HttpClient<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    pub fn new(client: Client<C, Full<Bytes>>) -> HttpClient<C> {
        HttpClient { client }
    }

    /// One request; the answer's status and body, or why there was none.
    pub async fn request(
        &self,
        method: http::Method,
        url: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), String> {
        let mut req = http::Request::builder().method(method.clone()).uri(url);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("{method} {url}: invalid request: {e}"))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{method} {url}: {}", chain(&e)))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| format!("{method} {url}: no answer within {timeout:?}"))?
    }
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

impl<C> HookClient for HttpClient<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn post<'a>(
        &'a self,
        url: &'a str,
        body: &'a Value,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<u16, String>> {
        Box::pin(async move {
            let bytes = serde_json::to_vec(body).unwrap_or_default();
            self.request(http::Method::POST, url, Some(bytes), timeout)
                .await
                .map(|(status, _)| status)
        })
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Asks `GET {server}/api/v1/verify?service=..&baseline=STABLE&canary=CANARY[&...]`.
pub struct HttpJudge<C> {
    pub http: HttpClient<C>,
    /// The server's base URL, e.g. `http://127.0.0.1:9090`.
    pub server: String,
    /// Extra query parameters (`window`, `min_requests`, `step`, `source`, ...).
    pub params: Vec<(String, String)>,
    pub timeout: Duration,
}

impl<C> HttpJudge<C> {
    pub fn new(http: HttpClient<C>, server: &str) -> HttpJudge<C> {
        HttpJudge {
            http,
            server: server.trim_end_matches('/').to_string(),
            params: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }

    pub fn url(&self, req: &JudgeRequest) -> String {
        let mut q = vec![
            ("service".to_string(), req.service.clone()),
            ("baseline".to_string(), req.stable.clone()),
            ("canary".to_string(), req.canary.clone()),
        ];
        if let Some(ns) = &req.namespace {
            q.push(("namespace".into(), ns.clone()));
        }
        q.extend(self.params.iter().cloned());
        let q: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        format!("{}/api/v1/verify?{}", self.server, q.join("&"))
    }
}

/// The report of a verify answer: the body itself, or its `data` when enveloped.
fn parse_report(body: &[u8]) -> Result<(Verdict, Value), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let report = match v.get("data") {
        Some(d) if d.get("verdict").is_some() => d.clone(),
        _ => v,
    };
    let verdict = report
        .get("verdict")
        .cloned()
        .and_then(|x| serde_json::from_value::<Verdict>(x).ok())
        .ok_or_else(|| "the answer has no verdict (pass, fail or inconclusive)".to_string())?;
    Ok((verdict, report))
}

impl<C> Judge for HttpJudge<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn judge<'a>(&'a self, req: &'a JudgeRequest) -> BoxFuture<'a, Result<JudgeAnswer, String>> {
        Box::pin(async move {
            let url = self.url(req);
            let (status, body) = self
                .http
                .request(http::Method::GET, &url, None, self.timeout)
                .await?;
            if status != 200 {
                let msg = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(String::from))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
                return Err(format!("GET {url}: HTTP {status}: {msg}"));
            }
            let (verdict, report) = parse_report(&body).map_err(|e| format!("GET {url}: {e}"))?;
            Ok(JudgeAnswer { verdict, report })
        })
    }
}

/// Posts events to `POST {server}/api/v1/events` from a background task, so recording never
/// blocks the rollout; a server that cannot be reached costs one warning, not the rollout.
pub struct HttpEventSink {
    tx: tokio::sync::mpsc::UnboundedSender<NewEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpEventSink {
    /// Starts the poster on the current tokio runtime (None outside one).
    pub fn start<C>(http: HttpClient<C>, server: &str) -> Option<HttpEventSink>
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let url = format!("{}/api/v1/events", server.trim_end_matches('/'));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<NewEvent>();
        let task = handle.spawn(async move {
            let mut warned = false;
            while let Some(ev) = rx.recv().await {
                let body = serde_json::to_vec(&ev).unwrap_or_default();
                let res = http
                    .request(http::Method::POST, &url, Some(body), Duration::from_secs(5))
                    .await;
                let problem = match res {
                    Ok((s, _)) if (200..300).contains(&s) => None,
                    Ok((s, b)) => Some(format!(
                        "POST {url}: HTTP {s}: {}",
                        String::from_utf8_lossy(&b)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    )),
                    Err(e) => Some(e),
                };
                if let Some(p) = problem {
                    if !warned {
                        eprintln!("warning: rollout events are not recorded at the server: {p}");
                        warned = true;
                    }
                    tracing::debug!(error = %p, "event not posted");
                }
            }
        });
        Some(HttpEventSink { tx, task })
    }

    /// Waits (at most `limit`) until the queued events are posted.
    pub async fn close(self, limit: Duration) {
        drop(self.tx);
        let _ = tokio::time::timeout(limit, self.task).await;
    }
}

impl EventSink for HttpEventSink {
    /// Queues the event; the returned one is provisional (id 0: the server assigns ids).
    fn record(&self, new: NewEvent) -> Result<Event, EventError> {
        let kind = new.kind.ok_or(EventError::NoKind)?;
        if new.title.trim().is_empty() {
            return Err(EventError::NoTitle);
        }
        let event = Event {
            id: 0,
            kind,
            severity: new.severity,
            time_ms: new.time_ms.unwrap_or_else(meshlens_model::time::now_ms),
            service: new.service.clone(),
            title: new.title.clone(),
            detail: new.detail.clone(),
            undo: new.undo.clone(),
        };
        // A closed queue means the poster ended; the event was still printed by the caller.
        let _ = self.tx.send(new);
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_read_bare_or_enveloped_and_needs_a_verdict() {
        let (v, r) = parse_report(br#"{"verdict":"fail","score":40}"#).unwrap();
        assert_eq!((v, r["score"].as_i64()), (Verdict::Fail, Some(40)));
        let (v, _) =
            parse_report(br#"{"status":"success","data":{"verdict":"inconclusive"}}"#).unwrap();
        assert_eq!(v, Verdict::Inconclusive);
        assert!(parse_report(br#"{"verdict":"maybe"}"#).is_err());
        assert!(parse_report(b"<html>").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn the_verify_url_carries_the_versions_and_extra_parameters() {
        let mut j = HttpJudge::new(HttpClient::plain(), "http://h:9090/");
        j.params.push(("window".into(), "5m".into()));
        let req = JudgeRequest {
            service: "http lb".into(),
            namespace: Some("prod".into()),
            stable: "v1".into(),
            canary: "v2&x".into(),
            weight: 10,
            check: 1,
        };
        assert_eq!(
            j.url(&req),
            "http://h:9090/api/v1/verify?service=http%20lb&baseline=v1&canary=v2%26x&namespace=prod&window=5m"
        );
    }
}
