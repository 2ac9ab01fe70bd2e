//! The analyses over ClickHouse, where the store aggregates on its shards
//! (`SpanReader::aggregate`, and for the trace graph `SpanReader::aggregate_calls`), equal the same analyses over the embedded span store holding
//! the same spans (which scans them in meshlens): a differential on a real 2-shard
//! ClickHouse 18.16 cluster and on a current release (one server, through chDB), no fixed
//! numbers.

#[macro_use]
mod common;

use common::Backend;

use std::collections::BTreeMap;

use meshlens_analysis::{
    build_graph, compute_stats, GraphQuery, GraphSource, GraphType, StatsQuery,
};
use meshlens_model::aggregate::evaluate;
use meshlens_model::{
    Endpoint, MeasureValue, RequiredOnly, Span, SpanAggregation, SpanDimension, SpanField,
    SpanFilter, SpanGroup, SpanKind, SpanMeasure, SpanReader, SpanWriter, StorageError, TraceId,
};

/// 2025-12-04 00:00 UTC in microseconds; spans spread over the hour after it.
const BASE_US: u64 = 1_764_806_400_000_000;
const MINUTE_US: u64 = 60_000_000;
const TRACES: u64 = 300;

/// A small deterministic generator (64-bit LCG), so the data set is the same every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 16) % n
    }

    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.below(of.len() as u64) as usize]
    }
}

/// Traces of a few spans each over six services (one upper-case, one missing), with the
/// shapes the statistics tell apart: SERVER, CLIENT and PRODUCER spans, kind-less spans
/// with and without HTTP tags, the three cluster tags (and an empty one), the URL, status
/// and user-agent keys in their variants (full URLs with hosts and queries), missing
/// durations and names, repeated durations, 64- and 128-bit ids, and spans before and
/// after the hour.
fn dataset() -> Vec<Span> {
    dataset_of(TRACES)
}

fn dataset_of(traces: u64) -> Vec<Span> {
    let mut rng = Lcg(7);
    let services = ["frontend", "api", "Cart", "db", "auth"];
    let urls = [
        "/",
        "/api/items",
        "/api/items?id=3",
        "http://shop.example:8080/api/cart?x=1#f",
        "https://shop.example",
        "/login",
    ];
    let agents = ["curl/8.5", "Mozilla/5.0", "Go-http-client/1.1", ""];
    let statuses = ["200", "200", "200", "404", "500", "503"];
    let mut spans = Vec::new();
    let mut id = 0u64;
    for t in 0..traces {
        let trace_id = if t % 3 == 0 {
            TraceId {
                high: 0,
                low: 0x5000 + t * 131,
                is_128: false,
            }
        } else {
            TraceId {
                high: 0xfeed_0000_0000_0000 + t,
                low: 0x9000_0000_0000_0000 + t * 977,
                is_128: true,
            }
        };
        // Mostly inside the hour; some just before or after it.
        let start = BASE_US - 3 * MINUTE_US + rng.below(66 * MINUTE_US);
        for k in 0..(1 + rng.below(5)) {
            id += 1;
            let mut tags = BTreeMap::new();
            let mut put = |k: &str, v: &str| {
                tags.insert(k.to_string(), v.to_string());
            };
            match rng.below(6) {
                0 => put("istio.cluster_id", "west"),
                1 => {
                    put("istio.cluster_id", "");
                    put("cluster", "east");
                }
                2 => put("k8s.cluster.name", "north"),
                3 => put("cluster", ""),
                _ => {}
            }
            let url = rng.pick(&urls);
            match rng.below(7) {
                0 => put("url.full", url),
                1 => put("http.target", url),
                2 => put("http.route", "/api/items/{id}"),
                3 => {}
                4 => put("url.path", url),
                _ => put("http.url", url),
            }
            let status = rng.pick(&statuses);
            match rng.below(5) {
                0 => put("http.response.status_code", status),
                1 => {}
                _ => put("http.status_code", status),
            }
            let agent = rng.pick(&agents);
            match rng.below(5) {
                0 => put("user_agent.original", agent),
                1 => put("http.user_agent", agent),
                2 => {}
                _ => put("user_agent", agent),
            }
            let kind = match rng.below(8) {
                0 | 1 => Some(SpanKind::Client),
                2 => Some(SpanKind::Producer),
                3 => None,
                4 => {
                    // Kind-less and without HTTP tags: not a request.
                    tags.retain(|k, _| !k.starts_with("http."));
                    None
                }
                _ => Some(SpanKind::Server),
            };
            let service = match rng.below(12) {
                0 => None,
                _ => Some(rng.pick(&services).to_string()),
            };
            // Durations repeat (a coarse grid) and are sometimes missing.
            let duration = match rng.below(10) {
                0 => None,
                _ => Some(1 + rng.below(40) * 250),
            };
            spans.push(Span {
                trace_id,
                id: id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
                parent_id: (k > 0).then_some(1),
                name: (rng.below(9) != 0).then(|| format!("op-{}", rng.below(4))),
                kind,
                timestamp: Some(start + k * 1_000),
                duration,
                local_endpoint: service.map(|s| Endpoint {
                    service_name: Some(s),
                    ..Default::default()
                }),
                remote_endpoint: None,
                annotations: Vec::new(),
                tags,
                debug: false,
                shared: false,
            });
        }
    }
    spans
}

