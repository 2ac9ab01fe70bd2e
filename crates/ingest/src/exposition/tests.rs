use super::*;

fn text(s: &str) -> Result<ParsedScrape, ParseError> {
    parse(s.as_bytes(), Format::PrometheusText)
}

#[test]
fn parses_istio_sidecar_output() {
    let body = include_str!("../../testdata/istio-sidecar.prom");
    let p = text(body).unwrap();
    assert_eq!(p.samples.len(), 10);
    let first = &p.samples[0];
    assert_eq!(first.labels.metric_name(), Some("istio_requests_total"));
    assert_eq!(first.labels.get("response_flags"), Some("-"));
    assert_eq!(first.value, 1834.0);
    let inf = p
        .samples
        .iter()
        .find(|s| s.labels.get("le") == Some("+Inf"))
        .unwrap();
    assert_eq!(inf.value, 1841.0);
    let hist = p
        .metadata
        .iter()
        .find(|m| m.metric_family == "istio_request_duration_milliseconds")
        .unwrap();
    assert_eq!(hist.kind, "histogram");
    assert_eq!(p.samples[9].value, 9.2102e6);
}

#[test]
fn parses_node_exporter_output() {
    let p = text(include_str!("../../testdata/node-exporter.prom")).unwrap();
    assert_eq!(p.samples.len(), 9);
    assert!(p.samples[5].value.is_nan());
    assert_eq!(p.samples[8].timestamp_ms, Some(1_700_000_000_000));
    let help = p
        .metadata
        .iter()
        .find(|m| m.metric_family == "node_load1")
        .unwrap();
    assert_eq!(help.help, "1m load average.");
}

#[test]
fn escapes_and_special_values() {
    let p = text("a{x=\"q\\\"\\\\\\n\",y=\"\"} +Inf\nb -Inf\nc nan\nd{} 1e3 -5\n").unwrap();
    assert_eq!(p.samples[0].labels.get("x"), Some("q\"\\\n"));
    assert_eq!(p.samples[0].labels.get("y"), None);
    assert_eq!(p.samples[0].value, f64::INFINITY);
    assert_eq!(p.samples[1].value, f64::NEG_INFINITY);
    assert!(p.samples[2].value.is_nan());
    assert_eq!(p.samples[3].timestamp_ms, Some(-5));
}

