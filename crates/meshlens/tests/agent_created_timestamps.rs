//! Created timestamps through an agent: a `meshlens agent` (no flag of its own) reads them
//! from its scrapes (protobuf `created_timestamp`, OpenMetrics `_created`), from remote
//! write 2.0 and from OTLP start times, keeps them in its buffer and sends them to its hub
//! in remote write 2.0's `created_timestamp`. A hub with
//! `--enable-feature=created-timestamp-zero-ingestion` then stores the zero it would have
//! stored had it got the data directly; a hub without the flag stores none, and neither
//! does any hub the agent sends remote write 1.0 (which has no field for it).

mod common;

use std::ffi::OsStr;
use std::time::Duration;

use common::protobuf::{bytes_field, double_field, varint, varint_field};
use common::{httpc, now_ms, poll, serve_scrape_target, Server};
use meshlens_ingest::remote_write::{compress, v2};
use meshlens_model::Sample;
use serde_json::Value;

const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const V1: &str = "prometheus.WriteRequest";
const V2: &str = "io.prometheus.write.v2.Request";
const FLAG: &str = "--enable-feature=created-timestamp-zero-ingestion";

/// Protobuf: counter `agent_ct_pb_total` = 7 created at `ct`.
fn protobuf_body(ct: i64) -> Vec<u8> {
    let mut ts = Vec::new();
    varint_field(&mut ts, 1, (ct / 1000) as u64);
    varint_field(&mut ts, 2, ((ct % 1000) * 1_000_000) as u64);
    let mut counter = Vec::new();
    double_field(&mut counter, 1, 7.0);
    bytes_field(&mut counter, 3, &ts);
    let mut metric = Vec::new();
    bytes_field(&mut metric, 3, &counter);
    let mut f = Vec::new();
    bytes_field(&mut f, 1, b"agent_ct_pb_total");
    varint_field(&mut f, 3, 0); // COUNTER
    bytes_field(&mut f, 4, &metric);
    let mut out = Vec::new();
    varint(&mut out, f.len() as u64);
    out.extend_from_slice(&f);
    out
}

/// OpenMetrics: counter `agent_ct_om` (`agent_ct_om_total` = 7) created at `ct`.
fn openmetrics_body(ct: i64) -> Vec<u8> {
    format!(
        "# TYPE agent_ct_om counter\nagent_ct_om_total{{path=\"/a\"}} 7\nagent_ct_om_created{{path=\"/a\"}} {}.{:03}\n# EOF\n",
        ct / 1000,
        ct % 1000
    )
    .into_bytes()
}

/// Posts to the agent a remote write 2.0 request: counter `agent_ct_rw2_total` = 5 at `t`,
/// created at `ct`.
fn post_rw2(agent: &str, ct: i64, t: i64) {
    let mut e = v2::Encoder::new();
    let samples = [Sample::new(t, 5.0)];
    e.add_series_created(
        [("__name__", "agent_ct_rw2_total"), ("job", "rw2")],
        &samples,
        &[],
        &[],
        None,
        ct,
    );
    let body = compress(&e.finish());
    let r = httpc::Conn::open(agent)
        .unwrap()
        .request(
            "POST",
            "/api/v1/write",
            &[
                (
                    "Content-Type",
                    &format!("application/x-protobuf;proto={V2}"),
                ),
                ("Content-Encoding", "snappy"),
                ("X-Prometheus-Remote-Write-Version", "2.0.0"),
            ],
            &body,
        )
        .unwrap();
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
}

