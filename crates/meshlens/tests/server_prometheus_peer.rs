//! Debian's Prometheus scrapes a target and remote-writes to meshlens: both must hold the
//! same samples for that target.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{httpc, normalise, poll, require_binary, start_prometheus, urlencode, Server};
use serde_json::Value;

/// Serves /metrics with counters and gauges that change on every scrape.
fn start_target() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let scrapes = Arc::new(AtomicU64::new(0));
    let n = scrapes.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let i = n.fetch_add(1, Ordering::Relaxed);
            let body = format!(
                "# TYPE demo_requests_total counter\n\
                 demo_requests_total{{path=\"/a\",code=\"200\"}} {}\n\
                 demo_requests_total{{path=\"/b\",code=\"500\"}} {}\n\
                 # TYPE demo_temperature_celsius gauge\n\
                 demo_temperature_celsius{{room=\"x\"}} {:.2}\n\
                 # TYPE demo_latency_seconds histogram\n\
                 demo_latency_seconds_bucket{{le=\"0.1\"}} {}\n\
                 demo_latency_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 demo_latency_seconds_sum {:.3}\n\
                 demo_latency_seconds_count {}\n",
                i * 7,
                i / 3,
                20.0 + (i % 10) as f64 * 0.25,
                i * 2,
                i * 3,
                i as f64 * 0.125,
                i * 3
            );
            let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = s.write_all(resp.as_bytes());
        }
    });
    (addr, scrapes)
}

fn matrix(url: &str) -> common::Points {
    let r = httpc::get(url).expect("query");
    let v: Value = serde_json::from_slice(&r.body).expect("json");
    normalise(&v)
        .unwrap_or_else(|e| panic!("query failed: {e}"))
        .1
}

#[test]
fn prometheus_remote_write_delivers_what_it_scraped() {
    if !require_binary("prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let meshlens = Server::start(&dir.path().join("meshlens"), &[]);
    let (target, scrapes) = start_target();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: peer\n    static_configs:\n      - targets: ['{target}']\n\
         remote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 200ms\n      min_backoff: 50ms\n      max_backoff: 1s\n",
        meshlens.url("/api/v1/write")
    );
    let (mut prom, prom_url) = start_prometheus(&cfg, &dir.path().join("prom"));
    // Let Prometheus scrape a handful of times (bounded).
    poll(Duration::from_secs(120), || {
        (scrapes.load(Ordering::Relaxed) >= 8).then_some(())
    });

    // Snapshot what Prometheus holds at a fixed time, then wait for meshlens to hold the same.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 1.0;
    let q = urlencode("{job=\"peer\"}[10m]");
    let expected = matrix(&format!("{prom_url}/api/v1/query?query={q}&time={now}"));
    assert!(
        expected.len() >= 9,
        "prometheus holds too few series: {expected:?}"
    );
    let total: usize = expected.iter().map(|(_, p)| p.len()).sum();
    let got = poll(Duration::from_secs(120), || {
        let got = matrix(&meshlens.url(&format!("/api/v1/query?query={q}&time={now}")));
        (got == expected).then_some(got)
    });
    // Prometheus keeps running (and sending) until meshlens holds everything.
    let _ = Command::new("kill")
        .args(["-TERM", &prom.0.id().to_string()])
        .status();
    let _ = prom.0.wait();
    println!(
        "prometheus and meshlens agree on {} series, {total} samples",
        got.len()
    );
}
