//! WAL record payloads.

use std::sync::Arc;

use meshlens_model::{Exemplar, FloatHistogram, Label, Labels, MetricMetadata, SeriesExemplars};

use crate::histogram::{get_histogram, put_histogram};
use crate::varint::{put_str, put_uvarint, put_varint, Reader};

const SERIES: u8 = 1;
/// Samples with raw 8-byte values; still read, no longer written.
const SAMPLES: u8 = 2;
const METADATA: u8 = 3;
/// Samples with compact values ([`put_value`]), running to the end of the body.
const SAMPLES_COMPACT: u8 = 4;
/// Exemplars, each group naming its series by labels (not by series id), so the record
/// stands alone: the exemplar store is apart from the head and outlives its series.
const EXEMPLARS: u8 = 5;
/// Native-histogram samples of head series, running to the end of the body: per sample the
/// series id and timestamp as varint deltas from the previous sample's (as in
/// `SAMPLES_COMPACT`), then the histogram in the form `crate::histogram` documents (always
/// with its full layout: records stand alone).
const FLOAT_HISTOGRAMS: u8 = 6;

fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(out, labels.len() as u64);
    for l in labels {
        put_str(out, &l.name);
        put_str(out, &l.value);
    }
}

fn get_labels(r: &mut Reader) -> Option<Labels> {
    let n = r.uvarint()? as usize;
    let mut v = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        v.push((r.str()?.to_string(), r.str()?.to_string()));
    }
    Some(Labels::from_pairs(v))
}

/// Values exporters emit are mostly integers (counters, byte gauges) or have two decimals
/// (seconds, percentages): those take a varint of the scaled integer; anything else the
/// raw bits. The low two bits of the leading uvarint say which: 0 integer, 1 hundredths,
/// 2 raw (alone, followed by 8 bytes). Every value reads back bit for bit.
pub(crate) fn put_value(out: &mut Vec<u8>, v: f64) {
    match small_code(v) {
        Some(code) => put_uvarint(out, code),
        None => put_raw_value(out, v),
    }
}

