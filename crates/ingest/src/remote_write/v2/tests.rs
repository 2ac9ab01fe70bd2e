use super::*;
use crate::remote_write::{compress, encode_protobuf_stamped};
use meshlens_model::TimeSeries;
use proptest::prelude::*;
use prost::Message;

// The 2.0 schema as prost messages: the reference writer the tests build requests with.
#[derive(Clone, PartialEq, Message)]
struct PbRequest {
    #[prost(string, repeated, tag = "4")]
    symbols: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    timeseries: Vec<PbSeries>,
}

#[derive(Clone, PartialEq, Message)]
struct PbSeries {
    #[prost(uint32, repeated, tag = "1")]
    labels_refs: Vec<u32>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<PbSample>,
    #[prost(message, repeated, tag = "3")]
    histograms: Vec<PbHistogram>,
    #[prost(message, repeated, tag = "4")]
    exemplars: Vec<PbExemplar>,
    #[prost(message, optional, tag = "5")]
    metadata: Option<PbMetadata>,
    #[prost(int64, tag = "6")]
    created_timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
struct PbSample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
    #[prost(int64, tag = "3")]
    start_timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
struct PbHistogram {
    #[prost(uint64, tag = "1")]
    count_int: u64,
    #[prost(double, tag = "3")]
    sum: f64,
    #[prost(int64, tag = "15")]
    timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
struct PbExemplar {
    #[prost(uint32, repeated, tag = "1")]
    labels_refs: Vec<u32>,
    #[prost(double, tag = "2")]
    value: f64,
    #[prost(int64, tag = "3")]
    timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
struct PbMetadata {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(uint32, tag = "3")]
    help_ref: u32,
    #[prost(uint32, tag = "4")]
    unit_ref: u32,
}

/// The same series message with its references unpacked (one varint per field), which a
/// reader must accept as well.
#[derive(Clone, PartialEq, Message)]
struct PbUnpackedRequest {
    #[prost(string, repeated, tag = "4")]
    symbols: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    timeseries: Vec<PbUnpackedSeries>,
}

#[derive(Clone, PartialEq, Message)]
struct PbUnpackedSeries {
    #[prost(uint32, repeated, packed = "false", tag = "1")]
    labels_refs: Vec<u32>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<PbSample>,
}

fn sample(t: i64, v: f64) -> PbSample {
    PbSample {
        value: v,
        timestamp: t,
        start_timestamp: 0,
    }
}

/// The request the specification's message describes: an interned table starting with
/// "", series naming their sorted labels by index pairs, a counter with help and unit and a
/// created timestamp, an exemplar naming a trace, and a native histogram series.
fn spec_example() -> PbRequest {
    let symbols = [
        "",
        "__name__",
        "http_requests_total",
        "job",
        "api-server",
        "method",
        "GET",
        "Total HTTP requests.",
        "requests",
        "trace_id",
        "4bf92f3577b34da6",
        "POST",
        "http_request_duration_seconds",
        "Request latency.",
        "seconds",
    ];
    PbRequest {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        timeseries: vec![
            PbSeries {
                labels_refs: vec![1, 2, 3, 4, 5, 6],
                samples: vec![sample(1_000, 10.0), sample(2_000, 12.0)],
                exemplars: vec![PbExemplar {
                    labels_refs: vec![9, 10],
                    value: 1.0,
                    timestamp: 1_500,
                }],
                metadata: Some(PbMetadata {
                    r#type: 1,
                    help_ref: 7,
                    unit_ref: 8,
                }),
                created_timestamp: 500,
                ..Default::default()
            },
            PbSeries {
                labels_refs: vec![1, 2, 3, 4, 5, 11],
                samples: vec![PbSample {
                    value: 3.0,
                    timestamp: 2_000,
                    start_timestamp: 700,
                }],
                metadata: Some(PbMetadata {
                    r#type: 1,
                    help_ref: 7,
                    unit_ref: 8,
                }),
                ..Default::default()
            },
            PbSeries {
                labels_refs: vec![1, 12, 3, 4],
                histograms: vec![PbHistogram {
                    count_int: 3,
                    sum: 0.5,
                    timestamp: 2_000,
                }],
                metadata: Some(PbMetadata {
                    r#type: 3,
                    help_ref: 13,
                    unit_ref: 14,
                }),
                ..Default::default()
            },
        ],
    }
}

#[test]
fn spec_example_decodes() {
    let raw = spec_example().encode_to_vec();
    let req = parse(&raw).unwrap();
    assert!(req.invalid.is_empty(), "{:?}", req.invalid);
    let series = req.series();
    assert_eq!(series.len(), 2, "the histogram series has no float samples");
    assert_eq!(
        series[0].labels,
        &[
            ("__name__", "http_requests_total"),
            ("job", "api-server"),
            ("method", "GET")
        ]
    );
    assert_eq!(
        series[0].samples,
        &[Sample::new(1_000, 10.0), Sample::new(2_000, 12.0)]
    );
    assert_eq!(series[1].labels[2], ("method", "POST"));
    assert_eq!(req.created_timestamp(0), Some(500));
    assert_eq!(
        req.created_timestamp(1),
        Some(700),
        "a sample's start_timestamp"
    );
    assert_eq!(req.created_timestamp(2), None);
    assert_eq!(
        req.raw.metadata,
        vec![
            MetricMetadata {
                metric_family: "http_requests_total".into(),
                kind: "counter".into(),
                help: "Total HTTP requests.".into(),
                unit: "requests".into(),
            },
            MetricMetadata {
                metric_family: "http_request_duration_seconds".into(),
                kind: "histogram".into(),
                help: "Request latency.".into(),
                unit: "seconds".into(),
            },
        ],
        "one entry per family although two series carry it"
    );
    assert_eq!(req.raw.histograms_dropped, 0);
    assert_eq!(req.raw.histograms.len(), 1);
    let (index, h) = &req.raw.histograms[0];
    assert_eq!(*index, 2, "the third series carries it");
    assert_eq!((h.t, h.h.count, h.h.sum), (2_000, 3.0, 0.5));
    let (grouped, refused) = req.series_exemplars();
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(grouped.len(), 1);
    assert_eq!(
        grouped[0].series.get("__name__"),
        Some("http_requests_total")
    );
    assert_eq!(
        grouped[0].exemplars[0].labels.get("trace_id"),
        Some("4bf92f3577b34da6")
    );
    assert_eq!(grouped[0].exemplars[0].t, 1_500);
    let ex: Vec<Exemplar<'_>> = req.exemplars().collect();
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].series_index, 0);
    assert_eq!(ex[0].series, series[0].labels);
    assert_eq!(ex[0].labels, &[("trace_id", "4bf92f3577b34da6")]);
    assert_eq!((ex[0].value, ex[0].timestamp), (1.0, 1_500));
    // Borrowed from the buffer, as 1.0's reader does.
    assert!(raw.as_ptr_range().contains(&series[0].labels[0].1.as_ptr()));
}

