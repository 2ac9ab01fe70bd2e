//! Alerting rules: labels and templates, the pending/firing/resolved state machine,
//! keep_firing_for, ALERTS / ALERTS_FOR_STATE, notifications and reload state.

mod support;

use std::time::Duration;

use meshlens_model::{is_stale_nan, Labels};
use meshlens_rules::{AlertState, AlertView, Group};
use support::*;

const MIN: i64 = 60 * S;

fn alerts(g: &Group) -> Vec<AlertView> {
    g.alerting_rules()
        .into_iter()
        .flat_map(|r| r.alerts)
        .collect()
}

fn up(f: &Fixture, t: i64, v: f64) {
    f.mem.add(
        &[("__name__", "up"), ("job", "api"), ("instance", "h:1")],
        t,
        v,
    );
}

const DOWN: &str = r#"groups:
- name: g
  labels: {team: sre}
  rules:
  - alert: Down
    expr: up == 0
    for: 1m
    labels:
      severity: page
      who: "{{ $labels.job }}-oncall"
    annotations:
      summary: "{{ $labels.instance }} down, value {{ $value }}"
"#;

#[test]
fn alert_labels_and_annotations_come_from_series_rule_and_group() {
    let f = Fixture::new();
    up(&f, T0, 0.0);
    let mut g = group(DOWN);
    g.eval(&f.ctx(), T0);
    let a = alerts(&g);
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].labels,
        Labels::from_pairs([
            ("alertname", "Down"),
            ("instance", "h:1"),
            ("job", "api"),
            ("severity", "page"),
            ("team", "sre"),
            ("who", "api-oncall"),
        ])
    );
    assert_eq!(
        a[0].annotations,
        [("summary".to_string(), "h:1 down, value 0".to_string())].into()
    );
    assert_eq!(a[0].state, AlertState::Pending);
    assert_eq!(a[0].active_at_ms, T0);
}

#[test]
fn pending_then_firing_after_for_with_alerts_series() {
    let f = Fixture::new();
    let mut g = group(DOWN);
    let pending: Vec<(&str, &str)> = vec![
        ("__name__", "ALERTS"),
        ("alertname", "Down"),
        ("alertstate", "pending"),
        ("instance", "h:1"),
        ("job", "api"),
        ("severity", "page"),
        ("team", "sre"),
        ("who", "api-oncall"),
    ];
    let mut firing = pending.clone();
    firing[2] = ("alertstate", "firing");
    for (i, t) in [T0, T0 + 30 * S, T0 + MIN].into_iter().enumerate() {
        up(&f, t, 0.0);
        g.eval(&f.ctx(), t);
        let want = if i < 2 {
            AlertState::Pending
        } else {
            AlertState::Firing
        };
        assert_eq!(alerts(&g)[0].state, want, "at step {i}");
    }
    let p = f.mem.samples(&pending);
    assert_eq!(p.len(), 3, "{p:?}");
    assert_eq!((p[0].v, p[1].v), (1.0, 1.0));
    assert!(
        is_stale_nan(p[2].v),
        "pending ends with a stale marker when firing"
    );
    let fi = f.mem.samples(&firing);
    assert_eq!(fi.len(), 1);
    assert_eq!((fi[0].t, fi[0].v), (T0 + MIN, 1.0));
    let for_state = f.mem.named("ALERTS_FOR_STATE");
    assert_eq!(for_state.len(), 1);
    assert!(for_state[0].0.get("alertstate").is_none());
    assert!(for_state[0].1.iter().all(|s| s.v == (T0 / 1000) as f64));
    assert_eq!(alerts(&g)[0].fired_at_ms, Some(T0 + MIN));
}

