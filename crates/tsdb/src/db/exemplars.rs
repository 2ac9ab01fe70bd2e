//! The engine's exemplar store: the ring ([`crate::exemplars`]) behind a lock, each accepted
//! batch logged to the WAL as one `Exemplars` record, and the ring written into every WAL
//! checkpoint, so exemplars survive restarts and block cuts as the head does.

use std::sync::atomic::Ordering;

use meshlens_model::{
    ExemplarOutcome, ExemplarReader, LabelMatcher, SeriesExemplars, StorageError,
};

use super::{FsyncPolicy, Tsdb, TsdbError};
use crate::exemplars::add_batch;
use crate::wal::Record;

/// The exemplar store's figures, named after Prometheus's `prometheus_tsdb_exemplar_*`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExemplarStats {
    pub max_exemplars: u64,
    pub exemplars_appended: u64,
    pub exemplars_in_storage: u64,
    pub series_with_exemplars_in_storage: u64,
    pub out_of_order_exemplars: u64,
    /// Milliseconds; 0 before the first exemplar.
    pub last_exemplar_timestamp_ms: i64,
}

impl Tsdb {
    pub(super) fn append_exemplars_inner(
        &self,
        batch: &[SeriesExemplars],
    ) -> Result<ExemplarOutcome, TsdbError> {
        let _gate = self.append_gate.read();
        if self.closed.load(Ordering::Acquire) {
            return Err(TsdbError::Closed);
        }
        let mut out = ExemplarOutcome::default();
        // The ring and the log take exemplars in the same order: the lock covers both.
        let ring_and_log = {
            let mut ring = self.exemplars.lock();
            let stored = add_batch(&mut ring, batch, &mut out);
            if stored.is_empty() {
                None
            } else {
                let n: usize = stored.iter().map(|s| s.exemplars.len()).sum();
                let ticket = self
                    .wal
                    .append(&[Record::Exemplars(stored)])
                    .map_err(|e| self.io_err(e))?;
                self.counters
                    .exemplars_logged
                    .fetch_add(n as u64, Ordering::Relaxed);
                Some(ticket)
            }
        };
        if let (Some(ticket), FsyncPolicy::EveryAppend) = (ring_and_log, self.opts.wal_fsync) {
            self.wal.sync(ticket).map_err(|e| self.io_err(e))?;
        }
        Ok(out)
    }

    /// Exemplars for the WAL checkpoint, oldest first (replay refills the ring in order).
    pub(super) fn exemplar_checkpoint(&self) -> Option<Record> {
        let all = self.exemplars.lock().all_in_order();
        self.counters.exemplars_logged.store(0, Ordering::Relaxed);
        (!all.is_empty()).then_some(Record::Exemplars(all))
    }

    pub fn exemplar_stats(&self) -> ExemplarStats {
        let r = self.exemplars.lock();
        ExemplarStats {
            max_exemplars: r.capacity() as u64,
            exemplars_appended: r.appended,
            exemplars_in_storage: r.len() as u64,
            series_with_exemplars_in_storage: r.series_count() as u64,
            out_of_order_exemplars: r.out_of_order,
            last_exemplar_timestamp_ms: r.last_t,
        }
    }

    /// Whether the WAL holds enough exemplar records since its last checkpoint that an
    /// otherwise empty head (ClickHouse storage keeps no samples here, so blocks are never
    /// cut) should be checkpointed to bound the log.
    pub(super) fn exemplar_log_is_long(&self) -> bool {
        let cap = self.exemplars.lock().capacity() as u64;
        self.head_series() == 0
            && self.counters.exemplars_logged.load(Ordering::Relaxed) > (2 * cap).max(10_000)
    }
}

impl ExemplarReader for Tsdb {
    fn select_exemplars(
        &self,
        matcher_sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesExemplars>, StorageError> {
        Ok(self.exemplars.lock().select(matcher_sets, mint, maxt))
    }
}
