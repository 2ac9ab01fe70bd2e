use meshlens_model::{is_stale_nan, TimeSeries};

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
      "dataPoints":[{"timeUnixNano":"1700000060000000000","count":"1"}]}}
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
    // The delta sum (2 points) and the exponential histogram (1) are refused.
    assert_eq!(out.rejected, 3);
    let msg = out.message();
    assert!(
        msg.starts_with("resourceMetrics[0].scopeMetrics[0].metrics[5] (\"jobs.done\").dataPoints[0]: delta aggregation temporality is not supported"),
        "{msg}"
    );
    assert!(msg.ends_with("(3 data points refused in all)"), "{msg}");
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
fn exponential_histograms_are_refused_with_the_reason() {
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"sizes",
      "exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"1"}]}}]}]}]}"#;
    let out = translate(&decode_json(body.as_bytes()).unwrap(), &Settings::default());
    assert_eq!(out.rejected, 1);
    assert!(
        out.message().contains("native histograms"),
        "{}",
        out.message()
    );
    assert!(
        out.series.is_empty(),
        "no target_info without a job or instance"
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

proptest::proptest! {
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