#[test]
fn for_zero_fires_at_once_and_a_resolved_alert_is_resent_then_forgotten() {
    let f = Fixture::new();
    let mut g = group(
        "groups:\n- name: g\n  interval: 10s\n  rules:\n  - alert: Down\n    expr: up == 0\n",
    );
    let resend = Duration::from_secs(60);
    up(&f, T0, 0.0);
    g.eval(&f.ctx(), T0);
    assert_eq!(alerts(&g)[0].state, AlertState::Firing);
    let sent = g.alerts_to_send(T0, resend, "http://x");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].starts_at_ms, T0);
    assert_eq!(
        sent[0].ends_at_ms,
        Some(T0 + 4 * MIN),
        "4 x max(resend, interval)"
    );
    assert_eq!(
        sent[0].generator_url,
        "http://x/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
    );
    assert!(g.alerts_to_send(T0 + 30 * S, resend, "http://x").is_empty());

    // Resolves: ALERTS goes stale; the resolution is sent at once, ending when it resolved.
    let t1 = T0 + 40 * S;
    up(&f, t1, 1.0);
    g.eval(&f.ctx(), t1);
    assert!(alerts(&g).is_empty(), "resolved alerts are not listed");
    let firing = [
        ("__name__", "ALERTS"),
        ("alertname", "Down"),
        ("alertstate", "firing"),
        ("instance", "h:1"),
        ("job", "api"),
    ];
    assert!(f.mem.stale_at(&firing, t1));
    let sent = g.alerts_to_send(t1, resend, "http://x");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].ends_at_ms, Some(t1));
    // Re-sent every resend delay while kept ...
    assert!(g.alerts_to_send(t1 + 30 * S, resend, "").is_empty());
    assert_eq!(g.alerts_to_send(t1 + 61 * S, resend, "").len(), 1);
    // ... for 15 minutes after resolving, then dropped.
    let mut t = t1;
    while t < t1 + 15 * MIN {
        t += 10 * S;
        up(&f, t, 1.0);
        g.eval(&f.ctx(), t);
    }
    assert_eq!(
        g.alerts_to_send(t, resend, "").len(),
        1,
        "still kept at 15 min"
    );
    t += 10 * S;
    up(&f, t, 1.0);
    g.eval(&f.ctx(), t);
    assert!(g.alerts_to_send(t + 2 * MIN, resend, "").is_empty());
}

#[test]
fn pending_alerts_are_never_sent_and_vanish_without_resolution() {
    let f = Fixture::new();
    let mut g = group(DOWN);
    up(&f, T0, 0.0);
    g.eval(&f.ctx(), T0);
    assert!(g.alerts_to_send(T0, Duration::from_secs(60), "").is_empty());
    up(&f, T0 + 10 * S, 1.0);
    g.eval(&f.ctx(), T0 + 10 * S);
    assert!(alerts(&g).is_empty());
    assert!(g
        .alerts_to_send(T0 + 10 * S, Duration::from_secs(60), "")
        .is_empty());
}

#[test]
fn keep_firing_for_holds_a_firing_alert_after_its_condition_ends() {
    let f = Fixture::new();
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up == 0\n    keep_firing_for: 30s\n",
    );
    up(&f, T0, 0.0);
    g.eval(&f.ctx(), T0);
    for t in [T0 + 10 * S, T0 + 20 * S, T0 + 30 * S] {
        up(&f, t, 1.0);
        g.eval(&f.ctx(), t);
        let a = alerts(&g);
        assert_eq!(a.len(), 1, "kept at {}", t - T0);
        assert_eq!(a[0].state, AlertState::Firing);
        assert_eq!(a[0].keep_firing_since_ms, Some(T0 + 10 * S));
    }
    up(&f, T0 + 40 * S, 1.0);
    g.eval(&f.ctx(), T0 + 40 * S);
    assert!(
        alerts(&g).is_empty(),
        "30 s after the condition ended it resolves"
    );
}

