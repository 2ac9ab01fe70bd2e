//! Where `anchored` and `smoothed` may stand, as in Prometheus 3: on a series selector
//! (instant or range, before or after `offset` / `@`), never on a subquery or another
//! expression, never both on one selector; and a bare anchored or smoothed range selector
//! as a query's result.

mod support;

use meshlens_model::{FloatHistogram, Labels, Sample};
use meshlens_promql::{parse, Engine, EngineOptions, Value};
use support::MemStore;

fn parse_error(q: &str) -> String {
    parse(q).expect_err(q).to_string()
}

#[test]
fn modifiers_only_go_on_series_selectors() {
    for (q, want) in [
        (
            "x[5m:1m] anchored",
            "1:1: parse error: anchored modifier is not supported for subqueries",
        ),
        (
            "sum(rate(x[1m])[5m:] smoothed)",
            "1:5: parse error: smoothed modifier is not supported for subqueries",
        ),
        (
            "rate(x[1m]) smoothed",
            "1:1: parse error: smoothed modifier not implemented",
        ),
        (
            "1 + (x) anchored",
            "1:5: parse error: anchored modifier not implemented",
        ),
        (
            "\"a\" anchored",
            "1:1: parse error: anchored modifier not implemented",
        ),
        (
            "2 * x anchored smoothed",
            "1:5: parse error: anchored and smoothed modifiers cannot be used together",
        ),
        (
            "rate(x{a=\"b\"}[1m] smoothed offset 1m anchored)",
            "1:6: parse error: anchored and smoothed modifiers cannot be used together",
        ),
    ] {
        assert_eq!(parse_error(q), want, "{q}");
    }
    // The parser's own complaint about a range on a number comes first.
    assert!(parse_error("1[5m] anchored").contains("parse error"));
    assert!(!parse_error("1[5m] anchored").contains("anchored"));
    // Where no expression ends, the words are metric names, as in Prometheus.
    for q in [
        "x and anchored",
        "x + smoothed",
        "anchored smoothed",
        "sum by (anchored) (smoothed)",
        "offset + 1",
        "x anchored anchored",
        "x anchored offset 5m",
        "rate(x[1m] @ start() anchored)",
        "x offset -1m smoothed",
        "-x smoothed",
    ] {
        assert!(parse(q).is_ok(), "{q}: {:?}", parse(q));
    }
}

fn store() -> MemStore {
    let mut st = MemStore::default();
    let l = Labels::from_pairs([("__name__", "x"), ("a", "1")]);
    // 0, 10s, ..., 100s: the value is the time in seconds, squared.
    for k in 0..=10 {
        st.add(l.clone(), k * 10_000, (k * k) as f64 * 100.0);
    }
    let h = Labels::from_pairs([("__name__", "h")]);
    st.add_histogram(h, 10_000, FloatHistogram::default());
    st
}

fn matrix(q: &str, t: i64) -> Vec<(i64, f64)> {
    let e = Engine::new(EngineOptions::default());
    let r = e.instant_query(&store(), q, t).unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("{q}: not a matrix")
    };
    assert_eq!(m.len(), 1, "{q}");
    m[0].samples.iter().map(|s: &Sample| (s.t, s.v)).collect()
}

#[test]
fn bare_range_selectors_put_values_at_the_window_ends() {
    let v = |s: i64| (s * s) as f64;
    // Anchored: the last sample at or before the start, the samples inside, the last one.
    let inner: Vec<(i64, f64)> = (1..=6).map(|k| (k * 10_000, v(k * 10))).collect();
    let mut want = vec![(5_000, v(0))];
    want.extend(&inner);
    want.push((65_000, v(60)));
    assert_eq!(matrix("x[1m] anchored", 65_000), want);
    // Smoothed: interpolated at both ends (towards the sample after the end too).
    let mut want = vec![(5_000, (v(0) + v(10)) / 2.0)];
    want.extend(&inner);
    want.push((65_000, (v(60) + v(70)) / 2.0));
    assert_eq!(matrix("x[1m] smoothed", 65_000), want);
    // A sample right at an end gives that end its value, once.
    let mut want = vec![(0, v(0))];
    want.extend((1..=5).map(|k| (k * 10_000, v(k * 10))));
    want.push((60_000, v(60)));
    assert_eq!(matrix("x[1m] anchored", 60_000), want);
    assert_eq!(matrix("(x[1m] smoothed)", 60_000), want);
    // The offset moves the window.
    let mut want = vec![(5_000, v(0))];
    want.extend(&inner);
    want.push((65_000, v(60)));
    assert_eq!(matrix("x[1m] offset 1m anchored", 125_000), want);

    let e = Engine::new(EngineOptions::default());
    let err = e
        .instant_query(&store(), "h[1m] anchored", 20_000)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("anchored modifier is not supported with histograms"),
        "{err}"
    );
}

#[test]
fn anchored_instant_selectors_select_as_plain_ones() {
    let e = Engine::new(EngineOptions::default());
    let st = store();
    for t in [5_000, 65_000, 500_000] {
        let plain = e.instant_query(&st, "x", t).unwrap();
        assert_eq!(e.instant_query(&st, "x anchored", t).unwrap(), plain);
    }
}