#[test]
fn created_timestamps_give_zeros_before_the_first_sample() {
    let mut pb = spec_example();
    // The histogram series gets a created timestamp too; a fourth series has one at its
    // sample's own time, which gives no zero.
    pb.timeseries[2].created_timestamp = 1_200;
    pb.timeseries.push(PbSeries {
        labels_refs: vec![1, 2, 3, 4, 5, 6, 9, 10],
        samples: vec![sample(3_000, 1.0)],
        created_timestamp: 3_000,
        ..Default::default()
    });
    let raw = pb.encode_to_vec();
    let req = parse(&raw).unwrap();
    let zeros: Vec<Option<Sample>> = req.series_with_zeros().iter().map(|(_, z)| *z).collect();
    assert_eq!(
        zeros,
        [
            Some(Sample::new(500, 0.0)),
            Some(Sample::new(700, 0.0)), // from the sample's start_timestamp
            None,
        ]
    );
    let series: Vec<RawSeries<'_>> = req.series_with_zeros().iter().map(|(s, _)| *s).collect();
    assert_eq!(series.len(), req.series().len());
    let h = req.histogram_zeros();
    assert_eq!(h.len(), 1);
    assert_eq!(
        h[0].labels.get("__name__"),
        Some("http_request_duration_seconds")
    );
    assert_eq!(h[0].samples.len(), 1);
    assert_eq!((h[0].samples[0].t, h[0].samples[0].h.count), (1_200, 0.0));
}

