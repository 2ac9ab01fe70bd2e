//! The metrics storage contract. The embedded TSDB and the ClickHouse backend implement it;
//! PromQL, the HTTP API and the analyses only ever see these traits.
//!
//! Contract, shared by every implementation:
//! - time ranges `[mint, maxt]` are inclusive at both ends, in milliseconds;
//! - `select` returns series sorted by labels, each with its samples sorted by time, only
//!   series with at least one sample in the range; staleness markers are returned as stored;
//! - returned data is owned by the caller;
//! - `append` returning `Ok` means every accepted sample is durable (in the WAL, synced per
//!   the engine's stated fsync policy). Samples the engine refuses are counted by reason in
//!   the outcome and never fail the rest of the batch.

use crate::{HistogramSample, LabelMatcher, Labels, Sample};

/// One series and its samples, as received (remote write, scrape, import).
#[derive(Clone, Debug, PartialEq)]
pub struct TimeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// One series as a request carried it: label pairs borrowed from the request buffer in the
/// sender's order (not yet normalised) and its samples, so an engine can find a series it
/// already holds without building [`Labels`] (see [`MetricWriter::append_raw`]).
#[derive(Clone, Copy, Debug)]
pub struct RawSeries<'a> {
    pub labels: &'a [(&'a str, &'a str)],
    pub samples: &'a [Sample],
}

impl RawSeries<'_> {
    /// The normalised label set (sorted, names unique with the last value winning, empty
    /// values dropped), as [`Labels::from_pairs`] builds it.
    pub fn to_labels(&self) -> Labels {
        Labels::from_pairs(self.labels.iter().copied())
    }

    /// Whether the pairs already are in [`Labels`]' normal form (names strictly ascending,
    /// no empty value), so they equal [`Self::to_labels`] pair for pair. Remote-write
    /// senders send sorted labels, so this is the common case.
    pub fn is_normalised(&self) -> bool {
        self.labels.iter().all(|(_, v)| !v.is_empty())
            && self.labels.windows(2).all(|w| w[0].0 < w[1].0)
    }

    pub fn to_time_series(&self) -> TimeSeries {
        TimeSeries {
            labels: self.to_labels(),
            samples: self.samples.to_vec(),
        }
    }
}

/// One series and its samples in the selected range, as read back: float samples and
/// native-histogram samples, each in time order (a series may switch between the two).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub histograms: Vec<HistogramSample>,
}

impl SeriesSamples {
    /// A series of float samples only.
    pub fn floats(labels: Labels, samples: Vec<Sample>) -> Self {
        SeriesSamples {
            labels,
            samples,
            histograms: Vec::new(),
        }
    }
}

/// Why a sample was refused; each is counted separately in the server's own metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Older than the series' newest sample and outside the out-of-order window.
    OutOfOrder,
    /// Older than the oldest time the engine still accepts (before the head or retention).
    OutOfBounds,
    /// Same timestamp as a stored sample but a different value.
    Duplicate,
    /// The series' labels are not valid Prometheus labels.
    InvalidLabels,
}

impl RejectReason {
    pub const ALL: [RejectReason; 4] = [
        RejectReason::OutOfOrder,
        RejectReason::OutOfBounds,
        RejectReason::Duplicate,
        RejectReason::InvalidLabels,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::OutOfBounds => "out_of_bounds",
            RejectReason::Duplicate => "duplicate",
            RejectReason::InvalidLabels => "invalid_labels",
        }
    }
}

/// What an append did with a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub accepted: u64,
    pub out_of_order: u64,
    pub out_of_bounds: u64,
    pub duplicate: u64,
    pub invalid_labels: u64,
    /// Series created by this batch (Prometheus's `scrape_series_added` counts these).
    pub series_created: u64,
}

impl AppendOutcome {
    pub fn rejected(&self) -> u64 {
        self.out_of_order + self.out_of_bounds + self.duplicate + self.invalid_labels
    }

    pub fn count(&self, reason: RejectReason) -> u64 {
        match reason {
            RejectReason::OutOfOrder => self.out_of_order,
            RejectReason::OutOfBounds => self.out_of_bounds,
            RejectReason::Duplicate => self.duplicate,
            RejectReason::InvalidLabels => self.invalid_labels,
        }
    }

