//! Prometheus remote write 2.0: a snappy-compressed protobuf `io.prometheus.write.v2.Request`.
//!
//! The message interns every string in one `symbols` table (index 0 is always the empty
//! string); a series names its labels as pairs of indexes into it, and carries its metadata
//! (type, help, unit) itself instead of in a separate list. Reading resolves the indexes
//! into strings borrowed from the decompressed buffer and lands the series in the same
//! [`RawRequest`] the 1.0 reader fills, so the storage path is shared.
//!
//! What is kept of each part of the message:
//! - labels and float samples: stored, after the checks 1.0 series get;
//! - metadata: fed to the same metadata sink as 1.0's, one entry per metric family (the
//!   family is the series' `__name__`, without `_bucket`/`_sum`/`_count`/`_created` for
//!   histograms and summaries, which is how 1.0 senders name it);
//! - created (start) timestamps, in the series (`created_timestamp`, field 6) or per sample
//!   (`start_timestamp`, the specification's later spelling): read and kept in the request;
//!   not stored by default, as in Prometheus. With `created-timestamp-zero-ingestion` on,
//!   the receiver stores a zero at the created timestamp before the series' first sample
//!   or histogram ([`V2Request::series_with_zeros`], [`V2Request::histogram_zeros`]);
//! - native histograms: decoded (integer and float, custom buckets too) and stored as float
//!   histograms; one whose spans and buckets disagree is refused on its own;
//! - exemplars: decoded (series, labels, value, timestamp; see [`Exemplar`]) and handed to
//!   the exemplar store grouped by series ([`V2Request::series_exemplars`]); one with a bad
//!   label reference is refused on its own.
//!
//! A series with a bad reference (an odd number of `labels_refs`, an index past the table),
//! or labels a stored series may not have, is refused on its own and named by its index;
//! the rest of the request is still stored (the receiver then answers 400, as a 2.0 partial
//! write). Bytes that are not a `Request` at all, or a table not starting with the empty
//! string, refuse the whole request.

use std::collections::HashMap;
use std::ops::Range;

use meshlens_model::{
    HistogramSample, Labels, MetricMetadata, RawSeries, Sample, SeriesExemplars, SeriesHistograms,
    METRIC_NAME,
};

use super::wire::{
    relabel, relabel_symbols, Cursor, ParseBuffers, RawRequest, SeriesSpan, WireError, FIXED64,
    LEN, VARINT,
};
use super::{check_series, metric_type_name, DecodeError, WriteRequest};

mod encode;
#[cfg(test)]
mod tests;

pub use encode::{encode, encode_protobuf, transcode_v1, Encoder, FamilyMetadata};

/// A series of the request that was refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSeries {
    /// Its index in the request's `timeseries`.
    pub index: usize,
    pub reason: String,
    /// The float samples it carried, refused with it.
    pub samples: u64,
}

/// An exemplar as sent, with the series it belongs to: what an exemplar store takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exemplar<'r> {
    pub series_index: usize,
    /// The series' labels, as sent.
    pub series: &'r [(&'r str, &'r str)],
    /// The exemplar's own labels (`trace_id`, …), as sent.
    pub labels: &'r [(&'r str, &'r str)],
    pub value: f64,
    /// Milliseconds since the epoch; 0 when the sender gave none.
    pub timestamp: i64,
}

impl Exemplar<'_> {
    /// The series' and the exemplar's labels, normalised.
    pub fn to_labels(&self) -> (Labels, Labels) {
        (
            Labels::from_pairs(self.series.iter().copied()),
            Labels::from_pairs(self.labels.iter().copied()),
        )
    }
}

#[derive(Clone, Debug)]
struct ExemplarSpan {
    series: usize,
    labels: Range<usize>,
    value: f64,
    timestamp: i64,
}

