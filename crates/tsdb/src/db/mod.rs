//! The engine: ties the WAL, the head and the blocks together and implements the storage
//! contract.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshlens_model::{
    AppendOutcome, LabelMatcher, Labels, MetricMetadata, MetricReader, MetricWriter, RejectReason,
    Sample, SeriesSamples, StorageError, TimeSeries,
};
use parking_lot::{Mutex, RwLock};

use crate::block::{self, Block, BlockError};
use crate::head::{Appended, Head, MemSeries, SeriesRef};
use crate::wal::{Record, Wal, WalSample};

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
}

impl Default for TsdbOptions {
    fn default() -> Self {
        TsdbOptions {
            block_duration_ms: 2 * 3600 * 1000,
            retention_time_ms: Some(15 * 24 * 3600 * 1000),
            retention_size_bytes: None,
            out_of_order_window_ms: 10 * 60 * 1000,
            wal_fsync: FsyncPolicy::EveryAppend,
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
}

/// A series resolved once for repeated appends (see [`Tsdb::series_handle`]).
#[derive(Clone)]
pub struct SeriesHandle {
    id: u32,
    series: SeriesRef,
}

/// What one append call gathers before committing it.
struct Accumulator {
    out: AppendOutcome,
    wal: Vec<WalSample>,
    min_t: i64,
    max_t: i64,
}

impl Accumulator {
    fn with_capacity(n: usize) -> Self {
        Accumulator {
            out: AppendOutcome::default(),
            wal: Vec::with_capacity(n),
            min_t: i64::MAX,
            max_t: i64::MIN,
        }
    }
}

pub struct Tsdb {
    dir: PathBuf,
    opts: TsdbOptions,
    head: Head,
    wal: Wal,
    blocks: RwLock<Vec<Arc<Block>>>,
    metadata: RwLock<HashMap<String, MetricMetadata>>,
    /// Appends hold it shared; a WAL checkpoint holds it exclusively so that the snapshot
    /// and the log agree.
    append_gate: RwLock<()>,
    maintain_lock: Mutex<()>,
    closed: AtomicBool,
    counters: Counters,
    background: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn reason_index(r: RejectReason) -> usize {
    match r {
        RejectReason::OutOfOrder => 0,
        RejectReason::OutOfBounds => 1,
        RejectReason::Duplicate => 2,
        RejectReason::InvalidLabels => 3,
    }
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
        let mut id_map: HashMap<u64, u32> = HashMap::new();
        let replay_window = i64::MAX;
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
            Record::Metadata(md) => {
                let mut m = metadata.write();
                for x in md {
                    m.insert(x.metric_family.clone(), x);
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
        let db = Tsdb {
            dir: dir.to_path_buf(),
            opts,
            head,
            wal,
            blocks: RwLock::new(blocks),
            metadata,
            append_gate: RwLock::new(()),
            maintain_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
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

    fn io_err(&self, source: std::io::Error) -> TsdbError {
        TsdbError::Io {
            op: "append to wal in",
            path: self.dir.clone(),
            source,
        }
    }

    /// The series for `labels`, created (and logged to the WAL) when new.
    fn resolve(&self, labels: &Labels) -> Result<(u32, SeriesRef, bool), TsdbError> {
        let mut wal_err = None;
        let (id, series, created) = self.head.get_or_create(labels, |id, labels| {
            if let Err(e) = self.wal.append(&[Record::Series {
                id: u64::from(id),
                labels: labels.clone(),
            }]) {
                wal_err = Some(e);
            }
        });
        match wal_err {
            Some(e) => Err(self.io_err(e)),
            None => Ok((id, series, created)),
        }
    }

    /// A handle for appending to one series without looking its labels up again (what a
    /// scrape loop or a benchmark keeps per series, as Prometheus's appender refs).
    pub fn series_handle(&self, labels: &Labels) -> Result<SeriesHandle, TsdbError> {
        labels
            .validate()
            .map_err(|reason| TsdbError::InvalidLabels { reason })?;
        let (id, series, _) = self.resolve(labels)?;
        Ok(SeriesHandle { id, series })
    }

    fn min_valid_time(&self) -> i64 {
        match self.opts.retention_time_ms {
            Some(r) => self.newest_time().saturating_sub(r),
            None => i64::MIN,
        }
    }

    /// Appends one series' samples, recording accepted ones for the WAL.
    fn append_to(
        &self,
        id: u32,
        s: &mut MemSeries,
        samples: &[Sample],
        min_valid: i64,
        acc: &mut Accumulator,
    ) {
        for smp in samples {
            if smp.t < min_valid {
                acc.out.add_rejected(RejectReason::OutOfBounds, 1);
                continue;
            }
            match s.append(
                smp.t,
                smp.v,
                self.opts.out_of_order_window_ms,
                self.opts.block_duration_ms,
            ) {
                Ok(Appended::New) => {
                    acc.out.accepted += 1;
                    acc.wal.push(WalSample {
                        series: u64::from(id),
                        t: smp.t,
                        v: smp.v,
                    });
                    acc.min_t = acc.min_t.min(smp.t);
                    acc.max_t = acc.max_t.max(smp.t);
                }
                Ok(Appended::Unchanged) => acc.out.accepted += 1,
                Err(r) => acc.out.add_rejected(r, 1),
            }
        }
    }

    fn append_inner(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, TsdbError> {
        let _gate = self.append_gate.read();
        if self.closed.load(Ordering::Acquire) {
            return Err(TsdbError::Closed);
        }
        let mut acc = Accumulator::with_capacity(batch.iter().map(|t| t.samples.len()).sum());
        let min_valid = self.min_valid_time();
        for ts in batch {
            if ts.samples.is_empty() {
                continue;
            }
            // Labels are checked once, when a series is first seen; a stored series is valid.
            let (id, series, created) = match self.head.lookup(&ts.labels) {
                Some((id, series)) => (id, series, false),
                None if ts.labels.is_empty() || ts.labels.validate().is_err() => {
                    acc.out
                        .add_rejected(RejectReason::InvalidLabels, ts.samples.len() as u64);
                    continue;
                }
                None => self.resolve(&ts.labels)?,
            };
            acc.out.series_created += u64::from(created);
            self.append_to(id, &mut series.lock(), &ts.samples, min_valid, &mut acc);
        }
        self.commit(acc)
    }

    /// Appends samples to series by handle; durability and outcome as `MetricWriter::append`.
    pub fn append_handles(
        &self,
        samples: &[(&SeriesHandle, Sample)],
    ) -> Result<AppendOutcome, TsdbError> {
        let _gate = self.append_gate.read();
        if self.closed.load(Ordering::Acquire) {
            return Err(TsdbError::Closed);
        }
        let mut acc = Accumulator::with_capacity(samples.len());
        let min_valid = self.min_valid_time();
        for (h, smp) in samples {
            let mut g = h.series.lock();
            if g.removed {
                // Collected since the handle was made: append to the live series instead.
                let labels = g.labels.clone();
                drop(g);
                let (id, series, _) = self.resolve(&labels)?;
                self.append_to(
                    id,
                    &mut series.lock(),
                    std::slice::from_ref(smp),
                    min_valid,
                    &mut acc,
                );
                continue;
            }
            self.append_to(h.id, &mut g, std::slice::from_ref(smp), min_valid, &mut acc);
        }
        self.commit(acc)
    }

    /// Writes the accepted samples to the WAL (synced per policy) and counts the outcome.
    fn commit(&self, acc: Accumulator) -> Result<AppendOutcome, TsdbError> {
        let Accumulator {
            out,
            wal,
            min_t,
            max_t,
        } = acc;
        self.head.note_times(min_t, max_t);
        if !wal.is_empty() || out.series_created > 0 {
            let ticket = self
                .wal
                .append(&[Record::Samples(wal)])
                .map_err(|e| self.io_err(e))?;
            if self.opts.wal_fsync == FsyncPolicy::EveryAppend {
                self.wal.sync(ticket).map_err(|e| self.io_err(e))?;
            }
        }
        self.counters
            .appended
            .fetch_add(out.accepted, Ordering::Relaxed);
        for r in RejectReason::ALL {
            self.counters.rejected[reason_index(r)].fetch_add(out.count(r), Ordering::Relaxed);
        }
        Ok(out)
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

    /// One maintenance round: cut due blocks from the head, compact, apply retention.
    pub fn maintain(&self) -> Result<(), TsdbError> {
        let _m = self.maintain_lock.lock();
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let bd = self.opts.block_duration_ms;
        loop {
            let min = self.head.min_t.load(Ordering::Relaxed);
            let max = self.head.max_t.load(Ordering::Relaxed);
            if min > max || max - min <= bd / 2 * 3 {
                break;
            }
            let boundary = (min.div_euclid(bd) + 1) * bd;
            self.cut_block(boundary)?;
        }
        self.compact()?;
        self.apply_retention()?;
        if self.opts.wal_fsync != FsyncPolicy::Never {
            self.wal.sync(u64::MAX).map_err(|source| TsdbError::Io {
                op: "sync wal in",
                path: self.dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Moves every head sample older than `boundary` into a new block, then checkpoints the
    /// WAL to what the head still holds. Appends continue while the block is written; a
    /// late sample below the boundary stays in the head for the next cut.
    fn cut_block(&self, boundary: i64) -> Result<(), TsdbError> {
        let mut series: Vec<(Labels, crate::head::SeriesRef)> = self
            .head
            .all_series()
            .into_iter()
            .filter_map(|(_, s)| {
                let g = s.lock();
                let (min, _) = g.time_range()?;
                (min < boundary).then(|| (g.labels.clone(), s.clone()))
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let labels: Vec<Labels> = series.iter().map(|(l, _)| l.clone()).collect();
        let written = block::write(
            &self.dir,
            &labels,
            |i| Ok(series[i].1.lock().take_before(boundary)),
            1,
            Vec::new(),
        )?;
        if let Some(path) = written {
            let b = Block::open(&path)?;
            self.blocks.write().push(Arc::new(b));
        }
        let _gate = self.append_gate.write();
        self.head.gc();
        self.checkpoint_wal()
    }

    /// Rewrites the WAL as the head's current content, one series at a time.
    fn checkpoint_wal(&self) -> Result<(), TsdbError> {
        let series = self.head.all_series();
        let metadata = Record::Metadata(self.metadata.read().values().cloned().collect());
        let records = series
            .into_iter()
            .flat_map(|(id, s)| {
                let g = s.lock();
                let samples = g.samples_in(i64::MIN, i64::MAX);
                [
                    Record::Series {
                        id: u64::from(id),
                        labels: g.labels.clone(),
                    },
                    Record::Samples(
                        samples
                            .into_iter()
                            .map(|x| WalSample {
                                series: u64::from(id),
                                t: x.t,
                                v: x.v,
                            })
                            .collect(),
                    ),
                ]
            })
            .chain(std::iter::once(metadata));
        self.wal
            .checkpoint(records)
            .map_err(|source| TsdbError::Io {
                op: "checkpoint wal in",
                path: self.dir.clone(),
                source,
            })
    }

    /// Merges blocks that overlap, and groups of blocks that fall in the same window of
    /// 3x, 9x, 27x … the block duration once that window is complete.
    fn compact(&self) -> Result<(), TsdbError> {
        let t0 = Instant::now();
        let mut did = false;
        loop {
            let group = self.pick_compaction();
            let Some(group) = group else { break };
            self.merge_blocks(&group)?;
            did = true;
        }
        if did {
            self.counters.compactions.fetch_add(1, Ordering::Relaxed);
            self.counters
                .compaction_nanos
                .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn pick_compaction(&self) -> Option<Vec<Arc<Block>>> {
        let mut blocks: Vec<Arc<Block>> = self.blocks.read().clone();
        if blocks.len() < 2 {
            return None;
        }
        blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time));
        for w in blocks.windows(2) {
            if w[1].meta.min_time <= w[0].meta.max_time {
                return Some(w.to_vec());
            }
        }
        let bd = self.opts.block_duration_ms;
        let newest = blocks.iter().map(|b| b.meta.max_time).max()?;
        let mut range = bd.saturating_mul(3);
        for _ in 0..5 {
            let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for b in &blocks {
                let w = b.meta.min_time.div_euclid(range);
                if b.meta.max_time.div_euclid(range) == w {
                    groups.entry(w).or_default().push(b.clone());
                }
            }
            for (w, g) in groups {
                let window_end = (w + 1).saturating_mul(range);
                if g.len() >= 2 && window_end <= newest {
                    return Some(g);
                }
            }
            range = range.saturating_mul(3);
        }
        None
    }

    fn merge_blocks(&self, group: &[Arc<Block>]) -> Result<(), TsdbError> {
        let mut all: BTreeMap<Labels, Vec<(usize, u32)>> = BTreeMap::new();
        for (bi, b) in group.iter().enumerate() {
            for (i, s) in b.series.iter().enumerate() {
                all.entry(s.labels.clone())
                    .or_default()
                    .push((bi, i as u32));
            }
        }
        let (labels, sources_of): (Vec<Labels>, Vec<Vec<(usize, u32)>>) = all.into_iter().unzip();
        let level = group
            .iter()
            .map(|b| b.meta.compaction.level)
            .max()
            .unwrap_or(1)
            + 1;
        let sources = group
            .iter()
            .flat_map(|b| b.meta.compaction.sources.clone())
            .collect();
        let fetch = |i: usize| -> Result<Vec<Sample>, BlockError> {
            let mut out = Vec::new();
            for &(bi, idx) in &sources_of[i] {
                out.extend(group[bi].samples(idx, i64::MIN, i64::MAX)?);
            }
            if sources_of[i].len() > 1 {
                out.sort_by_key(|x| x.t);
                out.dedup_by_key(|x| x.t);
            }
            Ok(out)
        };
        let new_block = match block::write(&self.dir, &labels, fetch, level, sources)? {
            Some(p) => Some(Arc::new(Block::open(&p)?)),
            None => None,
        };
        {
            let mut blocks = self.blocks.write();
            blocks.retain(|b| !group.iter().any(|g| Arc::ptr_eq(b, g)));
            blocks.extend(new_block);
        }
        for b in group {
            remove_block_dir(&b.dir);
        }
        Ok(())
    }

    fn apply_retention(&self) -> Result<(), TsdbError> {
        let newest = self.newest_time();
        let mut doomed = Vec::new();
        {
            let mut blocks = self.blocks.write();
            blocks.sort_by_key(|b| b.meta.min_time);
            if let Some(r) = self.opts.retention_time_ms {
                let cutoff = newest.saturating_sub(r);
                blocks.retain(|b| {
                    let keep = b.meta.max_time >= cutoff;
                    if !keep {
                        doomed.push(b.clone());
                    }
                    keep
                });
            }
            if let Some(limit) = self.opts.retention_size_bytes {
                let mut total: u64 =
                    blocks.iter().map(|b| b.size_bytes).sum::<u64>() + self.wal.size_on_disk();
                while total > limit && !blocks.is_empty() {
                    let b = blocks.remove(0);
                    total -= b.size_bytes;
                    doomed.push(b);
                }
            }
        }
        for b in doomed {
            tracing::info!(block = %b.dir.display(), "tsdb: retention removes block");
            remove_block_dir(&b.dir);
        }
        Ok(())
    }

    /// Runs `maintain` on a background thread every `every` until `close`.
    pub fn start_background(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        let handle = std::thread::Builder::new()
            .name("tsdb-maintain".into())
            .spawn(move || loop {
                let step = Duration::from_millis(100);
                let mut waited = Duration::ZERO;
                while waited < every {
                    std::thread::sleep(step);
                    waited += step;
                    match weak.upgrade() {
                        Some(db) if !db.closed.load(Ordering::Acquire) => {}
                        _ => return,
                    }
                }
                let Some(db) = weak.upgrade() else { return };
                if let Err(e) = db.maintain() {
                    tracing::error!(error = %e, "tsdb: maintenance failed");
                }
                if db.opts.wal_fsync != FsyncPolicy::EveryAppend {
                    let _ = db.wal.sync(u64::MAX);
                }
            })
            .ok();
        *self.background.lock() = handle;
        if let FsyncPolicy::Interval(iv) = self.opts.wal_fsync {
            let weak = Arc::downgrade(self);
            std::thread::spawn(move || loop {
                std::thread::sleep(iv);
                match weak.upgrade() {
                    Some(db) if !db.closed.load(Ordering::Acquire) => {
                        let _ = db.wal.sync(u64::MAX);
                    }
                    _ => return,
                }
            });
        }
    }

    pub fn stats(&self) -> TsdbStats {
        let blocks = self.blocks.read();
        let c = &self.counters;
        TsdbStats {
            head_series: self.head.num_series.load(Ordering::Relaxed),
            head_chunks: self.head.num_chunks(),
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

    /// Gathers matching series from the head and every overlapping block, merged by labels.
    fn gather(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        with_samples: bool,
    ) -> Result<BTreeMap<Labels, Vec<Sample>>, TsdbError> {
        let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        let mut merged_twice: Vec<Labels> = Vec::new();
        for id in self.head.select_ids(matchers) {
            let Some(s) = self.head.get(id) else { continue };
            let g = s.lock();
            if with_samples {
                let samples = g.samples_in(mint, maxt);
                if !samples.is_empty() {
                    out.insert(g.labels.clone(), samples);
                }
            } else if g.has_data_in(mint, maxt) {
                out.insert(g.labels.clone(), Vec::new());
            }
        }
        let blocks: Vec<Arc<Block>> = self
            .blocks
            .read()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .cloned()
            .collect();
        for b in blocks {
            for idx in b.select_ids(matchers) {
                let labels = &b.series[idx as usize].labels;
                if with_samples {
                    let samples = b.samples(idx, mint, maxt)?;
                    if samples.is_empty() {
                        continue;
                    }
                    match out.get_mut(labels) {
                        Some(v) => {
                            v.extend(samples);
                            merged_twice.push(labels.clone());
                        }
                        None => {
                            out.insert(labels.clone(), samples);
                        }
                    }
                } else if b.has_data_in(idx, mint, maxt) {
                    out.entry(labels.clone()).or_default();
                }
            }
        }
        for l in merged_twice {
            if let Some(v) = out.get_mut(&l) {
                v.sort_by_key(|s| s.t);
                v.dedup_by_key(|s| s.t);
            }
        }
        Ok(out)
    }
}

fn remove_block_dir(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        tracing::error!(block = %dir.display(), error = %e, "tsdb: could not remove block");
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

impl MetricWriter for Tsdb {
    fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
        Ok(self.append_inner(batch)?)
    }

    fn append_metadata(&self, metadata: &[MetricMetadata]) -> Result<(), StorageError> {
        let mut changed = Vec::new();
        {
            let mut m = self.metadata.write();
            for md in metadata {
                if m.get(&md.metric_family) != Some(md) {
                    m.insert(md.metric_family.clone(), md.clone());
                    changed.push(md.clone());
                }
            }
        }
        if !changed.is_empty() {
            self.wal
                .append(&[Record::Metadata(changed)])
                .map_err(|e| StorageError::io("append metadata to wal", e))?;
        }
        Ok(())
    }
}

impl MetricReader for Tsdb {
    fn select(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        Ok(self
            .gather(matchers, mint, maxt, true)?
            .into_iter()
            .map(|(labels, samples)| SeriesSamples { labels, samples })
            .collect())
    }

    fn series(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .gather(matchers, mint, maxt, false)?
            .into_keys()
            .collect())
    }

    fn label_names(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut names = std::collections::BTreeSet::new();
        if matchers.is_empty() {
            names.extend(self.head.label_names(&self.head.select_ids(&[])));
            for b in self.blocks.read().iter().filter(|b| b.overlaps(mint, maxt)) {
                names.extend(b.label_names(&b.select_ids(&[])));
            }
        } else {
            for l in self.series(matchers, mint, maxt)? {
                names.extend(l.iter().map(|x| x.name.clone()));
            }
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut values = std::collections::BTreeSet::new();
        if matchers.is_empty() {
            values.extend(self.head.label_values(name, &self.head.select_ids(&[])));
            for b in self.blocks.read().iter().filter(|b| b.overlaps(mint, maxt)) {
                values.extend(b.label_values(name, &b.select_ids(&[])));
            }
        } else {
            for l in self.series(matchers, mint, maxt)? {
                if let Some(v) = l.get(name) {
                    values.insert(v.to_string());
                }
            }
        }
        Ok(values.into_iter().collect())
    }

    fn metadata(&self, metric: Option<&str>) -> Result<Vec<MetricMetadata>, StorageError> {
        let m = self.metadata.read();
        let mut v: Vec<MetricMetadata> = match metric {
            Some(name) => m.get(name).cloned().into_iter().collect(),
            None => m.values().cloned().collect(),
        };
        v.sort_by(|a, b| a.metric_family.cmp(&b.metric_family));
        Ok(v)
    }
}

#[cfg(test)]
mod tests;
