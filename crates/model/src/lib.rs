//! The shared vocabulary of meshlens: labels, samples, native histograms, matchers, spans,
//! and the two storage contracts (metrics and spans) that every engine implements and every
//! reader consumes, with the span aggregations a store may run itself (`aggregate`) and the
//! calls between services it may pair itself (`calls`).
//!
//! Design decision: the storage traits live here, not in the engines, so that PromQL and the
//! analyses depend only on this crate and run unchanged over the embedded engines or ClickHouse.

pub mod aggregate;
pub mod calls;
pub mod duration;
pub mod exemplar;
pub mod hash;
pub mod histogram;
pub mod labels;
pub mod matcher;
pub mod projection;
pub mod sample;
pub mod span_ref;
pub mod storage;
pub mod time;
pub mod trace;

pub use aggregate::{
    DurationSummary, MeasureValue, SpanAggregation, SpanDimension, SpanField, SpanFilter,
    SpanGroup, SpanMeasure,
};
pub use calls::{CallAggregation, CallGroup, CallRole};
pub use duration::{format_duration, format_duration_days, parse_duration, DurationError};
pub use exemplar::{
    exemplars_disabled, Exemplar, ExemplarOutcome, ExemplarReader, SeriesExemplars,
    EXEMPLAR_MAX_LABEL_RUNES,
};
pub use histogram::{
    AddInfo, Bucket, BucketSpan, CounterResetHint, FloatHistogram, HistogramError, HistogramSample,
    SeriesHistograms,
};
pub use labels::{
    escape_label_value, push_escaped_label_value, Label, Labels, LabelsBuilder, METRIC_NAME,
};
pub use matcher::{LabelMatcher, MatchOp, MatcherError};
pub use projection::{Memo, Projection, SpanPart, SpanRow, NO_ID};
pub use sample::{format_value, is_stale_nan, write_value, Sample, STALE_NAN, STALE_NAN_BITS};
pub use span_ref::{sort_tags, EndpointRef, SpanRef};
pub use storage::{
    AppendOutcome, HeadCardinality, MaterializedCursor, MetricMetadata, MetricReader, MetricWriter,
    RawSeries, RejectReason, SeriesCursor, SeriesSamples, StorageError, TimeSeries,
};
pub use trace::{
    AggregateFn, Annotation, DependencyLink, Endpoint, RequiredOnly, Span, SpanKind, SpanReader,
    SpanWriter, TraceId, TraceQuery,
};