/// The raw form of [`put_value`]: the tag 2, then the bits.
#[inline]
pub(crate) fn put_raw_value(out: &mut Vec<u8>, v: f64) {
    out.push(2);
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

/// [`put_value`]'s leading uvarint when `v` is an integer or has two decimals (tags 0 and
/// 1), so that [`small_value`] of it gives `v` back bit for bit; None for the raw form.
#[inline(always)]
pub(crate) fn small_code(v: f64) -> Option<u64> {
    // Below 2^53 every integer is exact and its zig-zag, shifted by 2, still fits 64 bits.
    const LIMIT: f64 = (1u64 << 53) as f64;
    if v.abs() < LIMIT {
        let i = v as i64;
        if i as f64 == v && (i != 0 || v.to_bits() == 0) {
            return Some(zigzag(i) << 2);
        }
        let h = round_near(v * 100.0);
        if h.abs() < LIMIT {
            let i = h as i64;
            if ((i as f64) / 100.0).to_bits() == v.to_bits() {
                return Some((zigzag(i) << 2) | 1);
            }
        }
    }
    None
}

/// The value of a [`small_code`] (tags 0 and 1); None for another tag.
#[inline]
pub(crate) fn small_value(code: u64) -> Option<f64> {
    match code & 3 {
        0 => Some(unzigzag(code >> 2) as f64),
        1 => Some(unzigzag(code >> 2) as f64 / 100.0),
        _ => None,
    }
}

/// `x` rounded to an integer (ties to even) by adding and taking away 1.5 × 2^52, which
/// pushes the fraction out of the mantissa: a libm `round` call costs more than the rest
/// of `put_value`. Exact for |x| < 2^51; beyond, the result is some nearby number, which
/// the caller's check that the value reads back refuses anyway.
#[inline]
fn round_near(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    (x + SHIFT) - SHIFT
}

pub(crate) fn get_value(r: &mut Reader) -> Option<f64> {
    let u = r.uvarint()?;
    match u & 3 {
        2 if u == 2 => Some(f64::from_bits(r.u64_le()?)),
        _ => small_value(u),
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// A samples record built as samples are accepted, straight into its frame bytes: no
/// intermediate list, and the whole batch goes to the log in one copy.
pub struct SampleBatch {
    /// Frame header space, the type byte, then the samples.
    pub(super) buf: Vec<u8>,
    prev_id: u64,
    prev_t: i64,
    n: usize,
}

impl SampleBatch {
    /// Bytes reserved ahead of the body for the frame header.
    pub(super) const HEADER: usize = 8;

    pub fn with_capacity(samples: usize) -> Self {
        let mut buf = Vec::with_capacity(Self::HEADER + 1 + samples * 8);
        buf.extend_from_slice(&[0u8; Self::HEADER]);
        buf.push(SAMPLES_COMPACT);
        SampleBatch {
            buf,
            prev_id: 0,
            prev_t: 0,
            n: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, series: u64, t: i64, v: f64) {
        put_varint(&mut self.buf, series.wrapping_sub(self.prev_id) as i64);
        put_varint(&mut self.buf, t.wrapping_sub(self.prev_t));
        put_value(&mut self.buf, v);
        self.prev_id = series;
        self.prev_t = t;
        self.n += 1;
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

fn put_samples_compact(out: &mut Vec<u8>, samples: &[WalSample]) {
    out.push(SAMPLES_COMPACT);
    let (mut prev_id, mut prev_t) = (0u64, 0i64);
    for s in samples {
        put_varint(out, s.series.wrapping_sub(prev_id) as i64);
        put_varint(out, s.t.wrapping_sub(prev_t));
        put_value(out, s.v);
        prev_id = s.series;
        prev_t = s.t;
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct WalSample {
    pub series: u64,
    pub t: i64,
    pub v: f64,
}

/// One native-histogram sample of a head series.
#[derive(Clone, Debug, PartialEq)]
pub struct WalHistogram {
    pub series: u64,
    pub t: i64,
    pub h: Arc<FloatHistogram>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A new series and the id later sample records use for it.
    Series {
        id: u64,
        labels: Labels,
    },
    Samples(Vec<WalSample>),
    Metadata(Vec<MetricMetadata>),
    Exemplars(Vec<SeriesExemplars>),
    Histograms(Vec<WalHistogram>),
}

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Series { id, labels } => {
                out.push(SERIES);
                put_uvarint(out, *id);
                put_uvarint(out, labels.len() as u64);
                for l in labels {
                    put_str(out, &l.name);
                    put_str(out, &l.value);
                }
            }
            Record::Samples(samples) => put_samples_compact(out, samples),
            Record::Metadata(md) => {
                out.push(METADATA);
                put_uvarint(out, md.len() as u64);
                for m in md {
                    put_str(out, &m.metric_family);
                    put_str(out, &m.kind);
                    put_str(out, &m.help);
                    put_str(out, &m.unit);
                }
            }
            Record::Exemplars(groups) => {
                out.push(EXEMPLARS);
                for g in groups {
                    put_labels(out, &g.series);
                    put_uvarint(out, g.exemplars.len() as u64);
                    for e in &g.exemplars {
                        put_labels(out, &e.labels);
                        put_varint(out, e.t);
                        put_value(out, e.value);
                    }
                }
            }
            Record::Histograms(samples) => {
                out.push(FLOAT_HISTOGRAMS);
                let (mut prev_id, mut prev_t) = (0u64, 0i64);
                for s in samples {
                    put_varint(out, s.series.wrapping_sub(prev_id) as i64);
                    put_varint(out, s.t.wrapping_sub(prev_t));
                    put_histogram(out, &s.h, None, None);
                    prev_id = s.series;
                    prev_t = s.t;
                }
            }
        }
    }

    pub fn decode(body: &[u8]) -> Option<Record> {
        let mut r = Reader::new(body.get(1..)?);
        let rec = match *body.first()? {
            SERIES => {
                let id = r.uvarint()?;
                let n = r.uvarint()? as usize;
                let mut v = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    v.push(Label::new(r.str()?, r.str()?));
                }
                Record::Series {
                    id,
                    labels: Labels::from_pairs(v.into_iter().map(|l| (l.name, l.value))),
                }
            }
            SAMPLES => {
                let n = r.uvarint()? as usize;
                let mut v = Vec::with_capacity(n.min(1 << 16));
                let (mut id, mut t) = (0u64, 0i64);
                for _ in 0..n {
                    id = id.wrapping_add(r.varint()? as u64);
                    t = t.wrapping_add(r.varint()?);
                    let bits = r.u64_le()?;
                    v.push(WalSample {
                        series: id,
                        t,
                        v: f64::from_bits(bits),
                    });
                }
                Record::Samples(v)
            }
            SAMPLES_COMPACT => {
                let mut v = Vec::with_capacity(r.buf.len() / 4);
                let (mut id, mut t) = (0u64, 0i64);
                while !r.is_empty() {
                    id = id.wrapping_add(r.varint()? as u64);
                    t = t.wrapping_add(r.varint()?);
                    v.push(WalSample {
                        series: id,
                        t,
                        v: get_value(&mut r)?,
                    });
                }
                Record::Samples(v)
            }
            METADATA => {
                let n = r.uvarint()? as usize;
                let mut v = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    v.push(MetricMetadata {
                        metric_family: r.str()?.to_string(),
                        kind: r.str()?.to_string(),
                        help: r.str()?.to_string(),
                        unit: r.str()?.to_string(),
                    });
                }
                Record::Metadata(v)
            }
            EXEMPLARS => {
                let mut groups = Vec::new();
                while !r.is_empty() {
                    let series = get_labels(&mut r)?;
                    let n = r.uvarint()? as usize;
                    let mut exemplars = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        exemplars.push(Exemplar {
                            labels: get_labels(&mut r)?,
                            t: r.varint()?,
                            value: get_value(&mut r)?,
                        });
                    }
                    groups.push(SeriesExemplars { series, exemplars });
                }
                Record::Exemplars(groups)
            }
            FLOAT_HISTOGRAMS => {
                let mut v = Vec::new();
                let (mut id, mut t) = (0u64, 0i64);
                while !r.is_empty() {
                    id = id.wrapping_add(r.varint()? as u64);
                    t = t.wrapping_add(r.varint()?);
                    v.push(WalHistogram {
                        series: id,
                        t,
                        h: Arc::new(get_histogram(&mut r, None, None)?),
                    });
                }
                Record::Histograms(v)
            }
            _ => return None,
        };
        r.is_empty().then_some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value_round_trips(v: f64) -> usize {
        let mut out = Vec::new();
        put_value(&mut out, v);
        let mut r = Reader::new(&out);
        let back = get_value(&mut r).expect("decodes");
        assert_eq!(back.to_bits(), v.to_bits(), "{v:?}");
        assert!(r.is_empty());
        out.len()
    }

    #[test]
    fn compact_values_keep_every_bit() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            123456.0,
            0.25,
            1.15,
            -99999.99,
            f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0002), // the staleness marker
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            -9_007_199_254_740_993.0,
            1e300,
            0.1 + 0.2,
        ] {
            value_round_trips(v);
        }
        // What exporters emit is short: counters and two-decimal gauges.
        assert_eq!(value_round_trips(1_000_000.0), 4);
        assert_eq!(value_round_trips(12_345.67), 4);
        assert_eq!(value_round_trips(0.1 + 0.2), 9);
    }

    #[test]
    fn rounding_is_to_the_nearest_integer() {
        for (x, want) in [
            (114.999_999_999_999_99, 115.0),
            (-114.999_999_999_999_99, -115.0),
            (2.4, 2.0),
            (-2.6, -3.0),
            (0.0, 0.0),
            (1e15 + 0.25, 1e15),
        ] {
            assert_eq!(round_near(x), want, "{x}");
        }
    }

    #[test]
    fn batch_equals_record_encoding() {
        let samples = vec![
            WalSample {
                series: 3,
                t: 1000,
                v: 1.5,
            },
            WalSample {
                series: 1,
                t: 1000,
                v: f64::NAN,
            },
            WalSample {
                series: 7,
                t: 990,
                v: -2.0,
            },
        ];
        let mut b = SampleBatch::with_capacity(3);
        for s in &samples {
            b.push(s.series, s.t, s.v);
        }
        let mut body = Vec::new();
        Record::Samples(samples.clone()).encode(&mut body);
        assert_eq!(&b.buf[SampleBatch::HEADER..], &body[..]);
        assert_eq!(b.len(), 3);
        let Some(Record::Samples(back)) = Record::decode(&body) else {
            panic!("decodes")
        };
        assert_eq!(format!("{back:?}"), format!("{samples:?}"));
    }

    #[test]
    fn legacy_samples_records_still_replay() {
        // Type 2 as earlier versions wrote it: count, then raw 8-byte values.
        let mut body = vec![SAMPLES];
        put_uvarint(&mut body, 2);
        // Ids 5 then 6 (deltas 5, 1), both at t = 100 (deltas 100, 0).
        for (d_id, d_t, v) in [(5i64, 100i64, 1.25f64), (1, 0, 7.0)] {
            put_varint(&mut body, d_id);
            put_varint(&mut body, d_t);
            body.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        assert_eq!(
            Record::decode(&body),
            Some(Record::Samples(vec![
                WalSample {
                    series: 5,
                    t: 100,
                    v: 1.25
                },
                WalSample {
                    series: 6,
                    t: 100,
                    v: 7.0
                },
            ]))
        );
    }

    #[test]
    fn compact_records_refuse_bad_bodies() {
        // A value tag of 3 and a raw tag with bits above it are invalid.
        assert_eq!(Record::decode(&[SAMPLES_COMPACT, 0, 0, 3]), None);
        assert_eq!(Record::decode(&[SAMPLES_COMPACT, 0, 0, 6]), None);
        // A raw value cut short.
        assert_eq!(Record::decode(&[SAMPLES_COMPACT, 0, 0, 2, 1, 2]), None);
        // An empty batch is a valid record.
        assert_eq!(
            Record::decode(&[SAMPLES_COMPACT]),
            Some(Record::Samples(Vec::new()))
        );
    }

    #[test]
    fn exemplar_records_round_trip() {
        let rec = Record::Exemplars(vec![
            SeriesExemplars {
                series: Labels::from_pairs([("__name__", "req_total"), ("job", "a")]),
                exemplars: vec![
                    Exemplar {
                        labels: Labels::from_pairs([("trace_id", "abc")]),
                        value: 1.5,
                        t: 1_600_000_000_123,
                    },
                    Exemplar {
                        labels: Labels::empty(),
                        value: f64::INFINITY,
                        t: -5,
                    },
                ],
            },
            SeriesExemplars {
                series: Labels::from_pairs([("__name__", "b")]),
                exemplars: vec![],
            },
        ]);
        let mut body = Vec::new();
        rec.encode(&mut body);
        assert_eq!(body[0], EXEMPLARS);
        assert_eq!(Record::decode(&body), Some(rec));
        // Cut anywhere inside, the record is refused rather than half read.
        for cut in 2..body.len() - 1 {
            if let Some(Record::Exemplars(g)) = Record::decode(&body[..cut]) {
                assert!(g.len() < 2, "cut at {cut} decoded both groups");
            }
        }
    }

    #[test]
    fn histogram_records_round_trip_and_refuse_damage() {
        let rec = Record::Histograms(
            [(3u64, 1000i64), (1, 1000), (7, 990), (7, 2_000_000)]
                .iter()
                .enumerate()
                .map(|(i, &(series, t))| WalHistogram {
                    series,
                    t,
                    h: Arc::new(crate::histogram::tests::sample_histogram(i as u32)),
                })
                .collect(),
        );
        let mut body = Vec::new();
        rec.encode(&mut body);
        assert_eq!(body[0], FLOAT_HISTOGRAMS);
        assert_eq!(Record::decode(&body), Some(rec));
        // Cut short anywhere after the first sample's start, the record is refused or
        // holds fewer samples: never a half-read histogram.
        for cut in 2..body.len() {
            if let Some(Record::Histograms(v)) = Record::decode(&body[..cut]) {
                assert!(v.len() < 4, "cut at {cut}");
            }
        }
        assert_eq!(
            Record::decode(&[FLOAT_HISTOGRAMS]),
            Some(Record::Histograms(Vec::new()))
        );
    }

    proptest! {
        #[test]
        fn any_value_round_trips(bits in any::<u64>()) {
            value_round_trips(f64::from_bits(bits));
        }

        #[test]
        fn decimal_values_round_trip(i in -10_000_000i64..10_000_000, scale in 0u32..4) {
            value_round_trips(i as f64 / 10f64.powi(scale as i32));
        }

        #[test]
        fn samples_records_round_trip(
            s in proptest::collection::vec((0u64..1 << 40, any::<i64>(), any::<u64>()), 0..50)
        ) {
            let samples: Vec<WalSample> = s
                .iter()
                .map(|&(series, t, v)| WalSample { series, t, v: f64::from_bits(v) })
                .collect();
            let mut body = Vec::new();
            Record::Samples(samples.clone()).encode(&mut body);
            let Some(Record::Samples(back)) = Record::decode(&body) else {
                panic!("decodes")
            };
            prop_assert_eq!(back.len(), samples.len());
            for (a, b) in back.iter().zip(&samples) {
                prop_assert_eq!((a.series, a.t, a.v.to_bits()), (b.series, b.t, b.v.to_bits()));
            }
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Record::decode(&body);
        }
    }
}
