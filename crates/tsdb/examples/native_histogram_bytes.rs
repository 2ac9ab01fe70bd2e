//! Bytes on disk, heap and ingest rate of native histograms against the same observations
//! kept as classic histograms (one float series per bucket plus `_sum` and `_count`), in
//! the embedded TSDB. Run by `bench/native-histograms`:
//!
//!   cargo run --release -p meshlens-tsdb --example native_histogram_bytes -- [SERIES] [SAMPLES]
//!   ... -- SERIES SAMPLES push URL native|classic
//!
//! The second form sends the same observations, in time order and ending now, to a
//! remote-write receiver (the bench feeds Prometheus with it), instead of measuring.
//!
//! Each histogram is a latency distribution at schema 3 (bucket bounds growing by 2^(1/8))
//! over about 20 populated buckets, observed at 15 s intervals as a cumulative counter. The
//! classic form has the same buckets as `le` bounds. Both databases sync their WAL once a
//! second, get the same series count, and are closed (the head written as a block) before
//! their directories are measured.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::histogram::{exponential_bound, BucketSpan};
use meshlens_model::{
    FloatHistogram, HistogramSample, Labels, MetricWriter, Sample, SeriesHistograms, TimeSeries,
};
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbOptions};

const SCHEMA: i32 = 3;
const FIRST_BUCKET: i32 = -24; // upper bound 2^-3 = 0.125 s
const BUCKETS: usize = 20;
const STEP_MS: i64 = 15_000;

/// The observations of every series, advanced one scrape at a time.
struct Workload {
    /// Per series, the count in each bucket (not cumulative).
    counts: Vec<[f64; BUCKETS]>,
    sums: Vec<f64>,
}

impl Workload {
    fn new(series: usize) -> Workload {
        Workload {
            counts: vec![[0.0; BUCKETS]; series],
            sums: vec![0.0; series],
        }
    }

    /// Per-bucket observations added per scrape interval (a log-normal-ish shape), varied
    /// by series and time so the counts do not grow in lockstep.
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

    fn advance(&mut self, step: usize) {
        for (s, (counts, sum)) in self.counts.iter_mut().zip(&mut self.sums).enumerate() {
            let inc = Workload::increments(s, step);
            for (c, i) in counts.iter_mut().zip(inc) {
                *c += i;
            }
            *sum += inc
                .iter()
                .enumerate()
                .map(|(b, n)| n * exponential_bound(FIRST_BUCKET + b as i32, SCHEMA))
                .sum::<f64>()
                * 0.9;
        }
    }

    fn native(&self, t: i64) -> Vec<SeriesHistograms> {
        (0..self.counts.len())
            .map(|s| SeriesHistograms {
                labels: Labels::from_pairs([
                    ("__name__", "latency_seconds".to_string()),
                    ("instance", format!("pod-{s}")),
                ]),
                samples: vec![HistogramSample {
                    t,
                    h: Arc::new(FloatHistogram {
                        schema: SCHEMA,
                        count: self.counts[s].iter().sum(),
                        sum: self.sums[s],
                        positive_spans: vec![BucketSpan {
                            offset: FIRST_BUCKET,
                            length: BUCKETS as u32,
                        }],
                        positive_buckets: self.counts[s].to_vec(),
                        ..FloatHistogram::default()
                    }),
                }],
            })
            .collect()
    }

