//! Performance figures (ignored by default; run in release):
//! `SPANSTORE_BENCH_ROUNDS=10 cargo test --release -p meshlens-spanstore --test perf -- --ignored --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshlens_model::{SpanReader, TraceId, TraceQuery};
use meshlens_spanstore::{SpanStore, SpanStoreOptions};
use meshlens_testdata::generate_spans_at;

fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

#[test]
#[ignore]
fn perf_ingest_lookup_search() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let pool_traces = env("SPANSTORE_BENCH_TRACES", 100_000);
    let rounds = env("SPANSTORE_BENCH_ROUNDS", 10);
    let writers = env("SPANSTORE_BENCH_WRITERS", 4);
    let batch = env("SPANSTORE_BENCH_BATCH", 500);
    let dir = tempfile::tempdir().unwrap();
    let opts = SpanStoreOptions {
        fsync: env("SPANSTORE_BENCH_FSYNC", 1) == 1,
        ..Default::default()
    };
    let st = Arc::new(SpanStore::open(dir.path(), opts.clone()).unwrap());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let hour = 3_600_000_000u64;
    let t = Instant::now();
    let mut pool = generate_spans_at(pool_traces, 42, now - hour, now);
    println!(
        "generated {} spans ({} traces) in {:?}",
        pool.len(),
        pool_traces,
        t.elapsed()
    );
    let mut ingest = Vec::new();
    let mut probes: Vec<TraceId> = Vec::new();
    for round in 0..rounds as u64 {
        if round > 0 {
            // New trace ids and an earlier hour for each round.
            for s in pool.iter_mut() {
                s.trace_id.high ^= round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                s.timestamp = s.timestamp.map(|t| t - hour);
            }
        }
        probes.extend(pool.iter().step_by(997).map(|s| s.trace_id));
        let pool_ref = &pool;
        let t = Instant::now();
        std::thread::scope(|sc| {
            let per = pool_ref.len().div_ceil(writers);
            for w in 0..writers {
                let st = st.clone();
                let part =
                    &pool_ref[(w * per).min(pool_ref.len())..((w + 1) * per).min(pool_ref.len())];
                sc.spawn(move || {
                    for chunk in part.chunks(batch) {
                        st.write_spans(chunk).unwrap();
                    }
                });
            }
        });
        let el = t.elapsed();
        ingest.push(pool.len() as f64 / el.as_secs_f64());
    }
    let total = pool.len() * rounds;
    drop(pool);
    ingest.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "ingest: {} spans, {} writers, batch {}: median {:.0} spans/s (min {:.0}, max {:.0}), fsync {}",
        total,
        writers,
        batch,
        ingest[ingest.len() / 2],
        ingest[0],
        ingest[ingest.len() - 1],
        opts.fsync
    );
    let t = Instant::now();
    st.flush().unwrap();
    println!("final flush {:?}", t.elapsed());
    let s = st.stats();
    println!(
        "stats: spans {} traces {} segments {} disk {} MB -> {:.1} bytes/span; rss {} MB",
        s.spans,
        s.traces,
        s.segments,
        s.disk_bytes >> 20,
        s.disk_bytes as f64 / s.spans as f64,
        rss_mb()
    );
    assert_eq!(s.spans as usize, total);

    // Trace by id.
    let mut lat = Vec::new();
    for id in probes.iter().take(3000) {
        let t = Instant::now();
        let tr = st.trace(id).unwrap();
        lat.push(t.elapsed());
        assert!(!tr.is_empty());
    }
    println!(
        "trace by id ({} lookups): p50 {:?} p99 {:?} max {:?}",
        lat.len(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0)
    );

    let end_ms = (now / 1000) as i64;
    let searches: Vec<(&str, TraceQuery)> = vec![
        (
            "service, limit 10",
            TraceQuery {
                service_name: Some("frontend.default".into()),
                end_ts: end_ms,
                lookback: 7 * 86_400_000,
                limit: 10,
                ..Default::default()
            },
        ),
        (
            "service + span name, 1h lookback 3h ago",
            TraceQuery {
                service_name: Some("reviews.default".into()),
                span_name: Some("ratings.default.svc.cluster.local:9080/*".into()),
                end_ts: end_ms - 3 * 3_600_000,
                lookback: 3_600_000,
                limit: 10,
                ..Default::default()
            },
        ),
        (
            "error tag + minDuration, limit 100",
            TraceQuery {
                annotation_query: vec![("error".into(), None)],
                min_duration: Some(100_000),
                end_ts: end_ms,
                lookback: 7 * 86_400_000,
                limit: 100,
                ..Default::default()
            },
        ),
        (
            "http.status_code=503, limit 10",
            TraceQuery {
                service_name: Some("checkoutservice.default".into()),
                annotation_query: vec![("http.status_code".into(), Some("503".into()))],
                end_ts: end_ms,
                lookback: 7 * 86_400_000,
                limit: 10,
                ..Default::default()
            },
        ),
    ];
    for (name, q) in &searches {
        let mut lat = Vec::new();
        let mut n = 0;
        for _ in 0..10 {
            let t = Instant::now();
            n = st.find_traces(q).unwrap().len();
            lat.push(t.elapsed());
        }
        println!(
            "search {name}: {n} traces, median {:?} max {:?}",
            pct(&mut lat, 0.5),
            pct(&mut lat, 1.0)
        );
    }
    let t = Instant::now();
    let deps = st.dependencies(end_ms, 3_600_000).unwrap();
    println!(
        "dependencies (1h): {} links in {:?}",
        deps.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let mut n = 0u64;
    st.scan(0, u64::MAX, &mut |_| n += 1).unwrap();
    let el = t.elapsed();
    println!(
        "scan all: {} spans in {:?} ({:.0} spans/s)",
        n,
        el,
        n as f64 / el.as_secs_f64()
    );
    let t = Instant::now();
    let names = st.service_names().unwrap();
    println!("service names: {} in {:?}", names.len(), t.elapsed());
    let st = Arc::into_inner(st).unwrap();
    st.close().unwrap();
    drop(st);
    let t = Instant::now();
    let st = SpanStore::open(dir.path(), opts).unwrap();
    println!("reopen: {:?}, rss {} MB", t.elapsed(), rss_mb());
    assert_eq!(st.stats().spans as usize, total);
}
