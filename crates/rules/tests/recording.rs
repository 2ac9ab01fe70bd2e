//! Recording rules: output naming and labels, errors, scalars, staleness, ordering, limits
//! and query_offset.

mod support;

use meshlens_model::is_stale_nan;
use meshlens_rules::{RuleHealth, RuleView};
use support::*;

fn health(g: &meshlens_rules::Group, i: usize) -> (RuleHealth, Option<String>) {
    match &g.rule_views()[i] {
        RuleView::Recording(r) => (r.health, r.last_error.clone()),
        RuleView::Alerting(a) => (a.health, a.last_error.clone()),
    }
}

#[test]
fn output_is_renamed_and_gets_rule_and_group_labels() {
    let f = Fixture::new();
    f.mem.add(
        &[("__name__", "req"), ("job", "a"), ("instance", "1")],
        T0,
        3.0,
    );
    f.mem.add(
        &[("__name__", "req"), ("job", "a"), ("instance", "2")],
        T0,
        4.0,
    );
    f.mem.add(
        &[("__name__", "req"), ("job", "b"), ("instance", "1")],
        T0,
        5.0,
    );
    let mut g = group(
        r#"groups:
- name: g
  labels: {team: sre, tier: group}
  rules:
  - record: job:req:sum
    expr: sum by (job) (req)
    labels: {tier: rule}
"#,
    );
    let out = g.eval(&f.ctx(), T0);
    assert_eq!(out.failures, 0);
    assert_eq!(out.samples_written, 2);
    let got = f.mem.named("job:req:sum");
    let want = [("a", 7.0), ("b", 5.0)];
    assert_eq!(got.len(), 2);
    for ((labels, samples), (job, v)) in got.iter().zip(want) {
        let expected = meshlens_model::Labels::from_pairs([
            ("__name__", "job:req:sum"),
            ("job", job),
            ("team", "sre"),
            ("tier", "rule"),
        ]);
        assert_eq!(labels, &expected);
        assert_eq!(samples.len(), 1);
        assert_eq!((samples[0].t, samples[0].v), (T0, v));
    }
    assert_eq!(health(&g, 0), (RuleHealth::Ok, None));
}

#[test]
fn same_labelset_after_relabelling_is_an_error() {
    let f = Fixture::new();
    f.mem.add(&[("__name__", "a"), ("job", "x")], T0, 1.0);
    f.mem.add(&[("__name__", "b"), ("job", "x")], T0, 2.0);
    let mut g =
        group("groups:\n- name: g\n  rules:\n  - record: r\n    expr: '{__name__=~\"a|b\"}'\n");
    let out = g.eval(&f.ctx(), T0);
    assert_eq!(out.failures, 1);
    assert!(f.mem.named("r").is_empty());
    let (h, err) = health(&g, 0);
    assert_eq!(h, RuleHealth::Err);
    assert_eq!(
        err.as_deref(),
        Some("vector contains metrics with the same labelset after applying rule labels")
    );
}

#[test]
fn a_scalar_result_is_one_sample() {
    let f = Fixture::new();
    let mut g = group("groups:\n- name: g\n  rules:\n  - record: answer\n    expr: 40 + 2\n");
    g.eval(&f.ctx(), T0);
    assert_eq!(f.mem.samples(&[("__name__", "answer")]).len(), 1);
    assert_eq!(f.mem.samples(&[("__name__", "answer")])[0].v, 42.0);
}

#[test]
fn series_a_rule_stops_producing_are_marked_stale() {
    let f = Fixture::new();
    f.mem.add(&[("__name__", "x"), ("i", "1")], T0, 10.0);
    f.mem.add(&[("__name__", "x"), ("i", "2")], T0, 10.0);
    f.mem
        .add(&[("__name__", "x"), ("i", "1")], T0 + 10 * S, 10.0);
    f.mem
        .add(&[("__name__", "x"), ("i", "2")], T0 + 10 * S, 1.0);
    let mut g = group("groups:\n- name: g\n  rules:\n  - record: big\n    expr: x > 5\n");
    g.eval(&f.ctx(), T0);
    g.eval(&f.ctx(), T0 + 10 * S);
    let gone = [("__name__", "big"), ("i", "2")];
    assert!(
        f.mem.stale_at(&gone, T0 + 10 * S),
        "{:?}",
        f.mem.samples(&gone)
    );
    let kept = f.mem.samples(&[("__name__", "big"), ("i", "1")]);
    assert!(kept.iter().all(|s| !is_stale_nan(s.v)));
    assert_eq!(kept.len(), 2);
}

#[test]
fn a_later_rule_sees_an_earlier_rules_output_at_the_same_time() {
    let f = Fixture::new();
    f.mem.add(&[("__name__", "x")], T0, 3.0);
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - record: first\n    expr: x * 2\n  - record: second\n    expr: first + 1\n",
    );
    g.eval(&f.ctx(), T0);
    assert_eq!(f.mem.samples(&[("__name__", "second")])[0].v, 7.0);
}

#[test]
fn too_many_series_for_the_group_limit_fail_the_rule() {
    let f = Fixture::new();
    f.mem.add(&[("__name__", "x"), ("i", "1")], T0, 1.0);
    f.mem.add(&[("__name__", "x"), ("i", "2")], T0, 1.0);
    let mut g = group("groups:\n- name: g\n  limit: 1\n  rules:\n  - record: y\n    expr: x\n");
    let out = g.eval(&f.ctx(), T0);
    assert_eq!(out.failures, 1);
    assert_eq!(
        health(&g, 0).1.as_deref(),
        Some("exceeded limit of 1 with 2 series")
    );
    assert!(f.mem.named("y").is_empty());
}

#[test]
fn query_offset_evaluates_and_writes_in_the_past() {
    let f = Fixture::new();
    // Only old data: without the offset the 5-minute lookback would not reach it.
    f.mem.add(&[("__name__", "x")], T0, 1.0);
    let ts = T0 + 5 * 60 * S + 30 * S;
    let mut plain = group("groups:\n- name: g\n  rules:\n  - record: plain\n    expr: x\n");
    plain.eval(&f.ctx(), ts);
    assert!(f.mem.named("plain").is_empty());
    let mut late =
        group("groups:\n- name: g\n  query_offset: 1m\n  rules:\n  - record: late\n    expr: x\n");
    late.eval(&f.ctx(), ts);
    let got = f.mem.samples(&[("__name__", "late")]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].t, ts - 60 * S);
}

#[test]
fn a_query_error_is_the_rules_last_error_and_the_group_goes_on() {
    let f = Fixture::new();
    f.mem.add(&[("__name__", "x")], T0, 1.0);
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - record: bad\n    expr: x[5m]\n  - record: good\n    expr: x\n",
    );
    let out = g.eval(&f.ctx(), T0);
    assert_eq!(out.failures, 1);
    assert_eq!(
        health(&g, 0),
        (
            RuleHealth::Err,
            Some("rule result is not a vector or scalar".into())
        )
    );
    assert_eq!(health(&g, 1).0, RuleHealth::Ok);
    assert_eq!(f.mem.samples(&[("__name__", "good")]).len(), 1);
}
