//! End-to-end runs of test files. The expected outputs were produced by promtool 2.42 on
//! the same files.

use super::*;

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn run(files: &[&str]) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let files: Vec<String> = files.iter().map(|s| s.to_string()).collect();
    let code = run_files(&files, &TestOptions::default(), &mut out, &mut err).unwrap();
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

/// A directory with files; paths are given relative to it and returned absolute.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        let d = Dir(tempfile::tempdir().unwrap());
        for (name, text) in files {
            std::fs::write(d.0.path().join(name), text).unwrap();
        }
        d
    }

    fn path(&self, name: &str) -> String {
        self.0.path().join(name).to_str().unwrap().to_string()
    }
}

const RULES: &str = r#"groups:
- name: g1
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
  - alert: InstanceDown
    expr: up == 0
    for: 2m
    labels:
      severity: page
    annotations:
      summary: "Instance {{ $labels.instance }} down"
      value: "{{ $value }}"
"#;

const FAILING: &str = r#"rule_files: [rules.yml]
evaluation_interval: 1m
tests:
- interval: 1m
  name: first
  input_series:
  - series: 'up{job="a", instance="x"}'
    values: '1 1 0 0 0 0 0'
  - series: 'up{job="a", instance="y"}'
    values: '1+0x6'
  alert_rule_test:
  - eval_time: 5m
    alertname: InstanceDown
    exp_alerts:
    - exp_labels: {severity: page, job: a, instance: y}
      exp_annotations: {summary: "Instance y down", value: "0"}
  - eval_time: 90s
    alertname: InstanceDown
  promql_expr_test:
  - expr: job:up:sum
    eval_time: 4m
    exp_samples:
    - labels: 'job:up:sum{job="a"}'
      value: 2.5
  - expr: scalar(job:up:sum)
    eval_time: 4m
    exp_samples:
    - value: 1
  - expr: nosuch
    eval_time: 4m
"#;

#[test]
fn failures_print_exactly_as_promtool_prints_them() {
    let d = Dir::new(&[("rules.yml", RULES), ("t1.yml", FAILING)]);
    let t = d.path("t1.yml");
    let r = run(&[&t]);
    assert_eq!(r.code, FAILURE);
    assert_eq!(r.out, format!("Unit Testing:  {t}\n\n\n\n"));
    let want = r#"  FAILED:
    name: first,
    alertname: InstanceDown, time: 5m, 
        exp:[
            0:
              Labels:{alertname="InstanceDown", instance="y", job="a", severity="page"}
              Annotations:{summary="Instance y down", value="0"}
            ], 
        got:[
            0:
              Labels:{alertname="InstanceDown", instance="x", job="a", severity="page"}
              Annotations:{summary="Instance x down", value="0"}
            ]
    expr: "job:up:sum", time: 4m,
        exp: {__name__="job:up:sum", job="a"} 2.5E+00
        got: {__name__="job:up:sum", job="a"} 1E+00
"#;
    assert_eq!(r.err, want);
}

#[test]
fn a_passing_file_succeeds() {
    let passing = FAILING
        .replace("instance: y}", "instance: x}")
        .replace("Instance y down", "Instance x down")
        .replace("value: 2.5", "value: 1");
    let d = Dir::new(&[("rules.yml", RULES), ("t.yml", &passing)]);
    let t = d.path("t.yml");
    let r = run(&[&t, &t]);
    assert_eq!((r.code, r.err.as_str()), (SUCCESS, ""));
    assert_eq!(
        r.out,
        format!("Unit Testing:  {t}\n  SUCCESS\n\n").repeat(2)
    );
}

#[test]
fn pending_alerts_are_not_firing_and_for_counts_from_activation() {
    let test = r#"rule_files: [rules.yml]
tests:
- interval: 1m
  input_series:
  - series: 'up{job="a", instance="x"}'
    values: '1 0 0 0 1'
  alert_rule_test:
  - eval_time: 2m
    alertname: InstanceDown
  - eval_time: 3m
    alertname: InstanceDown
    exp_alerts:
    - exp_labels: {severity: page, job: a, instance: x}
      exp_annotations: {summary: "Instance x down", value: "0"}
  - eval_time: 4m
    alertname: InstanceDown
"#;
    let d = Dir::new(&[("rules.yml", RULES), ("t.yml", test)]);
    let r = run(&[&d.path("t.yml")]);
    assert_eq!((r.code, r.err.as_str()), (SUCCESS, ""));
}