/// A parsed 2.0 request whose strings point into the decompressed buffer.
#[derive(Debug, Default)]
pub struct V2Request<'a> {
    /// The series in request order (a refused one stays in its place, without labels or
    /// samples, so indexes match the request's), the metadata and the dropped counts.
    pub raw: RawRequest<'a>,
    symbols: Vec<&'a str>,
    /// Series refused for bad references or labels, in request order.
    pub invalid: Vec<InvalidSeries>,
    exemplar_pairs: Vec<(&'a str, &'a str)>,
    exemplars: Vec<ExemplarSpan>,
    /// Exemplars with a bad label reference, and the first one's description.
    pub invalid_exemplars: u64,
    pub first_invalid_exemplar: Option<String>,
    /// Per series index: its created timestamp (the series' own, else its first sample's
    /// start timestamp); 0 when unset.
    created: Vec<i64>,
}

impl<'a> V2Request<'a> {
    /// The series with samples, all valid, in request order.
    pub fn series(&self) -> Vec<RawSeries<'_>> {
        self.raw.iter().filter(|s| !s.samples.is_empty()).collect()
    }

    /// Float samples refused with invalid series.
    pub fn invalid_samples(&self) -> u64 {
        self.invalid.iter().map(|s| s.samples).sum()
    }

    /// Series `i`'s created timestamp, when the sender gave one.
    pub fn created_timestamp(&self, i: usize) -> Option<i64> {
        self.created.get(i).copied().filter(|&t| t != 0)
    }

    /// [`Self::series`], each with its created-timestamp zero: a float 0 at the series'
    /// created timestamp when that is before its first sample (see [`crate::created`]).
    /// As in Prometheus's receiver, the type in the series' metadata is not consulted:
    /// senders give a created timestamp to counters, histograms and summaries only, and
    /// one without metadata still gets its zero.
    pub fn series_with_zeros(&self) -> Vec<(RawSeries<'_>, Option<Sample>)> {
        self.raw
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.samples.is_empty())
            .map(|(i, s)| {
                let zero = self
                    .created_timestamp(i)
                    .and_then(|ct| crate::created::float_zero(ct, s.samples[0].t));
                (s, zero)
            })
            .collect()
    }

    /// The created timestamp (0: none) of each series [`Self::to_write_request`] puts in
    /// `timeseries`, in the same order.
    pub fn request_created(&self) -> Vec<i64> {
        self.raw
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.samples.is_empty())
            .map(|(i, _)| self.created_timestamp(i).unwrap_or(0))
            .collect()
    }

    /// The created timestamp (0: none) of each native-histogram series
    /// [`Self::to_write_request`] puts in `histograms`, in the same order: one per run of
    /// histograms of one series, those of series with invalid labels left out, as
    /// `request_histograms` groups them.
    pub fn histograms_created(&self) -> Vec<i64> {
        self.histogram_runs()
            .map(|(i, _, _)| self.created_timestamp(i).unwrap_or(0))
            .collect()
    }

    /// The created-timestamp zeros of the native-histogram series: an empty histogram at
    /// the series' created timestamp when that is before its first histogram. Series with
    /// invalid labels get none (their histograms are refused).
    pub fn histogram_zeros(&self) -> Vec<SeriesHistograms> {
        self.histogram_runs()
            .filter_map(|(i, first, series)| {
                let zero = self
                    .created_timestamp(i)
                    .and_then(|ct| crate::created::histogram_zero(ct, first))?;
                Some(SeriesHistograms {
                    labels: series.to_labels(),
                    samples: vec![zero],
                })
            })
            .collect()
    }

    /// Each run of native histograms of one series, by the first of the run, for series
    /// whose labels are valid (the others' histograms are refused): the series index, its
    /// first histogram of the run and the series.
    fn histogram_runs(&self) -> impl Iterator<Item = (usize, &HistogramSample, RawSeries<'_>)> {
        let mut last = None;
        self.raw.histograms.iter().filter_map(move |(i, first)| {
            if last == Some(*i) {
                return None;
            }
            last = Some(*i);
            let series = self.raw.get(*i)?;
            check_series(&series).is_ok().then_some((*i, first, series))
        })
    }

    /// The exemplars of valid series, with good references, in request order.
    pub fn exemplars(&self) -> impl Iterator<Item = Exemplar<'_>> + '_ {
        self.exemplars.iter().map(move |e| {
            let s = &self.raw.series[e.series];
            Exemplar {
                series_index: e.series,
                series: &self.raw.pairs[s.labels.clone()],
                labels: &self.exemplar_pairs[e.labels.clone()],
                value: e.value,
                timestamp: e.timestamp,
            }
        })
    }

    /// The exemplars grouped by series, as the exemplar store takes them, and why any were
    /// refused: an exemplar of a series without samples has labels no sample check saw, so
    /// they are checked here (as 1.0's `request_exemplars` does).
    pub fn series_exemplars(&self) -> (Vec<SeriesExemplars>, Vec<String>) {
        super::group_exemplars(self.exemplars().map(|e| {
            let exemplar = meshlens_model::Exemplar {
                labels: Labels::from_pairs(e.labels.iter().copied()),
                value: e.value,
                t: e.timestamp,
            };
            (e.series_index, e.series, exemplar)
        }))
    }

    /// Hands the vectors back for the next request.
    pub fn into_buffers(self) -> ParseBuffers {
        let mut b = self.raw.into_buffers();
        b.symbols = relabel_symbols(self.symbols);
        b
    }

    /// Owned series, metadata, exemplars and native histograms, for callers that keep them
    /// past the buffer.
    pub fn to_write_request(&self) -> WriteRequest {
        let (histograms, histogram_refusals, histograms_dropped) =
            super::owned_histograms(&self.raw);
        WriteRequest {
            timeseries: self
                .series()
                .iter()
                .map(RawSeries::to_time_series)
                .collect(),
            metadata: self.raw.metadata.clone(),
            histograms_dropped,
            histogram_refusals,
            exemplars: self.series_exemplars().0,
            histograms,
        }
    }
}

