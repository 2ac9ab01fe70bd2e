//! Zero-copy reading of a decompressed `prometheus.WriteRequest`: label strings are borrowed
//! from the buffer, every sample lands in one vector, and each series is a pair of ranges
//! into both, so a request of N series costs a handful of allocations instead of one per
//! label string (what a generic protobuf decoder does).
//!
//! Only the wire format of the fields remote write 1.0 defines is read; unknown fields are
//! skipped by wire type, as protobuf requires. Native histograms and exemplars are decoded
//! into owned values (they are few, and kept beyond the request).

use std::ops::Range;

use meshlens_model::{Exemplar, HistogramSample, Labels, MetricMetadata, RawSeries, Sample};

/// Why the bytes are not a `WriteRequest`: what was being read and at which byte offset.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} at byte {offset}")]
pub struct WireError {
    pub what: &'static str,
    pub offset: usize,
}

pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const FIXED32: u8 = 5;

/// A cursor over one message's bytes; every read fails cleanly at the end of the data.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the whole request, for error positions.
    base: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Cursor { buf, pos: 0, base }
    }

    pub(crate) fn err(&self, what: &'static str) -> WireError {
        WireError {
            what,
            offset: self.base + self.pos,
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        // Keys and the lengths of labels, strings and samples: most varints of a request
        // are one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    /// Any varint (a sample's timestamp takes six bytes).
    fn varint_slow(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err(self.err("varint overflows 64 bits"));
                }
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// The next field's number and wire type.
    #[inline]
    pub(crate) fn key(&mut self) -> Result<(u64, u8), WireError> {
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 {
            return Err(self.err("field number 0"));
        }
        Ok((field, (k & 7) as u8))
    }

    #[inline]
    pub(crate) fn fixed64(&mut self) -> Result<u64, WireError> {
        let end = self.pos + 8;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.err("truncated fixed64"))?;
        self.pos = end;
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        Ok(u64::from_le_bytes(w))
    }

    /// A length-delimited field's bytes, and their offset in the request.
    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<(&'a [u8], usize), WireError> {
        let n = self.varint()?;
        let at = self.pos;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| at.checked_add(n))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("length past the end of the message"))?;
        self.pos = end;
        Ok((&self.buf[at..end], self.base + at))
    }

    #[inline]
    pub(crate) fn string(&mut self) -> Result<&'a str, WireError> {
        let (b, at) = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| WireError {
            what: "string is not UTF-8",
            offset: at,
        })
    }

    /// [`Self::string`] inside a message the caller found to be all ASCII: nothing left
    /// to check. Label strings are nearly always ASCII, and one `is_ascii` over a whole
    /// label (word at a time) costs less than two UTF-8 validations of short strings.
    #[inline]
    fn ascii_string(&mut self) -> Result<&'a str, WireError> {
        debug_assert!(self.buf.is_ascii());
        let (b, _) = self.bytes()?;
        // SAFETY: `b` is a slice of `self.buf`, which the caller checked is all ASCII
        // (see `parse_label`), and ASCII is valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(b) })
    }

    /// Skips a field of wire type `wt` (groups, deprecated since proto2, are refused).
    pub(crate) fn skip(&mut self, wt: u8) -> Result<(), WireError> {
        match wt {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => {
                let end = self.pos + 4;
                if end > self.buf.len() {
                    return Err(self.err("truncated fixed32"));
                }
                self.pos = end;
                Ok(())
            }
            _ => Err(self.err("unsupported wire type")),
        }
    }

    /// `wt` must be the wire type the schema gives field `what`.
    pub(crate) fn expect(&self, wt: u8, want: u8, what: &'static str) -> Result<(), WireError> {
        if wt == want {
            Ok(())
        } else {
            Err(self.err(what))
        }
    }
}

/// One series of the request: where its labels and samples are.
#[derive(Clone, Debug)]
pub(super) struct SeriesSpan {
    pub(super) labels: Range<usize>,
    pub(super) samples: Range<usize>,
    /// [`super::BUFFER_CREATED_FIELD`]; 0: none.
    pub(super) created: i64,
}

