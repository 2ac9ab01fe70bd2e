use meshlens_model::{
    is_stale_nan, BucketSpan, CounterResetHint, FloatHistogram, Sample, TimeSeries,
};

use super::names::{label_name, metric_name, Kind};
use super::*;

#[test]
fn metric_names_follow_prometheus_3() {
    let cases = [
        // name, unit, kind, expected (Prometheus 3, UnderscoreEscapingWithSuffixes)
        (
            "http.server.requests",
            "{request}",
            Kind::MonotonicCounter,
            "http_server_requests_total",
        ),
        (
            "http.server.duration",
            "ms",
            Kind::Histogram,
            "http_server_duration_milliseconds",
        ),
        (
            "http.server.request.duration",
            "s",
            Kind::Histogram,
            "http_server_request_duration_seconds",
        ),
        (
            "system.memory.usage",
            "By",
            Kind::NonMonotonicCounter,
            "system_memory_usage_bytes",
        ),
        (
            "network.io",
            "By/s",
            Kind::Gauge,
            "network_io_bytes_per_second",
        ),
        ("cpu.utilization", "1", Kind::Gauge, "cpu_utilization_ratio"),
        (
            "cpu.utilization",
            "1",
            Kind::NonMonotonicCounter,
            "cpu_utilization",
        ),
        (
            "requests.count",
            "1",
            Kind::MonotonicCounter,
            "requests_count_total",
        ),
        (
            "requests_total",
            "",
            Kind::MonotonicCounter,
            "requests_total",
        ),
        (
            "total.requests",
            "",
            Kind::MonotonicCounter,
            "requests_total",
        ),
        ("ratio.of.x", "1", Kind::Gauge, "of_x_ratio"),
        ("latency_seconds", "s", Kind::Histogram, "latency_seconds"),
        (
            "queue.items",
            "{item}/s",
            Kind::Gauge,
            "queue_items_per_second",
        ),
        ("disk.io", "MiBy/{op}", Kind::Gauge, "disk_io_mebibytes"),
        ("temp", "Cel", Kind::Gauge, "temp_celsius"),
        ("weird-unit", "foo.bar", Kind::Gauge, "weird_unit_foo_bar"),
        ("per.x", "m/mo", Kind::Gauge, "per_x_meters_per_month"),
        ("2xx.count", "", Kind::Gauge, "_2xx_count"),
        ("app::x..y__z", "", Kind::Gauge, "app::x_y_z"),
        ("héllo wörld", "", Kind::Gauge, "h_llo_w_rld"),
    ];
    for (name, unit, kind, want) in cases {
        assert_eq!(
            metric_name(name, unit, kind).as_deref(),
            Ok(want),
            "{name} [{unit}] {kind:?}"
        );
    }
    assert!(metric_name("...", "", Kind::Gauge).is_err());
    assert!(metric_name("", "", Kind::Gauge).is_err());
}

#[test]
fn label_names_follow_prometheus_3() {
    let cases = [
        ("http.method", "http_method"),
        ("http..method", "http_method"),
        ("http__method", "http_method"),
        ("123invalid", "key_123invalid"),
        ("_private", "_private"),
        ("__reserved__", "__reserved__"),
        ("ünïcode", "_n_code"),
        ("le", "le"),
    ];
    for (key, want) in cases {
        assert_eq!(label_name(key).as_deref(), Ok(want), "{key}");
    }
    assert!(label_name("").is_err());
    assert!(label_name("...").is_err());
}

const JSON: &str = r#"{"resourceMetrics":[{
  "resource":{"attributes":[
    {"key":"service.name","value":{"stringValue":"checkout"}},
    {"key":"service.namespace","value":{"stringValue":"shop"}},
    {"key":"service.instance.id","value":{"stringValue":"pod-1"}},
    {"key":"k8s.cluster.name","value":{"stringValue":"east"}},
    {"key":"host.cores","value":{"intValue":"8"}}]},
  "scopeMetrics":[{"scope":{"name":"my.lib","version":"1.0"},"metrics":[
    {"name":"http.server.requests","unit":"{request}","sum":{"aggregationTemporality":2,"isMonotonic":true,
      "dataPoints":[{"attributes":[{"key":"http.method","value":{"stringValue":"GET"}},
                                   {"key":"http_method","value":{"stringValue":"get"}}],
                     "startTimeUnixNano":"1700000000000000000","timeUnixNano":"1700000060000000000","asInt":"42"}]}},
    {"name":"queue.depth","unit":"{item}","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":false,
      "dataPoints":[{"timeUnixNano":"1700000060000000000","asDouble":-3.5}]}},
    {"name":"cpu.utilization","unit":"1","gauge":{
      "dataPoints":[{"timeUnixNano":"1700000060000000000","asDouble":0.25},
                    {"timeUnixNano":"1700000120000000000","flags":1}]}},
    {"name":"http.server.duration","unit":"ms","histogram":{"aggregationTemporality":2,
      "dataPoints":[{"timeUnixNano":"1700000060000000000","count":"6","sum":123.5,
                     "bucketCounts":["1","2","3"],"explicitBounds":[5,10.5]}]}},
    {"name":"rpc.latency","unit":"s","summary":{
      "dataPoints":[{"timeUnixNano":"1700000060000000000","count":"10","sum":2.5,
                     "quantileValues":[{"quantile":0.5,"value":0.2},{"quantile":0.99,"value":0.9}]}]}},
    {"name":"jobs.done","sum":{"aggregationTemporality":1,"isMonotonic":true,
      "dataPoints":[{"timeUnixNano":"1700000060000000000","asInt":1},{"timeUnixNano":"1700000060000000000","asInt":2}]}},
    {"name":"sizes","exponentialHistogram":{"aggregationTemporality":2,
      "dataPoints":[{"timeUnixNano":"1700000060000000000","count":"1","zeroCount":"1"}]}}
  ]}]}]}"#;