/// Parses a decompressed `io.prometheus.write.v2.Request`.
pub fn parse(buf: &[u8]) -> Result<V2Request<'_>, DecodeError> {
    parse_with(buf, ParseBuffers::default())
}

/// [`parse`] into vectors kept from an earlier request.
pub fn parse_with(buf: &[u8], bufs: ParseBuffers) -> Result<V2Request<'_>, DecodeError> {
    let ParseBuffers {
        pairs,
        mut samples,
        mut series,
        symbols,
    } = bufs;
    samples.clear();
    series.clear();
    let mut req = V2Request {
        raw: RawRequest {
            pairs: relabel(pairs),
            samples,
            series,
            ..Default::default()
        },
        symbols: relabel_symbols(symbols),
        ..Default::default()
    };
    // The table first (a sender may write it anywhere in the message), then the series.
    let mut c = Cursor::new(buf, 0);
    while !c.done() {
        let (field, wt) = c.key()?;
        if field == 4 {
            c.expect(wt, LEN, "symbol is not length-delimited")?;
            req.symbols.push(c.string()?);
        } else {
            c.skip(wt)?;
        }
    }
    if let Some(first) = req.symbols.first().filter(|s| !s.is_empty()) {
        return Err(DecodeError::Symbols(format!(
            "symbols[0] must be the empty string, not {first:?}"
        )));
    }
    let mut families: HashMap<&str, usize> = HashMap::new();
    let mut c = Cursor::new(buf, 0);
    while !c.done() {
        let (field, wt) = c.key()?;
        if field == 5 {
            c.expect(wt, LEN, "timeseries is not length-delimited")?;
            let (b, at) = c.bytes()?;
            parse_series(b, at, &mut req, &mut families)?;
        } else {
            c.skip(wt)?;
        }
    }
    Ok(req)
}

