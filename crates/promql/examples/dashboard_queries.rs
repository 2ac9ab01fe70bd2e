//! The seven dashboard range queries of `bench/promql-vs-prometheus`, evaluated in process
//! over an embedded Tsdb holding the same shape of data (node-exporter CPU counters and
//! Istio request counters and histogram buckets at a 15 s interval), so the evaluator's
//! cost can be measured without HTTP, JSON or the peers.
//!
//! `cargo run --release -p meshlens-promql --example dashboard_queries -- [SERIES] [HOURS] [RUNS]`
//! (defaults 10000 6 5). Prints the median time per query with the result cache off, then
//! the same queries with the cache on, each run one step later as a refreshing dashboard
//! sends them, checked against the uncached result.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshlens_model::{Labels, MetricReader, Sample};
use meshlens_promql::{Engine, EngineOptions, Value};
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbOptions};

const QUERIES: [&str; 7] = [
    "sum by (job) (rate(node_cpu_seconds_total[5m]))",
    "sum by (instance) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m]))",
    "histogram_quantile(0.99, sum by (le, destination_workload) (rate(istio_request_duration_milliseconds_bucket[5m])))",
    "topk(5, sum by (instance) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m])))",
    "sum(rate(istio_requests_total{response_code=~\"5..\"}[5m])) / sum(rate(istio_requests_total[5m]))",
    "sum by (source_workload, destination_workload) (rate(istio_requests_total{reporter=\"source\"}[5m]))",
    "max_over_time(sum(rate(istio_requests_total[1m]))[1h:1m])",
];

const INTERVAL_MS: i64 = 15_000;
const STEP_MS: i64 = 60_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| -> usize {
        args.get(i)
            .map(|a| a.parse().unwrap_or_else(|_| panic!("not a number: {a}")))
            .unwrap_or(default)
    };
    let (series, hours, runs) = (arg(0, 10_000), arg(1, 6), arg(2, 5).max(1));
    let dir = std::env::temp_dir().join(format!("meshlens-promql-bench-{}", std::process::id()));
    let result = run(&dir, series, hours, runs);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        eprintln!("dashboard_queries: {e}");
        std::process::exit(1);
    }
}

