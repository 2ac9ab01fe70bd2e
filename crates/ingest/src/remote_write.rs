//! Prometheus remote write: 1.0's snappy block-compressed protobuf `prometheus.WriteRequest`
//! here, 2.0's `io.prometheus.write.v2.Request` in [`v2`], and which of the two a request
//! holds in [`negotiate`].
//!
//! Decoding reads the protobuf wire format directly ([`wire`]): label strings stay borrowed
//! from the decompressed buffer until a caller needs owned series, which the server's
//! remote-write path never does for a series its TSDB already holds. Decoding checks the
//! announced decompressed size against a limit before allocating, so an over-size body is
//! refused cheaply (the server answers 413). Encoding writes the wire format straight from
//! borrowed series; prost messages remain only for metadata and as the tests' reference.

pub(crate) mod histogram;
pub mod negotiate;
pub mod v2;
pub mod wire;

use meshlens_model::labels::{is_valid_label_name, is_valid_metric_name};
use meshlens_model::{
    Exemplar, Labels, MetricMetadata, RawSeries, Sample, SeriesExemplars, SeriesHistograms,
    TimeSeries, METRIC_NAME,
};
use prost::Message;

pub use negotiate::{negotiate, ProtobufMessage, Unsupported};
pub use wire::{RawRequest, WireError};

/// Why a native histogram's parts disagree (spans and buckets, negative counts, a schema
/// out of range, custom bounds out of order), if they do: what a remote-write receiver
/// refuses a histogram for, so a sender can leave it out before sending.
pub fn check_histogram(h: &meshlens_model::FloatHistogram) -> Result<(), String> {
    histogram::check(h)
}

/// A decoded request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteRequest {
    pub timeseries: Vec<TimeSeries>,
    pub metadata: Vec<MetricMetadata>,
    /// Native histogram samples refused on their own (a histogram whose parts disagree, or
    /// one of a series with invalid labels): counted, and `histogram_refusals` says why.
    pub histograms_dropped: u64,
    /// Why native histograms were refused, naming their series (the first few).
    pub histogram_refusals: Vec<String>,
    /// Exemplars of the request's series (of valid series only; see [`request_exemplars`]).
    pub exemplars: Vec<SeriesExemplars>,
    /// Native histogram samples of valid series, grouped by series (see
    /// [`request_histograms`]).
    pub histograms: Vec<SeriesHistograms>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("snappy decompression failed: {0}")]
    Snappy(String),
    #[error("decompressed body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("protobuf decoding of WriteRequest failed: {0}")]
    Protobuf(String),
    #[error("timeseries[{series_index}]: {reason}")]
    InvalidLabels { series_index: usize, reason: String },
    /// A 2.0 request's symbol table is unusable.
    #[error("{0}")]
    Symbols(String),
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeError::Protobuf(e.to_string())
    }
}

/// Decodes with a 256 MiB ceiling on the decompressed size.
pub fn decode(snappy_body: &[u8]) -> Result<WriteRequest, DecodeError> {
    decode_with_limit(snappy_body, 256 << 20)
}

/// Decodes, refusing bodies whose decompressed size exceeds `max_decompressed_bytes`.
/// Series with invalid labels fail the whole request (a sender bug; remote write senders do
/// not retry a 400).
pub fn decode_with_limit(
    snappy_body: &[u8],
    max_decompressed_bytes: usize,
) -> Result<WriteRequest, DecodeError> {
    let mut raw = Vec::new();
    decompress_into(snappy_body, max_decompressed_bytes, &mut raw)?;
    let req = wire::parse(&raw)?;
    let series = valid_series(&req)?;
    let exemplars = request_exemplars(&req).0;
    let (histograms, histogram_refusals, histograms_dropped) = owned_histograms(&req);
    Ok(WriteRequest {
        timeseries: series.iter().map(RawSeries::to_time_series).collect(),
        metadata: req.metadata,
        histograms_dropped,
        histogram_refusals,
        exemplars,
        histograms,
    })
}

/// [`request_histograms`] for the owned request: the kept histograms, why any were
/// refused, and how many were.
fn owned_histograms(req: &RawRequest<'_>) -> (Vec<SeriesHistograms>, Vec<String>, u64) {
    let (kept, refusals) = request_histograms(req);
    let n_kept: usize = kept.iter().map(|s| s.samples.len()).sum();
    let dropped = (req.histograms.len() - n_kept) as u64 + req.histograms_dropped;
    (kept, refusals, dropped)
}

