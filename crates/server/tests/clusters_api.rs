//! The hub's cluster view end to end: writes with and without the agents' `X-Meshlens-*`
//! headers on a real listener (main and OTLP/HTTP), then `/api/v1/clusters` and `/metrics`.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::{Endpoint, Labels, Sample, Span, SpanKind, TimeSeries, TraceId};
use meshlens_server::{start, ServerOptions};
use serde_json::Value;
use support::{get_json, http};

fn now_ms() -> i64 {
    meshlens_model::time::now_ms()
}

/// A remote-write body with one sample per `(job, cluster)` series.
fn write_body(series: &[(&str, &str)]) -> Vec<u8> {
    let t = now_ms();
    encode(&WriteRequest {
        timeseries: series
            .iter()
            .map(|(job, cluster)| TimeSeries {
                labels: Labels::from_pairs([
                    ("__name__", "up"),
                    ("job", job),
                    ("cluster", cluster),
                ]),
                samples: vec![Sample::new(t, 1.0)],
            })
            .collect(),
        ..Default::default()
    })
}

const RW: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

fn post_write(addr: SocketAddr, extra: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut h = RW.to_vec();
    h.extend_from_slice(extra);
    http(addr, "POST", "/api/v1/write", &h, body).0
}

fn span_body(cluster: &str) -> Vec<u8> {
    let mut tags = BTreeMap::new();
    tags.insert("k8s.cluster.name".to_string(), cluster.to_string());
    let span = Span {
        trace_id: TraceId {
            high: 1,
            low: 2,
            is_128: true,
        },
        id: 3,
        parent_id: None,
        name: Some("GET /".into()),
        kind: Some(SpanKind::Server),
        timestamp: Some(now_ms() as u64 * 1000),
        duration: Some(1_000),
        local_endpoint: Some(Endpoint {
            service_name: Some("reviews.default".into()),
            ..Endpoint::default()
        }),
        remote_endpoint: None,
        annotations: Vec::new(),
        tags,
        debug: false,
        shared: false,
    };
    meshlens_ingest::otlp::encode_request(&[span])
}

fn cluster<'a>(data: &'a Value, name: &str) -> &'a Value {
    data["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name} in {data}"))
}

