//! The packed histogram chunk (encoding 4), a bit stream like the float chunks', so that a
//! steady histogram costs bits per bucket rather than bytes. Layout in
//! `docs/format/chunks.md` ("Histogram chunks").
//!
//! Per sample: the timestamp as the float chunks write theirs; a header bit (`0`: the
//! previous sample's hint and layout, `1`: 2 bits of hint and a bit saying whether the
//! layout is the previous one's); a new layout as its bytes; then the zero count and every
//! bucket as the difference from its prediction (the previous value plus its last change,
//! see [`super::Predictor`]), the count as the difference from the zero count plus the
//! buckets (which it equals unless NaN observations were counted), and the sum XOR-ed with
//! the previous sample's sum, as Gorilla does.

use meshlens_model::{FloatHistogram, HistogramSample};
use std::sync::Arc;

use super::{
    get_layout, hint_bits, hint_from, keep_in_range, numbers, put_layout, same_layout, Predictor,
};
use crate::chunk::bits::{BitReader, BitWriter};
use crate::chunk::{read_dod_value, write_dod_value, ChunkError, XorDecoder, XorState};
use crate::varint::{put_uvarint, Reader};

/// The encoding byte of a packed float-histogram chunk.
pub const ENC_PACKED_HISTOGRAM: u8 = 4;

/// Zig-zag payload widths of a difference, by the count of one bits before the prefix's
/// zero: `0` is zero, `10` + 2 bits, `110` + 5, `1110` + 8, `11110` + 12, `111110` + 20,
/// `1111110` + 40. Seven ones are followed by the value's 64 raw bits. Narrow first
/// buckets, as a bucket's change from one scrape to the next is mostly a few observations.
const DIFF_WIDTHS: [u8; 6] = [2, 5, 8, 12, 20, 40];
const RAW_ONES: u32 = DIFF_WIDTHS.len() as u32 + 1;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// `v` as an integer difference from `pred` when adding it back to `pred` gives `v` bit for
/// bit, else raw.
fn write_diff(w: &mut BitWriter, v: f64, pred: f64) {
    let d = v - pred;
    if d.is_finite() && d == d.trunc() && d.abs() < (1u64 << 38) as f64 {
        let di = d as i64;
        if (pred + di as f64).to_bits() == v.to_bits() {
            if di == 0 {
                w.write_bit(false);
                return;
            }
            let z = zigzag(di);
            for (i, &bits) in DIFF_WIDTHS.iter().enumerate() {
                if z < (1u64 << bits) {
                    let ones = i as u8 + 1;
                    w.write_bits(((1u64 << ones) - 1) << 1, ones + 1);
                    w.write_bits(z, bits);
                    return;
                }
            }
        }
    }
    w.write_bits((1u64 << RAW_ONES) - 1, RAW_ONES as u8);
    w.write_bits(v.to_bits(), 64);
}

fn read_diff(r: &mut BitReader, pred: f64) -> Option<f64> {
    let mut ones = 0u32;
    while ones < RAW_ONES && r.read_bits(1)? == 1 {
        ones += 1;
    }
    if ones == RAW_ONES {
        return Some(f64::from_bits(r.read_bits(64)?));
    }
    if ones == 0 {
        return Some(pred);
    }
    let z = r.read_bits(u32::from(DIFF_WIDTHS[ones as usize - 1]))?;
    Some(pred + unzigzag(z) as f64)
}

/// The observations the buckets hold.
fn bucket_total(h: &FloatHistogram) -> f64 {
    h.zero_count + h.positive_buckets.iter().sum::<f64>() + h.negative_buckets.iter().sum::<f64>()
}

/// The count predicted: the observations the buckets hold, plus what the previous sample
/// counted beyond its buckets (NaN observations are counted but in no bucket).
fn count_prediction(h: &FloatHistogram, prev: Option<&FloatHistogram>) -> f64 {
    let total = bucket_total(h);
    match prev {
        Some(p) => total + (p.count - bucket_total(p)),
        None => total,
    }
}

/// The numbers predicted in time, in [`numbers`]' order without the count and sum.
fn predicted(h: &FloatHistogram) -> impl Iterator<Item = f64> + '_ {
    numbers(h).take(1).chain(numbers(h).skip(3))
}

/// Encodes samples (sorted by time, distinct timestamps, at most 65535).
pub fn encode(samples: &[HistogramSample]) -> Vec<u8> {
    assert!(samples.len() <= u16::MAX as usize, "chunk too large");
    let mut bytes = Vec::with_capacity(3 + samples.len() * 16);
    bytes.push(ENC_PACKED_HISTOGRAM);
    bytes.extend_from_slice(&(samples.len() as u16).to_be_bytes());
    let mut w = BitWriter::from_parts(bytes, 0);
    let mut sums = XorState::new();
    let mut layout = Vec::new();
    let (mut prev_t, mut prev_delta) = (0i64, 0i64);
    for (i, s) in samples.iter().enumerate() {
        if i == 0 {
            w.write_bits(s.t as u64, 64);
        } else {
            let delta = s.t.wrapping_sub(prev_t);
            write_dod_value(&mut w, delta.wrapping_sub(prev_delta));
            prev_delta = delta;
        }
        prev_t = s.t;
        let h = &*s.h;
        let p1 = i
            .checked_sub(1)
            .map(|j| &*samples[j].h)
            .filter(|p| same_layout(p, h));
        let hint = hint_bits(h.counter_reset_hint);
        if p1.is_some_and(|p| hint_bits(p.counter_reset_hint) == hint) {
            w.write_bit(false);
        } else {
            w.write_bits(0b1000 | u64::from(hint) << 1 | u64::from(p1.is_some()), 4);
        }
        match p1 {
            Some(p1) => {
                let p2 = i
                    .checked_sub(2)
                    .map(|j| &*samples[j].h)
                    .filter(|b| same_layout(b, p1));
                let preds = Predictor { p1, p2 }.all();
                let preds = preds.iter().take(1).chain(&preds[3..]);
                for (v, pred) in predicted(h).zip(preds) {
                    write_diff(&mut w, v, *pred);
                }
            }
            None => {
                layout.clear();
                put_layout(&mut layout, h);
                put_uvarint(&mut layout, h.positive_buckets.len() as u64);
                put_uvarint(&mut layout, h.negative_buckets.len() as u64);
                w.write_bits(layout.len() as u64, 32);
                for b in &layout {
                    w.write_bits(u64::from(*b), 8);
                }
                for v in predicted(h) {
                    write_diff(&mut w, v, 0.0);
                }
            }
        }
        write_diff(&mut w, h.count, count_prediction(h, p1));
        sums.write(&mut w, h.sum, i == 0);
    }
    let mut bytes = w.bytes;
    bytes.shrink_to_fit();
    bytes
}