#[test]
fn an_evaluation_error_stops_the_group_with_the_rule_and_go_time() {
    let rules = "groups:\n- name: g\n  rules:\n  - record: r\n    expr: up{a=\"b\"} + on() up\n";
    let test = "rule_files: [r.yml]\ntests:\n- interval: 1m\n  input_series:\n  - series: up{a=\"b\"}\n    values: 1x5\n  - series: up{a=\"c\"}\n    values: 1x5\n  promql_expr_test:\n  - expr: up\n    eval_time: 10m\n";
    let d = Dir::new(&[("r.yml", rules), ("t.yml", test)]);
    let r = run(&[&d.path("t.yml")]);
    assert_eq!(r.code, FAILURE);
    assert!(
        r.err.starts_with("  FAILED:\n    rule: r, time: 0s, err: "),
        "{}",
        r.err
    );
    assert_eq!(
        r.err.lines().count(),
        2,
        "stops at the first failing evaluation"
    );
}

#[test]
fn bad_input_is_reported_not_panicked_on() {
    let d = Dir::new(&[
        ("rules.yml", RULES),
        ("unknown.yml", "rule_files: [rules.yml]\nfoo: 1\n"),
        ("series.yml", "tests:\n- interval: 1m\n  input_series:\n  - series: up{a=\"b\"}\n    values: 1 2 bad\n"),
        ("order.yml", "group_eval_order: [a, a]\ntests: []\n"),
        ("noname.yml", "tests:\n- interval: 1m\n  name: n\n  alert_rule_test:\n  - eval_time: 5m\n"),
        ("badlabels.yml", "tests:\n- interval: 1m\n  promql_expr_test:\n  - expr: vector(1)\n    exp_samples:\n    - labels: '{a=}'\n      value: 1\n"),
        ("badexpr.yml", "tests:\n- interval: 1m\n  promql_expr_test:\n  - expr: 'rate(up['\n"),
        ("string.yml", "tests:\n- interval: 1m\n  promql_expr_test:\n  - expr: '\"x\"'\n"),
    ]);
    let failed = |name: &str| test_file(&d.path(name), &TestOptions::default()).failures;
    assert!(failed("unknown.yml")[0].contains("foo"));
    assert_eq!(
        failed("series.yml"),
        vec![
            r#"1:15: parse error: unexpected identifier "bad" in series values, expected number or "stale""#
        ]
    );
    assert_eq!(
        failed("order.yml"),
        vec!["group name repeated in evaluation order: a"]
    );
    assert_eq!(
        failed("noname.yml"),
        vec!["an item under alert_rule_test misses required attribute alertname at eval_time 5m (in TestGroup n)"]
    );
    assert!(failed("badlabels.yml")[0]
        .starts_with(r#"    expr: "vector(1)", time: 0s, err: labels "{a=}": 1:4: parse error"#));
    assert!(failed("badexpr.yml")[0].starts_with(r#"    expr: "rate(up[", time: 0s, err: "#));
    assert_eq!(
        failed("string.yml"),
        vec![r#"    expr: "\"x\"", time: 0s, err: rule result is not a vector or scalar"#]
    );
    let forever = "evaluation_interval: 1ms\ntests:\n- interval: 1m\n  promql_expr_test:\n  - expr: vector(1)\n    eval_time: 1y\n";
    std::fs::write(d.path("forever.yml"), forever).unwrap();
    assert!(failed("forever.yml")[0].contains("meshlens's limit"));
    let missing = d.path("missing.yml");
    assert!(failed("missing.yml")[0].starts_with(&format!("open {missing}: ")));
}

#[test]
fn an_unmatched_rule_file_is_a_warning() {
    let d = Dir::new(&[("t.yml", "rule_files: [nomatch*.yml]\ntests: []\n")]);
    let r = run(&[&d.path("t.yml")]);
    assert_eq!(r.code, SUCCESS);
    let pattern = d.path("nomatch*.yml");
    assert_eq!(
        r.err,
        format!("  WARNING: no file match pattern {pattern}\n")
    );
}

#[test]
fn a_broken_rule_file_fails_every_test_group() {
    let bad = "groups:\n- name: g\n  rules:\n  - record: r\n    expr: up{a=\n";
    let test = "rule_files: [r.yml]\ntests:\n- interval: 1m\n- interval: 1m\n";
    let d = Dir::new(&[("r.yml", bad), ("t.yml", test)]);
    let f = test_file(&d.path("t.yml"), &TestOptions::default()).failures;
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(f[0].starts_with(&format!(
        "{}: 5:11: group \"g\", rule 1, \"r\"",
        d.path("r.yml")
    )));
}

#[test]
fn group_eval_order_decides_what_a_later_group_sees() {
    let rules = r#"groups:
- name: second
  rules:
  - record: doubled
    expr: base * 2
- name: first
  rules:
  - record: base
    expr: x
"#;
    let test = |order: &str| {
        format!(
            r#"rule_files: [r.yml]
group_eval_order: [{order}]
tests:
- interval: 1m
  input_series:
  - series: x
    values: 1 2 3
  promql_expr_test:
  - expr: doubled
    eval_time: 2m
    exp_samples:
    - labels: doubled
      value: 6
"#
        )
    };
    let d = Dir::new(&[
        ("r.yml", rules),
        ("right.yml", &test("first, second")),
        ("wrong.yml", &test("second, first")),
    ]);
    assert!(test_file(&d.path("right.yml"), &TestOptions::default()).passed());
    let f = test_file(&d.path("wrong.yml"), &TestOptions::default()).failures;
    assert_eq!(
        f,
        vec!["    expr: \"doubled\", time: 2m,\n        exp: {__name__=\"doubled\"} 6E+00\n        got: {__name__=\"doubled\"} 4E+00"]
    );
}

#[test]
fn samples_load_lazily_and_stale_markers_end_series() {
    // Evaluations at 0 and 1m only: the sample at 90s is never loaded, so the query at 90s
    // still sees the one at 60s, as in promtool.
    let test = r#"tests:
- interval: 30s
  input_series:
  - series: a
    values: 1 2 3 4
  - series: b
    values: 1 stale 1
  - series: c
    values: _ _x2 7
  promql_expr_test:
  - expr: a
    eval_time: 90s
    exp_samples:
    - labels: a
      value: 3
  - expr: b
    eval_time: 30s
  - expr: c
    eval_time: 60s
"#;
    let d = Dir::new(&[("t.yml", test)]);
    assert_eq!(
        test_file(&d.path("t.yml"), &TestOptions::default()).failures,
        Vec::<String>::new()
    );
}

#[test]
fn an_annotation_that_renders_empty_is_compared_as_empty() {
    let rules = r#"groups:
- name: g
  rules:
  - alert: Gone
    expr: sum(x) > 0
    annotations:
      who: "{{ $labels.instance }}"
"#;
    let test = |ann: &str| {
        format!(
            "rule_files: [r.yml]\ntests:\n- interval: 1m\n  input_series:\n  - series: x{{instance=\"i\"}}\n    values: 1 1\n  alert_rule_test:\n  - eval_time: 1m\n    alertname: Gone\n    exp_alerts:\n    - exp_annotations: {ann}\n"
        )
    };
    let d = Dir::new(&[
        ("r.yml", rules),
        ("empty.yml", &test("{who: \"\"}")),
        ("absent.yml", &test("{}")),
    ]);
    assert!(test_file(&d.path("empty.yml"), &TestOptions::default()).passed());
    assert!(!test_file(&d.path("absent.yml"), &TestOptions::default()).passed());
}

/// promtool 2.42 lists an annotation that expanded to "" (and never a label that did):
/// the first and third groups fail, the second passes.
#[test]
fn annotations_expanded_to_empty_are_compared_as_promtool_compares_them() {
    let rules = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 1\n    labels:\n      empty: '{{ $labels.missing }}'\n    annotations:\n      summary: '{{ $labels.missing }}'\n      description: x\n";
    let group = |name: &str, labels: &str, annotations: &str| {
        format!("- name: {name}\n  interval: 1m\n  input_series:\n  - series: 'up{{job=\"a\"}}'\n    values: 1 1\n  alert_rule_test:\n  - eval_time: 1m\n    alertname: A\n    exp_alerts:\n    - exp_labels: {labels}\n      exp_annotations: {annotations}\n")
    };
    let test = format!(
        "rule_files: [r.yml]\ntests:\n{}{}{}",
        group("omitted", "{job: a}", "{description: x}"),
        group("empty", "{job: a}", "{description: x, summary: \"\"}"),
        group(
            "label",
            "{job: a, empty: \"\"}",
            "{description: x, summary: \"\"}"
        ),
    );
    let d = Dir::new(&[("r.yml", rules), ("t.yml", &test)]);
    let f = test_file(&d.path("t.yml"), &TestOptions::default()).failures;
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(f[0].starts_with("    name: omitted,\n"), "{}", f[0]);
    assert!(f[1].starts_with("    name: label,\n"), "{}", f[1]);
    let got = "got:[\n            0:\n              Labels:{alertname=\"A\", job=\"a\"}\n              Annotations:{description=\"x\", summary=\"\"}\n            ]";
    assert!(f[0].ends_with(got), "{}", f[0]);
    assert!(f[1].ends_with(got), "{}", f[1]);
}

/// promtool 2.42's windows are closed: six one-minute samples in `[0, 5m]`. Prometheus
/// 3's left-open windows, on request, see five.
#[test]
fn ranges_are_closed_unless_left_open_is_asked_for() {
    let test = "tests:\n- interval: 1m\n  input_series:\n  - series: x\n    values: 0+1x10\n  promql_expr_test:\n  - expr: count_over_time(x[5m])\n    eval_time: 5m\n    exp_samples:\n    - labels: '{}'\n      value: 6\n";
    let d = Dir::new(&[("t.yml", test)]);
    assert!(test_file(&d.path("t.yml"), &TestOptions::default()).passed());
    let open = TestOptions {
        closed_ranges: false,
        ..TestOptions::default()
    };
    let f = test_file(&d.path("t.yml"), &open).failures;
    assert_eq!(
        f,
        ["    expr: \"count_over_time(x[5m])\", time: 5m,\n        exp: {} 6E+00\n        got: {} 5E+00"]
    );
}

/// go-yaml's line for a syntax error (the 0-based line of the enclosing block), reported
/// twice as promtool decodes the file twice.
#[test]
fn rule_file_syntax_errors_are_worded_as_promtool_words_them() {
    let bad = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n       for: 5m\n";
    let test = "rule_files: [r.yml]\ntests:\n- interval: 1m\n";
    let d = Dir::new(&[("r.yml", bad), ("t.yml", test)]);
    let f = test_file(&d.path("t.yml"), &TestOptions::default()).failures;
    let want = format!(
        "{}: yaml: line 3: did not find expected '-' indicator",
        d.path("r.yml")
    );
    assert_eq!(f, [want.clone(), want]);
}

/// promtool's `--enable-feature=promql-delayed-name-removal`: off by default, as there, so
/// `label_replace` after a function finds no name; on, the name is still there.
#[test]
fn delayed_name_removal_only_when_asked_for() {
    let test = "tests:\n- interval: 1m\n  input_series:\n  - series: x{a=\"1\"}\n    values: 1\n  promql_expr_test:\n  - expr: label_replace(-x, \"n\", \"$1\", \"__name__\", \"(.+)\")\n    eval_time: 0\n    exp_samples:\n    - labels: '{a=\"1\", n=\"x\"}'\n      value: -1\n";
    let d = Dir::new(&[("t.yml", test)]);
    let delayed = TestOptions {
        delayed_name_removal: true,
        ..TestOptions::default()
    };
    assert!(test_file(&d.path("t.yml"), &delayed).passed());
    let f = test_file(&d.path("t.yml"), &TestOptions::default()).failures;
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains(r#"got: {a="1"} -1E+00"#), "{}", f[0]);
}
