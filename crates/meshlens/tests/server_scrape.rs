//! Scraping end to end: target labels and health, malformed exposition, staleness markers
//! when a series disappears, basic auth.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{httpc, poll, Server};
use serde_json::Value;

/// A target whose body the test can change; records the Authorization header it receives.
struct Target {
    addr: String,
    body: Arc<Mutex<String>>,
    auth: Arc<Mutex<Option<String>>>,
}

fn start_target(body: &str) -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let body = Arc::new(Mutex::new(body.to_string()));
    let auth = Arc::new(Mutex::new(None));
    let (b, a) = (body.clone(), auth.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            if let Some(line) = req
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            {
                *a.lock().unwrap() = Some(line.split_once(':').unwrap().1.trim().to_string());
            }
            let text = b.lock().unwrap().clone();
            let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
            let _ = s.write_all(resp.as_bytes());
        }
    });
    Target { addr, body, auth }
}

fn targets(server: &Server) -> Value {
    let r = httpc::get(&server.url("/api/v1/targets")).unwrap();
    serde_json::from_slice(&r.body).unwrap()
}

fn config(dir: &std::path::Path, target: &str) -> std::path::PathBuf {
    let path = dir.join("meshlens.yml");
    std::fs::write(
        &path,
        format!(
            "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\n\
             rule_files: [ignored.yml]\n\
             scrape_configs:\n  - job_name: app\n    basic_auth: {{username: u, password: p}}\n\
             \x20   static_configs:\n      - targets: ['{target}']\n        labels: {{team: core}}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn scrape_health_errors_staleness_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let target = start_target("# TYPE a_total counter\na_total{x=\"1\"} 1\nb_gauge 5\n");
    let cfg = config(dir.path(), &target.addr);
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );

    // Healthy target with its labels, and the series carry the target labels.
    let t = poll(Duration::from_secs(60), || {
        let v = targets(&server);
        let t = v["data"]["activeTargets"][0].clone();
        (t["health"] == "up").then_some(t)
    });
    assert_eq!(t["labels"]["job"], "app");
    assert_eq!(t["labels"]["team"], "core");
    assert_eq!(t["labels"]["instance"], target.addr.as_str());
    assert_eq!(t["scrapePool"], "app");
    assert_eq!(t["lastError"], "");
    let v = server.query("b_gauge", None);
    assert_eq!(v["data"]["result"][0]["metric"]["team"], "core", "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "5");
    let up = server.query("up", None);
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    // Basic auth as configured.
    assert_eq!(target.auth.lock().unwrap().as_deref(), Some("Basic dTpw"));

    // A series that disappears goes stale: an instant query no longer returns it.
    *target.body.lock().unwrap() = "# TYPE a_total counter\na_total{x=\"1\"} 2\n".into();
    poll(Duration::from_secs(60), || {
        let v = server.query("b_gauge", None);
        v["data"]["result"]
            .as_array()
            .is_some_and(|a| a.is_empty())
            .then_some(())
    });

    // A malformed line fails the scrape: line number in lastError, up is 0, stored data stays.
    *target.body.lock().unwrap() = "a_total{x=\"1\"} 3\nbroken{ 4\n".into();
    let t = poll(Duration::from_secs(60), || {
        let v = targets(&server);
        let t = v["data"]["activeTargets"][0].clone();
        (t["health"] == "down").then_some(t)
    });
    let err = t["lastError"].as_str().unwrap();
    assert!(err.starts_with("line 2: "), "{err}");
    poll(Duration::from_secs(60), || {
        let up = server.query("up", None);
        (up["data"]["result"][0]["value"][1] == "0").then_some(())
    });
    let before = server.query("count_over_time(a_total[1h])", None);
    assert!(
        before["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            >= 2.0,
        "{before}"
    );

    // Self-metrics count scrapes by result.
    let m = String::from_utf8(httpc::get(&server.url("/metrics")).unwrap().body).unwrap();
    assert!(
        m.contains("meshlens_scrapes_total{job=\"app\",result=\"error\"}"),
        "{m}"
    );
    assert_eq!(server.terminate().code(), Some(0));
}