/// The request's exemplars grouped by series, and why any were refused: an exemplar of a
/// series whose labels are invalid (a series without samples is not checked by
/// [`valid_series`], so its exemplars are checked here) is refused, named by the series'
/// index; the rest are kept. Exemplar labels are checked by the store.
pub fn request_exemplars(req: &RawRequest<'_>) -> (Vec<SeriesExemplars>, Vec<String>) {
    group_exemplars(
        req.exemplars
            .iter()
            .filter_map(|(i, e)| Some((*i, req.get(*i)?.labels, e.clone()))),
    )
}

/// Exemplars in request order, each with its series' index and labels, grouped by series;
/// those of a series with invalid labels are refused, named by the index.
fn group_exemplars<'a>(
    exemplars: impl Iterator<Item = (usize, &'a [(&'a str, &'a str)], Exemplar)>,
) -> (Vec<SeriesExemplars>, Vec<String>) {
    let (groups, refused) = group_by_series(exemplars, "exemplar");
    let out = groups
        .into_iter()
        .map(|(series, exemplars)| SeriesExemplars { series, exemplars })
        .collect();
    (out, refused)
}

/// The request's native histogram samples grouped by series, and why any were refused
/// (an invalid histogram, or one of a series with invalid labels, named by its index).
pub fn request_histograms(req: &RawRequest<'_>) -> (Vec<SeriesHistograms>, Vec<String>) {
    let (groups, mut refused) = group_by_series(
        req.histograms
            .iter()
            .filter_map(|(i, h)| Some((*i, req.get(*i)?.labels, h.clone()))),
        "native histogram",
    );
    refused.extend(req.histogram_refusals.iter().cloned());
    let out = groups
        .into_iter()
        .map(|(labels, samples)| SeriesHistograms { labels, samples })
        .collect();
    (out, refused)
}

/// Items in request order, each with its series' index and labels, grouped by series;
/// those of a series with invalid labels are refused, named by the index.
fn group_by_series<'a, T>(
    items: impl Iterator<Item = (usize, &'a [(&'a str, &'a str)], T)>,
    what: &str,
) -> (Vec<(Labels, Vec<T>)>, Vec<String>) {
    let mut out: Vec<(Labels, Vec<T>)> = Vec::new();
    let mut refused = Vec::new();
    let mut last: Option<(usize, bool)> = None;
    for (i, labels, item) in items {
        let ok = match last {
            Some((j, ok)) if j == i => ok,
            _ => {
                let series = RawSeries {
                    labels,
                    samples: &[],
                };
                let ok = match check_series(&series) {
                    Ok(()) => {
                        out.push((series.to_labels(), Vec::new()));
                        true
                    }
                    Err(reason) => {
                        refused.push(format!(
                            "timeseries[{i}]: {what} of an invalid series: {reason}"
                        ));
                        false
                    }
                };
                last = Some((i, ok));
                ok
            }
        };
        if let (true, Some(g)) = (ok, out.last_mut()) {
            g.1.push(item);
        }
    }
    (out, refused)
}

