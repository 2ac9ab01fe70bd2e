//! The engine: ties the WAL, the head and the blocks together and implements the storage
//! contract.

mod append;
mod exemplars;
pub use exemplars::ExemplarStats;
mod maintain;
mod read;
mod status;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meshlens_model::{MetricMetadata, StorageError};
use parking_lot::{Mutex, RwLock};

use crate::block::{self, Block, BlockError};
use crate::exemplars::ExemplarRing;
use crate::head::{Head, SeriesRef};
use crate::wal::{Record, Wal};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every append is on stable storage before it returns (group commit).
    EveryAppend,
    /// Appends are written at once and synced at most this long after.
    Interval(Duration),
    /// Never sync explicitly: for tests and benchmarks only.
    Never,
}

#[derive(Clone, Debug)]
pub struct TsdbOptions {
    pub block_duration_ms: i64,
    pub retention_time_ms: Option<i64>,
    pub retention_size_bytes: Option<u64>,
    pub out_of_order_window_ms: i64,
    pub wal_fsync: FsyncPolicy,
    /// Slots of the exemplar ring (`--storage.exemplars.max-exemplars`); 0 keeps none.
    pub max_exemplars: usize,
}

impl Default for TsdbOptions {
    fn default() -> Self {
        TsdbOptions {
            block_duration_ms: 2 * 3600 * 1000,
            retention_time_ms: Some(15 * 24 * 3600 * 1000),
            retention_size_bytes: None,
            out_of_order_window_ms: 10 * 60 * 1000,
            wal_fsync: FsyncPolicy::EveryAppend,
            max_exemplars: 100_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("the database is closed")]
    Closed,
    #[error("invalid labels: {reason}")]
    InvalidLabels { reason: String },
}

impl From<TsdbError> for StorageError {
    fn from(e: TsdbError) -> Self {
        match e {
            TsdbError::Closed => StorageError::Closed,
            TsdbError::InvalidLabels { reason } => StorageError::InvalidRequest { reason },
            TsdbError::Io { source, op, path } => {
                StorageError::io(format!("{op} {}", path.display()), source)
            }
            TsdbError::Block(BlockError::Io { path, source }) => {
                StorageError::io(path.display().to_string(), source)
            }
            TsdbError::Block(BlockError::Corrupt { path, reason }) => StorageError::Corruption {
                location: path.display().to_string(),
                reason,
            },
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TsdbStats {
    pub head_series: u64,
    pub head_chunks: u64,
    /// Native-histogram samples in the head (each counts once in `samples_appended`).
    pub head_histogram_samples: u64,
    pub samples_appended: u64,
    pub rejected_out_of_order: u64,
    pub rejected_out_of_bounds: u64,
    pub rejected_duplicate: u64,
    pub rejected_invalid_labels: u64,
    pub wal_bytes: u64,
    pub wal_fsyncs: u64,
    pub wal_fsync_seconds_total: f64,
    pub compactions: u64,
    pub compaction_seconds_total: f64,
    pub blocks: u64,
    pub block_bytes: u64,
    pub wal_records_dropped_on_replay: u64,
}

#[derive(Default)]
struct Counters {
    appended: AtomicU64,
    rejected: [AtomicU64; 4],
    compactions: AtomicU64,
    compaction_nanos: AtomicU64,
    dropped_on_replay: AtomicU64,
    /// Exemplars written to the WAL since its last checkpoint.
    exemplars_logged: AtomicU64,
}

/// A series resolved once for repeated appends (see [`Tsdb::series_handle`]).
#[derive(Clone)]
pub struct SeriesHandle {
    id: u32,
    series: SeriesRef,
}

pub struct Tsdb {
    dir: PathBuf,
    opts: TsdbOptions,
    head: Head,
    wal: Wal,
    blocks: RwLock<Vec<Arc<Block>>>,
    metadata: RwLock<HashMap<String, MetricMetadata>>,
    exemplars: Mutex<ExemplarRing>,
    /// Appends hold it shared; a WAL checkpoint holds it exclusively so that the snapshot
    /// and the log agree.
    append_gate: RwLock<()>,
    maintain_lock: Mutex<()>,
    closed: AtomicBool,
    /// Set once any native-histogram sample is held (replayed, in a block, appended); never
    /// cleared while open. Float-only databases' reads skip histograms on it.
    holds_histograms: AtomicBool,
    counters: Counters,
    background: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Tsdb {
    /// Opens (or creates) a database in `dir`: loads blocks, moving corrupt ones aside to
    /// `dir/corrupted/`, and replays the WAL into the head.
    pub fn open(dir: &Path, opts: TsdbOptions) -> Result<Tsdb, TsdbError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| TsdbError::Io { op, path, source }
        };
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let blocks = load_blocks(dir)?;
        let head = Head::new();
        let metadata = RwLock::new(HashMap::new());
        let mut ring = ExemplarRing::new(opts.max_exemplars);
        let mut id_map: HashMap<u64, u32> = HashMap::new();
        let replay_window = i64::MAX;
        let mut replayed_histograms = false;
        let (wal, report) = Wal::open(&dir.join("wal"), |rec| match rec {
            Record::Series { id, labels } => {
                let (hid, _, _) = head.get_or_create(&labels, |_, _| {});
                id_map.insert(id, hid);
            }
            Record::Samples(samples) => {
                for s in samples {
                    let Some(series) = id_map.get(&s.series).and_then(|h| head.get(*h)) else {
                        continue;
                    };
                    let _ = series
                        .lock()
                        .append(s.t, s.v, replay_window, opts.block_duration_ms);
                    head.note_times(s.t, s.t);
                }
            }
            Record::Histograms(samples) => {
                replayed_histograms |= !samples.is_empty();
                for s in samples {
                    let Some(series) = id_map.get(&s.series).and_then(|h| head.get(*h)) else {
                        continue;
                    };
                    let _ = series.lock().append_histogram(s.t, &s.h, replay_window);
                    head.note_times(s.t, s.t);
                }
            }
            Record::Metadata(md) => {
                let mut m = metadata.write();
                for x in md {
                    m.insert(x.metric_family.clone(), x);
                }
            }
            Record::Exemplars(groups) => {
                // Refusals (a smaller ring, duplicates) are expected here and dropped.
                for g in groups {
                    for e in g.exemplars {
                        let _ = ring.add(&g.series, e);
                    }
                }
            }
        })
        .map_err(io("replay wal in", dir))?;
        if report.records > 0 || report.dropped_records > 0 {
            tracing::info!(
                records = report.records,
                dropped = report.dropped_records,
                series = head.num_series.load(Ordering::Relaxed),
                "tsdb: wal replayed"
            );
        }
        let md_path = dir.join("metadata.json");
        if let Ok(bytes) = fs::read(&md_path) {
            if let Ok(list) =
                serde_json::from_slice::<Vec<(String, String, String, String)>>(&bytes)
            {
                let mut m = metadata.write();
                for (family, kind, help, unit) in list {
                    m.entry(family.clone()).or_insert(MetricMetadata {
                        metric_family: family,
                        kind,
                        help,
                        unit,
                    });
                }
            }
        }
        let holds_histograms = replayed_histograms || blocks.iter().any(|b| b.has_histogram_file());
        let db = Tsdb {
            dir: dir.to_path_buf(),
            opts,
            head,
            wal,
            blocks: RwLock::new(blocks),
            metadata,
            exemplars: Mutex::new(ring),
            append_gate: RwLock::new(()),
            maintain_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
            holds_histograms: AtomicBool::new(holds_histograms),
            counters: Counters::default(),
            background: Mutex::new(None),
        };
        db.counters
            .dropped_on_replay
            .store(report.dropped_records, Ordering::Relaxed);
        Ok(db)
    }

    fn newest_time(&self) -> i64 {
        let head_max = self.head.max_t.load(Ordering::Relaxed);
        let block_max = self
            .blocks
            .read()
            .iter()
            .map(|b| b.meta.max_time)
            .max()
            .unwrap_or(i64::MIN);
        head_max.max(block_max)
    }

    /// Flushes and syncs the WAL, persists the head as a block, and refuses later appends.
    pub fn close(&self) -> Result<(), TsdbError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(h) = self.background.lock().take() {
            let _ = h.join();
        }
        let _m = self.maintain_lock.lock();
        self.cut_block(i64::MAX)?;
        self.save_metadata()?;
        Ok(())
    }

    fn save_metadata(&self) -> Result<(), TsdbError> {
        let list: Vec<(String, String, String, String)> = self
            .metadata
            .read()
            .values()
            .map(|m| {
                (
                    m.metric_family.clone(),
                    m.kind.clone(),
                    m.help.clone(),
                    m.unit.clone(),
                )
            })
            .collect();
        let path = self.dir.join("metadata.json");
        fs::write(&path, serde_json::to_vec(&list).unwrap_or_default()).map_err(|source| {
            TsdbError::Io {
                op: "write",
                path,
                source,
            }
        })
    }

    pub fn stats(&self) -> TsdbStats {
        let blocks = self.blocks.read();
        let c = &self.counters;
        TsdbStats {
            head_series: self.head_series(),
            head_chunks: self.head.num_chunks(),
            head_histogram_samples: self.head.num_histograms(),
            samples_appended: c.appended.load(Ordering::Relaxed),
            rejected_out_of_order: c.rejected[0].load(Ordering::Relaxed),
            rejected_out_of_bounds: c.rejected[1].load(Ordering::Relaxed),
            rejected_duplicate: c.rejected[2].load(Ordering::Relaxed),
            rejected_invalid_labels: c.rejected[3].load(Ordering::Relaxed),
            wal_bytes: self.wal.bytes_written.load(Ordering::Relaxed),
            wal_fsyncs: self.wal.fsyncs.load(Ordering::Relaxed),
            wal_fsync_seconds_total: self.wal.fsync_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            compactions: c.compactions.load(Ordering::Relaxed),
            compaction_seconds_total: c.compaction_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            blocks: blocks.len() as u64,
            block_bytes: blocks.iter().map(|b| b.size_bytes).sum(),
            wal_records_dropped_on_replay: c.dropped_on_replay.load(Ordering::Relaxed),
        }
    }

    pub fn block_metas(&self) -> Vec<block::BlockMeta> {
        self.blocks.read().iter().map(|b| b.meta.clone()).collect()
    }
}

/// Block directories are named by id: 25 hex digits (ours) or a 26-character ULID.
fn looks_like_block_id(name: &str) -> bool {
    (name.len() == 25 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        || (name.len() == 26
            && name
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()))
}

/// Opens every block directory; corrupt ones are moved to `corrupted/` and logged.
fn load_blocks(dir: &Path) -> Result<Vec<Arc<Block>>, TsdbError> {
    let mut blocks = Vec::new();
    let entries = fs::read_dir(dir).map_err(|source| TsdbError::Io {
        op: "list",
        path: dir.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if !path.is_dir() || name == "wal" || name == "corrupted" {
            continue;
        }
        if name.ends_with(".tmp") && looks_like_block_id(name.trim_end_matches(".tmp")) {
            // An unfinished write from a crash: never referenced, safe to remove.
            let _ = fs::remove_dir_all(&path);
            continue;
        }
        if !looks_like_block_id(&name) {
            // Other engines (the span store) keep their own directories beside the blocks.
            continue;
        }
        match Block::open(&path) {
            Ok(b) => blocks.push(Arc::new(b)),
            Err(err) => {
                let aside = dir.join("corrupted").join(&name);
                let _ = fs::create_dir_all(dir.join("corrupted"));
                let moved = fs::rename(&path, &aside);
                tracing::error!(block = %path.display(), error = %err, moved_to = %aside.display(), moved_ok = moved.is_ok(),
                    "tsdb: corrupt block moved aside");
            }
        }
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests;