fn find<'a>(series: &'a [TimeSeries], name: &str, extra: &[(&str, &str)]) -> &'a TimeSeries {
    series
        .iter()
        .find(|s| {
            s.labels.get("__name__") == Some(name)
                && extra.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no {name} {extra:?} in {series:#?}"))
}

const T: i64 = 1_700_000_060_000;

#[test]
fn json_request_translates_like_prometheus_3() {
    let req = decode_json(JSON.as_bytes()).unwrap();
    let out = translate(
        &req,
        &Settings {
            promote_resource_attributes: vec!["k8s.cluster.name".into()],
            ..Settings::default()
        },
    );
    let s = &out.series;
    let c = find(s, "http_server_requests_total", &[]);
    assert_eq!(c.labels.get("job"), Some("shop/checkout"));
    assert_eq!(c.labels.get("instance"), Some("pod-1"));
    assert_eq!(
        c.labels.get("http_method"),
        Some("GET;get"),
        "colliding keys joined"
    );
    assert_eq!(c.labels.get("k8s_cluster_name"), Some("east"), "promoted");
    assert_eq!(
        c.labels.get("otel_scope_name"),
        None,
        "scope not promoted by default"
    );
    assert_eq!((c.samples[0].t, c.samples[0].v), (T, 42.0));
    assert_eq!(find(s, "queue_depth", &[]).samples[0].v, -3.5);
    let g = find(s, "cpu_utilization_ratio", &[]);
    assert_eq!(g.samples.len(), 2);
    assert!(
        is_stale_nan(g.samples[1].v),
        "no recorded value = stale marker"
    );
    let h = "http_server_duration_milliseconds";
    assert_eq!(
        find(s, &format!("{h}_bucket"), &[("le", "5")]).samples[0].v,
        1.0
    );
    assert_eq!(
        find(s, &format!("{h}_bucket"), &[("le", "10.5")]).samples[0].v,
        3.0
    );
    assert_eq!(
        find(s, &format!("{h}_bucket"), &[("le", "+Inf")]).samples[0].v,
        6.0
    );
    assert_eq!(find(s, &format!("{h}_count"), &[]).samples[0].v, 6.0);
    assert_eq!(find(s, &format!("{h}_sum"), &[]).samples[0].v, 123.5);
    assert_eq!(
        find(s, "rpc_latency_seconds", &[("quantile", "0.99")]).samples[0].v,
        0.9
    );
    assert_eq!(find(s, "rpc_latency_seconds_count", &[]).samples[0].v, 10.0);
    assert_eq!(find(s, "rpc_latency_seconds_sum", &[]).samples[0].v, 2.5);
    let ti = find(s, "target_info", &[]);
    assert_eq!(ti.labels.get("k8s_cluster_name"), Some("east"));
    assert_eq!(ti.labels.get("host_cores"), Some("8"));
    assert_eq!(ti.labels.get("job"), Some("shop/checkout"));
    assert_eq!(ti.labels.get("service_name"), None);
    assert_eq!(ti.labels.len(), 5, "{:?}", ti.labels);
    // earliest 1700000060s, latest 1700000120s: one sample at each end.
    assert_eq!(
        ti.samples.iter().map(|x| x.t).collect::<Vec<_>>(),
        [T, T + 60_000]
    );
    // The delta sum (2 points) is refused.
    assert_eq!(out.rejected, 2);
    let msg = out.message();
    assert!(
        msg.starts_with("resourceMetrics[0].scopeMetrics[0].metrics[5] (\"jobs.done\").dataPoints[0]: delta aggregation temporality is not supported"),
        "{msg}"
    );
    assert!(msg.ends_with("(2 data points refused in all)"), "{msg}");
    // The exponential histogram is a native histogram with the resource's labels.
    assert_eq!(out.histograms.len(), 1);
    let nh = &out.histograms[0];
    assert_eq!(nh.labels.get("__name__"), Some("sizes"));
    assert_eq!(nh.labels.get("job"), Some("shop/checkout"));
    assert_eq!(nh.labels.get("k8s_cluster_name"), Some("east"), "promoted");
    assert_eq!(nh.samples[0].t, T);
    assert_eq!(
        (nh.samples[0].h.count, nh.samples[0].h.zero_count),
        (1.0, 1.0)
    );
    assert!(!s.iter().any(|x| x.labels.get("__name__") == Some("sizes")));
    assert_eq!(
        out.metadata
            .iter()
            .find(|m| m.metric_family == "sizes")
            .unwrap()
            .kind,
        "histogram"
    );
    assert!(!s
        .iter()
        .any(|x| x.labels.get("__name__").unwrap().starts_with("jobs")));
    assert_eq!(
        out.metadata
            .iter()
            .find(|m| m.metric_family == h)
            .unwrap()
            .kind,
        "histogram"
    );
}

#[test]
fn exponential_histograms_are_native_histograms_not_refusals() {
    // Was `exponential_histograms_are_refused_with_the_reason`: the point is now stored.
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"sizes",
      "exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"1000000","count":"1",
        "positive":{"bucketCounts":["1"]}}]}}]}]}]}"#;
    let out = translate(&decode_json(body.as_bytes()).unwrap(), &Settings::default());
    assert_eq!(out.rejected, 0, "{}", out.message());
    assert_eq!(out.message(), "");
    assert!(
        out.series.is_empty(),
        "no float series, no target_info without a job or instance"
    );
    assert_eq!(out.histograms.len(), 1);
    let h = &out.histograms[0].samples[0];
    assert_eq!(h.t, 1);
    assert_eq!(h.h.schema, 0);
    // OTLP bucket 0 = (1, 2] is Prometheus bucket 1.
    assert_eq!(
        h.h.positive_spans,
        [BucketSpan {
            offset: 1,
            length: 1
        }]
    );
    assert_eq!(h.h.positive_buckets, [1.0]);
}

