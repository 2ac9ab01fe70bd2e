//! OTLP metrics (`ExportMetricsServiceRequest`, protobuf and JSON), translated into
//! Prometheus series the way Prometheus 3's OTLP receiver does in its default
//! `UnderscoreEscapingWithSuffixes` mode:
//!
//! | OTLP | Prometheus |
//! |---|---|
//! | metric name | invalid characters to `_` (runs collapsed), unit and type suffixes ([`names`]) |
//! | gauge; non-monotonic cumulative sum | one gauge series per data point |
//! | monotonic cumulative sum | a counter, `_total` |
//! | explicit-bucket histogram | `_bucket{le}` (cumulative counts, `+Inf` = count), `_count`, `_sum` when sent |
//! | exponential histogram | a native histogram under the metric's name (unit suffix, no `_total`/`_bucket`): schema = scale (above 8 downscaled to 8 by merging buckets), bucket indices shifted by one, zero threshold 1e-128, counter-reset hint unknown |
//! | summary | `{quantile}` per quantile, `_count`, `_sum` |
//! | data point attributes | labels (names sanitized, values as text; names that collide are joined by `;`) |
//! | resource `service.namespace` / `service.name` | `job` (`namespace/name`) |
//! | resource `service.instance.id` | `instance` |
//! | every other resource attribute | labels of `target_info` (written only when there are any) |
//! | promoted resource attributes (a list, by the server's flag) | labels of every series too |
//! | `FLAG_NO_RECORDED_VALUE` | the staleness marker (an exponential-histogram point is skipped) |
//! | time (nanoseconds) | sample timestamp (milliseconds) |
//!
//! As in Prometheus 3's defaults: scope name and version are not labels, no `_created`
//! series is written and the start time is not stored, unless
//! [`Settings::created_timestamp_zero_ingestion`] asks for a zero at it (monotonic sums,
//! histograms, summaries' `_count` and `_sum`). Refused, each data point alone
//! (OTLP's partial success, the valid rest kept): delta or unspecified temporality, a
//! histogram whose bucket counts do not match its bounds (or, exponential, its count), an
//! exponential histogram with a scale below -4 or bucket indices outside 32 bits, and a name
//! or label name that sanitizes to nothing. Exponential histograms come out as
//! [`Translated::histograms`], beside the float series.

mod json;
pub mod names;
mod translate;
mod wire;

use prost::Message;

pub use json::decode_json;
pub use translate::{translate, Settings, Translated};
pub use wire::decode_proto;

/// `AggregationTemporality`'s values.
pub const TEMPORALITY_DELTA: i32 = 1;
pub const TEMPORALITY_CUMULATIVE: i32 = 2;
/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
pub const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// Attributes with their values as text, in the order sent.
pub type TextAttrs = Vec<(String, String)>;

/// A decoded `ExportMetricsServiceRequest`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExportMetrics {
    pub resources: Vec<ResourceMetrics>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceMetrics {
    pub attributes: TextAttrs,
    pub scopes: Vec<ScopeMetrics>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScopeMetrics {
    pub name: String,
    pub version: String,
    pub metrics: Vec<Metric>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metric {
    pub name: String,
    pub description: String,
    pub unit: String,
    pub data: Data,
}

/// The `data` oneof of a metric.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Data {
    #[default]
    Missing,
    Gauge(Vec<NumberPoint>),
    Sum {
        points: Vec<NumberPoint>,
        temporality: i32,
        monotonic: bool,
    },
    Histogram {
        points: Vec<HistogramPoint>,
        temporality: i32,
    },
    ExponentialHistogram {
        points: Vec<ExponentialHistogramPoint>,
        temporality: i32,
    },
    Summary(Vec<SummaryPoint>),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NumberPoint {
    pub attributes: TextAttrs,
    pub start_ns: u64,
    pub time_ns: u64,
    pub value: f64,
    pub flags: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramPoint {
    pub attributes: TextAttrs,
    pub start_ns: u64,
    pub time_ns: u64,
    pub count: u64,
    pub sum: Option<f64>,
    pub bucket_counts: Vec<u64>,
    pub bounds: Vec<f64>,
    pub flags: u32,
}

/// An `ExponentialHistogramDataPoint` (exemplars, min and max are not read).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExponentialHistogramPoint {
    pub attributes: TextAttrs,
    pub start_ns: u64,
    pub time_ns: u64,
    pub count: u64,
    pub sum: Option<f64>,
    pub scale: i32,
    pub zero_count: u64,
    /// Read, but not used: Prometheus writes its default zero threshold instead.
    pub zero_threshold: f64,
    pub positive: ExponentialBuckets,
    pub negative: ExponentialBuckets,
    pub flags: u32,
}

/// One side of an exponential histogram: `bucket_counts[i]` counts the values in
/// `(base^(offset+i), base^(offset+i+1)]`, base = 2^(2^-scale).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExponentialBuckets {
    pub offset: i32,
    pub bucket_counts: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SummaryPoint {
    pub attributes: TextAttrs,
    pub start_ns: u64,
    pub time_ns: u64,
    pub count: u64,
    pub sum: f64,
    /// (quantile, value)
    pub quantiles: Vec<(f64, f64)>,
    pub flags: u32,
}

#[derive(Clone, PartialEq, Message)]
struct ExportMetricsServiceResponse {
    #[prost(message, optional, tag = "1")]
    partial_success: Option<ExportMetricsPartialSuccess>,
}

#[derive(Clone, PartialEq, Message)]
struct ExportMetricsPartialSuccess {
    #[prost(int64, tag = "1")]
    rejected_data_points: i64,
    #[prost(string, tag = "2")]
    error_message: String,
}

/// The protobuf `ExportMetricsServiceResponse`: empty when nothing was refused.
pub fn encode_response(rejected: u64, message: &str) -> Vec<u8> {
    if rejected == 0 && message.is_empty() {
        return Vec::new();
    }
    ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: message.to_string(),
        }),
    }
    .encode_to_vec()
}

/// The OTLP/JSON `ExportMetricsServiceResponse` (64-bit integers as strings).
pub fn encode_response_json(rejected: u64, message: &str) -> String {
    if rejected == 0 && message.is_empty() {
        return "{}".into();
    }
    serde_json::json!({
        "partialSuccess": {
            "rejectedDataPoints": rejected.to_string(),
            "errorMessage": message,
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests;
