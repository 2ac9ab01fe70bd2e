//! `--enable-feature=created-timestamp-zero-ingestion` on scrapes: a target's created
//! timestamps (the protobuf format's `created_timestamp`, OpenMetrics `_created` lines)
//! become a zero sample before the first scraped one, as in Prometheus 3; without the flag
//! nothing changes (no zero, and `_created` lines stay series of their own).

mod common;

use std::time::Duration;

use common::protobuf::{bytes_field, double_field, varint, varint_field, zigzag};
use common::{now_ms, poll, serve_scrape_target, Server};
use serde_json::Value;

const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `google.protobuf.Timestamp` of `ms`.
fn timestamp(ms: i64) -> Vec<u8> {
    let mut ts = Vec::new();
    varint_field(&mut ts, 1, (ms / 1000) as u64);
    varint_field(&mut ts, 2, ((ms % 1000) * 1_000_000) as u64);
    ts
}

fn family(out: &mut Vec<u8>, name: &str, kind: u64, metric: &[u8]) {
    let mut f = Vec::new();
    bytes_field(&mut f, 1, name.as_bytes());
    varint_field(&mut f, 3, kind);
    bytes_field(&mut f, 4, metric);
    varint(out, f.len() as u64);
    out.extend_from_slice(&f);
}

/// Protobuf: counter `ct_pb_total` = 7 and a native histogram `ct_pb_seconds` (one
/// observation), both created at `ct`; gauge `ct_pb_gauge` = 1.
fn protobuf_body(ct: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut counter = Vec::new();
    double_field(&mut counter, 1, 7.0);
    bytes_field(&mut counter, 3, &timestamp(ct));
    let mut metric = Vec::new();
    bytes_field(&mut metric, 3, &counter);
    family(&mut out, "ct_pb_total", 0, &metric);

    let mut h = Vec::new();
    varint_field(&mut h, 1, 1); // sample_count
    double_field(&mut h, 2, 0.5); // sample_sum
    varint_field(&mut h, 5, zigzag(0)); // schema
    double_field(&mut h, 6, 0.001); // zero_threshold
    let mut span = Vec::new();
    varint_field(&mut span, 1, zigzag(0));
    varint_field(&mut span, 2, 1);
    bytes_field(&mut h, 12, &span);
    let mut deltas = Vec::new();
    varint(&mut deltas, zigzag(1));
    bytes_field(&mut h, 13, &deltas);
    bytes_field(&mut h, 15, &timestamp(ct));
    let mut metric = Vec::new();
    bytes_field(&mut metric, 7, &h);
    family(&mut out, "ct_pb_seconds", 4, &metric);

    let mut gauge = Vec::new();
    double_field(&mut gauge, 1, 1.0);
    let mut metric = Vec::new();
    bytes_field(&mut metric, 2, &gauge);
    family(&mut out, "ct_pb_gauge", 1, &metric);
    out
}

/// OpenMetrics: counter `ct_om` (`ct_om_total` = 7) created at `ct`.
fn openmetrics_body(ct: i64) -> Vec<u8> {
    format!(
        "# TYPE ct_om counter\nct_om_total{{path=\"/a\"}} 7\nct_om_created{{path=\"/a\"}} {}.{:03}\n# EOF\n",
        ct / 1000,
        ct % 1000
    )
    .into_bytes()
}

/// A server scraping a protobuf and an OpenMetrics target every second, both exposing
/// metrics created two minutes ago; returns it and the created timestamp.
fn start(dir: &std::path::Path, extra: &[&str]) -> (Server, i64) {
    // A whole second: OpenMetrics gives float seconds, which become ms by truncation.
    let ct = (now_ms() / 1000 - 120) * 1000;
    let pb = serve_scrape_target(PROTOBUF, protobuf_body(ct));
    let om = serve_scrape_target(OPENMETRICS, openmetrics_body(ct));
    let cfg = dir.join("meshlens.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: pb\n    scrape_native_histograms: true\n    static_configs:\n      - targets: ['{pb}']\n  \
             - job_name: om\n    static_configs:\n      - targets: ['{om}']\n"
        ),
    )
    .unwrap();
    let mut args = vec!["--config", cfg.to_str().unwrap()];
    args.extend(extra);
    (Server::start(&dir.join("data"), &args), ct)
}

