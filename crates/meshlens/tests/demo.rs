//! `meshlens demo` end to end: the server, the Clover-style mesh behind meshlens proxies and
//! the load generator come up from one command, and the server sees the whole mesh — the
//! proxies' Istio metrics (scraped) and their spans (pushed), with the demo's routing rules
//! visible in them: the 95/5 split, the header match, the injected fault and the mirror.

mod common;

use std::time::Duration;

use common::{get_json, poll, urlencode};
use serde_json::Value;

/// Sums an instant query's values by one label.
fn by_label(base: &str, query: &str, label: &str) -> Vec<(String, f64)> {
    let v = get_json(&format!("{base}/api/v1/query?query={}", urlencode(query)));
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"][label].as_str().unwrap_or("").to_string(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn demo_mesh_is_observed_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, base) = common::start_demo(dir.path(), "40");

    // Source-reported edges of the whole call chain, with enough traffic to judge the split.
    let edges = "sum by (source_workload, destination_workload) (istio_requests_total{reporter=\"source\"})";
    let want = [
        ("istio-ingressgateway", "proxy-access-control"),
        ("proxy-access-control", "http-lb-v1"),
        ("proxy-access-control", "http-lb-v2"),
        ("http-lb-v1", "clover-server1"),
        ("http-lb-v1", "clover-server2"),
        ("http-lb-v1", "clover-server3"),
    ];
    let counts = poll(Duration::from_secs(180), || {
        let v = get_json(&format!("{base}/api/v1/query?query={}", urlencode(edges)));
        let rows: Vec<(String, String, f64)> = v["data"]["result"]
            .as_array()?
            .iter()
            .map(|r| {
                (
                    r["metric"]["source_workload"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    r["metric"]["destination_workload"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    r["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        let count = |s: &str, d: &str| {
            rows.iter()
                .find(|(a, b, _)| a == s && b == d)
                .map(|r| r.2)
                .unwrap_or(0.0)
        };
        let all_there = want.iter().all(|(s, d)| count(s, d) > 0.0);
        let to_lb = count("proxy-access-control", "http-lb-v1")
            + count("proxy-access-control", "http-lb-v2");
        (all_there && to_lb >= 300.0).then(|| (count("proxy-access-control", "http-lb-v2"), to_lb))
    });
    // 5 % by weight plus ~3 % sent with the x-canary header: well inside 2 %..20 %.
    let v2_share = counts.0 / counts.1;
    assert!(
        (0.02..0.20).contains(&v2_share),
        "http-lb v2 share {v2_share}"
    );

    // Mutual TLS on every hop into a workload, with both SPIFFE ids, and the one caller the
    // AuthorizationPolicy refuses: the ingress asking for http-lb directly.
    let security = by_label(
        &base,
        "sum by (connection_security_policy) (istio_requests_total{reporter=\"destination\"})",
        "connection_security_policy",
    );
    assert!(
        !security.is_empty() && security.iter().all(|(p, _)| p == "mutual_tls"),
        "{security:?}"
    );
    let allowed = by_label(
        &base,
        "sum by (destination_principal) (istio_requests_total{reporter=\"destination\",destination_app=\"http-lb\",source_principal=\"spiffe://cluster.local/ns/default/sa/proxy-access-control\",response_code=\"200\"})",
        "destination_principal",
    );
    assert!(
        allowed
            .iter()
            .any(|(p, n)| p == "spiffe://cluster.local/ns/default/sa/http-lb" && *n > 0.0),
        "{allowed:?}"
    );
    let denied_q = "sum by (response_code) (istio_requests_total{reporter=\"destination\",destination_app=\"http-lb\",source_workload=\"istio-ingressgateway\"})";
    let denied = poll(Duration::from_secs(60), || {
        let d = by_label(&base, denied_q, "response_code");
        (!d.is_empty()).then_some(d)
    });
    assert!(
        denied.iter().all(|(code, _)| code == "403"),
        "the ingress got past the policy: {denied:?}"
    );
    // The graph (built from per-edge aggregates, which trail the scrape a little): every
    // edge into http-lb is locked, and the denied caller's edge has nothing but 403s.
    let edge_of = |g: &Value, s: &str, t: &str| -> Option<Value> {
        let g = if g["data"].is_object() { &g["data"] } else { g };
        let name = |id: &Value| {
            g["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["id"] == *id)
                .and_then(|n| n["name"].as_str().map(str::to_string))
        };
        g["edges"]
            .as_array()?
            .iter()
            .find(|e| {
                name(&e["source"]).as_deref() == Some(s) && name(&e["target"]).as_deref() == Some(t)
            })
            .cloned()
    };
    let (secured, refused) = poll(Duration::from_secs(60), || {
        let g = get_json(&format!("{base}/api/v1/graph?type=app&window=5m"));
        Some((
            edge_of(&g, "proxy-access-control", "http-lb")?,
            edge_of(&g, "istio-ingressgateway", "http-lb")?,
        ))
    });
    assert_eq!(secured["mtlsShare"].as_f64(), Some(1.0), "{secured}");
    assert_eq!(refused["mtlsShare"].as_f64(), Some(1.0), "{refused}");
    let codes = refused["responseCodes"]
        .as_object()
        .expect("response codes");
    assert!(
        codes.keys().all(|c| c == "403") && codes["403"].as_f64() > Some(0.0),
        "{refused}"
    );

    // The fault on /api/flaky: aborts reported with flag FI.
    let flags = by_label(
        &base,
        "sum by (response_flags) (istio_requests_total{reporter=\"source\",source_workload=\"http-lb-v1\"})",
        "response_flags",
    );
    assert!(
        flags.iter().any(|(f, n)| f.contains("FI") && *n > 0.0),
        "{flags:?}"
    );

    // Spans from every proxy, the mirror target included, joined into whole traces.
    let services = poll(Duration::from_secs(60), || {
        let s = get_json(&format!("{base}/api/v2/services"));
        (s.as_array()?.len() >= 8).then_some(s)
    });
    for svc in [
        "istio-ingressgateway",
        "proxy-access-control",
        "http-lb-v1",
        "clover-server1",
        "snort-ids",
    ] {
        assert!(
            services.as_array().unwrap().iter().any(|s| s == svc),
            "{svc} missing from {services}"
        );
    }
    let traces = get_json(&format!(
        "{base}/api/v2/traces?serviceName=istio-ingressgateway&spanName=all&limit=50"
    ));
    let deepest = traces
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let spans = t.as_array().unwrap();
            spans
                .iter()
                .filter_map(|s| s["localEndpoint"]["serviceName"].as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        })
        .max()
        .unwrap_or(0);
    assert!(deepest >= 4, "no trace crosses the mesh: {traces}");
    let deps: Value = get_json(&format!(
        "{base}/api/v2/dependencies?endTs={}",
        meshlens_model::time::now_ms()
    ));
    assert!(deps.as_array().unwrap().len() >= 5, "{deps}");
}
