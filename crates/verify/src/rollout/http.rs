//! The rollout's HTTP side, shared by the CLI and the demo, over [`crate::http`]: webhooks, a
//! judge that asks a meshlens server's `GET /api/v1/verify`, and an event sink that posts to
//! its `POST /api/v1/events`.

use std::time::Duration;

use hyper_util::client::legacy::connect::Connect;
use serde_json::Value;

use super::{BoxFuture, HookClient, Judge, JudgeAnswer, JudgeRequest};
use crate::events::{Event, EventError, EventSink, NewEvent};
use crate::http::{answer_message, urlencode, HttpClient};
use crate::judge::Verdict;

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
                let msg = answer_message(&body);
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
                let res = http.post_ok(&url, &url, body, Duration::from_secs(5)).await;
                if let Err(p) = res {
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
