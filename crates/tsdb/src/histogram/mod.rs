//! Native-histogram (float histogram) support shared by the WAL, the head and the blocks:
//! the compact byte form of one histogram, and the histogram chunk.
//!
//! One histogram (`put_histogram`), all integers LEB128 varints, all floats in the WAL's
//! compact value form (an integer count takes a byte or two, anything else 9 bytes; every
//! value reads back bit for bit):
//!
//! ```text
//! flags u8        bits 0-1: counter-reset hint (0 unknown, 1 reset, 2 not reset, 3 gauge)
//!                 bit 2: same layout as the previous histogram of the stream (chunks only):
//!                        schema, zero threshold, spans and custom values are left out
//!                 other bits: 0
//! [layout]        unless bit 2: schema varint, zero_threshold value,
//!                 positive spans, negative spans (each: count uvarint, then per span
//!                 offset varint, length uvarint), custom values (count uvarint, values)
//! zero_count value, count value, sum value
//! positive buckets: count uvarint, then absolute counts as values
//! negative buckets: likewise
//! ```
//!
//! Histogram chunks: `encode_chunk` writes the packed, bit-level form (encoding 4, in
//! [`packed`]). Blocks written before it hold the byte form (encoding 3), which still
//! reads: `[3 u8][count u16 BE]` then per sample the timestamp (the first as a varint,
//! later ones as uvarint deltas from the previous; samples are sorted and distinct)
//! followed by the histogram, with bit 2 set when its layout equals the previous sample's.
//! Such a histogram's numbers (zero count, count, sum, then every bucket, whose number the
//! layout gives) are predicted from the previous samples — the previous value, or when the
//! sample before it shares the layout too, the previous value plus the last change — and
//! written as the difference when that is an integer or has two decimals and adds back bit
//! for bit, else as the raw value (the tag 2 and 8 bytes).

mod packed;

use std::sync::Arc;

use meshlens_model::histogram::{BucketSpan, CounterResetHint};
use meshlens_model::{FloatHistogram, HistogramSample};

use crate::chunk::ChunkError;
use crate::varint::{put_uvarint, put_varint, Reader};
use crate::wal::{get_value, put_raw_value, put_value, small_code, small_value};

/// The encoding byte of a float-histogram chunk (floats use 1 and 2).
pub const ENC_FLOAT_HISTOGRAM: u8 = 3;

const SAME_LAYOUT: u8 = 4;

fn hint_bits(h: CounterResetHint) -> u8 {
    match h {
        CounterResetHint::Unknown => 0,
        CounterResetHint::CounterReset => 1,
        CounterResetHint::NotCounterReset => 2,
        CounterResetHint::Gauge => 3,
    }
}

fn hint_from(b: u8) -> CounterResetHint {
    match b & 3 {
        1 => CounterResetHint::CounterReset,
        2 => CounterResetHint::NotCounterReset,
        3 => CounterResetHint::Gauge,
        _ => CounterResetHint::Unknown,
    }
}

/// Whether two histograms share schema, zero threshold, spans and custom values (bit for
/// bit), so the second may leave them out.
fn same_layout(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let bits = |v: &[f64], w: &[f64]| {
        v.len() == w.len() && v.iter().zip(w).all(|(x, y)| x.to_bits() == y.to_bits())
    };
    a.schema == b.schema
        && a.positive_buckets.len() == b.positive_buckets.len()
        && a.negative_buckets.len() == b.negative_buckets.len()
        && a.zero_threshold.to_bits() == b.zero_threshold.to_bits()
        && a.positive_spans == b.positive_spans
        && a.negative_spans == b.negative_spans
        && bits(&a.custom_values, &b.custom_values)
}

fn put_spans(out: &mut Vec<u8>, spans: &[BucketSpan]) {
    put_uvarint(out, spans.len() as u64);
    for s in spans {
        put_varint(out, i64::from(s.offset));
        put_uvarint(out, u64::from(s.length));
    }
}

