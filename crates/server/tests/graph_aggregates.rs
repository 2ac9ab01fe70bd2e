//! The service graph's per-edge aggregates wired into the server: remote-written Istio
//! series reach them through the tenant's writer, `/api/v1/graph` is served from them once
//! their rebuild from the (empty) TSDB is done, and a window beyond their retention falls
//! back to PromQL, saying so.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::{Labels, Sample, TimeSeries};
use meshlens_server::{start, ServerOptions};
use serde_json::Value;
use support::{get_json, http};

const RW: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

/// One scrape of productpage -> reviews: requests by code, as a destination proxy reports.
fn scrape(t: i64, ok: f64, failed: f64) -> Vec<u8> {
    let series = |code: &str, v: f64| TimeSeries {
        labels: Labels::from_pairs([
            ("__name__", "istio_requests_total"),
            ("reporter", "destination"),
            ("source_workload", "productpage-v1"),
            ("source_workload_namespace", "default"),
            ("destination_workload", "reviews-v1"),
            ("destination_workload_namespace", "default"),
            ("destination_service_name", "reviews"),
            ("request_protocol", "http"),
            ("connection_security_policy", "mutual_tls"),
            ("response_code", code),
        ]),
        samples: vec![Sample::new(t, v)],
    };
    encode(&WriteRequest {
        timeseries: vec![series("200", ok), series("503", failed)],
        ..Default::default()
    })
}

fn graph(addr: SocketAddr, window: &str) -> Value {
    let (st, g) = get_json(addr, &format!("/api/v1/graph?window={window}"), &[]);
    assert_eq!(st, 200, "{g}");
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_writes_feed_the_graph_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let addr = server.addr();
    tokio::task::spawn_blocking(move || {
        // The rebuild from an empty TSDB ends at once; until then PromQL serves and says so.
        let mut g = graph(addr, "5m");
        for _ in 0..100 {
            if g["computedFrom"] == "aggregates" {
                break;
            }
            assert_eq!(g["computedFrom"], "promql", "{g}");
            assert!(
                g["fallbackReason"].as_str().unwrap().contains("rebuilt"),
                "{g}"
            );
            std::thread::sleep(Duration::from_millis(100));
            g = graph(addr, "5m");
        }
        assert_eq!(g["computedFrom"], "aggregates", "{g}");
        // Three scrapes, 15 s apart: 30 answered, 3 failed in between.
        let now = meshlens_model::time::now_ms();
        for (i, (ok, failed)) in [(100.0, 10.0), (115.0, 11.0), (130.0, 13.0)]
            .into_iter()
            .enumerate()
        {
            let t = now - 30_000 + i as i64 * 15_000;
            let (st, body) = http(addr, "POST", "/api/v1/write", &RW, &scrape(t, ok, failed));
            assert_eq!(st, 204, "{}", String::from_utf8_lossy(&body));
        }
        let g = graph(addr, "5m");
        assert_eq!(g["computedFrom"], "aggregates", "{g}");
        assert_eq!(g["resolutionMs"], 15_000);
        let e = &g["edges"][0];
        assert_eq!(e["source"], "unknown/default/productpage-v1", "{g}");
        assert_eq!(e["target"], "unknown/default/reviews-v1");
        assert_eq!(e["requests"], 33.0, "{e}");
        assert_eq!(e["responseCodes"]["503"], 3.0);
        assert_eq!(e["mtlsShare"], 1.0);
        let secs = (g["effectiveEndMs"].as_i64().unwrap() - g["effectiveStartMs"].as_i64().unwrap())
            as f64
            / 1000.0;
        assert!(
            (e["requestRate"].as_f64().unwrap() - 33.0 / secs).abs() < 1e-9,
            "{g}"
        );
        // Beyond the aggregates' retention: PromQL, and why.
        let g = graph(addr, "3d");
        assert_eq!(g["computedFrom"], "promql", "{g}");
        assert!(
            g["fallbackReason"].as_str().unwrap().contains("retention"),
            "{g}"
        );
        assert_eq!(g["edges"].as_array().unwrap().len(), 1);
    })
    .await
    .unwrap();
    server.shutdown().await;
}
