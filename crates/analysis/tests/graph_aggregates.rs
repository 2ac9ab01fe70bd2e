//! The graph from the per-edge aggregates against the graph from PromQL on the same
//! appended data: same nodes and edges, same error shares, and counts, rates and quantiles
//! within a stated tolerance (PromQL's `increase()` extrapolates to the window's edges, the
//! aggregates add the increases between scrapes; see docs/graph.md). And the fallbacks.

use std::sync::Arc;

use meshlens_analysis::{
    build_graph, build_graph_with_aggregates, AggregatesOptions, AggregatingWriter, ComputedFrom,
    EdgeAggregates, Graph, GraphQuery, GraphSource, GraphType,
};
use meshlens_model::{Labels, MetricWriter, Sample, TimeSeries};
use meshlens_promql::{Engine, EngineOptions};

const SCRAPE_MS: i64 = 15_000;
/// The data starts this long before the end: more than the longest compared window.
const SPAN_MS: i64 = 70 * 60_000;
/// Relative tolerance on counts, rates and quantiles. The data's only departure from a
/// constant rate is reviews' +20 % for the last 3 minutes; PromQL extrapolates the 5-minute
/// window's average rate over its first scrape interval where the aggregates count that
/// interval at the old rate: 0.56 % apart in the 5-minute window, 0.005 % in the hour.
const REL: f64 = 0.01;
/// Absolute tolerance on shares (error rate, mTLS share).
const ABS: f64 = 0.002;

/// A per-second rate at a time (ms before the end).
type Rate = fn(i64) -> f64;

