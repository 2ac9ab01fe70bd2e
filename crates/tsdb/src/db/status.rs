//! Read-only figures for the status API: head cardinality and data set aside as corrupt.

use std::sync::atomic::Ordering;

use meshlens_model::HeadCardinality;

use super::Tsdb;

impl Tsdb {
    /// The head's cardinality, `limit` entries per list (`/api/v1/status/tsdb`).
    pub fn head_cardinality(&self, limit: usize) -> HeadCardinality {
        self.head.cardinality(limit)
    }

    /// Corruptions met since the directory was created: blocks moved to `corrupted/` and,
    /// once, a WAL whose torn or corrupt tail was cut at this open.
    pub fn corruption_count(&self) -> u64 {
        let quarantined = std::fs::read_dir(self.dir.join("corrupted"))
            .map(|d| d.flatten().count() as u64)
            .unwrap_or(0);
        let wal_repaired = self.counters.dropped_on_replay.load(Ordering::Relaxed) > 0;
        quarantined + u64::from(wal_repaired)
    }
}
