//! OTLP metrics from a real client: the OpenTelemetry Python SDK exports a counter, an
//! up-down counter, an observable gauge, an explicit-bucket and an exponential histogram over OTLP/HTTP
//! (protobuf) and over OTLP/gRPC to `meshlens server`; the series API and instant queries must
//! show exactly the names, labels, `target_info` and values that Prometheus 3's OTLP
//! translation (default `UnderscoreEscapingWithSuffixes`, with
//! `--otlp.promote-resource-attributes=deployment.environment`) produces. Then bad input over
//! HTTP: a truncated body, a delta sum, an inconsistent and a valid exponential histogram, a
//! wrong Content-Type. The same exports through a `meshlens agent` reach its hub with the
//! agent's `cluster` label added and nothing else changed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{get_json, poll, require_python_module, urlencode, Server};
use serde_json::Value;

type LabelSet = BTreeMap<String, String>;

fn send(mode: &str, endpoint: &str, service: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/otel_metrics_send.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args([mode, endpoint, service]);
    // The SDK reads these; a stray one in the environment would change the resource.
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("run python3");
    assert!(
        out.status.success(),
        "{mode} client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client prints JSON")
}

/// What Prometheus 3 stores for the script's metrics, written out by hand from its rules:
/// (labels including `__name__`, value).
fn expected(job: &str, sdk_version: &str) -> Vec<(LabelSet, f64)> {
    let common = [
        ("job", job),
        ("instance", "pod-1"),
        // Promoted by the flag; still in target_info too.
        ("deployment_environment", "test"),
    ];
    let series = |name: &str, extra: &[(&str, &str)], v: f64| {
        let mut l: LabelSet = common
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert("__name__".into(), name.into());
        (l, v)
    };
    let route = ("http_route", "/checkout");
    let h = "http_server_duration_milliseconds";
    vec![
        // counter "http.server.requests", unit "{request}": the annotation adds nothing.
        series(
            "http_server_requests_total",
            &[("http_method", "GET"), route],
            7.0,
        ),
        series(
            "http_server_requests_total",
            &[("http_method", "POST"), route],
            1.0,
        ),
        // up-down counter "messaging.queue.depth", unit "{message}": a gauge, no _total.
        series("messaging_queue_depth", &[("queue", "orders")], 7.0),
        // up-down counter "process.memory.usage", unit "By".
        series("process_memory_usage_bytes", &[], 1_048_576.0),
        // observable gauge "cpu.utilization", unit "1": _ratio.
        series("cpu_utilization_ratio", &[("cpu", "0")], 0.25),
        // histogram "http.server.duration", unit "ms", bounds 5, 50, 100; values 3 7 30 120.
        series(&format!("{h}_bucket"), &[route, ("le", "5")], 1.0),
        series(&format!("{h}_bucket"), &[route, ("le", "50")], 3.0),
        series(&format!("{h}_bucket"), &[route, ("le", "100")], 3.0),
        series(&format!("{h}_bucket"), &[route, ("le", "+Inf")], 4.0),
        series(&format!("{h}_count"), &[route], 4.0),
        series(&format!("{h}_sum"), &[route], 160.0),
        // The resource's other attributes (the SDK adds telemetry.sdk.*); promoted
        // attributes are not added again, service.* are job and instance.
        {
            let l: LabelSet = [
                ("__name__", "target_info"),
                ("job", job),
                ("instance", "pod-1"),
                ("deployment_environment", "test"),
                ("telemetry_sdk_language", "python"),
                ("telemetry_sdk_name", "opentelemetry"),
                ("telemetry_sdk_version", sdk_version),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            (l, 1.0)
        },
    ]
}

fn label_set(v: &Value) -> LabelSet {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// Sends with `mode` as `service` and compares the series and values with `expected`.
fn send_and_check(server: &Server, mode: &str, endpoint: &str, service: &str) {
    send_and_check_with(server, mode, endpoint, service, &[]);
}

/// As `send_and_check`, each expected series with the labels `added` on the way (an
/// agent's `cluster`).
fn send_and_check_with(
    server: &Server,
    mode: &str,
    endpoint: &str,
    service: &str,
    added: &[(&str, &str)],
) {
    let sent = send(mode, endpoint, service);
    let job = format!("shop/{service}");
    let add = |mut l: LabelSet| {
        l.extend(added.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        l
    };
    let want: Vec<(LabelSet, f64)> = expected(&job, sent["sdk_version"].as_str().unwrap())
        .into_iter()
        .map(|(l, v)| (add(l), v))
        .collect();
    let matcher = urlencode(&format!("{{job=\"{job}\"}}"));
    let mut want_sets: BTreeSet<LabelSet> = want.iter().map(|(l, _)| l.clone()).collect();
    // The exponential histogram "rpc.server.duration", unit "s": a native histogram named
    // with its unit and no suffix.
    let native: LabelSet = [
        ("__name__", "rpc_server_duration_seconds"),
        ("job", job.as_str()),
        ("instance", "pod-1"),
        ("deployment_environment", "test"),
        ("rpc_method", "Get"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    want_sets.insert(add(native));
    // Stored before the export returned; the poll only allows for a slow machine.
    let got_sets = poll(Duration::from_secs(30), || {
        let v = get_json(&server.url(&format!("/api/v1/series?match[]={matcher}")));
        let got: BTreeSet<LabelSet> = v["data"].as_array()?.iter().map(label_set).collect();
        (got.len() >= want_sets.len()).then_some(got)
    });
    let missing: Vec<_> = want_sets.difference(&got_sets).collect();
    let extra: Vec<_> = got_sets.difference(&want_sets).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{mode}: series differ from Prometheus 3's translation\nmissing: {missing:#?}\nunexpected: {extra:#?}"
    );
    let answer = server.query(&format!("{{job=\"{job}\"}}"), None);
    assert_eq!(answer["status"], "success", "{answer}");
    let got: BTreeMap<LabelSet, f64> = answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("histogram").is_none())
        .map(|r| {
            (
                label_set(&r["metric"]),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let h = format!("rpc_server_duration_seconds{{job=\"{job}\"}}");
    let count = server.query(&format!("histogram_count({h})"), None);
    assert_eq!(
        count["data"]["result"][0]["value"][1], "4",
        "{mode}: {count}"
    );
    let sum = server.query(&format!("histogram_sum({h})"), None);
    let sum: f64 = sum["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((sum - 1.5).abs() < 1e-9, "{mode}: sum {sum}");
    // Each observation in its own bucket: 0.1 <= x <= 0.8 holds all four.
    let within = server.query(&format!("histogram_fraction(0.09, 0.81, {h})"), None);
    assert_eq!(
        within["data"]["result"][0]["value"][1], "1",
        "{mode}: {within}"
    );
    for (labels, v) in &want {
        assert_eq!(got.get(labels), Some(v), "{mode}: value of {labels:?}");
    }
    // Metadata kept per family, as Prometheus keeps it from OTLP.
    let meta = get_json(&server.url("/api/v1/metadata?metric=http_server_requests_total"));
    assert_eq!(
        meta["data"]["http_server_requests_total"][0]["type"], "counter",
        "{meta}"
    );
}

fn post(server: &Server, content_type: &str, body: &[u8]) -> common::httpc::Response {
    let mut conn = common::httpc::Conn::open(&server.url("")).unwrap();
    conn.request(
        "POST",
        "/v1/metrics",
        &[("Content-Type", content_type)],
        body,
    )
    .unwrap()
}

fn bad_input(server: &Server) {
    // A protobuf body cut short: 400, and the message says where.
    let r = post(server, "application/x-protobuf", &[0x0a, 0x10, 0x0a, 0x02]);
    assert_eq!(r.status, 400);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains("malformed protobuf ExportMetricsServiceRequest: truncated: a field announces 16 bytes where 2 are left at byte 1"),
        "{text}"
    );

    // A delta sum and an exponential histogram whose count (1) its buckets do not hold, beside
    // a valid gauge: partial success naming the first data point; the gauge kept.
    let now_ns = (common::now_ms() as u64) * 1_000_000;
    let body = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"bad-input"}}}}]}},
        "scopeMetrics":[{{"metrics":[
          {{"name":"jobs.done","sum":{{"aggregationTemporality":1,"isMonotonic":true,
            "dataPoints":[{{"timeUnixNano":"{now_ns}","asInt":"3"}}]}}}},
          {{"name":"sizes","exponentialHistogram":{{"aggregationTemporality":2,
            "dataPoints":[{{"timeUnixNano":"{now_ns}","count":"1"}}]}}}},
          {{"name":"temperature","unit":"Cel","gauge":{{"dataPoints":[{{"timeUnixNano":"{now_ns}","asDouble":21.5}}]}}}}
        ]}}]}}]}}"#
    );
    let r = post(server, "application/json", body.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "2", "{v}");
    let msg = v["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        msg.starts_with("resourceMetrics[0].scopeMetrics[0].metrics[0] (\"jobs.done\").dataPoints[0]: delta aggregation temporality is not supported"),
        "{msg}"
    );
    assert!(msg.ends_with("(2 data points refused in all)"), "{msg}");
    let q = server.query("temperature_celsius{job=\"bad-input\"}", None);
    assert_eq!(q["data"]["result"][0]["value"][1], "21.5", "{q}");
    let q = server.query("{job=\"bad-input\",__name__=~\"jobs.*|sizes.*\"}", None);
    assert_eq!(q["data"]["result"], serde_json::json!([]), "{q}");

    // A valid exponential histogram alone: a native histogram, stored (scale 3, the OTLP
    // offset -1 is Prometheus's bucket 0, one observation in the zero bucket).
    let body = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"sizes","exponentialHistogram":{{"aggregationTemporality":2,
            "dataPoints":[{{"timeUnixNano":"{now_ns}","count":"3","zeroCount":"1","scale":3,
              "positive":{{"offset":-1,"bucketCounts":["1","1"]}}}}]}}}}]}}]}}]}}"#
    );
    let r = post(server, "application/json", body.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v, serde_json::json!({}), "stored whole: {v}");
    let q = server.query("histogram_count(sizes)", None);
    assert_eq!(q["data"]["result"][0]["value"][1], "3", "{q}");
    let q = server.query("sizes", None);
    let buckets = q["data"]["result"][0]["histogram"][1]["buckets"].clone();
    assert_eq!(
        buckets,
        serde_json::json!([
            [3, "-1e-128", "1e-128", "1"],
            [0, "0.9170040432046711", "1", "1"],
            [0, "1", "1.0905077326652577", "1"]
        ]),
        "{q}"
    );

    let r = post(server, "text/plain", b"x");
    assert_eq!(r.status, 415);

    let metrics = common::httpc::get(&server.url("/metrics")).unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("meshlens_otlp_metrics_requests_total{code=\"400\"} 1"),
        "{text}"
    );
}