fn put_floats(out: &mut Vec<u8>, v: &[f64]) {
    put_uvarint(out, v.len() as u64);
    for x in v {
        put_value(out, *x);
    }
}

/// Writes what [`same_layout`] compares: schema, zero threshold, spans, custom values.
fn put_layout(out: &mut Vec<u8>, h: &FloatHistogram) {
    put_varint(out, i64::from(h.schema));
    put_value(out, h.zero_threshold);
    put_spans(out, &h.positive_spans);
    put_spans(out, &h.negative_spans);
    put_floats(out, &h.custom_values);
}

/// Reads what [`put_layout`] wrote, as a histogram with no observations.
fn get_layout(r: &mut Reader) -> Option<FloatHistogram> {
    Some(FloatHistogram {
        schema: i32::try_from(r.varint()?).ok()?,
        zero_threshold: get_value(r)?,
        positive_spans: get_spans(r)?,
        negative_spans: get_spans(r)?,
        custom_values: get_floats(r)?,
        ..FloatHistogram::default()
    })
}

/// Appends `h`; with `prev`, leaves its layout out when it equals `prev`'s and writes its
/// numbers as differences from their prediction (see the module docs); `before` is the
/// sample before `prev`, used when it shares `prev`'s layout.
pub fn put_histogram(
    out: &mut Vec<u8>,
    h: &FloatHistogram,
    prev: Option<&FloatHistogram>,
    before: Option<&FloatHistogram>,
) {
    let prev = prev.filter(|p| same_layout(p, h));
    out.push(hint_bits(h.counter_reset_hint) | if prev.is_some() { SAME_LAYOUT } else { 0 });
    let Some(p1) = prev else {
        put_layout(out, h);
        put_value(out, h.zero_count);
        put_value(out, h.count);
        put_value(out, h.sum);
        put_floats(out, &h.positive_buckets);
        put_floats(out, &h.negative_buckets);
        return;
    };
    let p2 = before.filter(|b| same_layout(b, p1));
    for (v, pred) in numbers(h).zip(Predictor { p1, p2 }.all()) {
        put_predicted(out, v, pred);
    }
}

/// A histogram's numbers in the order a predicted sample writes them.
fn numbers(h: &FloatHistogram) -> impl Iterator<Item = f64> + '_ {
    [h.zero_count, h.count, h.sum]
        .into_iter()
        .chain(h.positive_buckets.iter().copied())
        .chain(h.negative_buckets.iter().copied())
}

/// Predicts a sample's numbers from the previous one or two samples of the same layout.
struct Predictor<'a> {
    p1: &'a FloatHistogram,
    p2: Option<&'a FloatHistogram>,
}

impl Predictor<'_> {
    fn all(&self) -> Vec<f64> {
        let last: Vec<f64> = numbers(self.p1).collect();
        match self.p2 {
            Some(p) => last
                .iter()
                .zip(numbers(p))
                .map(|(l, o)| l + (l - o))
                .collect(),
            None => last,
        }
    }
}

/// `v` as its difference from `pred` when that reads back bit for bit in the small form,
/// else raw.
fn put_predicted(out: &mut Vec<u8>, v: f64, pred: f64) {
    if let Some(code) = small_code(v - pred) {
        if small_value(code).is_some_and(|d| (pred + d).to_bits() == v.to_bits()) {
            put_uvarint(out, code);
            return;
        }
    }
    put_raw_value(out, v);
}

fn get_predicted(r: &mut Reader, pred: f64) -> Option<f64> {
    let u = r.uvarint()?;
    if u == 2 {
        return Some(f64::from_bits(r.u64_le()?));
    }
    Some(pred + small_value(u)?)
}

/// Counts read from input are capped before allocating: a corrupt length fails on the
/// bytes that are not there, never on an allocation.
const MAX_PREALLOC: usize = 1024;

