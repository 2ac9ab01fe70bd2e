//! Benchmarks of the analyses (run in release):
//!
//! `cargo run --release -p meshlens-analysis --example bench -- [graph|stats|all]`
//!
//! - graph: 1,000 services, 10,000 edges of Istio metrics (requests by 2 response codes,
//!   Istio's 20 duration buckets, destination reporter) in a Tsdb, graph over 1 h;
//!   `SCRAPE_S` sets the scrape interval (default 15), `SERVICES` the mesh size (10 edges
//!   each, default 1000), `GRAPH_TYPES` a comma list of graph types (default all three).
//! - stats: a SpanStore filled with `meshlens_testdata` traces to 5 million spans (`SPANS`),
//!   statistics over the whole hour, against a bare `scan` of the same window as the baseline:
//!   the first query (projection scans), later ones (per-segment partials), a window cutting
//!   segments, a service filter, then without partials and through whole `Span`s.
//!
//! The last line is the process's peak resident memory (`peak_rss_kib=`), for `bench/scaling`.

use std::sync::Arc;
use std::time::Instant;

use meshlens_analysis::{
    build_graph, build_graph_with_aggregates, compute_stats, AggregatesOptions, ComputedFrom,
    EdgeAggregates, GraphQuery, GraphSource, GraphType, StatsQuery,
};
use meshlens_model::{Labels, MetricWriter, RequiredOnly, Sample, SpanReader, TimeSeries};
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
    let all = vec![GraphType::Workload, GraphType::App, GraphType::Service];
    match std::env::var("GRAPH_TYPES") {
        Ok(list) => {
            let picked: Vec<GraphType> = list.split(',').filter_map(GraphType::parse).collect();
            if picked.is_empty() {
                all
            } else {
                picked
            }
        }
        Err(_) => all,
    }
}