fn names(data: &Value) -> Vec<String> {
    data["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn options(dir: &std::path::Path) -> ServerOptions {
    ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        otlp_http_listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: dir.to_path_buf(),
        ..ServerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_from_agents_and_from_stored_series() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(options(dir.path())).await.unwrap();
    let addr = server.addr();
    let otlp = server.otlp_http_addr().unwrap();
    let oldest = (now_ms() - 1_500).to_string();

    let checks = tokio::task::spawn_blocking(move || {
        // An agent in east: two series, lag about 1.5 s.
        let east = [
            ("X-Meshlens-Cluster", "east"),
            ("X-Meshlens-Agent", "host:1"),
            ("X-Meshlens-Items", "2"),
            ("X-Meshlens-Oldest", oldest.as_str()),
        ];
        let body = write_body(&[("a", "east"), ("b", "east")]);
        assert_eq!(post_write(addr, &east, &body), 204);
        // Spans from the same agent, on the separate OTLP/HTTP listener.
        let mut spans_h = vec![("Content-Type", "application/x-protobuf")];
        spans_h.extend_from_slice(&east[..2]);
        spans_h.push(("X-Meshlens-Items", "1"));
        let (st, _) = http(otlp, "POST", "/v1/traces", &spans_h, &span_body("east"));
        assert_eq!(st, 200);
        // A plain Prometheus remote write: no agent, but its series name a cluster.
        assert_eq!(post_write(addr, &[], &write_body(&[("c", "edge")])), 204);
        // An agent whose bookkeeping headers are garbage: tracked, figures left out.
        let west = [
            ("X-Meshlens-Cluster", "west"),
            ("X-Meshlens-Items", "many"),
            ("X-Meshlens-Oldest", "yesterday"),
        ];
        assert_eq!(post_write(addr, &west, &write_body(&[("d", "west")])), 204);
        // A refused write counts for nothing.
        let north = [("X-Meshlens-Cluster", "north"), ("X-Meshlens-Items", "5")];
        assert_eq!(post_write(addr, &north, b"not snappy"), 400);

        let (st, v) = get_json(addr, "/api/v1/clusters", &[]);
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["status"], "success");
        assert_eq!(names(&v), ["east", "edge", "west"]);

        let e = cluster(&v, "east");
        assert_eq!(e["series"], 2);
        let agents = e["agents"].as_array().unwrap();
        assert_eq!(agents.len(), 1, "{e}");
        let a = &agents[0];
        assert_eq!(a["id"], "host:1");
        let lag = a["lagSeconds"].as_f64().unwrap();
        assert!((1.5..60.0).contains(&lag), "{a}");
        assert!(a["samplesPerSecond"].as_f64().unwrap() > 0.0, "{a}");
        assert!(a["spansPerSecond"].as_f64().unwrap() > 0.0, "{a}");
        assert!(a["lastSeen"].as_str().unwrap().ends_with('Z'));
        assert!(a["secondsSinceSeen"].as_f64().unwrap() < 60.0);
        assert_eq!(e["lagSeconds"], a["lagSeconds"]);
        assert_eq!(e["samplesPerSecond"], a["samplesPerSecond"]);

        let edge = cluster(&v, "edge");
        assert_eq!(edge["agents"], serde_json::json!([]));
        assert_eq!(edge["series"], 1);
        assert_eq!(edge["lastSeen"], Value::Null);

        let w = cluster(&v, "west");
        assert_eq!(w["agents"][0]["id"], "unknown");
        assert_eq!(w["agents"][0]["lagSeconds"], Value::Null);
        assert_eq!(w["agents"][0]["samplesPerSecond"], 0.0);
        assert_eq!(w["series"], 1);

        let (st, m) = http(addr, "GET", "/metrics", &[], b"");
        assert_eq!(st, 200);
        let m = String::from_utf8(m).unwrap();
        assert!(
            m.contains("meshlens_cluster_agent_last_seen_timestamp_seconds{cluster=\"east\",agent=\"host:1\"} "),
            "{m}"
        );
        assert!(
            m.contains("meshlens_cluster_agent_lag_seconds{cluster=\"east\",agent=\"host:1\"} ")
        );
        assert!(!m.contains("cluster=\"north\""));
    });
    let result = checks.await;
    server.shutdown().await;
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_are_per_tenant_with_multitenancy() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.multitenancy = true;
    let server = start(opts).await.unwrap();
    let addr = server.addr();

    let checks = tokio::task::spawn_blocking(move || {
        let h = [
            ("X-Scope-OrgID", "team-a"),
            ("X-Meshlens-Cluster", "east"),
            ("X-Meshlens-Agent", "host:1"),
            ("X-Meshlens-Items", "1"),
        ];
        assert_eq!(post_write(addr, &h, &write_body(&[("a", "east")])), 204);
        let with =
            |org: &'static str| get_json(addr, "/api/v1/clusters", &[("X-Scope-OrgID", org)]);

        let (st, v) = with("team-a");
        assert_eq!(st, 200, "{v}");
        assert_eq!(names(&v), ["east"]);
        let a = &cluster(&v, "east")["agents"][0];
        assert_eq!(
            (a["id"].as_str(), a["tenant"].as_str()),
            (Some("host:1"), Some("team-a"))
        );
        assert_eq!(cluster(&v, "east")["series"], 1);

        let (st, v) = with("team-b");
        assert_eq!(st, 200, "{v}");
        assert!(names(&v).is_empty(), "{v}");

        let (st, v) = with("team-b|team-a");
        assert_eq!(st, 200, "{v}");
        assert_eq!(names(&v), ["east"]);
        assert_eq!(cluster(&v, "east")["series"], 1);

        let (st, _) = http(addr, "GET", "/api/v1/clusters", &[], b"");
        assert_eq!(st, 401);

        let (_, m) = http(addr, "GET", "/metrics", &[], b"");
        let m = String::from_utf8(m).unwrap();
        assert!(m.contains(
            "meshlens_cluster_agent_last_seen_timestamp_seconds{cluster=\"east\",agent=\"host:1\",tenant=\"team-a\"} "
        ), "{m}");
    });
    let result = checks.await;
    server.shutdown().await;
    result.unwrap();
}
