//! The service graph against hand-computed figures, from Istio metrics and from traces on
//! the same traffic (see `common::traffic`), and the two sources agreeing.

mod common;

use meshlens_analysis::{build_graph, Graph, GraphQuery, GraphSource, GraphType, Health};
use meshlens_model::SpanWriter;
use meshlens_promql::{Engine, EngineOptions};

use common::*;

struct Fixture {
    _dir: tempfile::TempDir,
    tsdb: std::sync::Arc<meshlens_tsdb::Tsdb>,
    spans: std::sync::Arc<meshlens_spanstore::SpanStore>,
    engine: Engine,
    end: i64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let end = end_ms();
    let tsdb = tsdb(&dir.path().join("tsdb"));
    write_metrics(&*tsdb, end);
    let spans = spanstore(&dir.path().join("spans"));
    spans.write(&common::spans(end)).unwrap();
    Fixture {
        _dir: dir,
        tsdb,
        spans,
        engine: Engine::new(EngineOptions::default()),
        end,
    }
}

fn query(f: &Fixture, gt: GraphType, source: GraphSource) -> GraphQuery {
    GraphQuery {
        graph_type: gt,
        window_ms: WINDOW_MS,
        end_ms: f.end,
        cluster: None,
        namespace: None,
        focus: None,
        source,
    }
}

fn run(f: &Fixture, q: &GraphQuery) -> Graph {
    build_graph(&*f.tsdb, &*f.spans, &f.engine, q).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.abs().max(1.0)
}

fn edge<'a>(g: &'a Graph, src: &str, dst: &str) -> &'a meshlens_analysis::Edge {
    g.edges
        .iter()
        .find(|e| e.source == src && e.target == dst)
        .unwrap_or_else(|| panic!("no edge {src} -> {dst} in {:#?}", g.edges))
}

fn node<'a>(g: &'a Graph, id: &str) -> &'a meshlens_analysis::Node {
    g.nodes
        .iter()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("no node {id}"))
}

const GW: &str = "east/istio-system/istio-ingressgateway";
const PP: &str = "east/default/productpage";
const RV: &str = "east/default/reviews";
const RT: &str = "east/default/ratings";
const DT: &str = "east/default/details";

/// The app graph's figures, whichever source produced it.
fn check_app_graph(g: &Graph) {
    let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, [DT, PP, RT, RV, GW]);
    assert_eq!(g.edges.len(), 4);

    let e = edge(g, PP, RV);
    assert!(
        close(e.requests, 900.0) && close(e.request_rate, 3.0),
        "{e:?}"
    );
    assert!(close(e.errors, 30.0) && close(e.error_rate, 30.0 / 900.0));
    assert!(close(e.response_codes["200"], 870.0) && close(e.response_codes["503"], 30.0));
    assert_eq!(e.health, Health::Degraded);
    assert_eq!(e.protocol, "http");

    let e = edge(g, RV, RT);
    assert!(close(e.request_rate, 1.0) && close(e.error_rate, 0.2));
    assert_eq!(e.health, Health::Failure);
    let e = edge(g, PP, DT);
    assert!(close(e.request_rate, 0.5) && close(e.error_rate, 0.0));
    assert_eq!(e.health, Health::Failure, "4xx at 20 %");
    let e = edge(g, GW, PP);
    assert!(close(e.request_rate, 3.0));
    assert_eq!(e.health, Health::Healthy);

    let n = node(g, PP);
    assert!(close(n.request_rate_in, 3.0) && close(n.request_rate_out, 3.5));
    assert_eq!(n.health, Health::Healthy);
    let n = node(g, RV);
    assert!(close(n.request_rate_in, 3.0) && close(n.request_rate_out, 1.0));
    assert!(close(n.error_rate, 30.0 / 900.0));
    assert_eq!(n.health, Health::Degraded);
    assert_eq!(node(g, RT).health, Health::Failure);
    assert_eq!(node(g, DT).health, Health::Failure);
    let n = node(g, GW);
    assert!(close(n.request_rate_in, 0.0) && close(n.request_rate_out, 3.0));
    assert_eq!(n.health, Health::Healthy);
}

