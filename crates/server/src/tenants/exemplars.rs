//! Exemplars with ClickHouse storage: the tenant's samples go to the cluster through the
//! write buffer, its exemplars to the ring of the tenant's local TSDB (logged to that TSDB's
//! WAL, so they survive a restart of this server).
//!
//! Why not ClickHouse: exemplars are a small, bounded, recent set (Prometheus keeps them in
//! memory too), read by series for a chart's range; a table for them would be one more
//! schema step on every supported ClickHouse release for data the ring holds well. The cost:
//! each server answers `query_exemplars` with the exemplars it ingested itself, so servers
//! sharing a cluster do not see each other's.

use std::sync::Arc;

use meshlens_model::{
    AppendOutcome, ExemplarOutcome, MetricMetadata, MetricWriter, RawSeries, SeriesExemplars,
    SeriesHistograms, StorageError, TimeSeries,
};

/// `inner` for samples and metadata, `exemplars` for exemplars.
pub(crate) struct ExemplarsBeside {
    pub inner: Arc<dyn MetricWriter>,
    pub exemplars: Arc<dyn MetricWriter>,
}

impl MetricWriter for ExemplarsBeside {
    fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
        self.inner.append(batch)
    }

    fn append_raw(&self, batch: &[RawSeries<'_>]) -> Result<AppendOutcome, StorageError> {
        self.inner.append_raw(batch)
    }

    /// Native histograms are samples: they go where the floats go.
    fn append_histograms(&self, batch: &[SeriesHistograms]) -> Result<AppendOutcome, StorageError> {
        self.inner.append_histograms(batch)
    }

    fn append_created_zeros(
        &self,
        floats: &[RawSeries<'_>],
        histograms: &[SeriesHistograms],
    ) -> Result<AppendOutcome, StorageError> {
        self.inner.append_created_zeros(floats, histograms)
    }

    fn append_metadata(&self, metadata: &[MetricMetadata]) -> Result<(), StorageError> {
        self.inner.append_metadata(metadata)
    }

    fn append_exemplars(&self, batch: &[SeriesExemplars]) -> Result<ExemplarOutcome, StorageError> {
        self.exemplars.append_exemplars(batch)
    }
}
