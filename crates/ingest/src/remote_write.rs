//! Prometheus remote write 1.0: a snappy block-compressed protobuf `prometheus.WriteRequest`.
//!
//! The protobuf messages are declared by hand with prost derives (no protoc at build time).
//! Decoding checks the announced decompressed size against a limit before allocating, so an
//! over-size body is refused cheaply (the server answers 413).

use meshlens_model::{Labels, MetricMetadata, Sample, TimeSeries};
use prost::Message;

/// A decoded request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteRequest {
    pub timeseries: Vec<TimeSeries>,
    pub metadata: Vec<MetricMetadata>,
    /// Native histogram samples in the request; not stored yet, so counted and reported.
    pub histograms_dropped: u64,
    /// Exemplars in the request; not stored yet.
    pub exemplars_dropped: u64,
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
    let size =
        snap::raw::decompress_len(snappy_body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > max_decompressed_bytes {
        return Err(DecodeError::TooLarge {
            size,
            limit: max_decompressed_bytes,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(snappy_body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    let pb =
        PbWriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    let mut out = WriteRequest {
        timeseries: Vec::with_capacity(pb.timeseries.len()),
        ..Default::default()
    };
    for (i, ts) in pb.timeseries.into_iter().enumerate() {
        out.histograms_dropped += ts.histograms.len() as u64;
        out.exemplars_dropped += ts.exemplars.len() as u64;
        if ts.samples.is_empty() {
            continue;
        }
        let labels = Labels::from_pairs(ts.labels.into_iter().map(|l| (l.name, l.value)));
        labels
            .validate()
            .map_err(|reason| DecodeError::InvalidLabels {
                series_index: i,
                reason,
            })?;
        if labels.metric_name().is_none() {
            return Err(DecodeError::InvalidLabels {
                series_index: i,
                reason: "series has no __name__ label".into(),
            });
        }
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
    let pb = PbWriteRequest {
        timeseries: req
            .timeseries
            .iter()
            .map(|ts| PbTimeSeries {
                labels: ts
                    .labels
                    .iter()
                    .map(|l| PbLabel {
                        name: l.name.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                samples: ts
                    .samples
                    .iter()
                    .map(|s| PbSample {
                        value: s.v,
                        timestamp: s.t,
                    })
                    .collect(),
                exemplars: Vec::new(),
                histograms: Vec::new(),
            })
            .collect(),
        metadata: req
            .metadata
            .iter()
            .map(|m| PbMetricMetadata {
                r#type: metric_type_code(&m.kind),
                metric_family_name: m.metric_family.clone(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            })
            .collect(),
    };
    pb.encode_to_vec()
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
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
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
    fn sample_len(s: &Sample) -> usize {
        1 + 8 + 1 + encoded_len_varint(s.t as u64)
    }
    let mut out = Vec::with_capacity(series.len() * 160);
    let mut labels: Vec<(&str, &str)> = Vec::new();
    for ts in series {
        // The merged label list: the series' own, plus each extra one it lacks, in order.
        labels.clear();
        let mut extra_iter = extra.iter().peekable();
        for l in ts.labels.iter() {
            while let Some((k, v)) = extra_iter.peek() {
                if k.as_str() < l.name.as_str() {
                    labels.push((k, v));
                    extra_iter.next();
                } else {
                    if *k == l.name {
                        extra_iter.next();
                    }
                    break;
                }
            }
            labels.push((&l.name, &l.value));
        }
        labels.extend(extra_iter.map(|(k, v)| (k.as_str(), v.as_str())));
        let body_len: usize = labels
            .iter()
            .map(|(k, v)| {
                let n = label_len(k, v);
                1 + encoded_len_varint(n as u64) + n
            })
            .sum::<usize>()
            + ts.samples
                .iter()
                .map(|s| {
                    let n = sample_len(s);
                    1 + encoded_len_varint(n as u64) + n
                })
                .sum::<usize>();
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(body_len as u64, &mut out);
        for (k, v) in &labels {
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(label_len(k, v) as u64, &mut out);
            string_field(&mut out, 1, k);
            string_field(&mut out, 2, v);
        }
        for s in &ts.samples {
            encode_key(2, WireType::LengthDelimited, &mut out);
            encode_varint(sample_len(s) as u64, &mut out);
            encode_key(1, WireType::SixtyFourBit, &mut out);
            out.extend_from_slice(&s.v.to_bits().to_le_bytes());
            encode_key(2, WireType::Varint, &mut out);
            encode_varint(s.t as u64, &mut out);
        }
    }
    if !metadata.is_empty() {
        // Concatenated protobuf messages merge their repeated fields.
        out.extend_from_slice(&encode_protobuf(&WriteRequest {
            metadata: metadata.to_vec(),
            ..Default::default()
        }));
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
    exemplars: Vec<PbOpaque>,
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
    use proptest::prelude::*;

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

    proptest! {
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