/// The embedded store holding `data` once.
fn embedded(data: &[Span]) -> (tempfile::TempDir, meshlens_spanstore::SpanStore) {
    let dir = tempfile::tempdir().unwrap();
    let opts = meshlens_spanstore::SpanStoreOptions {
        // The data lies in the past; keep it whatever today's date is.
        retention_ms: 100 * 366 * 24 * 3600 * 1000,
        fsync: false,
        ..Default::default()
    };
    let store = meshlens_spanstore::SpanStore::open(dir.path(), opts).unwrap();
    store.write(data).unwrap();
    (dir, store)
}

/// Whole window, cluster and service filters (including `unknown` and an upper-case
/// service), a narrow window, a window holding nothing.
fn queries() -> Vec<StatsQuery> {
    let end_ms = ((BASE_US + 60 * MINUTE_US) / 1000) as i64;
    let q = |window_min: i64, end_min_ago: i64, cluster: Option<&str>, service: Option<&str>| {
        StatsQuery {
            window_ms: window_min * 60_000,
            end_ms: end_ms - end_min_ago * 60_000,
            cluster: cluster.map(String::from),
            service: service.map(String::from),
        }
    };
    vec![
        q(60, 0, None, None),
        q(90, -10, None, None),
        q(60, 0, Some("west"), None),
        q(60, 0, Some("unknown"), None),
        q(60, 0, None, Some("api")),
        q(60, 0, None, Some("Cart")),
        q(60, 0, None, Some("unknown")),
        q(60, 0, Some("east"), Some("frontend")),
        q(7, 13, None, None),
        q(1, 30, None, None),
        q(10, 24 * 60, None, None),
    ]
}

/// `data` written into `database` as a retried batch leaves it (the middle third twice: each
/// span must still count once), the same spans in an embedded store, and a reader through
/// the other node, so answers are the cluster's, not one shard's.
fn stored_with_a_retry(
    b: &Backend,
    database: &str,
    data: &[Span],
) -> (
    tempfile::TempDir,
    meshlens_spanstore::SpanStore,
    meshlens_clickhouse::ClickHouseStorage,
) {
    let ch = common::open(&b.url(0, database));
    let third = data.len() / 3;
    ch.spans().write(&data[..2 * third]).unwrap();
    ch.spans().write(&data[third..]).unwrap();
    let (dir, emb) = embedded(data);
    (dir, emb, common::open(&b.url(1, database)))
}

