//! Clover-style statistics against hand-computed figures.

mod common;

use std::collections::BTreeMap;

use meshlens_analysis::{compute_stats, StatsQuery};
use meshlens_model::{Endpoint, Span, SpanKind, SpanWriter, TraceId};

fn span(
    trace: u64,
    id: u64,
    service: &str,
    kind: SpanKind,
    ts_us: u64,
    dur_us: u64,
    tags: &[(&str, &str)],
) -> Span {
    Span {
        trace_id: TraceId {
            high: 0,
            low: trace,
            is_128: false,
        },
        id,
        parent_id: None,
        name: Some(format!("{service}-op")),
        kind: Some(kind),
        timestamp: Some(ts_us),
        duration: Some(dur_us),
        local_endpoint: Some(Endpoint {
            service_name: Some(service.into()),
            ..Default::default()
        }),
        remote_endpoint: None,
        annotations: Vec::new(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        debug: false,
        shared: false,
    }
}

/// frontend: 4 requests (one in cluster west); backend: 100 requests of 1..=100 ms, each
/// with the frontend's CLIENT span in the same trace (not counted as a request); one span
/// outside the window.
fn data(end_ms: i64) -> Vec<Span> {
    let t = |k: u64| (end_ms as u64 - 200_000) * 1000 + k * 1000;
    let mut v = vec![
        span(
            1,
            1,
            "frontend",
            SpanKind::Server,
            t(1),
            10_000,
            &[
                ("http.url", "http://frontend:8080/cart?x=1"),
                ("http.status_code", "200"),
                ("user_agent", "curl/8"),
            ],
        ),
        span(
            2,
            2,
            "frontend",
            SpanKind::Server,
            t(2),
            20_000,
            &[
                ("http.url", "http://frontend:8080/cart"),
                ("http.status_code", "200"),
                ("user_agent", "curl/8"),
            ],
        ),
        span(
            3,
            3,
            "frontend",
            SpanKind::Server,
            t(3),
            30_000,
            &[
                ("http.target", "/product/1?q=2"),
                ("http.status_code", "500"),
                ("http.user_agent", "Mozilla"),
            ],
        ),
        span(
            4,
            4,
            "frontend",
            SpanKind::Server,
            t(4),
            40_000,
            &[
                ("http.url", "https://frontend/cart#top"),
                ("http.status_code", "404"),
                ("user_agent", "Mozilla"),
                ("istio.cluster_id", "west"),
            ],
        ),
        // Outside the window.
        span(
            5,
            5,
            "frontend",
            SpanKind::Server,
            (end_ms as u64 - 400_000) * 1000,
            1,
            &[("http.url", "/old")],
        ),
    ];
    for i in 1..=100u64 {
        let tags = [
            ("http.url", "http://backend:9000/api?id=7"),
            ("http.status_code", "200"),
            ("user_agent", "grpc-go"),
        ];
        v.push(span(
            100 + i,
            1000 + i,
            "frontend",
            SpanKind::Client,
            t(10 + i),
            i * 1000 + 500,
            &tags,
        ));
        let mut s = span(
            100 + i,
            2000 + i,
            "backend",
            SpanKind::Server,
            t(10 + i),
            i * 1000,
            &tags,
        );
        s.parent_id = Some(1000 + i);
        v.push(s);
    }
    v
}

fn setup() -> (
    tempfile::TempDir,
    std::sync::Arc<meshlens_spanstore::SpanStore>,
    i64,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::spanstore(dir.path());
    let end = common::end_ms();
    store.write(&data(end)).unwrap();
    (dir, store, end)
}

fn q(end: i64) -> StatsQuery {
    StatsQuery {
        window_ms: 300_000,
        end_ms: end,
        cluster: None,
        service: None,
    }
}

fn pairs(v: &[meshlens_analysis::stats::Count]) -> Vec<(&str, u64)> {
    v.iter().map(|c| (c.key.as_str(), c.count)).collect()
}

#[test]
fn counts_match_hand_computed_figures() {
    let (_d, store, end) = setup();
    let s = compute_stats(&*store, &q(end)).unwrap();
    assert_eq!(
        (s.totals.traces, s.totals.spans, s.totals.requests),
        (104, 204, 104)
    );
    assert_eq!(pairs(&s.per_service), [("backend", 100), ("frontend", 4)]);
    assert_eq!(
        pairs(&s.per_url),
        [("/api", 100), ("/cart", 3), ("/product/1", 1)]
    );
    assert_eq!(pairs(&s.per_status), [("200", 102), ("404", 1), ("500", 1)]);
    assert_eq!(pairs(&s.per_cluster), [("unknown", 103), ("west", 1)]);
    let su: Vec<(&str, &str, u64)> = s
        .per_service_url
        .iter()
        .map(|p| (p.key.as_str(), p.sub.as_str(), p.count))
        .collect();
    assert_eq!(
        su,
        [
            ("backend", "/api", 100),
            ("frontend", "/cart", 3),
            ("frontend", "/product/1", 1)
        ]
    );
    let us: Vec<(&str, &str, u64)> = s
        .per_url_status
        .iter()
        .map(|p| (p.key.as_str(), p.sub.as_str(), p.count))
        .collect();
    assert_eq!(
        us,
        [
            ("/api", "200", 100),
            ("/cart", "200", 2),
            ("/cart", "404", 1),
            ("/product/1", "500", 1)
        ]
    );
    let ua: Vec<(&str, u64)> = s
        .user_agents
        .iter()
        .map(|u| (u.key.as_str(), u.count))
        .collect();
    assert_eq!(ua, [("grpc-go", 100), ("Mozilla", 2), ("curl/8", 2)]);
    assert!((s.user_agents[0].share - 100.0 / 104.0).abs() < 1e-12);

    let rt = &s.response_times[0];
    assert_eq!(rt.service, "backend");
    assert_eq!(
        (rt.count, rt.min_ms, rt.max_ms, rt.avg_ms),
        (100, 1.0, 100.0, 50.5)
    );
    assert_eq!((rt.p50_ms, rt.p90_ms, rt.p99_ms), (50.0, 90.0, 99.0));
    let rt = &s.response_times[1];
    assert_eq!(
        (rt.count, rt.min_ms, rt.avg_ms, rt.max_ms),
        (4, 10.0, 25.0, 40.0)
    );
    assert_eq!((rt.p50_ms, rt.p90_ms, rt.p99_ms), (20.0, 40.0, 40.0));

    assert_eq!(s.distinct.urls, ["/api", "/cart", "/product/1"]);
    assert_eq!(s.distinct.user_agents, ["Mozilla", "curl/8", "grpc-go"]);
    assert_eq!(s.distinct.status_codes, ["200", "404", "500"]);
    assert_eq!(s.distinct.operations, ["backend-op", "frontend-op"]);
}

#[test]
fn cluster_and_service_filters() {
    let (_d, store, end) = setup();
    let mut query = q(end);
    query.cluster = Some("west".into());
    let s = compute_stats(&*store, &query).unwrap();
    assert_eq!(
        (s.totals.traces, s.totals.spans, s.totals.requests),
        (1, 1, 1)
    );
    assert_eq!(pairs(&s.per_url), [("/cart", 1)]);

    let mut query = q(end);
    query.service = Some("frontend".into());
    let s = compute_stats(&*store, &query).unwrap();
    // 4 server spans and the 100 client spans; only the server spans are requests.
    assert_eq!(
        (s.totals.traces, s.totals.spans, s.totals.requests),
        (104, 104, 4)
    );
}

#[test]
fn empty_window() {
    let (_d, store, end) = setup();
    let mut query = q(end - 3_600_000);
    query.window_ms = 60_000;
    let s = compute_stats(&*store, &query).unwrap();
    assert_eq!(s.totals.spans, 0);
    assert!(s.per_url.is_empty() && s.response_times.is_empty());
}
