//! The `remediations:` file: a good one parses; each mistake is refused naming the file, the
//! remediation and the field.

use std::collections::BTreeMap;
use std::time::Duration;

use meshlens_verify::remediate::config::{parse, Action};

const GOOD: &str = r#"
remediations:
  - name: drain-v2
    match: {alertname: HighErrorRate, service: http-lb}
    action: {type: shift-traffic, away_from: v2}
    cooldown: 10m
  - name: page
    match_re: {alertname: "anomaly|HighLatency", service: "http-.*"}
    action: {type: webhook, url: "http://127.0.0.1:1/hook", timeout: 2s}
    dry_run: true
  - name: stop-it
    match:
      labels: {alertname: Broken}
    action: {type: kill-switch, service: clover}
  - name: eject
    match: {alertname: Flaky}
    action: {type: tighten-outlier, host: clover.default.svc.cluster.local}
"#;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_good_file_parses_with_its_defaults() {
    let c = parse(GOOD, "rem.yml").unwrap();
    assert_eq!(c.remediations.len(), 4);
    let r = &c.remediations[0];
    assert_eq!(r.cooldown, Duration::from_secs(600));
    assert!(!r.dry_run);
    assert_eq!(
        r.action,
        Action::ShiftTraffic {
            service: None,
            namespace: None,
            away_from: "v2".into()
        }
    );
    assert!(r.matches(&labels(&[
        ("alertname", "HighErrorRate"),
        ("service", "http-lb"),
        ("severity", "page")
    ])));
    assert!(!r.matches(&labels(&[("alertname", "HighErrorRate"), ("service", "x")])));
    let page = &c.remediations[1];
    assert!(page.dry_run);
    assert_eq!(
        page.cooldown,
        Duration::from_secs(300),
        "the default cooldown"
    );
    assert!(page.matches(&labels(&[("alertname", "anomaly"), ("service", "http-lb")])));
    // Regexes are anchored, as Prometheus's =~.
    assert!(!page.matches(&labels(&[
        ("alertname", "anomalyX"),
        ("service", "http-lb")
    ])));
    assert!(!page.matches(&labels(&[
        ("alertname", "anomaly"),
        ("service", "xhttp-lb")
    ])));
    assert!(c.remediations[2].matches(&labels(&[("alertname", "Broken")])));
    assert!(matches!(
        c.remediations[1].action,
        Action::Webhook { timeout, .. } if timeout == Duration::from_secs(2)
    ));
    assert!(parse("", "empty.yml").unwrap().remediations.is_empty());
}

#[test]
fn mistakes_are_refused_naming_file_and_field() {
    let cases: &[(&str, &[&str])] = &[
        (
            "remediations:\n  - name: a\n    match: {alertname: X}\n    action: {type: kill-switch}\n    colldown: 5m\n",
            &["rem.yml", "remediations[0] (a)", "colldown"],
        ),
        (
            "remediations:\n  - name: a\n    match: {alertname: X}\n    action: {type: kill-switch}\n    cooldown: 5 minutes\n",
            &["rem.yml", "remediations[0] (a).cooldown", "5 minutes"],
        ),
        (
            "remediations:\n  - name: a\n    match: {alertname: X}\n    action: {type: kill-switch}\n    cooldown: 1.5m\n",
            &["cooldown"],
        ),
        (
            "remediations:\n  - name: a\n    match: {alertname: X}\n    action: {type: reboot}\n",
            &["remediations[0] (a).action.type", "reboot"],
        ),
        (
            "remediations:\n  - name: a\n    match: {alertname: X}\n    action: {type: shift-traffic, service: lb}\n",
            &["remediations[0] (a).action.away_from", "required"],
        ),
        (
            "remediations:\n  - name: a\n    match: {alertname: X}\n    action: {type: shift-traffic, away_from: v2, weight: 3}\n",
            &["remediations[0] (a).action", "weight"],
        ),
        (
            "remediations:\n  - name: a\n    match_re: {service: \"(\"}\n    action: {type: kill-switch}\n",
            &["remediations[0] (a).match_re.service", "regular expression"],
        ),
        (
            "remediations:\n  - name: a\n    action: {type: kill-switch}\n",
            &["remediations[0] (a)", "match"],
        ),
        (
            "remediations:\n  - name: a\n    match: {alertname: X}\n    action: {type: webhook, url: \"ftp://x\"}\n",
            &["remediations[0] (a).action.url", "ftp://x"],
        ),
        (
            "remediations:\n  - name: a\n    match: {alertname: X}\n    action: {type: kill-switch}\n    dry_run: maybe\n",
            &["remediations[0] (a).dry_run"],
        ),
        (
            "remediations:\n  - name: a\n    match: {alertname: X}\n    action: {type: kill-switch}\n  - name: a\n    match: {alertname: Y}\n    action: {type: kill-switch}\n",
            &["remediations[1].name", "twice"],
        ),
        (
            "remediations:\n  - match: {alertname: X}\n    action: {type: kill-switch}\n",
            &["remediations[0]", "name is required"],
        ),
        ("remediation: []\n", &["rem.yml", "remediation"]),
        ("remediations: [\n", &["rem.yml"]),
    ];
    for (text, wants) in cases {
        let err = parse(text, "rem.yml").expect_err(text).to_string();
        assert!(err.starts_with("rem.yml: "), "{err}");
        for w in *wants {
            assert!(err.contains(w), "{err:?} should name {w:?}");
        }
    }
}

#[test]
fn a_missing_file_is_named() {
    let err =
        meshlens_verify::remediate::config::load(std::path::Path::new("/nonexistent/rem.yml"))
            .unwrap_err()
            .to_string();
    assert!(err.contains("/nonexistent/rem.yml"), "{err}");
}
