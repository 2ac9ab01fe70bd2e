//! Remediation in a running server: an alert rule fires, the configured mesh action edits the
//! mesh directory, the action is listed at /api/v1/remediations and as an event, an anomaly
//! recorded in the event log drives another action, and the undo route answers 404 / 400 /
//! 409 / 200 as it should, restoring the file byte for byte.

use std::time::Duration;

use meshlens_server::{start, ServerOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MESH: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: lb, namespace: default}\nspec:\n  host: lb\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: lb, namespace: default}\nspec:\n  hosts: [lb]\n  http:\n  - route:\n    - {destination: {host: lb, subset: v1}, weight: 80}\n    - {destination: {host: lb, subset: v2}, weight: 20}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: lb, namespace: default}\nspec: {hosts: [lb], location: MESH_INTERNAL, resolution: STATIC, ports: [{number: 80, name: http, protocol: HTTP}], endpoints: [{address: 127.0.0.1, labels: {version: v1}}, {address: 127.0.0.2, labels: {version: v2}}]}\n";

const RULES: &str = "groups:\n  - name: canary\n    interval: 1s\n    rules:\n      - alert: CanaryErrors\n        expr: vector(1)\n        labels: {service: lb, severity: page}\n        annotations: {summary: v2 fails}\n";

const REMEDIATIONS: &str = r#"remediations:
  - name: drain-v2
    match: {alertname: CanaryErrors, service: lb}
    action: {type: shift-traffic, away_from: v2}
  - name: tell
    match: {alertname: CanaryErrors}
    action: {type: webhook, url: "http://127.0.0.1:9/hook"}
    dry_run: true
  - name: page
    match: {alertname: CanaryErrors}
    action: {type: webhook, url: "HOOK"}
  - name: eject
    match: {alertname: anomaly, signal: errors}
    action: {type: tighten-outlier}
"#;

async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let status = std::str::from_utf8(&buf[9..12]).unwrap().parse().unwrap();
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
    let mut body = buf[at..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut b = &body[..];
        loop {
            let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
            let n =
                usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
            b = &b[eol + 4 + n..];
        }
        body = out;
    }
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A webhook receiver: answers 200 and sends each JSON body on.
async fn hook_server() -> (String, tokio::sync::mpsc::Receiver<Value>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let n = c.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
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
                    break Some(buf[at + 4..at + 4 + len].to_vec());
                }
            };
            let _ = c
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            if let Some(b) = body {
                let _ = tx
                    .send(serde_json::from_slice(&b).unwrap_or(Value::Null))
                    .await;
            }
        }
    });
    (url, rx)
}

/// Polls `f` every 200 ms for up to 120 s.
async fn poll<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

