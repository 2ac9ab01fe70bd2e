//! The rule manager: timers, all-or-nothing reloads keeping alert state, the API JSON and
//! self-metrics, alerts handed to the sink.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshlens_notifier::Alert;
use meshlens_promql::{Engine, EngineOptions};
use meshlens_rules::{AlertSink, ManagerOptions, RuleKind, RuleManager, RulesFilter};
use parking_lot::Mutex;
use support::{Mem, MemExt};

#[derive(Default)]
struct Collect(Mutex<Vec<Alert>>);

impl AlertSink for Collect {
    fn send(&self, alerts: Vec<Alert>) {
        self.0.lock().extend(alerts);
    }
}

const RULES: &str = r#"groups:
- name: fast
  interval: 100ms
  rules:
  - record: two
    expr: vector(2)
  - alert: AlwaysOn
    expr: vector(1)
    labels: {severity: ticket}
    annotations: {summary: "always"}
"#;

const CHANGED: &str = r#"groups:
- name: fast
  interval: 100ms
  rules:
  - record: two
    expr: vector(2)
  - alert: AlwaysOn
    expr: vector(1)
    labels: {severity: ticket}
    annotations: {summary: "always"}
  - record: three
    expr: vector(3)
"#;

/// Polls `f` every 20 ms for up to 20 s.
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metric(m: &RuleManager, name: &str) -> f64 {
    let mut out = String::new();
    m.render_metrics(&mut out);
    out.lines()
        .find(|l| l.starts_with(&format!("{name}{{rule_group=\"a.yml;fast\"}} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_groups_reloads_and_reports() {
    let mem = Arc::new(Mem::default());
    let sink = Arc::new(Collect::default());
    let opts = ManagerOptions {
        external_url: "http://ml:9090".into(),
        resend_delay: Duration::from_secs(60),
        ..ManagerOptions::default()
    };
    let m = RuleManager::new(
        opts,
        Arc::new(Engine::new(EngineOptions::default())),
        mem.clone(),
        mem.clone(),
        Some(sink.clone() as Arc<dyn AlertSink>),
    );

    let errs = m
        .load(vec![(
            "bad.yml".into(),
            "groups:\n- name: x\n  rules:\n  - record: r\n    expr: sum(\n".into(),
        )])
        .unwrap_err();
    assert!(
        errs[0]
            .to_string()
            .starts_with("bad.yml: 5:11: group \"x\", rule 1"),
        "{}",
        errs[0]
    );
    assert_eq!(
        m.rules_json(&RulesFilter::default()),
        serde_json::json!({"groups": []})
    );

    m.load(vec![("a.yml".into(), RULES.into())]).unwrap();
    let sent = until("an alert sent", || sink.0.lock().first().cloned()).await;
    assert_eq!(sent.labels.get("alertname"), Some("AlwaysOn"));
    assert_eq!(
        sent.generator_url,
        "http://ml:9090/graph?g0.expr=vector%281%29&g0.tab=1"
    );
    until("recorded samples", || {
        (!mem.named("two").is_empty()).then_some(())
    })
    .await;
    until("ALERTS once restored", || {
        (!mem.named("ALERTS").is_empty()).then_some(())
    })
    .await;

    let rules = m.rules_json(&RulesFilter::default());
    let g = &rules["groups"][0];
    assert_eq!(g["name"], "fast");
    assert_eq!(g["file"], "a.yml");
    assert_eq!(g["interval"], 0.1);
    assert_eq!(g["limit"], 0);
    assert!(g["lastEvaluation"].as_str().unwrap().ends_with('Z'));
    let rec = &g["rules"][0];
    assert_eq!(rec["type"], "recording");
    assert_eq!(rec["health"], "ok");
    assert_eq!(rec["query"], "vector(2)");
    assert!(rec.get("labels").is_none() && rec.get("lastError").is_none());
    let alert = &g["rules"][1];
    assert_eq!(alert["type"], "alerting");
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["duration"], 0.0);
    assert_eq!(alert["labels"], serde_json::json!({"severity": "ticket"}));
    assert_eq!(alert["alerts"][0]["value"], "1e+00");
    assert_eq!(alert["alerts"][0]["labels"]["alertname"], "AlwaysOn");
    let active_at = alert["alerts"][0]["activeAt"].clone();

    assert_eq!(RuleKind::from_param("Record"), Some(RuleKind::Recording));
    assert_eq!(RuleKind::from_param("alert"), Some(RuleKind::Alerting));
    assert_eq!(RuleKind::from_param("alerts"), None);
    let only_records = RulesFilter {
        kind: Some(RuleKind::Recording),
        ..RulesFilter::default()
    };
    let v = m.rules_json(&only_records);
    assert_eq!(v["groups"][0]["rules"].as_array().map(Vec::len), Some(1));
    let by_name = RulesFilter {
        rule_names: vec!["nope".into()],
        ..RulesFilter::default()
    };
    assert_eq!(m.rules_json(&by_name)["groups"], serde_json::json!([]));
    let by_file = RulesFilter {
        files: vec!["a.yml".into()],
        ..RulesFilter::default()
    };
    assert_eq!(
        m.rules_json(&by_file)["groups"].as_array().map(Vec::len),
        Some(1)
    );

    let alerts = m.alerts_json();
    assert_eq!(alerts["alerts"][0]["state"], "firing");
    assert_eq!(alerts["alerts"][0]["annotations"]["summary"], "always");

    assert_eq!(metric(&m, "prometheus_rule_group_rules"), 2.0);
    assert_eq!(metric(&m, "prometheus_rule_group_interval_seconds"), 0.1);
    let evals = metric(&m, "prometheus_rule_evaluations_total");
    assert!(evals >= 2.0);

    // A broken reload changes nothing: the old group keeps evaluating.
    assert!(m.load(vec![("a.yml".into(), "groups: [".into())]).is_err());
    until("more evaluations", || {
        (metric(&m, "prometheus_rule_evaluations_total") > evals + 4.0).then_some(())
    })
    .await;

    // A changed group keeps the state of its unchanged rules.
    m.load(vec![("a.yml".into(), CHANGED.into())]).unwrap();
    until("the new rule", || {
        (!mem.named("three").is_empty()).then_some(())
    })
    .await;
    let v = m.rules_json(&RulesFilter::default());
    assert_eq!(
        v["groups"][0]["rules"][1]["alerts"][0]["activeAt"],
        active_at
    );
    assert!(
        metric(&m, "prometheus_rule_evaluations_total") > evals,
        "counters carried over"
    );

    // Removed: gone from the APIs.
    m.load(vec![]).unwrap();
    assert_eq!(
        m.rules_json(&RulesFilter::default()),
        serde_json::json!({"groups": []})
    );
    assert_eq!(m.alerts_json(), serde_json::json!({"alerts": []}));
    m.stop().await;
}
