//! Edges between clusters: `cross_cluster` from Istio's source/destination cluster labels
//! and from the cluster tags of a call's CLIENT and SERVER spans, the cluster filter keeping
//! such an edge in both clusters' views, and per-cluster request counts in the statistics.

mod common;

use std::collections::BTreeMap;

use meshlens_analysis::{
    build_graph, compute_stats, Graph, GraphQuery, GraphSource, GraphType, StatsQuery,
};
use meshlens_model::{
    Endpoint, Labels, MetricWriter, Sample, Span, SpanKind, SpanWriter, TimeSeries, TraceId,
};
use meshlens_promql::{Engine, EngineOptions};

use common::{end_ms, spanstore, tsdb, WINDOW_MS};

/// `increase(x[window])` at `end` is `count`: a counter rising linearly over two windows.
fn counter(labels: &[(&str, &str)], count: f64, end: i64) -> TimeSeries {
    let t0 = end - 2 * WINDOW_MS;
    TimeSeries {
        labels: Labels::from_pairs(labels.iter().copied()),
        samples: (0..=(2 * WINDOW_MS / 15_000))
            .map(|i| {
                let t = t0 + i * 15_000;
                Sample::new(t, count * (t - t0) as f64 / WINDOW_MS as f64)
            })
            .collect(),
    }
}

/// A destination-reported request series from `src` in `sc` to `dst` in `dc`.
fn requests(sc: &str, src: &str, dc: &str, dst: &str, count: f64, end: i64) -> TimeSeries {
    counter(
        &[
            ("__name__", "istio_requests_total"),
            ("reporter", "destination"),
            ("source_cluster", sc),
            ("destination_cluster", dc),
            ("source_workload", src),
            ("source_workload_namespace", "default"),
            ("source_app", src),
            ("destination_workload", dst),
            ("destination_workload_namespace", "default"),
            ("destination_app", dst),
            ("destination_service_name", dst),
            ("destination_service_namespace", "default"),
            ("request_protocol", "http"),
            ("response_code", "200"),
        ],
        count,
        end,
    )
}

fn span(
    trace: u64,
    id: u64,
    parent: Option<u64>,
    kind: SpanKind,
    service: &str,
    cluster: &str,
    ts_us: u64,
) -> Span {
    let mut tags = BTreeMap::new();
    tags.insert("http.status_code".to_string(), "200".to_string());
    // The agent tags Zipkin spans with `cluster`, OTLP ones with `k8s.cluster.name`.
    let key = if trace.is_multiple_of(2) {
        "cluster"
    } else {
        "k8s.cluster.name"
    };
    tags.insert(key.to_string(), cluster.to_string());
    Span {
        trace_id: TraceId {
            high: 9,
            low: trace,
            is_128: true,
        },
        id,
        parent_id: parent,
        name: Some("GET /".into()),
        kind: Some(kind),
        timestamp: Some(ts_us),
        duration: Some(1_000),
        local_endpoint: Some(Endpoint {
            service_name: Some(service.into()),
            ..Endpoint::default()
        }),
        remote_endpoint: None,
        annotations: Vec::new(),
        tags,
        debug: false,
        shared: false,
    }
}

/// One call per trace: a CLIENT span in `from` (cluster `fc`) and its child SERVER span in
/// `to` (cluster `tc`).
fn call(trace: u64, from: &str, fc: &str, to: &str, tc: &str, ts_us: u64) -> [Span; 2] {
    [
        span(trace, trace * 2, None, SpanKind::Client, from, fc, ts_us),
        span(
            trace,
            trace * 2 + 1,
            Some(trace * 2),
            SpanKind::Server,
            to,
            tc,
            ts_us,
        ),
    ]
}

struct Fixture {
    _dir: tempfile::TempDir,
    tsdb: std::sync::Arc<meshlens_tsdb::Tsdb>,
    spans: std::sync::Arc<meshlens_spanstore::SpanStore>,
    end: i64,
}

