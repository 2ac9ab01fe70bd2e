//! `query_selectors`: every series selector of a query, in order, as `/api/v1/query_exemplars`
//! selects by (Prometheus's `ExtractSelectors`).

use meshlens_promql::query_selectors;

fn names(q: &str) -> Vec<String> {
    query_selectors(q)
        .unwrap()
        .iter()
        .map(|set| {
            let mut v: Vec<String> = set
                .iter()
                .map(|m| format!("{}{:?}{}", m.name, m.op, m.value))
                .collect();
            v.sort();
            v.join(",")
        })
        .collect()
}

#[test]
fn every_selector_in_order() {
    assert_eq!(names("up"), ["__name__Equalup"]);
    let q = r#"histogram_quantile(0.9, sum by (le) (rate(lat_bucket{job="a"}[5m]))) / on() group_left count(up offset 1h) + max_over_time((-x)[5m:1m])"#;
    let got = names(q);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].contains("__name__Equallat_bucket") && got[0].contains("jobEquala"));
    assert_eq!(got[1], "__name__Equalup");
    assert_eq!(got[2], "__name__Equalx");
    assert_eq!(names(r#"topk(3, {__name__=~"a|b"})"#).len(), 1);
    assert!(names("1 + 2").is_empty());
    assert!(names(r#"vector(time())"#).is_empty());
}

#[test]
fn bad_queries_fail_with_the_parse_error() {
    let e = query_selectors("sum(").unwrap_err().to_string();
    assert!(e.contains("parse error"), "{e}");
}
