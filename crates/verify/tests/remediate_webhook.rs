//! The webhook action against a local HTTP server: the body carries the alert, the
//! service's neighbourhood and links to its traces and graph; a non-2xx answer is a failure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use meshlens_verify::events::{EventKind, EventLog, EventQuery};
use meshlens_verify::remediate::config::parse;
use meshlens_verify::remediate::{
    Engine, EngineOptions, Neighbourhood, Outcome, Status, Trigger, TriggerKind,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one request per connection with `status`; sends each request body on `tx`.
async fn hook_server(status: u16) -> (String, tokio::sync::mpsc::Receiver<Value>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = c.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= at + 4 + len {
                        break buf[at + 4..at + 4 + len].to_vec();
                    }
                };
                let _ = tx
                    .send(serde_json::from_slice(&body).unwrap_or(Value::Null))
                    .await;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = c.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/hook"), rx)
}

struct FakeGraph;

impl Neighbourhood for FakeGraph {
    fn neighbourhood(&self, service: &str) -> Value {
        json!({
            "service": service,
            "callers": [{"name": "ingress", "requestRate": 12.5, "errorRate": 0.1}],
            "callees": [{"name": "db", "requestRate": 3.0, "errorRate": 0.0}],
        })
    }
}

fn engine(url: &str, events: Arc<EventLog>) -> Engine {
    let cfg = format!(
        "remediations:\n  - name: tell\n    match: {{alertname: HighErrorRate}}\n    action: {{type: webhook, url: \"{url}\", timeout: 20s}}\n    cooldown: 0s\n"
    );
    Engine::new(
        EngineOptions {
            config: parse(&cfg, "rem.yml").unwrap(),
            mesh: None,
            mesh_write: false,
            state_file: None,
            base_url: "http://meshlens.example:9090/".into(),
        },
        events,
        Some(Arc::new(FakeGraph)),
    )
    .unwrap()
}

fn trigger(service: &str) -> Trigger {
    let mut labels = BTreeMap::new();
    labels.insert("alertname".to_string(), "HighErrorRate".to_string());
    labels.insert("service".to_string(), service.to_string());
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".to_string(), "errors above 5 %".to_string());
    Trigger {
        kind: TriggerKind::Alert,
        labels,
        annotations,
        value: Some(0.08),
        since_ms: Some(1_700_000_000_000),
    }
}

fn record(o: Vec<Outcome>) -> meshlens_verify::remediate::ActionRecord {
    match o.into_iter().next() {
        Some(Outcome::Acted(r)) => *r,
        other => panic!("expected an action: {other:?}"),
    }
}

#[tokio::test]
async fn the_webhook_receives_the_alert_neighbourhood_and_links() {
    let (url, mut rx) = hook_server(200).await;
    let url = format!("{url}/T0KEN?key=S3CRET");
    let events = Arc::new(EventLog::in_memory(10));
    let e = engine(&url, events.clone());
    let r = record(e.observe(&[trigger("http lb")]).await);
    assert_eq!(r.status, Status::Sent, "{r:?}");
    let body = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body["id"], r.id.as_str());
    assert_eq!(body["remediation"], "tell");
    assert_eq!(body["alert"]["labels"]["alertname"], "HighErrorRate");
    assert_eq!(body["alert"]["annotations"]["summary"], "errors above 5 %");
    assert_eq!(body["service"], "http lb");
    assert_eq!(body["neighbourhood"]["callers"][0]["name"], "ingress");
    assert_eq!(body["neighbourhood"]["callees"][0]["requestRate"], 3.0);
    assert_eq!(
        body["links"]["traces"],
        "http://meshlens.example:9090/ui/#/traces?service=http%20lb&range=15m"
    );
    assert_eq!(
        body["links"]["graph"],
        "http://meshlens.example:9090/ui/#/topology?focus=http%20lb&range=15m"
    );
    let evs = events.list(&EventQuery {
        kinds: vec![EventKind::Remediation],
        ..Default::default()
    });
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].undo.as_deref(), Some(r.id.as_str()));
    // The token in the URL's path and query is in no event and no record.
    let shown = serde_json::to_string(&evs).unwrap() + &serde_json::to_string(&e.list()).unwrap();
    assert!(
        !shown.contains("T0KEN") && !shown.contains("S3CRET"),
        "{shown}"
    );
    assert!(shown.contains("127.0.0.1"), "{shown}");
    let err = e.undo(&r.id).unwrap_err().to_string();
    assert!(err.contains("webhook"), "{err}");
}

#[tokio::test]
async fn a_non_2xx_answer_or_no_listener_is_a_failed_action() {
    let (url, mut rx) = hook_server(500).await;
    let e = engine(&url, Arc::new(EventLog::in_memory(10)));
    let r = record(e.observe(&[trigger("a")]).await);
    assert!(rx.recv().await.is_some());
    assert_eq!(r.status, Status::Failed);
    assert!(r.message.contains("500"), "{}", r.message);

    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/hook", l.local_addr().unwrap());
    drop(l);
    let e = engine(&dead, Arc::new(EventLog::in_memory(10)));
    let r = record(e.observe(&[trigger("a")]).await);
    assert_eq!(r.status, Status::Failed);
    let origin = dead.trim_end_matches("/hook");
    assert!(r.message.contains(origin), "{}", r.message);
}