    pub fn add_rejected(&mut self, reason: RejectReason, n: u64) {
        match reason {
            RejectReason::OutOfOrder => self.out_of_order += n,
            RejectReason::OutOfBounds => self.out_of_bounds += n,
            RejectReason::Duplicate => self.duplicate += n,
            RejectReason::InvalidLabels => self.invalid_labels += n,
        }
    }

    pub fn merge(&mut self, o: &AppendOutcome) {
        self.accepted += o.accepted;
        self.out_of_order += o.out_of_order;
        self.out_of_bounds += o.out_of_bounds;
        self.duplicate += o.duplicate;
        self.invalid_labels += o.invalid_labels;
        self.series_created += o.series_created;
    }
}

/// Metric metadata as exposition formats and remote write carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricMetadata {
    pub metric_family: String,
    /// Prometheus's type names: counter, gauge, histogram, gaugehistogram, summary, info,
    /// stateset, unknown.
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// Cardinality of an engine's in-memory head, as `/api/v1/status/tsdb` reports it; lists are
/// (name, count), largest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeadCardinality {
    pub num_series: u64,
    /// Distinct (label name, label value) pairs.
    pub num_label_pairs: u64,
    pub chunk_count: u64,
    /// `i64::MAX` and `i64::MIN` while the head is empty, as in Prometheus.
    pub min_time: i64,
    pub max_time: i64,
    pub series_count_by_metric_name: Vec<(String, u64)>,
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Sum over the label's values of the value's length times its series count.
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt data in {location}: {reason}")]
    Corruption { location: String, reason: String },
    #[error("storage is closed")]
    Closed,
    #[error("query would load more than {limit} samples")]
    TooManySamples { limit: usize },
    #[error("storage backend unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
    /// A tenant's ingestion rate or series limit refused the write (HTTP 429: retry later).
    #[error("limit reached: {reason}")]
    LimitReached { reason: String },
}

impl StorageError {
    /// The HTTP status every API answers this failure with: the one mapping, so a storage
    /// error means the same on every endpoint.
    pub fn http_status(&self) -> u16 {
        match self {
            StorageError::InvalidRequest { .. } => 400,
            StorageError::TooManySamples { .. } => 422,
            StorageError::LimitReached { .. } => 429,
            StorageError::Closed | StorageError::Unavailable { .. } => 503,
            StorageError::Io { .. } | StorageError::Corruption { .. } => 500,
        }
    }

    pub fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            op: op.into(),
            source,
        }
    }
}

/// Writes metrics. Implementations are internally synchronised.
pub trait MetricWriter: Send + Sync {
    /// Appends a batch; see the module contract for durability and rejections.
    fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError>;