/// The exponential histogram of the scale-3 tests: name `request.size` in bytes, one
/// attribute, resource `service.name=api`. Positive side offset -2, counts
/// [1, 0, 2, 0, 0, 0, 3]; negative side offset 1, counts [0, 0, 0, 0, 4, 1]; zero bucket 2;
/// count 13, sum 10.5. A second point (later) has no recorded value.
const EXP_JSON: &str = r#"{"resourceMetrics":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
  "scopeMetrics":[{"metrics":[{"name":"request.size","unit":"By","exponentialHistogram":{
    "aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE",
    "dataPoints":[
      {"attributes":[{"key":"route","value":{"stringValue":"/a"}}],
       "startTimeUnixNano":"1700000000000000000","timeUnixNano":"1700000060000000000",
       "count":"13","sum":10.5,"scale":3,"zeroCount":"2","zeroThreshold":0.001,
       "positive":{"offset":-2,"bucketCounts":["1","0","2","0","0","0","3"]},
       "negative":{"offset":1,"bucketCounts":[0,0,0,0,4,"1"]},
       "min":-3,"max":100},
      {"attributes":[{"key":"route","value":{"stringValue":"/a"}}],
       "timeUnixNano":"1700000120000000000","count":"13","scale":3,"flags":1}]}}]}]}]}"#;

/// The same request in protobuf.
fn exp_proto(scale: i32, temporality: u64) -> Vec<u8> {
    let zz = |n: i32| u64::from(((n << 1) ^ (n >> 31)) as u32);
    let side = |offset: i32, counts: &[u64], packed: bool| {
        let mut b = vint(1, zz(offset));
        if packed {
            let mut body = Vec::new();
            for c in counts {
                varint(*c, &mut body);
            }
            b.extend(ld(2, &body));
        } else {
            for c in counts {
                b.extend(vint(2, *c));
            }
        }
        b
    };
    let point = [
        ld(1, &kv("route", "/a")),
        fixed(2, 1_700_000_000_000_000_000),
        fixed(3, 1_700_000_060_000_000_000),
        fixed(4, 13),
        fixed(5, 10.5f64.to_bits()),
        vint(6, zz(scale)),
        fixed(7, 2),
        ld(8, &side(-2, &[1, 0, 2, 0, 0, 0, 3], true)),
        ld(9, &side(1, &[0, 0, 0, 0, 4, 1], false)),
        fixed(12, (-3.0f64).to_bits()),
        fixed(13, 100.0f64.to_bits()),
        fixed(14, 0.001f64.to_bits()),
    ]
    .concat();
    let stale = [
        ld(1, &kv("route", "/a")),
        fixed(3, 1_700_000_120_000_000_000),
        fixed(4, 13),
        vint(6, zz(scale)),
        vint(10, 1),
    ]
    .concat();
    let data = [ld(1, &point), ld(1, &stale), vint(2, temporality)].concat();
    let metric = [ld(1, b"request.size"), ld(3, b"By"), ld(10, &data)].concat();
    let scope = ld(2, &metric);
    let resource = ld(1, &ld(1, &kv("service.name", "api")));
    ld(1, &[resource, ld(2, &scope)].concat())
}

/// What the scale-3 point becomes, written out by hand.
fn scale_3_expected() -> FloatHistogram {
    FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 3,
        // Prometheus's default, not the point's 0.001.
        zero_threshold: 1e-128,
        zero_count: 2.0,
        count: 13.0,
        sum: 10.5,
        // OTLP indices -2..=4 are Prometheus indices -1..=5 with counts 1 0 2 0 0 0 3: the
        // single empty bucket at 0 is written, the three at 2..=4 start a new span at 5.
        positive_spans: vec![
            BucketSpan {
                offset: -1,
                length: 3,
            },
            BucketSpan {
                offset: 3,
                length: 1,
            },
        ],
        positive_buckets: vec![1.0, 0.0, 2.0, 3.0],
        // OTLP indices 1..=6 are 2..=7 with counts 0 0 0 0 4 1: the first span starts at 2
        // and stays empty, four empty buckets later the next one holds 6 and 7.
        negative_spans: vec![
            BucketSpan {
                offset: 2,
                length: 0,
            },
            BucketSpan {
                offset: 4,
                length: 2,
            },
        ],
        negative_buckets: vec![4.0, 1.0],
        custom_values: vec![],
    }
}

fn check_scale_3(out: &Translated) {
    assert_eq!(out.rejected, 0, "{}", out.message());
    assert_eq!(out.histograms.len(), 1, "{:#?}", out.histograms);
    let s = &out.histograms[0];
    assert_eq!(
        s.labels.get("__name__"),
        Some("request_size_bytes"),
        "unit suffix, no _total or _bucket"
    );
    assert_eq!(s.labels.get("route"), Some("/a"));
    assert_eq!(s.labels.get("job"), Some("api"));
    assert_eq!(s.labels.len(), 3, "{:?}", s.labels);
    // The point without a recorded value is skipped, not refused.
    assert_eq!(s.samples.len(), 1);
    assert_eq!(s.samples[0].t, T);
    assert_eq!(*s.samples[0].h, scale_3_expected());
    s.samples[0].h.validate().unwrap();
    assert!(!out
        .series
        .iter()
        .any(|x| x.labels.get("__name__").unwrap().starts_with("request")));
    let meta = out
        .metadata
        .iter()
        .find(|m| m.metric_family == "request_size_bytes")
        .unwrap();
    assert_eq!(
        (meta.kind.as_str(), meta.unit.as_str()),
        ("histogram", "By")
    );
}

#[test]
fn exponential_histogram_json_is_a_native_histogram() {
    let req = decode_json(EXP_JSON.as_bytes()).unwrap();
    let Data::ExponentialHistogram {
        points,
        temporality,
    } = &req.resources[0].scopes[0].metrics[0].data
    else {
        panic!("{req:#?}")
    };
    assert_eq!(*temporality, TEMPORALITY_CUMULATIVE);
    assert_eq!(
        points[0],
        ExponentialHistogramPoint {
            attributes: vec![("route".into(), "/a".into())],
            start_ns: 1_700_000_000_000_000_000,
            time_ns: 1_700_000_060_000_000_000,
            count: 13,
            sum: Some(10.5),
            scale: 3,
            zero_count: 2,
            zero_threshold: 0.001,
            positive: ExponentialBuckets {
                offset: -2,
                bucket_counts: vec![1, 0, 2, 0, 0, 0, 3],
            },
            negative: ExponentialBuckets {
                offset: 1,
                bucket_counts: vec![0, 0, 0, 0, 4, 1],
            },
            flags: 0,
        }
    );
    assert_eq!((points[1].flags, points[1].sum), (1, None));
    check_scale_3(&translate(&req, &Settings::default()));
}

