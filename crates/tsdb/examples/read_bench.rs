//! The TSDB read path, measured: fills a database with Istio-like histogram bucket series,
//! then reads them back through `select` and through `select_lazy` + `decode_into` with one
//! reused buffer, from the head and again after the head is written out as a block; and
//! the bare chunk decoder's rate on the same kind of data.
//!
//! `cargo run --release -p meshlens-tsdb --example read_bench -- [SERIES] [MINUTES]`
//! (defaults: 200000 series, 60 minutes at a 15 s scrape), optionally `[ONLY]` to run just
//! the measurements whose name contains it. Each figure is the best of 3; CPU time is the
//! whole process's (all threads).

use std::time::{Duration, Instant};

use meshlens_model::{LabelMatcher, Labels, MetricReader, MetricWriter, Sample, TimeSeries};
use meshlens_tsdb::{
    decode_chunk, decode_chunk_into, encode_chunk, FsyncPolicy, Tsdb, TsdbOptions,
};
use rand::{Rng, SeedableRng};

const SCRAPE_MS: i64 = 15_000;
const LE: [&str; 20] = [
    "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000",
    "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf",
];
const CODES: [&str; 3] = ["200", "404", "503"];
const REPORTERS: [&str; 2] = ["source", "destination"];
const METRIC: &str = "istio_request_duration_milliseconds_bucket";

/// The labels of bucket series `i`: histograms of `source -> destination` edges, one series
/// per `le`, both reporters, three response codes.
fn bucket_labels(i: usize) -> Labels {
    let le = LE[i % LE.len()];
    let rest = i / LE.len();
    let code = CODES[rest % CODES.len()];
    let rest = rest / CODES.len();
    let reporter = REPORTERS[rest % REPORTERS.len()];
    let edge = rest / REPORTERS.len();
    let src = format!("svc-{}", edge % 1000);
    let dst = format!("svc-{}", (edge * 7 + 1) % 1000);
    Labels::from_pairs([
        ("__name__", METRIC.to_string()),
        (
            "destination_service",
            format!("{dst}.mesh.svc.cluster.local"),
        ),
        ("destination_workload", dst.clone()),
        ("destination_workload_namespace", "mesh".to_string()),
        ("le", le.to_string()),
        ("reporter", reporter.to_string()),
        ("response_code", code.to_string()),
        ("source_workload", src),
        ("source_workload_namespace", "mesh".to_string()),
        ("source_canonical_revision", format!("v{}", edge / 1000)),
    ])
}

/// One series' samples: a counter growing by a few requests a scrape (more in wider
/// buckets), timestamps 15 s apart with a few milliseconds of scrape jitter.
fn bucket_samples(i: usize, t0: i64, n: usize, rng: &mut impl Rng) -> Vec<Sample> {
    let width = (i % LE.len()) as u64 + 1;
    let mut v = rng.gen_range(0..1000u64);
    (0..n)
        .map(|k| {
            v += rng.gen_range(0..=width * 3);
            let t = t0 + k as i64 * SCRAPE_MS + rng.gen_range(-3..=3);
            Sample::new(t, v as f64)
        })
        .collect()
}

/// CPU time of the whole process (all threads, also those already ended), from
/// `/proc/self/stat` in clock ticks (100 a second on Linux), so figures hold on a machine
/// busy with other work; None elsewhere.
fn process_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Best-of-3 (wall time, process CPU time) of `f`, with what its last run returned.
fn best_of_3<T>(mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let (mut wall, mut cpu) = (Duration::MAX, Duration::MAX);
    let mut last = None;
    for _ in 0..3 {
        let (start, cpu0) = (Instant::now(), process_cpu());
        let out = f();
        let elapsed = start.elapsed();
        wall = wall.min(elapsed);
        cpu = cpu.min(match (cpu0, process_cpu()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => elapsed,
        });
        last = Some(out);
    }
    (wall, cpu, last.expect("three runs"))
}

fn report(what: &str, samples: usize, (wall, cpu): (Duration, Duration)) {
    let rate = |d: Duration| samples as f64 / d.as_secs_f64().max(1e-9) / 1e6;
    println!(
        "{what:<40} {samples:>9} samples  wall {:>7.1} ms {:>7.1} M/s  cpu {:>7.1} ms {:>7.1} M/s",
        wall.as_secs_f64() * 1e3,
        rate(wall),
        cpu.as_secs_f64() * 1e3,
        rate(cpu),
    );
}

