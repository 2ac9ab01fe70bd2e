//! Head memory per series, counted by the allocator: the bytes and allocations the database
//! holds after remote-write-like appends (labels borrowed from a request, one sample per
//! series per batch, in time order), per series. Exact and quiet where resident memory is
//! not (allocator slack and page granularity are left out; the allocations count shows
//! where per-allocation overhead would come in).
//!
//! `cargo run --release -p meshlens-tsdb --example head_memory -- [SERIES] [SCRAPES]`
//! (defaults: 20000 series, 720 scrapes at 15 s, as `bench/tsdb-vs-prometheus`: 3 h, so the
//! default 2 h blocks are not cut and the head holds every sample).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use meshlens_model::{Labels, MetricWriter, RawSeries, Sample};
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbOptions};

/// The system allocator, counting live bytes and allocations.
struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        BYTES.fetch_add(l.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        BYTES.fetch_add(l.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        BYTES.fetch_sub(l.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_sub(1, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        BYTES.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SCRAPE_MS: i64 = 15_000;
const BATCH: usize = 2000;
const T0: i64 = 1_700_000_000_000;

/// The label sets of `meshlens bench remote-write`: half node-exporter CPU series (5
/// labels), half Istio request series (12 labels).
fn labels(i: usize) -> Labels {
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
    let host = i / 200;
    let instance = format!("10.{}.{}.{}:9100", host / 250, host % 250, 1 + i % 7);
    if i % 4 < 2 {
        return Labels::from_pairs([
            ("__name__", "node_cpu_seconds_total".to_string()),
            ("job", "node".to_string()),
            ("instance", instance),
            ("cpu", (i % 16).to_string()),
            ("mode", modes[(i / 16) % modes.len()].to_string()),
        ]);
    }
    let src = services[i % services.len()];
    let dst = services[(i / 10 + 3) % services.len()];
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
        (
            "le",
            ["1", "5", "10", "25", "50", "100", "250", "+Inf"][(i / 11) % 8].to_string(),
        ),
    ])
}

/// Values as `meshlens bench remote-write` makes them: a quarter integer counters with
/// uneven increments, a quarter seconds counters with two decimals, half gauges with two
/// decimals as random walks.
fn next_value(series: usize, scrape: usize, prev: f64) -> f64 {
    let mut x = (series as u64) << 32 | scrape as u64;
    x = (x ^ (x >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let r = (x >> 11) as f64 / (1u64 << 53) as f64;
    let k = (series % 40) as f64;
    match series % 4 {
        0 => prev + (r * (k + 1.0)).floor(),
        1 => ((prev + r * (k % 15.0)) * 100.0).round() / 100.0,
        _ => ((prev + (2.0 * r - 1.0) * (0.01 + k / 8.0)) * 100.0).round() / 100.0,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let scrapes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(720);
    let mut all: Vec<Labels> = (0..series).map(labels).collect();
    all.sort();
    all.dedup();
    let series = all.len();
    let pairs: Vec<Vec<(&str, &str)>> = all
        .iter()
        .map(|l| {
            l.iter()
                .map(|x| (x.name.as_str(), x.value.as_str()))
                .collect()
        })
        .collect();
    let mut values: Vec<f64> = (0..series).map(|i| (i % 1000) as f64 * 10.0).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(
        dir.path(),
        TsdbOptions {
            wal_fsync: FsyncPolicy::Never,
            ..Default::default()
        },
    )
    .expect("open");
    let (bytes0, allocs0) = (
        BYTES.load(Ordering::Relaxed),
        ALLOCS.load(Ordering::Relaxed),
    );
    let started = std::time::Instant::now();
    let mut samples: Vec<[Sample; 1]> = Vec::with_capacity(BATCH);
    for s in 0..scrapes {
        let t = T0 + s as i64 * SCRAPE_MS;
        for start in (0..series).step_by(BATCH) {
            let ids = start..(start + BATCH).min(series);
            samples.clear();
            for i in ids.clone() {
                values[i] = next_value(i, s, values[i]);
                samples.push([Sample::new(t, values[i])]);
            }
            let batch: Vec<RawSeries> = ids
                .zip(&samples)
                .map(|(i, smp)| RawSeries {
                    labels: &pairs[i],
                    samples: smp,
                })
                .collect();
            db.append_raw(&batch).expect("append");
        }
    }
    let took = started.elapsed();
    drop(samples);
    let bytes = BYTES.load(Ordering::Relaxed) - bytes0;
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs0;
    let n = series as f64;
    println!(
        "series={series} scrapes={scrapes} seconds={:.2} samples_per_second={:.0}",
        took.as_secs_f64(),
        (series * scrapes) as f64 / took.as_secs_f64()
    );
    println!(
        "heap_bytes_per_series={:.0} allocations_per_series={:.2} bytes_per_sample={:.3}",
        bytes as f64 / n,
        allocs as f64 / n,
        bytes as f64 / (n * scrapes as f64)
    );
    // Not closed: closing cuts a block from the head, whose transient memory would be the
    // peak of a heap profile of this run instead of the head's.
    std::mem::forget(db);
}
