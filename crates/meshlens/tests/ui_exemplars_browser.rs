//! Exemplars in the web UI, in a real browser: a server holds a counter with two exemplars
//! naming traces, Istio traffic of `frontend` calling `checkout` with exemplars on its
//! request-duration histogram, and those traces' Zipkin spans. Headless Chromium (Debian's
//! `chromium`, driven by Playwright through `tests/ui/ui_exemplars.py`) then checks that the
//! Metrics chart draws a marker per exemplar that opens its trace, and that the topology's
//! edge panel lists the edge's slowest exemplar traces, slowest first, each opening its trace.
//! Screenshots land in `<target>/tmp/ui-exemplars-screenshots/` (printed below).

mod common;

use std::time::Duration;

use common::httpc::Conn;
use common::{
    frontend_calls, get_json, now_ms, poll, require_binary, require_python_module,
    run_browser_script, urlencode, Server,
};
use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::{Exemplar, Labels, Sample, SeriesExemplars, TimeSeries};

/// The traces the exemplars name: (trace id, value of its exemplar).
const COUNTER_TRACES: [(&str, f64); 2] = [
    ("0000000000000000000000000000ab01", 1.0),
    ("0000000000000000000000000000ab02", 1.0),
];
const EDGE_TRACES: [(&str, f64); 2] = [
    ("0000000000000000000000000000cd01", 180.0),
    ("0000000000000000000000000000cd02", 240.0),
];

fn exemplar(trace: &str, v: f64, t: i64) -> Exemplar {
    Exemplar {
        labels: Labels::from_pairs([("trace_id", trace)]),
        value: v,
        t,
    }
}

fn zipkin(trace: &str, ts_us: i64) -> String {
    let id2 = format!("{}ff", &trace[16..30]);
    format!(
        r#"{{"traceId":"{trace}","id":"{id}","kind":"CLIENT","name":"get /cart","timestamp":{ts_us},"duration":200000,"localEndpoint":{{"serviceName":"frontend"}},"remoteEndpoint":{{"serviceName":"checkout"}},"tags":{{"http.status_code":"200"}}}},
        {{"traceId":"{trace}","id":"{id2}","parentId":"{id}","kind":"SERVER","name":"get /cart","timestamp":{ts2},"duration":150000,"localEndpoint":{{"serviceName":"checkout"}},"tags":{{"http.status_code":"200"}}}}"#,
        id = &trace[16..],
        ts2 = ts_us + 1000,
    )
}

#[test]
fn web_ui_marks_exemplars_and_opens_their_traces() {
    if !require_binary("chromium") || !require_python_module("playwright") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--otlp-grpc-listen", "off"]);
    let now = now_ms();
    let counter = Labels::from_pairs([("__name__", "shop_requests_total"), ("job", "shop")]);
    let bucket = Labels::from_pairs([
        ("__name__", "istio_request_duration_milliseconds_bucket"),
        ("reporter", "source"),
        ("source_workload", "frontend"),
        ("source_workload_namespace", "default"),
        ("source_app", "frontend"),
        ("destination_workload", "checkout"),
        ("destination_workload_namespace", "default"),
        ("destination_app", "checkout"),
        ("destination_service_name", "checkout"),
        ("le", "250"),
    ]);
    let samples = |every: i64| -> Vec<Sample> {
        (0..15)
            .map(|i| Sample::new(now - (15 - i) * every, (i * 7) as f64))
            .collect()
    };
    let body = encode(&WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: counter.clone(),
                samples: samples(20_000),
            },
            TimeSeries {
                labels: bucket.clone(),
                samples: samples(20_000),
            },
            frontend_calls("checkout", "checkout", None),
        ],
        exemplars: vec![
            SeriesExemplars {
                series: counter,
                exemplars: COUNTER_TRACES
                    .iter()
                    .enumerate()
                    .map(|(i, (t, v))| exemplar(t, *v, now - 200_000 + i as i64 * 100_000))
                    .collect(),
            },
            SeriesExemplars {
                series: bucket,
                exemplars: EDGE_TRACES
                    .iter()
                    .enumerate()
                    .map(|(i, (t, v))| exemplar(t, *v, now - 150_000 + i as i64 * 60_000))
                    .collect(),
            },
        ],
        ..Default::default()
    });
    let mut conn = Conn::open(&server.addr).unwrap();
    let r = conn
        .request(
            "POST",
            "/api/v1/write",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "snappy"),
            ],
            &body,
        )
        .unwrap();
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let spans: Vec<String> = COUNTER_TRACES
        .iter()
        .chain(EDGE_TRACES.iter())
        .enumerate()
        .map(|(i, (t, _))| zipkin(t, (now - 100_000 + i as i64 * 1000) * 1000))
        .collect();
    let r = conn
        .request(
            "POST",
            "/api/v2/spans",
            &[("Content-Type", "application/json")],
            format!("[{}]", spans.join(",")).as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    // Spans are indexed asynchronously: readable before the UI is judged.
    for (t, _) in COUNTER_TRACES.iter().chain(EDGE_TRACES.iter()) {
        poll(Duration::from_secs(30), || {
            let r = common::httpc::get(&server.url(&format!("/api/v2/trace/{t}"))).ok()?;
            (r.status == 200).then_some(())
        });
    }
    let v = get_json(&server.url(&format!(
        "/api/v1/query_exemplars?query={}",
        urlencode("shop_requests_total")
    )));
    assert_eq!(
        v["data"][0]["exemplars"].as_array().unwrap().len(),
        2,
        "{v}"
    );

    let traces = |list: &[(&str, f64)]| {
        list.iter()
            .map(|(t, _)| t.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    run_browser_script(
        "ui_exemplars.py",
        &server.url(""),
        "ui-exemplars-screenshots",
        &[&traces(&COUNTER_TRACES), &traces(&EDGE_TRACES)],
    );
}
