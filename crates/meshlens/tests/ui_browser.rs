//! The web UI end to end in a real browser: `meshlens demo` runs the mesh with load, then
//! headless Chromium (Debian's `chromium`, driven by Playwright from PyPI through
//! `tests/ui/ui_e2e.py`) opens every view at 1280x800 and checks that it shows the demo's
//! data, that the links between views work, that no JavaScript error is logged, that every
//! answer of `/api/v1/graph` and `/api/v1/stats` is 2xx (the UI has no fallback for them),
//! that lone chart points are drawn, that the overview's Storage card shows the embedded
//! stores' figures, and that the tenant field sends `X-Scope-OrgID`. The
//! metrics chart is judged only once the server's `query_range` holds its points.
//! Screenshots of every view land in `<target>/tmp/ui-screenshots/` (printed below).

mod common;

use std::time::Duration;

use common::{
    get_json, poll, require_binary, require_python_module, run_browser_script, urlencode,
};

/// Source-reported edges the demo's mesh must show before the UI is judged.
const EDGES: [(&str, &str); 6] = [
    ("istio-ingressgateway", "proxy-access-control"),
    ("proxy-access-control", "http-lb-v1"),
    ("proxy-access-control", "http-lb-v2"),
    ("http-lb-v1", "clover-server1"),
    ("http-lb-v1", "clover-server2"),
    ("http-lb-v1", "clover-server3"),
];

#[test]
fn web_ui_shows_the_demo_mesh() {
    if !require_binary("chromium") || !require_python_module("playwright") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_demo, base) = common::start_demo(dir.path(), "40");

    // Wait for the whole call chain in the last 5 minutes' metrics, and for deep traces.
    let edges = "sum by (source_workload, destination_workload) \
                 (increase(istio_requests_total{reporter=\"source\"}[5m]))";
    poll(Duration::from_secs(180), || {
        let v = get_json(&format!("{base}/api/v1/query?query={}", urlencode(edges)));
        let rows = v["data"]["result"].as_array()?.clone();
        let seen = |s: &str, d: &str| {
            rows.iter().any(|r| {
                r["metric"]["source_workload"] == s
                    && r["metric"]["destination_workload"] == d
                    && r["value"][1]
                        .as_str()
                        .and_then(|x| x.parse::<f64>().ok())
                        .unwrap_or(0.0)
                        > 0.0
            })
        };
        EDGES.iter().all(|(s, d)| seen(s, d)).then_some(())
    });
    poll(Duration::from_secs(180), || {
        let t = get_json(&format!(
            "{base}/api/v2/traces?serviceName=istio-ingressgateway&limit=20"
        ));
        let deep = t.as_array()?.iter().any(|tr| {
            let spans = tr.as_array().map(Vec::as_slice).unwrap_or_default();
            spans
                .iter()
                .filter_map(|s| s["localEndpoint"]["serviceName"].as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                >= 4
        });
        deep.then_some(())
    });

    // The topology view draws the graph once, as the server has it then: wait until the
    // graph the view will ask for (workload nodes over 1 h) holds every demo workload, since
    // each proxy is scraped on its own schedule.
    poll(Duration::from_secs(180), || {
        let g = get_json(&format!(
            "{base}/api/v1/graph?type=workload&window=3600s&source=metrics"
        ));
        let nodes = g["nodes"].as_array()?;
        let has = |w: &str| nodes.iter().any(|n| n["name"] == w);
        EDGES.iter().all(|(s, d)| has(s) && has(d)).then_some(())
    });

    run_browser_script("ui_e2e.py", &base, "ui-screenshots", &[]);
}
