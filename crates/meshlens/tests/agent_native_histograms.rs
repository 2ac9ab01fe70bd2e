//! Native histograms through an agent: a `meshlens agent` scrapes a protobuf target serving
//! a native histogram (`scrape_native_histograms: true`) and forwards it to a `meshlens
//! server` hub as remote write 1.0, and in a second run as 2.0; the hub answers
//! `histogram_count` and `histogram_sum` with the target's values, on a series carrying the
//! agent's `cluster`, and reports every forwarded sample written.

mod common;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{get_json, httpc, poll, urlencode, KillOnDrop, Server};
use serde_json::Value;

use common::protobuf::{bytes_field, double_field, varint, varint_field, zigzag};

fn span(offset: i64, length: u64) -> Vec<u8> {
    let mut s = Vec::new();
    varint_field(&mut s, 1, zigzag(offset));
    varint_field(&mut s, 2, length);
    s
}

fn deltas(ds: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    for d in ds {
        varint(&mut out, zigzag(*d));
    }
    out
}

/// Observations of the target's histogram: 1 in the zero bucket, 2 in a negative bucket,
/// 2, 3 and 4 in three positive ones.
const COUNT: u64 = 12;
const SUM: f64 = 7.25;

/// `shop_latency_seconds{path="/a"}`, a native histogram (schema 0, zero bucket, buckets on
/// both sides), as one delimited `MetricFamily` message of io.prometheus.client.
fn body() -> Vec<u8> {
    let mut h = Vec::new();
    varint_field(&mut h, 1, COUNT); // sample_count
    double_field(&mut h, 2, SUM); // sample_sum
    varint_field(&mut h, 5, zigzag(0)); // schema
    double_field(&mut h, 6, 0.001); // zero_threshold
    varint_field(&mut h, 7, 1); // zero_count
    bytes_field(&mut h, 9, &span(0, 1)); // negative_span
    bytes_field(&mut h, 10, &deltas(&[2])); // negative_delta
    bytes_field(&mut h, 12, &span(-1, 3)); // positive_span
    bytes_field(&mut h, 13, &deltas(&[2, 1, 1])); // positive_delta: 2, 3, 4
    let mut label = Vec::new();
    bytes_field(&mut label, 1, b"path");
    bytes_field(&mut label, 2, b"/a");
    let mut metric = Vec::new();
    bytes_field(&mut metric, 1, &label);
    bytes_field(&mut metric, 7, &h);
    let mut family = Vec::new();
    bytes_field(&mut family, 1, b"shop_latency_seconds");
    bytes_field(&mut family, 2, b"Request latency.");
    varint_field(&mut family, 3, 4); // HISTOGRAM
    bytes_field(&mut family, 4, &metric);
    let mut out = Vec::new();
    varint(&mut out, family.len() as u64);
    out.extend_from_slice(&family);
    out
}

/// Serves `body()` in the protobuf exposition format on every request; returns host:port.
fn start_target() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = vec![0u8; 8192];
            let _ = s.read(&mut buf);
            let body = body();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s
                .write_all(head.as_bytes())
                .and_then(|()| s.write_all(&body));
        }
    });
    addr
}

/// Starts `meshlens agent` for cluster `east` with the Prometheus config `config`, sending
/// remote-write `message` to `hub`.
fn start_agent(
    dir: &std::path::Path,
    hub: &str,
    config: &std::path::Path,
    message: &str,
) -> (KillOnDrop, String) {
    let flags = [
        OsStr::new("--hub.protobuf-message"),
        OsStr::new(message),
        OsStr::new("--config"),
        config.as_os_str(),
    ];
    let (agent, url, _) = common::start_agent(dir, hub, &flags);
    (agent, url)
}

/// The one series of an instant query: its labels and value.
fn one(hub: &Server, q: &str) -> Option<(serde_json::Map<String, Value>, String)> {
    let v = get_json(&hub.url(&format!("/api/v1/query?query={}", urlencode(q))));
    assert_eq!(v["status"], "success", "{q}: {v}");
    let r = v["data"]["result"].as_array()?;
    if r.len() != 1 {
        return None;
    }
    let value = r[0]["value"][1].as_str()?.to_string();
    Some((r[0]["metric"].as_object()?.clone(), value))
}

/// A counter of the agent's /metrics for the hub, summed over its lines.
fn agent_counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn forwards_scraped_native_histograms(message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let target = start_target();
    let hub = Server::start(&dir.path().join("hub"), &["--otlp-grpc-listen", "off"]);
    let config = dir.path().join("agent.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: shop\n    scrape_native_histograms: true\n\
             \x20   static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let (_agent, agent) = start_agent(&dir.path().join("agent"), &hub.url(""), &config, message);

    let limit = Duration::from_secs(120);
    let (labels, count) = poll(limit, || one(&hub, "histogram_count(shop_latency_seconds)"));
    assert_eq!(count, COUNT.to_string(), "{message}");
    // histogram_count drops the name and keeps the rest, the stamped cluster included.
    assert_eq!(labels["cluster"], "east", "{message}: {labels:?}");
    assert_eq!(labels["job"], "shop");
    assert_eq!(labels["path"], "/a");
    let (_, sum) = one(&hub, "histogram_sum(shop_latency_seconds)").expect("one series");
    assert_eq!(sum, SUM.to_string(), "{message}");
    let (labels, _) = one(&hub, r#"up{job="shop"}"#).expect("up");
    assert_eq!(labels["cluster"], "east");

    // The agent sent as asked, and the hub reported every sample written: float samples
    // and native histograms alike.
    let text = poll(limit, || {
        let r = httpc::get(&format!("{agent}/metrics")).ok()?;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        (agent_counter(&text, "meshlens_forward_sent_samples_total") > 0).then_some(text)
    });
    assert!(
        text.contains(&format!("proto=\"{message}\"")),
        "sent as {message}:\n{text}"
    );
    assert_eq!(
        agent_counter(&text, "meshlens_forward_unwritten_samples_total"),
        0,
        "{text}"
    );
    assert_eq!(
        agent_counter(&text, "meshlens_forward_dropped_total"),
        0,
        "{text}"
    );
}

#[test]
fn scraped_native_histograms_reach_the_hub_over_remote_write_1_0() {
    forwards_scraped_native_histograms("prometheus.WriteRequest");
}

#[test]
fn scraped_native_histograms_reach_the_hub_over_remote_write_2_0() {
    forwards_scraped_native_histograms("io.prometheus.write.v2.Request");
}
