//! The `Histogram` message remote write 1.0 and 2.0 share (a native histogram sample):
//! integer histograms send bucket counts as deltas, float histograms as absolute counts;
//! both become a [`FloatHistogram`]. A histogram whose spans and buckets disagree is
//! refused on its own (the reason says how); bytes that are not the message fail the
//! request as any other wire error.

use std::sync::Arc;

use meshlens_model::histogram::{BucketSpan, CounterResetHint, FloatHistogram};
use meshlens_model::HistogramSample;

use super::wire::{Cursor, WireError, FIXED64, LEN, VARINT};

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Packed (or, as protobuf allows, repeated unpacked) varints or doubles of field `wt`.
fn repeated_varints(c: &mut Cursor<'_>, wt: u8, out: &mut Vec<u64>) -> Result<(), WireError> {
    if wt == VARINT {
        out.push(c.varint()?);
        return Ok(());
    }
    c.expect(wt, LEN, "packed varints are not length-delimited")?;
    let (b, at) = c.bytes()?;
    let mut p = Cursor::new(b, at);
    while !p.done() {
        out.push(p.varint()?);
    }
    Ok(())
}

fn repeated_doubles(c: &mut Cursor<'_>, wt: u8, out: &mut Vec<f64>) -> Result<(), WireError> {
    if wt == FIXED64 {
        out.push(f64::from_bits(c.fixed64()?));
        return Ok(());
    }
    c.expect(wt, LEN, "packed doubles are not length-delimited")?;
    let (b, at) = c.bytes()?;
    let mut p = Cursor::new(b, at);
    while !p.done() {
        out.push(f64::from_bits(p.fixed64()?));
    }
    Ok(())
}

fn span(buf: &[u8], base: usize) -> Result<BucketSpan, WireError> {
    let mut s = BucketSpan {
        offset: 0,
        length: 0,
    };
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, VARINT, "bucket span offset is not a varint")?;
                s.offset = zigzag(c.varint()?) as i32;
            }
            2 => {
                c.expect(wt, VARINT, "bucket span length is not a varint")?;
                s.length = c.varint()? as u32;
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(s)
}

/// Absolute counts from an integer histogram's deltas.
fn undelta(deltas: &[u64]) -> Vec<f64> {
    let mut acc = 0i64;
    deltas
        .iter()
        .map(|d| {
            acc = acc.wrapping_add(zigzag(*d));
            acc as f64
        })
        .collect()
}

/// Why a histogram's parts disagree, if they do.
fn check(h: &FloatHistogram) -> Result<(), String> {
    let total = |spans: &[BucketSpan]| spans.iter().map(|s| u64::from(s.length)).sum::<u64>();
    if total(&h.positive_spans) != h.positive_buckets.len() as u64 {
        return Err(format!(
            "positive spans cover {} buckets but {} counts were sent",
            total(&h.positive_spans),
            h.positive_buckets.len()
        ));
    }
    if total(&h.negative_spans) != h.negative_buckets.len() as u64 {
        return Err(format!(
            "negative spans cover {} buckets but {} counts were sent",
            total(&h.negative_spans),
            h.negative_buckets.len()
        ));
    }
    if let Some(b) = h
        .positive_buckets
        .iter()
        .chain(&h.negative_buckets)
        .find(|b| **b < 0.0)
    {
        return Err(format!("negative bucket count {b}"));
    }
    if h.schema == -53 {
        if !h.negative_buckets.is_empty() {
            return Err("custom-bucket histogram with negative buckets".into());
        }
        if h.custom_values.windows(2).any(|w| w[0] >= w[1]) {
            return Err("custom bucket bounds are not strictly increasing".into());
        }
    } else if !(-4..=8).contains(&h.schema) {
        return Err(format!("schema {} is outside -4..8 and not -53", h.schema));
    }
    Ok(())
}

/// One `Histogram` message: the sample, or why it is refused.
pub(super) fn parse(buf: &[u8], base: usize) -> Result<Result<HistogramSample, String>, WireError> {
    let mut h = FloatHistogram::default();
    let mut t = 0i64;
    let (mut pos_deltas, mut neg_deltas) = (Vec::new(), Vec::new());
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, VARINT, "histogram count_int is not a varint")?;
                h.count = c.varint()? as f64;
            }
            2 | 3 | 5 | 7 => {
                c.expect(wt, FIXED64, "histogram field is not a double")?;
                let v = f64::from_bits(c.fixed64()?);
                match field {
                    2 => h.count = v,
                    3 => h.sum = v,
                    5 => h.zero_threshold = v,
                    _ => h.zero_count = v,
                }
            }
            4 => {
                c.expect(wt, VARINT, "histogram schema is not a varint")?;
                h.schema = zigzag(c.varint()?) as i32;
            }
            6 => {
                c.expect(wt, VARINT, "histogram zero_count_int is not a varint")?;
                h.zero_count = c.varint()? as f64;
            }
            8 | 11 => {
                c.expect(wt, LEN, "bucket span is not length-delimited")?;
                let (b, at) = c.bytes()?;
                let s = span(b, at)?;
                if field == 8 {
                    h.negative_spans.push(s);
                } else {
                    h.positive_spans.push(s);
                }
            }
            9 => repeated_varints(&mut c, wt, &mut neg_deltas)?,
            12 => repeated_varints(&mut c, wt, &mut pos_deltas)?,
            10 => repeated_doubles(&mut c, wt, &mut h.negative_buckets)?,
            13 => repeated_doubles(&mut c, wt, &mut h.positive_buckets)?,
            14 => {
                c.expect(wt, VARINT, "histogram reset_hint is not a varint")?;
                h.counter_reset_hint = match c.varint()? {
                    1 => CounterResetHint::CounterReset,
                    2 => CounterResetHint::NotCounterReset,
                    3 => CounterResetHint::Gauge,
                    _ => CounterResetHint::Unknown,
                };
            }
            15 => {
                c.expect(wt, VARINT, "histogram timestamp is not a varint")?;
                t = c.varint()? as i64;
            }
            16 => repeated_doubles(&mut c, wt, &mut h.custom_values)?,
            _ => c.skip(wt)?,
        }
    }
    if !pos_deltas.is_empty() || !neg_deltas.is_empty() {
        if !h.positive_buckets.is_empty() || !h.negative_buckets.is_empty() {
            return Ok(Err("both integer deltas and float counts were sent".into()));
        }
        h.positive_buckets = undelta(&pos_deltas);
        h.negative_buckets = undelta(&neg_deltas);
    }
    if let Err(why) = check(&h) {
        return Ok(Err(why));
    }
    Ok(Ok(HistogramSample { t, h: Arc::new(h) }))
}
