//! Decoding a protobuf `ExportMetricsServiceRequest` with the trace decoder's wire rules
//! (fields in any order, unknown fields skipped, the last scalar wins, packed and unpacked
//! repeated numbers both read). Every error says at which byte of the body it was found.

use super::super::wire::{deeper, err, key_value, want, Wire, I64, LEN, MAX_DEPTH, VARINT};
use super::super::OtlpError;
use super::{
    Data, ExponentialBuckets, ExponentialHistogramPoint, ExportMetrics, HistogramPoint, Metric,
    NumberPoint, ResourceMetrics, ScopeMetrics, SummaryPoint, TextAttrs,
};

type Result<T> = std::result::Result<T, OtlpError>;

/// A cursor that knows where its message starts in the whole body.
struct Cur<'a> {
    w: Wire<'a>,
    base: usize,
}

impl<'a> Cur<'a> {
    fn new(buf: &'a [u8], base: usize) -> Cur<'a> {
        Cur {
            w: Wire::new(buf),
            base,
        }
    }

    /// Tags an error from the shared decoder with the absolute byte it was found at.
    fn at<T>(&self, start: usize, r: Result<T>) -> Result<T> {
        r.map_err(|e| {
            let msg = match e {
                OtlpError::Protobuf(m) | OtlpError::MetricsProtobuf(m) => m,
                other => other.to_string(),
            };
            OtlpError::MetricsProtobuf(format!("{msg} at byte {}", self.base + start))
        })
    }

    fn key(&mut self) -> Result<Option<(u32, u8)>> {
        let p = self.w.pos;
        let r = self.w.key();
        self.at(p, r)
    }

    fn want(&self, field: u32, wire_type: u8, expected: u8) -> Result<()> {
        self.at(self.w.pos, want(field, wire_type, expected))
    }

    fn varint(&mut self) -> Result<u64> {
        let p = self.w.pos;
        let r = self.w.varint();
        self.at(p, r)
    }

    fn fixed64(&mut self) -> Result<u64> {
        let p = self.w.pos;
        let r = self.w.fixed64();
        self.at(p, r)
    }

    fn double(&mut self) -> Result<f64> {
        self.fixed64().map(f64::from_bits)
    }

    fn str(&mut self) -> Result<String> {
        let p = self.w.pos;
        let r = self.w.str().map(str::to_string);
        self.at(p, r)
    }

    /// A length-delimited field as a cursor of its own.
    fn msg(&mut self) -> Result<Cur<'a>> {
        let p = self.w.pos;
        let n = self.varint()?;
        let left = self.w.buf.len() - self.w.pos;
        if n > left as u64 {
            return self.at(
                p,
                Err(err(format!(
                    "truncated: a field announces {n} bytes where {left} are left"
                ))),
            );
        }
        let start = self.w.pos;
        let r = self.w.take(n as usize);
        let b = self.at(p, r)?;
        Ok(Cur::new(b, self.base + start))
    }

    fn skip(&mut self, field: u32, wire_type: u8, depth: u32) -> Result<()> {
        let p = self.w.pos;
        let r = self.w.skip(field, wire_type, depth);
        self.at(p, r)
    }

    /// One `KeyValue`, its value as label text.
    fn attribute(
        &mut self,
        field: u32,
        wire_type: u8,
        out: &mut TextAttrs,
        depth: u32,
    ) -> Result<()> {
        self.want(field, wire_type, LEN)?;
        let m = self.msg()?;
        let r = key_value(m.w.buf, depth);
        let (k, v) = m.at(0, r)?;
        out.push((k.into_owned(), v.to_tag().into_owned()));
        Ok(())
    }

    /// A `sint32` (zigzag) field; like protobuf's parsers, the varint is cut to 32 bits.
    fn sint32(&mut self, field: u32, wire_type: u8) -> Result<i32> {
        self.want(field, wire_type, VARINT)?;
        let n = self.varint()? as u32;
        Ok((n >> 1) as i32 ^ -((n & 1) as i32))
    }

    /// A repeated varint field, packed or not.
    fn varints(&mut self, field: u32, wire_type: u8, out: &mut Vec<u64>) -> Result<()> {
        if wire_type == VARINT {
            out.push(self.varint()?);
            return Ok(());
        }
        self.want(field, wire_type, LEN)?;
        let mut m = self.msg()?;
        while m.w.pos < m.w.buf.len() {
            out.push(m.varint()?);
        }
        Ok(())
    }

    /// A repeated fixed64 field, packed or not.
    fn fixed64s(&mut self, field: u32, wire_type: u8, out: &mut Vec<u64>) -> Result<()> {
        if wire_type == I64 {
            out.push(self.fixed64()?);
            return Ok(());
        }
        self.want(field, wire_type, LEN)?;
        let mut m = self.msg()?;
        if !m.w.buf.len().is_multiple_of(8) {
            return m.at(
                0,
                Err(err(format!(
                    "packed field {field} of {} bytes is not a multiple of 8",
                    m.w.buf.len()
                ))),
            );
        }
        while m.w.pos < m.w.buf.len() {
            out.push(m.fixed64()?);
        }
        Ok(())
    }
}