#[test]
fn bad_references_refuse_only_their_series() {
    let mut pb = spec_example();
    let good = pb.timeseries[1].clone();
    let odd = PbSeries {
        labels_refs: vec![1, 2, 3],
        ..good.clone()
    };
    let past_end = PbSeries {
        labels_refs: vec![1, 2, 3, 99],
        ..good.clone()
    };
    let bad_help = PbSeries {
        metadata: Some(PbMetadata {
            r#type: 2,
            help_ref: 40,
            unit_ref: 0,
        }),
        ..good.clone()
    };
    let bad_name = PbSeries {
        labels_refs: vec![1, 2, 4, 3], // label name "api-server"
        ..good.clone()
    };
    let bad_exemplar = PbSeries {
        exemplars: vec![PbExemplar {
            labels_refs: vec![9, 77],
            value: 2.0,
            timestamp: 3,
        }],
        ..good.clone()
    };
    pb.timeseries = vec![good, odd, past_end, bad_help, bad_name, bad_exemplar];
    let raw = pb.encode_to_vec();
    let req = parse(&raw).unwrap();
    let refused: Vec<(usize, &str)> = req
        .invalid
        .iter()
        .map(|s| (s.index, s.reason.as_str()))
        .collect();
    assert_eq!(
        refused,
        vec![
            (1, "labels_refs has an odd number (3) of entries"),
            (2, "labels_refs[3] = 99 is past the end of the 15 symbols"),
            (
                3,
                "metadata.help_ref = 40 is past the end of the 15 symbols"
            ),
            (4, "invalid label name \"api-server\""),
        ]
    );
    assert_eq!(req.invalid_samples(), 4);
    // The good series and the one with a bad exemplar are kept, at their own indexes.
    let kept: Vec<usize> = (0..req.raw.len())
        .filter(|&i| !req.raw.get(i).unwrap().samples.is_empty())
        .collect();
    assert_eq!(kept, [0, 5]);
    assert_eq!(req.invalid_exemplars, 1);
    assert_eq!(
        req.first_invalid_exemplar.as_deref(),
        Some("timeseries[5].exemplars[0]: labels_refs[1] = 77 is past the end of the 15 symbols")
    );
    assert_eq!(req.exemplars().count(), 0);
}

#[test]
fn the_table_must_start_with_the_empty_string() {
    let mut pb = spec_example();
    pb.symbols[0] = "x".into();
    let e = parse(&pb.encode_to_vec()).unwrap_err();
    assert!(matches!(e, DecodeError::Symbols(_)), "{e}");
    assert!(e.to_string().contains("symbols[0]"), "{e}");
    // No table at all: every reference is past its end.
    pb.symbols.clear();
    let raw = pb.encode_to_vec();
    let req = parse(&raw).unwrap();
    assert_eq!(req.invalid.len(), 3);
}

#[test]
fn unpacked_references_read_like_packed_ones() {
    let pb = PbUnpackedRequest {
        symbols: vec!["".into(), "__name__".into(), "up".into()],
        timeseries: vec![PbUnpackedSeries {
            labels_refs: vec![1, 2],
            samples: vec![sample(5, 1.0)],
        }],
    };
    let raw = pb.encode_to_vec();
    let req = parse(&raw).unwrap();
    assert_eq!(req.series()[0].labels, &[("__name__", "up")]);
}

#[test]
fn a_1_0_body_reads_as_an_empty_2_0_request() {
    // 2.0 reserves 1.0's field numbers, so a mislabelled body is empty, not garbage.
    let v1 = crate::remote_write::encode_protobuf(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: Labels::from_pairs([("__name__", "up")]),
            samples: vec![Sample::new(1, 1.0)],
        }],
        ..Default::default()
    });
    let req = parse(&v1).unwrap();
    assert_eq!(req.raw.len(), 0);
}

#[test]
fn encoder_round_trips_with_metadata() {
    let req = WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: Labels::from_pairs([("__name__", "lat_bucket"), ("le", "0.5")]),
                samples: vec![Sample::new(1_000, 3.0), Sample::new(-7, f64::NAN)],
            },
            TimeSeries {
                labels: Labels::from_pairs([("__name__", "lat_count")]),
                samples: vec![Sample::new(1_000, 4.0)],
            },
            TimeSeries {
                labels: Labels::from_pairs([("__name__", "up"), ("job", "a")]),
                samples: vec![Sample::new(0, 1.0)],
            },
        ],
        metadata: vec![MetricMetadata {
            metric_family: "lat".into(),
            kind: "histogram".into(),
            help: "Latency.".into(),
            unit: String::new(),
        }],
        ..Default::default()
    };
    let back = decode_with_limit(&encode(&req), 1 << 20).unwrap();
    assert!(back.invalid.is_empty());
    assert_eq!(
        format!("{:?}", back.request.timeseries),
        format!("{:?}", req.timeseries),
        "NaN compares unequal, so as text"
    );
    assert_eq!(back.request.metadata, req.metadata);
    // Each string once in the table.
    let raw = encode_protobuf(&req);
    let parsed = parse(&raw).unwrap();
    let mut table = parsed.symbols.clone();
    table.sort_unstable();
    table.dedup();
    assert_eq!(table.len(), parsed.symbols.len());
}

