//! `meshlens import openmetrics FILE`: backfill history into a data directory, the
//! counterpart of `promtool tsdb create-blocks-from openmetrics`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use meshlens_ingest::exposition::{self, Format};
use meshlens_model::{Labels, MetricWriter, Sample, TimeSeries};
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
        #[arg(long, default_value = "meshlens-data")]
        data_dir: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let What::Openmetrics { file, data_dir } = args.what;
    let _lock = meshlens_server::lock_data_dir(&data_dir)
        .context("the server must not be running on this data directory during an import")?;
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
    let opts = TsdbOptions {
        retention_time_ms: None,
        out_of_order_window_ms: i64::MAX,
        wal_fsync: FsyncPolicy::Never,
        ..Default::default()
    };
    let db =
        Tsdb::open(&data_dir, opts).with_context(|| format!("opening {}", data_dir.display()))?;
    db.append_metadata(&parsed.metadata)?;
    let mut progress = Progress::new(total);
    let mut batch = Vec::new();
    let mut in_batch = 0;
    let mut outcome = meshlens_model::AppendOutcome::default();
    for (labels, mut samples) in series {
        samples.sort_by_key(|s| s.t);
        in_batch += samples.len();
        batch.push(TimeSeries { labels, samples });
        if in_batch >= 100_000 {
            outcome.merge(&db.append(&batch)?);
            progress.advance(in_batch);
            batch.clear();
            in_batch = 0;
        }
    }
    outcome.merge(&db.append(&batch)?);
    progress.advance(in_batch);
    progress.finish();
    db.maintain().context("cutting blocks")?;
    db.close().context("closing the data directory")?;
    println!(
        "imported {} samples of {} series into {} ({} refused)",
        outcome.accepted,
        db.block_metas()
            .iter()
            .map(|m| m.stats.num_series)
            .max()
            .unwrap_or(0)
            .max(outcome.series_created),
        data_dir.display(),
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