#[test]
fn opentelemetry_sdk_metrics_over_otlp_http_and_grpc() {
    if !(require_python_module("opentelemetry.sdk.metrics")
        && require_python_module("opentelemetry.exporter.otlp.proto.grpc.metric_exporter")
        && require_python_module("opentelemetry.exporter.otlp.proto.http.metric_exporter"))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--otlp.promote-resource-attributes=deployment.environment"],
    );
    let grpc = server
        .otlp_grpc
        .clone()
        .expect("server prints its OTLP/gRPC address");
    send_and_check(
        &server,
        "otlp-http",
        &server.url("/v1/metrics"),
        "checkout-http",
    );
    send_and_check(
        &server,
        "otlp-grpc",
        &format!("http://{grpc}"),
        "checkout-grpc",
    );
    bad_input(&server);
}

/// An agent takes OTLP metrics over HTTP and gRPC, buffers them and forwards them to its hub:
/// the hub shows Prometheus 3's translation, each series with the agent's `cluster`.
#[test]
fn opentelemetry_sdk_metrics_through_an_agent() {
    if !(require_python_module("opentelemetry.sdk.metrics")
        && require_python_module("opentelemetry.exporter.otlp.proto.grpc.metric_exporter")
        && require_python_module("opentelemetry.exporter.otlp.proto.http.metric_exporter"))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("hub"), &["--otlp-grpc-listen", "off"]);
    let flags = [
        "--otlp-grpc-listen",
        "127.0.0.1:0",
        "--otlp.promote-resource-attributes=deployment.environment",
    ];
    let flags: Vec<&std::ffi::OsStr> = flags.iter().map(std::ffi::OsStr::new).collect();
    let (_agent, agent, grpc) =
        common::start_agent(&dir.path().join("agent"), &hub.url(""), &flags);
    let grpc = grpc.expect("the agent prints its OTLP/gRPC address");
    let cluster = [("cluster", "east")];
    send_and_check_with(
        &hub,
        "otlp-http",
        &format!("{agent}/v1/metrics"),
        "agent-http",
        &cluster,
    );
    send_and_check_with(
        &hub,
        "otlp-grpc",
        &format!("http://{grpc}"),
        "agent-grpc",
        &cluster,
    );
    let text = String::from_utf8_lossy(
        &common::httpc::get(&format!("{agent}/metrics"))
            .unwrap()
            .body,
    )
    .into_owned();
    assert!(
        text.contains("meshlens_agent_requests_total{path=\"/v1/metrics\",code=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("meshlens_otlp_metrics_requests_total{code=\"200\"} 2"),
        "{text}"
    );
}

