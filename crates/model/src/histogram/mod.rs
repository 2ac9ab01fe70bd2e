//! Native histograms (Prometheus's sparse, exponential-bucket histograms and the
//! custom-bucket variant NHCB) as PromQL values: the float representation with absolute
//! bucket counts, the arithmetic PromQL applies to them, the functions that read them
//! (`histogram_quantile`, `histogram_fraction`, `histogram_stdvar`, ...), the `{{...}}`
//! notation of the Prometheus test scripts and the JSON shape of the HTTP API.
//!
//! Semantics follow Prometheus's `model/histogram` and `promql` packages, down to the order
//! of floating-point operations where that decides the last bit of a result.

mod bounds;
mod funcs;
mod gomath;
mod json;
mod layout;
mod notation;
mod ops;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use bounds::exponential_bound;
pub use funcs::{fraction, quantile, stddev, stdvar};

/// The schema number of histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;
/// Lowest and highest schema of exponential buckets.
pub const EXPONENTIAL_SCHEMA_MIN: i32 = -4;
pub const EXPONENTIAL_SCHEMA_MAX: i32 = 8;

/// Whether a schema number denotes exponential buckets.
pub fn is_exponential_schema(schema: i32) -> bool {
    (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&schema)
}

/// What is known about a counter reset at this histogram (Prometheus's `CounterResetHint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    #[default]
    Unknown,
    CounterReset,
    NotCounterReset,
    Gauge,
}

/// A run of `length` consecutive buckets starting `offset` buckets after the end of the
/// previous span (for the first span: at bucket index `offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketSpan {
    pub offset: i32,
    pub length: u32,
}

/// A native histogram with float counts. Bucket counts are absolute (not deltas).
#[derive(Clone, Debug, PartialEq)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    /// -4..=8 for exponential buckets, [`CUSTOM_BUCKETS_SCHEMA`] for custom buckets.
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<BucketSpan>,
    pub negative_spans: Vec<BucketSpan>,
    pub positive_buckets: Vec<f64>,
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema -53 only), strictly increasing, without
    /// the implicit +Inf.
    pub custom_values: Vec<f64>,
}

impl Default for FloatHistogram {
    /// The empty histogram `{{}}`: schema 0, no buckets, all counts zero.
    fn default() -> Self {
        FloatHistogram {
            counter_reset_hint: CounterResetHint::Unknown,
            schema: 0,
            zero_threshold: 0.0,
            zero_count: 0.0,
            count: 0.0,
            sum: 0.0,
            positive_spans: Vec::new(),
            negative_spans: Vec::new(),
            positive_buckets: Vec::new(),
            negative_buckets: Vec::new(),
            custom_values: Vec::new(),
        }
    }
}

/// One histogram sample of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSample {
    pub t: i64,
    pub h: Arc<FloatHistogram>,
}

/// The histogram samples of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesHistograms {
    pub labels: crate::Labels,
    pub samples: Vec<HistogramSample>,
}

/// One bucket with its bounds, as the bucket iterators of Prometheus yield it.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
}

impl Bucket {
    /// The share of the bucket's observations below `v`, interpolating linearly or on a
    /// logarithmic scale (for exponential buckets).
    pub fn fraction_below(&self, v: f64, linear: bool) -> f64 {
        if linear {
            return (v - self.lower) / (self.upper - self.lower);
        }
        let log_lower = gomath::log2(self.lower.abs());
        let log_upper = gomath::log2(self.upper.abs());
        let log_v = gomath::log2(v.abs());
        if v > 0.0 {
            (log_v - log_lower) / (log_upper - log_lower)
        } else {
            1.0 - ((log_v - log_upper) / (log_lower - log_upper))
        }
    }
}

/// What an addition or subtraction reports besides its result (Prometheus turns these into
/// annotations).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddInfo {
    /// One side said counter reset, the other not; the result's hint became unknown.
    pub counter_reset_collision: bool,
    /// Custom-bucket histograms with different bounds were mapped onto the bounds both have.
    pub custom_bounds_reconciled: bool,
}