fn stats_equal_the_embedded_store(b: &Backend) {
    let data = dataset();
    let (_dir, emb, reader) = stored_with_a_retry(b, "analysis_stats", &data);
    for q in queries() {
        let want = compute_stats(&emb, &q).unwrap();
        let started = std::time::Instant::now();
        let got = compute_stats(reader.spans(), &q).unwrap();
        let on_shards = started.elapsed();
        let started = std::time::Instant::now();
        let shipped = compute_stats(&RequiredOnly::new(reader.spans()), &q).unwrap();
        eprintln!(
            "stats {q:?}: {} spans, {} requests: {on_shards:?} aggregated on the shards, \
             {:?} shipping the spans",
            got.totals.spans,
            got.totals.requests,
            started.elapsed()
        );
        assert_eq!(got, want, "stats of {q:?}");
        // The rows a scan ships are deduplicated too (`LIMIT 1 BY` the span key).
        assert_eq!(shipped, want, "stats of {q:?} from shipped spans");
    }
    let all = compute_stats(&emb, &queries()[0]).unwrap();
    assert!(
        all.totals.requests > 200 && all.per_cluster.len() == 4 && all.response_times.len() == 6,
        "the data set exercises the statistics: {all:?}"
    );
}

/// Sorted by key, as `evaluate` gives them: the store's groups come in any order.
fn sorted(mut g: Vec<SpanGroup>) -> Vec<SpanGroup> {
    g.sort_by(|a, b| a.key.cmp(&b.key));
    g
}

fn aggregations_equal_their_reference_meaning(b: &Backend) {
    let data = dataset();
    let ch = common::open(&b.url(1, "analysis_aggregate"));
    ch.spans().write(&data).unwrap();
    ch.spans().write(&data[..50]).unwrap();
    let quantiles = vec![0.0, 0.001, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0];
    let by = |field: SpanField, absent: Option<&str>| SpanDimension {
        field,
        absent: absent.map(String::from),
    };
    let agent = by(
        SpanField::Tag {
            keys: vec!["user_agent".into(), "http.user_agent".into()],
            non_empty: false,
        },
        None,
    );
    let cases = vec![
        // Everything, ungrouped.
        (SpanFilter::All(Vec::new()), Vec::new()),
        // By service (absent kept apart) and name.
        (
            SpanFilter::All(Vec::new()),
            vec![
                by(SpanField::LocalService, None),
                by(SpanField::Name, Some("-")),
            ],
        ),
        // Kind-less spans with an HTTP tag, or producers, by user agent.
        (
            SpanFilter::Any(vec![
                SpanFilter::All(vec![
                    SpanFilter::Kind(None),
                    SpanFilter::TagKeyPrefix("http.".into()),
                ]),
                SpanFilter::Kind(Some(SpanKind::Producer)),
            ]),
            vec![agent.clone()],
        ),
        // One agent's spans with an empty prefix test, and a value with a quote.
        (
            SpanFilter::All(vec![
                SpanFilter::Equals(agent.clone(), "curl/8.5".into()),
                SpanFilter::TagKeyPrefix(String::new()),
            ]),
            vec![by(SpanField::LocalService, Some("unknown"))],
        ),
        (
            SpanFilter::Equals(by(SpanField::Name, None), "it's".into()),
            Vec::new(),
        ),
        // Nothing matches: an empty Any.
        (SpanFilter::Any(Vec::new()), Vec::new()),
    ];
    for (filter, group_by) in cases {
        let a = SpanAggregation {
            start_us: BASE_US,
            end_us: BASE_US + 60 * MINUTE_US,
            filter,
            group_by,
            measures: vec![
                SpanMeasure::Spans,
                SpanMeasure::Traces,
                SpanMeasure::Durations {
                    quantiles: quantiles.clone(),
                },
            ],
        };
        let want = evaluate(&a, &data);
        let got = sorted(
            ch.spans()
                .aggregate(&a)
                .unwrap()
                .expect("ClickHouse aggregates"),
        );
        assert_eq!(got, want, "{a:?}");
    }
    // The durations of a group that holds many: exact nearest ranks.
    let big = evaluate(
        &SpanAggregation {
            start_us: BASE_US,
            end_us: BASE_US + 60 * MINUTE_US,
            filter: SpanFilter::All(Vec::new()),
            group_by: Vec::new(),
            measures: vec![SpanMeasure::Durations {
                quantiles: vec![0.5],
            }],
        },
        &data,
    );
    assert!(matches!(&big[0].values[0], MeasureValue::Durations(d) if d.count > 500));
}

