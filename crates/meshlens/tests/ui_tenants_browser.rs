//! The web UI keeps tenants apart, in a real browser: a `--multitenancy` server holds a
//! metric series and Zipkin traces for `team-a` (service `alpha` calling `alpha-db`) and for
//! `team-b` (`beta` calling `beta-db`); headless Chromium (Debian's `chromium`, driven by
//! Playwright through `tests/ui/ui_tenants.py`) then checks that without a tenant the views
//! say one is needed, that with the top bar's tenant field (or `tenant=` in the address) each
//! tenant's metrics chart, trace search, metric-name completion and trace-sourced topology
//! show only its own services, and that `team-a|team-b` shows both.
//! Screenshots land in `<target>/tmp/ui-tenants-screenshots/` (printed below).

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::httpc::Conn;
use common::{
    poll, require_binary, require_python_module, run_browser_script, spawn_server, urlencode,
    wait_ready, KillOnDrop,
};
use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::{Labels, Sample, TimeSeries};

/// (tenant, service) pairs written; each tenant's service calls `<service>-db`.
const TENANTS: [(&str, &str); 2] = [("team-a", "alpha"), ("team-b", "beta")];

/// Starts a multitenant server without OTLP/gRPC; returns its guard and base URL.
fn start(data: &Path) -> (KillOnDrop, String) {
    let (child, printed) = spawn_server(data, &["--multitenancy", "--otlp-grpc-listen", "off"]);
    let base = format!("http://{}", printed.main);
    let guard = KillOnDrop(child);
    wait_ready(&base, Duration::from_secs(60));
    (guard, base)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A counter `<svc>_requests_total{job="<svc>"}` with a sample every 20 s over the last 5 minutes.
fn counter(svc: &str) -> TimeSeries {
    let now = now_ms();
    let name = format!("{svc}_requests_total");
    TimeSeries {
        labels: Labels::from_pairs([("__name__", name.as_str()), ("job", svc)]),
        samples: (0..15)
            .map(|i| Sample {
                t: now - (15 - i) * 20_000,
                v: (i * 7) as f64,
            })
            .collect(),
    }
}

/// Two traces of `svc` (client span) calling `svc-db` (server span), a few seconds old.
fn zipkin_traces(svc: &str, trace_prefix: &str) -> String {
    let spans: Vec<String> = (1..=2)
        .map(|k| {
            let ts = (now_ms() - 3_000 * k) * 1000;
            let trace = format!("{trace_prefix}{k:02}");
            format!(
                r#"{{"traceId":"{trace}","id":"000000000000000{k}","kind":"CLIENT","name":"get /{svc}","timestamp":{ts},"duration":{d},"localEndpoint":{{"serviceName":"{svc}"}},"remoteEndpoint":{{"serviceName":"{svc}-db"}},"tags":{{"http.method":"GET","http.url":"http://{svc}-db/{svc}","http.status_code":"200"}}}},
                {{"traceId":"{trace}","id":"00000000000000a{k}","parentId":"000000000000000{k}","kind":"SERVER","name":"get /{svc}","timestamp":{ts2},"duration":{d2},"localEndpoint":{{"serviceName":"{svc}-db"}},"tags":{{"http.method":"GET","http.url":"http://{svc}-db/{svc}","http.status_code":"200"}}}}"#,
                d = 2_000 * k,
                ts2 = ts + 100,
                d2 = 1_500 * k,
            )
        })
        .collect();
    format!("[{}]", spans.join(","))
}

/// Writes both tenants' series and spans, each with its own `X-Scope-OrgID`.
fn write_data(base: &str) {
    let mut conn = Conn::open(base).expect("connect");
    for (i, (org, svc)) in TENANTS.iter().enumerate() {
        let body = encode(&WriteRequest {
            timeseries: vec![counter(svc)],
            ..Default::default()
        });
        let r = conn
            .request(
                "POST",
                "/api/v1/write",
                &[
                    ("Content-Type", "application/x-protobuf"),
                    ("Content-Encoding", "snappy"),
                    ("X-Scope-OrgID", org),
                ],
                &body,
            )
            .expect("remote write");
        assert_eq!(
            r.status,
            204,
            "remote write for {org}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let spans = zipkin_traces(svc, &format!("00000000000{i}00"));
        let r = conn
            .request(
                "POST",
                "/api/v2/spans",
                &[("Content-Type", "application/json"), ("X-Scope-OrgID", org)],
                spans.as_bytes(),
            )
            .expect("post spans");
        assert_eq!(
            r.status,
            202,
            "spans for {org}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

/// The body of a GET as `org`, once it is a 200.
fn get_as(base: &str, path: &str, org: &str) -> Option<String> {
    let mut conn = Conn::open(base).ok()?;
    let r = conn
        .request("GET", path, &[("X-Scope-OrgID", org)], b"")
        .ok()?;
    (r.status == 200).then(|| String::from_utf8_lossy(&r.body).into_owned())
}

#[test]
fn web_ui_keeps_tenants_apart() {
    if !require_binary("chromium") || !require_python_module("playwright") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start(&dir.path().join("data"));
    write_data(&base);

    // The data is readable through the APIs before the UI is judged (spans are indexed
    // asynchronously); the browser script then checks what the UI makes of it.
    let q = format!(
        "/api/v1/query?query={}",
        urlencode(r#"{__name__=~".+_requests_total"}"#)
    );
    for (org, svc) in TENANTS {
        poll(Duration::from_secs(30), || {
            let m = get_as(&base, &q, org)?;
            let s = get_as(&base, "/api/v2/traces?limit=10", org)?;
            (m.contains(&format!("{svc}_requests_total")) && s.contains(&format!("\"{svc}-db\"")))
                .then_some(())
        });
    }

    run_browser_script("ui_tenants.py", &base, "ui-tenants-screenshots", &[]);
}