fn depth_err<T>(c: &Cur<'_>, r: Result<T>) -> Result<T> {
    c.at(c.w.pos, r)
}

/// Decodes a protobuf `ExportMetricsServiceRequest`.
pub fn decode_proto(body: &[u8]) -> Result<ExportMetrics> {
    let mut out = ExportMetrics::default();
    let mut c = Cur::new(body, 0);
    while let Some((f, wt)) = c.key()? {
        if f == 1 {
            c.want(f, wt, LEN)?;
            let m = c.msg()?;
            out.resources.push(resource_metrics(m, MAX_DEPTH - 1)?);
        } else {
            c.skip(f, wt, MAX_DEPTH)?;
        }
    }
    Ok(out)
}

fn resource_metrics(mut c: Cur<'_>, depth: u32) -> Result<ResourceMetrics> {
    let mut r = ResourceMetrics::default();
    let inner = depth_err(&c, deeper(depth))?;
    while let Some((f, wt)) = c.key()? {
        match f {
            1 => {
                c.want(f, wt, LEN)?;
                let mut res = c.msg()?;
                while let Some((f, wt)) = res.key()? {
                    if f == 1 {
                        res.attribute(f, wt, &mut r.attributes, inner)?;
                    } else {
                        res.skip(f, wt, inner)?;
                    }
                }
            }
            2 => {
                c.want(f, wt, LEN)?;
                let m = c.msg()?;
                r.scopes.push(scope_metrics(m, inner)?);
            }
            _ => c.skip(f, wt, depth)?,
        }
    }
    Ok(r)
}

fn scope_metrics(mut c: Cur<'_>, depth: u32) -> Result<ScopeMetrics> {
    let mut s = ScopeMetrics::default();
    let inner = depth_err(&c, deeper(depth))?;
    while let Some((f, wt)) = c.key()? {
        match f {
            1 => {
                c.want(f, wt, LEN)?;
                let mut scope = c.msg()?;
                while let Some((f, wt)) = scope.key()? {
                    match f {
                        1 => {
                            scope.want(f, wt, LEN)?;
                            s.name = scope.str()?;
                        }
                        2 => {
                            scope.want(f, wt, LEN)?;
                            s.version = scope.str()?;
                        }
                        _ => scope.skip(f, wt, inner)?,
                    }
                }
            }
            2 => {
                c.want(f, wt, LEN)?;
                let m = c.msg()?;
                s.metrics.push(metric(m, inner)?);
            }
            _ => c.skip(f, wt, depth)?,
        }
    }
    Ok(s)
}

fn metric(mut c: Cur<'_>, depth: u32) -> Result<Metric> {
    let mut m = Metric::default();
    let inner = depth_err(&c, deeper(depth))?;
    while let Some((f, wt)) = c.key()? {
        match f {
            1..=3 => {
                c.want(f, wt, LEN)?;
                let s = c.str()?;
                match f {
                    1 => m.name = s,
                    2 => m.description = s,
                    _ => m.unit = s,
                }
            }
            5 | 7 | 9 | 10 | 11 => {
                c.want(f, wt, LEN)?;
                let d = c.msg()?;
                m.data = data(f, d, inner)?;
            }
            _ => c.skip(f, wt, depth)?,
        }
    }
    Ok(m)
}

/// `Gauge` (5), `Sum` (7), `Histogram` (9), `ExponentialHistogram` (10) or `Summary` (11).
fn data(kind: u32, mut c: Cur<'_>, depth: u32) -> Result<Data> {
    let inner = depth_err(&c, deeper(depth))?;
    let (mut numbers, mut histograms, mut summaries, mut exponential) =
        (vec![], vec![], vec![], vec![]);
    let (mut temporality, mut monotonic) = (0i32, false);
    while let Some((f, wt)) = c.key()? {
        match (kind, f) {
            (_, 1) => {
                c.want(f, wt, LEN)?;
                let p = c.msg()?;
                match kind {
                    5 | 7 => numbers.push(number_point(p, inner)?),
                    9 => histograms.push(histogram_point(p, inner)?),
                    10 => exponential.push(exponential_point(p, inner)?),
                    _ => summaries.push(summary_point(p, inner)?),
                }
            }
            (7 | 9 | 10, 2) => {
                c.want(f, wt, VARINT)?;
                temporality = c.varint()? as i32;
            }
            (7, 3) => {
                c.want(f, wt, VARINT)?;
                monotonic = c.varint()? != 0;
            }
            _ => c.skip(f, wt, depth)?,
        }
    }
    Ok(match kind {
        5 => Data::Gauge(numbers),
        7 => Data::Sum {
            points: numbers,
            temporality,
            monotonic,
        },
        9 => Data::Histogram {
            points: histograms,
            temporality,
        },
        10 => Data::ExponentialHistogram {
            points: exponential,
            temporality,
        },
        _ => Data::Summary(summaries),
    })
}