/// Resolves label references into pairs, pushed onto `out`. A wrong reference is reported
/// (as `what[j]`) after the whole field is read, so wire errors still come first.
struct RefReader<'s, 'a> {
    symbols: &'s [&'a str],
    /// References read so far (the index of the next one).
    count: usize,
    name: Option<&'a str>,
    bad: Option<String>,
}

impl<'s, 'a> RefReader<'s, 'a> {
    fn new(symbols: &'s [&'a str]) -> Self {
        RefReader {
            symbols,
            count: 0,
            name: None,
            bad: None,
        }
    }

    fn push(&mut self, r: u64, what: &str, out: &mut Vec<(&'a str, &'a str)>) {
        let j = self.count;
        self.count += 1;
        let s = match usize::try_from(r).ok().and_then(|i| self.symbols.get(i)) {
            Some(s) => *s,
            None => {
                self.bad.get_or_insert_with(|| {
                    format!(
                        "{what}[{j}] = {r} is past the end of the {} symbols",
                        self.symbols.len()
                    )
                });
                ""
            }
        };
        match self.name.take() {
            None => self.name = Some(s),
            Some(name) => out.push((name, s)),
        }
    }

    /// One occurrence of a `repeated uint32` field: packed or a single varint.
    fn field(
        &mut self,
        c: &mut Cursor<'a>,
        wt: u8,
        what: &str,
        out: &mut Vec<(&'a str, &'a str)>,
    ) -> Result<(), WireError> {
        if wt == LEN {
            let (b, at) = c.bytes()?;
            let mut p = Cursor::new(b, at);
            while !p.done() {
                let r = p.varint()?;
                self.push(r, what, out);
            }
            Ok(())
        } else {
            c.expect(wt, VARINT, "label reference is not a varint")?;
            let r = c.varint()?;
            self.push(r, what, out);
            Ok(())
        }
    }

    /// The first problem: a bad index, or an odd count.
    fn finish(self, what: &str) -> Option<String> {
        self.bad.or_else(|| {
            self.name
                .map(|_| format!("{what} has an odd number ({}) of entries", self.count))
        })
    }
}