/// Why a histogram is invalid or an operation on histograms is refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum HistogramError {
    #[error("cannot apply this operation on histograms with a mix of exponential and custom bucket schemas")]
    IncompatibleSchemas,
    #[error("histogram has an invalid schema {0}: it must be between -4 and 8 for exponential buckets, or -53 for custom buckets")]
    InvalidSchema(i32),
    #[error("{side}: spans need {needed} buckets, but {have} buckets are given")]
    SpansBucketsMismatch {
        side: &'static str,
        needed: usize,
        have: usize,
    },
    #[error("{side}: span number {span} has a negative offset {offset}")]
    NegativeSpanOffset {
        side: &'static str,
        span: usize,
        offset: i32,
    },
    #[error("{side}: bucket number {bucket} has a negative observation count {count}")]
    NegativeBucketCount {
        side: &'static str,
        bucket: usize,
        count: f64,
    },
    #[error("zero bucket has a negative observation count {0}")]
    NegativeZeroCount(f64),
    #[error("histogram's observation count is negative: {0}")]
    NegativeCount(f64),
    #[error("custom buckets: bounds must not be NaN")]
    CustomBoundNaN,
    #[error(
        "custom buckets: bounds must be strictly increasing, but {current} follows {previous}"
    )]
    CustomBoundsNotIncreasing { previous: f64, current: f64 },
    #[error("custom buckets: the last bound +Inf is implicit and must not be given")]
    CustomBoundInfinite,
    #[error("custom buckets: {bounds} bounds cannot cover spans of total length {span_length}")]
    CustomBoundsTooFew { bounds: usize, span_length: usize },
    #[error("custom buckets: the zero count must be 0")]
    CustomBucketsZeroCount,
    #[error("custom buckets: the zero threshold must be 0")]
    CustomBucketsZeroThreshold,
    #[error("custom buckets: there must be no negative spans")]
    CustomBucketsNegativeSpans,
    #[error("custom buckets: there must be no negative buckets")]
    CustomBucketsNegativeBuckets,
    #[error("a histogram with an exponential schema must not have custom bounds")]
    ExponentialWithCustomBounds,
    #[error("cannot reduce the resolution: {0}")]
    ReduceResolution(String),
    #[error("bad histogram notation: {0}")]
    Notation(String),
}

impl FloatHistogram {
    /// Whether the histogram has custom bucket bounds (NHCB).
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Checks spans against bucket counts, the custom-bucket rules and that no count is
    /// negative. As in Prometheus, `count` is not checked against the sum of the buckets.
    pub fn validate(&self) -> Result<(), HistogramError> {
        if self.uses_custom_buckets() {
            check_custom_bounds(
                &self.custom_values,
                &self.positive_spans,
                self.positive_buckets.len(),
            )?;
            if self.zero_count != 0.0 {
                return Err(HistogramError::CustomBucketsZeroCount);
            }
            if self.zero_threshold != 0.0 {
                return Err(HistogramError::CustomBucketsZeroThreshold);
            }
            if !self.negative_spans.is_empty() {
                return Err(HistogramError::CustomBucketsNegativeSpans);
            }
            if !self.negative_buckets.is_empty() {
                return Err(HistogramError::CustomBucketsNegativeBuckets);
            }
        } else if is_exponential_schema(self.schema) {
            check_spans(
                "positive side",
                &self.positive_spans,
                self.positive_buckets.len(),
            )?;
            check_spans(
                "negative side",
                &self.negative_spans,
                self.negative_buckets.len(),
            )?;
            check_buckets("negative side", &self.negative_buckets)?;
            if self.zero_count < 0.0 {
                return Err(HistogramError::NegativeZeroCount(self.zero_count));
            }
            if !self.custom_values.is_empty() {
                return Err(HistogramError::ExponentialWithCustomBounds);
            }
        } else {
            return Err(HistogramError::InvalidSchema(self.schema));
        }
        if self.count < 0.0 {
            return Err(HistogramError::NegativeCount(self.count));
        }
        check_buckets("positive side", &self.positive_buckets)
    }