#[test]
fn errors_name_the_line() {
    let e = text("ok 1\nbad{x=\"1\" 2\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.to_string().starts_with("line 2: "), "{e}");
    let e = text("a 1\nb notanumber\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("invalid value"));
    let e = text("a{x=\"1\",x=\"2\"} 1\n").unwrap_err();
    assert!(e.reason.contains("duplicate label"));
    let e = text("1abc 1\n").unwrap_err();
    assert!(e.reason.contains("metric name"));
    let e = text("# TYPE a bogus\n").unwrap_err();
    assert!(e.reason.contains("metric type"));
}

#[test]
fn openmetrics_needs_eof_and_uses_seconds() {
    let om = "# TYPE req counter\n# UNIT req requests\nreq_total{a=\"b\"} 3 1700000000.5 # {trace_id=\"x\"} 1 1700000000.1\nreq_created 1.6e9\n# EOF\n";
    let p = parse(om.as_bytes(), Format::OpenMetrics).unwrap();
    assert_eq!(p.samples.len(), 2);
    assert_eq!(p.samples[0].timestamp_ms, Some(1_700_000_000_500));
    assert_eq!(p.metadata[0].unit, "requests");
    let e = parse(b"a 1\n", Format::OpenMetrics).unwrap_err();
    assert!(e.reason.contains("EOF"));
    let e = parse(b"a 1\n# EOF\nb 2\n", Format::OpenMetrics).unwrap_err();
    assert_eq!(e.line, 3);
}

#[test]
fn openmetrics_exemplars_are_kept() {
    let om = concat!(
        "# TYPE req counter\n",
        "req_total{a=\"b\"} 3 # {trace_id=\"4bf9\",span_id=\"00f0\"} 0.67 1600000000.123\n",
        "# TYPE lat histogram\n",
        "lat_bucket{le=\"0.5\"} 1 # {trace_id=\"x\"} 0.25\n",
        "lat_bucket{le=\"+Inf\"} 2 # {} 9\n",
        "lat_count 2\n",
        "lat_sum 9.25\n",
        "# EOF\n"
    );
    let p = parse(om.as_bytes(), Format::OpenMetrics).unwrap();
    let ex = p.samples[0].exemplar.as_ref().unwrap();
    assert_eq!(
        ex.labels,
        Labels::from_pairs([("trace_id", "4bf9"), ("span_id", "00f0")])
    );
    assert_eq!((ex.value, ex.timestamp_ms), (0.67, Some(1_600_000_000_123)));
    let ex = p.samples[1].exemplar.as_ref().unwrap();
    assert_eq!((ex.value, ex.timestamp_ms), (0.25, None));
    assert!(p.samples[2].exemplar.as_ref().unwrap().labels.is_empty());
    assert!(p.samples[3].exemplar.is_none());
}

#[test]
fn bad_exemplars_name_what_is_wrong() {
    for (line, want) in [
        ("a_total 1 # trace 1\n", "label set"),
        ("a_total 1 # {t=\"x\"} one\n", "exemplar value"),
        ("a_total 1 # {t=\"x\"} 1 Inf\n", "exemplar timestamp"),
        (
            "a_total 1 # {t=\"x\",t=\"y\"} 1\n",
            "duplicate exemplar label",
        ),
        ("a_total 1 # {t=\"x} 1\n", "exemplar"),
    ] {
        let body = format!("{line}# EOF\n");
        let e = parse(body.as_bytes(), Format::OpenMetrics).unwrap_err();
        assert!(e.reason.contains(want), "{line:?}: {}", e.reason);
        assert_eq!(e.line, 1);
    }
}

#[test]
fn content_negotiation() {
    assert_eq!(
        format_from_content_type(Some(
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        )),
        Format::OpenMetrics
    );
    assert_eq!(
        format_from_content_type(Some("text/plain; version=0.0.4")),
        Format::PrometheusText
    );
    assert_eq!(format_from_content_type(None), Format::PrometheusText);
}

#[test]
fn render_then_parse_round_trips() {
    let p = text(include_str!("../../testdata/istio-sidecar.prom")).unwrap();
    let again = text(&render_text(&p.samples)).unwrap();
    assert_eq!(p.samples, again.samples);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&body, Format::PrometheusText);
            let _ = parse(&body, Format::OpenMetrics);
        }

        #[test]
        fn rendered_samples_round_trip(
            name in "[a-z_][a-z0-9_]{0,12}",
            lv in "[ -~\n]{0,16}",
            v in any::<f64>().prop_filter("not NaN", |v| !v.is_nan()),
            ts in proptest::option::of(any::<i64>()),
        ) {
            let labels = Labels::from_pairs([("__name__", name.as_str()), ("l", lv.as_str())]);
            let s = ScrapedSample { labels, timestamp_ms: ts, value: v, exemplar: None };
            let p = text(&render_text(std::slice::from_ref(&s))).unwrap();
            prop_assert_eq!(&p.samples[0], &s);
        }

        #[test]
        fn exemplars_parse_back(
            lv in "[ -~\n]{0,24}",
            v in any::<f64>().prop_filter("finite", |v| v.is_finite()),
            ts in proptest::option::of(0i64..4_000_000_000_000),
        ) {
            let mut line = String::from("x_total 1 # {trace_id=\"");
            meshlens_model::push_escaped_label_value(&mut line, &lv);
            line.push_str("\"} ");
            line.push_str(&format_value(v));
            if let Some(t) = ts {
                line.push_str(&format!(" {}.{:03}", t / 1000, t % 1000));
            }
            line.push_str("\n# EOF\n");
            let p = parse(line.as_bytes(), Format::OpenMetrics).unwrap();
            let e = p.samples[0].exemplar.clone().unwrap();
            prop_assert_eq!(e.labels, Labels::from_pairs([("trace_id", lv.as_str())]));
            prop_assert_eq!(e.value.to_bits(), v.to_bits());
            prop_assert_eq!(e.timestamp_ms, ts);
        }
    }
}
