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

const OM_CREATED: &str = concat!(
    "# TYPE req counter\n",
    "req_total{a=\"1\"} 3\n",
    "req_created{a=\"1\"} 1600000000.1234\n",
    "req_total{a=\"2\"} 4\n",
    "req_created{a=\"2\"} 1600000001\n",
    "# TYPE lat histogram\n",
    "lat_bucket{le=\"0.5\"} 1\n",
    "lat_bucket{le=\"+Inf\"} 2\n",
    "lat_count 2\n",
    "lat_sum 9.25\n",
    "lat_created 1600000002\n",
    "# TYPE rpc summary\n",
    "rpc{quantile=\"0.5\"} 0.2\n",
    "rpc_sum 0.6\n",
    "rpc_count 3\n",
    "rpc_created 1600000003\n",
    "# TYPE temp gauge\n",
    "temp 21\n",
    "temp_created 1600000004\n",
    "# TYPE late counter\n",
    "late_created 1600000005\n",
    "late_total 1\n",
    "# TYPE other counter\n",
    "other_total 1\n",
    "# EOF\n"
);

fn om_with_created(body: &str) -> ParsedScrape {
    let opts = ParseOptions {
        created_timestamps: true,
        ..ParseOptions::default()
    };
    parse_with(body.as_bytes(), Format::OpenMetrics, opts).unwrap()
}