#[test]
fn app_graph_from_metrics_matches_hand_computed_figures() {
    let f = fixture();
    let g = run(&f, &query(&f, GraphType::App, GraphSource::Metrics));
    check_app_graph(&g);
    // Istio buckets [5, 10, 25, 50, +Inf] ms on productpage -> reviews (both versions):
    // cumulative 0, 300, 840, 900, 900: p50 rank 450 -> 10 + 15 * 150/540;
    // p95 rank 855 -> 25 + 25 * 15/60; p99 rank 891 -> 25 + 25 * 51/60.
    let rt = edge(&g, PP, RV).response_time_ms.unwrap();
    assert!(close(rt.p50, 10.0 + 15.0 * 150.0 / 540.0), "{rt:?}");
    assert!(close(rt.p95, 31.25) && close(rt.p99, 46.25), "{rt:?}");
    assert!(close(edge(&g, PP, RV).mtls_share.unwrap(), 1.0));
    assert!(close(edge(&g, GW, PP).mtls_share.unwrap(), 0.0));
    assert!(g.nodes.iter().all(|n| n.sources == ["metrics"]));
}

#[test]
fn app_graph_from_traces_matches_hand_computed_figures() {
    let f = fixture();
    let g = run(&f, &query(&f, GraphType::App, GraphSource::Traces));
    check_app_graph(&g);
    // Server durations on productpage -> reviews: 300 x 8, 540 x 20, 60 x 40 ms (nearest
    // rank): p50 = 450th = 20, p95 = 855th = 40, p99 = 40.
    let rt = edge(&g, PP, RV).response_time_ms.unwrap();
    assert_eq!((rt.p50, rt.p95, rt.p99), (20.0, 40.0, 40.0));
    assert!(edge(&g, PP, RV).mtls_share.is_none());
}

/// Same nodes, same edges, same counts, rates and error shares from both sources.
#[test]
fn metrics_and_traces_agree() {
    let f = fixture();
    for gt in [GraphType::App, GraphType::VersionedApp] {
        let m = run(&f, &query(&f, gt, GraphSource::Metrics));
        let t = run(&f, &query(&f, gt, GraphSource::Traces));
        let ids = |g: &Graph| g.nodes.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&m), ids(&t), "{gt:?}");
        assert_eq!(m.edges.len(), t.edges.len());
        for (a, b) in m.edges.iter().zip(&t.edges) {
            assert_eq!(
                (&a.source, &a.target, &a.protocol),
                (&b.source, &b.target, &b.protocol)
            );
            assert!(close(a.requests, b.requests), "{a:?} {b:?}");
            assert!(close(a.request_rate, b.request_rate));
            assert!(close(a.error_rate, b.error_rate));
            assert_eq!(a.health, b.health);
            assert_eq!(
                a.response_codes.keys().collect::<Vec<_>>(),
                b.response_codes.keys().collect::<Vec<_>>()
            );
            for (k, v) in &a.response_codes {
                assert!(close(*v, b.response_codes[k]));
            }
        }
        for (a, b) in m.nodes.iter().zip(&t.nodes) {
            assert!(
                close(a.request_rate_in, b.request_rate_in)
                    && close(a.request_rate_out, b.request_rate_out)
            );
            assert!(close(a.error_rate, b.error_rate));
            assert_eq!(a.health, b.health, "{}", a.id);
        }
    }
}

#[test]
fn versioned_app_graph_splits_versions() {
    let f = fixture();
    let g = run(
        &f,
        &query(&f, GraphType::VersionedApp, GraphSource::Metrics),
    );
    let e = edge(&g, "east/default/productpage/v1", "east/default/reviews/v1");
    assert!(close(e.requests, 600.0) && close(e.error_rate, 0.05));
    let e = edge(&g, "east/default/productpage/v1", "east/default/reviews/v2");
    assert!(close(e.requests, 300.0) && close(e.error_rate, 0.0));
    assert_eq!(node(&g, "east/default/reviews/v2").health, Health::Healthy);
    assert_eq!(g.nodes.len(), 6);
}

