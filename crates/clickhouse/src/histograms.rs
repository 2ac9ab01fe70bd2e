//! Native histogram samples in the `histograms` table (schema step 4): one row a sample,
//! keyed as `samples` rows are, with the histogram's parts as columns.

use std::sync::Arc;

use meshlens_model::{BucketSpan, CounterResetHint, FloatHistogram, HistogramSample};

use crate::rowbinary::{RowReader, RowWriter};
use crate::ClickHouseError;

/// The table's columns after the key `fingerprint, t`, in the order rows are written and
/// read.
pub(crate) const VALUE_COLUMNS: &str = "reset_hint, schema, zero_threshold, zero_count, \
    count, sum, positive_offsets, positive_lengths, positive_buckets, negative_offsets, \
    negative_lengths, negative_buckets, custom_values";

fn hint_code(h: CounterResetHint) -> u8 {
    match h {
        CounterResetHint::Unknown => 0,
        CounterResetHint::CounterReset => 1,
        CounterResetHint::NotCounterReset => 2,
        CounterResetHint::Gauge => 3,
    }
}

fn hint_of(code: u8) -> Result<CounterResetHint, ClickHouseError> {
    Ok(match code {
        0 => CounterResetHint::Unknown,
        1 => CounterResetHint::CounterReset,
        2 => CounterResetHint::NotCounterReset,
        3 => CounterResetHint::Gauge,
        _ => {
            return Err(ClickHouseError::Decode {
                reason: format!("histogram counter-reset hint {code} is not 0 to 3"),
            })
        }
    })
}

fn put_spans(w: &mut RowWriter, spans: &[BucketSpan]) {
    let offsets: Vec<i32> = spans.iter().map(|s| s.offset).collect();
    let lengths: Vec<u32> = spans.iter().map(|s| s.length).collect();
    w.array_of(&offsets, RowWriter::i32);
    w.array_of(&lengths, RowWriter::u32);
}

fn get_spans(r: &mut RowReader<'_>) -> Result<Vec<BucketSpan>, ClickHouseError> {
    let offsets = r.array_of(4, RowReader::i32)?;
    let lengths = r.array_of(4, RowReader::u32)?;
    if offsets.len() != lengths.len() {
        return Err(ClickHouseError::Decode {
            reason: format!(
                "histogram spans with {} offsets and {} lengths",
                offsets.len(),
                lengths.len()
            ),
        });
    }
    Ok(offsets
        .into_iter()
        .zip(lengths)
        .map(|(offset, length)| BucketSpan { offset, length })
        .collect())
}

/// Writes one row: series `fp`'s sample `s`.
pub(crate) fn put(w: &mut RowWriter, fp: u64, s: &HistogramSample) {
    let h = &*s.h;
    w.u64(fp);
    w.i64(s.t);
    w.u8(hint_code(h.counter_reset_hint));
    w.i32(h.schema);
    for v in [h.zero_threshold, h.zero_count, h.count, h.sum] {
        w.f64(v);
    }
    put_spans(w, &h.positive_spans);
    w.array_of(&h.positive_buckets, RowWriter::f64);
    put_spans(w, &h.negative_spans);
    w.array_of(&h.negative_buckets, RowWriter::f64);
    w.array_of(&h.custom_values, RowWriter::f64);
}

/// Reads one row as [`put`] wrote it: the series' fingerprint and the sample.
pub(crate) fn get(r: &mut RowReader<'_>) -> Result<(u64, HistogramSample), ClickHouseError> {
    let fp = r.u64()?;
    let t = r.i64()?;
    let counter_reset_hint = hint_of(r.u8()?)?;
    let schema = r.i32()?;
    let (zero_threshold, zero_count, count, sum) = (r.f64()?, r.f64()?, r.f64()?, r.f64()?);
    let positive_spans = get_spans(r)?;
    let positive_buckets = r.array_of(8, RowReader::f64)?;
    let negative_spans = get_spans(r)?;
    let negative_buckets = r.array_of(8, RowReader::f64)?;
    let custom_values = r.array_of(8, RowReader::f64)?;
    let h = FloatHistogram {
        counter_reset_hint,
        schema,
        zero_threshold,
        zero_count,
        count,
        sum,
        positive_spans,
        negative_spans,
        positive_buckets,
        negative_buckets,
        custom_values,
    };
    Ok((fp, HistogramSample { t, h: Arc::new(h) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: i64, hint: CounterResetHint) -> HistogramSample {
        let h = FloatHistogram {
            counter_reset_hint: hint,
            schema: -2,
            zero_threshold: 0.001,
            zero_count: 1.0,
            count: 12.0,
            sum: 7.25,
            positive_spans: vec![
                BucketSpan {
                    offset: -1,
                    length: 2,
                },
                BucketSpan {
                    offset: 3,
                    length: 1,
                },
            ],
            negative_spans: vec![BucketSpan {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![2.0, 3.5, 4.0],
            negative_buckets: vec![1.5],
            custom_values: Vec::new(),
        };
        HistogramSample { t, h: Arc::new(h) }
    }

    #[test]
    fn rows_round_trip() {
        let samples = [
            sample(-5, CounterResetHint::Unknown),
            sample(1_764_806_400_000, CounterResetHint::Gauge),
        ];
        let mut w = RowWriter::new();
        for (i, s) in samples.iter().enumerate() {
            put(&mut w, i as u64 + 7, s);
        }
        let b = w.into_bytes();
        let mut r = RowReader::new(&b);
        for (i, want) in samples.iter().enumerate() {
            let (fp, got) = get(&mut r).unwrap();
            assert_eq!((fp, &got), (i as u64 + 7, want));
        }
        assert!(r.is_done());
        // A row cut short anywhere is an error, never a panic or a shorter histogram.
        let mut one = RowWriter::new();
        put(&mut one, 7, &samples[0]);
        for cut in 0..one.len() {
            assert!(get(&mut RowReader::new(&b[..cut])).is_err(), "cut at {cut}");
        }
        // An unknown counter-reset hint is refused.
        let mut bad = b.to_vec();
        bad[16] = 9;
        assert!(get(&mut RowReader::new(&bad)).is_err());
    }
}
