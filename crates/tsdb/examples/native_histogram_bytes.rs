//! Bytes on disk and ingest rate of native histograms against the same observations kept as
//! classic histograms (one float series per bucket plus `_sum` and `_count`), in the
//! embedded TSDB. Run by `bench/native-histograms`:
//!
//!   cargo run --release -p meshlens-tsdb --example native_histogram_bytes -- [SERIES] [SAMPLES]
//!
//! Each histogram is a latency distribution at schema 3 (bucket bounds growing by 2^(1/8))
//! over about 20 populated buckets, observed at 15 s intervals as a cumulative counter. The
//! classic form has the same buckets as `le` bounds. Both databases sync their WAL once a
//! second, get the same series count, and are closed (the head written as a block) before
//! their directories are measured.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use meshlens_model::histogram::{exponential_bound, BucketSpan};
use meshlens_model::{
    FloatHistogram, HistogramSample, Labels, MetricWriter, Sample, SeriesHistograms, TimeSeries,
};
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbOptions};

const SCHEMA: i32 = 3;
const FIRST_BUCKET: i32 = -24; // upper bound 2^-3 = 0.125 s
const BUCKETS: usize = 20;
const STEP_MS: i64 = 15_000;

/// Per-bucket observations added per scrape interval (a log-normal-ish shape), varied by
/// series and time so the counts do not grow in lockstep.
fn increments(series: usize, step: usize) -> [f64; BUCKETS] {
    let mut out = [0.0; BUCKETS];
    for (b, o) in out.iter_mut().enumerate() {
        let centre = 9.0 + (series % 5) as f64;
        let d = b as f64 - centre;
        let base = (40.0 * (-d * d / 18.0).exp()).round();
        *o = base + ((series * 7 + step * 13 + b * 3) % 4) as f64;
    }
    out
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

fn opts() -> TsdbOptions {
    TsdbOptions {
        block_duration_ms: 24 * 3600 * 1000,
        retention_time_ms: None,
        wal_fsync: FsyncPolicy::Interval(std::time::Duration::from_secs(1)),
        ..Default::default()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let samples: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(720);
    let start = 1_700_000_000_000i64;
    let root = tempfile::tempdir().unwrap();

    // Cumulative counts per series and bucket, advanced step by step for both forms.
    let native_dir = root.path().join("native");
    let db = Tsdb::open(&native_dir, opts()).unwrap();
    let mut counts = vec![[0.0f64; BUCKETS]; series];
    let mut sums = vec![0.0f64; series];
    let rss_before = heap_bytes();
    let t0 = Instant::now();
    for step in 0..samples {
        let t = start + step as i64 * STEP_MS;
        let batch: Vec<SeriesHistograms> = (0..series)
            .map(|s| {
                let inc = increments(s, step);
                for (c, i) in counts[s].iter_mut().zip(inc) {
                    *c += i;
                }
                sums[s] += inc
                    .iter()
                    .enumerate()
                    .map(|(b, n)| n * exponential_bound(FIRST_BUCKET + b as i32, SCHEMA))
                    .sum::<f64>()
                    * 0.9;
                let count: f64 = counts[s].iter().sum();
                SeriesHistograms {
                    labels: Labels::from_pairs([
                        ("__name__", "latency_seconds".to_string()),
                        ("instance", format!("pod-{s}")),
                    ]),
                    samples: vec![HistogramSample {
                        t,
                        h: Arc::new(FloatHistogram {
                            schema: SCHEMA,
                            count,
                            sum: sums[s],
                            positive_spans: vec![BucketSpan {
                                offset: FIRST_BUCKET,
                                length: BUCKETS as u32,
                            }],
                            positive_buckets: counts[s].to_vec(),
                            ..FloatHistogram::default()
                        }),
                    }],
                }
            })
            .collect();
        let o = db.append_histograms(&batch).unwrap();
        assert_eq!(o.accepted as usize, series, "{o:?}");
    }
    let native_secs = t0.elapsed().as_secs_f64();
    let native_head = heap_bytes().saturating_sub(rss_before);
    db.close().unwrap();
    drop(db);
    let native_bytes = dir_bytes(&native_dir);
    if std::env::var_os("SHOW_FILES").is_some() {
        let _ = std::process::Command::new("du")
            .arg("-ab")
            .arg(&native_dir)
            .status();
    }

    let classic_dir = root.path().join("classic");
    let db = Tsdb::open(&classic_dir, opts()).unwrap();
    let mut counts = vec![[0.0f64; BUCKETS]; series];
    let mut sums = vec![0.0f64; series];
    let rss_before = heap_bytes();
    let t0 = Instant::now();
    let mut float_samples = 0usize;
    for step in 0..samples {
        let t = start + step as i64 * STEP_MS;
        let mut batch: Vec<TimeSeries> = Vec::with_capacity(series * (BUCKETS + 3));
        for s in 0..series {
            let inc = increments(s, step);
            for (c, i) in counts[s].iter_mut().zip(inc) {
                *c += i;
            }
            sums[s] += inc
                .iter()
                .enumerate()
                .map(|(b, n)| n * exponential_bound(FIRST_BUCKET + b as i32, SCHEMA))
                .sum::<f64>()
                * 0.9;
            let instance = format!("pod-{s}");
            let mut cumulative = 0.0;
            for (b, count) in counts[s].iter().enumerate() {
                cumulative += count;
                let le = exponential_bound(FIRST_BUCKET + b as i32, SCHEMA);
                batch.push(TimeSeries {
                    labels: Labels::from_pairs([
                        ("__name__", "latency_seconds_bucket".to_string()),
                        ("instance", instance.clone()),
                        ("le", meshlens_model::format_value(le)),
                    ]),
                    samples: vec![Sample::new(t, cumulative)],
                });
            }
            for (name, v) in [
                ("latency_seconds_bucket", cumulative),
                ("latency_seconds_count", cumulative),
                ("latency_seconds_sum", sums[s]),
            ] {
                let mut pairs = vec![
                    ("__name__", name.to_string()),
                    ("instance", instance.clone()),
                ];
                if name.ends_with("_bucket") {
                    pairs.push(("le", "+Inf".to_string()));
                }
                batch.push(TimeSeries {
                    labels: Labels::from_pairs(pairs),
                    samples: vec![Sample::new(t, v)],
                });
            }
        }
        float_samples += batch.len();
        let o = db.append(&batch).unwrap();
        assert_eq!(o.accepted as usize, batch.len(), "{o:?}");
    }
    let classic_secs = t0.elapsed().as_secs_f64();
    let classic_head = heap_bytes().saturating_sub(rss_before);
    db.close().unwrap();
    drop(db);
    let classic_bytes = dir_bytes(&classic_dir);

    let observations = (series * samples) as f64;
    println!("# native histograms vs classic histograms of the same data: {series} series x {samples} samples, {BUCKETS} buckets, schema {SCHEMA}");
    println!();
    println!("| measure | native | classic | native / classic |");
    println!("|---|---|---|---|");
    println!(
        "| bytes on disk (closed, head written as a block) | {native_bytes} | {classic_bytes} | {:.3} |",
        native_bytes as f64 / classic_bytes as f64
    );
    println!(
        "| bytes per histogram sample (classic: its {} float samples) | {:.2} | {:.2} | {:.3} |",
        BUCKETS + 3,
        native_bytes as f64 / observations,
        classic_bytes as f64 / observations,
        native_bytes as f64 / classic_bytes as f64
    );
    println!(
        "| ingest, histograms per second | {:.0} | {:.0} | {:.2} |",
        observations / native_secs,
        observations / classic_secs,
        classic_secs / native_secs
    );
    println!(
        "| ingest, float samples per second (classic) | - | {:.0} | - |",
        float_samples as f64 / classic_secs
    );
    println!(
        "| heap held by the database before close (head, WAL buffers), MiB | {:.1} | {:.1} | {:.3} |",
        native_head as f64 / (1 << 20) as f64,
        classic_head as f64 / (1 << 20) as f64,
        native_head as f64 / classic_head.max(1) as f64
    );
}

/// Heap bytes in use: a counting allocator, so each phase's head is measured by what it
/// holds, whatever pages the allocator kept from the phase before.
struct Counting;

static LIVE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as u64, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size() as u64, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn heap_bytes() -> u64 {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}