fn number_point(mut c: Cur<'_>, depth: u32) -> Result<NumberPoint> {
    let mut p = NumberPoint::default();
    while let Some((f, wt)) = c.key()? {
        match f {
            7 => c.attribute(f, wt, &mut p.attributes, depth)?,
            2 | 3 | 4 | 6 => {
                c.want(f, wt, I64)?;
                let v = c.fixed64()?;
                match f {
                    2 => p.start_ns = v,
                    3 => p.time_ns = v,
                    4 => p.value = f64::from_bits(v),
                    _ => p.value = v as i64 as f64,
                }
            }
            8 => {
                c.want(f, wt, VARINT)?;
                p.flags = c.varint()? as u32;
            }
            _ => c.skip(f, wt, depth)?,
        }
    }
    Ok(p)
}

fn histogram_point(mut c: Cur<'_>, depth: u32) -> Result<HistogramPoint> {
    let mut p = HistogramPoint::default();
    while let Some((f, wt)) = c.key()? {
        match f {
            9 => c.attribute(f, wt, &mut p.attributes, depth)?,
            2..=5 => {
                c.want(f, wt, I64)?;
                let v = c.fixed64()?;
                match f {
                    2 => p.start_ns = v,
                    3 => p.time_ns = v,
                    4 => p.count = v,
                    _ => p.sum = Some(f64::from_bits(v)),
                }
            }
            6 => c.fixed64s(f, wt, &mut p.bucket_counts)?,
            7 => {
                let mut bits = Vec::new();
                c.fixed64s(f, wt, &mut bits)?;
                p.bounds.extend(bits.into_iter().map(f64::from_bits));
            }
            10 => {
                c.want(f, wt, VARINT)?;
                p.flags = c.varint()? as u32;
            }
            _ => c.skip(f, wt, depth)?,
        }
    }
    Ok(p)
}

fn exponential_point(mut c: Cur<'_>, depth: u32) -> Result<ExponentialHistogramPoint> {
    let mut p = ExponentialHistogramPoint::default();
    while let Some((f, wt)) = c.key()? {
        match f {
            1 => c.attribute(f, wt, &mut p.attributes, depth)?,
            2..=5 | 7 | 14 => {
                c.want(f, wt, I64)?;
                let v = c.fixed64()?;
                match f {
                    2 => p.start_ns = v,
                    3 => p.time_ns = v,
                    4 => p.count = v,
                    5 => p.sum = Some(f64::from_bits(v)),
                    7 => p.zero_count = v,
                    _ => p.zero_threshold = f64::from_bits(v),
                }
            }
            6 => p.scale = c.sint32(f, wt)?,
            8 | 9 => {
                c.want(f, wt, LEN)?;
                let mut b = c.msg()?;
                let side = if f == 8 {
                    &mut p.positive
                } else {
                    &mut p.negative
                };
                buckets(&mut b, side, depth)?;
            }
            10 => {
                c.want(f, wt, VARINT)?;
                p.flags = c.varint()? as u32;
            }
            // Exemplars (11), min (12) and max (13) are not used.
            _ => c.skip(f, wt, depth)?,
        }
    }
    Ok(p)
}

/// `ExponentialHistogramDataPoint.Buckets`: a message given twice is merged, as protobuf does.
fn buckets(c: &mut Cur<'_>, out: &mut ExponentialBuckets, depth: u32) -> Result<()> {
    while let Some((f, wt)) = c.key()? {
        match f {
            1 => out.offset = c.sint32(f, wt)?,
            2 => c.varints(f, wt, &mut out.bucket_counts)?,
            _ => c.skip(f, wt, depth)?,
        }
    }
    Ok(())
}

fn summary_point(mut c: Cur<'_>, depth: u32) -> Result<SummaryPoint> {
    let mut p = SummaryPoint::default();
    while let Some((f, wt)) = c.key()? {
        match f {
            7 => c.attribute(f, wt, &mut p.attributes, depth)?,
            2..=5 => {
                c.want(f, wt, I64)?;
                let v = c.fixed64()?;
                match f {
                    2 => p.start_ns = v,
                    3 => p.time_ns = v,
                    4 => p.count = v,
                    _ => p.sum = f64::from_bits(v),
                }
            }
            6 => {
                c.want(f, wt, LEN)?;
                let mut q = c.msg()?;
                let (mut quantile, mut value) = (0.0, 0.0);
                while let Some((f, wt)) = q.key()? {
                    match f {
                        1 | 2 => {
                            q.want(f, wt, I64)?;
                            let v = q.double()?;
                            if f == 1 {
                                quantile = v;
                            } else {
                                value = v;
                            }
                        }
                        _ => q.skip(f, wt, depth)?,
                    }
                }
                p.quantiles.push((quantile, value));
            }
            8 => {
                c.want(f, wt, VARINT)?;
                p.flags = c.varint()? as u32;
            }
            _ => c.skip(f, wt, depth)?,
        }
    }
    Ok(p)
}
