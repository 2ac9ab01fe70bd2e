//! Writing 2.0 requests: an [`Encoder`] that interns strings as series are added, and the
//! transcoding of a forwarding buffer's 1.0 records, with each series given its family's
//! metadata ([`FamilyMetadata`]).

use std::collections::HashMap;

use meshlens_model::{Exemplar, HistogramSample, Labels, MetricMetadata, Sample, METRIC_NAME};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use super::super::{
    compress, histogram, metric_type_code, put_sample, sample_len, wire, WireError, WriteRequest,
};
use super::SUFFIXES;

/// The metadata a sender knows per metric family, attached to every series of the family
/// it sends (2.0 carries metadata in each series, not in a separate list).
#[derive(Clone, Debug, Default)]
pub struct FamilyMetadata {
    by_family: HashMap<String, MetricMetadata>,
}

impl FamilyMetadata {
    /// Families remembered at most; metadata of new families beyond is not sent.
    pub const MAX_FAMILIES: usize = 100_000;

    /// Takes newer metadata (replacing a family's older).
    pub fn update(&mut self, metadata: &[MetricMetadata]) {
        for m in metadata {
            if let Some(old) = self.by_family.get_mut(&m.metric_family) {
                *old = m.clone();
            } else if self.by_family.len() < Self::MAX_FAMILIES {
                self.by_family.insert(m.metric_family.clone(), m.clone());
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_family.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_family.is_empty()
    }

    /// The metadata of the family a series named `name` belongs to: its own name, or the
    /// name without a suffix its family's type adds (`_bucket` of a histogram, …).
    pub fn lookup(&self, name: &str) -> Option<&MetricMetadata> {
        if let Some(m) = self.by_family.get(name) {
            return Some(m);
        }
        SUFFIXES.iter().find_map(|(suffix, kinds)| {
            let base = name.strip_suffix(suffix)?;
            self.by_family
                .get(base)
                .filter(|m| kinds.contains(&m.kind.as_str()))
        })
    }
}

/// Builds a request: strings are interned as series are added, and the table is written
/// before the series.
pub struct Encoder<'s> {
    index: HashMap<&'s str, u32>,
    symbols: Vec<&'s str>,
    body: Vec<u8>,
    refs: Vec<u32>,
    samples: u64,
    histograms: u64,
}

impl Default for Encoder<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'s> Encoder<'s> {
    pub fn new() -> Self {
        Encoder {
            index: HashMap::from([("", 0)]),
            symbols: vec![""],
            body: Vec::new(),
            refs: Vec::new(),
            samples: 0,
            histograms: 0,
        }
    }

    fn intern(&mut self, s: &'s str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.symbols.len() as u32;
        self.symbols.push(s);
        self.index.insert(s, i);
        i
    }

    /// Float samples added so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// One series: labels sorted by name, samples in time order.
    pub fn add(
        &mut self,
        labels: impl IntoIterator<Item = (&'s str, &'s str)>,
        samples: &[Sample],
        metadata: Option<&'s MetricMetadata>,
    ) {
        self.add_with_exemplars(labels, samples, &[], metadata)
    }