#[test]
fn openmetrics_created_lines_become_created_timestamps_only_when_asked() {
    let p = om_with_created(OM_CREATED);
    let got: Vec<(String, Option<i64>)> = p
        .samples
        .iter()
        .map(|s| (s.labels.to_string(), s.created_ms))
        .collect();
    let want: Vec<(String, Option<i64>)> = [
        // Seconds to ms, truncated as Prometheus does.
        (r#"req_total{a="1"}"#, Some(1_600_000_000_123)),
        (r#"req_total{a="2"}"#, Some(1_600_000_001_000)),
        // Every series of a histogram or summary, `le` and `quantile` aside.
        (r#"lat_bucket{le="0.5"}"#, Some(1_600_000_002_000)),
        (r#"lat_bucket{le="+Inf"}"#, Some(1_600_000_002_000)),
        (r#"lat_count{}"#, Some(1_600_000_002_000)),
        (r#"lat_sum{}"#, Some(1_600_000_002_000)),
        (r#"rpc{quantile="0.5"}"#, Some(1_600_000_003_000)),
        (r#"rpc_sum{}"#, Some(1_600_000_003_000)),
        (r#"rpc_count{}"#, Some(1_600_000_003_000)),
        // A gauge has no created timestamp: its `_created` line stays a series.
        (r#"temp{}"#, None),
        (r#"temp_created{}"#, None),
        // Only a `_created` line after the sample counts, as Prometheus looks ahead.
        (r#"late_total{}"#, None),
        (r#"other_total{}"#, None),
    ]
    .into_iter()
    .map(|(l, ct)| (l.to_string(), ct))
    .collect();
    assert_eq!(got, want);

    // Without the option: every line a series, as before, and no created timestamps.
    let p = parse(OM_CREATED.as_bytes(), Format::OpenMetrics).unwrap();
    assert_eq!(p.samples.len(), 18);
    assert!(p.samples.iter().all(|s| s.created_ms.is_none()));
    let req_created = &p.samples[1];
    assert_eq!(req_created.labels.metric_name(), Some("req_created"));
    assert_eq!(req_created.value, 1_600_000_000.123_4);
}

#[test]
fn openmetrics_created_lines_match_their_own_labels_and_family() {
    let p = om_with_created(concat!(
        "# TYPE a counter\n",
        "a_total{x=\"1\"} 1\n",
        "a_created{x=\"2\"} 100\n",
        "# TYPE b counter\n",
        // Another family's `_created`, and one that is no number of seconds.
        "b_total 2\n",
        "a_created 100\n",
        "b_created NaN\n",
        "# EOF\n"
    ));
    let got: Vec<(String, Option<i64>)> = p
        .samples
        .iter()
        .map(|s| (s.labels.to_string(), s.created_ms))
        .collect();
    assert_eq!(
        got,
        [
            (r#"a_total{x="1"}"#.to_string(), None),
            ("b_total{}".to_string(), None),
        ]
    );
    // Text 0.0.4 has no `_created` convention: the option changes nothing there.
    let opts = ParseOptions {
        created_timestamps: true,
        ..ParseOptions::default()
    };
    let body = "# TYPE c counter\nc_total 1\nc_created 100\n";
    let p = parse_with(body.as_bytes(), Format::PrometheusText, opts).unwrap();
    assert_eq!(p, parse(body.as_bytes(), Format::PrometheusText).unwrap());
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
            let created = ParseOptions { created_timestamps: true, ..ParseOptions::default() };
            let _ = parse_with(&body, Format::OpenMetrics, created);
            let _ = parse_with(&body, Format::Protobuf, created);
        }

        /// OpenMetrics lines of counter, histogram, summary and gauge families in any order,
        /// with `_created` read as created timestamps: never a panic, and the samples are
        /// those of the parse without the option, less the `_created` lines of counters,
        /// histograms and summaries.
        #[test]
        fn created_lines_only_remove_created_series(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("# TYPE c counter"),
                    Just("# TYPE h histogram"),
                    Just("# TYPE s summary"),
                    Just("# TYPE g gauge"),
                    Just("c_total{a=\"1\"} 1"),
                    Just("c_created{a=\"1\"} 100"),
                    Just("c_created{a=\"2\"} NaN"),
                    Just("h_bucket{le=\"1\"} 1"),
                    Just("h_count 1"),
                    Just("h_created 5"),
                    Just("s{quantile=\"0.5\"} 1"),
                    Just("s_created -3"),
                    Just("g 1"),
                    Just("g_created 1"),
                ],
                0..24,
            ),
        ) {
            let mut body = lines.join("\n");
            body.push_str("\n# EOF\n");
            let Ok(plain) = parse(body.as_bytes(), Format::OpenMetrics) else {
                return Ok(());
            };
            let created = ParseOptions { created_timestamps: true, ..ParseOptions::default() };
            let with = parse_with(body.as_bytes(), Format::OpenMetrics, created).unwrap();
            let mut kept = with.samples.iter();
            let mut plain_samples = plain.samples.iter();
            // Kept unless a `_created` line under a counter, histogram or summary TYPE line.
            let mut typed = false;
            for line in &lines {
                if let Some(kind) = line.strip_prefix("# TYPE ") {
                    typed = !kind.ends_with("gauge");
                    continue;
                }
                let s = plain_samples.next().expect("a sample per line");
                let name = s.labels.metric_name().unwrap_or("");
                if typed && name.ends_with("_created") {
                    continue;
                }
                let w = kept.next().expect("a kept sample");
                prop_assert!(w.created_ms.is_none_or(|t| t > 0));
                prop_assert_eq!(&w.labels, &s.labels);
                prop_assert_eq!(w.value.to_bits(), s.value.to_bits());
            }
            prop_assert!(kept.next().is_none());
        }

        #[test]
        fn rendered_samples_round_trip(
            name in "[a-z_][a-z0-9_]{0,12}",
            lv in "[ -~\n]{0,16}",
            v in any::<f64>().prop_filter("not NaN", |v| !v.is_nan()),
            ts in proptest::option::of(any::<i64>()),
        ) {
            let labels = Labels::from_pairs([("__name__", name.as_str()), ("l", lv.as_str())]);
            let s = ScrapedSample { labels, timestamp_ms: ts, value: v, exemplar: None, created_ms: None };
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

#[test]
fn keep_created_series_gives_created_timestamps_and_keeps_the_created_lines() {
    let body = "# TYPE c counter\nc_total{x=\"1\"} 7\nc_created{x=\"1\"} 100.5\n# EOF\n";
    let opts = ParseOptions {
        created_timestamps: true,
        keep_created_series: true,
        ..ParseOptions::default()
    };
    let p = parse_with(body.as_bytes(), Format::OpenMetrics, opts).unwrap();
    let got: Vec<(String, Option<i64>)> = p
        .samples
        .iter()
        .map(|s| (s.labels.metric_name().unwrap().to_string(), s.created_ms))
        .collect();
    assert_eq!(
        got,
        [
            ("c_total".to_string(), Some(100_500)),
            ("c_created".to_string(), None),
        ]
    );
}
