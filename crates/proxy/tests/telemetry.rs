//! Istio metrics at the admin listener, trace propagation, and span export.

mod common;

use std::sync::Arc;

use common::*;
use meshlens_proxy::TraceExport;

fn mesh(b: &Backend) -> String {
    format!(
        "{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc}}\nspec:\n  hosts: [svc]\n  http:\n  - match: [{{uri: {{prefix: /fail}}}}]\n    fault: {{abort: {{httpStatus: 503, percentage: {{value: 100}}}}}}\n    route: [{{destination: {{host: svc}}}}]\n  - route: [{{destination: {{host: svc}}}}]\n",
        service_entry("svc", &[(b, "v1")])
    )
}

#[tokio::test]
async fn istio_metrics_with_labels_and_histograms() {
    let b = Backend::named("hello").await; // 5-byte responses
    let h = start(&mesh(&b)).await;
    for _ in 0..3 {
        assert_eq!(
            h.send("POST", "svc", "/", &[], "0123456789").await.status,
            200
        );
    }
    let labels = [
        "reporter=\"source\"",
        "source_workload=\"productpage-v1\"",
        "source_app=\"productpage\"",
        "source_version=\"v1\"",
        "source_workload_namespace=\"default\"",
        "destination_workload=\"svc-v1\"",
        "destination_app=\"svc\"",
        "destination_version=\"v1\"",
        "destination_service=\"svc.default.svc.cluster.local\"",
        "destination_service_name=\"svc\"",
        "destination_service_namespace=\"default\"",
        "request_protocol=\"http\"",
        "response_code=\"200\"",
        "response_flags=\"-\"",
        "connection_security_policy=\"unknown\"",
    ];
    assert!(
        eventually(|| async {
            metric_value(&h.metrics().await, "istio_requests_total", &labels) == 3.0
        })
        .await,
        "{}",
        h.metrics().await
    );
    let m = h.metrics().await;
    assert_eq!(
        metric_value(&m, "istio_request_duration_milliseconds_count", &labels),
        3.0
    );
    assert_eq!(
        metric_value(
            &m,
            "istio_request_duration_milliseconds_bucket",
            &[&labels[..], &["le=\"+Inf\""]].concat()
        ),
        3.0
    );
    assert!(m.contains("le=\"3600000\""), "Envoy's duration buckets");
    assert_eq!(metric_value(&m, "istio_request_bytes_sum", &labels), 30.0);
    assert_eq!(metric_value(&m, "istio_response_bytes_sum", &labels), 15.0);
    assert_eq!(
        metric_value(
            &m,
            "istio_response_bytes_bucket",
            &[&labels[..], &["le=\"10\""]].concat()
        ),
        3.0
    );
    assert!(m.contains("# TYPE istio_requests_total counter"));
    assert!(m.contains("# TYPE istio_request_duration_milliseconds histogram"));
    // The same text at Envoy's path.
    let s = h.admin_get("/stats/prometheus").await;
    assert!(s.contains("istio_requests_total{"));

    h.get("svc", "/fail").await;
    assert!(
        eventually(|| async {
            metric_value(
                &h.metrics().await,
                "istio_requests_total",
                &[
                    "response_code=\"503\"",
                    "response_flags=\"FI\"",
                    "destination_service_name=\"svc\"",
                ],
            ) == 1.0
        })
        .await
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn b3_and_traceparent_propagate_to_the_backend() {
    let b = Backend::named("ok").await;
    let h = start_with(&mesh(&b), |o| o.sampling_percent = 0.0).await;

    h.send(
        "GET",
        "svc",
        "/",
        &[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
            ("x-request-id", "req-1"),
        ],
        "",
    )
    .await;
    let s = b.last();
    let hv = |n: &str| {
        s.headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(hv("x-b3-traceid"), "463ac35c9f6413ad48485a3953bb6124");
    assert_eq!(hv("x-b3-parentspanid"), "a2fb4a1d1a96d312");
    assert_eq!(hv("x-b3-sampled"), "1");
    assert_ne!(
        hv("x-b3-spanid"),
        "a2fb4a1d1a96d312",
        "the proxy's own span"
    );
    assert_eq!(hv("x-request-id"), "req-1");
    for name in ["x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "traceparent"] {
        assert_eq!(
            s.headers.get_all(name).iter().count(),
            1,
            "{name}: the caller's value is replaced, not repeated"
        );
    }
    assert_eq!(
        hv("traceparent"),
        format!(
            "00-463ac35c9f6413ad48485a3953bb6124-{}-01",
            hv("x-b3-spanid")
        )
    );

    h.send(
        "GET",
        "svc",
        "/",
        &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
        "",
    )
    .await;
    let s = b.last();
    let b3 = s.headers["b3"].to_str().unwrap().to_string();
    assert!(b3.starts_with("80f198ee56343ba864fe8b2a57d3eff7-"), "{b3}");
    assert!(b3.ends_with("-1-e457b5a2e4d86bd1"), "{b3}");

    h.send(
        "GET",
        "svc",
        "/",
        &[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )],
        "",
    )
    .await;
    let s = b.last();
    let tp = s.headers["traceparent"].to_str().unwrap().to_string();
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{tp}"
    );
    assert!(tp.ends_with("-01"));
    assert!(
        !tp.contains("b7ad6b7169203331"),
        "parent replaced by the proxy's span"
    );
    assert_eq!(
        s.headers["x-b3-traceid"],
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(s.headers["x-b3-parentspanid"], "b7ad6b7169203331");

    // No context: a new trace, sampled at --sampling (0 here), and a generated request id.
    h.get("svc", "/").await;
    let s = b.last();
    assert_eq!(s.headers["x-b3-traceid"].len(), 32);
    assert_eq!(s.headers["x-b3-sampled"], "0");
    assert!(s.headers["traceparent"].to_str().unwrap().ends_with("-00"));
    assert_eq!(s.headers["x-request-id"].len(), 36);
    h.proxy.shutdown().await;
}

/// A route whose header edits name a trace header sees the proxy's context in place (the
/// edit wins), as when Envoy's route header manipulation runs on the traced request.
#[tokio::test]
async fn route_header_edits_apply_to_the_trace_context_too() {
    let b = Backend::named("ok").await;
    let config = format!(
        "{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc}}\nspec:\n  hosts: [svc]\n  http:\n  - headers: {{request: {{set: {{x-b3-sampled: \"1\", x-extra: on}}, remove: [b3]}}}}\n    route: [{{destination: {{host: svc}}}}]\n",
        service_entry("svc", &[(&b, "v1")])
    );
    let h = start_with(&config, |o| o.sampling_percent = 0.0).await;
    h.send(
        "GET",
        "svc",
        "/",
        &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0")],
        "",
    )
    .await;
    let s = b.last();
    let all = |n: &str| -> Vec<String> {
        s.headers
            .get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(all("x-b3-sampled"), ["1"], "the route's value, once");
    assert_eq!(all("x-extra"), ["on"]);
    assert!(
        all("b3").is_empty(),
        "removed by the route: {:?}",
        all("b3")
    );
    assert_eq!(all("x-b3-traceid"), ["80f198ee56343ba864fe8b2a57d3eff7"]);
    assert_eq!(all("x-b3-parentspanid"), ["e457b5a2e4d86bd1"]);
    assert_eq!(all("traceparent").len(), 1);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn spans_arrive_at_a_zipkin_collector() {
    let collector = Backend::start(|_| Reply::status(202)).await;
    let b = Backend::named("ok").await;
    let url = format!("http://{}", collector.addr);
    let h = start_with(&mesh(&b), |o| {
        o.trace_export = Some(TraceExport::Zipkin(url));
        o.sampling_percent = 100.0;
    })
    .await;
    h.get("svc", "/a").await;
    h.get("svc", "/fail").await;
    let spans = || {
        collector
            .seen
            .lock()
            .iter()
            .flat_map(|s| {
                assert_eq!(s.path, "/api/v2/spans");
                serde_json::from_slice::<Vec<serde_json::Value>>(&s.body).unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert!(eventually(|| async { spans().len() == 2 }).await);
    let all = spans();
    let ok = all
        .iter()
        .find(|s| s["tags"]["http.url"].as_str().unwrap().ends_with("/a"))
        .unwrap();
    assert_eq!(ok["kind"], "CLIENT");
    assert_eq!(ok["localEndpoint"]["serviceName"], "productpage-v1");
    assert_eq!(ok["name"], "svc:80/*");
    assert_eq!(ok["tags"]["http.method"], "GET");
    assert_eq!(ok["tags"]["http.status_code"], "200");
    assert_eq!(ok["tags"]["component"], "proxy");
    assert_eq!(ok["tags"]["response_flags"], "-");
    assert_eq!(
        ok["tags"]["upstream_cluster"],
        "outbound|9080||svc.default.svc.cluster.local"
    );
    assert!(ok["tags"]["node_id"]
        .as_str()
        .unwrap()
        .starts_with("sidecar~"));
    assert!(ok["tags"].get("error").is_none());
    assert_eq!(ok["traceId"].as_str().unwrap().len(), 32);
    let failed = all
        .iter()
        .find(|s| s["tags"]["http.status_code"] == "503")
        .unwrap();
    assert_eq!(failed["tags"]["error"], "true");
    assert_eq!(failed["tags"]["response_flags"], "FI");
    // The span the backend's headers name is the one reported.
    let seen = b.last();
    assert_eq!(
        seen.headers["x-b3-spanid"].to_str().unwrap(),
        ok["id"].as_str().unwrap()
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn otlp_export_posts_json_to_v1_traces() {
    let collector = Backend::start(|_| Reply::status(200)).await;
    let b = Backend::named("ok").await;
    let url = format!("http://{}", collector.addr);
    let h = start_with(&mesh(&b), |o| {
        o.trace_export = Some(TraceExport::Otlp(url));
        o.sampling_percent = 100.0;
    })
    .await;
    h.get("svc", "/").await;
    assert!(eventually(|| async { collector.count() == 1 }).await);
    let s = collector.last();
    assert_eq!(s.path, "/v1/traces");
    let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
    let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["kind"], 3);
    assert_eq!(span["traceId"].as_str().unwrap().len(), 32);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_stalled_collector_drops_spans_without_slowing_requests() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g2 = gate.clone();
    let collector = Backend::start(move |_| Reply {
        gate: Some(g2.clone()),
        ..Reply::status(202)
    })
    .await;
    let b = Backend::named("ok").await;
    let url = format!("http://{}/api/v2/spans", collector.addr);
    let h = start_with(&mesh(&b), |o| {
        o.trace_export = Some(TraceExport::Zipkin(url));
        o.sampling_percent = 100.0;
        o.span_buffer = 2;
        o.span_batch = 1;
    })
    .await;
    for _ in 0..30 {
        assert_eq!(h.get("svc", "/").await.status, 200);
    }
    let dropped = |m: &str| metric_value_plain(m, "meshlens_proxy_spans_dropped_total");
    assert!(
        eventually(|| async { dropped(&h.metrics().await) >= 20.0 }).await,
        "{}",
        h.metrics().await
    );
    gate.add_permits(1000);
    h.proxy.shutdown().await;
}

fn metric_value_plain(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// An outbound proxy names its workload in `x-meshlens-peer`; the inbound proxy reports it
/// as `source_*`, itself as `destination_*`, and removes the header before the application.
#[tokio::test]
async fn inbound_proxy_labels_the_caller_from_the_peer_header() {
    let collector = Backend::start(|_| Reply::status(202)).await;
    let b = Backend::named("ok").await;
    let url = format!("http://{}", collector.addr);
    let inbound = start_with(&service_entry("reviews", &[(&b, "v1")]), |o| {
        o.reporter = meshlens_proxy::Reporter::Destination;
        o.workload = "reviews-v1".into();
        o.app = "reviews".into();
        o.version = "v1".into();
        o.cluster = "east".into();
        o.trace_export = Some(TraceExport::Zipkin(url));
        o.sampling_percent = 100.0;
    })
    .await;
    let outbound_mesh = format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 9080, name: http, protocol: HTTP}}\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{http: {}}}\n    labels: {{app: reviews, version: v1}}\n",
        inbound.proxy.addr().port()
    );
    // Sampled at the outbound side too, or the inbound proxy follows its "not sampled".
    let outbound = start_with(&outbound_mesh, |o| o.sampling_percent = 100.0).await;
    for _ in 0..2 {
        assert_eq!(outbound.get("reviews", "/").await.status, 200);
    }
    // The application never sees the header.
    assert!(b.last().headers.get("x-meshlens-peer").is_none());
    // Without the header (a caller outside the mesh), and to a host no route serves.
    assert_eq!(inbound.get("reviews", "/").await.status, 200);
    assert_eq!(inbound.get("other:8080", "/").await.status, 404);

    let out_labels = [
        "reporter=\"source\"",
        "source_workload=\"productpage-v1\"",
        "source_app=\"productpage\"",
        "destination_workload=\"reviews-v1\"",
        "destination_service_name=\"reviews\"",
        "response_code=\"200\"",
    ];
    assert!(
        eventually(|| async {
            metric_value(
                &outbound.metrics().await,
                "istio_requests_total",
                &out_labels,
            ) == 2.0
        })
        .await,
        "{}",
        outbound.metrics().await
    );
    let in_labels = [
        "reporter=\"destination\"",
        "source_workload=\"productpage-v1\"",
        "source_app=\"productpage\"",
        "source_version=\"v1\"",
        "source_workload_namespace=\"default\"",
        "source_cluster=\"Kubernetes\"",
        "destination_workload=\"reviews-v1\"",
        "destination_app=\"reviews\"",
        "destination_version=\"v1\"",
        "destination_workload_namespace=\"default\"",
        "destination_cluster=\"east\"",
        "destination_service=\"reviews.default.svc.cluster.local\"",
        "destination_service_name=\"reviews\"",
        "response_code=\"200\"",
        "connection_security_policy=\"none\"",
    ];
    assert!(
        eventually(|| async {
            metric_value(&inbound.metrics().await, "istio_requests_total", &in_labels) == 2.0
        })
        .await,
        "{}",
        inbound.metrics().await
    );
    let m = inbound.metrics().await;
    assert!(
        !m.contains("source_workload=\"reviews-v1\""),
        "the inbound proxy is not the source: {m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "istio_requests_total",
            &[
                "source_workload=\"unknown\"",
                "destination_workload=\"reviews-v1\"",
                "response_code=\"200\"",
            ]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "istio_requests_total",
            &[
                "source_workload=\"unknown\"",
                "destination_workload=\"reviews-v1\"",
                "destination_service=\"other.default.svc.cluster.local\"",
                "destination_service_name=\"other\"",
                "response_code=\"404\"",
                "response_flags=\"NR\"",
            ]
        ),
        1.0,
        "{m}"
    );
    // The inbound proxy's spans are SERVER spans of its own workload.
    let spans = || {
        collector
            .seen
            .lock()
            .iter()
            .flat_map(|s| serde_json::from_slice::<Vec<serde_json::Value>>(&s.body).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(eventually(|| async { spans().len() == 4 }).await);
    for s in spans() {
        assert_eq!(s["kind"], "SERVER");
        assert_eq!(s["localEndpoint"]["serviceName"], "reviews-v1");
    }
    outbound.proxy.shutdown().await;
    inbound.proxy.shutdown().await;
}