/// A parsed request whose label strings point into the decompressed buffer.
#[derive(Debug, Default)]
pub struct RawRequest<'a> {
    pub(super) pairs: Vec<(&'a str, &'a str)>,
    pub(super) samples: Vec<Sample>,
    /// Every series of the request in order, with or without samples (their index is the
    /// one errors name).
    pub(super) series: Vec<SeriesSpan>,
    pub metadata: Vec<MetricMetadata>,
    /// Native histogram samples refused on their own (spans and buckets that disagree, …);
    /// `histogram_refusals` says why, naming the series.
    pub histograms_dropped: u64,
    pub histogram_refusals: Vec<String>,
    /// Native histogram samples, each with the index of its series (as [`Self::get`]).
    pub histograms: Vec<(usize, HistogramSample)>,
    /// Exemplars in the request, each with the index of its series (as [`Self::get`]).
    pub exemplars: Vec<(usize, Exemplar)>,
}

impl<'a> RawRequest<'a> {
    /// Number of series in the request, empty ones included.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Series `i` as sent (labels in the sender's order).
    pub fn get(&self, i: usize) -> Option<RawSeries<'_>> {
        let s = self.series.get(i)?;
        Some(RawSeries {
            labels: &self.pairs[s.labels.clone()],
            samples: &self.samples[s.samples.clone()],
        })
    }

    /// Series `i`'s created timestamp as a forwarding buffer's record keeps it
    /// ([`super::BUFFER_CREATED_FIELD`]), when it has one.
    pub fn created_ms(&self, i: usize) -> Option<i64> {
        self.series.get(i).map(|s| s.created).filter(|&t| t > 0)
    }

    /// Every series in request order, empty ones included.
    pub fn iter(&self) -> impl Iterator<Item = RawSeries<'_>> + '_ {
        self.series.iter().map(|s| RawSeries {
            labels: &self.pairs[s.labels.clone()],
            samples: &self.samples[s.samples.clone()],
        })
    }

    /// Counts a histogram refused on its own, naming its series.
    pub(super) fn refuse_histogram(&mut self, series: usize, why: String) {
        self.histograms_dropped += 1;
        if self.histogram_refusals.len() < 10 {
            self.histogram_refusals.push(format!(
                "timeseries[{series}]: native histogram refused: {why}"
            ));
        }
    }

    /// Total samples over all series.
    pub fn num_samples(&self) -> usize {
        self.samples.len()
    }
}

/// The vectors a parse fills, kept by a caller between requests (see [`parse_with`]) so a
/// warm server parses without allocating.
#[derive(Debug, Default)]
pub struct ParseBuffers {
    pub(super) pairs: Vec<(&'static str, &'static str)>,
    pub(super) samples: Vec<Sample>,
    pub(super) series: Vec<SeriesSpan>,
    /// A 2.0 request's symbol table (see [`super::v2`]).
    pub(super) symbols: Vec<&'static str>,
}

impl ParseBuffers {
    /// Bytes held, for callers that cap what they keep.
    pub fn capacity_bytes(&self) -> usize {
        self.pairs.capacity() * std::mem::size_of::<(&str, &str)>()
            + self.samples.capacity() * std::mem::size_of::<Sample>()
            + self.series.capacity() * std::mem::size_of::<SeriesSpan>()
            + self.symbols.capacity() * std::mem::size_of::<&str>()
    }
}

/// An emptied vector of borrowed pairs, retyped to another lifetime. Collecting an empty
/// iterator into a vector of the same layout reuses its allocation (std's in-place
/// collection), so the memory carries over from request to request without unsafe code.
pub(super) fn relabel<'b>(mut v: Vec<(&str, &str)>) -> Vec<(&'b str, &'b str)> {
    v.clear();
    v.into_iter().map(|_| ("", "")).collect()
}

/// [`relabel`] for a vector of single strings (the 2.0 symbol table).
pub(super) fn relabel_symbols<'b>(mut v: Vec<&str>) -> Vec<&'b str> {
    v.clear();
    v.into_iter().map(|_| "").collect()
}