fn stats_and_graphs_respect_the_read_limit(b: &Backend) {
    let url = b.url(0, "analysis_limit");
    common::open(&url).spans().write(&dataset()).unwrap();
    let opts = meshlens_clickhouse::StorageOptions {
        max_rows_to_read: 10,
        ..Default::default()
    };
    let limited = common::open_with(&url, opts);
    let err = compute_stats(limited.spans(), &queries()[0]).unwrap_err();
    assert_eq!(err.http_status(), 422, "{err}");
    assert!(matches!(
        err,
        meshlens_analysis::AnalysisError::Storage(StorageError::TooManySamples { limit: 10 })
    ));
    // The trace graph's pairing runs under the same guard.
    let engine = meshlens_promql::Engine::new(Default::default());
    let err = build_graph(
        limited.metrics(),
        limited.spans(),
        &engine,
        &graph_queries()[0],
    )
    .unwrap_err();
    assert_eq!(err.http_status(), 422, "{err}");
}

/// Informal timing, not a test (`--ignored`): the statistics of a larger set, aggregated on
/// the shards against shipping every span, same answer.
#[test]
#[ignore]
fn stats_timing_on_a_larger_set() {
    let Some(c) = common::cluster() else { return };
    let data = dataset_of(100_000);
    let ch = common::open(&c.storage_url(0, "analysis_timing"));
    for chunk in data.chunks(50_000) {
        ch.spans().write(chunk).unwrap();
    }
    for q in &queries()[..3] {
        let started = std::time::Instant::now();
        let got = compute_stats(ch.spans(), q).unwrap();
        let on_shards = started.elapsed();
        let started = std::time::Instant::now();
        let shipped = compute_stats(&RequiredOnly::new(ch.spans()), q).unwrap();
        eprintln!(
            "{} spans: {on_shards:?} aggregated on the shards, {:?} shipping the spans",
            got.totals.spans,
            started.elapsed()
        );
        assert_eq!(got, shipped);
    }
}

/// Traces with every shape the trace graph tells apart: client/server pairs (some sharing
/// the client's id), servers under kind-less spans of another service and of their own,
/// root servers, servers whose parent was never sent, clients nobody answered (naming their
/// peer by remote endpoint, `peer.service`, Envoy's `upstream_cluster`, or not at all);
/// `name.namespace` and host-name services, cluster and version tags, status codes in both
/// keys, errors without status, gRPC and HTTP and neither, repeated and missing durations.
fn graph_dataset() -> Vec<Span> {
    graph_dataset_of(200)
}

