//! The storage figures behind the Prometheus status endpoints: a TSDB's head cardinality
//! and corruption count.

use std::sync::Arc;

use meshlens_model::HeadCardinality;
use meshlens_prom_api::StatusSource;
use meshlens_tsdb::Tsdb;

pub struct ServerStatus {
    tsdb: Arc<Tsdb>,
}

impl ServerStatus {
    /// The figures of one TSDB (a tenant's), as the status API wants them.
    pub fn for_tsdb(tsdb: Arc<Tsdb>) -> Arc<dyn StatusSource> {
        Arc::new(ServerStatus { tsdb })
    }
}

impl StatusSource for ServerStatus {
    fn corruption_count(&self) -> u64 {
        self.tsdb.corruption_count()
    }

    fn tsdb_status(&self, limit: usize) -> Option<HeadCardinality> {
        Some(self.tsdb.head_cardinality(limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_model::{Labels, MetricWriter, Sample, TimeSeries};
    use meshlens_tsdb::{FsyncPolicy, TsdbOptions};

    #[test]
    fn figures_follow_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TsdbOptions {
            wal_fsync: FsyncPolicy::Never,
            ..Default::default()
        };
        let db = Arc::new(Tsdb::open(dir.path(), opts).unwrap());
        let status = ServerStatus::for_tsdb(db.clone());
        assert_eq!(status.tsdb_status(10).unwrap().num_series, 0);
        let series = |name: &str, pod: &str| TimeSeries {
            labels: Labels::from_pairs([("__name__", name), ("pod", pod)]),
            samples: vec![Sample::new(1_700_000_000_000, 1.0)],
        };
        db.append(&[series("up", "a"), series("up", "b")]).unwrap();
        let s = status.tsdb_status(10).unwrap();
        assert_eq!(s.num_series, 2);
        assert_eq!(s.series_count_by_metric_name, vec![("up".to_string(), 2)]);
        assert_eq!(s.min_time, 1_700_000_000_000);
        db.append(&[series("rpc", "c")]).unwrap();
        let s = status.tsdb_status(1).unwrap();
        assert_eq!(s.num_series, 3);
        assert_eq!(s.num_label_pairs, 5);
        assert_eq!(
            s.series_count_by_label_value_pair,
            vec![("__name__=up".to_string(), 2)]
        );
        assert_eq!(status.corruption_count(), 0);
    }

    #[test]
    fn a_quarantined_block_counts_as_corruption() {
        let dir = tempfile::tempdir().unwrap();
        // A directory named like a block, with nothing valid in it: moved aside at open.
        std::fs::create_dir_all(dir.path().join(format!("01H{}", "Z".repeat(23)))).unwrap();
        let db = Arc::new(Tsdb::open(dir.path(), TsdbOptions::default()).unwrap());
        assert_eq!(ServerStatus::for_tsdb(db).corruption_count(), 1);
    }
}