/// With `--multitenancy` a metrics export goes to the tenant its `X-Scope-OrgID` names, as
/// trace exports do, on the main listener and on the separate OTLP/HTTP one.
#[test]
fn otlp_metrics_follow_the_tenant_header() {
    let dir = tempfile::tempdir().unwrap();
    let otlp_http = format!("127.0.0.1:{}", common::free_port());
    let server = Server::start(
        dir.path(),
        &["--multitenancy", "--otlp-http-listen", &otlp_http],
    );
    let now_ns = (common::now_ms() as u64) * 1_000_000;
    let body = |service: &str| {
        format!(
            r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},
            "scopeMetrics":[{{"metrics":[{{"name":"orders","sum":{{"aggregationTemporality":2,"isMonotonic":true,
              "dataPoints":[{{"timeUnixNano":"{now_ns}","asInt":"5"}}]}}}}]}}]}}]}}"#
        )
    };
    let client = common::httpc::Client::new().unwrap();
    let post = |origin: &str, headers: &[(&str, &str)], service: &str| {
        let mut h = vec![("Content-Type", "application/json")];
        h.extend_from_slice(headers);
        client
            .request(
                "POST",
                &format!("{origin}/v1/metrics"),
                &h,
                body(service).as_bytes(),
            )
            .unwrap()
    };
    let r = post(&server.url(""), &[], "nobody");
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    let r = post(&server.url(""), &[("X-Scope-OrgID", "a|b")], "two");
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let r = post(
        &server.url(""),
        &[("X-Scope-OrgID", "team-a")],
        "main-listener",
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = post(
        &format!("http://{otlp_http}"),
        &[("X-Scope-OrgID", "team-a")],
        "otlp-listener",
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let jobs = |tenant: &str| -> BTreeSet<String> {
        let url = server.url(&format!(
            "/api/v1/query?query={}",
            urlencode("orders_total")
        ));
        let r = client
            .request("GET", &url, &[("X-Scope-OrgID", tenant)], b"")
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metric"]["job"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        jobs("team-a"),
        BTreeSet::from(["main-listener".to_string(), "otlp-listener".to_string()])
    );
    assert!(jobs("team-b").is_empty());
}