#[test]
fn exponential_histogram_protobuf_is_a_native_histogram() {
    let req = decode_proto(&exp_proto(3, 2)).unwrap();
    let json = decode_json(EXP_JSON.as_bytes()).unwrap();
    assert_eq!(req, json, "protobuf and JSON decode alike");
    check_scale_3(&translate(&req, &Settings::default()));
}

#[test]
fn exponential_histogram_scale_above_8_is_merged_down_to_8() {
    // Scale 10: four OTLP buckets make one of schema 8.
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"fine",
      "exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"1000000",
        "count":"24","sum":1,"scale":10,
        "positive":{"offset":-3,"bucketCounts":[1,2,3,4,5,6]},
        "negative":{"offset":7,"bucketCounts":[1,0,0,0,0,0,0,0,0,2]}}]}}]}]}]}"#;
    let out = translate(&decode_json(body.as_bytes()).unwrap(), &Settings::default());
    assert_eq!(out.rejected, 0, "{}", out.message());
    let h = &out.histograms[0].samples[0].h;
    assert_eq!(h.schema, 8);
    // OTLP -3, -2, -1 → floor(i/4) = -1 → Prometheus 0: 1+2+3; OTLP 0, 1, 2 → 0 → 1: 4+5+6.
    assert_eq!(
        h.positive_spans,
        [BucketSpan {
            offset: 0,
            length: 2
        }]
    );
    assert_eq!(h.positive_buckets, [6.0, 15.0]);
    // OTLP 7 → 1 → 2: 1; 8..=11 → 3 and 12..=15 → 4: empty; 16 → 4 → 5: 2. Two empty
    // buckets between written ones are written as zeros.
    assert_eq!(
        h.negative_spans,
        [BucketSpan {
            offset: 2,
            length: 4
        }]
    );
    assert_eq!(h.negative_buckets, [1.0, 0.0, 0.0, 2.0]);
    assert_eq!((h.count, h.sum, h.zero_count), (24.0, 1.0, 0.0));
    h.validate().unwrap();
    // The same over protobuf, scale 10 on the wire.
    let out = translate(
        &decode_proto(&exp_proto(10, 2)).unwrap(),
        &Settings::default(),
    );
    let h = &out.histograms[0].samples[0].h;
    assert_eq!(h.schema, 8);
    // Positive OTLP -2..=4 at scale 10: -2, -1 → -1 → 0: 1+0; 0..=3 → 0 → 1: 2+0+0+0;
    // 4 → 1 → 2: 3.
    assert_eq!(
        h.positive_spans,
        [BucketSpan {
            offset: 0,
            length: 3
        }]
    );
    assert_eq!(h.positive_buckets, [1.0, 2.0, 3.0]);
    // Negative OTLP 1..=6: 1, 2, 3 → 0 → 1: 0; 4, 5, 6 → 1 → 2: 4+1.
    assert_eq!(
        h.negative_spans,
        [BucketSpan {
            offset: 1,
            length: 2
        }]
    );
    assert_eq!(h.negative_buckets, [0.0, 5.0]);
}

#[test]
fn exponential_histogram_scale_below_minus_4_is_refused_naming_the_point() {
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"coarse",
      "exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[
        {"timeUnixNano":"1000000","count":"1","scale":-4,"positive":{"bucketCounts":[1]}},
        {"timeUnixNano":"2000000","count":"1","scale":-5,"positive":{"bucketCounts":[1]}}]}}]}]}]}"#;
    let out = translate(&decode_json(body.as_bytes()).unwrap(), &Settings::default());
    assert_eq!(out.rejected, 1);
    assert_eq!(
        out.message(),
        "resourceMetrics[0].scopeMetrics[0].metrics[0] (\"coarse\").dataPoints[1]: exponential histogram scale -5 is below -4, the lowest native histogram schema"
    );
    let s = &out.histograms[0].samples;
    assert_eq!(s.len(), 1, "the valid point is kept");
    assert_eq!((s[0].t, s[0].h.schema), (1, -4));
    // Protobuf: sint32 -5 on the wire.
    let out = translate(
        &decode_proto(&exp_proto(-5, 2)).unwrap(),
        &Settings::default(),
    );
    // The scale is checked first, so the point without a recorded value is refused too.
    assert_eq!(out.rejected, 2);
    assert!(out
        .message()
        .contains("dataPoints[0]: exponential histogram scale -5"));
    assert!(out.histograms.is_empty());
}

#[test]
fn delta_exponential_histograms_are_refused() {
    let out = translate(
        &decode_proto(&exp_proto(3, 1)).unwrap(),
        &Settings::default(),
    );
    assert_eq!(out.rejected, 2);
    assert!(
        out.message().starts_with(
            "resourceMetrics[0].scopeMetrics[0].metrics[0] (\"request.size\").dataPoints[0]: delta aggregation temporality is not supported"
        ),
        "{}",
        out.message()
    );
    assert!(out.histograms.is_empty());
    assert!(out.metadata.is_empty());
}

