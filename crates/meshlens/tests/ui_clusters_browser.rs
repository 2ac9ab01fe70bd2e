//! Many clusters in one pane, in a real browser (Debian's `chromium` driven by Playwright
//! through `tests/ui/ui_clusters.py`).
//!
//! `demo_three_clusters_in_one_pane`: `meshlens demo --clusters 3` (clusters `east`, `west`,
//! `edge`, each with its own agent forwarding to the demo's server); once the server's graph
//! has cross-cluster edges, the browser checks the topology's bands and cross-cluster edges,
//! the edge panel's "east → west", the cluster filter (west's nodes and their peers only), the
//! overview's cluster rows (with their agents) and the filter in the traces, alerts and
//! metrics views.
//!
//! `remote_written_clusters_filter_and_alerts`: a `meshlens server` holding remote-written
//! Istio metrics of three clusters (no agent) and three firing alerts, one per cluster label
//! and one without; the same checks on a graph known exactly, and that the Alerts view and the
//! topology's alert marks follow the alerts' `cluster` label.
//!
//! Screenshots land in `<target>/tmp/ui-clusters-demo-screenshots/` and
//! `<target>/tmp/ui-clusters-series-screenshots/` (printed below).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::httpc::Conn;
use common::{get_json, poll, require_binary, require_python_module, run_browser_script, Server};
use meshlens_model::{Labels, Sample, TimeSeries};
use serde_json::Value;

/// The workload graph's cross-cluster edges as ((name, cluster), (name, cluster)), sorted.
fn cross_edges(g: &Value) -> Vec<((String, String), (String, String))> {
    let node = |id: &Value| {
        g["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| &n["id"] == id))
            .map(|n| {
                (
                    n["name"].as_str().unwrap_or("").to_string(),
                    n["cluster"].as_str().unwrap_or("").to_string(),
                )
            })
            .unwrap_or_default()
    };
    let mut out: Vec<_> = g["edges"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| e["crossCluster"] == true)
        .map(|e| (node(&e["source"]), node(&e["target"])))
        .collect();
    out.sort();
    out
}

#[test]
fn demo_three_clusters_in_one_pane() {
    if !require_binary("chromium") || !require_python_module("playwright") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_demo, base) = common::start_demo_with(dir.path(), &["--clusters", "3", "--rate", "40"]);

    // The server's own view first: two cross-cluster edges, and traffic in every cluster.
    let cross = poll(Duration::from_secs(180), || {
        let g = get_json(&format!(
            "{base}/api/v1/graph?type=workload&window=900s&source=metrics"
        ));
        let cross = cross_edges(&g);
        let mut clusters: Vec<&str> = g["nodes"]
            .as_array()?
            .iter()
            .filter_map(|n| n["cluster"].as_str())
            .collect();
        clusters.sort();
        clusters.dedup();
        // The script checks that the cluster filter leaves the ingress → front end edge (both
        // in `edge`) out: wait for the ingress too (each agent scrapes its proxies on its own
        // schedule).
        let ingress = g["nodes"]
            .as_array()?
            .iter()
            .any(|n| n["name"] == "istio-ingressgateway");
        (cross.len() >= 2 && clusters == ["east", "edge", "west"] && ingress).then_some(cross)
    });
    println!("cross-cluster edges: {cross:?}");
    // Traces tagged with west, for the traces view's filter.
    poll(Duration::from_secs(120), || {
        let v = get_json(&format!(
            "{base}/api/v2/traces?annotationQuery=cluster%3Dwest&limit=1"
        ));
        (!v.as_array()?.is_empty()).then_some(())
    });
    run_browser_script(
        "ui_clusters.py",
        &base,
        "ui-clusters-demo-screenshots",
        &["demo"],
    );
}

const RULES: &str = r#"groups:
  - name: clusters
    interval: 1s
    rules:
      - alert: CheckoutDownEast
        expr: vector(1)
        labels:
          service: checkout
          cluster: east
          severity: critical
        annotations:
          summary: checkout in east is down
      - alert: CheckoutDownWest
        expr: vector(1)
        labels:
          service: checkout
          cluster: west
        annotations:
          summary: checkout in west is down
      - alert: MeshWide
        expr: vector(1)
        labels:
          severity: warning
        annotations:
          summary: about every cluster
"#;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `istio_requests_total` of `src` (in `src_cluster`) calling `dst` (in `dst_cluster`) as the
/// destination proxy reports it: a sample every 15 s over the last 5 minutes.
fn call(src: &str, src_cluster: &str, dst: &str, dst_cluster: &str) -> TimeSeries {
    let now = now_ms();
    TimeSeries {
        labels: Labels::from_pairs([
            ("__name__", "istio_requests_total"),
            ("reporter", "destination"),
            ("source_workload", src),
            ("source_workload_namespace", "default"),
            ("source_app", src),
            ("source_cluster", src_cluster),
            ("destination_workload", dst),
            ("destination_workload_namespace", "default"),
            ("destination_app", dst),
            ("destination_service_name", dst),
            ("destination_service_namespace", "default"),
            ("destination_cluster", dst_cluster),
            ("request_protocol", "http"),
            ("response_code", "200"),
        ]),
        samples: (0..20)
            .map(|i| Sample {
                t: now - (20 - i) * 15_000,
                v: (i * 30) as f64,
            })
            .collect(),
    }
}

#[test]
fn remote_written_clusters_filter_and_alerts() {
    if !require_binary("chromium") || !require_python_module("playwright") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("rules.yml"), RULES).unwrap();
    let cfg = tmp.path().join("meshlens.yml");
    std::fs::write(&cfg, "rule_files: [rules.yml]\n").unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    let base = server.url("");

    let mut conn = Conn::open(&base).expect("connect");
    let series = vec![
        call("frontend", "edge", "checkout", "east"),
        call("frontend", "edge", "catalog", "west"),
        call("checkout", "east", "payments", "west"),
        call("checkout", "east", "inventory", "east"),
    ];
    let r = server
        .remote_write(&mut conn, series)
        .expect("remote write");
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));

    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    let want = vec![
        (s("checkout", "east"), s("payments", "west")),
        (s("frontend", "edge"), s("catalog", "west")),
        (s("frontend", "edge"), s("checkout", "east")),
    ];
    poll(Duration::from_secs(60), || {
        let g = get_json(&format!(
            "{base}/api/v1/graph?type=workload&window=900s&source=metrics"
        ));
        (cross_edges(&g) == want).then_some(())
    });
    poll(Duration::from_secs(60), || {
        let v = get_json(&format!("{base}/api/v1/alerts"));
        let firing = v["data"]["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["state"] == "firing")
            .count();
        (firing == 3).then_some(())
    });
    run_browser_script(
        "ui_clusters.py",
        &base,
        "ui-clusters-series-screenshots",
        &["series"],
    );
}