fn measure_reads(db: &Tsdb, label: &str, t0: i64, t_end: i64, only: &str) {
    let m = [LabelMatcher::equal("__name__", METRIC)];
    for (window, mint) in [("1h", t0), ("5m", t_end - 5 * 60_000)] {
        if !format!("{label} {window}").contains(only) {
            continue;
        }
        let (w, c, n) = best_of_3(|| {
            let got = db.select(&m, mint, t_end).expect("select");
            got.iter().map(|s| s.samples.len()).sum::<usize>()
        });
        report(&format!("{label} select {window}"), n, (w, c));
        let (w, c, n) = best_of_3(|| db.select_lazy(&m, mint, t_end).expect("lazy").len());
        report(
            &format!("{label} select_lazy (no decode) {window}"),
            n,
            (w, c),
        );
        let (w, c, n) = best_of_3(|| {
            let cursors = db.select_lazy(&m, mint, t_end).expect("select_lazy");
            let mut buf: Vec<Sample> = Vec::new();
            let mut n = 0;
            for c in &cursors {
                buf.clear();
                n += c.decode_into(&mut buf).expect("decode");
            }
            n
        });
        report(
            &format!("{label} select_lazy+decode_into {window}"),
            n,
            (w, c),
        );
    }
}

/// The bare decoder on chunks of `per_chunk` samples of bucket counters (decimal encoding)
/// and of latency gauges with fractions (XOR encoding).
fn measure_decode(per_chunk: usize, t0: i64, rng: &mut impl Rng) {
    let series = 2_000;
    let mut counters = Vec::new();
    let mut gauges = Vec::new();
    for i in 0..series {
        let s = bucket_samples(i, t0, per_chunk, rng);
        counters.push(encode_chunk(&s));
        let g: Vec<Sample> = s
            .iter()
            .map(|x| Sample::new(x.t, rng.gen_range(0.0..250.0)))
            .collect();
        gauges.push(encode_chunk(&g));
    }
    for (kind, chunks) in [("decimal", &counters), ("xor", &gauges)] {
        let bytes: usize = chunks.iter().map(|c| c.bytes.len()).sum();
        // Enough rounds for about 50 M samples, so the timer's resolution does not matter.
        let rounds = 50_000_000 / (series * per_chunk);
        let (w, c, n) = best_of_3(|| {
            let mut n = 0;
            for _ in 0..rounds {
                for c in chunks.iter() {
                    n += decode_chunk(&c.bytes).expect("decode").len();
                }
            }
            n
        });
        report(
            &format!(
                "decode {kind} x{per_chunk} ({:.2} B/sample)",
                (bytes * rounds) as f64 / n as f64
            ),
            n,
            (w, c),
        );
        let (w, c, n) = best_of_3(|| {
            let mut buf: Vec<Sample> = Vec::new();
            let mut n = 0;
            for _ in 0..rounds {
                for c in chunks.iter() {
                    buf.clear();
                    n += decode_chunk_into(&c.bytes, i64::MIN, i64::MAX, &mut buf).expect("decode");
                }
            }
            n
        });
        report(&format!("decode_into {kind} x{per_chunk}"), n, (w, c));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let minutes: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    // Only the measurements whose name contains this ("head 5m", "block", "decode"), to
    // profile one path.
    let only = args.next().unwrap_or_default();
    let per_series = (minutes * 60_000 / SCRAPE_MS) as usize;
    // A 2 h boundary, so the whole range falls in one head window and one block.
    let t0 = 1_700_000_000_000i64 / 7_200_000 * 7_200_000 + 60_000;
    let t_end = t0 + minutes * 60_000;
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);

    let dir = tempfile::tempdir().expect("tempdir");
    let opts = TsdbOptions {
        retention_time_ms: None,
        wal_fsync: FsyncPolicy::Never,
        ..Default::default()
    };
    let db = Tsdb::open(dir.path(), opts.clone()).expect("open");
    let start = Instant::now();
    for first in (0..series).step_by(1_000) {
        let batch: Vec<TimeSeries> = (first..(first + 1_000).min(series))
            .map(|i| TimeSeries {
                labels: bucket_labels(i),
                samples: bucket_samples(i, t0, per_series, &mut rng),
            })
            .collect();
        db.append(&batch).expect("append");
    }
    println!(
        "filled {series} series x {per_series} samples in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    measure_reads(&db, "head", t0, t_end, &only);
    db.close().expect("close");
    drop(db);
    let db = Tsdb::open(dir.path(), opts).expect("reopen");
    println!("blocks after close: {}", db.block_metas().len());
    measure_reads(&db, "block", t0, t_end, &only);
    for per_chunk in [120, 480].into_iter().filter(|_| "decode".contains(&only)) {
        measure_decode(per_chunk, t0, &mut rng);
    }
}