    /// [`Self::add`] with the series' exemplars (field 4 of a 2.0 `TimeSeries`).
    pub fn add_with_exemplars(
        &mut self,
        labels: impl IntoIterator<Item = (&'s str, &'s str)>,
        samples: &[Sample],
        exemplars: &[&'s Exemplar],
        metadata: Option<&'s MetricMetadata>,
    ) {
        self.add_series(labels, samples, &[], exemplars, metadata)
    }

    /// Native histogram samples added so far.
    pub fn histograms(&self) -> u64 {
        self.histograms
    }

    /// One series with all it may carry: float samples, native histogram samples (field 3
    /// of a 2.0 `TimeSeries`, written as float histograms), exemplars and metadata.
    pub fn add_series(
        &mut self,
        labels: impl IntoIterator<Item = (&'s str, &'s str)>,
        samples: &[Sample],
        histograms: &[&HistogramSample],
        exemplars: &[&'s Exemplar],
        metadata: Option<&'s MetricMetadata>,
    ) {
        self.add_series_created(labels, samples, histograms, exemplars, metadata, 0)
    }

    /// [`Self::add_series`] with the series' created timestamp (`created_timestamp`, field
    /// 6; 0 or negative: none, and the field is left out), which a receiver with
    /// created-timestamp zero ingestion turns into a zero before the first sample.
    pub fn add_series_created(
        &mut self,
        labels: impl IntoIterator<Item = (&'s str, &'s str)>,
        samples: &[Sample],
        histograms: &[&HistogramSample],
        exemplars: &[&'s Exemplar],
        metadata: Option<&'s MetricMetadata>,
        created: i64,
    ) {
        let histogram_messages = histogram::encode_each(histograms.iter().copied());
        let mut refs = std::mem::take(&mut self.refs);
        refs.clear();
        for (n, v) in labels {
            refs.push(self.intern(n));
            refs.push(self.intern(v));
        }
        let n_refs = refs.len();
        for e in exemplars {
            for l in e.labels.iter() {
                refs.push(self.intern(&l.name));
                refs.push(self.intern(&l.value));
            }
        }
        let all_refs = refs;
        let (refs, exemplar_refs) = all_refs.split_at(n_refs);
        let md = metadata.map(|m| {
            (
                metric_type_code(&m.kind) as u64,
                u64::from(self.intern(&m.help)),
                u64::from(self.intern(&m.unit)),
            )
        });
        let packed: usize = refs.iter().map(|r| encoded_len_varint(u64::from(*r))).sum();
        // Each exemplar: its packed label refs (field 1), value (2), timestamp (3).
        let mut exemplar_lens = Vec::with_capacity(exemplars.len());
        let mut at = 0;
        for e in exemplars {
            let n = 2 * e.labels.len();
            let packed: usize = exemplar_refs[at..at + n]
                .iter()
                .map(|r| encoded_len_varint(u64::from(*r)))
                .sum();
            at += n;
            let refs_len = if n == 0 {
                0
            } else {
                1 + encoded_len_varint(packed as u64) + packed
            };
            exemplar_lens.push((
                packed,
                refs_len + 1 + 8 + 1 + encoded_len_varint(e.t as u64),
            ));
        }
        let md_len = md.map_or(0, |(k, h, u)| {
            [k, h, u]
                .iter()
                .filter(|v| **v != 0)
                .map(|v| 1 + encoded_len_varint(*v))
                .sum::<usize>()
        });
        let len = if refs.is_empty() {
            0
        } else {
            1 + encoded_len_varint(packed as u64) + packed
        } + samples
            .iter()
            .map(|s| {
                let n = sample_len(s);
                1 + encoded_len_varint(n as u64) + n
            })
            .sum::<usize>()
            + histogram::fields_len(&histogram_messages)
            + exemplar_lens
                .iter()
                .map(|(_, n)| 1 + encoded_len_varint(*n as u64) + n)
                .sum::<usize>()
            + if md_len > 0 {
                1 + encoded_len_varint(md_len as u64) + md_len
            } else {
                0
            }
            + if created > 0 {
                1 + encoded_len_varint(created as u64)
            } else {
                0
            };
        let out = &mut self.body;
        encode_key(5, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
        if !refs.is_empty() {
            encode_key(1, WireType::LengthDelimited, out);
            encode_varint(packed as u64, out);
            for r in refs {
                encode_varint(u64::from(*r), out);
            }
        }
        for s in samples {
            put_sample(out, s);
        }
        histogram::write_fields(3, &histogram_messages, out);
        let mut at = 0;
        for (e, (packed, len)) in exemplars.iter().zip(&exemplar_lens) {
            encode_key(4, WireType::LengthDelimited, out);
            encode_varint(*len as u64, out);
            let n = 2 * e.labels.len();
            if n > 0 {
                encode_key(1, WireType::LengthDelimited, out);
                encode_varint(*packed as u64, out);
                for r in &exemplar_refs[at..at + n] {
                    encode_varint(u64::from(*r), out);
                }
            }
            at += n;
            encode_key(2, WireType::SixtyFourBit, out);
            out.extend_from_slice(&e.value.to_bits().to_le_bytes());
            encode_key(3, WireType::Varint, out);
            encode_varint(e.t as u64, out);
        }
        if md_len > 0 {
            encode_key(5, WireType::LengthDelimited, out);
            encode_varint(md_len as u64, out);
            if let Some((k, h, u)) = md {
                for (tag, v) in [(1, k), (3, h), (4, u)] {
                    if v != 0 {
                        encode_key(tag, WireType::Varint, out);
                        encode_varint(v, out);
                    }
                }
            }
        }
        if created > 0 {
            encode_key(6, WireType::Varint, out);
            encode_varint(created as u64, out);
        }
        self.samples += samples.len() as u64;
        self.histograms += histograms.len() as u64;
        self.refs = all_refs;
    }

    /// The uncompressed protobuf `Request`.
    pub fn finish(self) -> Vec<u8> {
        let table: usize = self
            .symbols
            .iter()
            .map(|s| 1 + encoded_len_varint(s.len() as u64) + s.len())
            .sum();
        let mut out = Vec::with_capacity(table + self.body.len());
        for s in &self.symbols {
            encode_key(4, WireType::LengthDelimited, &mut out);
            encode_varint(s.len() as u64, &mut out);
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }
}

/// The uncompressed 2.0 protobuf of `req` (float series, then native histogram series),
/// each series with its family's metadata from `req.metadata`.
pub fn encode_protobuf(req: &WriteRequest) -> Vec<u8> {
    let mut families = FamilyMetadata::default();
    families.update(&req.metadata);
    let mut e = Encoder::new();
    for ts in &req.timeseries {
        let md = ts.labels.metric_name().and_then(|n| families.lookup(n));
        e.add(
            ts.labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str())),
            &ts.samples,
            md,
        );
    }
    for s in &req.histograms {
        let md = s.labels.metric_name().and_then(|n| families.lookup(n));
        let samples: Vec<&HistogramSample> = s.samples.iter().collect();
        e.add_series(
            s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            &[],
            &samples,
            &[],
            md,
        );
    }
    e.finish()
}

/// [`encode_protobuf`], snappy-compressed as remote write sends it.
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    compress(&encode_protobuf(req))
}

/// A 1.0 `WriteRequest` (as a forwarding buffer keeps them) as a 2.0 `Request`, and the
/// float samples in it. The 1.0 metadata updates `families`, whose entries go with every
/// series of their family. Exemplars and native histograms go with their series (1.0
/// senders, and the buffer, put them in series of their own without samples, which stay
/// so); series with no samples, histograms or exemplars are left out. A histogram the 1.0
/// reader refused (spans and buckets that disagree) is left out too: a 2.0 receiver would
/// refuse it the same way. A series' created timestamp, kept by the buffer in
/// [`BUFFER_CREATED_FIELD`](super::super::BUFFER_CREATED_FIELD), becomes its
/// `created_timestamp`.
pub fn transcode_v1(
    payload: &[u8],
    families: &mut FamilyMetadata,
) -> Result<(Vec<u8>, u64), WireError> {
    let req = wire::parse(payload)?;
    families.update(&req.metadata);
    // Labels out of order or repeated are normalised first (the buffer's own records are
    // sorted already, so this stays empty).
    let fixed: Vec<Option<Labels>> = req
        .iter()
        .map(|s| (!s.is_normalised()).then(|| s.to_labels()))
        .collect();
    // Exemplars by series index (the reader keeps them in request order).
    let mut exemplars: Vec<Vec<&Exemplar>> = Vec::new();
    for (i, ex) in &req.exemplars {
        if exemplars.len() <= *i {
            exemplars.resize_with(*i + 1, Vec::new);
        }
        exemplars[*i].push(ex);
    }
    // Native histograms likewise.
    let mut histograms: Vec<Vec<&HistogramSample>> = Vec::new();
    for (i, h) in &req.histograms {
        if histograms.len() <= *i {
            histograms.resize_with(*i + 1, Vec::new);
        }
        histograms[*i].push(h);
    }
    let none: Vec<&Exemplar> = Vec::new();
    let no_histograms: Vec<&HistogramSample> = Vec::new();
    let mut e = Encoder::new();
    for (i, (s, fixed)) in req.iter().zip(&fixed).enumerate() {
        let ex = exemplars.get(i).unwrap_or(&none);
        let hs = histograms.get(i).unwrap_or(&no_histograms);
        if s.samples.is_empty() && ex.is_empty() && hs.is_empty() {
            continue;
        }
        let ct = req.created_ms(i).unwrap_or(0);
        match fixed {
            None => {
                let md = s
                    .labels
                    .iter()
                    .find(|(n, _)| *n == METRIC_NAME)
                    .and_then(|(_, v)| families.lookup(v));
                e.add_series_created(s.labels.iter().copied(), s.samples, hs, ex, md, ct);
            }
            Some(labels) => {
                let md = labels.metric_name().and_then(|n| families.lookup(n));
                e.add_series_created(
                    labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                    s.samples,
                    hs,
                    ex,
                    md,
                    ct,
                );
            }
        }
    }
    let n = e.samples();
    Ok((e.finish(), n))
}
