//! End-to-end tests of the span store's read side: Zipkin search semantics, name indexes,
//! autocomplete, dependency links and scans, each from the head and from segments.

mod common;

use common::{ep, now_ms, open, span, tid};
use meshlens_model::{
    Annotation, DependencyLink, Span, SpanKind, SpanReader, SpanWriter, TraceQuery,
};
use meshlens_spanstore::{SpanStore, SpanStoreOptions};
use meshlens_testdata::generate_spans_at;

/// A fixture of traces exercising every search criterion; checked both from the head and
/// from segments.
fn query_fixture(st: &SpanStore, base: u64) {
    let s = |t, id, p, svc: &str, name: &str, kind, off: u64, dur, tags: &[(&str, &str)]| {
        span(tid(t), id, p, svc, name, kind, base + off, dur, tags)
    };
    let mut client = s(
        1,
        11,
        None,
        "Frontend",
        "GET /cart",
        Some(SpanKind::Client),
        0,
        5000,
        &[("http.method", "GET")],
    );
    client.remote_endpoint = ep("cartservice");
    let mut ann = s(
        2,
        21,
        None,
        "frontend",
        "get /home",
        Some(SpanKind::Server),
        1_000_000,
        200,
        &[("http.status_code", "500"), ("error", "true")],
    );
    ann.annotations.push(Annotation {
        timestamp: base + 1_000_010,
        value: "cache.miss".into(),
    });
    st.write(&[
        client,
        s(
            1,
            12,
            Some(11),
            "cartservice",
            "GetCart",
            Some(SpanKind::Server),
            100,
            4000,
            &[("http.method", "GET")],
        ),
        ann,
        s(
            2,
            22,
            Some(21),
            "redis",
            "get",
            Some(SpanKind::Server),
            1_000_100,
            90_000,
            &[],
        ),
        s(
            3,
            31,
            None,
            "frontend",
            "get /home",
            Some(SpanKind::Server),
            2_000_000,
            300,
            &[("http.method", "POST")],
        ),
    ])
    .unwrap();
}

fn ids(r: Vec<Vec<Span>>) -> Vec<u64> {
    r.iter().map(|t| t[0].trace_id.low).collect()
}

#[test]
fn find_traces_follows_zipkin_semantics_in_head_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let end = now_ms();
    let base = ((end - 60_000) as u64) * 1000;
    query_fixture(&st, base);
    let q = |f: &dyn Fn(&mut TraceQuery)| {
        let mut q = TraceQuery {
            end_ts: end,
            lookback: 3_600_000,
            limit: 10,
            ..Default::default()
        };
        f(&mut q);
        ids(st.find_traces(&q).unwrap())
    };
    for round in 0..2 {
        // Newest first by trace start.
        assert_eq!(q(&|_| {}), vec![3, 2, 1], "round {round}");
        assert_eq!(q(&|q| q.limit = 2), vec![3, 2]);
        // Service names are case-insensitive.
        assert_eq!(
            q(&|q| q.service_name = Some("FRONTEND".into())),
            vec![3, 2, 1]
        );
        assert_eq!(q(&|q| q.service_name = Some("cartservice".into())), vec![1]);
        assert_eq!(
            q(&|q| q.service_name = Some("nope".into())),
            Vec::<u64>::new()
        );
        // Remote service of that service's spans.
        assert_eq!(
            q(&|q| {
                q.service_name = Some("frontend".into());
                q.remote_service_name = Some("CartService".into());
            }),
            vec![1]
        );
        assert_eq!(
            q(&|q| {
                q.service_name = Some("cartservice".into());
                q.remote_service_name = Some("cartservice".into());
            }),
            Vec::<u64>::new()
        );
        // Span name, case-insensitive, must be on the service's spans.
        assert_eq!(q(&|q| q.span_name = Some("GET /HOME".into())), vec![3, 2]);
        assert_eq!(
            q(&|q| {
                q.service_name = Some("redis".into());
                q.span_name = Some("get /home".into());
            }),
            Vec::<u64>::new()
        );
        // Annotation query: tag key, tag key=value, annotation value, all required.
        assert_eq!(
            q(&|q| q.annotation_query = vec![("error".into(), None)]),
            vec![2]
        );
        assert_eq!(
            q(&|q| q.annotation_query = vec![("cache.miss".into(), None)]),
            vec![2]
        );
        assert_eq!(
            q(&|q| q.annotation_query = vec![("http.method".into(), Some("GET".into()))]),
            vec![1]
        );
        assert_eq!(
            q(&|q| q.annotation_query = vec![
                ("http.method".into(), Some("POST".into())),
                ("error".into(), None)
            ]),
            Vec::<u64>::new()
        );
        assert_eq!(
            q(&|q| {
                q.service_name = Some("redis".into());
                q.annotation_query = vec![("error".into(), None)];
            }),
            Vec::<u64>::new()
        );
        // Durations apply to one span (of the service, when given).
        assert_eq!(q(&|q| q.min_duration = Some(50_000)), vec![2]);
        assert_eq!(
            q(&|q| {
                q.service_name = Some("frontend".into());
                q.min_duration = Some(50_000);
            }),
            Vec::<u64>::new()
        );
        assert_eq!(
            q(&|q| {
                q.min_duration = Some(4_000);
                q.max_duration = Some(4_500);
            }),
            vec![1]
        );
        assert_eq!(q(&|q| q.max_duration = Some(250)), vec![2]);
        // Lookback window: only the first 1.5 s of the fixture.
        assert_eq!(
            q(&|q| {
                q.end_ts = (base / 1000) as i64 + 1_500;
                q.lookback = 2_000;
            }),
            vec![2, 1]
        );
        assert_eq!(
            q(&|q| {
                q.end_ts = (base / 1000) as i64 - 1;
                q.lookback = 60_000;
            }),
            Vec::<u64>::new()
        );
        // Whole traces come back.
        let r = st
            .find_traces(&TraceQuery {
                service_name: Some("cartservice".into()),
                end_ts: end,
                lookback: 3_600_000,
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r[0].len(), 2);
        st.flush().unwrap();
    }
}