#[test]
fn transcoding_a_buffer_record_keeps_series_and_metadata() {
    let series = [
        TimeSeries {
            labels: Labels::from_pairs([("__name__", "reqs_total"), ("code", "200")]),
            samples: vec![Sample::new(10, 1.0), Sample::new(20, 2.0)],
        },
        TimeSeries {
            labels: Labels::from_pairs([("__name__", "temp")]),
            samples: vec![Sample::new(10, 21.5)],
        },
    ];
    let md = [MetricMetadata {
        metric_family: "reqs".into(),
        kind: "counter".into(),
        help: "Requests.".into(),
        unit: String::new(),
    }];
    let extra = [("cluster".to_string(), "east".to_string())];
    let v1 = encode_protobuf_stamped(&[&series[0], &series[1]], &md, &extra);
    let mut families = FamilyMetadata::default();
    let (v2, n) = transcode_v1(&v1, &mut families).unwrap();
    assert_eq!(n, 3);
    assert_eq!(families.len(), 1);
    let got = decode_with_limit(&compress(&v2), 1 << 20).unwrap().request;
    let want = crate::remote_write::decode(&compress(&v1)).unwrap();
    assert_eq!(got.timeseries, want.timeseries);
    // The counter's OpenMetrics family reaches its `_total` series; 2.0 names the family
    // by the series.
    assert_eq!(got.metadata.len(), 1);
    assert_eq!(got.metadata[0].metric_family, "reqs_total");
    assert_eq!(got.metadata[0].help, "Requests.");
    // A later record without metadata still gets the family's.
    let v1 = encode_protobuf_stamped(&[&series[0]], &[], &[]);
    let (v2, _) = transcode_v1(&v1, &mut families).unwrap();
    assert_eq!(parse(&v2).unwrap().raw.metadata.len(), 1);
}

#[test]
fn transcoding_keeps_exemplars_with_their_series() {
    use meshlens_model::{Exemplar as ModelExemplar, SeriesExemplars};
    let series = Labels::from_pairs([("__name__", "lat_bucket"), ("le", "0.5")]);
    let exemplar = |trace: &str, v: f64, t: i64| ModelExemplar {
        labels: Labels::from_pairs([("trace_id", trace)]),
        value: v,
        t,
    };
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: series.clone(),
            samples: vec![Sample::new(10, 3.0)],
        }],
        exemplars: vec![SeriesExemplars {
            series: series.clone(),
            exemplars: vec![exemplar("abc", 0.42, 9), exemplar("def", 0.31, 10)],
        }],
        ..Default::default()
    };
    let v1 = crate::remote_write::encode_protobuf(&req);
    let (v2, n) = transcode_v1(&v1, &mut FamilyMetadata::default()).unwrap();
    assert_eq!(n, 1);
    let parsed = parse(&v2).unwrap();
    let (grouped, refused) = parsed.series_exemplars();
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(grouped, req.exemplars);
    // And what the owned decoder hands the agent.
    let got = decode_with_limit(&compress(&v2), 1 << 20).unwrap().request;
    assert_eq!(got.exemplars, req.exemplars);
    assert_eq!(got.timeseries, req.timeseries);
}

fn histogram_series() -> Vec<meshlens_model::SeriesHistograms> {
    let shapes = crate::remote_write::histogram::test_shapes();
    vec![
        meshlens_model::SeriesHistograms {
            labels: Labels::from_pairs([("__name__", "latency"), ("job", "a")]),
            samples: shapes[..2].to_vec(),
        },
        meshlens_model::SeriesHistograms {
            labels: Labels::from_pairs([("__name__", "queue_depth")]),
            samples: shapes[2..].to_vec(),
        },
    ]
}

fn assert_same_series_histograms(
    got: &[meshlens_model::SeriesHistograms],
    want: &[meshlens_model::SeriesHistograms],
) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.labels, w.labels);
        crate::remote_write::histogram::assert_same_histograms(&g.samples, &w.samples);
    }
}