fn get_spans(r: &mut Reader) -> Option<Vec<BucketSpan>> {
    let n = usize::try_from(r.uvarint()?).ok()?;
    let mut v = Vec::with_capacity(n.min(MAX_PREALLOC));
    for _ in 0..n {
        let offset = i32::try_from(r.varint()?).ok()?;
        let length = u32::try_from(r.uvarint()?).ok()?;
        v.push(BucketSpan { offset, length });
    }
    Some(v)
}

fn get_floats(r: &mut Reader) -> Option<Vec<f64>> {
    let n = usize::try_from(r.uvarint()?).ok()?;
    let mut v = Vec::with_capacity(n.min(MAX_PREALLOC));
    for _ in 0..n {
        v.push(get_value(r)?);
    }
    Some(v)
}

/// Reads one histogram; `prev` (and `before`, as [`put_histogram`] was given them) supply
/// the layout and the predictions when the histogram was written against them (None there,
/// or any malformed input, fails).
pub fn get_histogram(
    r: &mut Reader,
    prev: Option<&FloatHistogram>,
    before: Option<&FloatHistogram>,
) -> Option<FloatHistogram> {
    let flags = *r.bytes(1)?.first()?;
    if flags & !(3 | SAME_LAYOUT) != 0 {
        return None;
    }
    if flags & SAME_LAYOUT != 0 {
        let p1 = prev?;
        let p2 = before.filter(|b| same_layout(b, p1));
        let preds = Predictor { p1, p2 }.all();
        let mut values = Vec::with_capacity(preds.len());
        for pred in preds {
            values.push(get_predicted(r, pred)?);
        }
        let npos = p1.positive_buckets.len();
        return Some(FloatHistogram {
            counter_reset_hint: hint_from(flags),
            schema: p1.schema,
            zero_threshold: p1.zero_threshold,
            zero_count: values[0],
            count: values[1],
            sum: values[2],
            positive_spans: p1.positive_spans.clone(),
            negative_spans: p1.negative_spans.clone(),
            positive_buckets: values[3..3 + npos].to_vec(),
            negative_buckets: values[3 + npos..].to_vec(),
            custom_values: p1.custom_values.clone(),
        });
    }
    let mut h = get_layout(r)?;
    h.counter_reset_hint = hint_from(flags);
    h.zero_count = get_value(r)?;
    h.count = get_value(r)?;
    h.sum = get_value(r)?;
    h.positive_buckets = get_floats(r)?;
    h.negative_buckets = get_floats(r)?;
    Some(h)
}

/// An encoded chunk of histogram samples with its time span.
#[derive(Clone, Debug, PartialEq)]
pub struct HistChunk {
    pub bytes: Vec<u8>,
    pub min_t: i64,
    pub max_t: i64,
}

/// Encodes samples (sorted by time, distinct timestamps, at most 65535) into one packed
/// chunk.
pub fn encode_chunk(samples: &[HistogramSample]) -> HistChunk {
    HistChunk {
        bytes: packed::encode(samples),
        min_t: samples.first().map_or(0, |s| s.t),
        max_t: samples.last().map_or(0, |s| s.t),
    }
}

/// Adds a decoded sample to `buf` (counted in `n`) when it lies in `range`; false once it
/// is past the range's end, as every later sample of the chunk is too.
fn keep_in_range(
    buf: &mut Vec<HistogramSample>,
    t: i64,
    h: &Arc<FloatHistogram>,
    (mint, maxt): (i64, i64),
    n: &mut usize,
) -> bool {
    if t > maxt {
        return false;
    }
    if t >= mint {
        buf.push(HistogramSample { t, h: h.clone() });
        *n += 1;
    }
    true
}

