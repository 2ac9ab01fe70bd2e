//! The web UI's alerting in a real browser (Debian's `chromium` driven by Playwright through
//! `tests/ui/ui_alerts.py`).
//!
//! `alerts_view_overview_badge_and_topology_mark`: a `meshlens server` with a rule file (one
//! alert firing at once, one pending behind `for: 1h`, one recording rule) and remote-written
//! Istio metrics of `frontend` calling `checkout`; the browser checks the Alerts view (alerts
//! with annotations and since, rule groups with health, filters, its own poll), the overview's
//! badge on `checkout` only and the topology's mark on the `checkout` node only.
//!
//! `demo_slo_alert_on_the_topology`: `meshlens demo` ships SLOs for its services and injects
//! 503s on `/api/flaky` of `clover-server`; once that SLO's burn-rate alert fires, the browser
//! checks it in the Alerts view (with the service's SLO card: budget and burn rates) and as
//! the mark on the topology's `clover-server` node(s), whose panel names it.
//!
//! Screenshots land in `<target>/tmp/ui-alerts-screenshots/` and
//! `<target>/tmp/ui-alerts-demo-screenshots/` (printed below).

mod common;

use std::time::Duration;

use common::httpc::Conn;
use common::{get_json, poll, require_binary, require_python_module, run_browser_script, Server};

const RULES: &str = r#"groups:
  - name: checkout
    interval: 1s
    rules:
      - alert: CheckoutDown
        # `$labels` are the expression's labels (not the rule's), as in Prometheus.
        expr: label_replace(vector(1), "service", "checkout", "", "")
        labels:
          service: checkout
          severity: critical
        annotations:
          summary: checkout is down
          description: "{{ $labels.service }} has failed every request (value {{ $value }})."
      - alert: CheckoutSlow
        expr: vector(2)
        for: 1h
        labels:
          service: checkout
          severity: warning
        annotations:
          summary: checkout is slow
      - record: checkout:requests:rate1m
        expr: sum(rate(istio_requests_total{destination_workload="checkout"}[1m]))
"#;

/// The alert states the server reports, as (alertname, state) sorted.
fn alert_states(base: &str) -> Vec<(String, String)> {
    let v = get_json(&format!("{base}/api/v1/alerts"));
    let mut out: Vec<(String, String)> = v["data"]["alerts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn alerts_view_overview_badge_and_topology_mark() {
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
    let r = server
        .remote_write(
            &mut conn,
            vec![common::frontend_calls("checkout", "checkout", None)],
        )
        .expect("remote write");
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));

    // The server's own view first: the UI is judged on what the APIs hold.
    let want = [
        ("CheckoutDown".to_string(), "firing".to_string()),
        ("CheckoutSlow".to_string(), "pending".to_string()),
    ];
    poll(Duration::from_secs(60), || {
        (alert_states(&base) == want).then_some(())
    });
    poll(Duration::from_secs(60), || {
        let v = get_json(&format!("{base}/api/v1/rules"));
        let rules = v["data"]["groups"][0]["rules"].as_array()?.clone();
        (rules.len() == 3 && rules.iter().all(|r| r["health"] == "ok")).then_some(())
    });
    poll(Duration::from_secs(60), || {
        let g = get_json(&format!("{base}/api/v1/graph?type=workload&window=900s"));
        let names: Vec<&str> = g["nodes"]
            .as_array()?
            .iter()
            .filter_map(|n| n["name"].as_str())
            .collect();
        (names.contains(&"checkout") && names.contains(&"frontend")).then_some(())
    });

    run_browser_script("ui_alerts.py", &base, "ui-alerts-screenshots", &["rules"]);
}

/// The service whose fault (`/api/flaky`: 30 % aborted with 503) burns its error budget.
const FLAKY_SERVICE: &str = "clover-server";

#[test]
fn demo_slo_alert_on_the_topology() {
    if !require_binary("chromium") || !require_python_module("playwright") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_demo, base) = common::start_demo(dir.path(), "40");

    // The SLO's page alert needs 5 minutes of recorded rates at most and `for: 2m`.
    poll(Duration::from_secs(300), || {
        let v = get_json(&format!("{base}/api/v1/alerts"));
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["state"] == "firing" && a["labels"]["service"] == FLAKY_SERVICE)
            .then_some(())
    });
    run_browser_script(
        "ui_alerts.py",
        &base,
        "ui-alerts-demo-screenshots",
        &["demo", FLAKY_SERVICE],
    );
}