#[test]
fn native_histograms_round_trip() {
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: Labels::from_pairs([("__name__", "up")]),
            samples: vec![Sample::new(10, 1.0)],
        }],
        metadata: vec![MetricMetadata {
            metric_family: "latency".into(),
            kind: "histogram".into(),
            help: "Latency.".into(),
            unit: "seconds".into(),
        }],
        histograms: histogram_series(),
        ..Default::default()
    };
    let back = decode_with_limit(&encode(&req), 1 << 20).unwrap().request;
    assert_same_series_histograms(&back.histograms, &req.histograms);
    assert_eq!(back.histograms_dropped, 0);
    assert_eq!(back.timeseries, req.timeseries);
    // The histogram series carries its family's metadata.
    assert_eq!(back.metadata, req.metadata);
}

#[test]
fn transcoding_keeps_native_histograms_with_their_series() {
    let histograms = histogram_series();
    let floats = TimeSeries {
        labels: Labels::from_pairs([("__name__", "up")]),
        samples: vec![Sample::new(10, 1.0)],
    };
    let extra = [("cluster".to_string(), "east".to_string())];
    // A buffer record: float series, then histogram series of their own.
    let mut v1 = encode_protobuf_stamped(&[&floats], &[], &extra);
    let refs: Vec<&meshlens_model::SeriesHistograms> = histograms.iter().collect();
    crate::remote_write::encode_histograms_stamped(&mut v1, &refs, &extra);
    let (v2, n) = transcode_v1(&v1, &mut FamilyMetadata::default()).unwrap();
    assert_eq!(n, 1);
    let got = decode_with_limit(&compress(&v2), 1 << 20).unwrap().request;
    let want = crate::remote_write::decode(&compress(&v1)).unwrap();
    assert_eq!(want.histograms.len(), 2);
    assert_eq!(want.histograms[0].labels.get("cluster"), Some("east"));
    assert_same_series_histograms(&got.histograms, &want.histograms);
    assert_eq!(got.timeseries, want.timeseries);
    // A histogram the 1.0 reader refuses is not sent on.
    let mut bad = histograms[0].clone();
    let mut h = (*bad.samples[0].h).clone();
    h.positive_buckets.pop();
    bad.samples = vec![meshlens_model::HistogramSample {
        t: 5,
        h: std::sync::Arc::new(h),
    }];
    let mut v1 = Vec::new();
    crate::remote_write::encode_histograms_stamped(&mut v1, &[&bad], &[]);
    let (v2, _) = transcode_v1(&v1, &mut FamilyMetadata::default()).unwrap();
    let got = decode_with_limit(&compress(&v2), 1 << 20).unwrap().request;
    assert!(got.histograms.is_empty() && got.histograms_dropped == 0);
}

#[test]
fn families_by_suffix_and_type() {
    let mut f = FamilyMetadata::default();
    let md = |fam: &str, kind: &str| MetricMetadata {
        metric_family: fam.into(),
        kind: kind.into(),
        help: String::new(),
        unit: String::new(),
    };
    f.update(&[md("h", "histogram"), md("g", "gauge"), md("s", "summary")]);
    assert_eq!(f.lookup("h_bucket").unwrap().metric_family, "h");
    assert_eq!(f.lookup("s_count").unwrap().metric_family, "s");
    assert!(f.lookup("s_bucket").is_none(), "summaries have no buckets");
    assert!(
        f.lookup("g_count").is_none(),
        "a gauge's family has no _count series"
    );
    assert_eq!(f.lookup("g").unwrap().kind, "gauge");
    assert_eq!(family_of("h_bucket", "histogram"), "h");
    assert_eq!(family_of("x_total", "counter"), "x_total");
    assert_eq!(family_of("_sum", "summary"), "_sum");
}