fn run(dir: &Path, series: usize, hours: usize, runs: usize) -> Result<(), String> {
    let db = Tsdb::open(
        dir,
        TsdbOptions {
            retention_time_ms: None,
            wal_fsync: FsyncPolicy::Never,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as i64;
    let samples = hours * 3600 * 1000 / INTERVAL_MS as usize;
    let first = (now - samples as i64 * INTERVAL_MS) / 1000 * 1000;
    let loaded = Instant::now();
    load(&db, series, samples, first)?;
    // As the server's maintenance would have: cut the older hours into blocks.
    db.maintain().map_err(|e| e.to_string())?;
    println!(
        "loaded {series} series x {samples} samples in {:.1} s ({} blocks)",
        loaded.elapsed().as_secs_f64(),
        db.block_metas().len()
    );

    let end = now / 1000 * 1000;
    let start = end - hours as i64 * 3_600_000 + 600_000;
    let uncached = Engine::new(EngineOptions {
        disable_cache: true,
        ..Default::default()
    });
    println!(
        "\n{:<100} {:>10} {:>10} {:>8}",
        format!("cache off: query (range {hours}h, step 60s; median of {runs}, ms)"),
        "ms",
        "cpu ms",
        "series"
    );
    for q in QUERIES {
        let (median, cpu, n) = measure(runs, || query(&uncached, &db, q, start, end))?;
        println!(
            "{:<100} {:>10.1} {:>10.1} {:>8}",
            short(q),
            ms(median),
            ms(cpu),
            n
        );
    }

    // A dashboard refreshing every step: the window moves one step each time. The first
    // query fills the cache; each later one evaluates the new step and those within the
    // cache's safety offset.
    let cached = Engine::new(EngineOptions::default());
    println!(
        "\n{:<100} {:>10} {:>8}",
        format!("cache on, window one step later each run (median of {runs}, ms)"),
        "ms",
        "equal"
    );
    let back = runs as i64 + 1;
    for q in QUERIES {
        let shifted = |k: i64| (start - (back - k) * STEP_MS, end - (back - k) * STEP_MS);
        let (s0, e0) = shifted(0);
        query(&cached, &db, q, s0, e0)?;
        let mut times = Vec::with_capacity(runs);
        let mut equal = true;
        for k in 1..back {
            let (s, e) = shifted(k);
            let t = Instant::now();
            let got = cached
                .range_query(&db, q, s, e, STEP_MS)
                .map_err(|e| format!("{q}: {e}"))?;
            times.push(t.elapsed());
            let want = uncached
                .range_query(&db, q, s, e, STEP_MS)
                .map_err(|e| format!("{q}: {e}"))?;
            equal &= close(&got.value, &want.value);
        }
        times.sort();
        println!(
            "{:<100} {:>10.1} {:>8}",
            short(q),
            ms(times[times.len() / 2]),
            equal
        );
    }
    println!("cache: {:?}", cached.cache_stats());
    println!("peak resident memory: {} MiB", peak_rss_mib());
    Ok(())
}

/// Same series, steps and values (to 1e-9 relative: parallel sums may differ in the
/// last bits from one block split to another).
fn close(a: &Value, b: &Value) -> bool {
    let (Value::Matrix(a), Value::Matrix(b)) = (a, b) else {
        return a == b;
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.labels == y.labels
                && x.samples.len() == y.samples.len()
                && x.samples.iter().zip(&y.samples).all(|(p, q)| {
                    p.t == q.t
                        && (p.v == q.v
                            || (p.v.is_nan() && q.v.is_nan())
                            || (p.v - q.v).abs() <= 1e-9 * p.v.abs().max(q.v.abs()))
                })
        })
}

fn load(db: &Tsdb, series: usize, samples: usize, first: i64) -> Result<(), String> {
    let labels = generate_labels(series);
    let handles = labels
        .iter()
        .map(|l| db.series_handle(l).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    // Per series: (value, kind): counters grow by up to 40 or 15 a sample, gauges wander.
    let mut state: Vec<(f64, usize)> = (0..handles.len())
        .map(|i| ((rng.next() % 1_000_000) as f64, i % 4))
        .collect();
    let mut batch = Vec::with_capacity(handles.len());
    for k in 0..samples {
        let t = first + k as i64 * INTERVAL_MS;
        batch.clear();
        for (h, (v, kind)) in handles.iter().zip(state.iter_mut()) {
            let r = rng.next();
            *v = match kind {
                0 => *v + (r % 41) as f64,
                1 => ((*v + (r % 1500) as f64 / 100.0) * 100.0).round() / 100.0,
                _ => ((*v + (r % 1000) as f64 / 100.0 - 5.0) * 100.0).round() / 100.0,
            };
            batch.push((h, Sample::new(t, *v)));
        }
        db.append_handles(&batch).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn query(
    engine: &Engine,
    db: &dyn MetricReader,
    q: &str,
    start: i64,
    end: i64,
) -> Result<usize, String> {
    match engine
        .range_query(db, q, start, end, STEP_MS)
        .map_err(|e| format!("{q}: {e}"))?
        .value
    {
        Value::Matrix(m) => Ok(m.len()),
        other => Err(format!("{q}: not a matrix: {other:?}")),
    }
}

/// One warm-up, then the median of `runs` timed calls and the last call's result size.
/// One warm-up, then the median of `runs` timed calls, the mean process CPU time (user +
/// system, all threads) per call, and the last call's result size.
fn measure(
    runs: usize,
    mut f: impl FnMut() -> Result<usize, String>,
) -> Result<(Duration, Duration, usize), String> {
    let mut n = f()?;
    let mut times = Vec::with_capacity(runs);
    let cpu0 = process_cpu();
    for _ in 0..runs {
        let t = Instant::now();
        n = f()?;
        times.push(t.elapsed());
    }
    let cpu = (process_cpu() - cpu0) / runs as u32;
    times.sort();
    Ok((times[times.len() / 2], cpu, n))
}

/// CPU time this process has used (user + system), from `/proc/self/stat` (clock ticks,
/// taken as the usual 100 a second); zero where that file is missing.
fn process_cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn short(q: &str) -> &str {
    &q[..q.len().min(100)]
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// A small deterministic generator, so runs load identical data.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The label sets `meshlens bench remote-write` sends: half node-exporter CPU series, half
/// Istio request series (a quarter counters, a quarter duration buckets).
fn generate_labels(n: usize) -> Vec<Labels> {
    let modes = [
        "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
    ];
    let codes = ["200", "201", "204", "301", "400", "404", "500", "503"];
    let services = [
        "productpage",
        "reviews",
        "ratings",
        "details",
        "gateway",
        "cart",
        "checkout",
        "payments",
        "search",
        "auth",
    ];
    let les = ["1", "5", "10", "25", "50", "100", "250", "+Inf"];
    let mut out = Vec::with_capacity(n);
    let mut i = 0usize;
    while out.len() < n {
        let host = i / 200;
        let instance = format!("10.{}.{}.{}:9100", host / 250, host % 250, 1 + i % 7);
        let l = if i % 4 < 2 {
            Labels::from_pairs([
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("job", "node".to_string()),
                ("instance", instance),
                ("cpu", (i % 16).to_string()),
                ("mode", modes[(i / 16) % modes.len()].to_string()),
            ])
        } else {
            let (src, dst) = (
                services[i % services.len()],
                services[(i / 10 + 3) % services.len()],
            );
            let name = if i % 4 == 2 {
                "istio_requests_total"
            } else {
                "istio_request_duration_milliseconds_bucket"
            };
            Labels::from_pairs([
                ("__name__", name.to_string()),
                ("job", "kubernetes-pods".to_string()),
                ("instance", instance),
                ("namespace", format!("ns-{}", i % 5)),
                (
                    "reporter",
                    if i.is_multiple_of(2) {
                        "source"
                    } else {
                        "destination"
                    }
                    .to_string(),
                ),
                ("source_workload", format!("{src}-v{}", 1 + i % 3)),
                (
                    "destination_workload",
                    format!("{dst}-v{}", 1 + (i / 3) % 3),
                ),
                (
                    "destination_service",
                    format!("{dst}.ns-{}.svc.cluster.local", i % 5),
                ),
                ("response_code", codes[(i / 7) % codes.len()].to_string()),
                ("request_protocol", "http".to_string()),
                ("le", les[(i / 11) % les.len()].to_string()),
            ])
        };
        i += 1;
        out.push(l);
    }
    out.sort();
    out.dedup();
    out
}
