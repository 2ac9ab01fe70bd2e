//! The read path: postings pick the matching series in the head and in every block that
//! overlaps the range (before any series is looked at), the hits are merged by labels into
//! cursors holding only handles, and samples are decoded per cursor, chunk by chunk, when
//! asked. `select` decodes the cursors in parallel across series when there are many.

mod cursor;

use std::sync::Arc;

use meshlens_model::{
    LabelMatcher, Labels, MetricMetadata, MetricReader, Sample, SeriesCursor, SeriesSamples,
    StorageError,
};

use super::Tsdb;
use crate::block::Block;
use crate::budget::SampleBudget;
pub(crate) use cursor::TsdbCursor;

/// Below this many series a selection is decoded on the calling thread: threads cost more
/// than they save.
const PARALLEL_MIN_SERIES: usize = 1024;

impl Tsdb {
    /// Whether the head holds this exact series; what a per-tenant series limit asks of each
    /// incoming series before it may be created.
    pub fn contains_series(&self, labels: &meshlens_model::Labels) -> bool {
        self.head.lookup(labels).is_some()
    }

    /// Whether the database has held a native-histogram sample since it was opened (in
    /// the WAL, a block or an append): until then reads skip histograms altogether.
    pub(crate) fn may_hold_histograms(&self) -> bool {
        self.holds_histograms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Series in the head: one atomic load, unlike [`Tsdb::stats`], which walks every series
    /// to count chunks; the per-request series limit asks this.
    pub fn head_series(&self) -> u64 {
        self.head
            .num_series
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The series matching `matchers` with data in `[mint, maxt]` (chunk-level for closed
    /// chunks), one cursor per distinct label set, sorted by labels. Nothing is decoded.
    pub(crate) fn cursors(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<TsdbCursor> {
        if mint > maxt {
            return Vec::new();
        }
        let mut overlapping: Vec<Arc<Block>> = self
            .blocks
            .read()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .cloned()
            .collect();
        // Where blocks disagree on a sample the first wins: in time order, as compaction
        // merges them, so a read gives the same answer before and after compaction.
        overlapping.sort_by(|a, b| {
            (a.meta.min_time, a.meta.max_time, &a.meta.id).cmp(&(
                b.meta.min_time,
                b.meta.max_time,
                &b.meta.id,
            ))
        });
        let blocks: Arc<[Arc<Block>]> = overlapping.into();
        let ids = self.head.select_ids(matchers);
        let mut out: Vec<TsdbCursor> = Vec::with_capacity(ids.len() as usize);
        for s in self.head.sorted_series(&ids) {
            let hists = {
                let g = s.lock();
                if g.removed || !g.has_data_in(mint, maxt) {
                    continue;
                }
                g.has_histograms_in(mint, maxt)
            };
            out.push(TsdbCursor::from_head(s, blocks.clone(), mint, maxt, hists));
        }
        for (k, b) in blocks.iter().enumerate() {
            // Block series are sorted by labels (checked on open), so ids ascend in label
            // order and merge with the cursors so far in one pass.
            let hits: Vec<u32> = b
                .select_ids(matchers)
                .iter()
                .filter(|&idx| b.has_data_in(idx, mint, maxt))
                .collect();
            if hits.is_empty() {
                continue;
            }
            out = merge_block(out, &blocks, k as u32, &hits, mint, maxt);
        }
        out
    }
}

/// Merges block `k`'s hits (series indexes in label order) into `cursors` (sorted by
/// labels): a series already there gains the block, others become new cursors.
fn merge_block(
    cursors: Vec<TsdbCursor>,
    blocks: &Arc<[Arc<Block>]>,
    k: u32,
    hits: &[u32],
    mint: i64,
    maxt: i64,
) -> Vec<TsdbCursor> {
    let block = &blocks[k as usize];
    let mut out = Vec::with_capacity(cursors.len() + hits.len());
    let mut rest = cursors.into_iter().peekable();
    for &idx in hits {
        let labels = &block.series[idx as usize].labels;
        while let Some(c) = rest.next_if(|c| c.cmp_to(labels).is_lt()) {
            out.push(c);
        }
        match rest.next_if(|c| c.cmp_to(labels).is_eq()) {
            Some(mut c) => {
                c.add_block(k, idx);
                out.push(c);
            }
            None => out.push(TsdbCursor::from_block(k, idx, blocks.clone(), mint, maxt)),
        }
    }
    out.extend(rest);
    out
}

/// Decodes every cursor into an owned series, dropping those left empty, in order; in
/// parallel over contiguous runs of cursors when there are many. Stops early once `budget`
/// is exceeded (the caller checks it).
fn materialize(
    cursors: &mut [TsdbCursor],
    budget: &SampleBudget,
    hists: bool,
) -> Result<Vec<SeriesSamples>, StorageError> {
    if cursors.len() < PARALLEL_MIN_SERIES {
        return materialize_run(cursors, budget, hists);
    }
    // Asked once: on Linux it reads cgroup files.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads =
        *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads < 2 {
        return materialize_run(cursors, budget, hists);
    }
    let per = cursors.len().div_ceil(threads);
    let parts: Vec<Result<Vec<SeriesSamples>, StorageError>> = std::thread::scope(|s| {
        let handles: Vec<_> = cursors
            .chunks_mut(per)
            .map(|run| s.spawn(move || materialize_run(run, budget, hists)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StorageError::Unavailable {
                        reason: "a read thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut out = Vec::with_capacity(cursors.len());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// `hists`: whether the database may hold native histograms at all (see
/// [`Tsdb::may_hold_histograms`]); when not, float reads skip them entirely.
fn materialize_run(
    cursors: &mut [TsdbCursor],
    budget: &SampleBudget,
    hists: bool,
) -> Result<Vec<SeriesSamples>, StorageError> {
    let mut out = Vec::with_capacity(cursors.len());
    let mut buf: Vec<Sample> = Vec::new();
    for c in cursors {
        buf.clear();
        c.decode_budgeted(&mut buf, budget)?;
        if budget.exceeded() {
            break;
        }
        let histograms = if hists {
            c.load_histograms(budget)?;
            if budget.exceeded() {
                break;
            }
            c.take_histograms()
        } else {
            Vec::new()
        };
        if !buf.is_empty() || !histograms.is_empty() {
            out.push(SeriesSamples {
                labels: c.take_labels(),
                samples: buf.as_slice().to_vec(),
                histograms,
            });
        }
    }
    Ok(out)
}

impl MetricReader for Tsdb {
    /// One cursor per matching series, holding handles to the head series and the blocks
    /// that have data in the range; float decoding happens in `decode_into`, native
    /// histograms (rare, small) are read here.
    fn select_lazy<'a>(
        &'a self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Box<dyn SeriesCursor + 'a>>, StorageError> {
        let budget = SampleBudget::unlimited();
        let mut cursors = self.cursors(matchers, mint, maxt);
        // Histograms are loaded now, where a corrupt chunk can fail the selection
        // (`SeriesCursor::histograms` cannot fail); float-only series cost nothing here.
        if self.may_hold_histograms() {
            for c in &mut cursors {
                c.load_histograms(&budget)?;
            }
        }
        Ok(cursors
            .into_iter()
            .map(|c| Box::new(c) as Box<dyn SeriesCursor + 'a>)
            .collect())
    }

    fn select(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        self.select_limited(matchers, mint, maxt, usize::MAX)
    }

    /// Stops decoding as soon as the samples read pass `max_samples` (counted before
    /// overlapping blocks' duplicates are merged away).
    fn select_limited(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        max_samples: usize,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let budget = SampleBudget::new(max_samples);
        let mut cursors = self.cursors(matchers, mint, maxt);
        let found = materialize(&mut cursors, &budget, self.may_hold_histograms())?;
        if budget.exceeded() {
            return Err(StorageError::TooManySamples { limit: max_samples });
        }
        Ok(found)
    }

    fn series(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .cursors(matchers, mint, maxt)
            .iter_mut()
            .map(TsdbCursor::take_labels)
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
mod limit_tests {
    use super::*;
    use crate::budget::chunks_read;
    use crate::{FsyncPolicy, TsdbOptions};
    use meshlens_model::{MetricWriter, TimeSeries};

    const SERIES: usize = 200;
    const PER_SERIES: usize = 1_200;

    fn fill(db: &Tsdb) {
        let t0 = 1_700_000_000_000i64;
        let batch: Vec<TimeSeries> = (0..SERIES)
            .map(|i| TimeSeries {
                labels: Labels::from_pairs([("__name__", "load"), ("i", &i.to_string())]),
                samples: (0..PER_SERIES)
                    .map(|k| Sample::new(t0 + k as i64 * 1000, (k % 7) as f64))
                    .collect(),
            })
            .collect();
        db.append(&batch).expect("append");
    }

    /// Chunks read by a limited select that fails, and by a full one, on the same data.
    fn partial_and_full(db: &Tsdb) -> (usize, usize) {
        let m = [LabelMatcher::equal("__name__", "load")];
        let before = chunks_read();
        let all = db.select(&m, i64::MIN, i64::MAX).expect("select");
        let full = chunks_read() - before;
        assert_eq!(all.len(), SERIES);
        let total = SERIES * PER_SERIES;
        assert_eq!(all.iter().map(|s| s.samples.len()).sum::<usize>(), total);

        let before = chunks_read();
        let err = db
            .select_limited(&m, i64::MIN, i64::MAX, 5_000)
            .expect_err("over budget");
        let partial = chunks_read() - before;
        assert!(matches!(err, StorageError::TooManySamples { limit: 5_000 }));

        // The budget is inclusive: exactly all samples pass, one fewer does not.
        assert_eq!(
            db.select_limited(&m, 0, i64::MAX, total).unwrap().len(),
            SERIES
        );
        assert!(db.select_limited(&m, 0, i64::MAX, total - 1).is_err());
        (partial, full)
    }

    #[test]
    fn select_limited_stops_decoding_once_over_budget() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TsdbOptions {
            retention_time_ms: None,
            wal_fsync: FsyncPolicy::Never,
            ..Default::default()
        };
        {
            let db = Tsdb::open(dir.path(), opts.clone()).unwrap();
            fill(&db);
            let (partial, full) = partial_and_full(&db);
            assert!(partial * 20 < full, "head: read {partial} of {full} chunks");
            db.close().unwrap();
        }
        // Reopened, the data is in a block.
        let db = Tsdb::open(dir.path(), opts).unwrap();
        assert!(!db.block_metas().is_empty());
        let (partial, full) = partial_and_full(&db);
        assert!(
            partial * 20 < full,
            "block: read {partial} of {full} chunks"
        );
    }
}

#[cfg(test)]
mod tests;