/// One Istio series: a counter rising at `rate(t)` per second from zero at the start.
struct Spec {
    labels: Vec<(&'static str, String)>,
    rate: Rate,
    /// Value drops to zero (a pod restart) this long before the end.
    reset_before_end: Option<i64>,
}

fn series(end: i64, spec: &Spec) -> TimeSeries {
    let start = end - SPAN_MS;
    let mut v = 0.0;
    let mut samples = vec![Sample::new(start, 0.0)];
    let mut t = start + SCRAPE_MS;
    while t <= end {
        if spec.reset_before_end == Some(end - t) {
            v = 0.0;
        }
        v += (spec.rate)(end - t) * SCRAPE_MS as f64 / 1000.0;
        samples.push(Sample::new(t, v));
        t += SCRAPE_MS;
    }
    TimeSeries {
        labels: Labels::from_pairs(spec.labels.iter().map(|(k, v)| (*k, v.clone()))),
        samples,
    }
}

/// A workload: (namespace, workload, app, version).
type W = (&'static str, &'static str, &'static str, &'static str);

/// Identity labels of a call from one workload to another.
fn ids(reporter: &str, src: W, dst: W, protocol: &str) -> Vec<(&'static str, String)> {
    vec![
        ("reporter", reporter.into()),
        ("source_cluster", "east".into()),
        ("destination_cluster", "east".into()),
        ("source_workload_namespace", src.0.into()),
        ("source_workload", src.1.into()),
        ("source_app", src.2.into()),
        ("source_version", src.3.into()),
        ("destination_workload_namespace", dst.0.into()),
        ("destination_workload", dst.1.into()),
        ("destination_app", dst.2.into()),
        ("destination_version", dst.3.into()),
        ("destination_service_name", dst.2.into()),
        ("destination_service_namespace", dst.0.into()),
        (
            "destination_service",
            format!("{}.{}.svc.cluster.local", dst.2, dst.0),
        ),
        ("request_protocol", protocol.into()),
        ("response_flags", "-".into()),
    ]
}

fn with(
    mut l: Vec<(&'static str, String)>,
    more: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    l.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    l
}

const GW: W = (
    "istio-system",
    "istio-ingressgateway",
    "istio-ingressgateway",
    "unknown",
);
const PP: W = ("default", "productpage-v1", "productpage", "v1");
const RV1: W = ("default", "reviews-v1", "reviews", "v1");
const RV2: W = ("default", "reviews-v2", "reviews", "v2");
const DT: W = ("default", "details-v1", "details", "v1");
const DB: W = ("default", "mongodb-v1", "mongodb", "v1");

/// Istio's series for a small mesh with every case the aggregates must get right.
fn specs() -> Vec<Spec> {
    let mut out = Vec::new();
    let mut http = |reporter: &str,
                    src: W,
                    dst: W,
                    pod: &str,
                    mtls: &str,
                    codes: &[(&str, Rate)],
                    // (le, share of requests at or under it)
                    buckets: &[(&str, f64)],
                    reset: Option<i64>| {
        let base = ids(reporter, src, dst, "http");
        for (code, rate) in codes {
            out.push(Spec {
                labels: with(
                    base.clone(),
                    &[
                        ("__name__", "istio_requests_total"),
                        ("response_code", code),
                        ("connection_security_policy", mtls),
                        ("pod", pod),
                    ],
                ),
                rate: *rate,
                reset_before_end: reset,
            });
        }
        for (le, share) in buckets {
            // Rates are fn pointers: the bucket series scale the first code's rate.
            let rate: fn(i64) -> f64 = match (*share * 100.0) as u32 {
                100 => |_| 5.0,
                90 => |_| 4.5,
                60 => |_| 3.0,
                20 => |_| 1.0,
                _ => |_| 0.0,
            };
            out.push(Spec {
                labels: with(
                    base.clone(),
                    &[
                        ("__name__", "istio_request_duration_milliseconds_bucket"),
                        ("le", le),
                        ("pod", pod),
                    ],
                ),
                rate,
                reset_before_end: reset,
            });
        }
    };
    let latency = [
        ("5", 0.0),
        ("10", 0.2),
        ("25", 0.6),
        ("50", 0.9),
        ("100", 1.0),
        ("250", 1.0),
        ("+Inf", 1.0),
    ];
    // Gateway -> productpage, two pods merged, no mTLS, a few 503s on one pod.
    http(
        "destination",
        GW,
        PP,
        "productpage-v1-a",
        "none",
        &[("200", |_| 5.0), ("503", |_| 0.2)],
        &latency,
        None,
    );
    http(
        "destination",
        GW,
        PP,
        "productpage-v1-b",
        "none",
        &[("200", |_| 5.0)],
        &latency,
        None,
    );
    // The source reporter of the same calls: ignored, the destination reports them.
    http(
        "source",
        GW,
        PP,
        "gw-1",
        "unknown",
        &[("200", |_| 7.0)],
        &[],
        None,
    );
    // Productpage -> reviews v1: a pod restart 20 minutes before the end.
    http(
        "destination",
        PP,
        RV1,
        "reviews-v1-a",
        "mutual_tls",
        &[("200", |_| 5.0)],
        &latency,
        Some(20 * 60_000),
    );
    // Productpage -> reviews v2: 20 % more traffic for the last 3 minutes, 404s.
    http(
        "destination",
        PP,
        RV2,
        "reviews-v2-a",
        "mutual_tls",
        &[
            ("200", |before| if before < 180_000 { 6.0 } else { 5.0 }),
            ("404", |_| 0.5),
        ],
        &latency,
        None,
    );
    // Productpage -> details, reported by the source only, with no-response errors.
    http(
        "source",
        PP,
        DT,
        "productpage-v1-a",
        "unknown",
        &[("200", |_| 2.0), ("0", |_| 0.5)],
        &[],
        None,
    );
    // Reviews -> mongodb over TCP.
    for (name, rate) in [
        ("istio_tcp_sent_bytes_total", (|_| 2048.0) as fn(i64) -> f64),
        ("istio_tcp_received_bytes_total", |_| 512.0),
    ] {
        out.push(Spec {
            labels: with(
                ids("destination", RV2, DB, "tcp"),
                &[
                    ("__name__", name),
                    ("connection_security_policy", "mutual_tls"),
                    ("pod", "mongodb-v1-a"),
                ],
            ),
            rate,
            reset_before_end: None,
        });
    }
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    tsdb: Arc<meshlens_tsdb::Tsdb>,
    spans: Arc<meshlens_spanstore::SpanStore>,
    engine: Engine,
    end: i64,
}

fn open(end: i64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let opts = meshlens_tsdb::TsdbOptions {
        wal_fsync: meshlens_tsdb::FsyncPolicy::Never,
        ..Default::default()
    };
    let tsdb = Arc::new(meshlens_tsdb::Tsdb::open(&dir.path().join("tsdb"), opts).unwrap());
    let spans = Arc::new(
        meshlens_spanstore::SpanStore::open(&dir.path().join("spans"), Default::default()).unwrap(),
    );
    Fixture {
        _dir: dir,
        tsdb,
        spans,
        engine: Engine::new(EngineOptions::default()),
        end,
    }
}

fn end_ms() -> i64 {
    let now = meshlens_model::time::now_ms();
    now - now % 60_000
}

/// The data appended through the aggregating writer, in batches of one scrape each (as a
/// scrape loop or remote write delivers it), into a store that starts empty.
fn fed_fixture() -> (Fixture, Arc<EdgeAggregates>) {
    let f = open(end_ms());
    let aggs = Arc::new(EdgeAggregates::empty(AggregatesOptions::default()).unwrap());
    let writer = AggregatingWriter::new(f.tsdb.clone(), aggs.clone());
    let all: Vec<TimeSeries> = specs().iter().map(|s| series(f.end, s)).collect();
    let scrapes = all[0].samples.len();
    for i in 0..scrapes {
        let batch: Vec<TimeSeries> = all
            .iter()
            .map(|s| TimeSeries {
                labels: s.labels.clone(),
                samples: vec![s.samples[i]],
            })
            .collect();
        writer.append(&batch).unwrap();
    }
    (f, aggs)
}

fn query(f: &Fixture, gt: GraphType, window_ms: i64) -> GraphQuery {
    GraphQuery {
        graph_type: gt,
        window_ms,
        end_ms: f.end,
        cluster: None,
        namespace: None,
        focus: None,
        source: GraphSource::Metrics,
    }
}

fn near(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= REL * a.abs().max(b.abs()) + 1e-9,
        "{what}: {a} vs {b}"
    );
}

fn near_abs(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= ABS, "{what}: {a} vs {b}");
}

