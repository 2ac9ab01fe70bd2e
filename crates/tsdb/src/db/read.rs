//! The read path: matching series gathered from the head and every overlapping block.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshlens_model::{
    LabelMatcher, Labels, MetricMetadata, MetricReader, Sample, SeriesSamples, StorageError,
};

use super::{Tsdb, TsdbError};
use crate::block::Block;
use crate::budget::SampleBudget;

impl Tsdb {
    /// Whether the head holds this exact series; what a per-tenant series limit asks of each
    /// incoming series before it may be created.
    pub fn contains_series(&self, labels: &meshlens_model::Labels) -> bool {
        self.head.lookup(labels).is_some()
    }

    /// Series in the head: one atomic load, unlike [`Tsdb::stats`], which walks every series
    /// to count chunks; the per-request series limit asks this.
    pub fn head_series(&self) -> u64 {
        self.head
            .num_series
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Gathers matching series from the head and every overlapping block, merged by labels.
    /// Stops early, with an incomplete result, once `budget` is exceeded; the caller checks.
    fn gather(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        with_samples: bool,
        budget: &mut SampleBudget,
    ) -> Result<BTreeMap<Labels, Vec<Sample>>, TsdbError> {
        let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        let mut merged_twice: Vec<Labels> = Vec::new();
        for id in self.head.select_ids(matchers) {
            let Some(s) = self.head.get(id) else { continue };
            let g = s.lock();
            if with_samples {
                let samples = g.samples_within(mint, maxt, budget);
                if budget.exceeded() {
                    return Ok(out);
                }
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
                    let samples = b.samples_within(idx, mint, maxt, budget)?;
                    if budget.exceeded() {
                        return Ok(out);
                    }
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

impl MetricReader for Tsdb {
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
        let mut budget = SampleBudget::new(max_samples);
        let found = self.gather(matchers, mint, maxt, true, &mut budget)?;
        if budget.exceeded() {
            return Err(StorageError::TooManySamples { limit: max_samples });
        }
        Ok(found
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
            .gather(matchers, mint, maxt, false, &mut SampleBudget::unlimited())?
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