/// Decompresses a snappy block into `buf` (cleared first; callers keep it between requests
/// so its memory is reused), refusing a body whose announced size exceeds the limit before
/// allocating anything.
pub fn decompress_into(
    snappy_body: &[u8],
    max_decompressed_bytes: usize,
    buf: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let size =
        snap::raw::decompress_len(snappy_body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > max_decompressed_bytes {
        return Err(DecodeError::TooLarge {
            size,
            limit: max_decompressed_bytes,
        });
    }
    buf.clear();
    buf.resize(size, 0);
    let n = snap::raw::Decoder::new()
        .decompress(snappy_body, buf)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    buf.truncate(n);
    Ok(())
}

/// The request's series that carry samples, each checked as stored series must be: valid
/// label names, a valid metric name, and a `__name__` label. The first invalid series fails
/// the whole request, named by its index in the request. Series without samples are
/// skipped unchecked, as they store nothing.
pub fn valid_series<'r>(req: &'r RawRequest<'_>) -> Result<Vec<RawSeries<'r>>, DecodeError> {
    let mut out = Vec::with_capacity(req.len());
    for (i, s) in req.iter().enumerate() {
        if s.samples.is_empty() {
            continue;
        }
        check_series(&s).map_err(|reason| DecodeError::InvalidLabels {
            series_index: i,
            reason,
        })?;
        out.push(s);
    }
    Ok(out)
}

/// [`Labels::validate`] and the `__name__` requirement, on the pairs as sent when they are
/// already normalised (no `Labels` built), on the normalised set otherwise; the same
/// verdict and message either way.
fn check_series(s: &RawSeries<'_>) -> Result<(), String> {
    if !s.is_normalised() {
        let labels = s.to_labels();
        labels.validate()?;
        return match labels.metric_name() {
            Some(_) => Ok(()),
            None => Err(NO_NAME.into()),
        };
    }
    let mut has_name = false;
    for &(name, value) in s.labels {
        if !is_valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        if name == METRIC_NAME {
            if !is_valid_metric_name(value) {
                return Err(format!("invalid metric name {value:?}"));
            }
            has_name = true;
        }
    }
    if has_name {
        Ok(())
    } else {
        Err(NO_NAME.into())
    }
}

const NO_NAME: &str = "series has no __name__ label";

/// The field of a 1.0 `TimeSeries` in which meshlens's forwarding buffer keeps a series'
/// created timestamp (int64 ms, varint; absent or 0: none). Remote write 1.0 has no such
/// field (it defines 1 to 4): records written before it existed simply lack it, and any
/// 1.0 receiver skips it as an unknown field, so it is read only where a buffer's records
/// are transcoded to 2.0 (`created_timestamp`, field 6). Far above 4, so a field Prometheus
/// might add to the frozen 1.0 message cannot collide with it.
pub const BUFFER_CREATED_FIELD: u32 = 1006;

/// Encodes as protobuf and compresses with snappy's block format.
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    compress(&encode_protobuf(req))
}

/// Snappy's block format, as remote write sends bodies.
pub fn compress(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .unwrap_or_default()
}

/// The uncompressed protobuf `WriteRequest`. Two of these concatenated are one valid request
/// holding both one's series (protobuf merges repeated fields), which is how a durable buffer
/// batches records without decoding them again.
pub fn encode_protobuf(req: &WriteRequest) -> Vec<u8> {
    let series: Vec<&TimeSeries> = req.timeseries.iter().collect();
    let mut out = encode_protobuf_stamped(&series, &req.metadata, &[]);
    encode_exemplars(&mut out, &req.exemplars);
    let histograms: Vec<&SeriesHistograms> = req.histograms.iter().collect();
    encode_histograms_stamped(&mut out, &histograms, &[]);
    out
}

/// Native histogram samples as series of their own (labels and `histograms`, field 4, no
/// float samples), appended to `out`, with each `extra` label a series lacks added as
/// [`encode_protobuf_stamped`] adds them. Histograms are written as float histograms
/// (absolute counts), which is what [`FloatHistogram`](meshlens_model::FloatHistogram)
/// holds.
pub fn encode_histograms_stamped(
    out: &mut Vec<u8>,
    series: &[&SeriesHistograms],
    extra: &[(String, String)],
) {
    encode_histograms_stamped_created(out, series, &[], extra)
}

/// [`encode_histograms_stamped`] with each series' created timestamp (`created[i]` is
/// `series[i]`'s; 0 or missing: none), kept in [`BUFFER_CREATED_FIELD`].
pub fn encode_histograms_stamped_created(
    out: &mut Vec<u8>,
    series: &[&SeriesHistograms],
    created: &[i64],
    extra: &[(String, String)],
) {
    let mut labels: Vec<(&str, &str)> = Vec::new();
    for (i, s) in series.iter().enumerate() {
        if s.samples.is_empty() {
            continue;
        }
        stamped_labels(&s.labels, extra, &mut labels);
        let messages = histogram::encode_each(&s.samples);
        let ct = created.get(i).copied().unwrap_or(0);
        write_series(out, &labels, &[], &messages, ct);
    }
}

/// The series' labels, plus each extra one it lacks, in name order (both are sorted).
fn stamped_labels<'a>(
    series: &'a Labels,
    extra: &'a [(String, String)],
    out: &mut Vec<(&'a str, &'a str)>,
) {
    out.clear();
    let mut extra_iter = extra.iter().peekable();
    for l in series.iter() {
        while let Some((k, v)) = extra_iter.peek() {
            if k.as_str() < l.name.as_str() {
                out.push((k, v));
                extra_iter.next();
            } else {
                if *k == l.name {
                    extra_iter.next();
                }
                break;
            }
        }
        out.push((&l.name, &l.value));
    }
    out.extend(extra_iter.map(|(k, v)| (k.as_str(), v.as_str())));
}

