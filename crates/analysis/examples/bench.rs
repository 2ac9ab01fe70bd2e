//! Benchmarks of the analyses (run in release):
//!
//! `cargo run --release -p meshlens-analysis --example bench -- [graph|stats|all]`
//!
//! - graph: 1,000 services, 10,000 edges of Istio metrics (requests by 2 response codes,
//!   Istio's 20 duration buckets, destination reporter) in a Tsdb, graph over 1 h;
//!   `SCRAPE_S` sets the scrape interval (default 15).
//! - stats: a SpanStore filled with `meshlens_testdata` traces to 5 million spans, statistics over the
//!   whole hour, against a bare `scan` of the same window as the baseline.

use std::sync::Arc;
use std::time::Instant;

use meshlens_analysis::{
    build_graph, compute_stats, GraphQuery, GraphSource, GraphType, StatsQuery,
};
use meshlens_model::{Labels, MetricWriter, Sample, SpanReader, TimeSeries};
use meshlens_promql::{Engine, EngineOptions};
use meshlens_spanstore::{SpanStore, SpanStoreOptions};
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbOptions};

const ISTIO_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut out = None;
    for _ in 0..n {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        out = Some(v);
    }
    (best, out.expect("n > 0"))
}

fn graph_types() -> Vec<GraphType> {
    match std::env::var("GRAPH_TYPES").ok().as_deref() {
        Some("app") => vec![GraphType::App],
        _ => vec![GraphType::Workload, GraphType::App, GraphType::Service],
    }
}