/// productpage (east) calls reviews in west and details in east; reviews (west) calls
/// ratings (west). The same traffic as metrics and as spans (one east -> west call as a
/// Zipkin shared span).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let end = end_ms();
    let t = tsdb(&dir.path().join("tsdb"));
    t.append(&[
        requests("east", "productpage", "west", "reviews", 60.0, end),
        requests("east", "productpage", "east", "details", 30.0, end),
        requests("west", "reviews", "west", "ratings", 60.0, end),
        // A call whose source cluster nobody reported: not known to cross.
        requests("", "outside", "west", "ratings", 3.0, end),
    ])
    .unwrap();
    let s = spanstore(&dir.path().join("spans"));
    let ts = (end - 60_000) as u64 * 1000;
    let mut batch = Vec::new();
    for i in 0..4u64 {
        let [client, mut server] = call(
            10 + i,
            "productpage.default",
            "east",
            "reviews.default",
            "west",
            ts + i,
        );
        if i == 3 {
            // Zipkin's shared span: the server half reuses the client's id.
            server.id = client.id;
            server.parent_id = None;
            server.shared = true;
        }
        batch.extend([client, server]);
        batch.extend(call(
            20 + i,
            "productpage.default",
            "east",
            "details.default",
            "east",
            ts + i,
        ));
        batch.extend(call(
            30 + i,
            "reviews.default",
            "west",
            "ratings.default",
            "west",
            ts + i,
        ));
    }
    s.write(&batch).unwrap();
    Fixture {
        _dir: dir,
        tsdb: t,
        spans: s,
        end,
    }
}

fn graph(f: &Fixture, source: GraphSource, cluster: Option<&str>) -> Graph {
    let q = GraphQuery {
        graph_type: GraphType::App,
        window_ms: WINDOW_MS,
        end_ms: f.end,
        cluster: cluster.map(str::to_string),
        namespace: None,
        focus: None,
        source,
    };
    build_graph(
        &*f.tsdb,
        &*f.spans,
        &Engine::new(EngineOptions::default()),
        &q,
    )
    .unwrap()
}

/// (source, target, crossCluster) of every edge, sorted.
fn edges(g: &Graph) -> Vec<(String, String, bool)> {
    g.edges
        .iter()
        .map(|e| (e.source.clone(), e.target.clone(), e.cross_cluster))
        .collect()
}

fn e(src: &str, dst: &str, cross: bool) -> (String, String, bool) {
    (src.to_string(), dst.to_string(), cross)
}

const PP: &str = "east/default/productpage";
const DT: &str = "east/default/details";
const RV: &str = "west/default/reviews";
const RT: &str = "west/default/ratings";

#[test]
fn metrics_edges_between_clusters_are_cross_cluster() {
    let f = fixture();
    let g = graph(&f, GraphSource::Metrics, None);
    assert_eq!(
        edges(&g),
        [
            e(PP, DT, false),
            e(PP, RV, true),
            e("unknown/default/outside", RT, false),
            e(RV, RT, false),
        ]
    );
    let json = serde_json::to_value(&g).unwrap();
    let cross: Vec<bool> = json["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["crossCluster"].as_bool().expect("crossCluster is a bool"))
        .collect();
    assert_eq!(cross, [false, true, false, false]);
}

#[test]
fn trace_edges_take_the_callees_cluster() {
    let f = fixture();
    let g = graph(&f, GraphSource::Traces, None);
    assert_eq!(
        edges(&g),
        [e(PP, DT, false), e(PP, RV, true), e(RV, RT, false)]
    );
    let e = g.edges.iter().find(|e| e.target == RV).unwrap();
    assert_eq!(e.requests, 4.0);
    let west = g.nodes.iter().find(|n| n.id == RV).unwrap();
    assert_eq!(west.cluster, "west");
}

#[test]
fn cluster_filter_shows_a_cross_cluster_edge_in_both_views() {
    let f = fixture();
    for source in [GraphSource::Metrics, GraphSource::Traces] {
        let east = graph(&f, source, Some("east"));
        assert_eq!(
            edges(&east),
            [e(PP, DT, false), e(PP, RV, true)],
            "{source:?}"
        );
        let west = graph(&f, source, Some("west"));
        assert!(edges(&west).contains(&e(PP, RV, true)), "{source:?}");
        assert!(!edges(&west).iter().any(|x| x.1 == DT), "{source:?}");
    }
}

#[test]
fn stats_count_requests_by_the_spans_own_cluster() {
    let f = fixture();
    let q = StatsQuery {
        window_ms: WINDOW_MS,
        end_ms: f.end,
        cluster: None,
        service: None,
    };
    let s = compute_stats(&*f.spans, &q).unwrap();
    let per: Vec<(&str, u64)> = s
        .per_cluster
        .iter()
        .map(|c| (c.key.as_str(), c.count))
        .collect();
    // Server spans: reviews and ratings in west (8), details in east (4).
    assert_eq!(per, [("west", 8), ("east", 4)]);
    let q = StatsQuery {
        cluster: Some("east".into()),
        ..q
    };
    assert_eq!(compute_stats(&*f.spans, &q).unwrap().totals.requests, 4);
}
