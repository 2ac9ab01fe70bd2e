//! The HTTP endpoints on a real listener: answers, and 400s that name the parameter.

// The analysis crate's fixture: the same mesh, so the answers are the ones its own tests
// compute by hand.
#[path = "../../analysis/tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::sync::Arc;

use meshlens_analysis::{AggregatesOptions, AggregatingWriter, EdgeAggregates};
use meshlens_analysis_api::{router, AnalysisState};
use meshlens_model::SpanWriter;
use meshlens_promql::{Engine, EngineOptions};

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf[9..12].parse().unwrap();
    let body = buf.split_once("\r\n\r\n").unwrap().1;
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn graph_and_stats_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let end = common::end_ms();
    let tsdb = common::tsdb(&dir.path().join("t"));
    // The graph aggregates see what the TSDB stores, as the server wires them.
    let aggregates = Arc::new(EdgeAggregates::empty(AggregatesOptions::default()).unwrap());
    common::write_metrics(
        &AggregatingWriter::new(tsdb.clone(), aggregates.clone()),
        end,
    );
    let spans = common::spanstore(&dir.path().join("s"));
    spans.write(&common::spans(end)).unwrap();
    let state = Arc::new(AnalysisState {
        metrics: tsdb,
        spans,
        engine: Arc::new(Engine::new(EngineOptions::default())),
        aggregates: Some(aggregates),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, router(state)).await });

    let e = end as f64 / 1000.0;
    let (st, g) = get(
        addr,
        &format!("/api/v1/graph?type=app&window=5m&end={e}&source=traces&focus=ratings"),
    );
    assert_eq!(st, 200, "{g}");
    assert_eq!(g["edges"].as_array().unwrap().len(), 1);
    assert_eq!(g["edges"][0]["requestRate"], 1.0);
    assert_eq!(g["edges"][0]["health"], "failure");
    // One cluster (east) on both ends.
    assert_eq!(g["edges"][0]["crossCluster"], false);
    assert_eq!(g["graphType"], "app");

    let (st, g) = get(addr, &format!("/api/v1/graph?end={e}&namespace=default"));
    assert_eq!(st, 200);
    assert_eq!(g["nodes"][0]["nodeType"], "workload");
    // The metrics graph came from the aggregates, over the window asked for.
    assert_eq!(g["computedFrom"], "aggregates", "{g}");
    assert_eq!(g["resolutionMs"], 15_000);
    assert_eq!(g["effectiveEndMs"], end);
    assert!(g.get("fallbackReason").is_none());
    // Beyond their retention, PromQL serves and the answer says why.
    let (st, g) = get(
        addr,
        &format!("/api/v1/graph?end={e}&window=2d&namespace=default"),
    );
    assert_eq!(st, 200, "{g}");
    assert_eq!(g["computedFrom"], "promql");
    assert!(
        g["fallbackReason"].as_str().unwrap().contains("retention"),
        "{g}"
    );
    assert_eq!(g["nodes"][0]["nodeType"], "workload");

    let (st, s) = get(
        addr,
        &format!("/api/v1/stats?window=5m&end={e}&service=ratings.default"),
    );
    assert_eq!(st, 200, "{s}");
    assert_eq!(s["totals"]["requests"], 300);
    assert_eq!(s["per_status"][0]["key"], "200");

    for (path, param) in [
        ("/api/v1/graph?window=five", "window"),
        ("/api/v1/graph?window=0", "window"),
        ("/api/v1/graph?type=galaxy", "type"),
        ("/api/v1/graph?source=dreams", "source"),
        ("/api/v1/graph?end=tomorrow", "end"),
        ("/api/v1/graph?namepsace=default", "namepsace"),
        ("/api/v1/stats?window=-1h", "window"),
        ("/api/v1/stats?end=x", "end"),
        ("/api/v1/stats?top=3", "top"),
    ] {
        let (st, b) = get(addr, path);
        assert_eq!(st, 400, "{path}: {b}");
        assert_eq!(b["errorType"], "bad_data");
        assert!(
            b["error"].as_str().unwrap().contains(&format!("{param:?}")),
            "{path}: {b}"
        );
    }
}