impl<'a> RawRequest<'a> {
    /// Hands the vectors back for the next request.
    pub fn into_buffers(self) -> ParseBuffers {
        let RawRequest {
            pairs,
            mut samples,
            mut series,
            ..
        } = self;
        samples.clear();
        series.clear();
        ParseBuffers {
            pairs: relabel(pairs),
            samples,
            series,
            symbols: Vec::new(),
        }
    }
}

/// Parses a decompressed `WriteRequest`.
pub fn parse(buf: &[u8]) -> Result<RawRequest<'_>, WireError> {
    // A series takes at least a few hundred bytes in practice; these are first guesses
    // that spare most regrowth, not limits.
    let bufs = ParseBuffers {
        pairs: Vec::with_capacity(buf.len() / 40),
        samples: Vec::with_capacity(buf.len() / 200),
        series: Vec::with_capacity(buf.len() / 300),
        symbols: Vec::new(),
    };
    parse_with(buf, bufs)
}

/// [`parse`] into vectors kept from an earlier request ([`RawRequest::into_buffers`]).
pub fn parse_with(buf: &[u8], bufs: ParseBuffers) -> Result<RawRequest<'_>, WireError> {
    let mut req = RawRequest {
        pairs: relabel(bufs.pairs),
        samples: bufs.samples,
        series: bufs.series,
        ..Default::default()
    };
    req.samples.clear();
    req.series.clear();
    let mut c = Cursor::new(buf, 0);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, LEN, "timeseries is not length-delimited")?;
                let (b, at) = c.bytes()?;
                parse_series(b, at, &mut req)?;
            }
            3 => {
                c.expect(wt, LEN, "metadata is not length-delimited")?;
                let (b, at) = c.bytes()?;
                req.metadata.push(parse_metadata(b, at)?);
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(req)
}

fn parse_series<'a>(buf: &'a [u8], base: usize, req: &mut RawRequest<'a>) -> Result<(), WireError> {
    let (l0, s0) = (req.pairs.len(), req.samples.len());
    let mut created = 0i64;
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            // Another wire type is someone else's field of that number: skipped below.
            f if f == u64::from(super::BUFFER_CREATED_FIELD) && wt == VARINT => {
                created = c.varint()? as i64;
            }
            1 => {
                c.expect(wt, LEN, "label is not length-delimited")?;
                let (b, at) = c.bytes()?;
                req.pairs.push(parse_label(b, at)?);
            }
            2 => {
                c.expect(wt, LEN, "sample is not length-delimited")?;
                let (b, at) = c.bytes()?;
                req.samples.push(parse_sample(b, at)?);
            }
            3 if wt == LEN => {
                let (b, at) = c.bytes()?;
                let series = req.series.len();
                req.exemplars.push((series, parse_exemplar(b, at)?));
            }
            4 if wt == LEN => {
                let (b, at) = c.bytes()?;
                let series = req.series.len();
                match super::histogram::parse(b, at)? {
                    Ok(h) => req.histograms.push((series, h)),
                    Err(why) => req.refuse_histogram(series, why),
                }
            }
            3 | 4 => return Err(c.err("exemplar or histogram is not length-delimited")),
            _ => c.skip(wt)?,
        }
    }
    req.series.push(SeriesSpan {
        labels: l0..req.pairs.len(),
        samples: s0..req.samples.len(),
        created,
    });
    Ok(())
}

/// A `Label` (or the exposition format's `LabelPair`, the same message): name and value
/// borrowed from the buffer.
#[inline]
pub(crate) fn parse_label(buf: &[u8], base: usize) -> Result<(&str, &str), WireError> {
    let (mut name, mut value) = ("", "");
    // Keys and lengths under 128 are ASCII bytes too, so a label of ASCII strings is
    // usually an all-ASCII message; otherwise each string is validated on its own.
    let ascii = buf.is_ascii();
    let mut c = Cursor::new(buf, base);
    fn string<'a>(c: &mut Cursor<'a>, ascii: bool) -> Result<&'a str, WireError> {
        if ascii {
            c.ascii_string()
        } else {
            c.string()
        }
    }
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, LEN, "label name is not length-delimited")?;
                name = string(&mut c, ascii)?;
            }
            2 => {
                c.expect(wt, LEN, "label value is not length-delimited")?;
                value = string(&mut c, ascii)?;
            }
            _ => c.skip(wt)?,
        }
    }
    Ok((name, value))
}