/// Any request prost can write from a small table, with references in and out of range.
fn arb_request() -> impl Strategy<Value = PbRequest> {
    let names = ["", "__name__", "up", "job", "a", "bad-name", "x", "9"];
    let series = (
        proptest::collection::vec(0u32..10, 0..7),
        proptest::collection::vec((any::<i64>(), any::<u64>()), 0..3),
        proptest::collection::vec(
            (proptest::collection::vec(0u32..10, 0..3), any::<i64>()),
            0..2,
        ),
        proptest::option::of((0i32..9, 0u32..10, 0u32..10)),
        any::<i64>(),
    )
        .prop_map(|(refs, samples, exemplars, md, created)| PbSeries {
            labels_refs: refs,
            samples: samples
                .into_iter()
                .map(|(t, v)| sample(t, f64::from_bits(v)))
                .collect(),
            histograms: Vec::new(),
            exemplars: exemplars
                .into_iter()
                .map(|(labels_refs, timestamp)| PbExemplar {
                    labels_refs,
                    value: 1.0,
                    timestamp,
                })
                .collect(),
            metadata: md.map(|(t, h, u)| PbMetadata {
                r#type: t,
                help_ref: h,
                unit_ref: u,
            }),
            created_timestamp: created,
        });
    (
        proptest::collection::vec(series, 0..5),
        1usize..=names.len(),
    )
        .prop_map(move |(timeseries, n)| PbRequest {
            symbols: names[..n].iter().map(|s| s.to_string()).collect(),
            timeseries,
        })
}

/// What a series should read as: its resolved pairs, or refused.
fn reference(pb: &PbRequest, s: &PbSeries) -> Option<Vec<(String, String)>> {
    let get = |r: u32| pb.symbols.get(r as usize).cloned();
    if s.labels_refs.len() % 2 == 1 {
        return None;
    }
    let pairs: Option<Vec<(String, String)>> = s
        .labels_refs
        .chunks(2)
        .map(|p| Some((get(p[0])?, get(p[1])?)))
        .collect();
    let pairs = pairs?;
    if let Some(m) = &s.metadata {
        get(m.help_ref)?;
        get(m.unit_ref)?;
    }
    if !s.samples.is_empty() {
        let labels = Labels::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        labels.validate().ok()?;
        labels.metric_name()?;
    }
    Some(pairs)
}