/// Appends a chunk's samples within `[mint, maxt]` to `buf`; returns how many. Malformed
/// bytes fail with how many samples were read before them.
pub fn decode_chunk_into(
    bytes: &[u8],
    mint: i64,
    maxt: i64,
    buf: &mut Vec<HistogramSample>,
) -> Result<usize, ChunkError> {
    let (&enc, rest) = bytes.split_first().ok_or(ChunkError::Truncated(0))?;
    if enc != ENC_FLOAT_HISTOGRAM && enc != packed::ENC_PACKED_HISTOGRAM {
        return Err(ChunkError::UnknownEncoding(enc));
    }
    let count = rest
        .get(..2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as usize)
        .ok_or(ChunkError::Truncated(0))?;
    if enc == packed::ENC_PACKED_HISTOGRAM {
        return packed::decode_into(&rest[2..], count, mint, maxt, buf);
    }
    let mut r = Reader::new(&rest[2..]);
    let mut t = 0i64;
    let mut prev: Option<Arc<FloatHistogram>> = None;
    let mut before: Option<Arc<FloatHistogram>> = None;
    let mut n = 0;
    for i in 0..count {
        let step = if i == 0 {
            r.varint()
        } else {
            r.uvarint().map(|d| d as i64)
        };
        let step = step.ok_or(ChunkError::Truncated(i))?;
        if i > 0 && step <= 0 {
            return Err(ChunkError::Malformed(i));
        }
        t = if i == 0 { step } else { t.wrapping_add(step) };
        let h = Arc::new(
            get_histogram(&mut r, prev.as_deref(), before.as_deref())
                .ok_or(ChunkError::Malformed(i))?,
        );
        if !keep_in_range(buf, t, &h, (mint, maxt), &mut n) {
            return Ok(n);
        }
        before = prev.take();
        prev = Some(h);
    }
    if !r.is_empty() {
        return Err(ChunkError::Malformed(count));
    }
    Ok(n)
}