#[test]
fn names_are_sorted_lower_case_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let base = ((now_ms() - 60_000) as u64) * 1000;
    query_fixture(&st, base);
    let check = |st: &SpanStore| {
        assert_eq!(
            st.service_names().unwrap(),
            vec!["cartservice", "frontend", "redis"]
        );
        assert_eq!(
            st.span_names("FrontEnd").unwrap(),
            vec!["get /cart", "get /home"]
        );
        assert_eq!(
            st.remote_service_names("frontend").unwrap(),
            vec!["cartservice"]
        );
        assert!(st.span_names("nope").unwrap().is_empty());
        assert_eq!(
            st.autocomplete_keys().unwrap(),
            vec!["error", "http.method", "http.status_code"]
        );
        assert_eq!(
            st.autocomplete_values("http.method").unwrap(),
            vec!["GET", "POST"]
        );
    };
    check(&st);
    st.close().unwrap();
    drop(st);
    check(&open(dir.path()));
}

#[test]
fn configured_autocomplete_keys_limit_values() {
    let dir = tempfile::tempdir().unwrap();
    let st = SpanStore::open(
        dir.path(),
        SpanStoreOptions {
            fsync: false,
            autocomplete_keys: vec!["http.method".into()],
            ..Default::default()
        },
    )
    .unwrap();
    query_fixture(&st, ((now_ms() - 1000) as u64) * 1000);
    assert_eq!(st.autocomplete_keys().unwrap(), vec!["http.method"]);
    assert_eq!(
        st.autocomplete_values("http.method").unwrap(),
        vec!["GET", "POST"]
    );
    assert!(st
        .autocomplete_values("http.status_code")
        .unwrap()
        .is_empty());
}

#[test]
fn dependencies_link_client_server_and_messaging_spans() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let end = now_ms();
    let base = ((end - 10_000) as u64) * 1000;
    let t = tid(5);
    let mut c = span(
        t,
        2,
        Some(1),
        "frontend",
        "call",
        Some(SpanKind::Client),
        base + 10,
        100,
        &[("error", "true")],
    );
    c.remote_endpoint = ep("backend");
    let mut p = span(
        t,
        4,
        Some(3),
        "backend",
        "send",
        Some(SpanKind::Producer),
        base + 30,
        5,
        &[],
    );
    p.remote_endpoint = ep("kafka");
    // A client with no server side: linked by its remote service name.
    let mut lone = span(
        tid(6),
        7,
        None,
        "frontend",
        "call",
        Some(SpanKind::Client),
        base,
        9,
        &[],
    );
    lone.remote_endpoint = ep("Stripe");
    st.write(&[
        span(
            t,
            1,
            None,
            "frontend",
            "root",
            Some(SpanKind::Server),
            base,
            1000,
            &[],
        ),
        c,
        span(
            t,
            3,
            Some(2),
            "backend",
            "serve",
            Some(SpanKind::Server),
            base + 20,
            80,
            &[],
        ),
        p,
        lone,
    ])
    .unwrap();
    let want = vec![
        DependencyLink {
            parent: "backend".into(),
            child: "kafka".into(),
            call_count: 1,
            error_count: 0,
        },
        DependencyLink {
            parent: "frontend".into(),
            child: "backend".into(),
            call_count: 1,
            error_count: 1,
        },
        DependencyLink {
            parent: "frontend".into(),
            child: "stripe".into(),
            call_count: 1,
            error_count: 0,
        },
    ];
    assert_eq!(st.dependencies(end, 60_000).unwrap(), want);
    st.flush().unwrap();
    assert_eq!(st.dependencies(end, 60_000).unwrap(), want);
    assert!(st.dependencies(end - 20_000, 1_000).unwrap().is_empty());
}

#[test]
fn scan_visits_spans_in_range_from_head_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let now = (now_ms() as u64) * 1000;
    let spans = generate_spans_at(300, 1, now - 10_000_000, now);
    st.write(&spans[..spans.len() / 2]).unwrap();
    st.flush().unwrap();
    st.write(&spans[spans.len() / 2..]).unwrap();
    let (lo, hi) = (now - 8_000_000, now - 2_000_000);
    let want = spans
        .iter()
        .filter(|s| s.timestamp.is_some_and(|t| t >= lo && t <= hi))
        .count();
    let mut n = 0;
    st.scan(lo, hi, &mut |s| {
        assert!(s.timestamp.unwrap() >= lo && s.timestamp.unwrap() <= hi);
        n += 1;
    })
    .unwrap();
    assert_eq!(n, want);
    assert!(want > 0);
}