/// Appends the samples within `[mint, maxt]` of a packed chunk (its bytes after the count)
/// to `buf`; returns how many.
pub fn decode_into(
    body: &[u8],
    count: usize,
    mint: i64,
    maxt: i64,
    buf: &mut Vec<HistogramSample>,
) -> Result<usize, ChunkError> {
    let mut r = BitReader::new(body);
    let mut sums = XorDecoder::default();
    let (mut t, mut delta) = (0i64, 0i64);
    let mut prev: Option<Arc<FloatHistogram>> = None;
    let mut before: Option<Arc<FloatHistogram>> = None;
    let mut hint = 0u8;
    let mut n = 0;
    for i in 0..count {
        let bad = || ChunkError::Malformed(i);
        if i == 0 {
            t = r.read_bits(64).ok_or(ChunkError::Truncated(0))? as i64;
        } else {
            let dod = read_dod_value(&mut r).ok_or(ChunkError::Truncated(i))?;
            delta = delta.wrapping_add(dod);
            if delta <= 0 {
                return Err(bad());
            }
            t = t.wrapping_add(delta);
        }
        let same_layout_as_prev = match r.read_bits(1).ok_or(bad())? {
            0 => prev.is_some().then_some(true).ok_or(bad())?,
            _ => {
                let v = r.read_bits(3).ok_or(bad())?;
                hint = (v >> 1) as u8;
                v & 1 == 1
            }
        };
        let mut h = if same_layout_as_prev {
            let p1 = prev.as_deref().ok_or(bad())?;
            let p2 = before.as_deref().filter(|b| same_layout(b, p1));
            let preds = Predictor { p1, p2 }.all();
            let mut values = Vec::with_capacity(preds.len() - 2);
            for pred in preds.iter().take(1).chain(&preds[3..]) {
                values.push(read_diff(&mut r, *pred).ok_or(bad())?);
            }
            let npos = p1.positive_buckets.len();
            FloatHistogram {
                schema: p1.schema,
                zero_threshold: p1.zero_threshold,
                zero_count: values[0],
                positive_spans: p1.positive_spans.clone(),
                negative_spans: p1.negative_spans.clone(),
                positive_buckets: values[1..1 + npos].to_vec(),
                negative_buckets: values[1 + npos..].to_vec(),
                custom_values: p1.custom_values.clone(),
                ..FloatHistogram::default()
            }
        } else {
            let len = r.read_bits(32).ok_or(bad())? as usize;
            // Each byte takes 8 bits of what is left: a corrupt length fails here.
            let mut layout = Vec::with_capacity(len.min(body.len()));
            for _ in 0..len {
                layout.push(r.read_bits(8).ok_or(bad())? as u8);
            }
            let mut lr = Reader::new(&layout);
            let mut h = get_layout(&mut lr).ok_or(bad())?;
            let npos = usize::try_from(lr.uvarint().ok_or(bad())?).map_err(|_| bad())?;
            let nneg = usize::try_from(lr.uvarint().ok_or(bad())?).map_err(|_| bad())?;
            if !lr.is_empty() {
                return Err(bad());
            }
            h.zero_count = read_diff(&mut r, 0.0).ok_or(bad())?;
            for (n, out) in [
                (npos, &mut h.positive_buckets),
                (nneg, &mut h.negative_buckets),
            ] {
                // Each number takes a bit at least.
                out.reserve(n.min(body.len() * 8));
                for _ in 0..n {
                    out.push(read_diff(&mut r, 0.0).ok_or(bad())?);
                }
            }
            h
        };
        h.counter_reset_hint = hint_from(hint);
        let p1 = prev.as_deref().filter(|_| same_layout_as_prev);
        h.count = read_diff(&mut r, count_prediction(&h, p1)).ok_or(bad())?;
        h.sum = f64::from_bits(
            if i == 0 {
                sums.first(&mut r)
            } else {
                sums.next(&mut r)
            }
            .ok_or(bad())?,
        );
        let h = Arc::new(h);
        if !keep_in_range(buf, t, &h, (mint, maxt), &mut n) {
            return Ok(n);
        }
        before = prev.take();
        prev = Some(h);
    }
    // Only the last byte's padding may follow, and it is zero.
    let pos = r.position();
    if pos.div_ceil(8) != body.len() || r.read_bits((8 - pos % 8) as u32 % 8) != Some(0) {
        return Err(ChunkError::Malformed(count));
    }
    Ok(n)
}