proptest! {
    #[test]
    fn reader_agrees_with_the_schema(pb in arb_request()) {
        let raw = pb.encode_to_vec();
        let req = parse(&raw).unwrap();
        prop_assert_eq!(req.raw.len(), pb.timeseries.len());
        for (i, s) in pb.timeseries.iter().enumerate() {
            let got = req.raw.get(i).unwrap();
            match reference(&pb, s) {
                None => {
                    prop_assert!(req.invalid.iter().any(|v| v.index == i), "series {} kept", i);
                    prop_assert!(got.samples.is_empty());
                }
                Some(pairs) => {
                    prop_assert!(!req.invalid.iter().any(|v| v.index == i), "series {} refused", i);
                    let got: Vec<(String, String)> = got.labels.iter()
                        .map(|(n, v)| (n.to_string(), v.to_string())).collect();
                    prop_assert_eq!(got, pairs);
                    prop_assert_eq!(req.created_timestamp(i), Some(s.created_timestamp).filter(|t| *t != 0));
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body);
        let _ = decode_with_limit(&compress(&body), 1 << 20);
    }

    #[test]
    fn encoder_round_trips(
        series in proptest::collection::vec(
            ("[a-z_]{1,8}", "[a-z]{0,3}", proptest::collection::vec((any::<i64>(), -1e9f64..1e9), 1..5)), 0..6)
    ) {
        let req = WriteRequest {
            timeseries: series.iter().map(|(n, v, s)| TimeSeries {
                labels: Labels::from_pairs([("__name__", n.as_str()), ("v", v.as_str())]),
                samples: s.iter().map(|(t, v)| Sample::new(*t, *v)).collect(),
            }).collect(),
            ..Default::default()
        };
        let back = decode_with_limit(&encode(&req), 1 << 24).unwrap();
        prop_assert_eq!(back.request.timeseries, req.timeseries);
    }
}

#[test]
fn the_encoder_writes_created_timestamps_the_decoder_reads() {
    let mut e = Encoder::new();
    let counter = [Sample::new(5_000, 3.0)];
    e.add_series_created(
        [("__name__", "reqs_total"), ("job", "a")],
        &counter,
        &[],
        &[],
        None,
        1_234,
    );
    // None (0) leaves the field out, as does a negative time.
    e.add_series_created([("__name__", "temp")], &counter, &[], &[], None, 0);
    e.add_series_created([("__name__", "odd")], &counter, &[], &[], None, -5);
    e.add([("__name__", "plain")], &counter, None);
    let raw = e.finish();
    let req = parse(&raw).unwrap();
    assert_eq!(req.created_timestamp(0), Some(1_234));
    assert_eq!(req.created_timestamp(1), None);
    assert_eq!(req.created_timestamp(2), None);
    assert_eq!(req.created_timestamp(3), None);
    // What a reference protobuf reader sees.
    let pb = PbRequest::decode(raw.as_slice()).unwrap();
    let got: Vec<i64> = pb.timeseries.iter().map(|s| s.created_timestamp).collect();
    assert_eq!(got, [1_234, 0, 0, 0]);
    // And the zero a receiver with created-timestamp zero ingestion stores.
    let zeros: Vec<Option<Sample>> = req
        .series_with_zeros()
        .into_iter()
        .map(|(_, z)| z)
        .collect();
    assert_eq!(zeros, [Some(Sample::new(1_234, 0.0)), None, None, None]);
}

#[test]
fn a_buffer_records_created_timestamps_reach_the_2_0_request() {
    let series = [
        TimeSeries {
            labels: Labels::from_pairs([("__name__", "reqs_total")]),
            samples: vec![Sample::new(10_000, 1.0)],
        },
        TimeSeries {
            labels: Labels::from_pairs([("__name__", "temp")]),
            samples: vec![Sample::new(10_000, 21.5)],
        },
    ];
    let v1 = crate::remote_write::encode_protobuf_stamped_created(
        &[&series[0], &series[1]],
        &[4_000],
        &[],
        &[],
    );
    // A 1.0 reader skips the field: the request is the one without it.
    let plain = encode_protobuf_stamped(&[&series[0], &series[1]], &[], &[]);
    assert_eq!(
        crate::remote_write::decode(&compress(&v1)).unwrap(),
        crate::remote_write::decode(&compress(&plain)).unwrap()
    );
    let parsed = crate::remote_write::wire::parse(&v1).unwrap();
    assert_eq!(
        (parsed.created_ms(0), parsed.created_ms(1)),
        (Some(4_000), None)
    );
    // Records written before the field existed carry none.
    let old = crate::remote_write::wire::parse(&plain).unwrap();
    assert_eq!((old.created_ms(0), old.created_ms(1)), (None, None));
    let (v2, n) = transcode_v1(&v1, &mut FamilyMetadata::default()).unwrap();
    assert_eq!(n, 2);
    let req = parse(&v2).unwrap();
    assert_eq!(req.created_timestamp(0), Some(4_000));
    assert_eq!(req.created_timestamp(1), None);
    // Histogram records carry theirs the same way.
    let h = SeriesHistograms {
        labels: Labels::from_pairs([("__name__", "lat")]),
        samples: vec![meshlens_model::HistogramSample {
            t: 10_000,
            h: std::sync::Arc::new(meshlens_model::FloatHistogram {
                count: 1.0,
                sum: 1.0,
                zero_count: 1.0,
                ..Default::default()
            }),
        }],
    };
    let mut v1 = Vec::new();
    crate::remote_write::encode_histograms_stamped_created(&mut v1, &[&h], &[3_000], &[]);
    let (v2, _) = transcode_v1(&v1, &mut FamilyMetadata::default()).unwrap();
    let req = parse(&v2).unwrap();
    assert_eq!(req.created_timestamp(0), Some(3_000));
    assert_eq!(req.histogram_zeros().len(), 1);
}

#[test]
fn decoded_created_timestamps_follow_the_kept_series() {
    let pb = PbRequest {
        symbols: ["", "__name__", "a_total", "b_total", "bad name"]
            .map(String::from)
            .to_vec(),
        timeseries: vec![
            PbSeries {
                labels_refs: vec![1, 2],
                samples: vec![PbSample {
                    value: 1.0,
                    timestamp: 10_000,
                    ..Default::default()
                }],
                created_timestamp: 2_000,
                ..Default::default()
            },
            // Refused (an out-of-range reference): no entry for it.
            PbSeries {
                labels_refs: vec![1, 99],
                samples: vec![PbSample {
                    value: 1.0,
                    timestamp: 10_000,
                    ..Default::default()
                }],
                created_timestamp: 3_000,
                ..Default::default()
            },
            PbSeries {
                labels_refs: vec![1, 3],
                samples: vec![PbSample {
                    value: 1.0,
                    timestamp: 10_000,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    };
    let d = decode_with_limit(&compress(&pb.encode_to_vec()), 1 << 20).unwrap();
    assert_eq!(d.request.timeseries.len(), 2);
    assert_eq!(d.created, [2_000, 0]);
    assert!(d.histograms_created.is_empty());
}
