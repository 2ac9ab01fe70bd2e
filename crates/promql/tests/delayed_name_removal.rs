//! Prometheus's `promql-delayed-name-removal`: with it on, operations that drop the metric
//! name mark the series instead and the names go when the result is complete; off (the
//! default, as in Prometheus) they go at once.

mod support;

use meshlens_model::Labels;
use meshlens_promql::{Engine, EngineOptions, Value};
use support::MemStore;

fn store() -> MemStore {
    let mut st = MemStore::default();
    for (name, env, k) in [
        ("a_total", "1", 1.0),
        ("b_total", "1", 2.0),
        ("a_total", "2", 3.0),
    ] {
        let l = Labels::from_pairs([("__name__", name), ("env", env)]);
        for t in 0..=10 {
            st.add(l.clone(), t * 60_000, k * t as f64 * 60.0);
        }
    }
    for (le, k) in [("1", 1.0), ("2", 3.0), ("+Inf", 4.0)] {
        let l = Labels::from_pairs([("__name__", "h_bucket"), ("le", le)]);
        for t in 0..=10 {
            st.add(l.clone(), t * 60_000, k * t as f64);
        }
    }
    st
}

fn engine(delayed: bool) -> Engine {
    Engine::new(EngineOptions::default()).with_delayed_name_removal(delayed)
}

const AT: i64 = 600_000;

/// The instant result as `labels value` lines, sorted.
fn instant(e: &Engine, q: &str) -> Result<Vec<String>, String> {
    let r = e
        .instant_query(&store(), q, AT)
        .map_err(|e| e.to_string())?;
    let Value::Vector(v) = r.value else {
        panic!("{q}: not a vector")
    };
    let mut out: Vec<String> = v.iter().map(|s| format!("{} {}", s.labels, s.v)).collect();
    out.sort();
    Ok(out)
}

fn ok(e: &Engine, q: &str) -> Vec<String> {
    instant(e, q).unwrap_or_else(|err| panic!("{q}: {err}"))
}

#[test]
fn off_by_default_names_go_at_once() {
    let e = Engine::new(EngineOptions::default());
    assert!(!e.delayed_name_removal());
    // rate drops the names at once: both env="1" series end up equal.
    let err = instant(&e, r#"rate({env="1"}[5m])"#).unwrap_err();
    assert!(err.contains("same labelset"), "{err}");
    // Nothing left for label_replace to copy.
    assert_eq!(
        ok(
            &e,
            r#"label_replace(rate(a_total{env="2"}[5m]), "n", "$1", "__name__", "(.+)")"#
        ),
        [r#"{env="2"} 3"#]
    );
}

#[test]
fn names_go_at_the_end() {
    let e = engine(true);
    assert!(e.delayed_name_removal());
    assert!(e
        .with_timeout(std::time::Duration::from_secs(1))
        .delayed_name_removal());
    for (q, want) in [
        // Functions, unary minus, arithmetic with a scalar, bool comparisons: the name goes.
        (r#"rate(a_total{env="2"}[5m])"#, vec![r#"{env="2"} 3"#]),
        (r#"-a_total{env="2"}"#, vec![r#"{env="2"} -1800"#]),
        (r#"a_total{env="2"} * 2"#, vec![r#"{env="2"} 3600"#]),
        (r#"a_total{env="2"} > bool 1"#, vec![r#"{env="2"} 1"#]),
        // A filtering comparison with a scalar keeps the name, and a mark it had.
        (r#"a_total{env="2"} > 1"#, vec![r#"a_total{env="2"} 1800"#]),
        (r#"rate(a_total{env="2"}[5m]) > 1"#, vec![r#"{env="2"} 3"#]),
        // Later label functions and name matchers still see it.
        (
            r#"label_replace(rate({env="1"}[5m]), "n", "$1", "__name__", "(.+)")"#,
            vec![r#"{env="1", n="a_total"} 1"#, r#"{env="1", n="b_total"} 2"#],
        ),
        (
            r#"label_replace(rate({env="1"}[5m]), "__name__", "r_$1", "__name__", "(.+)")"#,
            vec![r#"r_a_total{env="1"} 1"#, r#"r_b_total{env="1"} 2"#],
        ),
        (
            r#"label_join(rate(a_total{env="2"}[5m]), "__name__", "_", "__name__", "env")"#,
            vec![r#"a_total_2{env="2"} 3"#],
        ),
        // Grouping by the name groups by it; the name goes if it goes for any member.
        (r#"sum by (__name__) (rate(a_total[5m]))"#, vec![r#"{} 4"#]),
        (
            r#"label_replace(sum by (__name__) (rate(a_total[5m])), "__name__", "$1", "__name__", "(.+)")"#,
            vec![r#"a_total{} 4"#],
        ),
        (
            r#"sum by (__name__) (a_total{env="2"} or rate(b_total[5m]))"#,
            vec![r#"a_total{} 1800"#, r#"{} 2"#],
        ),
        (
            r#"sum(rate({env="1"}[5m])) by (env)"#,
            vec![r#"{env="1"} 3"#],
        ),
        // last_over_time keeps the name, unless its subquery's series had lost it.
        (
            r#"last_over_time(a_total{env="2"}[5m])"#,
            vec![r#"a_total{env="2"} 1800"#],
        ),
        (
            r#"last_over_time(abs(a_total{env="2"})[5m:])"#,
            vec![r#"{env="2"} 1800"#],
        ),
        // Buckets keep their names until histogram_quantile.
        (
            "histogram_quantile(0.5, rate(h_bucket[5m]))",
            vec!["{} 1.5"],
        ),
    ] {
        assert_eq!(ok(&e, q), want, "{q}");
    }
    // Two series left equal at the end still fail.
    let err = instant(&e, r#"sum by (__name__) (rate({env="1"}[5m]))"#).unwrap_err();
    assert!(err.contains("same labelset"), "{err}");
}

#[test]
fn range_results_merge_series_left_equal() {
    let e = engine(true);
    let mut st = MemStore::default();
    st.add(Labels::from_pairs([("__name__", "m_a")]), 0, 1.0);
    st.add(Labels::from_pairs([("__name__", "m_b")]), 0, 3.0);
    st.add(Labels::from_pairs([("__name__", "m_b")]), 600_000, 4.0);
    let r = e
        .range_query(&st, "-m_a or -m_b", 0, 1_200_000, 600_000)
        .unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("not a matrix")
    };
    assert_eq!(m.len(), 1);
    assert!(m[0].labels.is_empty());
    let got: Vec<(i64, f64)> = m[0].samples.iter().map(|s| (s.t, s.v)).collect();
    assert_eq!(got, [(0, -1.0), (600_000, -4.0)]);
    // A subquery as the result: its series lose their marked names too.
    let r = e.instant_query(&st, "abs(m_b)[10m:5m]", 600_000).unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("not a matrix")
    };
    assert_eq!(m.len(), 1);
    assert!(m[0].labels.is_empty(), "{:?}", m[0].labels);
}
