//! Created-timestamp zero samples, as Prometheus's `created-timestamp-zero-ingestion`
//! feature writes them: a counter (or a histogram's or summary's `_count`, `_sum` and
//! `_bucket` series, or a native histogram) that says when it started (its created, or
//! start, timestamp "CT") gets a zero at CT before its first real sample. Without it, a
//! counter first seen at 10 reads as if it had always been 10, and `rate()`/`increase()`
//! lose the increase up to that first sample (and a restarted counter's reset is found
//! only by its value dropping).
//!
//! This module only decides what the zero is and when there is one; the storage decides
//! whether the series already has a sample at or after CT
//! (`MetricWriter::append_created_zeros`), in which case the zero is skipped silently.

use std::sync::Arc;

use meshlens_model::{CounterResetHint, FloatHistogram, HistogramSample, Sample};

/// The float zero before a series' first sample at `first_t`, for created timestamp `ct`
/// (ms). None when there is no created timestamp (0, or negative: nothing a sender means)
/// or when it is not strictly before the sample: a zero at the sample's own time would
/// replace or contradict it, and one after it would be out of order (Prometheus refuses
/// both, `ErrCTNewerThanSample`).
pub fn float_zero(ct: i64, first_t: i64) -> Option<Sample> {
    (ct > 0 && ct < first_t).then(|| Sample::new(ct, 0.0))
}

/// The histogram zero before `first`, for created timestamp `ct`: an empty histogram
/// (no observations, sum 0) with `first`'s schema, zero threshold and custom bounds, so
/// the series' layout does not change between the zero and the real sample, and marked
/// as a counter reset, which a counter's start is. None as for [`float_zero`].
pub fn histogram_zero(ct: i64, first: &HistogramSample) -> Option<HistogramSample> {
    float_zero(ct, first.t)?;
    let h = &first.h;
    Some(HistogramSample {
        t: ct,
        h: Arc::new(FloatHistogram {
            counter_reset_hint: CounterResetHint::CounterReset,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            custom_values: h.custom_values.clone(),
            ..FloatHistogram::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_model::BucketSpan;

    #[test]
    fn a_zero_only_strictly_before_the_sample() {
        assert_eq!(float_zero(1_000, 5_000), Some(Sample::new(1_000, 0.0)));
        assert_eq!(float_zero(4_999, 5_000), Some(Sample::new(4_999, 0.0)));
        // CT at or after the sample, or none at all.
        assert_eq!(float_zero(5_000, 5_000), None);
        assert_eq!(float_zero(6_000, 5_000), None);
        assert_eq!(float_zero(0, 5_000), None);
        assert_eq!(float_zero(-1, 5_000), None);
    }

    #[test]
    fn a_histogram_zero_keeps_the_layout_and_drops_the_observations() {
        let first = HistogramSample {
            t: 10_000,
            h: Arc::new(FloatHistogram {
                counter_reset_hint: CounterResetHint::NotCounterReset,
                schema: meshlens_model::histogram::CUSTOM_BUCKETS_SCHEMA,
                zero_threshold: 0.001,
                zero_count: 2.0,
                count: 7.0,
                sum: 12.5,
                positive_spans: vec![BucketSpan {
                    offset: 0,
                    length: 2,
                }],
                positive_buckets: vec![3.0, 2.0],
                custom_values: vec![0.1, 1.0],
                ..FloatHistogram::default()
            }),
        };
        let zero = histogram_zero(4_000, &first).unwrap();
        assert_eq!(zero.t, 4_000);
        assert_eq!(
            *zero.h,
            FloatHistogram {
                counter_reset_hint: CounterResetHint::CounterReset,
                schema: meshlens_model::histogram::CUSTOM_BUCKETS_SCHEMA,
                zero_threshold: 0.001,
                custom_values: vec![0.1, 1.0],
                ..FloatHistogram::default()
            }
        );
        assert!(histogram_zero(10_000, &first).is_none());
        assert!(histogram_zero(0, &first).is_none());
    }
}
