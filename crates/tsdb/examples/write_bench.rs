//! The TSDB write path, measured by CPU time (robust on a machine busy with other work):
//! series appended by handle, as `promtool tsdb bench write` does (and `meshlens bench
//! tsdb-write`), and whole batches through `MetricWriter::append` (owned labels, as a
//! scrape) and `append_raw` (labels borrowed from a request, as remote write). After each,
//! the resident memory the database added, per series (the head holds every sample: the
//! default 2 h blocks are not cut within 3 h of data).
//!
//! `cargo run --release -p meshlens-tsdb --example write_bench -- [SERIES] [SCRAPES]`
//! (defaults: 20000 series, 300 scrapes at 15 s; two writer threads, batches of 1,000
//! series, WAL without fsync), optionally `[ONLY]` to run just the measurements whose name
//! contains it.

#[path = "support/cpu.rs"]
mod cpu;

use std::time::{Duration, Instant};

use meshlens_model::{Labels, MetricWriter, RawSeries, Sample, TimeSeries};
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbOptions};

const SCRAPE_MS: i64 = 15_000;
const BATCH: usize = 1000;
const WORKERS: usize = 2;
const T0: i64 = 1_700_000_000_000;

/// Istio-like request series (11 labels) and node-exporter-like CPU series (5 labels).
fn labels(i: usize) -> Labels {
    let instance = format!("10.0.{}.{}:9100", (i / 200) % 250, 1 + i % 7);
    if i.is_multiple_of(2) {
        Labels::from_pairs([
            ("__name__", "node_cpu_seconds_total".to_string()),
            ("job", "node".into()),
            ("instance", instance),
            ("cpu", (i % 16).to_string()),
            ("mode", format!("m{}", (i / 16) % 8)),
        ])
    } else {
        Labels::from_pairs([
            ("__name__", "istio_requests_total".to_string()),
            ("job", "kubernetes-pods".into()),
            ("instance", instance),
            ("namespace", format!("ns-{}", i % 5)),
            ("reporter", "destination".into()),
            ("source_workload", format!("svc{}-v{}", i % 10, 1 + i % 3)),
            ("destination_workload", format!("svc{}-v1", (i / 10) % 10)),
            (
                "destination_service",
                format!("svc{}.ns-{}.svc.cluster.local", (i / 10) % 10, i % 5),
            ),
            ("response_code", ["200", "404", "503"][(i / 100) % 3].into()),
            ("request_protocol", "http".into()),
            ("le", (i / 300).to_string()),
        ])
    }
}

/// Values as exporters emit them, noisy as `meshlens bench remote-write` makes them: a
/// quarter integer counters with uneven increments, a quarter seconds counters with two
/// decimals, half gauges with two decimals moving up to ±5 around a level.
fn value(series: usize, scrape: usize) -> f64 {
    let mut x = (series as u64) << 32 | scrape as u64;
    x = (x ^ (x >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let noise = (x >> 40) as i64;
    let (s, level) = (scrape as i64, (series % 1000) as i64 * 100);
    match series % 4 {
        0 => (s * 20 + noise % 40) as f64,
        1 => (s * 750 + noise % 1500) as f64 / 100.0,
        _ => (level * 100 + noise % 1000 - 500) as f64 / 100.0,
    }
}

fn open(dir: &std::path::Path) -> Tsdb {
    Tsdb::open(
        dir,
        TsdbOptions {
            wal_fsync: FsyncPolicy::Never,
            ..Default::default()
        },
    )
    .expect("open")
}

/// Runs `work(worker)` on each writer thread; returns wall and process CPU time.
fn timed(work: impl Fn(usize) + Sync) -> (Duration, Duration) {
    let (start, cpu0) = (Instant::now(), cpu::process_cpu());
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let work = &work;
            s.spawn(move || work(w));
        }
    });
    let wall = start.elapsed();
    let cpu = match (cpu0, cpu::process_cpu()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => wall,
    };
    (wall, cpu)
}

/// Resident memory of the process in bytes (0 where /proc is missing).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn report_memory(rss_before: u64, series: usize) {
    let added = rss_bytes().saturating_sub(rss_before);
    println!(
        "{:<26} {:>9.0} bytes resident per series",
        "",
        added as f64 / series.max(1) as f64
    );
}

