//! `EngineOptions::closed_ranges`: Prometheus 2's windows, where a sample exactly at a
//! window's start counts, against the default left-open windows of Prometheus 3. The
//! closed-window expectations are what promtool 2.42 answers for the same series
//! (`x: 0+10x10`, `y: 1`, `c: _ _ _ 7 17 27`, one-minute steps) and queries.

mod support;

use meshlens_model::Labels;
use meshlens_promql::{Engine, EngineOptions, Value};
use support::MemStore;

const MIN: i64 = 60_000;

fn store() -> MemStore {
    let mut s = MemStore::default();
    let x = Labels::from_pairs([("__name__", "x")]);
    for k in 0..=10 {
        s.add(x.clone(), k * MIN, (k * 10) as f64);
    }
    s.add(Labels::from_pairs([("__name__", "y")]), 0, 1.0);
    let c = Labels::from_pairs([("__name__", "c")]);
    for (k, v) in [(3, 7.0), (4, 17.0), (5, 27.0)] {
        s.add(c.clone(), k * MIN, v);
    }
    s
}

fn engine(closed: bool) -> Engine {
    Engine::new(EngineOptions {
        closed_ranges: closed,
        ..Default::default()
    })
}

/// The values of an instant query's result (a vector, or a matrix's sample count).
fn values(closed: bool, q: &str, t: i64) -> Vec<f64> {
    let r = engine(closed)
        .instant_query(&store(), q, t)
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    match r.value {
        Value::Vector(v) => v.iter().map(|s| s.v).collect(),
        Value::Scalar { v, .. } => vec![v],
        Value::Matrix(m) => m.iter().map(|s| s.samples.len() as f64).collect(),
        Value::String { .. } => panic!("{q}: a string"),
    }
}

#[test]
fn range_selector_window_start() {
    assert_eq!(values(true, "count_over_time(x[5m])", 5 * MIN), [6.0]);
    assert_eq!(values(false, "count_over_time(x[5m])", 5 * MIN), [5.0]);
    // A bare range vector is cut by the same window.
    assert_eq!(values(true, "x[5m]", 5 * MIN), [6.0]);
    assert_eq!(values(false, "x[5m]", 5 * MIN), [5.0]);
    // `offset` moves the window, not the rule: [1m, 6m] at 7m offset 1m.
    assert_eq!(
        values(true, "count_over_time(x[5m] offset 1m)", 7 * MIN),
        [6.0]
    );
    assert_eq!(
        values(false, "count_over_time(x[5m] offset 1m)", 7 * MIN),
        [5.0]
    );
}

#[test]
fn lookback_window_start() {
    for q in ["y", "timestamp(y)"] {
        assert_eq!(values(true, q, 5 * MIN).len(), 1, "{q}: 5m old, closed");
        assert!(values(false, q, 5 * MIN).is_empty(), "{q}: 5m old, open");
        assert!(
            values(true, q, 5 * MIN + 1).is_empty(),
            "{q}: past the lookback"
        );
    }
    assert_eq!(values(true, "timestamp(y)", 5 * MIN), [0.0]);
}

#[test]
fn subquery_steps_include_the_window_start() {
    assert_eq!(values(true, "count_over_time(x[5m:1m])", 5 * MIN), [6.0]);
    assert_eq!(values(false, "count_over_time(x[5m:1m])", 5 * MIN), [5.0]);
    // Off the step grid both agree: steps 1m..5m inside [30s, 5m30s].
    assert_eq!(
        values(true, "count_over_time(x[5m:1m])", 5 * MIN + 30_000),
        [5.0]
    );
    assert_eq!(
        values(false, "count_over_time(x[5m:1m])", 5 * MIN + 30_000),
        [5.0]
    );
}

#[test]
fn range_query_steps_use_closed_windows() {
    let r = engine(true)
        .range_query(&store(), "count_over_time(x[2m])", 2 * MIN, 4 * MIN, MIN)
        .unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("not a matrix")
    };
    let got: Vec<f64> = m[0].samples.iter().map(|s| s.v).collect();
    assert_eq!(got, [3.0, 3.0, 3.0]);
}

/// A counter appearing inside the window, with its zero point 42s before its first sample
/// (under the 66s threshold, over half a step): Prometheus 2 extrapolates to the zero point
/// (27), Prometheus 3 half a step (25).
#[test]
fn rate_extrapolation_order() {
    assert_eq!(values(true, "increase(c[5m])", 5 * MIN), [27.0]);
    assert_eq!(values(false, "increase(c[5m])", 5 * MIN), [25.0]);
    // Far from zero (no zero-point cap) both extrapolate half a step at the start.
    assert_eq!(
        values(true, "increase(x[150s])", 5 * MIN),
        values(false, "increase(x[150s])", 5 * MIN)
    );
}