/// One `TimeSeries` (field 1 of a `WriteRequest`): labels, float samples, and histogram
/// messages already encoded.
fn write_series(
    out: &mut Vec<u8>,
    labels: &[(&str, &str)],
    samples: &[Sample],
    histograms: &[Vec<u8>],
    created: i64,
) {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
    let created_len = if created > 0 {
        encoded_len_varint(u64::from(BUFFER_CREATED_FIELD << 3))
            + encoded_len_varint(created as u64)
    } else {
        0
    };
    fn string_field(out: &mut Vec<u8>, tag: u32, v: &str) {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(v.len() as u64, out);
        out.extend_from_slice(v.as_bytes());
    }
    fn label_len(name: &str, value: &str) -> usize {
        2 + encoded_len_varint(name.len() as u64)
            + name.len()
            + encoded_len_varint(value.len() as u64)
            + value.len()
    }
    let body_len: usize = labels
        .iter()
        .map(|(k, v)| {
            let n = label_len(k, v);
            1 + encoded_len_varint(n as u64) + n
        })
        .sum::<usize>()
        + samples
            .iter()
            .map(|s| {
                let n = sample_len(s);
                1 + encoded_len_varint(n as u64) + n
            })
            .sum::<usize>()
        + histogram::fields_len(histograms)
        + created_len;
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(body_len as u64, out);
    for (k, v) in labels {
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(label_len(k, v) as u64, out);
        string_field(out, 1, k);
        string_field(out, 2, v);
    }
    for s in samples {
        put_sample(out, s);
    }
    histogram::write_fields(4, histograms, out);
    if created_len > 0 {
        encode_key(BUFFER_CREATED_FIELD, WireType::Varint, out);
        encode_varint(created as u64, out);
    }
}

/// The encoded length of a `Sample` message (value = 1, timestamp = 2), the same in 1.0 and 2.0.
pub(crate) fn sample_len(s: &Sample) -> usize {
    1 + 8 + 1 + prost::encoding::encoded_len_varint(s.t as u64)
}

/// Appends `s` as a length-delimited `Sample` in field 2 of its series (1.0 and 2.0 alike).
pub(crate) fn put_sample(out: &mut Vec<u8>, s: &Sample) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    encode_key(2, WireType::LengthDelimited, out);
    encode_varint(sample_len(s) as u64, out);
    encode_key(1, WireType::SixtyFourBit, out);
    out.extend_from_slice(&s.v.to_bits().to_le_bytes());
    encode_key(2, WireType::Varint, out);
    encode_varint(s.t as u64, out);
}

/// Exemplars as series of their own (labels and exemplars, no samples), appended to `out`:
/// concatenated messages merge, and receivers store exemplars per series either way.
pub fn encode_exemplars(out: &mut Vec<u8>, exemplars: &[SeriesExemplars]) {
    if exemplars.is_empty() {
        return;
    }
    let label = |name: &str, value: &str| PbLabel {
        name: name.to_string(),
        value: value.to_string(),
    };
    let pb = PbWriteRequest {
        timeseries: exemplars
            .iter()
            .map(|s| PbTimeSeries {
                labels: s.series.iter().map(|l| label(&l.name, &l.value)).collect(),
                samples: Vec::new(),
                exemplars: s
                    .exemplars
                    .iter()
                    .map(|e| PbExemplar {
                        labels: e.labels.iter().map(|l| label(&l.name, &l.value)).collect(),
                        value: e.value,
                        timestamp: e.t,
                    })
                    .collect(),
                histograms: Vec::new(),
            })
            .collect(),
        metadata: Vec::new(),
    };
    // Encoding into a Vec cannot run out of room.
    let _ = pb.encode(out);
}

