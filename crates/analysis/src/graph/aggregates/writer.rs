//! The tenant's metric writer, with the aggregates fed from what it stored: wrapping the
//! writer every ingest path shares (remote write, scrapes, agents forwarding to a hub)
//! feeds the aggregates from all of them at one place.

use std::sync::Arc;

use meshlens_model::{AppendOutcome, MetricMetadata, MetricWriter, StorageError, TimeSeries};

use super::EdgeAggregates;

pub struct AggregatingWriter {
    inner: Arc<dyn MetricWriter>,
    aggregates: Arc<EdgeAggregates>,
}

impl AggregatingWriter {
    pub fn new(inner: Arc<dyn MetricWriter>, aggregates: Arc<EdgeAggregates>) -> Self {
        AggregatingWriter { inner, aggregates }
    }
}

impl MetricWriter for AggregatingWriter {
    /// Appends, then feeds the aggregates once the TSDB has acknowledged the batch. Samples
    /// the TSDB refused as out of order are skipped by the aggregates too (they only take
    /// samples newer than a series' last); a failed append feeds nothing.
    fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
        let outcome = self.inner.append(batch)?;
        if outcome.accepted > 0 {
            self.aggregates.observe(batch);
        }
        Ok(outcome)
    }

    fn append_metadata(&self, metadata: &[MetricMetadata]) -> Result<(), StorageError> {
        self.inner.append_metadata(metadata)
    }
}
