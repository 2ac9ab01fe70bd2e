//! `meshlens bench tsdb-write`: the TSDB append path alone, the counterpart of
//! `promtool tsdb bench write` fed the same label file.

use std::path::PathBuf;

use anyhow::Context;

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
        let labels = meshlens_tsdb::bench::generate_labels(n);
        std::fs::write(&g[1], meshlens_tsdb::bench::labels_to_json(&labels))
            .with_context(|| format!("writing {}", g[1]))?;
        println!("wrote {} label sets to {}", labels.len(), g[1]);
        return Ok(());
    }
    let path = args.labels.context("--labels is required")?;
    let mut labels = meshlens_tsdb::bench::read_labels(&path).map_err(anyhow::Error::msg)?;
    labels.truncate(args.metrics);
    let r = meshlens_tsdb::bench::write_bench(&labels, args.scrapes, &args.out)?;
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