    /// [`Self::append`] for series borrowed from a request buffer, with the same outcome
    /// and durability. The default builds owned series; an engine that can find the
    /// series it holds from the raw pairs overrides it, and so should a wrapper around
    /// such an engine, or the remote-write path loses that shortcut.
    fn append_raw(&self, batch: &[RawSeries<'_>]) -> Result<AppendOutcome, StorageError> {
        let owned: Vec<TimeSeries> = batch.iter().map(RawSeries::to_time_series).collect();
        self.append(&owned)
    }

    /// Appends native-histogram samples, durable as `append`'s. Engines that store floats
    /// only refuse the batch with a reason.
    fn append_histograms(
        &self,
        _batch: &[crate::SeriesHistograms],
    ) -> Result<AppendOutcome, StorageError> {
        Err(StorageError::InvalidRequest {
            reason: "this storage engine does not store native histograms".into(),
        })
    }

    /// Whether created timestamps are to be handed to this writer with their samples
    /// ([`Self::append_with_created`]) rather than stored as zeros: true for a writer that
    /// forwards (an agent's buffer, sending them on in remote write 2.0), so its callers
    /// read them even where they would store no zeros themselves.
    fn forwards_created_timestamps(&self) -> bool {
        false
    }

    /// [`Self::append`] with each series' created timestamp (`created[i]` is `batch[i]`'s,
    /// ms; 0 or missing: none), for a writer that forwards them. The default drops them.
    fn append_with_created(
        &self,
        batch: &[TimeSeries],
        _created: &[i64],
    ) -> Result<AppendOutcome, StorageError> {
        self.append(batch)
    }

    /// [`Self::append_histograms`] with each series' created timestamp, as
    /// [`Self::append_with_created`].
    fn append_histograms_with_created(
        &self,
        batch: &[crate::SeriesHistograms],
        _created: &[i64],
    ) -> Result<AppendOutcome, StorageError> {
        self.append_histograms(batch)
    }

    /// Created-timestamp zero samples (Prometheus's `created-timestamp-zero-ingestion`):
    /// one sample per series, a float 0 in `floats` or an empty histogram in `histograms`,
    /// at the series' created timestamp, appended before its real samples so `rate()` and
    /// `increase()` count a new counter from zero. A zero is stored only when it is newer
    /// than every sample its series holds, never through an out-of-order window: a zero
    /// inside a series' history would read as a counter reset. The others are skipped, and
    /// counted in the outcome but not as the engine's refusals (a long-lived counter sends
    /// the same created timestamp with every write). Engines that cannot tell refuse the
    /// whole call with `InvalidRequest` (the default), and the caller stores no zeros.
    fn append_created_zeros(
        &self,
        _floats: &[RawSeries<'_>],
        _histograms: &[crate::SeriesHistograms],
    ) -> Result<AppendOutcome, StorageError> {
        Err(StorageError::InvalidRequest {
            reason: "this storage engine does not ingest created-timestamp zero samples".into(),
        })
    }

    /// Records metric metadata (type, help, unit); engines may keep only the latest.
    fn append_metadata(&self, _metadata: &[MetricMetadata]) -> Result<(), StorageError> {
        Ok(())
    }

    /// Stores exemplars of series (see [`crate::ExemplarStorage`]). The default keeps none
    /// and counts them as `disabled`; an engine with an exemplar store overrides it, and so
    /// must a wrapper around one, or exemplars are lost silently.
    fn append_exemplars(
        &self,
        batch: &[crate::SeriesExemplars],
    ) -> Result<crate::ExemplarOutcome, StorageError> {
        Ok(crate::exemplars_disabled(batch))
    }
}

/// One matching series whose samples are decoded only when asked, so a query can hold one
/// series' samples at a time (or decode several in parallel) instead of every sample of
/// every match. Cursors borrow the reader; they are cheap until `decode_into` is called.
pub trait SeriesCursor: Send + Sync {
    fn labels(&self) -> &Labels;

    /// One label's value, None when the series lacks it: what grouping and the counter
    /// check ask, so a cursor holding its labels in another form (the head's interned pairs)
    /// answers without building the whole set, as `labels` must.
    fn label_value(&self, name: &str) -> Option<&str> {
        self.labels().get(name)
    }

    /// Appends the series' samples within the selection's `[mint, maxt]` to `buf`, in time
    /// order and without duplicate timestamps; returns how many were appended.
    fn decode_into(&self, buf: &mut Vec<Sample>) -> Result<usize, StorageError>;

    /// The series' native-histogram samples within the selection, in time order; none for
    /// engines that store only floats.
    fn histograms(&self) -> &[HistogramSample] {
        &[]
    }

    /// Start timestamps (Prometheus 3's per-sample "ST", ms; 0 where a sample has none) of
    /// the float samples `decode_into` appends, one per sample in the same order; returns
    /// how many were appended. A series without start timestamps appends none (the
    /// default), so series without them cost nothing: readers that do not store them
    /// (the embedded TSDB today) need not implement this.
    fn decode_start_times_into(&self, _buf: &mut Vec<i64>) -> Result<usize, StorageError> {
        Ok(0)
    }

    /// Start timestamps aligned with [`Self::histograms`], or empty when the series has
    /// none.
    fn histogram_start_times(&self) -> &[i64] {
        &[]
    }
}

/// A cursor over samples already in memory: the default for readers without a lazy path.
pub struct MaterializedCursor(pub SeriesSamples);

impl SeriesCursor for MaterializedCursor {
    fn labels(&self) -> &Labels {
        &self.0.labels
    }

    fn decode_into(&self, buf: &mut Vec<Sample>) -> Result<usize, StorageError> {
        buf.extend_from_slice(&self.0.samples);
        Ok(self.0.samples.len())
    }

    fn histograms(&self) -> &[HistogramSample] {
        &self.0.histograms
    }
}

/// Reads metrics. Implementations are internally synchronised.
pub trait MetricReader: Send + Sync {
    /// Matching series, sorted by labels, as cursors that decode their samples in
    /// `[mint, maxt]` on demand. Series with no sample in the range may be included (their
    /// decode appends nothing). This default materialises through `select`; engines override
    /// it to decode chunk by chunk, skipping chunks outside the range.
    fn select_lazy<'a>(
        &'a self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Box<dyn SeriesCursor + 'a>>, StorageError> {
        Ok(self
            .select(matchers, mint, maxt)?
            .into_iter()
            .map(|s| Box::new(MaterializedCursor(s)) as Box<dyn SeriesCursor + 'a>)
            .collect())
    }

    /// Series matching all matchers, with their samples in `[mint, maxt]`.
    fn select(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError>;

    /// `select`, failing with `TooManySamples` once the series read would hold more than
    /// `max_samples` samples in all (float and native-histogram samples alike). Engines override it to stop reading as soon as the
    /// budget is spent, so a query over too much data fails before it is all in memory;
    /// this default reads everything, then counts.
    fn select_limited(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        max_samples: usize,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let series = self.select(matchers, mint, maxt)?;
        // Native-histogram samples count as samples.
        let n: usize = series
            .iter()
            .map(|s| s.samples.len() + s.histograms.len())
            .sum();
        if n > max_samples {
            return Err(StorageError::TooManySamples { limit: max_samples });
        }
        Ok(series)
    }

    /// Label sets of the series matching all matchers that have data in `[mint, maxt]`,
    /// sorted.
    fn series(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError>;

    /// Sorted, distinct label names of matching series (all series when `matchers` is empty).
    fn label_names(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Sorted, distinct values of one label over matching series (all series when
    /// `matchers` is empty).
    fn label_values(
        &self,
        name: &str,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Metadata per metric family, optionally for one metric.
    fn metadata(&self, _metric: Option<&str>) -> Result<Vec<MetricMetadata>, StorageError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limited_select_counts_histograms() {
        struct One;
        impl MetricReader for One {
            fn select(
                &self,
                _: &[LabelMatcher],
                _: i64,
                _: i64,
            ) -> Result<Vec<SeriesSamples>, StorageError> {
                Ok(vec![SeriesSamples {
                    labels: Labels::empty(),
                    samples: vec![Sample::new(1, 1.0)],
                    histograms: vec![HistogramSample {
                        t: 2,
                        h: Default::default(),
                    }],
                }])
            }
            fn series(
                &self,
                _: &[LabelMatcher],
                _: i64,
                _: i64,
            ) -> Result<Vec<Labels>, StorageError> {
                Ok(vec![])
            }
            fn label_names(
                &self,
                _: &[LabelMatcher],
                _: i64,
                _: i64,
            ) -> Result<Vec<String>, StorageError> {
                Ok(vec![])
            }
            fn label_values(
                &self,
                _: &str,
                _: &[LabelMatcher],
                _: i64,
                _: i64,
            ) -> Result<Vec<String>, StorageError> {
                Ok(vec![])
            }
        }
        assert!(One.select_limited(&[], 0, 10, 2).is_ok());
        assert!(matches!(
            One.select_limited(&[], 0, 10, 1),
            Err(StorageError::TooManySamples { limit: 1 })
        ));
    }

    #[test]
    fn http_status_is_the_one_mapping() {
        let invalid = StorageError::InvalidRequest { reason: "x".into() };
        assert_eq!(invalid.http_status(), 400);
        assert_eq!(StorageError::TooManySamples { limit: 1 }.http_status(), 422);
        assert_eq!(StorageError::Closed.http_status(), 503);
        let down = StorageError::Unavailable { reason: "x".into() };
        assert_eq!(down.http_status(), 503);
        assert_eq!(
            StorageError::io("op", std::io::Error::other("x")).http_status(),
            500
        );
    }
}