#[test]
fn inconsistent_exponential_histograms_are_refused_alone() {
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"e",
      "exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[
        {"timeUnixNano":"1000000","count":"3","zeroCount":"1","positive":{"bucketCounts":[1]}},
        {"timeUnixNano":"2000000","count":"3","sum":"NaN","positive":{"bucketCounts":[1]}},
        {"timeUnixNano":"3000000","count":"1","sum":"NaN","positive":{"bucketCounts":[1,1]}},
        {"timeUnixNano":"4000000","count":"1","positive":{"offset":2147483647,"bucketCounts":[1]}},
        {"timeUnixNano":"5000000","count":"1","negative":{"offset":-2147483648,"bucketCounts":[1]}},
        {"timeUnixNano":"6000000","count":"18446744073709551615","scale":2147483647,
         "positive":{"offset":2147483647,"bucketCounts":["18446744073709551615"]}}]}}]}]}]}"#;
    let out = translate(&decode_json(body.as_bytes()).unwrap(), &Settings::default());
    assert_eq!(out.rejected, 3, "{}", out.message());
    assert!(
        out.message().starts_with(
            "resourceMetrics[0].scopeMetrics[0].metrics[0] (\"e\").dataPoints[0]: exponential histogram has 2 observations in its buckets (zero bucket included), but its count is 3"
        ),
        "{}",
        out.message()
    );
    let samples = &out.histograms[0].samples;
    // With a NaN sum the buckets may hold fewer observations than the count (Prometheus's
    // rule), not more; OTLP index 2147483647 is past Prometheus's 32-bit indices.
    assert_eq!(
        samples.iter().map(|s| s.t).collect::<Vec<_>>(),
        [2, 5, 6],
        "{}",
        out.message()
    );
    // OTLP -2^31 is Prometheus -2^31 + 1.
    assert_eq!(samples[1].h.negative_spans[0].offset, i32::MIN + 1);
    // Scale 2^31 - 1 merges everything positive into OTLP bucket 0, Prometheus 1.
    assert_eq!(samples[2].h.schema, 8);
    assert_eq!(
        samples[2].h.positive_spans,
        [BucketSpan {
            offset: 1,
            length: 1
        }]
    );
    let mut fine = decode_json(body.as_bytes()).unwrap();
    let Data::ExponentialHistogram { points, .. } =
        &mut fine.resources[0].scopes[0].metrics[0].data
    else {
        unreachable!()
    };
    points.truncate(4);
    points[3].scale = 10;
    let out = translate(&fine, &Settings::default());
    assert_eq!(
        out.rejected,
        2,
        "at scale 10 the index fits: {}",
        out.message()
    );
}

#[test]
fn exponential_histogram_json_errors_name_the_path() {
    let e = decode_json(br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","exponentialHistogram":{"dataPoints":[{"positive":{"offset":1,"bucketCounts":[1,-2]}}]}}]}]}]}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "$.resourceMetrics[0].scopeMetrics[0].metrics[0].exponentialHistogram.dataPoints[0].positive.bucketCounts[1]: expected an unsigned integer");
    let e = decode_json(br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","exponentialHistogram":{"dataPoints":[{"scale":4294967296}]}}]}]}]}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("dataPoints[0].scale: expected a 32-bit integer"),
        "{e}"
    );
}

#[test]
fn inconsistent_histograms_are_refused_alone() {
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"h","histogram":{"aggregationTemporality":2,
      "dataPoints":[{"timeUnixNano":"1000000","count":"3","bucketCounts":["1","2"],"explicitBounds":[1,2]},
                    {"timeUnixNano":"1000000","count":"3","bucketCounts":["1","2"],"explicitBounds":[1]}]}}]}]}]}"#;
    let out = translate(&decode_json(body.as_bytes()).unwrap(), &Settings::default());
    assert_eq!(out.rejected, 1);
    assert!(
        out.message()
            .contains("dataPoints[0]: histogram has 2 bucket counts for 2 explicit bounds"),
        "{}",
        out.message()
    );
    assert_eq!(
        find(&out.series, "h_bucket", &[("le", "+Inf")]).samples[0].v,
        3.0
    );
}

#[test]
fn json_errors_name_the_path() {
    let e = decode_json(br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":{"dataPoints":[{"asDouble":true}]}}]}]}]}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "$.resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].asDouble: expected a number");
    assert!(decode_json(b"{")
        .unwrap_err()
        .to_string()
        .starts_with("malformed JSON"));
    assert!(decode_json(b"[]").is_err());
}

// A tiny protobuf writer for the tests.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn ld(field: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(field << 3 | 2), &mut out);
    varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}
fn fixed(field: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(field << 3 | 1), &mut out);
    out.extend_from_slice(&v.to_le_bytes());
    out
}
fn vint(field: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(field << 3), &mut out);
    varint(v, &mut out);
    out
}
fn kv(k: &str, v: &str) -> Vec<u8> {
    [ld(1, k.as_bytes()), ld(2, &ld(1, v.as_bytes()))].concat()
}

/// A request with one monotonic cumulative sum and one histogram (packed bounds and counts).
fn proto_request(temporality: u64) -> Vec<u8> {
    let point = [
        ld(7, &kv("route", "/a")),
        fixed(3, 1_700_000_060_000_000_000),
        fixed(4, 7.0f64.to_bits()),
    ]
    .concat();
    let sum = [ld(1, &point), vint(2, temporality), vint(3, 1)].concat();
    let counter = [ld(1, b"orders"), ld(3, b"{order}"), ld(7, &sum)].concat();
    let bounds: Vec<u8> = [0.1f64, 1.0]
        .iter()
        .flat_map(|b| b.to_bits().to_le_bytes())
        .collect();
    let counts: Vec<u8> = [1u64, 1, 0].iter().flat_map(|c| c.to_le_bytes()).collect();
    let hpoint = [
        fixed(3, 1_700_000_060_000_000_000),
        fixed(4, 2),
        fixed(5, 0.6f64.to_bits()),
        ld(6, &counts),
        ld(7, &bounds),
    ]
    .concat();
    let hist = [ld(1, &hpoint), vint(2, 2)].concat();
    let histogram = [ld(1, b"db.latency"), ld(3, b"s"), ld(9, &hist)].concat();
    let scope = [ld(1, &ld(1, b"lib")), ld(2, &counter), ld(2, &histogram)].concat();
    let resource = ld(1, &ld(1, &kv("service.name", "api")));
    ld(1, &[resource, ld(2, &scope)].concat())
}

