//! `format_query` (`/api/v1/format_query`) prints Prometheus 3's syntax as Prometheus prints
//! it: trim operators with their own matching, `anchored` / `smoothed` after a range
//! selector's range or an instant selector's `@` (always before `offset`), the words as
//! metric and label names, and none of the extended-syntax rewrite's markers. What it prints
//! parses back to a query with the same result.

mod support;

use meshlens_model::histogram::BucketSpan;
use meshlens_model::{FloatHistogram, Labels};
use meshlens_promql::{format_query, Engine, EngineOptions};
use support::MemStore;

fn f(q: &str) -> String {
    format_query(q).unwrap_or_else(|e| panic!("{q}: {e}"))
}

#[test]
fn trim_operators_print_with_their_matching() {
    for (q, want) in [
        ("h </ 2", "h </ 2"),
        ("h>/-Inf", "h >/ -Inf"),
        (
            "h </ on(job) group_left(inst) f",
            "h </ on (job) group_left (inst) f",
        ),
        ("h </ on(job) group_left f", "h </ on (job) group_left () f"),
        (
            "h >/ ignoring(inst) group_left f",
            "h >/ ignoring (inst) group_left () f",
        ),
        ("h >/ ignoring(inst) f", "h >/ ignoring (inst) f"),
        ("h >/ on(job) f", "h >/ on (job) f"),
        (
            "h </ on(job) GROUP_RIGHT(a, b) f",
            "h </ on (job) group_right (a, b) f",
        ),
        (
            "h </ ignoring() group_right() f",
            "h </ ignoring () group_right () f",
        ),
        (
            "histogram_count(a </ (b >/ on(x) group_left(y) c))",
            "histogram_count(a </ (b >/ on (x) group_left (y) c))",
        ),
        // Prometheus's grammar needs the empty `ignoring()` before a group modifier.
        (
            "a < ignoring() group_left b",
            "a < ignoring () group_left () b",
        ),
        (
            "a > bool ignoring() group_right(c) b",
            "a > bool ignoring () group_right (c) b",
        ),
        (
            r#"h{le="<"} </ on("a>b") f"#,
            r#"h{le="<"} </ on ("a>b") f"#,
        ),
    ] {
        assert_eq!(f(q), want, "{q}");
    }
}