fn graph_dataset_of(traces: u64) -> Vec<Span> {
    let mut rng = Lcg(11);
    let services = [
        "frontend.shop",
        "api.shop",
        "db.data",
        "cart",
        "Reviews.shop",
    ];
    let mut spans = Vec::new();
    let mut next = 0u64;
    let mut id = || {
        next += 1;
        next.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
    };
    for t in 0..traces {
        let trace_id = TraceId {
            high: if t % 2 == 0 { 0 } else { 0xbeef_0000 + t },
            low: 0x7000_0000_0000_0000 + t * 7919,
            is_128: t % 2 == 1,
        };
        let start = BASE_US - 3 * MINUTE_US + rng.below(66 * MINUTE_US);
        let mut ts = start;
        let mut span = |rng: &mut Lcg,
                        id: u64,
                        parent: Option<u64>,
                        kind: Option<SpanKind>,
                        svc: &str,
                        shared: bool| {
            ts += 100;
            let mut tags = BTreeMap::new();
            let mut put = |k: &str, v: &str| {
                tags.insert(k.to_string(), v.to_string());
            };
            match rng.below(5) {
                0 => put("istio.cluster_id", "west"),
                1 => put("cluster", "east"),
                2 => put("k8s.cluster.name", ""),
                _ => {}
            }
            match rng.below(4) {
                0 => put("version", "v1"),
                1 => put("istio.canonical_revision", "v2"),
                _ => {}
            }
            let status = rng.pick(&["200", "200", "404", "503", "500"]);
            match rng.below(6) {
                0 => put("http.response.status_code", status),
                1 => {}
                2 => put("error", "boom"),
                _ => put("http.status_code", status),
            }
            match rng.below(6) {
                0 => put("rpc.system", "grpc"),
                1 => put("grpc.status_code", "0"),
                2 => put("rpc.system", "dubbo"),
                3 => {
                    tags.retain(|k, _| !k.starts_with("http."));
                }
                _ => {}
            }
            Span {
                trace_id,
                id,
                parent_id: parent,
                name: Some("op".into()),
                kind,
                timestamp: Some(ts),
                duration: (rng.below(8) != 0).then(|| 1 + rng.below(30) * 1_000),
                local_endpoint: Some(Endpoint {
                    service_name: Some(svc.to_string()),
                    ..Default::default()
                }),
                remote_endpoint: None,
                annotations: Vec::new(),
                tags,
                debug: false,
                shared,
            }
        };
        let root = id();
        let root_svc = rng.pick(&services);
        spans.push(span(
            &mut rng,
            root,
            None,
            Some(SpanKind::Server),
            root_svc,
            false,
        ));
        let mut frontier = vec![(root, root_svc)];
        for _ in 0..(1 + rng.below(5)) {
            let (parent, caller) = frontier[rng.below(frontier.len() as u64) as usize];
            let callee = rng.pick(&services);
            let client = id();
            match rng.below(9) {
                0 | 1 => {
                    spans.push(span(
                        &mut rng,
                        client,
                        Some(parent),
                        Some(SpanKind::Client),
                        caller,
                        false,
                    ));
                    let server = id();
                    spans.push(span(
                        &mut rng,
                        server,
                        Some(client),
                        Some(SpanKind::Server),
                        callee,
                        false,
                    ));
                    frontier.push((server, callee));
                }
                2 => {
                    spans.push(span(
                        &mut rng,
                        client,
                        Some(parent),
                        Some(SpanKind::Client),
                        caller,
                        false,
                    ));
                    spans.push(span(
                        &mut rng,
                        client,
                        Some(parent),
                        Some(SpanKind::Server),
                        callee,
                        true,
                    ));
                }
                3 => {
                    // A kind-less span (of the caller, or of the callee itself) above a server.
                    let owner = if rng.below(3) == 0 { callee } else { caller };
                    spans.push(span(&mut rng, client, Some(parent), None, owner, false));
                    let server = id();
                    spans.push(span(
                        &mut rng,
                        server,
                        Some(client),
                        Some(SpanKind::Server),
                        callee,
                        false,
                    ));
                }
                4 => {
                    let mut c = span(
                        &mut rng,
                        client,
                        Some(parent),
                        Some(SpanKind::Client),
                        caller,
                        false,
                    );
                    c.remote_endpoint = Some(Endpoint {
                        service_name: Some("api.stripe.com".into()),
                        ..Default::default()
                    });
                    spans.push(c);
                }
                5 => {
                    let mut c = span(
                        &mut rng,
                        client,
                        Some(parent),
                        Some(SpanKind::Producer),
                        caller,
                        false,
                    );
                    c.tags.insert("peer.service".into(), "queue.infra".into());
                    spans.push(c);
                }
                6 => {
                    let mut c = span(
                        &mut rng,
                        client,
                        Some(parent),
                        Some(SpanKind::Client),
                        caller,
                        false,
                    );
                    c.tags.insert(
                        "upstream_cluster".into(),
                        "outbound|9080||ratings.shop.svc.cluster.local".into(),
                    );
                    spans.push(c);
                }
                7 => {
                    // Nobody answered and nothing names the peer: no call.
                    spans.push(span(
                        &mut rng,
                        client,
                        Some(parent),
                        Some(SpanKind::Client),
                        caller,
                        false,
                    ));
                }
                _ => {
                    // A server whose parent was never sent: no call either.
                    spans.push(span(
                        &mut rng,
                        client,
                        Some(client ^ 2),
                        Some(SpanKind::Server),
                        callee,
                        false,
                    ));
                }
            }
        }
    }
    spans
}

fn graph_queries() -> Vec<GraphQuery> {
    let end_ms = ((BASE_US + 60 * MINUTE_US) / 1000) as i64;
    let mut out = Vec::new();
    for gt in [
        GraphType::Workload,
        GraphType::App,
        GraphType::VersionedApp,
        GraphType::Service,
    ] {
        let q = GraphQuery {
            graph_type: gt,
            window_ms: 60 * 60_000,
            end_ms,
            cluster: None,
            namespace: None,
            focus: None,
            source: GraphSource::Traces,
        };
        out.push(q.clone());
        out.push(GraphQuery {
            window_ms: 7 * 60_000,
            end_ms: end_ms - 20 * 60_000,
            cluster: Some("west".into()),
            ..q.clone()
        });
        out.push(GraphQuery {
            namespace: Some("shop".into()),
            focus: Some("api".into()),
            ..q
        });
    }
    out
}