#[test]
fn protobuf_request_translates() {
    let req = decode_proto(&proto_request(2)).unwrap();
    let out = translate(&req, &Settings::default());
    assert_eq!(out.rejected, 0, "{}", out.message());
    let c = find(
        &out.series,
        "orders_total",
        &[("route", "/a"), ("job", "api")],
    );
    assert_eq!((c.samples[0].t, c.samples[0].v), (T, 7.0));
    let b = find(&out.series, "db_latency_seconds_bucket", &[("le", "0.1")]);
    assert_eq!(b.samples[0].v, 1.0);
    assert_eq!(
        find(&out.series, "db_latency_seconds_bucket", &[("le", "1")]).samples[0].v,
        2.0
    );
    assert_eq!(
        find(&out.series, "db_latency_seconds_sum", &[]).samples[0].v,
        0.6
    );
    assert!(
        !out.series
            .iter()
            .any(|s| s.labels.get("__name__") == Some("target_info")),
        "only service.name: no target_info"
    );
}

#[test]
fn delta_sum_over_protobuf_is_a_partial_success() {
    let out = translate(
        &decode_proto(&proto_request(1)).unwrap(),
        &Settings::default(),
    );
    assert_eq!(out.rejected, 1);
    assert!(
        out.message()
            .contains("metrics[0] (\"orders\").dataPoints[0]: delta"),
        "{}",
        out.message()
    );
    assert!(out
        .series
        .iter()
        .any(|s| s.labels.get("__name__") == Some("db_latency_seconds_count")));
    let resp = encode_response(out.rejected, &out.message());
    let decoded = ExportMetricsServiceResponse::decode(resp.as_slice()).unwrap();
    let ps = decoded.partial_success.unwrap();
    assert_eq!(ps.rejected_data_points, 1);
    assert!(ps.error_message.contains("delta"));
    assert!(encode_response(0, "").is_empty());
    let json: serde_json::Value = serde_json::from_str(&encode_response_json(2, "x")).unwrap();
    assert_eq!(json["partialSuccess"]["rejectedDataPoints"], "2");
}

#[test]
fn truncated_protobuf_says_at_which_byte() {
    let body = proto_request(2);
    let cut = &body[..body.len() - 3];
    let e = decode_proto(cut).unwrap_err().to_string();
    assert!(
        e.starts_with(
            "malformed protobuf ExportMetricsServiceRequest: truncated: a field announces "
        ),
        "{e}"
    );
    let at: usize = e.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(at < cut.len(), "{e}");
    // A wrong wire type inside a nested message names its byte in the whole body.
    let e = decode_proto(&[0x0a, 0x02, 0x10, 0x01])
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("invalid wire type for field 2: 0 (expected 2) at byte 3"),
        "{e}"
    );
}

/// Prometheus's `convertBucketsLayout` (otlptranslator/prometheusremotewrite/histograms.go),
/// transcribed statement by statement, with the deltas turned into absolute counts: the
/// reference `buckets_layout` is checked against.
fn prometheus_convert_buckets_layout(
    bucket_counts: &[u64],
    offset: i32,
    scale_down: u32,
) -> (Vec<BucketSpan>, Vec<f64>) {
    if bucket_counts.is_empty() {
        return (vec![], vec![]);
    }
    let mut spans: Vec<BucketSpan> = vec![];
    let mut counts: Vec<f64> = vec![];
    let mut count: i64 = 0;
    let append = |spans: &mut Vec<BucketSpan>, counts: &mut Vec<f64>, c: i64| {
        spans.last_mut().unwrap().length += 1;
        counts.push(c as f64);
    };
    let num_buckets = bucket_counts.len() as i32;
    let mut bucket_idx = (offset >> scale_down) + 1;
    spans.push(BucketSpan {
        offset: (offset >> scale_down) + 1,
        length: 0,
    });
    for (i, c) in bucket_counts.iter().enumerate() {
        let next_bucket_idx = ((i as i32 + offset) >> scale_down) + 1;
        if bucket_idx == next_bucket_idx {
            count += *c as i64;
            continue;
        }
        if count == 0 {
            count = *c as i64;
            continue;
        }
        let gap = next_bucket_idx - bucket_idx - 1;
        if gap > 2 {
            spans.push(BucketSpan {
                offset: gap,
                length: 0,
            });
        } else {
            for _ in 0..gap {
                append(&mut spans, &mut counts, 0);
            }
        }
        append(&mut spans, &mut counts, count);
        count = *c as i64;
        bucket_idx = next_bucket_idx;
    }
    let gap = ((num_buckets + offset - 1) >> scale_down) + 1 - bucket_idx;
    if gap > 2 {
        spans.push(BucketSpan {
            offset: gap,
            length: 0,
        });
    } else {
        for _ in 0..gap {
            append(&mut spans, &mut counts, 0);
        }
    }
    append(&mut spans, &mut counts, count);
    (spans, counts)
}

#[test]
fn merged_buckets_after_an_empty_one_stay_in_place() {
    // Scale 9 → 8, OTLP offset 0, counts 3 0 | 0 0 | 1 1: Prometheus buckets 1, 2, 3 hold
    // 3, 0, 2. Prometheus's convertBucketsLayout gives 3, 1, 1 here: after an empty merged
    // bucket it does not add up the rest of the next group (its `count == 0` branch keeps
    // the old index), so one observation lands a bucket too low. meshlens places them right.
    let b = ExponentialBuckets {
        offset: 0,
        bucket_counts: vec![3, 0, 0, 0, 1, 1],
    };
    let span = vec![BucketSpan {
        offset: 1,
        length: 3,
    }];
    assert_eq!(
        super::translate::buckets_layout(&b, 1).unwrap(),
        (span.clone(), vec![3.0, 0.0, 2.0])
    );
    assert_eq!(
        prometheus_convert_buckets_layout(&b.bucket_counts, 0, 1),
        (span, vec![3.0, 1.0, 1.0])
    );
}

