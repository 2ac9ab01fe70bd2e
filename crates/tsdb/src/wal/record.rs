//! WAL record payloads.

use meshlens_model::{Label, Labels, MetricMetadata};

use crate::varint::{put_str, put_uvarint, put_varint, Reader};

const SERIES: u8 = 1;
const SAMPLES: u8 = 2;
const METADATA: u8 = 3;

#[derive(Clone, Debug, PartialEq)]
pub struct WalSample {
    pub series: u64,
    pub t: i64,
    pub v: f64,
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
            Record::Samples(samples) => {
                out.push(SAMPLES);
                put_uvarint(out, samples.len() as u64);
                let (mut prev_id, mut prev_t) = (0u64, 0i64);
                for s in samples {
                    put_varint(out, s.series.wrapping_sub(prev_id) as i64);
                    put_varint(out, s.t.wrapping_sub(prev_t));
                    out.extend_from_slice(&s.v.to_bits().to_le_bytes());
                    prev_id = s.series;
                    prev_t = s.t;
                }
            }
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
            _ => return None,
        };
        r.is_empty().then_some(rec)
    }
}