fn graph_bench() {
    let scrape_ms: i64 = std::env::var("SCRAPE_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
        * 1000;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = TsdbOptions {
        wal_fsync: FsyncPolicy::Never,
        ..TsdbOptions::default()
    };
    let db = Arc::new(Tsdb::open(dir.path(), opts).expect("open"));
    let now = meshlens_model::time::now_ms();
    let end = now - now % scrape_ms;
    let start = end - 3_600_000 - 2 * scrape_ms;
    let svc = |i: usize| (format!("svc-{i}"), format!("ns-{}", i % 20));
    let mut edges = Vec::with_capacity(10_000);
    for i in 0..1000usize {
        for k in 0..10usize {
            edges.push((i, (i + 1 + k * 97) % 1000));
        }
    }
    let t0 = Instant::now();
    let mut series = 0usize;
    for chunk in edges.chunks(500) {
        let mut batch = Vec::new();
        for &(a, b) in chunk {
            let ((sa, na), (sb, nb)) = (svc(a), svc(b));
            let base = |name: &str| {
                vec![
                    ("__name__".to_string(), name.to_string()),
                    ("reporter".into(), "destination".into()),
                    ("source_workload".into(), format!("{sa}-v1")),
                    ("source_workload_namespace".into(), na.clone()),
                    ("source_app".into(), sa.clone()),
                    ("source_version".into(), "v1".into()),
                    ("destination_workload".into(), format!("{sb}-v1")),
                    ("destination_workload_namespace".into(), nb.clone()),
                    ("destination_app".into(), sb.clone()),
                    ("destination_version".into(), "v1".into()),
                    (
                        "destination_service".into(),
                        format!("{sb}.{nb}.svc.cluster.local"),
                    ),
                    ("destination_service_name".into(), sb.clone()),
                    ("destination_service_namespace".into(), nb.clone()),
                    ("request_protocol".into(), "http".into()),
                    ("response_flags".into(), "-".into()),
                    ("connection_security_policy".into(), "mutual_tls".into()),
                ]
            };
            let ramp = |per_s: f64| -> Vec<Sample> {
                (0..)
                    .map(|i| start + i * scrape_ms)
                    .take_while(|&t| t <= end)
                    .map(|t| Sample::new(t, per_s * (t - start) as f64 / 1000.0))
                    .collect()
            };
            for (code, r) in [("200", 9.9), ("500", 0.1)] {
                let mut l = base("istio_requests_total");
                l.push(("response_code".into(), code.into()));
                batch.push(TimeSeries {
                    labels: Labels::from_pairs(l),
                    samples: ramp(r),
                });
            }
            for (i, le) in ISTIO_BUCKETS
                .iter()
                .map(|b| b.to_string())
                .chain(["+Inf".to_string()])
                .enumerate()
            {
                let mut l = base("istio_request_duration_milliseconds_bucket");
                l.push(("le".into(), le));
                let share = ((i + 1) as f64 / 8.0).min(1.0);
                batch.push(TimeSeries {
                    labels: Labels::from_pairs(l),
                    samples: ramp(10.0 * share),
                });
            }
        }
        series += batch.len();
        db.append(&batch).expect("append");
    }
    println!(
        "graph: wrote {series} series x {} samples in {:.1} s",
        3_600_000 / scrape_ms + 3,
        t0.elapsed().as_secs_f64()
    );
    let spans_dir = tempfile::tempdir().expect("tempdir");
    let spans = SpanStore::open(spans_dir.path(), SpanStoreOptions::default()).expect("open");
    let engine = Engine::new(EngineOptions::default());
    for gt in graph_types() {
        let q = GraphQuery {
            graph_type: gt,
            window_ms: 3_600_000,
            end_ms: end,
            cluster: None,
            namespace: None,
            focus: None,
            source: GraphSource::Metrics,
        };
        let (ms, g) = best_of(3, || build_graph(&*db, &spans, &engine, &q).expect("graph"));
        println!(
            "graph {:<9} 1h, scrape {}s: {} nodes, {} edges in {ms:.0} ms (goal 300 ms)",
            gt.as_str(),
            scrape_ms / 1000,
            g.nodes.len(),
            g.edges.len()
        );
    }
    // The PromQL share: the requests query alone.
    let (ms, _) = best_of(3, || {
        engine
            .instant_query(&*db, "sum by (source_workload, destination_workload, response_code) (increase(istio_requests_total[1h]))", end)
            .expect("query")
    });
    println!("  of which the requests query alone: {ms:.0} ms");
    let (ms, _) = best_of(1, || {
        engine
            .instant_query(&*db, "sum by (source_workload, destination_workload, le) (increase(istio_request_duration_milliseconds_bucket[1h]))", end)
            .expect("query")
    });
    println!("  the bucket query alone: {ms:.0} ms");
    let m = [meshlens_model::LabelMatcher::equal(
        "__name__",
        "istio_request_duration_milliseconds_bucket",
    )];
    for (what, lo) in [("1h", end - 3_600_000), ("5m", end - 300_000)] {
        let (ms, n) = best_of(2, || {
            let s = meshlens_model::MetricReader::select(&*db, &m, lo, end).expect("select");
            s.iter().map(|x| x.samples.len()).sum::<usize>()
        });
        println!("  floor: raw select of the bucket series over {what}: {n} samples in {ms:.0} ms");
    }
}

fn stats_bench() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SpanStoreOptions {
        fsync: false,
        ..SpanStoreOptions::default()
    };
    let store = SpanStore::open(dir.path(), opts).expect("open");
    let now = meshlens_model::time::now_ms() as u64 * 1000;
    let hour = 3_600_000_000u64;
    let t0 = Instant::now();
    let mut total = 0usize;
    let mut chunk = 0u64;
    while total < 5_000_000 {
        // 40 slices of the hour, each filled by its own seed.
        let lo = now - hour + (chunk % 40) * hour / 40;
        let spans = meshlens_testdata::generate_spans_at(50_000, chunk, lo, lo + hour / 40);
        total += spans.len();
        store.write_spans(&spans).expect("write");
        chunk += 1;
    }
    store.flush().expect("flush");
    println!(
        "stats: wrote {total} spans in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let end_ms = (now / 1000) as i64;
    let (ms, n) = best_of(3, || {
        let mut n = 0u64;
        store.scan(0, u64::MAX, &mut |_| n += 1).expect("scan");
        n
    });
    println!("  baseline: bare scan of {n} spans (one thread) in {ms:.0} ms");
    let q = StatsQuery {
        window_ms: 3_700_000,
        end_ms: end_ms + 1,
        cluster: None,
        service: None,
    };
    let (ms, s) = best_of(3, || compute_stats(&store, &q).expect("stats"));
    println!(
        "stats over {} spans ({} traces, {} requests, {} URLs): {ms:.0} ms (goal 300 ms)",
        s.totals.spans,
        s.totals.traces,
        s.totals.requests,
        s.per_url.len()
    );
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if what == "graph" || what == "all" {
        graph_bench();
    }
    if what == "stats" || what == "all" {
        stats_bench();
    }
}
