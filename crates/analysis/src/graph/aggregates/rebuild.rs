//! Reading the aggregates back from the TSDB after a restart: every Istio series the graph
//! uses, once, over the coarse retention up to the moment the store was made, in time
//! slices so that at most one slice of samples is in memory.
//!
//! The rebuild keeps its own per-series state; the live feed meanwhile counts only newer
//! samples and notes each series' first one. At the end the increase from the rebuild's
//! last sample to that first live one is added (the bridge), what is still owed between
//! bounds is paid, and series only the rebuild saw hand their last value to the live feed.

use std::sync::atomic::Ordering;

use meshlens_model::{LabelMatcher, MetricReader, Sample};

use super::keys::{Metric, SeriesHashes};
use super::track::{Feed, Table};
use super::{EdgeAggregates, Readiness};
use crate::AnalysisError;

/// What a rebuild read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub series: usize,
    pub samples: usize,
    /// The start of the range read: graphs may start here or later.
    pub since_ms: i64,
}

impl EdgeAggregates {
    /// Reads the aggregates' retention back from `reader`, then serves graphs. Call once,
    /// on a store made with [`EdgeAggregates::new`], from a background thread; the live
    /// feed keeps running meanwhile. Idempotent: a ready store returns at once.
    pub fn rebuild(&self, reader: &dyn MetricReader) -> Result<RebuildReport, AnalysisError> {
        if !matches!(*self.readiness.lock(), Readiness::Rebuilding { .. }) {
            return Ok(RebuildReport::default());
        }
        match self.read_back(reader) {
            Ok(report) => {
                *self.readiness.lock() = Readiness::Ready {
                    since_ms: report.since_ms,
                };
                Ok(report)
            }
            Err(e) => {
                *self.readiness.lock() = Readiness::Failed {
                    reason: e.to_string(),
                };
                Err(e)
            }
        }
    }

    fn read_back(&self, reader: &dyn MetricReader) -> Result<RebuildReport, AnalysisError> {
        let cut = self.cut_ms;
        let since = cut - self.res.coarse.retention;
        let slice = self.opts.rebuild_slice_ms;
        let slices = ((cut - since + slice - 1) / slice).max(1);
        let mut tables: Vec<Table> = (0..self.shards.len()).map(|_| Table::default()).collect();
        let mut report = RebuildReport {
            since_ms: since,
            ..RebuildReport::default()
        };
        let mut bufs: Vec<Vec<Sample>> = Vec::new();
        for i in 0..slices {
            // Samples in (a, b]; the selection's range is inclusive.
            let a = since + i * slice;
            let b = (a + slice).min(cut);
            for (n, (metric, name)) in Metric::ALL.iter().enumerate() {
                let matchers = [LabelMatcher::equal("__name__", *name)];
                let cursors = reader.select_lazy(&matchers, a + 1, b)?;
                let mut order: Vec<(usize, u64, f64, usize, SeriesHashes)> = cursors
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        let l = c.labels();
                        let h = SeriesHashes::of(l);
                        let le = l
                            .get("le")
                            .and_then(|s| s.parse::<f64>().ok())
                            .unwrap_or(f64::INFINITY);
                        (self.shard_of(&h), h.family, le, j, h)
                    })
                    .collect();
                // By shard, then each pod histogram in bound order: what a bound owes the
                // next is paid as soon as the next is read.
                order.sort_by(|x, y| {
                    (x.0, x.1)
                        .cmp(&(y.0, y.1))
                        .then(x.2.total_cmp(&y.2))
                        .then(x.3.cmp(&y.3))
                });
                // Every series of the slice has state before any sample is taken: a
                // bucket's increase must see the next bound's series even when both are new.
                let mut usable = Vec::with_capacity(order.len());
                for run in order.chunk_by(|x, y| x.0 == y.0) {
                    let mut guard = self.shards[run[0].0].lock();
                    let mut feed = self.feed(&mut guard.edges, a, b);
                    for (shard, _, _, j, h) in run {
                        let l = cursors[*j].labels();
                        usable.push(tables[*shard].ensure(&mut feed, h, *metric, || l, &self.dict));
                    }
                }
                // One pod histogram (or one other series) at a time: its series decoded,
                // then taken scrape by scrape.
                let mut at = 0;
                for group in order.chunk_by(|x, y| (x.0, x.1) == (y.0, y.1)) {
                    let ok = &usable[at..at + group.len()];
                    at += group.len();
                    let taken = group.iter().zip(ok).filter(|(_, ok)| **ok);
                    for (n, ((_, _, _, j, _), _)) in taken.enumerate() {
                        if bufs.len() <= n {
                            bufs.push(Vec::new());
                        }
                        bufs[n].clear();
                        cursors[*j].decode_into(&mut bufs[n])?;
                        report.samples += bufs[n].len();
                    }
                    let items: Vec<(u64, &[Sample])> = group
                        .iter()
                        .zip(ok)
                        .filter(|(_, ok)| **ok)
                        .zip(&bufs)
                        .map(|(((_, _, _, _, h), _), b)| (h.series, &b[..]))
                        .collect();
                    let shard = group[0].0;
                    let mut guard = self.shards[shard].lock();
                    let mut feed = self.feed(&mut guard.edges, a, b);
                    tables[shard].push_batch(&mut feed, &items);
                }
                let done = (i as usize * Metric::ALL.len() + n + 1) * 100
                    / (slices as usize * Metric::ALL.len());
                self.progress.store(done.min(99) as u32, Ordering::Relaxed);
            }
        }
        for (shard, table) in self.shards.iter().zip(tables) {
            report.series += table.series.len();
            self.finish(&mut shard.lock(), table);
        }
        Ok(report)
    }

    fn feed<'a>(&'a self, edges: &'a mut super::track::Edges, a: i64, b: i64) -> Feed<'a> {
        Feed {
            res: &self.res,
            edges,
            min_t: a,
            max_t: b,
            firsts: None,
        }
    }

    /// Bridges one shard's rebuilt state to its live state and ends its pending phase.
    fn finish(&self, shard: &mut super::Shard, mut table: Table) {
        let firsts = std::mem::take(&mut shard.firsts);
        let mut feed = self.feed(&mut shard.edges, i64::MIN, i64::MAX);
        for h in table.bridge_order() {
            if let Some(&(t, v)) = firsts.get(&h) {
                table.push(&mut feed, h, t, v);
            }
        }
        table.settle(&mut feed);
        table.hand_over(&mut shard.live);
        shard.pending = false;
    }
}
