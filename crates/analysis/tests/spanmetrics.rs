//! Span metrics and service-graph metrics: observe, flush, read back through storage and
//! PromQL.

mod common;

use std::collections::BTreeMap;

use meshlens_analysis::SpanMetrics;
use meshlens_model::{Endpoint, LabelMatcher, MetricReader, Span, SpanKind, TraceId};
use meshlens_promql::{Engine, EngineOptions, Value};

fn span(
    id: u64,
    parent: Option<u64>,
    service: &str,
    kind: SpanKind,
    dur_us: u64,
    error: bool,
) -> Span {
    let mut tags = BTreeMap::new();
    if error {
        tags.insert("error".to_string(), "true".to_string());
    }
    Span {
        trace_id: TraceId {
            high: 0,
            low: 42,
            is_128: false,
        },
        id,
        parent_id: parent,
        name: Some("GET /api".into()),
        kind: Some(kind),
        timestamp: Some(1),
        duration: Some(dur_us),
        local_endpoint: Some(Endpoint {
            service_name: Some(service.into()),
            ..Default::default()
        }),
        remote_endpoint: None,
        annotations: Vec::new(),
        tags,
        debug: false,
        shared: false,
    }
}

fn value(r: &dyn MetricReader, name: &str, labels: &[(&str, &str)], t: i64) -> Option<f64> {
    let mut m = vec![LabelMatcher::equal("__name__", name)];
    m.extend(labels.iter().map(|(k, v)| LabelMatcher::equal(*k, *v)));
    let s = r.select(&m, t, t).unwrap();
    assert!(s.len() <= 1, "{s:?}");
    s.first().map(|s| s.samples[0].v)
}

fn instant(e: &Engine, r: &dyn MetricReader, q: &str, t: i64) -> f64 {
    match e.instant_query(r, q, t).unwrap().value {
        Value::Vector(v) if v.len() == 1 => v[0].v,
        other => panic!("{q}: {other:?}"),
    }
}

#[test]
fn pairs_across_batches_and_writes_tempo_series() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::tsdb(dir.path());
    let sm = SpanMetrics::new(db.clone());
    // Call 1: client in one batch, server in the next. Call 2: server errors (50 ms).
    sm.observe(&[span(1, None, "frontend", SpanKind::Client, 12_000, false)]);
    sm.observe(&[span(2, Some(1), "backend", SpanKind::Server, 10_000, false)]);
    sm.observe(&[
        span(3, None, "frontend", SpanKind::Client, 60_000, true),
        span(4, Some(3), "backend", SpanKind::Server, 50_000, true),
    ]);
    assert_eq!(sm.pending(), 0);
    let t1 = common::end_ms();
    assert!(sm.flush(t1).unwrap() > 0);

    let l = [
        ("service", "backend"),
        ("span_name", "GET /api"),
        ("span_kind", "SPAN_KIND_SERVER"),
    ];
    let ok = [l.as_slice(), &[("status_code", "STATUS_CODE_UNSET")]].concat();
    let err = [l.as_slice(), &[("status_code", "STATUS_CODE_ERROR")]].concat();
    assert_eq!(
        value(&*db, "traces_spanmetrics_calls_total", &ok, t1),
        Some(1.0)
    );
    assert_eq!(
        value(&*db, "traces_spanmetrics_calls_total", &err, t1),
        Some(1.0)
    );
    // 10 ms falls in le=0.016; 50 ms in le=0.064.
    let b = |le: &str, lab: &[(&str, &str)]| {
        let mut x = lab.to_vec();
        x.push(("le", le));
        value(&*db, "traces_spanmetrics_latency_bucket", &x, t1)
    };
    assert_eq!(b("0.008", &ok), Some(0.0));
    assert_eq!(b("0.016", &ok), Some(1.0));
    assert_eq!(b("+Inf", &ok), Some(1.0));
    assert_eq!(b("0.032", &err), Some(0.0));
    assert_eq!(b("0.064", &err), Some(1.0));
    assert_eq!(
        value(&*db, "traces_spanmetrics_latency_sum", &ok, t1),
        Some(0.01)
    );
    assert_eq!(
        value(&*db, "traces_spanmetrics_latency_count", &err, t1),
        Some(1.0)
    );

    let e = [("client", "frontend"), ("server", "backend")];
    assert_eq!(
        value(&*db, "traces_service_graph_request_total", &e, t1),
        Some(2.0)
    );
    assert_eq!(
        value(&*db, "traces_service_graph_request_failed_total", &e, t1),
        Some(1.0)
    );
    assert_eq!(
        value(
            &*db,
            "traces_service_graph_request_client_seconds_count",
            &e,
            t1
        ),
        Some(2.0)
    );
    let sum = value(
        &*db,
        "traces_service_graph_request_server_seconds_sum",
        &e,
        t1,
    )
    .unwrap();
    assert!((sum - 0.06).abs() < 1e-12);

    // Counters stay cumulative; the zero written before the first value lets increase()
    // see the first calls.
    sm.observe(&[
        span(5, None, "frontend", SpanKind::Client, 1_000, false),
        span(6, Some(5), "backend", SpanKind::Server, 1_000, false),
    ]);
    let t2 = t1 + 15_000;
    sm.flush(t2).unwrap();
    assert_eq!(
        value(&*db, "traces_service_graph_request_total", &e, t2),
        Some(3.0)
    );
    let engine = Engine::new(EngineOptions::default());
    let inc = instant(
        &engine,
        &*db,
        "sum(increase(traces_service_graph_request_total[1m]))",
        t2,
    );
    // Samples 0, 2, 3 at t1-15s, t1, t1+15s over a 1m window: 3 extrapolated by Prometheus'
    // rules (start limited by the zero crossing): 3 * (30 + 0) / 30.
    assert!((inc - 3.0).abs() < 1e-9, "{inc}");
    let q =
        "histogram_quantile(0.5, sum by (le) (traces_service_graph_request_server_seconds_bucket))";
    let p50 = instant(&engine, &*db, q, t2);
    // 3 server durations (1, 10, 50 ms): rank 1.5 lies in (0.008, 0.016] holding 1 of them.
    assert!((p50 - (0.008 + 0.008 * 0.5)).abs() < 1e-12, "{p50}");
}

