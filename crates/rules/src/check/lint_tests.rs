use super::*;

fn labels(q: &str) -> LabelSet {
    output_labels(&promql_parser::parser::parse(q).unwrap())
}

fn lacks(q: &str, name: &str) -> bool {
    labels(q).certainly_lacks(name)
}

#[test]
fn aggregations_keep_only_their_grouping() {
    assert!(lacks("sum by (a) (rate(x[5m]))", "instance"));
    assert!(!lacks("sum by (a) (rate(x[5m]))", "a"));
    assert!(lacks("sum(x)", "a"));
    assert!(lacks("sum without (instance) (x)", "instance"));
    assert!(!lacks("sum without (instance) (x)", "job"));
    assert!(
        lacks("sum by (a) (sum by (b) (x))", "a"),
        "a was dropped inside"
    );
    assert!(!lacks("topk(3, sum by (a) (x))", "a"));
    assert!(lacks("topk by (a) (3, sum by (b) (x))", "a"));
    assert!(!lacks("count_values by (a) (\"v\", x)", "v"));
    assert!(lacks("max by (a) (x) > 1", "b"));
}

#[test]
fn selectors_and_label_functions() {
    assert!(!lacks("up == 0", "instance"));
    assert!(!lacks("rate(x[5m]) > 1", "anything"));
    assert!(lacks("histogram_quantile(0.9, rate(b[5m]))", "le"));
    assert!(!lacks(
        "histogram_quantile(0.9, sum by (le, svc) (rate(b[5m])))",
        "svc"
    ));
    assert!(!lacks(
        "label_replace(sum(x), \"dst\", \"$1\", \"a\", \"(.*)\")",
        "dst"
    ));
    assert!(lacks("vector(1)", "a"));
    assert!(!lacks("absent(up{job=\"a\"})", "job"));
    assert!(lacks("absent(up{job=~\"a\"})", "job"));
    assert!(lacks("scalar(x) > bool 1", "a"));
}

#[test]
fn binary_operators_follow_vector_matching() {
    assert!(lacks("a > on (x) b", "y"));
    assert!(!lacks("a > on (x) b", "x"));
    assert!(lacks("a / ignoring (code) b", "code"));
    assert!(!lacks("a / on (x) group_left (owner) b", "owner"));
    assert!(
        !lacks("a / on (x) group_left b", "z"),
        "group_left keeps the left side"
    );
    assert!(!lacks("sum by (a) (x) / on (a) group_right (b) y", "b"));
    assert!(!lacks("sum by (a) (x) or sum by (b) (y)", "b"));
    assert!(lacks("sum by (a) (x) or sum by (b) (y)", "c"));
    assert!(lacks("sum by (a) (x) and y", "b"));
    assert!(!lacks("2 * x", "b"));
}

#[test]
fn finds_short_rate_windows() {
    let e = promql_parser::parser::parse(
        "sum(rate(a[1m])) / sum(increase(b[10m])) + irate(c[2m]) + rate(d[5m:1m]) + delta(e[1m])",
    )
    .unwrap();
    let got = short_rate_windows(&e, 4 * 60_000);
    assert_eq!(
        got,
        vec![("rate".to_string(), 60_000), ("irate".to_string(), 120_000)]
    );
    assert!(short_rate_windows(&e, 60_000).is_empty());
}

#[test]
fn finds_label_references_in_templates() {
    let refs = template_label_refs(
        "{{ $labels.instance }} of {{$labels.job}}: {{ index $labels \"pod\" }} {{ .Labels.ns }} $labels.outside {{ $value }}",
    );
    let want: Vec<&str> = vec!["instance", "job", "pod"];
    assert_eq!(refs.iter().map(String::as_str).collect::<Vec<_>>(), want);
    assert!(template_label_refs("{{ $labels.").is_empty());
    assert!(template_label_refs("plain text").is_empty());
    let in_range = r#"{{ range query "x" }}{{ .Labels.code }}{{ end }}"#;
    assert!(
        template_label_refs(in_range).is_empty(),
        "the dot is a query result there"
    );
}
