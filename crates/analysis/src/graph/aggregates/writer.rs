//! The tenant's metric writer, with the aggregates fed from what it stored: wrapping the
//! writer every ingest path shares (remote write, scrapes, agents forwarding to a hub)
//! feeds the aggregates from all of them at one place.

use std::sync::Arc;

use meshlens_model::{
    AppendOutcome, MetricMetadata, MetricWriter, RawSeries, StorageError, TimeSeries,
};

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

    /// The remote-write path: the TSDB takes the series as sent (no owned labels for the
    /// series it holds), and so do the aggregates (labels only for a series new to them).
    fn append_raw(&self, batch: &[RawSeries<'_>]) -> Result<AppendOutcome, StorageError> {
        let outcome = self.inner.append_raw(batch)?;
        if outcome.accepted > 0 {
            self.aggregates.observe_raw(batch);
        }
        Ok(outcome)
    }

    /// Stored as the inner writer stores them; the aggregates count float samples only.
    fn append_histograms(
        &self,
        batch: &[meshlens_model::SeriesHistograms],
    ) -> Result<AppendOutcome, StorageError> {
        self.inner.append_histograms(batch)
    }

    /// Stored as the inner writer stores them, not observed: a zero may lie long before
    /// the sample it precedes (a counter created days ago), and the aggregates would count
    /// the counter's whole value as an increase in the window of that sample.
    fn append_created_zeros(
        &self,
        floats: &[RawSeries<'_>],
        histograms: &[meshlens_model::SeriesHistograms],
    ) -> Result<AppendOutcome, StorageError> {
        self.inner.append_created_zeros(floats, histograms)
    }

    fn append_metadata(&self, metadata: &[MetricMetadata]) -> Result<(), StorageError> {
        self.inner.append_metadata(metadata)
    }

    fn append_exemplars(
        &self,
        batch: &[meshlens_model::SeriesExemplars],
    ) -> Result<meshlens_model::ExemplarOutcome, StorageError> {
        self.inner.append_exemplars(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AggregatesOptions;
    use meshlens_model::Sample;

    /// Accepts everything, stores nothing.
    struct Sink;

    impl MetricWriter for Sink {
        fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
            Ok(AppendOutcome {
                accepted: batch.iter().map(|s| s.samples.len() as u64).sum(),
                ..Default::default()
            })
        }
    }

    #[test]
    fn raw_appends_feed_the_aggregates_like_owned_ones() {
        let now = meshlens_model::time::now_ms();
        let pairs: Vec<Vec<(&str, &str)>> = vec![
            vec![
                ("__name__", "istio_requests_total"),
                ("destination_workload", "b"),
                ("reporter", "destination"),
                ("response_code", "200"),
                ("source_workload", "a"),
            ],
            // Unsorted, and named twice: the last name counts, as in `Labels`.
            vec![
                ("source_workload", "c"),
                ("__name__", "up"),
                ("destination_workload", "b"),
                ("__name__", "istio_requests_total"),
                ("reporter", "destination"),
            ],
            vec![("__name__", "node_cpu_seconds_total"), ("cpu", "0")],
        ];
        let feed = |raw: bool| {
            let aggs = Arc::new(EdgeAggregates::empty(AggregatesOptions::default()).unwrap());
            let w = AggregatingWriter::new(Arc::new(Sink), aggs.clone());
            for (i, v) in [1.0, 5.0, 9.0].into_iter().enumerate() {
                let samples = [Sample::new(now - 30_000 + i as i64 * 15_000, v)];
                let batch: Vec<RawSeries> = pairs
                    .iter()
                    .map(|p| RawSeries {
                        labels: p,
                        samples: &samples,
                    })
                    .collect();
                if raw {
                    w.append_raw(&batch).unwrap();
                } else {
                    let owned: Vec<TimeSeries> =
                        batch.iter().map(RawSeries::to_time_series).collect();
                    w.append(&owned).unwrap();
                }
            }
            aggs.stats()
        };
        let (raw, owned) = (feed(true), feed(false));
        assert_eq!(raw.series, 2, "the two Istio series");
        assert_eq!(raw, owned);
    }
}