/// Posts to the agent an OTLP monotonic sum `agent_ct_otlp` = 4 at `t`, started at `ct`.
fn post_otlp(agent: &str, ct: i64, t: i64) {
    let ns = |ms: i64| (ms * 1_000_000).to_string();
    let body = serde_json::json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "shop"}}
            ]},
            "scopeMetrics": [{"metrics": [{"name": "agent_ct_otlp", "sum": {
                "aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [{
                    "startTimeUnixNano": ns(ct), "timeUnixNano": ns(t), "asInt": "4"
                }]
            }}]}]
        }]
    })
    .to_string();
    let addr = agent.trim_start_matches("http://");
    let r = common::post_otlp_metrics_json(addr, &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// The points (ms, value) of `<metric>[10m]` on the hub, once `enough` says they are all
/// there.
fn points(
    hub: &Server,
    metric: &str,
    enough: impl Fn(&[(i64, String)]) -> bool,
) -> Vec<(i64, String)> {
    poll(Duration::from_secs(120), || {
        let v = hub.query(&format!("{metric}[10m]"), None);
        assert_eq!(v["status"], "success", "{v}");
        let series = v["data"]["result"].as_array()?.first()?.clone();
        let pts: Vec<(i64, String)> = series["values"]
            .as_array()?
            .iter()
            .map(|p| {
                (
                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        enough(&pts).then_some(pts)
    })
}

/// Scraped series: the zero (if any) and two scrapes.
fn scraped(pts: &[(i64, String)]) -> bool {
    pts.iter().filter(|(_, v)| v != "0").count() >= 2
}

/// Pushed series: the one sample sent (and the zero, if any).
fn pushed(pts: &[(i64, String)]) -> bool {
    pts.iter().any(|(_, v)| v != "0")
}

/// One zero at `ct` first, then only `want` after it; or, when `zero` is false, no zero.
fn check(pts: &[(i64, String)], ct: i64, want: &str, zero: bool, what: &str) {
    if zero {
        assert_eq!(pts.first(), Some(&(ct, "0".to_string())), "{what}: {pts:?}");
        assert!(
            pts[1..].iter().all(|(t, v)| v == want && *t > ct),
            "{what}: {pts:?}"
        );
    } else {
        assert!(
            pts.iter().all(|(t, v)| v == want && *t != ct),
            "{what}: {pts:?}"
        );
    }
}

/// A hub (with `hub_flags`) and an agent sending it `message`, scraping a protobuf and an
/// OpenMetrics target created two minutes ago, and given a remote write 2.0 request and an
/// OTLP request whose counters were created then too; `zero`: whether the hub is to store
/// zeros at the created timestamp.
fn forwards_created_timestamps(message: &str, hub_flags: &[&str], zero: bool) {
    let dir = tempfile::tempdir().unwrap();
    // A whole second: OpenMetrics gives float seconds, which become ms by truncation.
    let ct = (now_ms() / 1000 - 120) * 1000;
    let pb = serve_scrape_target(PROTOBUF, protobuf_body(ct));
    let om = serve_scrape_target(OPENMETRICS, openmetrics_body(ct));
    let mut flags = vec!["--otlp-grpc-listen", "off"];
    flags.extend(hub_flags);
    let hub = Server::start(&dir.path().join("hub"), &flags);
    let config = dir.path().join("agent.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: pb\n    static_configs:\n      - targets: ['{pb}']\n  \
             - job_name: om\n    static_configs:\n      - targets: ['{om}']\n"
        ),
    )
    .unwrap();
    let agent_flags = [
        OsStr::new("--hub.protobuf-message"),
        OsStr::new(message),
        OsStr::new("--config"),
        config.as_os_str(),
    ];
    let (_agent, agent, _) =
        common::start_agent(&dir.path().join("agent"), &hub.url(""), &agent_flags);
    let t = now_ms() - 60_000;
    post_rw2(&agent, ct, t);
    post_otlp(&agent, ct, t);

    let what = |m: &str| format!("{m} via {message}, hub flags {hub_flags:?}");
    let pts = points(&hub, "agent_ct_pb_total", scraped);
    check(&pts, ct, "7", zero, &what("protobuf counter"));
    let pts = points(&hub, r#"agent_ct_om_total{path="/a"}"#, scraped);
    check(&pts, ct, "7", zero, &what("OpenMetrics counter"));
    let pts = points(&hub, "agent_ct_rw2_total", pushed);
    check(&pts, ct, "5", zero, &what("remote write 2.0 counter"));
    assert_eq!(pts.last().map(|p| p.0), Some(t));
    let pts = points(&hub, "agent_ct_otlp_total", pushed);
    check(&pts, ct, "4", zero, &what("OTLP counter"));
    // The agent cannot know what the hub does with `_created` lines: it keeps them as
    // series too, as an agent always did.
    let created = points(&hub, r#"agent_ct_om_created{path="/a"}"#, |p| !p.is_empty());
    let secs = (ct / 1000) as f64;
    assert!(
        created
            .iter()
            .all(|(_, v)| v.parse::<f64>().unwrap() == secs),
        "{created:?}"
    );
    let v = hub.query(r#"agent_ct_pb_total"#, None);
    let labels: &Value = &v["data"]["result"][0]["metric"];
    assert_eq!(labels["cluster"], "east", "{v}");
}

#[test]
fn an_agent_forwards_created_timestamps_to_a_hub_with_the_flag_over_remote_write_2_0() {
    forwards_created_timestamps(V2, &[FLAG], true);
}

#[test]
fn a_hub_without_the_flag_stores_no_zeros_from_an_agents_created_timestamps() {
    forwards_created_timestamps(V2, &[], false);
}

#[test]
fn remote_write_1_0_from_an_agent_carries_no_created_timestamps() {
    forwards_created_timestamps(V1, &[FLAG], false);
}