fn parse_series<'a>(
    buf: &'a [u8],
    base: usize,
    req: &mut V2Request<'a>,
    families: &mut HashMap<&'a str, usize>,
) -> Result<(), WireError> {
    let index = req.raw.series.len();
    let (l0, s0, e0) = (
        req.raw.pairs.len(),
        req.raw.samples.len(),
        req.exemplars.len(),
    );
    let symbols = std::mem::take(&mut req.symbols);
    let mut refs = RefReader::new(&symbols);
    let mut created = 0i64;
    let mut exemplars_seen = 0usize;
    let mut metadata: Option<(i32, u64, u64)> = None;
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => refs.field(&mut c, wt, "labels_refs", &mut req.raw.pairs)?,
            2 => {
                c.expect(wt, LEN, "sample is not length-delimited")?;
                let (b, at) = c.bytes()?;
                let (sample, start) = parse_sample(b, at)?;
                req.raw.samples.push(sample);
                if created == 0 {
                    created = start;
                }
            }
            3 => {
                c.expect(wt, LEN, "histogram is not length-delimited")?;
                let (b, at) = c.bytes()?;
                let series = req.raw.series.len();
                match super::histogram::parse(b, at)? {
                    Ok(h) => req.raw.histograms.push((series, h)),
                    Err(why) => req.raw.refuse_histogram(series, why),
                }
            }
            4 => {
                c.expect(wt, LEN, "exemplar is not length-delimited")?;
                let (b, at) = c.bytes()?;
                let k = exemplars_seen;
                exemplars_seen += 1;
                let p0 = req.exemplar_pairs.len();
                let (value, timestamp, bad) =
                    parse_exemplar(b, at, &symbols, &mut req.exemplar_pairs)?;
                match bad {
                    None => req.exemplars.push(ExemplarSpan {
                        series: index,
                        labels: p0..req.exemplar_pairs.len(),
                        value,
                        timestamp,
                    }),
                    Some(reason) => {
                        req.exemplar_pairs.truncate(p0);
                        req.invalid_exemplars += 1;
                        req.first_invalid_exemplar.get_or_insert_with(|| {
                            format!("timeseries[{index}].exemplars[{k}]: {reason}")
                        });
                    }
                }
            }
            5 => {
                c.expect(wt, LEN, "metadata is not length-delimited")?;
                let (b, at) = c.bytes()?;
                metadata = Some(parse_metadata(b, at, metadata.unwrap_or_default())?);
            }
            6 => {
                c.expect(wt, VARINT, "created_timestamp is not a varint")?;
                let t = c.varint()? as i64;
                if t != 0 {
                    created = t;
                }
            }
            _ => c.skip(wt)?,
        }
    }
    let mut bad = refs.finish("labels_refs");
    if bad.is_none() {
        if let Some((_, help, unit)) = metadata {
            for (what, r) in [("help_ref", help), ("unit_ref", unit)] {
                if usize::try_from(r).map_or(true, |r| r >= symbols.len()) {
                    bad.get_or_insert_with(|| {
                        format!(
                            "metadata.{what} = {r} is past the end of the {} symbols",
                            symbols.len()
                        )
                    });
                }
            }
        }
    }
    if bad.is_none() && req.raw.samples.len() > s0 {
        let s = RawSeries {
            labels: &req.raw.pairs[l0..],
            samples: &req.raw.samples[s0..],
        };
        bad = check_series(&s).err();
    }
    if let Some(reason) = bad {
        req.invalid.push(InvalidSeries {
            index,
            reason,
            samples: (req.raw.samples.len() - s0) as u64,
        });
        req.raw.pairs.truncate(l0);
        req.raw.samples.truncate(s0);
        req.exemplars.truncate(e0);
        metadata = None;
    }
    if let Some((kind, help, unit)) = metadata.filter(|m| *m != (0, 0, 0)) {
        let name = req.raw.pairs[l0..]
            .iter()
            .find(|(n, _)| *n == METRIC_NAME)
            .map(|(_, v)| *v);
        if let Some(name) = name {
            let kind = metric_type_name(kind);
            let family = family_of(name, kind);
            let (help, unit) = (symbols[help as usize], symbols[unit as usize]);
            // Series of one family repeat its metadata: compared, not rebuilt.
            let same = |m: &MetricMetadata| m.kind == kind && m.help == help && m.unit == unit;
            match families.get(family).copied() {
                Some(i) if same(&req.raw.metadata[i]) => {}
                found => {
                    let md = MetricMetadata {
                        metric_family: family.to_string(),
                        kind: kind.to_string(),
                        help: help.to_string(),
                        unit: unit.to_string(),
                    };
                    match found {
                        Some(i) => req.raw.metadata[i] = md,
                        None => {
                            families.insert(family, req.raw.metadata.len());
                            req.raw.metadata.push(md);
                        }
                    }
                }
            }
        }
    }
    req.symbols = symbols;
    req.raw.series.push(SeriesSpan {
        labels: l0..req.raw.pairs.len(),
        samples: s0..req.raw.samples.len(),
        // A 2.0 series' created timestamp is kept in `created`; this is a buffer's field.
        created: 0,
    });
    req.created.push(created);
    Ok(())
}

/// A sample and its start timestamp (0: none).
fn parse_sample(buf: &[u8], base: usize) -> Result<(Sample, i64), WireError> {
    let (mut v, mut t, mut start) = (0.0, 0i64, 0i64);
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
            3 => {
                c.expect(wt, VARINT, "sample start_timestamp is not a varint")?;
                start = c.varint()? as i64;
            }
            _ => c.skip(wt)?,
        }
    }
    Ok((Sample::new(t, v), start))
}