    fn classic(&self, t: i64) -> Vec<TimeSeries> {
        let mut batch = Vec::with_capacity(self.counts.len() * (BUCKETS + 3));
        for (s, counts) in self.counts.iter().enumerate() {
            let instance = format!("pod-{s}");
            let mut cumulative = 0.0;
            for (b, count) in counts.iter().enumerate() {
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
                ("latency_seconds_sum", self.sums[s]),
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
        batch
    }
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

/// What one form cost: seconds appending, heap held before close, bytes after close.
struct Phase {
    secs: f64,
    heap: u64,
    disk: u64,
    /// Float samples appended (classic only).
    floats: usize,
}

fn measure(dir: &Path, samples: usize, series: usize, native: bool) -> Phase {
    let db = Tsdb::open(dir, opts()).unwrap();
    let mut work = Workload::new(series);
    let start = 1_700_000_000_000i64;
    let heap_before = heap_bytes();
    let mut floats = 0;
    let t0 = Instant::now();
    for step in 0..samples {
        let t = start + step as i64 * STEP_MS;
        work.advance(step);
        if native {
            let o = db.append_histograms(&work.native(t)).unwrap();
            assert_eq!(o.accepted as usize, series, "{o:?}");
        } else {
            let batch = work.classic(t);
            floats += batch.len();
            let o = db.append(&batch).unwrap();
            assert_eq!(o.accepted as usize, batch.len(), "{o:?}");
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let heap = heap_bytes().saturating_sub(heap_before);
    db.close().unwrap();
    drop(db);
    if std::env::var_os("SHOW_FILES").is_some() {
        let _ = std::process::Command::new("du")
            .arg("-ab")
            .arg(dir)
            .status();
    }
    Phase {
        secs,
        heap,
        disk: dir_bytes(dir),
        floats,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let series: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let samples: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(720);
    if args.get(2).map(String::as_str) == Some("push") {
        let (Some(url), Some(form)) = (args.get(3), args.get(4)) else {
            eprintln!("usage: SERIES SAMPLES push URL native|classic");
            std::process::exit(2);
        };
        push(url, form == "native", series, samples);
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let native = measure(&root.path().join("native"), samples, series, true);
    let classic = measure(&root.path().join("classic"), samples, series, false);

    let observations = (series * samples) as f64;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("# native histograms vs classic histograms of the same data: {series} series x {samples} samples, {BUCKETS} buckets, schema {SCHEMA}");
    println!();
    println!("| measure | native | classic | native / classic |");
    println!("|---|---|---|---|");
    println!(
        "| bytes on disk (closed, head written as a block) | {} | {} | {:.3} |",
        native.disk,
        classic.disk,
        native.disk as f64 / classic.disk as f64
    );
    println!(
        "| bytes per histogram sample (classic: its {} float samples) | {:.2} | {:.2} | {:.3} |",
        BUCKETS + 3,
        native.disk as f64 / observations,
        classic.disk as f64 / observations,
        native.disk as f64 / classic.disk as f64
    );
    println!(
        "| ingest, histograms per second | {:.0} | {:.0} | {:.2} |",
        observations / native.secs,
        observations / classic.secs,
        classic.secs / native.secs
    );
    println!(
        "| ingest, float samples per second (classic) | - | {:.0} | - |",
        classic.floats as f64 / classic.secs
    );
    println!(
        "| heap held by the database before close (head, WAL buffers), MiB | {:.1} | {:.1} | {:.3} |",
        mib(native.heap),
        mib(classic.heap),
        native.heap as f64 / classic.heap.max(1) as f64
    );
}

/// Sends the workload to a remote-write receiver, one scrape per request, the last at the
/// current time.
fn push(url: &str, native: bool, series: usize, samples: usize) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = now - now % STEP_MS - (samples as i64 - 1) * STEP_MS;
    let mut work = Workload::new(series);
    let mut sent = 0usize;
    for step in 0..samples {
        let t = start + step as i64 * STEP_MS;
        work.advance(step);
        let req = if native {
            WriteRequest {
                histograms: work.native(t),
                ..Default::default()
            }
        } else {
            WriteRequest {
                timeseries: work.classic(t),
                ..Default::default()
            }
        };
        sent += req.histograms.len() + req.timeseries.len();
        if let Err(e) = post(url, &encode(&req)) {
            eprintln!("remote write to {url} failed at step {step}: {e}");
            std::process::exit(1);
        }
    }
    eprintln!(
        "pushed {sent} {} to {url}",
        if native {
            "histogram samples"
        } else {
            "float samples"
        }
    );
}

/// One HTTP/1.1 POST of a snappy remote-write body to `http://host:port/path`; Err unless
/// the answer is 2xx.
fn post(url: &str, body: &[u8]) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut conn = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    let head = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    conn.write_all(body).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    let status = answer.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(answer.chars().take(300).collect())
    }
}

/// Heap bytes in use: a counting allocator, so each phase's database is measured by what
/// it holds, whatever pages the allocator kept from the phase before.
struct Counting;

static LIVE: AtomicU64 = AtomicU64::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn heap_bytes() -> u64 {
    LIVE.load(Ordering::Relaxed)
}