fn trace_graphs_paired_on_the_shards_equal_the_embedded_store(b: &Backend) {
    let data = graph_dataset();
    let (_dir, emb, reader) = stored_with_a_retry(b, "analysis_graph", &data);
    let engine = meshlens_promql::Engine::new(Default::default());
    for q in graph_queries() {
        let start_us = (q.end_ms - q.window_ms) as u64 * 1000 + 1;
        let end_us = q.end_ms as u64 * 1000;
        // The store pairs the calls itself (the graph takes this path).
        let probe = meshlens_model::CallAggregation {
            start_us,
            end_us,
            caller: Vec::new(),
            callee: Vec::new(),
            callee_flags: Vec::new(),
        };
        let groups = reader.spans().aggregate_calls(&probe).unwrap();
        assert!(groups.is_some(), "ClickHouse pairs calls on its shards");
        let want = build_graph(reader.metrics(), &emb, &engine, &q).unwrap();
        let started = std::time::Instant::now();
        let got = build_graph(reader.metrics(), reader.spans(), &engine, &q).unwrap();
        let on_shards = started.elapsed();
        let started = std::time::Instant::now();
        let shipped = build_graph(
            reader.metrics(),
            &RequiredOnly::new(reader.spans()),
            &engine,
            &q,
        )
        .unwrap();
        eprintln!(
            "graph {:?} {:?}: {} nodes, {} edges: {on_shards:?} paired on the shards, \
             {:?} shipping the spans",
            q.graph_type,
            q.cluster,
            want.nodes.len(),
            want.edges.len(),
            started.elapsed()
        );
        assert_eq!(got, want, "graph of {q:?} paired on the shards");
        assert_eq!(shipped, want, "graph of {q:?} from shipped spans");
    }
    let all = build_graph(reader.metrics(), &emb, &engine, &graph_queries()[0]).unwrap();
    let named = |n: &str| all.nodes.iter().any(|x| x.name == n);
    assert!(
        all.edges.len() > 20
            && ["unknown", "api.stripe.com", "queue", "ratings"]
                .iter()
                .all(|n| named(n))
            && all.edges.iter().any(|e| e.protocol == "grpc")
            && all.edges.iter().any(|e| e.protocol == "tcp")
            && all.edges.iter().any(|e| e.cross_cluster)
            && all.edges.iter().any(|e| e.response_codes.contains_key("0")),
        "the data set exercises the graph: {all:?}"
    );
}

/// Informal timing, not a test (`--ignored`): trace graphs of a larger set, paired on the
/// shards against shipping every span, same answer.
#[test]
#[ignore]
fn graph_timing_on_a_larger_set() {
    let Some(c) = common::cluster() else { return };
    let data = graph_dataset_of(40_000);
    let ch = common::open(&c.storage_url(0, "analysis_graph_timing"));
    for chunk in data.chunks(50_000) {
        ch.spans().write(chunk).unwrap();
    }
    let engine = meshlens_promql::Engine::new(Default::default());
    for q in &graph_queries()[..3] {
        let started = std::time::Instant::now();
        let got = build_graph(ch.metrics(), ch.spans(), &engine, q).unwrap();
        let on_shards = started.elapsed();
        let started = std::time::Instant::now();
        let shipped =
            build_graph(ch.metrics(), &RequiredOnly::new(ch.spans()), &engine, q).unwrap();
        eprintln!(
            "{} spans, {} edges: {on_shards:?} paired on the shards, {:?} shipping the spans",
            data.len(),
            got.edges.len(),
            started.elapsed()
        );
        assert_eq!(got, shipped);
    }
}

on_both!(
    stats_equal_the_embedded_store,
    aggregations_equal_their_reference_meaning,
    stats_and_graphs_respect_the_read_limit,
    trace_graphs_paired_on_the_shards_equal_the_embedded_store,
);