#[test]
fn workload_and_service_graphs_from_metrics() {
    let f = fixture();
    let g = run(&f, &query(&f, GraphType::Workload, GraphSource::Metrics));
    let e = edge(&g, "east/default/productpage-v1", "east/default/reviews-v1");
    assert!(close(e.request_rate, 2.0) && close(e.error_rate, 0.05));
    assert_eq!(g.nodes.len(), 6);
    assert!(g.nodes.iter().all(|n| n.node_type == "workload"));

    let g = run(&f, &query(&f, GraphType::Service, GraphSource::Metrics));
    // productpage-v1 serves productpage: calls from it start at the productpage service.
    let e = edge(&g, PP, RV);
    assert!(close(e.requests, 900.0));
    let e = edge(&g, RV, RT);
    assert!(close(e.requests, 300.0));
    assert_eq!(g.edges.len(), 4);
    assert!(g.nodes.iter().all(|n| n.node_type == "service"));
}

#[test]
fn focus_namespace_and_cluster_filters() {
    let f = fixture();
    let mut q = query(&f, GraphType::App, GraphSource::Metrics);
    q.focus = Some("reviews".into());
    let g = run(&f, &q);
    let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, [PP, RT, RV]);
    assert_eq!(g.edges.len(), 2);

    let mut q = query(&f, GraphType::App, GraphSource::Traces);
    q.namespace = Some("istio-system".into());
    let g = run(&f, &q);
    assert_eq!(g.edges.len(), 1);
    assert_eq!(
        (g.edges[0].source.as_str(), g.edges[0].target.as_str()),
        (GW, PP)
    );

    let mut q = query(&f, GraphType::App, GraphSource::Metrics);
    q.cluster = Some("west".into());
    assert!(run(&f, &q).edges.is_empty());
}

#[test]
fn both_sources_add_edges_only_traces_see() {
    let f = fixture();
    // details calls an external API nobody instruments: only its CLIENT span knows.
    let mut extra = common::spans(f.end)
        .into_iter()
        .find(|s| s.local_service() == Some("details.default"))
        .unwrap();
    extra.kind = Some(meshlens_model::SpanKind::Client);
    extra.id = 1 << 40;
    extra.remote_endpoint = Some(meshlens_model::Endpoint {
        service_name: Some("api.example.com".into()),
        ..Default::default()
    });
    f.spans.write(&[extra]).unwrap();
    let g = run(&f, &query(&f, GraphType::App, GraphSource::Both));
    assert_eq!(g.edges.len(), 5);
    let e = edge(&g, DT, "east/unknown/api.example.com");
    assert_eq!(e.sources, ["traces"]);
    assert!(close(e.requests, 1.0));
    assert_eq!(edge(&g, PP, RV).sources, ["metrics"]);
    assert_eq!(node(&g, DT).sources, ["metrics", "traces"]);
}

#[test]
fn empty_stores_give_an_empty_graph() {
    let dir = tempfile::tempdir().unwrap();
    let t = tsdb(&dir.path().join("t"));
    let s = spanstore(&dir.path().join("s"));
    let e = Engine::new(EngineOptions::default());
    for source in [GraphSource::Metrics, GraphSource::Traces, GraphSource::Both] {
        let q = GraphQuery {
            graph_type: GraphType::Workload,
            window_ms: WINDOW_MS,
            end_ms: end_ms(),
            cluster: None,
            namespace: None,
            focus: None,
            source,
        };
        let g = build_graph(&*t, &*s, &e, &q).unwrap();
        assert!(g.nodes.is_empty() && g.edges.is_empty());
    }
}

/// Regression: a call from outside the mesh (a root SERVER span) was keyed
/// `unknown/unknown/unknown` in the trace-derived versioned-app graph, while the id rule and
/// the metrics graph give `unknown/unknown/unknown/unknown`, so `source=both` showed that
/// caller twice.
#[test]
fn an_outside_caller_has_a_versioned_id_in_the_trace_graph() {
    let f = fixture();
    let mut root = common::spans(f.end)
        .into_iter()
        .find(|s| {
            s.kind == Some(meshlens_model::SpanKind::Server)
                && s.local_service() == Some("productpage.default")
        })
        .unwrap();
    root.id = 1 << 41;
    root.parent_id = None;
    f.spans.write(&[root]).unwrap();
    for source in [GraphSource::Traces, GraphSource::Both] {
        let g = run(&f, &query(&f, GraphType::VersionedApp, source));
        let outside: Vec<&str> = g
            .nodes
            .iter()
            .filter(|n| n.node_type == "unknown")
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(outside, ["unknown/unknown/unknown/unknown"], "{source:?}");
    }
}
