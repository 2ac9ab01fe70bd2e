use std::time::Duration;

use super::*;

const GOOD: &str = r#"
groups:
  - name: mesh
    interval: 30s
    limit: 10
    query_offset: 1m
    labels:
      team: sre
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels:
          tier: 1
      - alert: Down
        expr: up == 0
        for: 5m
        keep_firing_for: 1m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.job }} is down"
  - name: other
    rules: []
"#;

#[test]
fn parses_every_field() {
    let f = parse_rule_file("r.yml", GOOD).unwrap();
    assert_eq!(f.path, "r.yml");
    assert_eq!(f.groups.len(), 2);
    let g = &f.groups[0];
    assert_eq!(g.name, "mesh");
    assert_eq!(g.file, "r.yml");
    assert_eq!(g.interval, Some(Duration::from_secs(30)));
    assert_eq!(g.limit, 10);
    assert_eq!(g.query_offset, Some(Duration::from_secs(60)));
    assert_eq!(g.labels.get("team").map(String::as_str), Some("sre"));
    assert_eq!(
        g.rules[0],
        RuleSpec::Recording {
            record: "job:up:sum".into(),
            expr: "sum by (job) (up)".into(),
            labels: [("tier".to_string(), "1".to_string())].into(),
        }
    );
    match &g.rules[1] {
        RuleSpec::Alerting {
            alert,
            for_,
            keep_firing_for,
            annotations,
            ..
        } => {
            assert_eq!(alert, "Down");
            assert_eq!(*for_, Duration::from_secs(300));
            assert_eq!(*keep_firing_for, Duration::from_secs(60));
            assert_eq!(annotations["summary"], "{{ $labels.job }} is down");
        }
        other => panic!("not an alert: {other:?}"),
    }
    assert_eq!(f.groups[1].interval, None);
    assert!(f.groups[1].rules.is_empty());
}

#[test]
fn empty_and_comment_only_files_have_no_groups() {
    for text in ["", "# nothing\n", "groups:\n", "---\n"] {
        let f = parse_rule_file("e.yml", text).unwrap();
        assert!(f.groups.is_empty(), "{text:?}");
    }
}

fn errors(text: &str) -> Vec<String> {
    parse_rule_file("bad.yml", text)
        .expect_err("should be refused")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn bad_promql_names_file_line_group_and_rule() {
    let text = "groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n  - alert: Broken\n    expr: sum(up\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "bad.yml: 7:11: group \"g\", rule 2, \"Broken\": could not parse expression: "
        ),
        "{}",
        errs[0]
    );
}

#[test]
fn structural_mistakes_are_each_reported() {
    let text = r#"groups:
  - name: g
    rules:
      - record: both
        alert: both
        expr: up
      - record: "bad name"
        expr: up
      - record: ok
        expr: up
        for: 5m
      - alert: NoExpr
      - expr: up
      - alert: A
        expr: up
        labels:
          __name__: x
          "bad-label": y
        annotations:
          "bad-annotation": z
  - name: g
    rules: []
"#;
    let errs = errors(text);
    let want = [
        "bad.yml: 4:17: 5:16: group \"g\", rule 1, \"both\": only one of 'record' and 'alert' must be set",
        "bad.yml: 7:17: group \"g\", rule 2, \"bad name\": invalid recording rule name: bad name",
        "bad.yml: 9:17: group \"g\", rule 3, \"ok\": invalid field 'for' in recording rule",
        // promtool's positions of absent YAML nodes, and no position where its check
        // keeps no node.
        "bad.yml: 0:0: group \"g\", rule 4, \"NoExpr\": field 'expr' must be set in rule",
        "bad.yml: 0:0: group \"g\", rule 5, \"\": one of 'record' or 'alert' must be set",
        "bad.yml: group \"g\", rule 6, \"A\": invalid label name: __name__",
        "bad.yml: group \"g\", rule 6, \"A\": invalid label name: bad-label",
        "bad.yml: group \"g\", rule 6, \"A\": invalid annotation name: bad-annotation",
        "bad.yml: 21:5: groupname: \"g\" is repeated in the same file",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e == w), "missing {w:?} in {errs:#?}");
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
}

#[test]
fn unknown_fields_and_bad_yaml_are_refused_with_a_line() {
    // promtool's words, for the same files.
    let errs = errors("groups:\n  - name: g\n    evaluation_delay: 1m\n    rules: []\n");
    assert_eq!(errs, ["bad.yml: yaml: unmarshal errors:\n  line 3: field evaluation_delay not found in type rulefmt.RuleGroup"]);
    let errs = errors("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        severity: page\n");
    assert_eq!(errs, ["bad.yml: yaml: unmarshal errors:\n  line 6: field severity not found in type rulefmt.RuleNode"]);
    let errs = errors("groupz: []\n");
    assert_eq!(errs, ["bad.yml: yaml: unmarshal errors:\n  line 1: field groupz not found in type rulefmt.RuleGroups"]);
    let err = parse_rule_file("bad.yml", "groups:\n  - name: g\n    bogus: 1\n").unwrap_err();
    assert_eq!((err[0].line, err[0].col), (3, 5));

    let errs = errors("groups: [\n");
    assert!(errs[0].starts_with("bad.yml: yaml: line "), "{}", errs[0]);
    assert!(!errs[0].contains(" column "), "{}", errs[0]);
    let errs = errors("- just\n- a list\n");
    assert!(errs[0].starts_with("bad.yml: yaml: "), "{}", errs[0]);
}

#[test]
fn bad_durations_are_refused() {
    // promtool's YAML decoder stops at the first bad duration in the file and names only it.
    let errs = errors("groups:\n  - name: g\n    interval: 60\n    rules:\n      - alert: A\n        expr: up\n        for: 5 minutes\n");
    assert_eq!(errs, ["bad.yml: not a valid duration string: \"60\""]);
    let errs = errors("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        for: 5x\n        keep_firing_for: 3y\n      - alert: B\n        expr: up\n        for: 1q\n");
    assert_eq!(errs, ["bad.yml: not a valid duration string: \"5x\""]);
    // An empty string is refused; null is no duration at all.
    let errs = errors(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        for: \"\"\n",
    );
    assert_eq!(errs, ["bad.yml: empty duration string"]);
    assert!(parse_rule_file(
        "ok.yml",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        for:\n"
    )
    .is_ok());
}

#[test]
fn empty_names_and_exprs_are_placed_at_their_values() {
    let errs = errors("groups:\n  - name: g\n    rules:\n      - record: a\n        expr: \"\"\n      - record: \"\"\n        expr: up\n");
    assert_eq!(
        errs,
        [
            "bad.yml: 5:15: group \"g\", rule 1, \"a\": field 'expr' must be set in rule",
            "bad.yml: 6:17: group \"g\", rule 2, \"\": one of 'record' or 'alert' must be set",
        ]
    );
}

#[test]
fn bad_templates_are_refused_for_alerts_only() {
    let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          summary: '{{ $labels.job '\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        errs[0],
        "bad.yml: group \"g\", rule 1, \"A\": annotation \"summary\": template: __alert_A:1: unclosed action"
    );
    let rec = "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: up\n        labels:\n          x: '{{ oops'\n";
    assert!(parse_rule_file("ok.yml", rec).is_ok());
}

#[test]
fn zero_interval_means_the_default() {
    let f = parse_rule_file("z.yml", "groups:\n- name: g\n  interval: 0s\n  rules: []\n").unwrap();
    assert_eq!(f.groups[0].interval, None);
}