#[test]
fn unpaired_spans_expire_into_virtual_nodes_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::tsdb(dir.path());
    let sm = SpanMetrics::new(db.clone());
    let mut c = span(1, None, "checkout", SpanKind::Client, 5_000, false);
    c.tags.insert("peer.service".into(), "stripe".into());
    let lonely_server = span(9, Some(77), "payments", SpanKind::Server, 5_000, false);
    let root_server = span(10, None, "frontend", SpanKind::Server, 5_000, false);
    sm.observe(&[c, lonely_server, root_server]);
    assert_eq!(sm.pending(), 2);
    let t = common::end_ms();
    sm.flush(t).unwrap();
    // A root server span is called by "user" at once.
    let user = [
        ("client", "user"),
        ("server", "frontend"),
        ("connection_type", "virtual_node"),
    ];
    assert_eq!(
        value(&*db, "traces_service_graph_request_total", &user, t),
        Some(1.0)
    );
    // The others wait one full flush period, then expire.
    assert_eq!(sm.pending(), 2);
    sm.flush(t + 15_000).unwrap();
    assert_eq!(sm.pending(), 0);
    let v = [
        ("client", "checkout"),
        ("server", "stripe"),
        ("connection_type", "virtual_node"),
    ];
    assert_eq!(
        value(&*db, "traces_service_graph_request_total", &v, t + 15_000),
        Some(1.0)
    );
    let u = [("server", "payments")];
    assert_eq!(
        value(
            &*db,
            "traces_service_graph_unpaired_spans_total",
            &u,
            t + 15_000
        ),
        Some(1.0)
    );
}

#[test]
fn deterministic_output() {
    let run = || {
        let dir = tempfile::tempdir().unwrap();
        let db = common::tsdb(dir.path());
        let sm = SpanMetrics::new(db.clone());
        let spans = meshlens_testdata::generate_spans_at(200, 9, 1_000_000, 60_000_000);
        for b in spans.chunks(37) {
            sm.observe(b);
        }
        let t = common::end_ms();
        sm.flush(t).unwrap();
        sm.flush(t + 15_000).unwrap();
        let all = db
            .select(
                &[
                    LabelMatcher::new(meshlens_model::MatchOp::RegexMatch, "__name__", "traces_.*")
                        .unwrap(),
                ],
                0,
                i64::MAX,
            )
            .unwrap();
        all.into_iter()
            .map(|s| {
                (
                    s.labels,
                    s.samples
                        .iter()
                        .map(|x| (x.v.to_bits(), x.t - t))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    let a = run();
    assert!(a.len() > 100);
    assert_eq!(a, run());
}
