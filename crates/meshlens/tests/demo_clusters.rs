//! `meshlens demo --clusters 3` end to end: the mesh split over `edge`, `east` and `west`,
//! each cluster with its own agent forwarding to the server, which scrapes nothing itself.
//! The server must still see one mesh: workloads of all three clusters, calls between them
//! in the metrics graph and the trace graph, Istio's cluster labels as the proxies report
//! them, every agent in `/api/v1/clusters`, and the demo's SLOs computed from it all.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{get_json, poll, urlencode, KillOnDrop};
use serde_json::Value;

const CLUSTERS: [&str; 3] = ["east", "west", "edge"];
const LIMIT: Duration = Duration::from_secs(180);

/// The demo's banner: the server's base URL and each cluster's agent URL.
struct Banner {
    server: String,
    agents: BTreeMap<String, String>,
}

/// Starts `meshlens demo --clusters 3` on OS-chosen ports and reads the server's and the
/// agents' addresses from its banner.
fn start(dir: &std::path::Path) -> (KillOnDrop, Banner) {
    let (guard, lines) = common::start_demo_banner(dir, &["--rate", "40", "--clusters", "3"]);
    let mut server = None;
    let mut agents = BTreeMap::new();
    for line in &lines {
        if let Some(a) = line.strip_prefix("meshlens server listening on ") {
            server = Some(a.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("meshlens demo cluster ") {
            // "meshlens demo cluster east agent on http://127.0.0.1:1234: http-lb-v1, ..."
            let (name, rest) = rest.split_once(" agent on ").expect("agent address");
            let url = rest.split(": ").next().unwrap().trim().to_string();
            agents.insert(name.to_string(), url);
        }
    }
    let banner = Banner {
        server: server.expect("server address printed before the clusters"),
        agents,
    };
    (guard, banner)
}

/// The graph's edges as (source node, target node, crossCluster as the server says),
/// with nodes as (cluster, name).
type GraphEdge = ((String, String), (String, String), Option<bool>);

fn graph(base: &str, source: &str) -> (Vec<(String, String)>, Vec<GraphEdge>) {
    let g = get_json(&format!(
        "{base}/api/v1/graph?type=workload&window=5m&source={source}"
    ));
    let g = if g["data"].is_object() {
        &g["data"]
    } else {
        &g
    };
    let mut nodes = BTreeMap::new();
    for n in g["nodes"].as_array().expect("nodes") {
        let key = (
            n["cluster"].as_str().unwrap_or("").to_string(),
            n["name"].as_str().unwrap_or("").to_string(),
        );
        nodes.insert(n["id"].as_str().expect("node id").to_string(), key);
    }
    let edges = g["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| {
            let s = nodes.get(e["source"].as_str()?)?.clone();
            let t = nodes.get(e["target"].as_str()?)?.clone();
            Some((s, t, e["crossCluster"].as_bool()))
        })
        .collect();
    (nodes.into_values().collect(), edges)
}

/// Whether an edge crosses clusters: the server's `crossCluster` when it gives one, else
/// both ends' clusters known and different.
fn crosses(e: &GraphEdge) -> bool {
    let known = |c: &str| !c.is_empty() && c != "unknown";
    e.2.unwrap_or(known(&e.0 .0) && known(&e.1 .0) && e.0 .0 != e.1 .0)
}

#[test]
fn three_clusters_one_pane() {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, banner) = start(dir.path());
    let base = banner.server.clone();
    assert_eq!(
        banner.agents.keys().collect::<Vec<_>>(),
        ["east", "edge", "west"],
        "{:?}",
        banner.agents
    );
    for (name, url) in &banner.agents {
        assert_ne!(url, &base, "{name}'s agent is the server");
        common::wait_ready(url, LIMIT);
    }

    // The hub scrapes nothing: its only targets would be its own config's, and that has none.
    let targets = get_json(&format!("{base}/api/v1/targets"));
    assert_eq!(
        targets["data"]["activeTargets"].as_array().map(Vec::len),
        Some(0),
        "{targets}"
    );

    // The metrics graph: every cluster's workloads, and the expected calls across them
    // (the first scrapes may hold only some of them, so wait for all).
    let find = |edges: &[GraphEdge], s: (&str, &str), t: (&str, &str)| {
        edges
            .iter()
            .find(|(a, b, _)| a.0 == s.0 && a.1 == s.1 && b.0 == t.0 && b.1.starts_with(t.1))
            .cloned()
    };
    let expected = [
        (
            ("edge", "istio-ingressgateway"),
            ("edge", "proxy-access-control"),
        ),
        (("edge", "proxy-access-control"), ("east", "http-lb-v1")),
        (("east", "http-lb-v1"), ("west", "clover-server")),
    ];
    let (nodes, edges) = poll(LIMIT, || {
        let (nodes, edges) = graph(&base, "metrics");
        let all = CLUSTERS.iter().all(|c| nodes.iter().any(|(nc, _)| nc == c));
        let cross = edges.iter().filter(|e| crosses(e)).count();
        let wanted = expected.iter().all(|(s, t)| find(&edges, *s, *t).is_some());
        (all && wanted && cross >= 2).then_some((nodes, edges))
    });
    let [inside, over1, over2] = expected.map(|(s, t)| find(&edges, s, t).unwrap());
    assert!(!crosses(&inside), "{inside:?}");
    assert!(crosses(&over1), "{over1:?}");
    assert!(crosses(&over2), "{over2:?}");
    for (c, n) in &nodes {
        assert!(
            c == "unknown" || CLUSTERS.contains(&c.as_str()),
            "node {n} in cluster {c:?}: {nodes:?}"
        );
    }

    // Istio's cluster labels as both reporters give them: the caller's proxy names the
    // callee's cluster and the callee's proxy the caller's.
    let q = "sum by (reporter, source_cluster, destination_cluster) \
             (istio_requests_total{source_workload=\"proxy-access-control\"})";
    let rows = poll(LIMIT, || {
        let v = get_json(&format!("{base}/api/v1/query?query={}", urlencode(q)));
        let rows: Vec<(String, String, String)> = v["data"]["result"]
            .as_array()?
            .iter()
            .map(|r| {
                let l = |k: &str| r["metric"][k].as_str().unwrap_or("").to_string();
                (l("reporter"), l("source_cluster"), l("destination_cluster"))
            })
            .collect();
        (rows.len() >= 2).then_some(rows)
    });
    for reporter in ["source", "destination"] {
        assert!(
            rows.contains(&(reporter.into(), "edge".into(), "east".into())),
            "{reporter}: {rows:?}"
        );
    }
    // Its calls go to http-lb (east) and, mirrored, to snort-ids (west).
    assert!(
        rows.iter()
            .all(|(_, s, d)| s == "edge" && (d == "east" || d == "west")),
        "{rows:?}"
    );

    // Every cluster through exactly one agent.
    let clusters = poll(LIMIT, || {
        let r = common::httpc::get(&format!("{base}/api/v1/clusters")).ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        let data = v["data"].as_array()?.clone();
        let agents = |name: &str| {
            data.iter()
                .find(|c| c["name"] == name)
                .and_then(|c| c["agents"].as_array())
                .map_or(0, Vec::len)
        };
        CLUSTERS.iter().all(|c| agents(c) >= 1).then_some(data)
    });
    for c in CLUSTERS {
        let entry = clusters.iter().find(|e| e["name"] == c).unwrap();
        let agents = entry["agents"].as_array().unwrap();
        assert_eq!(agents.len(), 1, "{c}: {entry}");
        assert_eq!(agents[0]["id"], format!("demo-{c}"), "{c}: {entry}");
    }

    // The trace graph: spans carry their agent's cluster, so calls cross clusters there too.
    let trace_edges = poll(LIMIT, || {
        let (_, edges) = graph(&base, "traces");
        edges.iter().any(crosses).then_some(edges)
    });
    assert!(
        trace_edges
            .iter()
            .filter(|e| crosses(e))
            .all(|(a, b, _)| a.0 != b.0),
        "{trace_edges:?}"
    );

    // The demo's SLOs, computed on the hub from what the agents forwarded.
    poll(LIMIT, || {
        let v = get_json(&format!("{base}/api/v1/slos"));
        let slo = v["data"]["slos"]
            .as_array()?
            .iter()
            .find(|s| s["service"] == "clover-server")?
            .clone();
        let burn = slo["values"]
            .as_object()?
            .iter()
            .any(|(k, v)| k.starts_with("burn_rate") && v.is_number());
        burn.then_some(())
    });
}