    /// Scales all counts and the sum by `factor`; a negative factor makes it a gauge.
    pub fn mul(&mut self, factor: f64) {
        self.zero_count *= factor;
        self.count *= factor;
        self.sum *= factor;
        for b in &mut self.positive_buckets {
            *b *= factor;
        }
        for b in &mut self.negative_buckets {
            *b *= factor;
        }
        if factor < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// Divides all counts and the sum by `divisor`. Dividing by zero keeps the (now
    /// infinite or NaN) count, sum and zero count but drops all buckets, as Prometheus does
    /// (and then leaves the counter reset hint alone); a negative divisor makes it a gauge.
    pub fn div(&mut self, divisor: f64) {
        self.zero_count /= divisor;
        self.count /= divisor;
        self.sum /= divisor;
        if divisor == 0.0 {
            self.positive_buckets.clear();
            self.negative_buckets.clear();
            self.positive_spans.clear();
            self.negative_spans.clear();
            return;
        }
        for b in &mut self.positive_buckets {
            *b /= divisor;
        }
        for b in &mut self.negative_buckets {
            *b /= divisor;
        }
        if divisor < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// The sum divided by the count (`histogram_avg`).
    pub fn avg(&self) -> f64 {
        self.sum / self.count
    }

    /// Equality as the Prometheus test scripts judge an expected histogram (`self`) against
    /// a result: both compacted first, schema, zero threshold, custom bounds and the bucket
    /// layout exact, count, sum, zero count and bucket counts within a relative 1e-6 (NaN
    /// equal to NaN). The counter reset hint is not compared; see
    /// [`FloatHistogram::equals_with_hint`].
    pub fn equals(&self, other: &FloatHistogram) -> bool {
        self.equals_with_hint(other, false)
    }

    /// [`FloatHistogram::equals`], also requiring equal counter reset hints when
    /// `compare_hint` (the scripts do so when the expected histogram names one).
    pub fn equals_with_hint(&self, other: &FloatHistogram, compare_hint: bool) -> bool {
        let mut exp = self.clone();
        let mut cur = other.clone();
        exp.compact(0);
        cur.compact(0);
        if exp.schema != cur.schema
            || !almost_equal(exp.count, cur.count)
            || !almost_equal(exp.sum, cur.sum)
        {
            return false;
        }
        if exp.uses_custom_buckets() && !custom_bounds_match(&exp.custom_values, &cur.custom_values)
        {
            return false;
        }
        if exp.zero_threshold != cur.zero_threshold || !almost_equal(exp.zero_count, cur.zero_count)
        {
            return false;
        }
        if !spans_match(&exp.negative_spans, &cur.negative_spans)
            || !buckets_almost_equal(&exp.negative_buckets, &cur.negative_buckets)
            || !spans_match(&exp.positive_spans, &cur.positive_spans)
            || !buckets_almost_equal(&exp.positive_buckets, &cur.positive_buckets)
        {
            return false;
        }
        !compare_hint || exp.counter_reset_hint == cur.counter_reset_hint
    }

    /// Whether any count, the sum or a custom bound is infinite (an aggregation overflowed).
    pub fn has_overflow(&self) -> bool {
        self.zero_count.is_infinite()
            || self.count.is_infinite()
            || self.sum.is_infinite()
            || self.positive_buckets.iter().any(|v| v.is_infinite())
            || self.negative_buckets.iter().any(|v| v.is_infinite())
            || self.custom_values.iter().any(|v| v.is_infinite())
    }
}

/// Whether two sets of custom bounds are the same.
pub fn custom_bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn check_spans(
    side: &'static str,
    spans: &[BucketSpan],
    buckets: usize,
) -> Result<(), HistogramError> {
    let mut needed = 0usize;
    for (n, span) in spans.iter().enumerate() {
        if n > 0 && span.offset < 0 {
            return Err(HistogramError::NegativeSpanOffset {
                side,
                span: n + 1,
                offset: span.offset,
            });
        }
        needed += span.length as usize;
    }
    if needed != buckets {
        return Err(HistogramError::SpansBucketsMismatch {
            side,
            needed,
            have: buckets,
        });
    }
    Ok(())
}

fn check_buckets(side: &'static str, buckets: &[f64]) -> Result<(), HistogramError> {
    match buckets.iter().position(|&c| c < 0.0) {
        Some(i) => Err(HistogramError::NegativeBucketCount {
            side,
            bucket: i + 1,
            count: buckets[i],
        }),
        None => Ok(()),
    }
}

fn check_custom_bounds(
    bounds: &[f64],
    spans: &[BucketSpan],
    buckets: usize,
) -> Result<(), HistogramError> {
    let mut prev = f64::NEG_INFINITY;
    for (i, &cur) in bounds.iter().enumerate() {
        if cur.is_nan() {
            return Err(HistogramError::CustomBoundNaN);
        }
        if i > 0 && cur <= prev {
            return Err(HistogramError::CustomBoundsNotIncreasing {
                previous: prev,
                current: cur,
            });
        }
        prev = cur;
    }
    if prev == f64::INFINITY {
        return Err(HistogramError::CustomBoundInfinite);
    }
    let mut needed = 0usize;
    let mut total = 0i64;
    for (n, span) in spans.iter().enumerate() {
        if span.offset < 0 {
            return Err(HistogramError::NegativeSpanOffset {
                side: "custom buckets",
                span: n + 1,
                offset: span.offset,
            });
        }
        needed += span.length as usize;
        total += span.length as i64 + span.offset as i64;
    }
    if needed != buckets {
        return Err(HistogramError::SpansBucketsMismatch {
            side: "custom buckets",
            needed,
            have: buckets,
        });
    }
    if (bounds.len() as i64 + 1) < total {
        return Err(HistogramError::CustomBoundsTooFew {
            bounds: bounds.len(),
            span_length: total as usize,
        });
    }
    Ok(())
}

/// Prometheus's `almost.Equal` with the test scripts' epsilon 1e-6 (the stale-marker NaN
/// is not singled out: histograms never carry it in their counts).
fn almost_equal(a: f64, b: f64) -> bool {
    const EPSILON: f64 = 1e-6;
    let min_normal = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

fn buckets_almost_equal(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| almost_equal(*x, *y))
}

/// Whether two span lists describe the same bucket layout, zero-length spans aside.
fn spans_match(a: &[BucketSpan], b: &[BucketSpan]) -> bool {
    normalized_spans(a) == normalized_spans(b)
}

/// The spans with zero-length spans folded into the offset of the next one and trailing
/// zero-length spans dropped.
fn normalized_spans(spans: &[BucketSpan]) -> Vec<BucketSpan> {
    let mut out = Vec::with_capacity(spans.len());
    let mut carry = 0i32;
    for s in spans {
        if s.length == 0 {
            carry = carry.wrapping_add(s.offset);
            continue;
        }
        out.push(BucketSpan {
            offset: s.offset.wrapping_add(carry),
            length: s.length,
        });
        carry = 0;
    }
    out
}