/// Value, timestamp and (when a reference is bad) why; labels are pushed onto `pairs`.
fn parse_exemplar<'a>(
    buf: &'a [u8],
    base: usize,
    symbols: &[&'a str],
    pairs: &mut Vec<(&'a str, &'a str)>,
) -> Result<(f64, i64, Option<String>), WireError> {
    let (mut v, mut t) = (0.0, 0i64);
    let mut refs = RefReader::new(symbols);
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => refs.field(&mut c, wt, "labels_refs", pairs)?,
            2 => {
                c.expect(wt, FIXED64, "exemplar value is not a double")?;
                v = f64::from_bits(c.fixed64()?);
            }
            3 => {
                c.expect(wt, VARINT, "exemplar timestamp is not a varint")?;
                t = c.varint()? as i64;
            }
            _ => c.skip(wt)?,
        }
    }
    Ok((v, t, refs.finish("labels_refs")))
}

/// Type, help and unit references, over what earlier occurrences set (protobuf merges
/// repeated occurrences of a message field).
fn parse_metadata(
    buf: &[u8],
    base: usize,
    (mut kind, mut help, mut unit): (i32, u64, u64),
) -> Result<(i32, u64, u64), WireError> {
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, VARINT, "metadata type is not a varint")?;
                kind = c.varint()? as i32;
            }
            3 => {
                c.expect(wt, VARINT, "metadata help_ref is not a varint")?;
                help = c.varint()?;
            }
            4 => {
                c.expect(wt, VARINT, "metadata unit_ref is not a varint")?;
                unit = c.varint()?;
            }
            _ => c.skip(wt)?,
        }
    }
    Ok((kind, help, unit))
}

/// Suffixes a family's series add to its name, and the types that add them.
pub(super) const SUFFIXES: [(&str, &[&str]); 6] = [
    ("_bucket", &["histogram", "gaugehistogram"]),
    ("_sum", &["histogram", "gaugehistogram", "summary"]),
    ("_count", &["histogram", "gaugehistogram", "summary"]),
    ("_created", &["counter", "histogram", "summary"]),
    ("_total", &["counter"]),
    ("_info", &["info"]),
];

/// The family a series of type `kind` belongs to. Counters and infos keep their suffix, as
/// the text format's `# TYPE` line names them (`http_requests_total`).
fn family_of<'n>(name: &'n str, kind: &str) -> &'n str {
    for (suffix, kinds) in &SUFFIXES[..4] {
        if kinds.contains(&kind) {
            if let Some(base) = name.strip_suffix(suffix).filter(|b| !b.is_empty()) {
                return base;
            }
        }
    }
    name
}

/// Decompresses and parses, with a ceiling on the decompressed size, into owned data:
/// the valid series and metadata, and what was refused.
pub fn decode_with_limit(
    snappy_body: &[u8],
    max_decompressed_bytes: usize,
) -> Result<Decoded, DecodeError> {
    let mut raw = Vec::new();
    super::decompress_into(snappy_body, max_decompressed_bytes, &mut raw)?;
    let req = parse(&raw)?;
    Ok(Decoded {
        request: req.to_write_request(),
        created: req.request_created(),
        histograms_created: req.histograms_created(),
        invalid: req.invalid.clone(),
        invalid_exemplars: req.invalid_exemplars,
        first_invalid_exemplar: req.first_invalid_exemplar.clone(),
    })
}

/// An owned decoded 2.0 request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    /// The valid series with samples, the metadata and the dropped counts.
    pub request: WriteRequest,
    /// The created timestamp of each of `request.timeseries` (0: none), for a forwarder
    /// to pass on.
    pub created: Vec<i64>,
    /// Likewise for each of `request.histograms`.
    pub histograms_created: Vec<i64>,
    pub invalid: Vec<InvalidSeries>,
    pub invalid_exemplars: u64,
    pub first_invalid_exemplar: Option<String>,
}