fn report(what: &str, samples: usize, (wall, cpu): (Duration, Duration)) {
    let rate = |d: Duration| samples as f64 / d.as_secs_f64().max(1e-9) / 1e6;
    println!(
        "{what:<26} {samples:>9} samples  wall {:>7.0} ms {:>6.2} M/s  cpu {:>7.0} ms {:>6.2} M/s  {:>5.0} ns/sample cpu",
        wall.as_secs_f64() * 1e3,
        rate(wall),
        cpu.as_secs_f64() * 1e3,
        rate(cpu),
        cpu.as_secs_f64() * 1e9 / samples.max(1) as f64,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let scrapes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let only = args.next().unwrap_or_default();
    let all: Vec<Labels> = (0..series).map(labels).collect();
    if "append_handles".contains(only.as_str()) {
        by_handle(&all, scrapes);
    }
    for (raw, name) in [
        (false, "append (owned labels)"),
        (true, "append_raw (remote write)"),
    ] {
        if name.contains(only.as_str()) {
            with_labels(name, &all, scrapes, raw);
        }
    }
}

/// The slice of series worker `w` appends.
fn share(series: usize, w: usize) -> std::ops::Range<usize> {
    let per_worker = series.div_ceil(WORKERS);
    (w * per_worker).min(series)..((w + 1) * per_worker).min(series)
}

/// As promtool: series resolved once, then one sample per series per scrape by handle.
fn by_handle(all: &[Labels], scrapes: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rss = rss_bytes();
    let db = open(dir.path());
    let handles: Vec<_> = all
        .iter()
        .map(|l| db.series_handle(l).expect("handle"))
        .collect();
    let took = timed(|w| {
        let range = share(all.len(), w);
        let mut batch = Vec::with_capacity(BATCH);
        for s in 0..scrapes {
            let t = T0 + s as i64 * SCRAPE_MS;
            for start in range.clone().step_by(BATCH) {
                batch.clear();
                let end = (start + BATCH).min(range.end);
                for (i, h) in handles[start..end].iter().enumerate() {
                    batch.push((h, Sample::new(t, value(start + i, s))));
                }
                db.append_handles(&batch).expect("append");
            }
        }
    });
    report("append_handles", all.len() * scrapes, took);
    report_memory(rss, all.len());
}

/// Whole batches with labels: owned (as a scrape builds them) or borrowed from a request
/// (as remote write).
fn with_labels(name: &str, all: &[Labels], scrapes: usize, raw: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rss = rss_bytes();
    let db = open(dir.path());
    // Label strings side by side in one buffer, as in a decoded request.
    let text: String = all
        .iter()
        .flat_map(|l| l.iter())
        .flat_map(|x| [x.name.as_str(), x.value.as_str()])
        .collect();
    let mut at = 0;
    let mut next = |n: usize| {
        at += n;
        &text[at - n..at]
    };
    let pairs: Vec<Vec<(&str, &str)>> = all
        .iter()
        .map(|l| {
            l.iter()
                .map(|x| (next(x.name.len()), next(x.value.len())))
                .collect()
        })
        .collect();
    let took = timed(|w| {
        let range = share(all.len(), w);
        for s in 0..scrapes {
            let t = T0 + s as i64 * SCRAPE_MS;
            for start in range.clone().step_by(BATCH) {
                let ids = start..(start + BATCH).min(range.end);
                let samples: Vec<[Sample; 1]> =
                    ids.clone().map(|i| [Sample::new(t, value(i, s))]).collect();
                if raw {
                    let batch: Vec<RawSeries> = ids
                        .zip(&samples)
                        .map(|(i, smp)| RawSeries {
                            labels: &pairs[i],
                            samples: smp,
                        })
                        .collect();
                    db.append_raw(&batch).expect("append");
                } else {
                    let batch: Vec<TimeSeries> = ids
                        .zip(&samples)
                        .map(|(i, smp)| TimeSeries {
                            labels: all[i].clone(),
                            samples: smp.to_vec(),
                        })
                        .collect();
                    db.append(&batch).expect("append");
                }
            }
        }
    });
    report(name, all.len() * scrapes, took);
    report_memory(rss, all.len());
}