fn action<'a>(list: &'a Value, remediation: &str) -> Option<&'a Value> {
    list["data"]["actions"]
        .as_array()?
        .iter()
        .find(|a| a["remediation"] == remediation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_drains_the_canary_and_undo_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("mesh")).unwrap();
    std::fs::write(root.join("mesh/lb.yaml"), MESH).unwrap();
    std::fs::write(root.join("rules.yml"), RULES).unwrap();
    std::fs::write(root.join("prometheus.yml"), "rule_files: [rules.yml]\n").unwrap();
    let (hook, mut bodies) = hook_server().await;
    std::fs::write(
        root.join("remediations.yml"),
        REMEDIATIONS.replace("HOOK", &hook),
    )
    .unwrap();
    let opts = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: root.join("data"),
        config_file: Some(root.join("prometheus.yml")),
        mesh_config: vec![root.join("mesh")],
        mesh_write: true,
        remediation_file: Some(root.join("remediations.yml")),
        anomaly_interval: None,
        ..Default::default()
    };
    let server = start(opts).await.unwrap();
    let addr = server.addr();

    let list = poll("the drain action", async || {
        let (_, v) = http(addr, "GET", "/api/v1/remediations", "").await;
        (action(&v, "drain-v2").is_some() && action(&v, "tell").is_some()).then_some(v)
    })
    .await;
    assert_eq!(list["data"]["configured"], true);
    assert_eq!(list["data"]["meshWrite"], true);
    let drain = action(&list, "drain-v2").unwrap();
    assert_eq!(drain["status"], "applied", "{drain}");
    assert_eq!(drain["trigger"]["labels"]["alertname"], "CanaryErrors");
    let id = drain["id"].as_str().unwrap().to_string();
    let edited = std::fs::read_to_string(root.join("mesh/lb.yaml")).unwrap();
    assert!(edited.contains("weight: 100"), "{edited}");
    assert!(edited.contains("weight: 0"), "{edited}");
    let tell = action(&list, "tell").unwrap();
    assert_eq!(tell["status"], "dry-run");
    // The URL is shown by its origin: a webhook's path often holds a token.
    assert_eq!(tell["action"]["url"], "http://127.0.0.1:9/…", "{tell}");

    // The webhook got the alert, the neighbourhood from the graph, and links to the UI.
    let body = tokio::time::timeout(Duration::from_secs(120), bodies.recv())
        .await
        .expect("the webhook was not called")
        .unwrap();
    assert_eq!(
        body["alert"]["labels"]["alertname"], "CanaryErrors",
        "{body}"
    );
    assert_eq!(body["service"], "lb");
    assert!(body["neighbourhood"]["callers"].is_array(), "{body}");
    assert!(body["neighbourhood"].get("error").is_none(), "{body}");
    assert_eq!(
        body["links"]["traces"],
        format!("http://{addr}/ui/#/traces?service=lb&range=15m")
    );

    // The action is on the timeline, with its id as the undo handle.
    let (st, evs) = http(addr, "GET", "/api/v1/events?kind=remediation", "").await;
    assert_eq!(st, 200);
    let ev = evs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["undo"] == id.as_str())
        .unwrap_or_else(|| panic!("no event for {id}: {evs}"));
    assert_eq!(ev["service"], "lb");
    assert!(ev["detail"]["diff"].as_str().unwrap().contains("weight: 0"));

    // Undo: unknown 404, a webhook 400, then 200, and again 409.
    let (st, v) = http(addr, "POST", "/api/v1/remediations/rem-999/undo", "").await;
    assert_eq!(st, 404, "{v}");
    let tell_id = tell["id"].as_str().unwrap();
    let (st, v) = http(
        addr,
        "POST",
        &format!("/api/v1/remediations/{tell_id}/undo"),
        "",
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data");
    assert!(v["error"].as_str().unwrap().contains("webhook"), "{v}");
    let (st, v) = http(addr, "POST", &format!("/api/v1/remediations/{id}/undo"), "").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        std::fs::read_to_string(root.join("mesh/lb.yaml")).unwrap(),
        MESH,
        "undo restores the file byte for byte"
    );
    let (st, v) = http(addr, "POST", &format!("/api/v1/remediations/{id}/undo"), "").await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["errorType"], "conflict");
    // Still firing: no second action (one action per alert episode).
    let (_, v) = http(addr, "GET", "/api/v1/remediations", "").await;
    let n = v["data"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["remediation"] == "drain-v2")
        .count();
    assert_eq!(n, 1, "{v}");

    // An anomaly recorded on the timeline drives the outlier action.
    let anomaly = json!({"kind": "anomaly", "service": "lb", "title": "Anomaly in errors of lb",
        "detail": {"phase": "start", "signal": "errors", "score": 3.5}});
    let (st, v) = http(addr, "POST", "/api/v1/events", &anomaly.to_string()).await;
    assert_eq!(st, 200, "{v}");
    let eject = poll("the outlier action", async || {
        let (_, v) = http(addr, "GET", "/api/v1/remediations", "").await;
        action(&v, "eject").cloned()
    })
    .await;
    assert_eq!(eject["status"], "applied", "{eject}");
    assert_eq!(eject["trigger"]["kind"], "anomaly");
    let text = std::fs::read_to_string(root.join("mesh/lb.yaml")).unwrap();
    assert!(text.contains("consecutive5xxErrors: 1"), "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_remediation_file_stops_the_start_and_an_unconfigured_server_lists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("bad.yml"),
        "remediations:\n  - name: x\n    match: {alertname: A}\n    action: {type: kill-switch}\n    cooldown: soon\n",
    )
    .unwrap();
    let opts = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: root.join("data"),
        remediation_file: Some(root.join("bad.yml")),
        anomaly_interval: None,
        ..Default::default()
    };
    let err = start(opts)
        .await
        .err()
        .expect("a bad file must stop the start")
        .to_string();
    assert!(err.contains("bad.yml"), "{err}");
    assert!(err.contains("cooldown"), "{err}");

    // Not configured: an empty list, and undo is 404.
    let opts = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: root.join("data2"),
        anomaly_interval: None,
        ..Default::default()
    };
    let server = start(opts).await.unwrap();
    let (st, v) = http(server.addr(), "GET", "/api/v1/remediations", "").await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["configured"], false);
    let (st, _) = http(server.addr(), "POST", "/api/v1/remediations/rem-1/undo", "").await;
    assert_eq!(st, 404);
    server.shutdown().await;
}