/// The metadata part of a `WriteRequest` (field 3), appended to `out`.
fn encode_metadata(out: &mut Vec<u8>, metadata: &[MetricMetadata]) {
    let pb = PbWriteRequest {
        timeseries: Vec::new(),
        metadata: metadata
            .iter()
            .map(|m| PbMetricMetadata {
                r#type: metric_type_code(&m.kind),
                metric_family_name: m.metric_family.clone(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            })
            .collect(),
    };
    // Encoding into a Vec cannot run out of room.
    let _ = pb.encode(out);
}

/// The uncompressed protobuf `WriteRequest` of `series` (and `metadata`), with each
/// `extra` label a series lacks added in its sorted place: how a forwarder stamps its
/// cluster on what it relays without building every label set again. Written straight from
/// the borrowed series (no intermediate message), since this runs for every sample an agent
/// takes. `extra` must be sorted by name; series' labels are sorted (as `Labels` keeps them).
pub fn encode_protobuf_stamped(
    series: &[&TimeSeries],
    metadata: &[MetricMetadata],
    extra: &[(String, String)],
) -> Vec<u8> {
    encode_protobuf_stamped_created(series, &[], metadata, extra)
}

/// [`encode_protobuf_stamped`] with each series' created timestamp (`created[i]` is
/// `series[i]`'s; 0 or missing: none), kept in [`BUFFER_CREATED_FIELD`] so a forwarding
/// buffer's 1.0 records carry what 1.0 has no field for.
pub fn encode_protobuf_stamped_created(
    series: &[&TimeSeries],
    created: &[i64],
    metadata: &[MetricMetadata],
    extra: &[(String, String)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(series.len() * 160);
    let mut labels: Vec<(&str, &str)> = Vec::new();
    for (i, ts) in series.iter().enumerate() {
        stamped_labels(&ts.labels, extra, &mut labels);
        let ct = created.get(i).copied().unwrap_or(0);
        write_series(&mut out, &labels, &ts.samples, &[], ct);
    }
    if !metadata.is_empty() {
        // Concatenated protobuf messages merge their repeated fields.
        encode_metadata(&mut out, metadata);
    }
    out
}

const METRIC_TYPES: [&str; 8] = [
    "unknown",
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
];

fn metric_type_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|i| METRIC_TYPES.get(i))
        .copied()
        .unwrap_or("unknown")
}

fn metric_type_code(name: &str) -> i32 {
    METRIC_TYPES
        .iter()
        .position(|t| *t == name)
        .map_or(0, |i| i as i32)
}

#[derive(Clone, PartialEq, Message)]
struct PbWriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<PbTimeSeries>,
    #[prost(message, repeated, tag = "3")]
    metadata: Vec<PbMetricMetadata>,
}

#[derive(Clone, PartialEq, Message)]
struct PbTimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<PbLabel>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<PbSample>,
    #[prost(message, repeated, tag = "3")]
    exemplars: Vec<PbExemplar>,
    #[prost(message, repeated, tag = "4")]
    histograms: Vec<PbOpaque>,
}

#[derive(Clone, PartialEq, Message)]
struct PbLabel {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct PbSample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
struct PbExemplar {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<PbLabel>,
    #[prost(double, tag = "2")]
    value: f64,
    #[prost(int64, tag = "3")]
    timestamp: i64,
}

/// A message only counted, never read (its fields are skipped as unknown).
#[derive(Clone, PartialEq, Message)]
struct PbOpaque {}

#[derive(Clone, PartialEq, Message)]
struct PbMetricMetadata {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(string, tag = "2")]
    metric_family_name: String,
    #[prost(string, tag = "4")]
    help: String,
    #[prost(string, tag = "5")]
    unit: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_model::{Exemplar, Labels};
    use proptest::prelude::*;

