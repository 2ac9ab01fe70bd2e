//! `meshlens import openmetrics FILE`: backfill history into a data directory or ClickHouse,
//! the counterpart of `promtool tsdb create-blocks-from openmetrics`.
//!
//! It takes the server's `--storage`, so a backfill lands where `meshlens server` reads.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use meshlens_clickhouse::{ClickHouseStorage, StorageUrl};
use meshlens_ingest::exposition::{self, Format};
use meshlens_model::{AppendOutcome, Labels, MetricWriter, Sample, TimeSeries};
use meshlens_server::MetricStorage;
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// OpenMetrics text with a timestamp on every sample, ending in `# EOF`.
    Openmetrics {
        file: PathBuf,
        /// The data directory written with `--storage embedded`.
        #[arg(long, default_value = "meshlens-data")]
        data_dir: PathBuf,
        /// Where to write, as `meshlens server --storage`: `embedded` (the TSDB in
        /// --data-dir) or `clickhouse://HOST:PORT/DATABASE[?cluster=CLUSTER]` (the schema is
        /// created when missing).
        #[arg(long, default_value = "embedded")]
        storage: String,
    },
}

/// Where the samples go: the embedded TSDB (locked against a running server) or ClickHouse.
enum Target {
    Embedded {
        db: Box<Tsdb>,
        data_dir: PathBuf,
        _lock: std::fs::File,
    },
    ClickHouse(ClickHouseStorage),
}

impl Target {
    fn open(storage: MetricStorage, data_dir: PathBuf) -> anyhow::Result<Target> {
        match storage {
            MetricStorage::Embedded => {
                let lock = meshlens_server::lock_data_dir(&data_dir).context(
                    "the server must not be running on this data directory during an import",
                )?;
                let opts = TsdbOptions {
                    retention_time_ms: None,
                    out_of_order_window_ms: i64::MAX,
                    wal_fsync: FsyncPolicy::Never,
                    ..Default::default()
                };
                let db = Tsdb::open(&data_dir, opts)
                    .with_context(|| format!("opening {}", data_dir.display()))?;
                Ok(Target::Embedded {
                    db: Box::new(db),
                    data_dir,
                    _lock: lock,
                })
            }
            MetricStorage::ClickHouse(url) => open_clickhouse(&url).map(Target::ClickHouse),
        }
    }

    fn writer(&self) -> &dyn MetricWriter {
        match self {
            Target::Embedded { db, .. } => db.as_ref(),
            Target::ClickHouse(ch) => ch.metrics(),
        }
    }

    /// Context for a failed write: where it was going.
    fn describe(&self) -> String {
        match self {
            Target::Embedded { data_dir, .. } => data_dir.display().to_string(),
            Target::ClickHouse(ch) => ch.url().to_string(),
        }
    }

    /// Makes the import durable and returns how many series the target now holds from it.
    fn finish(self, outcome: &AppendOutcome) -> anyhow::Result<u64> {
        match self {
            Target::Embedded { db, .. } => {
                db.maintain().context("cutting blocks")?;
                db.close().context("closing the data directory")?;
                Ok(db
                    .block_metas()
                    .iter()
                    .map(|m| m.stats.num_series)
                    .max()
                    .unwrap_or(0)
                    .max(outcome.series_created))
            }
            // Acknowledged inserts are stored; every series is new to this process.
            Target::ClickHouse(_) => Ok(outcome.series_created),
        }
    }
}

/// Opens ClickHouse (creating the schema when missing), naming the address when it fails.
fn open_clickhouse(url: &StorageUrl) -> anyhow::Result<ClickHouseStorage> {
    ClickHouseStorage::open(url, Default::default())
        .with_context(|| format!("--storage {url}: opening ClickHouse for the import"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let What::Openmetrics {
        file,
        data_dir,
        storage,
    } = args.what;
    let storage = super::parse_storage(&storage)?;
    // Before the file is read: a running server or an unreachable ClickHouse fails fast.
    let target = Target::open(storage, data_dir)?;
    let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let parsed = exposition::parse(&body, Format::OpenMetrics)
        .with_context(|| format!("parsing {}", file.display()))?;
    let mut series: HashMap<Labels, Vec<Sample>> = HashMap::new();
    for (i, s) in parsed.samples.into_iter().enumerate() {
        let t = s.timestamp_ms.with_context(|| {
            format!(
                "{}: sample {} ({}) has no timestamp",
                file.display(),
                i + 1,
                s.labels
            )
        })?;
        series
            .entry(s.labels)
            .or_default()
            .push(Sample::new(t, s.value));
    }
    let total: usize = series.values().map(Vec::len).sum();
    let into = target.describe();
    let db = target.writer();
    // `# TYPE`, `# HELP` and `# UNIT`: the TSDB's metadata, or ClickHouse's metadata table.
    db.append_metadata(&parsed.metadata)
        .with_context(|| format!("writing metadata to {into}"))?;
    let mut progress = Progress::new(total);
    let mut batch = Vec::new();
    let mut in_batch = 0;
    let mut outcome = AppendOutcome::default();
    for (labels, mut samples) in series {
        samples.sort_by_key(|s| s.t);
        in_batch += samples.len();
        batch.push(TimeSeries { labels, samples });
        if in_batch >= 100_000 {
            outcome.merge(
                &db.append(&batch)
                    .with_context(|| format!("writing to {into}"))?,
            );
            progress.advance(in_batch);
            batch.clear();
            in_batch = 0;
        }
    }
    if !batch.is_empty() {
        outcome.merge(
            &db.append(&batch)
                .with_context(|| format!("writing to {into}"))?,
        );
    }
    progress.advance(in_batch);
    progress.finish();
    let series = target.finish(&outcome)?;
    println!(
        "imported {} samples of {series} series into {into} ({} refused)",
        outcome.accepted,
        outcome.rejected()
    );
    Ok(())
}

/// A progress bar on stderr, shown only on a terminal.
struct Progress {
    total: usize,
    done: usize,
    shown_pct: usize,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            total: total.max(1),
            done: 0,
            shown_pct: usize::MAX,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn advance(&mut self, n: usize) {
        self.done += n;
        let pct = self.done * 100 / self.total;
        if self.tty && pct != self.shown_pct {
            self.shown_pct = pct;
            let width = 40;
            let filled = pct * width / 100;
            eprint!(
                "\r[{}{}] {pct:3}% {} / {} samples",
                "=".repeat(filled),
                " ".repeat(width - filled),
                self.done,
                self.total
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