#[cfg(test)]
/// The byte-form chunk (encoding 3) that earlier releases wrote; kept to test that its
/// blocks still read.
pub(crate) fn encode_byte_chunk(samples: &[HistogramSample]) -> HistChunk {
    assert!(samples.len() <= u16::MAX as usize, "chunk too large");
    let mut bytes = Vec::with_capacity(3 + samples.len() * 24);
    bytes.push(ENC_FLOAT_HISTOGRAM);
    bytes.extend_from_slice(&(samples.len() as u16).to_be_bytes());
    let mut prev: Option<&HistogramSample> = None;
    let mut before: Option<&HistogramSample> = None;
    for s in samples {
        match prev {
            None => put_varint(&mut bytes, s.t),
            Some(p) => put_uvarint(&mut bytes, s.t.wrapping_sub(p.t) as u64),
        }
        put_histogram(&mut bytes, &s.h, prev.map(|p| &*p.h), before.map(|b| &*b.h));
        before = prev;
        prev = Some(s);
    }
    HistChunk {
        bytes,
        min_t: samples.first().map_or(0, |s| s.t),
        max_t: samples.last().map_or(0, |s| s.t),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A histogram with every field set, varying with `i`.
    pub(crate) fn sample_histogram(i: u32) -> FloatHistogram {
        let f = f64::from(i);
        FloatHistogram {
            counter_reset_hint: match i % 4 {
                0 => CounterResetHint::Unknown,
                1 => CounterResetHint::CounterReset,
                2 => CounterResetHint::NotCounterReset,
                _ => CounterResetHint::Gauge,
            },
            schema: if i % 5 == 4 { -53 } else { 3 - (i % 3) as i32 },
            zero_threshold: 1e-128,
            zero_count: f,
            count: 10.0 + 3.0 * f,
            sum: 12.5 + f * 0.1,
            positive_spans: vec![
                BucketSpan {
                    offset: -2,
                    length: 2,
                },
                BucketSpan {
                    offset: 3,
                    length: 1,
                },
            ],
            negative_spans: if i.is_multiple_of(2) {
                vec![BucketSpan {
                    offset: 0,
                    length: 1,
                }]
            } else {
                vec![]
            },
            positive_buckets: vec![1.0 + f, 2.5, f64::from_bits(0x4009_21fb_5444_2d18)],
            negative_buckets: if i.is_multiple_of(2) { vec![f] } else { vec![] },
            custom_values: if i % 5 == 4 { vec![0.5, 1.0] } else { vec![] },
        }
    }

    type Encoder = fn(&[HistogramSample]) -> Vec<u8>;

    fn encode_byte_chunk(samples: &[HistogramSample]) -> Vec<u8> {
        super::encode_byte_chunk(samples).bytes
    }

    fn packed_chunk(samples: &[HistogramSample]) -> Vec<u8> {
        encode_chunk(samples).bytes
    }

    /// Everything of a histogram, floats as their bits (NaN equals itself).
    fn bits_of(h: &FloatHistogram) -> String {
        let b = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        format!(
            "{:?} {} {} {:?} {:?} {:?} {:?} {:?}",
            h.counter_reset_hint,
            h.schema,
            h.zero_threshold.to_bits(),
            b(&[h.zero_count, h.count, h.sum]),
            (&h.positive_spans, &h.negative_spans),
            b(&h.positive_buckets),
            b(&h.negative_buckets),
            b(&h.custom_values)
        )
    }

    #[test]
    fn histograms_round_trip_alone_and_against_a_previous_one() {
        for i in 0..12 {
            let h = sample_histogram(i);
            let mut out = Vec::new();
            put_histogram(&mut out, &h, None, None);
            let mut r = Reader::new(&out);
            assert_eq!(get_histogram(&mut r, None, None), Some(h.clone()));
            assert!(r.is_empty());
            // Against itself the layout is left out: shorter, and needs the previous one.
            let mut short = Vec::new();
            put_histogram(&mut short, &h, Some(&h), None);
            assert!(short.len() < out.len());
            assert_eq!(get_histogram(&mut Reader::new(&short), None, None), None);
            assert_eq!(
                get_histogram(&mut Reader::new(&short), Some(&h), None),
                Some(h)
            );
        }
    }

    #[test]
    fn steady_counters_cost_a_byte_per_bucket_and_odd_values_read_back_exactly() {
        let samples: Vec<HistogramSample> = (0..120i64)
            .map(|i| {
                let f = i as f64;
                let odd = match i {
                    40 => f64::NAN,
                    41 => 1e300,
                    42 => 0.1 + 0.2,
                    _ => 0.5 * f,
                };
                HistogramSample {
                    t: 1_000 + i * 15_000,
                    h: Arc::new(FloatHistogram {
                        schema: 3,
                        count: 40.0 * f + 3.0,
                        sum: odd,
                        positive_spans: vec![BucketSpan {
                            offset: -5,
                            length: 20,
                        }],
                        positive_buckets: (0..20).map(|b| 2.0 * f + b as f64).collect(),
                        ..FloatHistogram::default()
                    }),
                }
            })
            .collect();
        // Byte form: 20 buckets + zero count + count + sum + flags + time, about 25 bytes
        // per sample. Packed: a bit per steady bucket, the sum's XOR and a few bits more.
        for (encode, per_sample) in [(encode_byte_chunk as Encoder, 30), (packed_chunk, 10)] {
            let bytes = encode(&samples);
            assert!(
                bytes.len() < 120 * per_sample,
                "{} bytes, encoding {}",
                bytes.len(),
                bytes[0]
            );
            let mut back = Vec::new();
            decode_chunk_into(&bytes, i64::MIN, i64::MAX, &mut back).unwrap();
            assert_eq!(back.len(), samples.len());
            for (a, b) in samples.iter().zip(&back) {
                assert_eq!(a.t, b.t);
                assert_eq!(a.h.sum.to_bits(), b.h.sum.to_bits(), "at {}", a.t);
                assert_eq!(a.h.positive_buckets, b.h.positive_buckets);
                assert_eq!(a.h.count, b.h.count);
            }
        }
    }

    #[test]
    fn chunks_round_trip_and_select_a_range() {
        let samples: Vec<HistogramSample> = (0..50)
            .map(|i| HistogramSample {
                t: -20_000 + i64::from(i) * 15_000,
                h: Arc::new(sample_histogram(i / 7)),
            })
            .collect();
        let c = encode_chunk(&samples);
        assert_eq!((c.min_t, c.max_t), (-20_000, -20_000 + 49 * 15_000));
        for bytes in [c.bytes, encode_byte_chunk(&samples)] {
            let mut all = Vec::new();
            assert_eq!(
                decode_chunk_into(&bytes, i64::MIN, i64::MAX, &mut all),
                Ok(50)
            );
            assert_eq!(all, samples);
            let mut some = Vec::new();
            assert_eq!(decode_chunk_into(&bytes, 0, 100_000, &mut some), Ok(7));
            assert_eq!(some[..], samples[2..9]);
        }
    }

    #[test]
    fn damaged_chunks_fail_without_panicking() {
        let samples: Vec<HistogramSample> = (0..5)
            .map(|i| HistogramSample {
                t: i64::from(i) * 1000,
                h: Arc::new(sample_histogram(i)),
            })
            .collect();
        for encode in [encode_byte_chunk as Encoder, packed_chunk] {
            let bytes = encode(&samples);
            for cut in 0..bytes.len() {
                let mut buf = Vec::new();
                assert!(
                    decode_chunk_into(&bytes[..cut], i64::MIN, i64::MAX, &mut buf).is_err(),
                    "cut at {cut} of encoding {}",
                    bytes[0]
                );
            }
            let mut extra = bytes.clone();
            extra.push(0);
            assert!(decode_chunk_into(&extra, i64::MIN, i64::MAX, &mut Vec::new()).is_err());
        }
        let c = encode_chunk(&samples);
        let mut wrong = c.bytes.clone();
        wrong[0] = 1;
        assert_eq!(
            decode_chunk_into(&wrong, i64::MIN, i64::MAX, &mut Vec::new()),
            Err(ChunkError::UnknownEncoding(1))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_chunk_bytes_never_panic(
            packed in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let enc = if packed { packed::ENC_PACKED_HISTOGRAM } else { ENC_FLOAT_HISTOGRAM };
            let mut bytes = vec![enc];
            bytes.extend(body);
            let _ = decode_chunk_into(&bytes, i64::MIN, i64::MAX, &mut Vec::new());
        }

        /// Any run of histograms (layouts and hints changing, counts and sums of any bits)
        /// reads back bit for bit from a packed chunk.
        #[test]
        fn packed_chunks_round_trip_any_histograms(
            steps in proptest::collection::vec((0u32..12, any::<u64>(), 0u8..4, 1i64..100_000), 1..60),
        ) {
            let mut t = -1_000_000i64;
            let samples: Vec<HistogramSample> = steps
                .iter()
                .map(|&(shape, bits, kind, dt)| {
                    t += dt;
                    let mut h = sample_histogram(shape);
                    let odd = f64::from_bits(bits);
                    match kind {
                        0 => h.sum = odd,
                        1 => h.positive_buckets[0] = odd,
                        2 => h.count = odd,
                        _ => h.zero_count = (bits % 1000) as f64,
                    }
                    HistogramSample { t, h: Arc::new(h) }
                })
                .collect();
            let bytes = packed_chunk(&samples);
            let mut back = Vec::new();
            prop_assert_eq!(decode_chunk_into(&bytes, i64::MIN, i64::MAX, &mut back), Ok(samples.len()));
            for (a, b) in samples.iter().zip(&back) {
                prop_assert_eq!(a.t, b.t);
                prop_assert_eq!(bits_of(&a.h), bits_of(&b.h));
            }
        }
    }
}