#[test]
fn too_many_alerts_for_the_limit_clear_the_rule() {
    let f = Fixture::new();
    f.mem.add(&[("__name__", "up"), ("i", "1")], T0, 0.0);
    f.mem.add(&[("__name__", "up"), ("i", "2")], T0, 0.0);
    let mut g =
        group("groups:\n- name: g\n  limit: 1\n  rules:\n  - alert: Down\n    expr: up == 0\n");
    let out = g.eval(&f.ctx(), T0);
    assert_eq!(out.failures, 1);
    let r = &g.alerting_rules()[0];
    assert!(r.alerts.is_empty());
    assert_eq!(
        r.last_error.as_deref(),
        Some("exceeded limit of 1 with 2 alerts")
    );
    assert!(f.mem.named("ALERTS").is_empty());
}

#[test]
fn alerts_with_the_same_labels_after_templating_are_an_error() {
    let f = Fixture::new();
    f.mem.add(&[("__name__", "up"), ("i", "1")], T0, 0.0);
    f.mem.add(&[("__name__", "up"), ("i", "2")], T0, 0.0);
    let mut g = group("groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: sum by (i) (up) == 0\n    labels: {i: same}\n");
    g.eval(&f.ctx(), T0);
    assert_eq!(
        g.alerting_rules()[0].last_error.as_deref(),
        Some("vector contains metrics with the same labelset after applying alert labels")
    );
}

#[test]
fn reload_keeps_alert_state_and_marks_removed_rules_series_stale() {
    let f = Fixture::new();
    f.mem.add(&[("__name__", "x")], T0, 1.0);
    let two = "groups:\n- name: g\n  rules:\n  - record: gone\n    expr: x\n  - alert: Down\n    expr: up == 0\n    for: 1m\n";
    let mut old = group(two);
    up(&f, T0, 0.0);
    old.eval(&f.ctx(), T0);
    let mut new =
        group("groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up == 0\n    for: 1m\n");
    new.copy_state_from(&old);
    up(&f, T0 + MIN, 0.0);
    f.mem.add(&[("__name__", "x")], T0 + MIN, 1.0);
    new.eval(&f.ctx(), T0 + MIN);
    let a = alerts(&new);
    assert_eq!(a[0].active_at_ms, T0, "the pending time carried over");
    assert_eq!(a[0].state, AlertState::Firing);
    assert!(f.mem.stale_at(&[("__name__", "gone")], T0 + MIN));
}

#[test]
fn await_restore_holds_back_alerts_series_until_restored() {
    let f = Fixture::new();
    let mut g = group(DOWN);
    g.await_restore();
    up(&f, T0, 0.0);
    g.eval(&f.ctx(), T0);
    assert!(f.mem.named("ALERTS").is_empty());
    g.restore_for_state(
        &f.ctx(),
        T0,
        Duration::from_secs(3600),
        Duration::from_secs(10),
    );
    up(&f, T0 + 10 * S, 0.0);
    g.eval(&f.ctx(), T0 + 10 * S);
    assert_eq!(f.mem.named("ALERTS").len(), 1);
}

#[test]
fn annotations_can_query_and_see_external_labels_and_errors_render_as_text() {
    let f = Fixture::new();
    up(&f, T0, 0.0);
    f.mem.add(
        &[("__name__", "up"), ("job", "web"), ("instance", "h:2")],
        T0,
        1.0,
    );
    let mut g = group(
        r#"groups:
- name: g
  rules:
  - alert: Down
    expr: up == 0
    annotations:
      up_total: '{{ with query "sum(up)" }}{{ . | first | value }}{{ end }}'
      where: '{{ $externalLabels.cluster }}'
      broken: '{{ humanize "abc" }}'
"#,
    );
    g.eval(&f.ctx(), T0);
    let a = &alerts(&g)[0].annotations;
    assert_eq!(a.get("up_total").map(String::as_str), Some("1"));
    assert_eq!(a.get("where").map(String::as_str), Some("eu1"));
    let broken = a.get("broken").map_or("", String::as_str);
    assert!(
        broken.starts_with("<error expanding template: "),
        "{broken}"
    );
}
