//! The `Histogram` message remote write 1.0 and 2.0 share (a native histogram sample):
//! integer histograms send bucket counts as deltas, float histograms as absolute counts;
//! both become a [`FloatHistogram`]. A histogram whose spans and buckets disagree is
//! refused on its own (the reason says how); bytes that are not the message fail the
//! request as any other wire error. Encoding writes float histograms (absolute counts),
//! which carry integer histograms without loss too.

use std::sync::Arc;

use meshlens_model::histogram::{BucketSpan, CounterResetHint, FloatHistogram};
use meshlens_model::HistogramSample;

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use super::wire::{Cursor, WireError, FIXED64, LEN, VARINT};

pub(crate) fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Packed (or, as protobuf allows, repeated unpacked) varints or doubles of field `wt`.
pub(crate) fn repeated_varints(
    c: &mut Cursor<'_>,
    wt: u8,
    out: &mut Vec<u64>,
) -> Result<(), WireError> {
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

pub(crate) fn repeated_doubles(
    c: &mut Cursor<'_>,
    wt: u8,
    out: &mut Vec<f64>,
) -> Result<(), WireError> {
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

pub(crate) fn span(buf: &[u8], base: usize) -> Result<BucketSpan, WireError> {
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
pub(crate) fn undelta(deltas: &[u64]) -> Vec<f64> {
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
pub(crate) fn check(h: &FloatHistogram) -> Result<(), String> {
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

/// Whether every count of `h` is a whole number a 64-bit integer holds exactly, so it can go
/// as an integer histogram (what a scrape produces, and what a Prometheus receiver stores
/// in its compact integer chunks).
fn integer_counts(h: &FloatHistogram) -> bool {
    let whole = |v: f64| v >= 0.0 && v.fract() == 0.0 && v < 9_007_199_254_740_992.0;
    whole(h.count)
        && whole(h.zero_count)
        && h.positive_buckets.iter().all(|v| whole(*v))
        && h.negative_buckets.iter().all(|v| whole(*v))
}

/// One histogram sample as a `Histogram` message (the body only, without key and length),
/// appended to `out`. Integer counts go as the integer variant of both `oneof`s
/// (`count_int`, `zero_count_int`) with bucket deltas; other counts as the float variant
/// (`count_float`, `zero_count_float`) with absolute bucket counts. The `oneof`s are always
/// written, so a receiver knows the variant even when they are 0; the other fields when
/// they are not at their defaults, as a protobuf encoder leaves them out.
fn encode(s: &HistogramSample, out: &mut Vec<u8>) {
    let h = &*s.h;
    fn varint(tag: u32, v: u64, out: &mut Vec<u8>) {
        encode_key(tag, WireType::Varint, out);
        encode_varint(v, out);
    }
    /// Each bucket's count less the previous bucket's, zig-zag varints, packed.
    fn deltas(tag: u32, counts: &[f64], out: &mut Vec<u8>) {
        if counts.is_empty() {
            return;
        }
        let mut prev = 0i64;
        let values: Vec<u64> = counts
            .iter()
            .map(|c| {
                let c = *c as i64;
                let d = zigzag_encode(c - prev);
                prev = c;
                d
            })
            .collect();
        let len: usize = values.iter().map(|v| encoded_len_varint(*v)).sum();
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
        for v in values {
            encode_varint(v, out);
        }
    }
    fn double(tag: u32, v: f64, out: &mut Vec<u8>) {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn doubles(tag: u32, vs: &[f64], out: &mut Vec<u8>) {
        if vs.is_empty() {
            return;
        }
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(8 * vs.len() as u64, out);
        for v in vs {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    fn spans(tag: u32, spans: &[BucketSpan], out: &mut Vec<u8>) {
        for s in spans {
            let offset = zigzag_encode(i64::from(s.offset));
            let length = u64::from(s.length);
            let len = [offset, length]
                .iter()
                .filter(|v| **v != 0)
                .map(|v| 1 + encoded_len_varint(*v))
                .sum::<usize>();
            encode_key(tag, WireType::LengthDelimited, out);
            encode_varint(len as u64, out);
            for (field, v) in [(1, offset), (2, length)] {
                if v != 0 {
                    encode_key(field, WireType::Varint, out);
                    encode_varint(v, out);
                }
            }
        }
    }
    let integer = integer_counts(h);
    if integer {
        varint(1, h.count as u64, out);
    } else {
        double(2, h.count, out);
    }
    if h.sum.to_bits() != 0 {
        double(3, h.sum, out);
    }
    if h.schema != 0 {
        encode_key(4, WireType::Varint, out);
        encode_varint(zigzag_encode(i64::from(h.schema)), out);
    }
    if h.zero_threshold.to_bits() != 0 {
        double(5, h.zero_threshold, out);
    }
    if integer {
        varint(6, h.zero_count as u64, out);
    } else {
        double(7, h.zero_count, out);
    }
    spans(8, &h.negative_spans, out);
    if integer {
        deltas(9, &h.negative_buckets, out);
    } else {
        doubles(10, &h.negative_buckets, out);
    }
    spans(11, &h.positive_spans, out);
    if integer {
        deltas(12, &h.positive_buckets, out);
    } else {
        doubles(13, &h.positive_buckets, out);
    }
    let hint = match h.counter_reset_hint {
        CounterResetHint::Unknown => 0,
        CounterResetHint::CounterReset => 1,
        CounterResetHint::NotCounterReset => 2,
        CounterResetHint::Gauge => 3,
    };
    if hint != 0 {
        encode_key(14, WireType::Varint, out);
        encode_varint(hint, out);
    }
    if s.t != 0 {
        encode_key(15, WireType::Varint, out);
        encode_varint(s.t as u64, out);
    }
    doubles(16, &h.custom_values, out);
}

/// The `Histogram` messages of `samples`, each encoded on its own, for writers that need
/// their lengths before writing the series around them.
pub(crate) fn encode_each<'h>(
    samples: impl IntoIterator<Item = &'h HistogramSample>,
) -> Vec<Vec<u8>> {
    samples
        .into_iter()
        .map(|s| {
            let mut b = Vec::with_capacity(64);
            encode(s, &mut b);
            b
        })
        .collect()
}

/// Bytes that `messages` take as fields of the enclosing message (one-byte keys).
pub(crate) fn fields_len(messages: &[Vec<u8>]) -> usize {
    messages
        .iter()
        .map(|m| 1 + encoded_len_varint(m.len() as u64) + m.len())
        .sum()
}

/// Writes `messages`, each as field `tag` (a one-byte key: tags below 16).
pub(crate) fn write_fields(tag: u32, messages: &[Vec<u8>], out: &mut Vec<u8>) {
    debug_assert!(tag < 16);
    for m in messages {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(m.len() as u64, out);
        out.extend_from_slice(m);
    }
}

fn zigzag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Histogram samples of the shapes an encoder must carry: exponential buckets on both sides
/// with a zero bucket, custom buckets (schema -53), a gauge histogram with fractional
/// counts, a NaN sum after a counter reset, and the empty histogram.
#[cfg(test)]
pub(crate) fn test_shapes() -> Vec<HistogramSample> {
    let span = |offset, length| BucketSpan { offset, length };
    let shapes = [
        FloatHistogram {
            schema: 3,
            zero_threshold: 0.001,
            zero_count: 2.0,
            count: 14.0,
            sum: -3.75,
            positive_spans: vec![span(-2, 2), span(3, 1)],
            positive_buckets: vec![1.0, 4.0, 2.0],
            negative_spans: vec![span(1, 2)],
            negative_buckets: vec![3.0, 2.0],
            ..Default::default()
        },
        FloatHistogram {
            schema: -53,
            count: 9.0,
            sum: 4.5,
            positive_spans: vec![span(0, 2), span(1, 1)],
            positive_buckets: vec![2.0, 3.0, 4.0],
            custom_values: vec![0.1, 0.5, 1.0],
            counter_reset_hint: CounterResetHint::NotCounterReset,
            ..Default::default()
        },
        FloatHistogram {
            schema: -2,
            count: 2.5,
            sum: 7.25,
            zero_threshold: 1e-128,
            zero_count: 0.5,
            negative_spans: vec![span(-3, 1)],
            negative_buckets: vec![0.25],
            positive_spans: vec![span(0, 2)],
            positive_buckets: vec![1.25, 0.5],
            counter_reset_hint: CounterResetHint::Gauge,
            ..Default::default()
        },
        FloatHistogram {
            schema: 8,
            count: 1.0,
            sum: f64::NAN,
            positive_spans: vec![span(1000, 1)],
            positive_buckets: vec![1.0],
            counter_reset_hint: CounterResetHint::CounterReset,
            ..Default::default()
        },
        FloatHistogram::default(),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, h)| HistogramSample {
            t: 1_700_000_000_000 + 15_000 * i as i64,
            h: Arc::new(h),
        })
        .collect()
}

/// Histograms compared as text, since a NaN sum compares unequal.
#[cfg(test)]
pub(crate) fn assert_same_histograms(got: &[HistogramSample], want: &[HistogramSample]) {
    assert_eq!(format!("{got:?}"), format!("{want:?}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The `Histogram` message as the specification's proto declares it.
    #[derive(Clone, PartialEq, Message)]
    struct PbHistogram {
        #[prost(uint64, optional, tag = "1")]
        count_int: Option<u64>,
        #[prost(double, optional, tag = "2")]
        count_float: Option<f64>,
        #[prost(double, tag = "3")]
        sum: f64,
        #[prost(sint32, tag = "4")]
        schema: i32,
        #[prost(double, tag = "5")]
        zero_threshold: f64,
        #[prost(uint64, optional, tag = "6")]
        zero_count_int: Option<u64>,
        #[prost(double, optional, tag = "7")]
        zero_count_float: Option<f64>,
        #[prost(message, repeated, tag = "8")]
        negative_spans: Vec<PbSpan>,
        #[prost(sint64, repeated, tag = "9")]
        negative_deltas: Vec<i64>,
        #[prost(double, repeated, tag = "10")]
        negative_counts: Vec<f64>,
        #[prost(message, repeated, tag = "11")]
        positive_spans: Vec<PbSpan>,
        #[prost(sint64, repeated, tag = "12")]
        positive_deltas: Vec<i64>,
        #[prost(double, repeated, tag = "13")]
        positive_counts: Vec<f64>,
        #[prost(int32, tag = "14")]
        reset_hint: i32,
        #[prost(int64, tag = "15")]
        timestamp: i64,
        #[prost(double, repeated, tag = "16")]
        custom_values: Vec<f64>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbSpan {
        #[prost(sint32, tag = "1")]
        offset: i32,
        #[prost(uint32, tag = "2")]
        length: u32,
    }

    fn span(offset: i32, length: u32) -> PbSpan {
        PbSpan { offset, length }
    }

    fn decode(m: &PbHistogram) -> Result<HistogramSample, String> {
        parse(&m.encode_to_vec(), 0).expect("well-formed message")
    }

    #[test]
    fn integer_histograms_become_absolute_float_counts() {
        let m = PbHistogram {
            count_int: Some(12),
            sum: 18.5,
            schema: -1,
            zero_threshold: 0.001,
            zero_count_int: Some(2),
            positive_spans: vec![span(0, 2), span(1, 2)],
            positive_deltas: vec![1, 1, -1, 0],
            negative_spans: vec![span(-2, 1)],
            negative_deltas: vec![5],
            reset_hint: 3,
            timestamp: 1_700_000_000_123,
            ..Default::default()
        };
        let s = decode(&m).unwrap();
        assert_eq!(s.t, 1_700_000_000_123);
        let h = &s.h;
        assert_eq!((h.count, h.sum, h.schema), (12.0, 18.5, -1));
        assert_eq!((h.zero_threshold, h.zero_count), (0.001, 2.0));
        assert_eq!(h.positive_buckets, vec![1.0, 2.0, 1.0, 1.0]);
        assert_eq!(h.negative_buckets, vec![5.0]);
        assert_eq!(
            h.positive_spans,
            vec![
                BucketSpan {
                    offset: 0,
                    length: 2
                },
                BucketSpan {
                    offset: 1,
                    length: 2
                }
            ]
        );
        assert_eq!(h.negative_spans[0].offset, -2);
        assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge);
    }

    #[test]
    fn float_and_custom_bucket_histograms_keep_their_counts() {
        let m = PbHistogram {
            count_float: Some(4.5),
            sum: 3.25,
            schema: -53,
            positive_spans: vec![span(0, 3)],
            positive_counts: vec![1.5, 0.0, 3.0],
            custom_values: vec![0.1, 1.0],
            timestamp: 5,
            ..Default::default()
        };
        let h = decode(&m).unwrap().h;
        assert!(h.uses_custom_buckets());
        assert_eq!(h.count, 4.5);
        assert_eq!(h.positive_buckets, vec![1.5, 0.0, 3.0]);
        assert_eq!(h.custom_values, vec![0.1, 1.0]);
    }

    #[test]
    fn inconsistent_histograms_are_refused_with_the_reason() {
        let spans_longer = PbHistogram {
            count_int: Some(3),
            positive_spans: vec![span(0, 3)],
            positive_deltas: vec![1, 1],
            ..Default::default()
        };
        assert_eq!(
            decode(&spans_longer).unwrap_err(),
            "positive spans cover 3 buckets but 2 counts were sent"
        );
        let both = PbHistogram {
            positive_spans: vec![span(0, 1)],
            positive_deltas: vec![1],
            positive_counts: vec![1.0],
            ..Default::default()
        };
        assert!(decode(&both).unwrap_err().contains("both integer deltas"));
        let negative = PbHistogram {
            positive_spans: vec![span(0, 2)],
            positive_deltas: vec![3, -5],
            ..Default::default()
        };
        assert_eq!(decode(&negative).unwrap_err(), "negative bucket count -2");
        let bad_schema = PbHistogram {
            schema: 9,
            ..Default::default()
        };
        assert!(decode(&bad_schema).unwrap_err().contains("schema 9"));
        let unsorted_bounds = PbHistogram {
            schema: -53,
            custom_values: vec![1.0, 0.5],
            ..Default::default()
        };
        assert!(decode(&unsorted_bounds)
            .unwrap_err()
            .contains("not strictly increasing"));
    }

    #[test]
    fn truncated_messages_are_wire_errors() {
        let m = PbHistogram {
            count_int: Some(3),
            positive_spans: vec![span(0, 1)],
            positive_deltas: vec![3],
            ..Default::default()
        };
        let bytes = m.encode_to_vec();
        for cut in 1..bytes.len() {
            // Any prefix either parses as a shorter message or fails cleanly: never a panic.
            let _ = parse(&bytes[..cut], 0);
        }
        assert!(parse(&[0x0a], 0).is_err());
    }

    #[test]
    fn encoded_histograms_decode_as_sent() {
        for want in test_shapes() {
            let mut b = Vec::new();
            encode(&want, &mut b);
            let got = parse(&b, 0).expect("well-formed").expect("valid");
            assert_same_histograms(&[got], std::slice::from_ref(&want));
        }
    }

    #[test]
    fn encoding_follows_the_specifications_proto() {
        // Read back by prost from the proto's field numbers and types, not by our reader.
        let shapes = test_shapes();
        let pb = |s: &HistogramSample| {
            let mut b = Vec::new();
            encode(s, &mut b);
            PbHistogram::decode(b.as_slice()).unwrap()
        };
        // Whole counts go as an integer histogram: bucket deltas, no float counts.
        let m = pb(&shapes[0]);
        assert_eq!((m.count_int, m.count_float), (Some(14), None));
        assert_eq!((m.zero_count_int, m.zero_count_float), (Some(2), None));
        assert_eq!((m.sum, m.schema, m.zero_threshold), (-3.75, 3, 0.001));
        assert_eq!(m.positive_spans, vec![span(-2, 2), span(3, 1)]);
        assert_eq!(m.positive_deltas, vec![1, 3, -2]);
        assert_eq!(m.negative_spans, vec![span(1, 2)]);
        assert_eq!(m.negative_deltas, vec![3, -1]);
        assert!(m.positive_counts.is_empty() && m.negative_counts.is_empty());
        assert_eq!((m.reset_hint, m.timestamp), (0, 1_700_000_000_000));
        let m = pb(&shapes[1]);
        assert_eq!((m.schema, m.reset_hint), (-53, 2));
        assert_eq!(m.custom_values, vec![0.1, 0.5, 1.0]);
        // Fractional counts (a gauge histogram's) go as a float histogram.
        let m = pb(&shapes[2]);
        assert_eq!((m.reset_hint, m.negative_spans[0].offset), (3, -3));
        assert!(m.count_int.is_none() && m.count_float.is_some());
        assert!(m.positive_deltas.is_empty() && m.negative_deltas.is_empty());
        let m = pb(&shapes[3]);
        assert!(m.sum.is_nan());
        assert_eq!((m.schema, m.reset_hint), (8, 1));
        let m = pb(&shapes[4]);
        assert_eq!((m.count_int, m.zero_count_int), (Some(0), Some(0)));
    }
}