fn parse_exemplar(buf: &[u8], base: usize) -> Result<Exemplar, WireError> {
    let mut labels = Vec::new();
    let (mut value, mut t) = (0.0, 0i64);
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, LEN, "exemplar label is not length-delimited")?;
                let (b, at) = c.bytes()?;
                labels.push(parse_label(b, at)?);
            }
            2 => {
                c.expect(wt, FIXED64, "exemplar value is not a double")?;
                value = f64::from_bits(c.fixed64()?);
            }
            3 => {
                c.expect(wt, VARINT, "exemplar timestamp is not a varint")?;
                t = c.varint()? as i64;
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(Exemplar {
        labels: Labels::from_pairs(labels),
        value,
        t,
    })
}

#[inline]
fn parse_sample(buf: &[u8], base: usize) -> Result<Sample, WireError> {
    let (mut v, mut t) = (0.0, 0i64);
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, FIXED64, "sample value is not a double")?;
                v = f64::from_bits(c.fixed64()?);
            }
            2 => {
                c.expect(wt, VARINT, "sample timestamp is not a varint")?;
                t = c.varint()? as i64;
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(Sample::new(t, v))
}

fn parse_metadata(buf: &[u8], base: usize) -> Result<MetricMetadata, WireError> {
    let mut kind = 0i32;
    let (mut family, mut help, mut unit) = ("", "", "");
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, VARINT, "metadata type is not a varint")?;
                // An int32 enum: protobuf keeps the low 32 bits of the varint.
                kind = c.varint()? as i32;
            }
            2 | 4 | 5 => {
                c.expect(wt, LEN, "metadata string is not length-delimited")?;
                let s = c.string()?;
                match field {
                    2 => family = s,
                    4 => help = s,
                    _ => unit = s,
                }
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(MetricMetadata {
        metric_family: family.to_string(),
        kind: super::metric_type_name(kind).to_string(),
        help: help.to_string(),
        unit: unit.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_carry_over_between_requests() {
        let one = [0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, b'a'];
        let req = parse(&one).unwrap();
        assert_eq!(req.get(0).unwrap().labels, &[("a", "")]);
        let bufs = req.into_buffers();
        let kept = bufs.capacity_bytes();
        assert!(kept > 0);
        let two = [0x0a, 0x05, 0x0a, 0x03, 0x12, 0x01, b'b'];
        let req = parse_with(&two, bufs).unwrap();
        assert_eq!(req.len(), 1, "nothing of the first request is left");
        assert_eq!(req.get(0).unwrap().labels, &[("", "b")]);
        assert_eq!(
            req.into_buffers().capacity_bytes(),
            kept,
            "the memory was reused"
        );
    }

    /// A label of ASCII strings takes the unchecked path, one with other UTF-8 the checked
    /// one; both read the same strings, and bytes that are not UTF-8 are still refused
    /// wherever they sit.
    #[test]
    fn ascii_and_utf8_labels_read_alike() {
        let label = |name: &[u8], value: &[u8]| {
            let mut l = vec![0x0a, name.len() as u8];
            l.extend_from_slice(name);
            l.extend_from_slice(&[0x12, value.len() as u8]);
            l.extend_from_slice(value);
            let mut series = vec![0x0a, l.len() as u8];
            series.extend_from_slice(&l);
            let mut req = vec![0x0a, series.len() as u8];
            req.extend_from_slice(&series);
            req
        };
        let ascii = label(b"job", b"node");
        assert_eq!(
            parse(&ascii).unwrap().get(0).unwrap().labels,
            &[("job", "node")]
        );
        let utf8 = label(b"job", "n\u{f6}de".as_bytes());
        assert_eq!(
            parse(&utf8).unwrap().get(0).unwrap().labels,
            &[("job", "n\u{f6}de")]
        );
        for bad in [label(b"job", &[b'a', 0xff]), label(&[0xc3], b"x")] {
            assert_eq!(parse(&bad).unwrap_err().what, "string is not UTF-8");
        }
    }

    #[test]
    fn errors_name_the_offset() {
        // Field 1 (timeseries), length 5, but only 2 bytes follow.
        let e = parse(&[0x0a, 0x05, 0x0a, 0x00]).unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.to_string().contains("length past the end"), "{e}");
        // A timeseries holding a label whose name is not UTF-8.
        let e = parse(&[0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff]).unwrap_err();
        assert_eq!(e.what, "string is not UTF-8");
        assert_eq!(e.offset, 6);
        // Groups are refused.
        assert!(parse(&[0x0b]).is_err());
        // Field number 0.
        assert!(parse(&[0x02, 0x00]).is_err());
        // An 11-byte varint.
        assert!(
            parse(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .is_err()
        );
    }

    #[test]
    fn unknown_fields_are_skipped_and_last_scalar_wins() {
        let mut buf = Vec::new();
        // Unknown top-level fields of every wire type.
        buf.extend_from_slice(&[0x10, 0x96, 0x01]); // field 2 varint
        buf.extend_from_slice(&[0x21, 1, 2, 3, 4, 5, 6, 7, 8]); // field 4 fixed64
        buf.extend_from_slice(&[0x2d, 1, 2, 3, 4]); // field 5 fixed32
        buf.extend_from_slice(&[0x32, 0x02, 0xaa, 0xbb]); // field 6 bytes
                                                          // A series: label name "a" value "x" then value "y"; a sample with t=5 given twice.
        let label = [0x0a, 0x01, b'a', 0x12, 0x01, b'x', 0x12, 0x01, b'y'];
        let sample = [0x10, 0x03, 0x10, 0x05];
        let mut series = vec![0x0a, label.len() as u8];
        series.extend_from_slice(&label);
        series.extend_from_slice(&[0x12, sample.len() as u8]);
        series.extend_from_slice(&sample);
        // An empty exemplar (all defaults), then one with label t="x", value 1.5, ts 7;
        // then 2 histograms.
        series.extend_from_slice(&[0x1a, 0x00]);
        let ex_label = [0x0a, 0x01, b't', 0x12, 0x01, b'x'];
        let mut ex = vec![0x0a, ex_label.len() as u8];
        ex.extend_from_slice(&ex_label);
        ex.push(0x11);
        ex.extend_from_slice(&1.5f64.to_bits().to_le_bytes());
        ex.extend_from_slice(&[0x18, 0x07]);
        series.push(0x1a);
        series.push(ex.len() as u8);
        series.extend_from_slice(&ex);
        series.extend_from_slice(&[0x22, 0x00, 0x22, 0x00]);
        buf.push(0x0a);
        buf.push(series.len() as u8);
        buf.extend_from_slice(&series);
        let req = parse(&buf).unwrap();
        assert_eq!(req.len(), 1);
        let s = req.get(0).unwrap();
        assert_eq!(s.labels, &[("a", "y")]);
        assert_eq!(s.samples, &[Sample::new(5, 0.0)]);
        // Two empty histogram messages: two empty (valid) histograms of series 0.
        assert_eq!(req.histograms_dropped, 0);
        assert_eq!(req.histograms.len(), 2);
        assert!(req
            .histograms
            .iter()
            .all(|(i, h)| *i == 0 && h.h.count == 0.0));
        assert_eq!(req.exemplars.len(), 2);
        assert_eq!(req.exemplars[1].0, 0);
        assert_eq!(
            req.exemplars[1].1,
            Exemplar {
                labels: Labels::from_pairs([("t", "x")]),
                value: 1.5,
                t: 7
            }
        );
        assert_eq!(req.exemplars[0].1.labels, Labels::empty());
    }
}