/// A size knob from the environment (`bench/scaling` sets them), or its default.
fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// This process's peak resident memory in KiB (VmHWM), 0 where /proc is missing.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
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
    // The per-edge aggregates see every batch the TSDB takes, as the server wires them.
    let aggs = EdgeAggregates::empty(AggregatesOptions::default()).expect("aggregates");
    let mut feed_s = 0.0;
    let now = meshlens_model::time::now_ms();
    let end = now - now % scrape_ms;
    let start = end - 3_600_000 - 2 * scrape_ms;
    let svc = |i: usize| (format!("svc-{i}"), format!("ns-{}", i % 20));
    let n = env_usize("SERVICES", 1000).max(2);
    let mut edges = Vec::with_capacity(n * 10);
    for i in 0..n {
        for k in 0..10usize {
            edges.push((i, (i + 1 + k * 97) % n));
        }
    }
    // Small meshes wrap around: no self-calls, no repeated edge (order kept).
    let mut seen = std::collections::HashSet::new();
    edges.retain(|&(a, b)| a != b && seen.insert((a, b)));
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
        let t = Instant::now();
        aggs.observe(&batch);
        feed_s += t.elapsed().as_secs_f64();
    }
    let samples_per = 3_600_000 / scrape_ms + 3;
    println!(
        "graph: wrote {series} series x {samples_per} samples in {:.1} s, of which {feed_s:.1} s \
         feeding the aggregates ({:.0} ns a sample)",
        t0.elapsed().as_secs_f64(),
        feed_s * 1e9 / (series as f64 * samples_per as f64)
    );
    let st = aggs.stats();
    println!(
        "  aggregates: {} edges, {} series, {} figures, {} / {} rows (15 s / 5 m), {:.1} MiB \
         ({:.0} bytes an edge)",
        st.edges,
        st.series,
        st.figures,
        st.rows_fine,
        st.rows_coarse,
        st.bytes as f64 / (1 << 20) as f64,
        st.bytes as f64 / st.edges.max(1) as f64
    );
    // After a restart: the same aggregates read back from the TSDB (24 h in 15 min slices).
    let t = Instant::now();
    let rebuilt = EdgeAggregates::new(AggregatesOptions::default()).expect("aggregates");
    let r = rebuilt.rebuild(&*db).expect("rebuild");
    println!(
        "  rebuild from storage: {} series, {} samples in {:.1} s",
        r.series,
        r.samples,
        t.elapsed().as_secs_f64()
    );
    drop(rebuilt);
    /// CPU time (user + system) this process has used, in ms, from /proc/self/stat (at
    /// the kernel's 100 Hz tick): what a request costs whatever else the machine runs.
    fn cpu_ms() -> f64 {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
                Some(ticks * 10.0)
            })
            .unwrap_or(0.0)
    }
    /// A field of /proc/self/status in KiB (0 where /proc is missing).
    fn status_kib(field: &str) -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }
    /// Resident memory before one run of `f`, its peak during and what stays after (the
    /// peak is reset first through /proc/self/clear_refs).
    fn memory<T>(f: impl FnOnce() -> T) -> String {
        let before = status_kib("VmRSS:");
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let out = f();
        let (peak, after) = (status_kib("VmHWM:"), status_kib("VmRSS:"));
        drop(out);
        let mib = |k: u64| k as f64 / 1024.0;
        if reset {
            format!(
                "resident {:.0} MiB before, peak +{:.0} MiB, +{:.0} MiB after",
                mib(before),
                mib(peak.saturating_sub(before)),
                mib(after.saturating_sub(before))
            )
        } else {
            format!(
                "resident {:.0} MiB before, +{:.0} MiB after",
                mib(before),
                mib(after.saturating_sub(before))
            )
        }
    }
    let spans_dir = tempfile::tempdir().expect("tempdir");
    let spans = SpanStore::open(spans_dir.path(), SpanStoreOptions::default()).expect("open");
    let engine = Engine::new(EngineOptions::default());
    // `GRAPH_PROMQL=0`: the aggregates alone, without the PromQL path (to profile them).
    let promql = std::env::var("GRAPH_PROMQL").map_or(true, |v| v != "0");
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
        let (ms, g) = if promql {
            best_of(3, || Some(build_graph(&*db, &spans, &engine, &q)))
        } else {
            (f64::NAN, None)
        };
        // Past `--query.max-samples` the PromQL path is refused, as the server refuses it.
        let g = match g {
            None => None,
            Some(Ok(g)) => {
                println!(
                    "graph {:<9} 1h, scrape {}s: {} nodes, {} edges in {ms:.0} ms through PromQL \
                     (goal 300 ms)",
                    gt.as_str(),
                    scrape_ms / 1000,
                    g.nodes.len(),
                    g.edges.len()
                );
                Some(g)
            }
            Some(Err(e)) => {
                println!(
                    "graph {:<9} 1h, scrape {}s: PromQL path refused after {ms:.0} ms: {e}",
                    gt.as_str(),
                    scrape_ms / 1000
                );
                None
            }
        };
        let with_aggs = || build_graph_with_aggregates(&aggs, &*db, &spans, &engine, &q);
        let runs = if promql { 5 } else { 50 };
        let cpu0 = cpu_ms();
        let (ams, a) = best_of(runs, || with_aggs().expect("graph"));
        let cpu = (cpu_ms() - cpu0) / runs as f64;
        assert_eq!(
            a.computed_from,
            ComputedFrom::Aggregates,
            "{:?}",
            a.fallback_reason
        );
        if let Some(g) = &g {
            assert_eq!(
                (a.nodes.len(), a.edges.len()),
                (g.nodes.len(), g.edges.len())
            );
        }
        println!(
            "graph {:<9} 1h, scrape {}s: {} nodes, {} edges in {ams:.1} ms from the aggregates \
             ({}{cpu:.0} ms of CPU a request on average)",
            gt.as_str(),
            scrape_ms / 1000,
            a.nodes.len(),
            a.edges.len(),
            if promql {
                format!("{:.0}x; ", ms / ams)
            } else {
                String::new()
            }
        );
        if g.is_none() {
            println!(
                "  memory, aggregates: {}",
                memory(|| with_aggs().expect("graph"))
            );
            continue;
        }
        println!(
            "  memory, aggregates: {}",
            memory(|| with_aggs().expect("graph"))
        );
        println!(
            "  memory, PromQL:     {}",
            memory(|| build_graph(&*db, &spans, &engine, &q).expect("graph"))
        );
    }
    if !promql {
        return;
    }
    // The PromQL share, query by query (either may be over the sample limit at large sizes).
    for (what, query, runs) in [
        ("of which the requests query alone", "sum by (source_workload, destination_workload, response_code) (increase(istio_requests_total[1h]))", 3),
        ("the bucket query alone", "sum by (source_workload, destination_workload, le) (increase(istio_request_duration_milliseconds_bucket[1h]))", 1),
    ] {
        match best_of(runs, || engine.instant_query(&*db, query, end)) {
            (ms, Ok(_)) => println!("  {what}: {ms:.0} ms"),
            (ms, Err(e)) => println!("  {what}: refused after {ms:.0} ms: {e}"),
        }
    }
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
    let target = env_usize("SPANS", 5_000_000);
    while total < target {
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
    let summary = |s: &meshlens_analysis::Stats| {
        format!(
            "{} spans ({} traces, {} requests, {} URLs)",
            s.totals.spans,
            s.totals.traces,
            s.totals.requests,
            s.per_url.len()
        )
    };
    // The first query decodes every segment (projection scan) and keeps their partials.
    let (cold, s) = best_of(1, || compute_stats(&store, &q).expect("stats"));
    let (ms, warm) = best_of(3, || compute_stats(&store, &q).expect("stats"));
    assert!(warm == s, "partials give the scanned figures");
    println!("stats over {}: {ms:.0} ms (goal 300 ms)", summary(&s));
    println!("  first query (projection scan, keeps per-segment partials): {cold:.0} ms");
    let cut = StatsQuery {
        window_ms: 1_800_000,
        end_ms: end_ms - 900_000,
        ..q.clone()
    };
    let svc = StatsQuery {
        service: Some("frontend.default".into()),
        ..q.clone()
    };
    for (what, q) in [
        ("30 min window cutting segments", &cut),
        ("service filter", &svc),
    ] {
        let (cold, s) = best_of(1, || compute_stats(&store, q).expect("stats"));
        let (ms, _) = best_of(3, || compute_stats(&store, q).expect("stats"));
        println!(
            "  {what}: {}: first {cold:.0} ms, then {ms:.0} ms",
            summary(&s)
        );
    }
    println!(
        "  partials kept: {} ({:.1} MiB)",
        store.stats().preaggregates,
        store.stats().preaggregate_bytes as f64 / (1 << 20) as f64
    );
    // Every query a projection scan: the same store without partials.
    store.close().expect("close");
    drop(store);
    let opts = SpanStoreOptions {
        fsync: false,
        preaggregate_bytes: 0,
        ..SpanStoreOptions::default()
    };
    let store = SpanStore::open(dir.path(), opts).expect("open");
    let (ms, p) = best_of(3, || compute_stats(&store, &q).expect("stats"));
    assert!(p == s, "projection scans give the same figures");
    println!("  without partials (projection scan every time): {ms:.0} ms");
    let (ms, p) = best_of(1, || {
        compute_stats(&RequiredOnly::new(&store), &q).expect("stats")
    });
    assert!(p == s, "span scans give the same figures");
    println!("  building every Span (SpanReader::scan, as before projections): {ms:.0} ms");
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if what == "graph" || what == "all" {
        graph_bench();
    }
    if what == "stats" || what == "all" {
        stats_bench();
    }
    println!("peak_rss_kib={}", peak_rss_kib());
}