/// Same nodes and edges; counts, rates, quantiles within REL; shares within ABS.
fn assert_same(p: &Graph, a: &Graph, ctx: &str) {
    let node_ids = |g: &Graph| g.nodes.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
    assert_eq!(node_ids(p), node_ids(a), "{ctx}: nodes");
    let edge_ids = |g: &Graph| {
        g.edges
            .iter()
            .map(|e| (e.source.clone(), e.target.clone(), e.protocol.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(edge_ids(p), edge_ids(a), "{ctx}: edges");
    for (x, y) in p.edges.iter().zip(&a.edges) {
        let c = format!("{ctx}: {} -> {}", x.source, x.target);
        near(x.requests, y.requests, &format!("{c} requests"));
        near(x.request_rate, y.request_rate, &format!("{c} rate"));
        near(x.errors, y.errors, &format!("{c} errors"));
        near_abs(x.error_rate, y.error_rate, &format!("{c} error rate"));
        assert_eq!(
            x.response_codes.keys().collect::<Vec<_>>(),
            y.response_codes.keys().collect::<Vec<_>>(),
            "{c} codes"
        );
        for (code, n) in &x.response_codes {
            near(*n, y.response_codes[code], &format!("{c} code {code}"));
        }
        assert_eq!(x.health, y.health, "{c} health");
        match (x.response_time_ms, y.response_time_ms) {
            (Some(r), Some(s)) => {
                near(r.p50, s.p50, &format!("{c} p50"));
                near(r.p95, s.p95, &format!("{c} p95"));
                near(r.p99, s.p99, &format!("{c} p99"));
            }
            (r, s) => assert_eq!(r.is_some(), s.is_some(), "{c} response times"),
        }
        assert_eq!(x.mtls_share.is_some(), y.mtls_share.is_some(), "{c} mtls");
        if let (Some(m), Some(n)) = (x.mtls_share, y.mtls_share) {
            near_abs(m, n, &format!("{c} mtls share"));
        }
        for (m, n, what) in [
            (x.tcp_sent_bytes_rate, y.tcp_sent_bytes_rate, "tcp sent"),
            (
                x.tcp_received_bytes_rate,
                y.tcp_received_bytes_rate,
                "tcp received",
            ),
        ] {
            assert_eq!(m.is_some(), n.is_some(), "{c} {what}");
            if let (Some(m), Some(n)) = (m, n) {
                near(m, n, &format!("{c} {what}"));
            }
        }
    }
    for (x, y) in p.nodes.iter().zip(&a.nodes) {
        let c = format!("{ctx}: node {}", x.id);
        near(x.request_rate_in, y.request_rate_in, &format!("{c} in"));
        near(x.request_rate_out, y.request_rate_out, &format!("{c} out"));
        near_abs(x.error_rate, y.error_rate, &format!("{c} error rate"));
        assert_eq!(x.health, y.health, "{c} health");
        assert_eq!(x.node_type, y.node_type, "{c} type");
    }
}

#[test]
fn aggregates_give_the_promql_graph() {
    let (f, aggs) = fed_fixture();
    for window in [5 * 60_000, 60 * 60_000] {
        for gt in [
            GraphType::Workload,
            GraphType::App,
            GraphType::VersionedApp,
            GraphType::Service,
        ] {
            let q = query(&f, gt, window);
            let p = build_graph(&*f.tsdb, &*f.spans, &f.engine, &q).unwrap();
            let a = build_graph_with_aggregates(&aggs, &*f.tsdb, &*f.spans, &f.engine, &q).unwrap();
            let ctx = format!("{gt:?} {} min", window / 60_000);
            assert_eq!(p.computed_from, ComputedFrom::Promql, "{ctx}");
            assert_eq!(a.computed_from, ComputedFrom::Aggregates, "{ctx}");
            assert_eq!(a.fallback_reason, None, "{ctx}");
            assert_eq!(a.resolution_ms, Some(15_000), "{ctx}");
            // The end is on a bucket boundary: the window is the one asked for.
            assert_eq!(
                (a.effective_start_ms, a.effective_end_ms),
                (f.end - window, f.end),
                "{ctx}"
            );
            assert!(!a.edges.is_empty(), "{ctx}");
            assert_same(&p, &a, &ctx);
        }
    }
}

/// The figures the fixture was built with, from the aggregates: the cases are real.
#[test]
fn aggregates_count_what_was_sent() {
    let (f, aggs) = fed_fixture();
    let q = query(&f, GraphType::Workload, 5 * 60_000);
    let g = build_graph_with_aggregates(&aggs, &*f.tsdb, &*f.spans, &f.engine, &q).unwrap();
    let edge = |src: &str, dst: &str| {
        g.edges
            .iter()
            .find(|e| e.source.ends_with(src) && e.target.ends_with(dst))
            .unwrap_or_else(|| panic!("no edge {src} -> {dst}: {:#?}", g.edges))
    };
    // Two pods merged (5 + 5 + 0.2 per s), the source reporter ignored.
    let e = edge("istio-ingressgateway", "productpage-v1");
    assert!((e.request_rate - 10.2).abs() < 1e-6, "{e:?}");
    assert!((e.error_rate - 0.2 / 10.2).abs() < 1e-9, "{e:?}");
    assert_eq!(e.mtls_share, Some(0.0));
    // The restart 20 minutes ago costs nothing: 5 per s.
    let e = edge("productpage-v1", "reviews-v1");
    assert!((e.request_rate - 5.0).abs() < 1e-6, "{e:?}");
    assert_eq!(e.mtls_share, Some(1.0));
    // Buckets: 20 % <= 10 ms, 60 % <= 25 ms, 90 % <= 50 ms: p50 in (10, 25].
    let rt = e.response_time_ms.unwrap();
    assert!((rt.p50 - (10.0 + 15.0 * 0.3 / 0.4)).abs() < 1e-6, "{rt:?}");
    // 3 minutes at 6 and 2 at 5 per s, plus 0.5 per s of 404s.
    let e = edge("productpage-v1", "reviews-v2");
    assert!((e.requests - (180.0 * 6.0 + 120.0 * 5.0 + 150.0)).abs() < 1e-6);
    // Source-reported only, code 0 counts as an error.
    let e = edge("productpage-v1", "details-v1");
    assert!((e.error_rate - 0.2).abs() < 1e-9, "{e:?}");
    let e = edge("reviews-v2", "mongodb-v1");
    assert_eq!(e.protocol, "tcp");
    assert!(
        (e.tcp_sent_bytes_rate.unwrap() - 2048.0).abs() < 1e-6,
        "{e:?}"
    );
    assert!((e.tcp_received_bytes_rate.unwrap() - 512.0).abs() < 1e-6);
    let st = aggs.stats();
    assert_eq!(st.series, specs().len());
    // Edges: gateway->productpage (x2 reporters), reviews v1, v2, details, mongodb.
    assert_eq!(st.edges, 6);
    assert!(st.bytes > 0);
}

/// The same aggregates read back from storage after a "restart" give the same graph as
/// those fed live.
#[test]
fn rebuilt_aggregates_equal_live_ones() {
    let (f, live) = fed_fixture();
    let rebuilt = EdgeAggregates::new(AggregatesOptions::default()).unwrap();
    let q = query(&f, GraphType::App, 5 * 60_000);
    let g = build_graph_with_aggregates(&rebuilt, &*f.tsdb, &*f.spans, &f.engine, &q).unwrap();
    assert_eq!(g.computed_from, ComputedFrom::Promql);
    assert!(
        g.fallback_reason.as_deref().unwrap().contains("rebuilt"),
        "{g:?}"
    );
    let report = rebuilt.rebuild(&*f.tsdb).unwrap();
    assert_eq!(report.series, specs().len());
    for window in [5 * 60_000, 60 * 60_000] {
        for gt in [GraphType::Workload, GraphType::Service] {
            let q = query(&f, gt, window);
            let a = build_graph_with_aggregates(&live, &*f.tsdb, &*f.spans, &f.engine, &q).unwrap();
            let b =
                build_graph_with_aggregates(&rebuilt, &*f.tsdb, &*f.spans, &f.engine, &q).unwrap();
            assert_eq!(b.computed_from, ComputedFrom::Aggregates);
            assert_eq!(a.edges, b.edges, "{gt:?} {window}");
            assert_eq!(a.nodes, b.nodes, "{gt:?} {window}");
        }
    }
}

#[test]
fn windows_beyond_the_fine_retention_use_5_minute_buckets() {
    let (f, aggs) = fed_fixture();
    let q = query(&f, GraphType::App, 3 * 3_600_000);
    let p = build_graph(&*f.tsdb, &*f.spans, &f.engine, &q).unwrap();
    let a = build_graph_with_aggregates(&aggs, &*f.tsdb, &*f.spans, &f.engine, &q).unwrap();
    assert_eq!(a.computed_from, ComputedFrom::Aggregates);
    assert_eq!(a.resolution_ms, Some(300_000));
    assert_eq!(a.effective_start_ms % 300_000, 0);
    assert!(a.effective_start_ms >= q.end_ms - q.window_ms);
    // All the data is in the window both ways: the counts agree; rates use each path's
    // own window.
    let secs = (a.effective_end_ms - a.effective_start_ms) as f64 / 1000.0;
    for (x, y) in p.edges.iter().zip(&a.edges) {
        near(x.requests, y.requests, "requests over 3 h");
        near(
            y.request_rate * secs,
            y.requests,
            "rate over the effective window",
        );
    }
    assert_eq!(p.edges.len(), a.edges.len());
}

#[test]
fn windows_beyond_the_retention_fall_back_to_promql_and_say_why() {
    let (f, aggs) = fed_fixture();
    let q = query(&f, GraphType::App, 2 * 24 * 3_600_000);
    let a = build_graph_with_aggregates(&aggs, &*f.tsdb, &*f.spans, &f.engine, &q).unwrap();
    assert_eq!(a.computed_from, ComputedFrom::Promql);
    let why = a.fallback_reason.clone().unwrap();
    assert!(
        why.contains("retention (1h of 15 s buckets, 24h of 5 m buckets)"),
        "{why}"
    );
    assert_eq!(a.resolution_ms, None);
    assert_eq!(
        (a.effective_start_ms, a.effective_end_ms),
        (q.end_ms - q.window_ms, q.end_ms)
    );
    // It is the PromQL graph.
    let p = build_graph(&*f.tsdb, &*f.spans, &f.engine, &q).unwrap();
    assert_eq!(p.edges, a.edges);
    // Trace graphs never read the aggregates; and the answer's JSON names the path.
    let mut t = q.clone();
    t.source = GraphSource::Traces;
    let g = build_graph_with_aggregates(&aggs, &*f.tsdb, &*f.spans, &f.engine, &t).unwrap();
    assert_eq!(g.computed_from, ComputedFrom::Traces);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["computedFrom"], "promql");
    assert!(json["fallbackReason"]
        .as_str()
        .unwrap()
        .contains("retention"));
}