    /// The decoder as it was before the wire reader: prost messages, then owned labels.
    /// The reference the wire reader must agree with.
    fn prost_decode(raw: &[u8]) -> Result<WriteRequest, String> {
        let pb = PbWriteRequest::decode(raw).map_err(|e| e.to_string())?;
        let mut out = WriteRequest::default();
        for (i, ts) in pb.timeseries.into_iter().enumerate() {
            out.histograms_dropped += ts.histograms.len() as u64;
            let labels = Labels::from_pairs(ts.labels.into_iter().map(|l| (l.name, l.value)));
            let valid = labels.validate().and_then(|()| match labels.metric_name() {
                Some(_) => Ok(()),
                None => Err(NO_NAME.to_string()),
            });
            if valid.is_ok() && !ts.exemplars.is_empty() {
                out.exemplars.push(SeriesExemplars {
                    series: labels.clone(),
                    exemplars: ts
                        .exemplars
                        .into_iter()
                        .map(|e| Exemplar {
                            labels: Labels::from_pairs(
                                e.labels.into_iter().map(|l| (l.name, l.value)),
                            ),
                            value: e.value,
                            t: e.timestamp,
                        })
                        .collect(),
                });
            }
            if ts.samples.is_empty() {
                continue;
            }
            valid.map_err(|r| format!("timeseries[{i}]: {r}"))?;
            out.timeseries.push(TimeSeries {
                labels,
                samples: ts
                    .samples
                    .into_iter()
                    .map(|s| Sample::new(s.timestamp, s.value))
                    .collect(),
            });
        }
        out.metadata = pb
            .metadata
            .into_iter()
            .map(|m| MetricMetadata {
                metric_family: m.metric_family_name,
                kind: metric_type_name(m.r#type).to_string(),
                help: m.help,
                unit: m.unit,
            })
            .collect();
        Ok(out)
    }

    /// Any request prost can write: labels in any order, repeated names, empty values,
    /// invalid names, series without samples, exemplars, histograms and metadata.
    fn arb_request() -> impl Strategy<Value = PbWriteRequest> {
        let label = (
            prop_oneof!["__name__", "job", "a", "le", "bad-name", "", "zone"],
            prop_oneof!["", "up", "x", "1.5", "9bad", "héllo"],
        )
            .prop_map(|(name, value)| PbLabel {
                name: name.to_string(),
                value: value.to_string(),
            });
        let sample = (any::<i64>(), any::<u64>()).prop_map(|(t, v)| PbSample {
            timestamp: t,
            value: f64::from_bits(v),
        });
        let series = (
            proptest::collection::vec(label, 0..6),
            proptest::collection::vec(sample, 0..4),
            0..2usize,
            0..2usize,
        )
            .prop_map(|(labels, samples, ex, hist)| PbTimeSeries {
                labels,
                samples,
                exemplars: (0..ex)
                    .map(|i| PbExemplar {
                        labels: vec![PbLabel {
                            name: "trace_id".into(),
                            value: format!("t{i}"),
                        }],
                        value: i as f64,
                        timestamp: i as i64,
                    })
                    .collect(),
                histograms: vec![PbOpaque {}; hist],
            });
        let md = (0..10i32, "[a-z]{0,4}", "[ -~]{0,6}").prop_map(|(t, f, h)| PbMetricMetadata {
            r#type: t,
            metric_family_name: f,
            help: h,
            unit: String::new(),
        });
        (
            proptest::collection::vec(series, 0..6),
            proptest::collection::vec(md, 0..2),
        )
            .prop_map(|(timeseries, metadata)| PbWriteRequest {
                timeseries,
                metadata,
            })
    }

    /// NaN compares unequal, so requests are compared as their debug text.
    fn same(a: &Result<WriteRequest, String>, b: &Result<WriteRequest, String>) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    /// The request as the prost reference sees it, which counts histograms without reading
    /// them: every histogram dropped.
    fn histograms_counted(r: Result<WriteRequest, String>) -> Result<WriteRequest, String> {
        r.map(|mut r| {
            r.histograms_dropped += r
                .histograms
                .drain(..)
                .map(|s| s.samples.len() as u64)
                .sum::<u64>();
            r.histogram_refusals.clear();
            r
        })
    }

    fn sample_request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: Labels::from_pairs([("__name__", "up"), ("job", "a")]),
                samples: vec![Sample::new(1000, 1.0), Sample::new(2000, f64::NAN)],
            }],
            metadata: vec![MetricMetadata {
                metric_family: "up".into(),
                kind: "gauge".into(),
                help: "Up.".into(),
                unit: String::new(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn stamped_encoding_adds_missing_labels_in_order() {
        let req = sample_request();
        let kept = TimeSeries {
            labels: Labels::from_pairs([("__name__", "up"), ("cluster", "x"), ("job", "b")]),
            samples: vec![Sample::new(-5, 0.0)],
        };
        let extra = [
            ("cluster".to_string(), "east".to_string()),
            ("zone".to_string(), "z1".to_string()),
        ];
        let raw = encode_protobuf_stamped(&[&req.timeseries[0], &kept], &req.metadata, &extra);
        let got = decode(&compress(&raw)).unwrap();
        let want = [
            Labels::from_pairs([
                ("__name__", "up"),
                ("cluster", "east"),
                ("job", "a"),
                ("zone", "z1"),
            ]),
            Labels::from_pairs([
                ("__name__", "up"),
                ("cluster", "x"),
                ("job", "b"),
                ("zone", "z1"),
            ]),
        ];
        assert_eq!(got.timeseries.len(), 2);
        for (ts, want) in got.timeseries.iter().zip(&want) {
            assert_eq!(&ts.labels, want);
        }
        assert_eq!(got.timeseries[0].samples[0], req.timeseries[0].samples[0]);
        assert!(got.timeseries[0].samples[1].v.is_nan());
        assert_eq!(got.timeseries[1].samples, kept.samples);
        assert_eq!(got.metadata, req.metadata);
        // Without extra labels it is the plain encoding.
        let plain = encode_protobuf_stamped(&[&req.timeseries[0]], &req.metadata, &[]);
        let (a, b) = (
            decode(&compress(&plain)).unwrap(),
            decode(&encode(&req)).unwrap(),
        );
        assert_eq!(
            format!("{a:?}"),
            format!("{b:?}"),
            "NaN compares unequal, so as text"
        );
    }

    fn histogram_request() -> WriteRequest {
        let shapes = histogram::test_shapes();
        let mut req = sample_request();
        req.histograms = vec![
            SeriesHistograms {
                labels: Labels::from_pairs([("__name__", "latency"), ("job", "a")]),
                samples: shapes[..3].to_vec(),
            },
            SeriesHistograms {
                labels: Labels::from_pairs([("__name__", "queue_depth")]),
                samples: shapes[3..].to_vec(),
            },
        ];
        req
    }

    #[test]
    fn native_histograms_round_trip() {
        let req = histogram_request();
        let back = decode(&encode(&req)).unwrap();
        assert_eq!(back.histograms.len(), 2);
        for (got, want) in back.histograms.iter().zip(&req.histograms) {
            assert_eq!(got.labels, want.labels);
            histogram::assert_same_histograms(&got.samples, &want.samples);
        }
        assert_eq!(back.histograms_dropped, 0);
        assert!(back.histogram_refusals.is_empty());
        // The float series are untouched by the histograms beside them.
        assert_eq!(back.timeseries[0].labels, req.timeseries[0].labels);
        assert_eq!(back.metadata, req.metadata);
    }

    #[test]
    fn stamped_native_histograms_get_the_missing_labels() {
        let req = histogram_request();
        let series: Vec<&SeriesHistograms> = req.histograms.iter().collect();
        let extra = [
            ("cluster".to_string(), "east".to_string()),
            ("job".to_string(), "ignored".to_string()),
        ];
        let mut raw = Vec::new();
        encode_histograms_stamped(&mut raw, &series, &extra);
        let back = decode(&compress(&raw)).unwrap();
        let labels: Vec<_> = back.histograms.iter().map(|s| s.labels.clone()).collect();
        assert_eq!(
            labels,
            [
                Labels::from_pairs([("__name__", "latency"), ("cluster", "east"), ("job", "a")]),
                Labels::from_pairs([
                    ("__name__", "queue_depth"),
                    ("cluster", "east"),
                    ("job", "ignored")
                ]),
            ]
        );
        assert!(back.timeseries.is_empty());
        histogram::assert_same_histograms(&back.histograms[0].samples, &req.histograms[0].samples);
    }

    #[test]
    fn histograms_of_invalid_series_are_refused_and_counted() {
        let mut req = histogram_request();
        req.histograms[1].labels = Labels::from_pairs([("__name__", "9bad")]);
        let back = decode(&encode(&req)).unwrap();
        assert_eq!(back.histograms.len(), 1);
        assert_eq!(back.histograms_dropped, 2);
        assert_eq!(
            back.histogram_refusals.len(),
            1,
            "{:?}",
            back.histogram_refusals
        );
        assert!(back.histogram_refusals[0].contains("9bad"));
    }

    #[test]
    fn round_trips() {
        let req = sample_request();
        let back = decode(&encode(&req)).unwrap();
        assert_eq!(back.timeseries[0].labels, req.timeseries[0].labels);
        assert_eq!(back.timeseries[0].samples[0], req.timeseries[0].samples[0]);
        assert!(back.timeseries[0].samples[1].v.is_nan());
        assert_eq!(back.metadata, req.metadata);
    }

    #[test]
    fn refuses_garbage_and_oversize() {
        assert!(matches!(
            decode(b"not snappy at all"),
            Err(DecodeError::Snappy(_)) | Err(DecodeError::Protobuf(_))
        ));
        let body = encode(&sample_request());
        assert!(matches!(
            decode_with_limit(&body, 4),
            Err(DecodeError::TooLarge { .. })
        ));
        let junk = snap::raw::Encoder::new().compress_vec(&[0xff; 40]).unwrap();
        assert!(matches!(decode(&junk), Err(DecodeError::Protobuf(_))));
    }

    #[test]
    fn invalid_label_names_the_series() {
        let mut req = sample_request();
        req.timeseries.push(TimeSeries {
            labels: Labels::from_pairs([("__name__", "ok"), ("bad-name", "x")]),
            samples: vec![Sample::new(1, 1.0)],
        });
        let e = decode(&encode(&req)).unwrap_err();
        assert!(e.to_string().contains("timeseries[1]"), "{e}");
    }

    #[test]
    fn raw_series_borrow_the_buffer_in_sender_order() {
        let pb = PbWriteRequest {
            timeseries: vec![PbTimeSeries {
                labels: vec![
                    PbLabel {
                        name: "job".into(),
                        value: "a".into(),
                    },
                    PbLabel {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                ],
                samples: vec![PbSample {
                    value: 2.0,
                    timestamp: 7,
                }],
                exemplars: Vec::new(),
                histograms: Vec::new(),
            }],
            metadata: Vec::new(),
        };
        let raw = pb.encode_to_vec();
        let req = wire::parse(&raw).unwrap();
        let series = valid_series(&req).unwrap();
        assert_eq!(series[0].labels, &[("job", "a"), ("__name__", "up")]);
        assert!(!series[0].is_normalised());
        assert_eq!(
            series[0].to_labels(),
            Labels::from_pairs([("__name__", "up"), ("job", "a")])
        );
        let range = raw.as_ptr_range();
        assert!(range.contains(&series[0].labels[0].0.as_ptr()));
    }

    #[test]
    fn decompress_into_reuses_and_limits() {
        let body = encode(&sample_request());
        let mut buf = vec![1u8; 3];
        decompress_into(&body, 1 << 20, &mut buf).unwrap();
        assert_eq!(buf, encode_protobuf(&sample_request()));
        assert!(matches!(
            decompress_into(&body, 4, &mut buf),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn wire_reader_agrees_with_prost(pb in arb_request()) {
            let raw = pb.encode_to_vec();
            let fast = histograms_counted(decode(&compress(&raw)).map_err(|e| match e {
                DecodeError::InvalidLabels { .. } => e.to_string(),
                other => panic!("valid protobuf refused: {other}"),
            }));
            prop_assert!(same(&fast, &prost_decode(&raw)), "{:?} vs {:?}", fast, prost_decode(&raw));
        }

        #[test]
        fn wire_reader_refuses_what_prost_refuses(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            // Arbitrary bytes: when prost accepts them, the wire reader gives the same
            // request (it may refuse more: groups, which no remote-write sender writes).
            if let Ok(want) = prost_decode(&body) {
                if let Ok(req) = wire::parse(&body) {
                    let got = valid_series(&req).map(|s| WriteRequest {
                        timeseries: s.iter().map(RawSeries::to_time_series).collect(),
                        metadata: req.metadata.clone(),
                        histograms_dropped: req.histograms_dropped + req.histograms.len() as u64,
                        exemplars: request_exemplars(&req).0,
                        ..Default::default()
                    });
                    prop_assert!(same(&got.map_err(|e| e.to_string()), &Ok(want)));
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&body);
            let compressed = snap::raw::Encoder::new().compress_vec(&body).unwrap();
            let _ = decode(&compressed);
        }

        #[test]
        fn encode_decode_round_trip(
            series in proptest::collection::vec(
                ("[a-z_]{1,8}", proptest::collection::vec((any::<i64>(), -1e9f64..1e9), 1..8)), 0..6)
        ) {
            let req = WriteRequest {
                timeseries: series.iter().map(|(n, s)| TimeSeries {
                    labels: Labels::from_pairs([("__name__", n.as_str())]),
                    samples: s.iter().map(|(t, v)| Sample::new(*t, *v)).collect(),
                }).collect(),
                ..Default::default()
            };
            let back = decode(&encode(&req)).unwrap();
            prop_assert_eq!(back.timeseries, req.timeseries);
        }
    }
}
