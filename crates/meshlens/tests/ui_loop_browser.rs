//! The web UI's closed loop in a real browser (Debian's `chromium` driven by Playwright
//! through `tests/ui/ui_loop.py`): a `meshlens server --mesh DIR --mesh-write` with a
//! VirtualService `http-lb` split 90/10 over the subsets of its DestinationRule, and an event
//! log holding rollout steps, a verdict, an anomaly and a remediation (posted as a `meshlens
//! rollout` elsewhere would). The browser checks the Events view (rows, links to the moment,
//! the kind filter), the Config view (objects, YAML, the traffic-shifting wizard's preview and
//! apply, the new weights in the file on disk) and the Events view's undo of that change (the
//! file restored), and the Verify view (a report without traffic); then this test checks that
//! the file is back to its first text and the change is a config event with its undo id.
//! Remote-written Istio metrics of `frontend` calling `http-lb` v1 give the topology a node,
//! on which (and on whose charts) the script checks the anomaly marks.
//! Screenshots land in `<target>/tmp/ui-loop-screenshots/`.

mod common;

use std::time::Duration;

use common::httpc::Conn;
use common::{get_json, poll, require_binary, require_python_module, run_browser_script, Server};
use serde_json::{json, Value};

const MESH: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: http-lb, namespace: default}
spec:
  hosts: [http-lb]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: http-lb}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: http-lb, namespace: default}
spec:
  host: http-lb
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: http-lb, namespace: default}
spec:
  hosts: [http-lb]
  http:
  - name: split
    route:
    - {destination: {host: http-lb, subset: v1}, weight: 90}
    - {destination: {host: http-lb, subset: v2}, weight: 10}
    timeout: 5s
"#;

fn post_event(server: &Server, event: Value) -> Value {
    let mut conn = Conn::open(&server.addr).expect("connect");
    let body = serde_json::to_vec(&event).unwrap();
    let r = conn
        .request(
            "POST",
            "/api/v1/events",
            &[("Content-Type", "application/json")],
            &body,
        )
        .expect("POST /api/v1/events");
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 200, "POST /api/v1/events: {text}");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn events_config_wizard_and_verify_in_the_browser() {
    if !require_binary("chromium") || !require_python_module("playwright") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let mesh = tempfile::tempdir().unwrap();
    let file = mesh.path().join("http-lb.yaml");
    std::fs::write(&file, MESH).unwrap();
    let mesh_arg = mesh.path().to_str().unwrap().to_string();
    let server = Server::start(data.path(), &["--mesh", &mesh_arg, "--mesh-write"]);

    // What a rollout of http-lb v2 records, oldest first, a few minutes back.
    let t0 = common::now_ms() - 10 * 60_000;
    let events = [
        json!({"kind": "rollout", "severity": "info", "timeMs": t0, "service": "http-lb",
               "title": "canary weight 10%", "detail": {"service": "http-lb", "stable": "v1", "canary": "v2", "weight": 10, "step": 1}}),
        json!({"kind": "verdict", "severity": "info", "timeMs": t0 + 60_000, "service": "http-lb",
               "title": "canary v2 passed (score 100)",
               "detail": {"service": "http-lb", "stable": "v1", "canary": "v2",
                          "report": {"verdict": "pass", "score": 100.0, "metrics": []}}}),
        json!({"kind": "rollout", "severity": "info", "timeMs": t0 + 120_000, "service": "http-lb",
               "title": "canary weight 20%", "detail": {"service": "http-lb", "stable": "v1", "canary": "v2", "weight": 20, "step": 2}}),
        json!({"kind": "anomaly", "severity": "warning", "timeMs": t0 + 180_000, "service": "http-lb",
               "title": "http-lb p99 latency anomalous (score 3.2)", "detail": {"signal": "p99", "score": 3.2}}),
        json!({"kind": "remediation", "severity": "critical", "timeMs": t0 + 240_000, "service": "http-lb",
               "title": "shifted traffic away from v2", "detail": {"dryRun": true}}),
    ];
    for e in events {
        post_event(&server, e);
    }
    let mut conn = Conn::open(&server.url("")).expect("connect");
    let r = server
        .remote_write(
            &mut conn,
            vec![
                // v1 only: v2 gets none, so its canary is judged inconclusive, never a pass.
                common::frontend_calls("http-lb", "http-lb-v1", Some("v1")),
            ],
        )
        .expect("remote write");
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    // The topology is judged on the graph the server holds: wait for http-lb's node.
    poll(Duration::from_secs(60), || {
        let g = get_json(&server.url("/api/v1/graph?type=workload&window=900s"));
        g["nodes"]
            .as_array()?
            .iter()
            .any(|n| n["name"] == "http-lb-v1")
            .then_some(())
    });

    let file_arg = file.to_str().unwrap().to_string();
    run_browser_script(
        "ui_loop.py",
        &server.url(""),
        "ui-loop-screenshots",
        &[&file_arg],
    );

    // The script saw the wizard's weights on disk, then undid the change from the Events
    // view: the file is back to its first text, other objects and flow style included.
    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(after, MESH, "the undo did not restore the mesh file");
    let listed = get_json(&server.url("/api/v1/events?kind=config"));
    let undos: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["undo"].as_str())
        .collect();
    assert!(
        undos.iter().any(|u| !u.is_empty()),
        "the wizard's change is not a config event with an undo id: {listed}"
    );
}
