//! `meshlens bench tsdb-write`: the TSDB append path alone, the counterpart of
//! `promtool tsdb bench write` fed the same label file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use meshlens_model::{Labels, Sample};
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbError, TsdbOptions};
use rand::{Rng, SeedableRng};

use super::labels::{generate_labels, labels_to_json, read_labels};

#[derive(clap::Args)]
pub struct Args {
    /// Label file: a JSON array of label objects, or one object per line.
    #[arg(long, required_unless_present = "generate_labels")]
    labels: Option<PathBuf>,
    /// Number of series to read from the file.
    #[arg(long, default_value_t = 10_000)]
    metrics: usize,
    /// Rounds of one sample per series, 15 s apart.
    #[arg(long, default_value_t = 3000)]
    scrapes: usize,
    #[arg(long, default_value = "benchout-meshlens")]
    out: PathBuf,
    /// Write N realistic label sets to FILE and exit.
    #[arg(long, num_args = 2, value_names = ["N", "FILE"])]
    generate_labels: Option<Vec<String>>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(g) = args.generate_labels {
        let n: usize = g[0].parse().context("N must be a number")?;
        let labels = generate_labels(n);
        std::fs::write(&g[1], labels_to_json(&labels))
            .with_context(|| format!("writing {}", g[1]))?;
        println!("wrote {} label sets to {}", labels.len(), g[1]);
        return Ok(());
    }
    let path = args.labels.context("--labels is required")?;
    let mut labels = read_labels(&path).map_err(anyhow::Error::msg)?;
    labels.truncate(args.metrics);
    let r = write_bench(&labels, args.scrapes, &args.out)?;
    println!(
        "series={} samples={} ingest_seconds={:.3}",
        r.series, r.samples, r.ingest_seconds
    );
    println!(
        "bytes_on_disk={} bytes_per_sample={:.3}",
        r.bytes_on_disk,
        r.bytes_on_disk as f64 / r.samples.max(1) as f64
    );
    println!(
        "peak_rss_bytes={} rss_bytes_per_series={:.0}",
        r.peak_rss_bytes,
        r.peak_rss_bytes as f64 / r.series.max(1) as f64
    );
    println!("samples_per_second={:.0}", r.samples_per_second);
    Ok(())
}

#[derive(Debug)]
struct WriteBenchReport {
    series: usize,
    samples: u64,
    ingest_seconds: f64,
    samples_per_second: f64,
    bytes_on_disk: u64,
    peak_rss_bytes: u64,
}

/// Appends `scrapes` rounds over `labels` in batches of 1,000 series (as a scrape would),
/// with realistic values, then closes the database and measures it.
fn write_bench(
    labels: &[Labels],
    scrapes: usize,
    out: &Path,
) -> Result<WriteBenchReport, TsdbError> {
    let _ = std::fs::remove_dir_all(out);
    let db = Tsdb::open(
        out,
        TsdbOptions {
            wal_fsync: FsyncPolicy::Never,
            ..Default::default()
        },
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut values: Vec<f64> = labels
        .iter()
        .map(|_| rng.gen_range(0.0..1000.0f64).round())
        .collect();
    let rates: Vec<f64> = labels
        .iter()
        .map(|_| rng.gen_range(0.0..50.0f64).round())
        .collect();
    let t0 = 1_700_000_000_000i64;
    let start = Instant::now();
    // As promtool does: series are resolved once, then every scrape appends by reference.
    let handles = labels
        .iter()
        .map(|l| db.series_handle(l))
        .collect::<Result<Vec<_>, _>>()?;
    // Like promtool, groups of 1,000 series are appended concurrently, one worker per core.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_worker = handles.len().div_ceil(workers).div_ceil(1000) * 1000;
    let results: Vec<Result<u64, TsdbError>> = std::thread::scope(|scope| {
        let db = &db;
        let jobs: Vec<_> = handles
            .chunks(per_worker.max(1))
            .zip(values.chunks_mut(per_worker.max(1)))
            .zip(rates.chunks(per_worker.max(1)))
            .map(|((hs, vs), rs)| {
                scope.spawn(move || -> Result<u64, TsdbError> {
                    let mut samples = 0u64;
                    let mut batch = Vec::with_capacity(1000);
                    for s in 0..scrapes {
                        let t = t0 + s as i64 * 15_000;
                        for (chunk_i, chunk) in hs.chunks(1000).enumerate() {
                            batch.clear();
                            for (j, h) in chunk.iter().enumerate() {
                                let k = chunk_i * 1000 + j;
                                vs[k] += rs[k];
                                batch.push((h, Sample::new(t, vs[k])));
                            }
                            samples += db.append_handles(&batch)?.accepted;
                        }
                    }
                    Ok(samples)
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or(Ok(0)))
            .collect()
    });
    let mut samples = 0u64;
    for r in results {
        samples += r?;
    }
    let secs = start.elapsed().as_secs_f64();
    db.maintain()?;
    db.close()?;
    Ok(WriteBenchReport {
        series: labels.len(),
        samples,
        ingest_seconds: secs,
        samples_per_second: samples as f64 / secs,
        bytes_on_disk: dir_size(out),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// VmHWM of this process, in bytes (0 where /proc is missing).
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