#[test]
fn modifiers_print_where_prometheus_prints_them() {
    for (q, want) in [
        ("x[5m] anchored", "x[5m] anchored"),
        ("x smoothed", "x smoothed"),
        (r#"{a="1"} anchored"#, r#"{a="1"} anchored"#),
        // Range selectors: right after the range, then `@`, then `offset`.
        (
            r#"rate(x{a="1"}[5m] offset 1m anchored)"#,
            r#"rate(x{a="1"}[5m] anchored offset 1m)"#,
        ),
        (
            "rate(x[5m] @ 100 offset 1m smoothed)",
            "rate(x[5m] smoothed @ 100.000 offset 1m)",
        ),
        (
            "rate(x[5m] offset -1m @ end() anchored)",
            "rate(x[5m] anchored @ end() offset -1m)",
        ),
        // Instant selectors: after `@`, before `offset`.
        (
            "x offset 1m @ 100 anchored",
            "x @ 100.000 anchored offset 1m",
        ),
        ("x anchored offset 5m", "x anchored offset 5m"),
        ("x @ start() smoothed", "x @ start() smoothed"),
        (
            r#"x{a="1", b=~"2|3"} @ 100 smoothed offset 1m"#,
            r#"x{a="1",b=~"2|3"} @ 100.000 smoothed offset 1m"#,
        ),
        ("-x smoothed", "-x smoothed"),
        (
            "rate(x[1m] anchored) / rate(y[1m] smoothed)",
            "rate(x[1m] anchored) / rate(y[1m] smoothed)",
        ),
        // The words as metric and label names.
        ("anchored", "anchored"),
        ("smoothed + anchored", "smoothed + anchored"),
        (
            r#"smoothed{a="1"}[5m] anchored"#,
            r#"smoothed{a="1"}[5m] anchored"#,
        ),
        ("rate(ANCHORED[5m] SMOOTHED)", "rate(ANCHORED[5m] smoothed)"),
        (r#"{__name__="anchored"}"#, r#"{__name__="anchored"}"#),
        (
            "sum by (anchored) (smoothed)",
            "sum by (anchored) (smoothed)",
        ),
        (r#"{anchored="x"} smoothed"#, r#"{anchored="x"} smoothed"#),
        // Marker text in strings stays as written.
        (
            r#"x{a="__meshlens_anchored__=\"\""}"#,
            r#"x{a="__meshlens_anchored__=\"\""}"#,
        ),
        (
            r#"label_replace(x anchored, "__meshlens_smoothed__", "", "", "")"#,
            r#"label_replace(x anchored, "__meshlens_smoothed__", "", "", "")"#,
        ),
    ] {
        assert_eq!(f(q), want, "{q}");
    }
    // Prettified over several lines, the modifier stays with its selector.
    let long = "sum(rate(a_rather_long_metric_name_for_the_line_to_break{job=\"api\", \
                instance=\"host\"}[5m] offset 1m anchored)) by (job)";
    let printed = f(long);
    assert!(printed.contains('\n'), "{printed}");
    assert!(
        printed.contains(r#"{instance="host",job="api"}[5m] anchored offset 1m"#),
        "{printed}"
    );
}

/// Native histograms with buckets 1, 2, 4, 8 (schema 0), and floats.
fn store() -> MemStore {
    let mut st = MemStore::default();
    let hist = |k: f64| FloatHistogram {
        schema: 0,
        count: 10.0 * k,
        sum: 35.0 * k,
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 4,
        }],
        positive_buckets: vec![1.0 * k, 2.0 * k, 3.0 * k, 4.0 * k],
        ..Default::default()
    };
    for (inst, k) in [("1", 1.0), ("2", 2.0)] {
        let l = Labels::from_pairs([("__name__", "h"), ("job", "a"), ("inst", inst)]);
        for t in 0..=20 {
            st.add_histogram(l.clone(), t * 10_000, hist(k * (1 + t) as f64));
        }
    }
    for (name, a, k) in [
        ("x", "1", 1.0),
        ("x", "2", 3.0),
        ("anchored", "1", 5.0),
        ("smoothed", "1", 7.0),
    ] {
        let l = Labels::from_pairs([("__name__", name), ("a", a), ("job", "a")]);
        for t in 0..=20 {
            st.add(l.clone(), t * 10_000 + 3_000, k * (t * t) as f64);
        }
    }
    st.add(
        Labels::from_pairs([("__name__", "f"), ("job", "a")]),
        0,
        3.0,
    );
    st
}

#[test]
fn printed_queries_give_the_same_results() {
    let e = Engine::new(EngineOptions::default());
    let st = store();
    for q in [
        "h </ 3",
        "h >/ 1.5",
        "h </ on(job) group_left(a) f",
        "h >/ ignoring(inst) group_left f",
        "histogram_count(h </ on(job) group_left f)",
        "rate(x[1m] anchored)",
        r#"increase(x{a="1"}[1m] offset 30s smoothed)"#,
        "rate(x[1m] @ 150 offset 20s anchored)",
        "delta(x[45s] offset -10s @ 100 smoothed)",
        "x @ 90 offset 10s smoothed",
        "x offset 15s anchored",
        r#"sum by (a) (rate(x{a=~".+"}[1m] smoothed))"#,
        "anchored + smoothed",
        "rate(anchored[1m] anchored) + on(a) smoothed",
        "sum by (anchored, a) (rate(smoothed[1m] smoothed))",
        "x[1m] smoothed",
    ] {
        let printed = f(q);
        assert!(!printed.contains("__meshlens_"), "{q}: {printed}");
        assert_eq!(f(&printed), printed, "{q}: printing is not stable");
        for t in [100_000, 155_000, 200_000] {
            let want = e
                .instant_query(&st, q, t)
                .unwrap_or_else(|e| panic!("{q}: {e}"));
            let got = e
                .instant_query(&st, &printed, t)
                .unwrap_or_else(|e| panic!("{printed}: {e}"));
            assert_eq!(got, want, "{q} printed as {printed}, at {t}");
        }
        if q.ends_with(']') || q.ends_with("smoothed") && q.starts_with("x[") {
            continue;
        }
        let want = e.range_query(&st, q, 60_000, 200_000, 15_000).unwrap();
        let got = e
            .range_query(&st, &printed, 60_000, 200_000, 15_000)
            .unwrap();
        assert_eq!(got, want, "{q} printed as {printed}, range");
    }
}

#[test]
fn lines_break_by_the_printed_length() {
    // 97 characters as printed: one line, though the rewritten text is far longer.
    let q = "histogram_count(h </ on(job) group_left(inst) f) + rate(x{a=\"1\"}[5m] anchored offset 1m) > 1";
    let printed = f(q);
    assert!(!printed.contains('\n'), "{printed}");
    assert!(printed.len() <= 100, "{printed}");
    // Past 100 characters the expression splits, the trim operator on its own line.
    let q =
        "histogram_count(a_histogram_with_a_long_name{job=\"api\"} </ on(job) group_left(inst) \
             the_cut_with_a_long_name{job=\"api\"})";
    assert_eq!(
        f(q),
        "histogram_count(\n    a_histogram_with_a_long_name{job=\"api\"}\n  </ on (job) group_left (inst)\n    \
         the_cut_with_a_long_name{job=\"api\"}\n)"
    );
}
