//! Background maintenance: cutting blocks from the head, WAL checkpoints, compaction and
//! retention.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshlens_model::{Labels, Sample};

use super::{FsyncPolicy, Tsdb, TsdbError};
use crate::block::{self, Block, BlockError, SeriesData};
use crate::wal::{Record, WalHistogram, WalSample};

impl Tsdb {
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
        if self.exemplar_log_is_long() {
            let _gate = self.append_gate.write();
            self.checkpoint_wal()?;
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
    pub(super) fn cut_block(&self, boundary: i64) -> Result<(), TsdbError> {
        let mut series: Vec<(Labels, crate::head::SeriesRef)> = self
            .head
            .all_series()
            .into_iter()
            .filter_map(|(_, s)| {
                let g = s.lock();
                let (min, _) = g.time_range()?;
                drop(g);
                (min < boundary).then(|| (s.labels(), s.clone()))
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let labels: Vec<Labels> = series.iter().map(|(l, _)| l.clone()).collect();
        let written = block::write(
            &self.dir,
            &labels,
            |i| {
                let mut g = series[i].1.lock();
                Ok(SeriesData {
                    floats: g.take_before(boundary),
                    histograms: g.take_histograms_before(boundary),
                })
            },
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
                let hists: Vec<WalHistogram> = g
                    .histograms_in(i64::MIN, i64::MAX)
                    .iter()
                    .map(|x| WalHistogram {
                        series: u64::from(id),
                        t: x.t,
                        h: x.h.clone(),
                    })
                    .collect();
                let hists = (!hists.is_empty()).then_some(Record::Histograms(hists));
                [
                    Record::Series {
                        id: u64::from(id),
                        labels: s.labels(),
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
                .into_iter()
                .chain(hists)
            })
            .chain(std::iter::once(metadata))
            .chain(self.exemplar_checkpoint());
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
        let fetch = |i: usize| -> Result<SeriesData, BlockError> {
            let mut out: Vec<Sample> = Vec::new();
            let mut hists = Vec::new();
            for &(bi, idx) in &sources_of[i] {
                out.extend(group[bi].samples(idx, i64::MIN, i64::MAX)?);
                if group[bi].has_histograms(idx) {
                    hists.extend(group[bi].histograms(idx, i64::MIN, i64::MAX)?);
                }
            }
            if sources_of[i].len() > 1 {
                // Stable sorts: where blocks disagree the first (in time order) wins.
                out.sort_by_key(|x| x.t);
                out.dedup_by_key(|x| x.t);
                hists.sort_by_key(|x| x.t);
                hists.dedup_by_key(|x| x.t);
            }
            Ok(SeriesData {
                floats: out,
                histograms: hists,
            })
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
}

fn remove_block_dir(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        tracing::error!(block = %dir.display(), error = %e, "tsdb: could not remove block");
    }
}