/// The points of `<metric>[10m]` at now, once at least two scrapes are stored: (ms, value)
/// for floats, (ms, count) for histograms.
fn points(server: &Server, metric: &str) -> Vec<(i64, String)> {
    poll(Duration::from_secs(60), || {
        let v = server.query(&format!("{metric}[10m]"), None);
        assert_eq!(v["status"], "success", "{v}");
        let series = v["data"]["result"].as_array()?.first()?.clone();
        let pts: Vec<(i64, String)> = match (&series["values"], &series["histograms"]) {
            (Value::Array(p), _) => p
                .iter()
                .map(|p| (ms(&p[0]), p[1].as_str().unwrap().to_string()))
                .collect(),
            (_, Value::Array(p)) => p
                .iter()
                .map(|p| (ms(&p[0]), p[1]["count"].as_str().unwrap().to_string()))
                .collect(),
            _ => panic!("neither values nor histograms: {series}"),
        };
        // The zero (if any) and two scrapes.
        (pts.iter().filter(|(_, v)| v != "0").count() >= 2).then_some(pts)
    })
}

fn ms(t: &Value) -> i64 {
    (t.as_f64().unwrap() * 1000.0).round() as i64
}

/// One zero at `ct`, then only scraped values (`want`): the zero is written once, later
/// scrapes find the series already past it.
fn assert_zero_then(points: &[(i64, String)], ct: i64, want: &str, what: &str) {
    assert_eq!(points[0], (ct, "0".to_string()), "{what}: {points:?}");
    assert!(
        points[1..].iter().all(|(t, v)| v == want && *t > ct),
        "{what}: {points:?}"
    );
}

fn assert_no_zero(points: &[(i64, String)], ct: i64, want: &str, what: &str) {
    assert!(
        points.iter().all(|(t, v)| v == want && *t != ct),
        "{what}: {points:?}"
    );
}

#[test]
fn scraped_created_timestamps_become_zeros_with_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ct) = start(
        dir.path(),
        &["--enable-feature=created-timestamp-zero-ingestion"],
    );
    let pb = points(&server, "ct_pb_total");
    assert_zero_then(&pb, ct, "7", "protobuf counter");
    let hist = points(&server, "ct_pb_seconds");
    assert_zero_then(&hist, ct, "1", "protobuf native histogram");
    let om = points(&server, r#"ct_om_total{path="/a"}"#);
    assert_zero_then(&om, ct, "7", "OpenMetrics counter");
    // A gauge has no created timestamp.
    assert_no_zero(&points(&server, "ct_pb_gauge"), ct, "1", "gauge");
    // The `_created` line was read as the created timestamp, not stored as a series.
    let v = server.query(r#"{__name__=~"ct_om_created.*"}"#, None);
    assert_eq!(v["data"]["result"], serde_json::json!([]), "{v}");
}

#[test]
fn without_the_flag_scrapes_store_no_zeros_and_keep_created_series() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ct) = start(dir.path(), &[]);
    assert_no_zero(&points(&server, "ct_pb_total"), ct, "7", "protobuf counter");
    assert_no_zero(
        &points(&server, "ct_pb_seconds"),
        ct,
        "1",
        "protobuf native histogram",
    );
    assert_no_zero(
        &points(&server, r#"ct_om_total{path="/a"}"#),
        ct,
        "7",
        "OpenMetrics counter",
    );
    // As before the flag existed: `_created` is a series of its own, in seconds.
    let created = points(&server, r#"ct_om_created{path="/a"}"#);
    let secs = (ct / 1000) as f64;
    assert!(
        created
            .iter()
            .all(|(_, v)| v.parse::<f64>().unwrap() == secs),
        "{created:?}"
    );
}
