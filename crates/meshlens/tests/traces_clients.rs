//! Real trace clients: the OpenTelemetry Python SDK sends the same small trace over OTLP/HTTP,
//! OTLP/gRPC and Zipkin JSON; the Zipkin and Jaeger query APIs must return it intact, on the
//! embedded span store and on a 2-shard ClickHouse cluster alike.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{get_json, poll, require_python_module, Server};
use meshlens_clickhouse::testing::TestCluster;
use serde_json::Value;

fn send(mode: &str, endpoint: &str, service: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/otel_send.py");
    let out = Command::new("python3")
        .arg(script)
        .args([mode, endpoint, service])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{mode} client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client prints JSON")
}

/// Checks one sent trace against the Zipkin v2 and Jaeger answers. `otlp`: the spans came
/// as OTLP and meshlens mapped them (the Python Zipkin exporter leaves `peer.service` a tag).
fn check_trace(server: &Server, sent: &Value, otlp: bool) {
    let trace_id = sent["trace_id"].as_str().unwrap();
    let service = sent["service"].as_str().unwrap();
    let url = server.url(&format!("/api/v2/trace/{trace_id}"));
    let spans = poll(Duration::from_secs(60), || {
        let r = common::httpc::get(&url).ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        (r.status == 200 && v.as_array()?.len() == 2).then_some(v)
    });
    let spans = spans.as_array().unwrap();
    for want in sent["spans"].as_array().unwrap() {
        let got = spans
            .iter()
            .find(|s| s["id"] == want["span_id"])
            .unwrap_or_else(|| panic!("span {} missing from {spans:?}", want["span_id"]));
        assert_eq!(got["traceId"], trace_id, "128-bit trace id kept");
        assert_eq!(got["name"], want["name"]);
        assert_eq!(got["kind"], want["kind"]);
        assert_eq!(got["localEndpoint"]["serviceName"], service);
        match want["parent_id"].as_str() {
            Some(p) => assert_eq!(got["parentId"], p),
            None => assert!(got.get("parentId").is_none()),
        }
        assert!(got["duration"].as_u64().unwrap() >= 1);
        assert!(got["timestamp"].as_u64().unwrap() > 1_600_000_000_000_000);
    }
    let root = spans.iter().find(|s| s.get("parentId").is_none()).unwrap();
    assert_eq!(root["tags"]["http.method"], "GET");
    assert_eq!(root["tags"]["http.status_code"], "200");
    let events = root["annotations"].as_array().unwrap();
    assert!(
        events[0]["value"].as_str().unwrap().contains("cache miss"),
        "{events:?}"
    );
    let child = spans.iter().find(|s| s.get("parentId").is_some()).unwrap();
    assert_eq!(child["tags"]["error"], "card declined");
    if otlp {
        assert_eq!(child["remoteEndpoint"]["serviceName"], "payments");
        assert_eq!(child["tags"]["otel.scope.name"], "meshlens.test");
    } else {
        assert_eq!(child["tags"]["peer.service"], "payments");
    }

    // The same trace through the other query surfaces.
    let services = get_json(&server.url("/api/v2/services"));
    assert!(services.as_array().unwrap().iter().any(|s| s == service));
    let names = get_json(&server.url(&format!("/api/v2/spans?serviceName={service}")));
    assert_eq!(names, serde_json::json!(["charge card", "get /checkout"]));
    let remote = get_json(&server.url(&format!("/api/v2/remoteServices?serviceName={service}")));
    if otlp {
        assert_eq!(remote, serde_json::json!(["payments"]));
    }
    let found = get_json(&server.url(&format!(
        "/api/v2/traces?serviceName={service}&annotationQuery=error&limit=5"
    )));
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let jaeger = get_json(&server.url(&format!("/api/traces/{trace_id}")));
    let jspans = jaeger["data"][0]["spans"].as_array().unwrap();
    assert_eq!(jspans.len(), 2);
    assert_eq!(jaeger["data"][0]["traceID"], trace_id);
    let jsearch = get_json(&server.url(&format!(
        "/api/traces?service={service}&operation=charge%20card&limit=5"
    )));
    assert_eq!(jsearch["data"].as_array().unwrap().len(), 1, "{jsearch}");
    let ops = get_json(&server.url(&format!("/api/operations?service={service}")));
    assert_eq!(ops["data"][0]["name"], "charge card");
    let ops = get_json(&server.url(&format!("/api/v3/operations?service={service}")));
    assert_eq!(ops["operations"][1]["name"], "get /checkout");
    let v3 = get_json(&server.url(&format!("/api/v3/traces/{trace_id}")));
    let rs = &v3["result"]["resourceSpans"][0];
    assert_eq!(
        rs["resource"]["attributes"][0]["value"]["stringValue"],
        service
    );
    assert_eq!(rs["scopeSpans"][0]["spans"].as_array().unwrap().len(), 2);
}

/// Whether the OpenTelemetry SDK and its exporters are installed (a skip, or a failure
/// under CI, when not).
fn clients_installed() -> bool {
    require_python_module("opentelemetry.sdk")
        && require_python_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
        && require_python_module("opentelemetry.exporter.zipkin.json")
}

#[test]
fn opentelemetry_sdk_over_otlp_http_grpc_and_zipkin() {
    if !clients_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    send_and_check_all(&server);
}

#[test]
fn opentelemetry_sdk_over_otlp_http_grpc_and_zipkin_on_clickhouse() {
    if !clients_installed() {
        return;
    }
    let cluster = match TestCluster::start() {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => panic!("the ClickHouse test cluster did not start: {e}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--storage", &cluster.storage_url(0, "trace_clients")],
    );
    send_and_check_all(&server);
}

/// One trace per transport, each checked through every query surface, then the ingest
/// counters.
fn send_and_check_all(server: &Server) {
    let grpc = server
        .otlp_grpc
        .clone()
        .expect("server prints its OTLP/gRPC address");

    let http = send("otlp-http", &server.url("/v1/traces"), "shop-http");
    check_trace(server, &http, true);
    let grpc = send("otlp-grpc", &format!("http://{grpc}"), "shop-grpc");
    check_trace(server, &grpc, true);
    let zipkin = send("zipkin", &server.url("/api/v2/spans"), "shop-zipkin");
    check_trace(server, &zipkin, false);

    let metrics = common::httpc::get(&server.url("/metrics")).unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    for transport in ["otlp_http_protobuf", "otlp_grpc", "zipkin_json"] {
        let line = format!("meshlens_spans_ingested_total{{transport=\"{transport}\"}} 2");
        assert!(text.contains(&line), "missing {line}");
    }
}