proptest::proptest! {
    /// Without merging (scales up to 8) the layout is Prometheus's, span for span; with
    /// merging too, where Prometheus's is right (no empty merged bucket before the last; see
    /// the test above). Where the bucket counts land is checked by the next property.
    #[test]
    fn bucket_layout_is_prometheus_s(
        offset in -60i32..60,
        scale_down in 0u32..5,
        counts in proptest::collection::vec(proptest::prop_oneof![3 => proptest::prelude::Just(0u64), 1 => 1u64..5], 0..60),
    ) {
        let b = ExponentialBuckets { offset, bucket_counts: counts.clone() };
        // Prometheus's merge can go wrong only after an empty merged bucket (not the last):
        // compare with merging only when there is none.
        let mut merged = std::collections::BTreeMap::<i32, u64>::new();
        for (i, c) in counts.iter().enumerate() {
            *merged.entry((offset + i as i32) >> scale_down).or_default() += c;
        }
        let n = merged.len();
        let no_empty = merged.values().take(n.saturating_sub(1)).all(|&c| c != 0);
        if scale_down > 0 && !no_empty {
            let (spans, buckets) = super::translate::buckets_layout(&b, scale_down).unwrap();
            proptest::prop_assert_eq!(
                buckets.iter().sum::<f64>(),
                counts.iter().sum::<u64>() as f64
            );
            proptest::prop_assert_eq!(
                spans.iter().map(|s| s.length as usize).sum::<usize>(),
                buckets.len()
            );
            return Ok(());
        }
        proptest::prop_assert_eq!(
            super::translate::buckets_layout(&b, scale_down).unwrap(),
            prometheus_convert_buckets_layout(&counts, offset, scale_down)
        );
    }

    /// Any exponential histogram point either is refused or becomes a valid native
    /// histogram whose buckets hold exactly the OTLP buckets merged down to schema 8.
    #[test]
    fn exponential_buckets_land_where_they_belong(
        scale in -6i32..14,
        offsets in (-40i32..40, -40i32..40),
        pos in proptest::collection::vec(proptest::prop_oneof![3 => proptest::prelude::Just(0u64), 1 => 1u64..5], 0..40),
        neg in proptest::collection::vec(proptest::prop_oneof![3 => proptest::prelude::Just(0u64), 1 => 1u64..5], 0..40),
        zero in 0u64..3,
    ) {
        let count = pos.iter().chain(&neg).sum::<u64>() + zero;
        let p = ExponentialHistogramPoint {
            count,
            scale,
            zero_count: zero,
            positive: ExponentialBuckets { offset: offsets.0, bucket_counts: pos.clone() },
            negative: ExponentialBuckets { offset: offsets.1, bucket_counts: neg.clone() },
            ..Default::default()
        };
        let req = ExportMetrics { resources: vec![ResourceMetrics { attributes: vec![], scopes: vec![ScopeMetrics {
            metrics: vec![Metric { name: "x".into(), data: Data::ExponentialHistogram { points: vec![p], temporality: TEMPORALITY_CUMULATIVE }, ..Default::default() }],
            ..Default::default() }] }] };
        let out = translate(&req, &Settings::default());
        if scale < -4 {
            proptest::prop_assert_eq!(out.rejected, 1);
            return Ok(());
        }
        proptest::prop_assert_eq!(out.rejected, 0);
        let h = &out.histograms[0].samples[0].h;
        proptest::prop_assert!(h.validate().is_ok());
        proptest::prop_assert_eq!(h.schema, scale.min(8));
        let down = (scale - 8).max(0);
        for (spans, buckets, offset, counts) in [
            (&h.positive_spans, &h.positive_buckets, offsets.0, &pos),
            (&h.negative_spans, &h.negative_buckets, offsets.1, &neg),
        ] {
            // Expected: Prometheus index = floor(OTLP index / 2^down) + 1.
            let mut want = std::collections::BTreeMap::<i32, f64>::new();
            for (i, c) in counts.iter().enumerate() {
                let j = (offset + i as i32).div_euclid(1 << down) + 1;
                *want.entry(j).or_default() += *c as f64;
            }
            let mut got = std::collections::BTreeMap::<i32, f64>::new();
            let (mut at, mut k) = (0i32, 0usize);
            for (si, s) in spans.iter().enumerate() {
                at += s.offset;
                if si > 0 {
                    proptest::prop_assert!(s.offset > 2, "gaps of two or fewer are filled: {:?}", spans);
                }
                for _ in 0..s.length {
                    proptest::prop_assert!(got.insert(at, buckets[k]).is_none());
                    at += 1;
                    k += 1;
                }
            }
            want.retain(|_, c| *c != 0.0);
            got.retain(|_, c| *c != 0.0);
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        if let Ok(r) = decode_proto(&b) {
            let _ = translate(&r, &Settings::default());
        }
        if let Ok(r) = decode_json(&b) {
            let _ = translate(&r, &Settings::default());
        }
    }
}

/// A metric of `data` under one resource with a `service.name`.
fn one_metric(name: &str, unit: &str, data: Data) -> ExportMetrics {
    ExportMetrics {
        resources: vec![ResourceMetrics {
            attributes: vec![("service.name".into(), "svc".into())],
            scopes: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    unit: unit.into(),
                    data,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }],
    }
}

fn with_zeros() -> Settings {
    Settings {
        created_timestamp_zero_ingestion: true,
        ..Settings::default()
    }
}

/// The zero of each float series by `__name__` (and `le`), sorted.
fn zeros_by_name(out: &Translated) -> Vec<(String, Option<i64>)> {
    assert_eq!(out.series_zeros.len(), out.series.len());
    let mut v: Vec<(String, Option<i64>)> = out
        .series
        .iter()
        .zip(&out.series_zeros)
        .map(|(s, z)| {
            let name = s.labels.get("__name__").unwrap_or("").to_string();
            let name = match s.labels.get("le") {
                Some(le) => format!("{name}{{le={le}}}"),
                None => name,
            };
            (name, z.map(|z| z.t))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn start_times_become_zeros_for_counters_only_when_asked() {
    let point = |start_ns: u64, time_ns: u64, value: f64| NumberPoint {
        start_ns,
        time_ns,
        value,
        ..Default::default()
    };
    let sum = |monotonic| Data::Sum {
        points: vec![point(1_000_000_000, 5_000_000_000, 3.0)],
        temporality: TEMPORALITY_CUMULATIVE,
        monotonic,
    };
    let out = translate(&one_metric("requests", "", sum(true)), &with_zeros());
    assert_eq!(
        zeros_by_name(&out),
        [("requests_total".into(), Some(1_000))]
    );
    assert_eq!(out.series_zeros[0], Some(Sample::new(1_000, 0.0)));
    // Off by default.
    let out = translate(&one_metric("requests", "", sum(true)), &Settings::default());
    assert!(out.series_zeros.is_empty() && out.histogram_zeros.is_empty());
    // Gauges and non-monotonic sums are not counters.
    let out = translate(&one_metric("in_flight", "", sum(false)), &with_zeros());
    assert_eq!(zeros_by_name(&out), [("in_flight".into(), None)]);
    let gauge = Data::Gauge(vec![point(1_000_000_000, 5_000_000_000, 3.0)]);
    let out = translate(&one_metric("temp", "", gauge), &with_zeros());
    assert_eq!(zeros_by_name(&out), [("temp".into(), None)]);
    // A start at the point's own time (OTLP's "unknown start"), or none, gives no zero;
    // of two points, the earliest one's start counts.
    let two = Data::Sum {
        points: vec![
            point(9_000_000_000, 9_000_000_000, 1.0),
            point(0, 7_000_000_000, 1.0),
        ],
        temporality: TEMPORALITY_CUMULATIVE,
        monotonic: true,
    };
    let out = translate(&one_metric("r", "", two), &with_zeros());
    assert_eq!(zeros_by_name(&out), [("r_total".into(), None)]);
}

#[test]
fn histograms_and_summaries_get_zeros_on_their_counter_series() {
    let hist = Data::Histogram {
        points: vec![HistogramPoint {
            start_ns: 2_000_000_000,
            time_ns: 6_000_000_000,
            count: 3,
            sum: Some(1.5),
            bucket_counts: vec![1, 2],
            bounds: vec![0.5],
            ..Default::default()
        }],
        temporality: TEMPORALITY_CUMULATIVE,
    };
    let out = translate(&one_metric("latency", "s", hist), &with_zeros());
    assert_eq!(
        zeros_by_name(&out),
        [
            ("latency_seconds_bucket{le=+Inf}".into(), Some(2_000)),
            ("latency_seconds_bucket{le=0.5}".into(), Some(2_000)),
            ("latency_seconds_count".into(), Some(2_000)),
            ("latency_seconds_sum".into(), Some(2_000)),
        ]
    );
    let summary = Data::Summary(vec![SummaryPoint {
        start_ns: 2_000_000_000,
        time_ns: 6_000_000_000,
        count: 3,
        sum: 1.5,
        quantiles: vec![(0.5, 0.4)],
        ..Default::default()
    }]);
    let out = translate(&one_metric("rpc", "s", summary), &with_zeros());
    assert_eq!(
        zeros_by_name(&out),
        [
            ("rpc_seconds".into(), None),
            ("rpc_seconds_count".into(), Some(2_000)),
            ("rpc_seconds_sum".into(), Some(2_000)),
        ]
    );
    let exp = Data::ExponentialHistogram {
        points: vec![ExponentialHistogramPoint {
            start_ns: 2_000_000_000,
            time_ns: 6_000_000_000,
            count: 2,
            sum: Some(3.0),
            scale: 1,
            positive: ExponentialBuckets {
                offset: 0,
                bucket_counts: vec![2],
            },
            ..Default::default()
        }],
        temporality: TEMPORALITY_CUMULATIVE,
    };
    let out = translate(&one_metric("size", "By", exp), &with_zeros());
    assert_eq!(out.histogram_zeros.len(), 1, "{:?}", out.histogram_zeros);
    let z = &out.histogram_zeros[0];
    assert_eq!(z.labels, out.histograms[0].labels);
    assert_eq!(z.samples[0].t, 2_000);
    assert_eq!(
        *z.samples[0].h,
        FloatHistogram {
            counter_reset_hint: CounterResetHint::CounterReset,
            schema: 1,
            zero_threshold: 1e-128,
            ..FloatHistogram::default()
        }
    );
}

#[test]
fn forwarding_keeps_start_times_as_created_timestamps_without_zeros() {
    let point = |start_ns: u64, time_ns: u64, value: f64| NumberPoint {
        start_ns,
        time_ns,
        value,
        ..Default::default()
    };
    let forward = Settings {
        forward_created_timestamps: true,
        ..Settings::default()
    };
    let counter = Data::Sum {
        points: vec![point(1_000_000_000, 5_000_000_000, 3.0)],
        temporality: TEMPORALITY_CUMULATIVE,
        monotonic: true,
    };
    let out = translate(&one_metric("requests", "", counter), &forward);
    assert!(out.series_zeros.is_empty() && out.histogram_zeros.is_empty());
    assert_eq!(out.series_created.len(), out.series.len());
    let created = |name: &str| {
        let i = out
            .series
            .iter()
            .position(|s| s.labels.metric_name() == Some(name))
            .unwrap();
        out.series_created[i]
    };
    assert_eq!(created("requests_total"), 1_000);
    // A gauge has no created timestamp.
    let gauge = Data::Gauge(vec![point(1_000_000_000, 5_000_000_000, 3.0)]);
    let out = translate(&one_metric("temp", "", gauge), &forward);
    assert!(out.series_created.iter().all(|t| *t == 0));
    // Not asked for: none.
    let counter = Data::Sum {
        points: vec![point(1_000_000_000, 5_000_000_000, 3.0)],
        temporality: TEMPORALITY_CUMULATIVE,
        monotonic: true,
    };
    let out = translate(&one_metric("requests", "", counter), &Settings::default());
    assert!(out.series_created.is_empty() && out.histograms_created.is_empty());
}
