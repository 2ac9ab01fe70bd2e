use super::*;

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn check(files: &[&str], lint: &LintConfig) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let files: Vec<String> = files.iter().map(|s| s.to_string()).collect();
    let code = check_rules(&files, lint, &mut out, &mut err).unwrap();
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

const GOOD: &str = r#"groups:
- name: g
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
  - alert: Down
    expr: up == 0
    for: 5m
    annotations:
      summary: "{{ $labels.instance }} is down"
"#;

const DUPLICATES: &str = r#"groups:
- name: g
  rules:
  - record: r
    expr: up
    labels: {a: b}
  - record: r
    expr: up
    labels: {a: b}
  - alert: A
    expr: up
    for: 1m
  - alert: A
    expr: up == 0
    for: 1m
- name: h
  rules:
  - alert: A
    expr: up
    for: 1m
"#;

#[test]
fn a_valid_file_succeeds_as_promtool_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "good.yml", GOOD);
    let r = check(&[&f], &LintConfig::default());
    assert_eq!(r.code, SUCCESS);
    assert_eq!(r.out, format!("Checking {f}\n  SUCCESS: 2 rules found\n\n"));
    assert_eq!(r.err, "");
}

#[test]
fn an_invalid_file_fails_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "good.yml", GOOD);
    let bad = write(
        &dir,
        "bad.yml",
        "groups:\n- name: g\n  rules:\n  - record: r\n    expr: up{a=\n",
    );
    let r = check(&[&bad, &good], &LintConfig::default());
    assert_eq!(r.code, FAILURE);
    assert_eq!(
        r.out,
        format!("Checking {bad}\n\nChecking {good}\n  SUCCESS: 2 rules found\n\n")
    );
    assert!(
        r.err.starts_with(&format!(
            "  FAILED:\n{bad}: 5:11: group \"g\", rule 1, \"r\": could not parse expression"
        )),
        "{}",
        r.err
    );
    let missing = dir.path().join("missing.yml");
    let r = check(&[missing.to_str().unwrap()], &LintConfig::default());
    assert_eq!(r.code, FAILURE);
}

#[test]
fn duplicate_rules_are_a_lint_error_like_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "dup.yml", DUPLICATES);
    let r = check(&[&f], &LintConfig::default());
    assert_eq!(
        r.code, SUCCESS,
        "lint findings do not fail without --lint-fatal"
    );
    assert_eq!(r.out, format!("Checking {f}\n\n"));
    assert_eq!(
        r.err,
        "  FAILED:\nlint error 2 duplicate rule(s) found.\nMetric: A\nLabel(s):\nMetric: r\nLabel(s):\n\ta: b\nMight cause inconsistency while recording expressions\n"
    );
    let (fatal, _) = LintConfig::parse("duplicate-rules", true, Duration::from_secs(60));
    assert_eq!(check(&[&f], &fatal).code, LINT_FAILURE);
    let (none, _) = LintConfig::parse("none", true, Duration::from_secs(60));
    let r = check(&[&f], &none);
    assert_eq!(
        (r.code, r.out),
        (
            SUCCESS,
            format!("Checking {f}\n  SUCCESS: 5 rules found\n\n")
        )
    );
}

#[test]
fn meshlens_lints_warn_without_changing_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "lint.yml",
        r#"groups:
- name: slo
  rules:
  - alert: HighErrors
    expr: sum by (service) (rate(errors_total[1m])) > 1
    labels:
      team: "{{ $labels.service }}"
    annotations:
      summary: "{{ $labels.service }} on {{ $labels.instance }}"
  - alert: Fine
    expr: rate(errors_total[5m]) > 1
    for: 10m
    annotations:
      summary: "{{ $labels.instance }}"
"#,
    );
    let r = check(&[&f], &LintConfig::default());
    assert_eq!(r.code, SUCCESS);
    assert!(r.out.contains("  SUCCESS: 2 rules found"));
    let warnings: Vec<&str> = r.err.lines().collect();
    assert_eq!(warnings.len(), 3, "{}", r.err);
    assert!(warnings[0]
        .starts_with("  WARNING: group \"slo\", rule 1, \"HighErrors\": alert has no 'for'"));
    assert!(warnings[1].contains("rate() over 1m is shorter than 4× the scrape interval (4m)"));
    assert!(warnings[2].contains("annotation \"summary\" reads $labels.instance"));
    let (fast, _) = LintConfig::parse(DEFAULT_LINT, false, Duration::from_secs(15));
    let r = check(&[&f], &fast);
    assert_eq!(
        r.err.lines().count(),
        2,
        "1m is 4× a 15s scrape interval: {}",
        r.err
    );
    let (fatal, _) = LintConfig::parse(DEFAULT_LINT, true, Duration::from_secs(60));
    assert_eq!(check(&[&f], &fatal).code, LINT_FAILURE);
    let (none, unknown) = LintConfig::parse("none,bogus", true, Duration::from_secs(60));
    assert_eq!(unknown, vec!["bogus".to_string()]);
    let r = check(&[&f], &none);
    assert_eq!((r.code, r.err.as_str()), (SUCCESS, ""));
}

fn configs(list: Vec<(String, Result<ConfigInfo, String>)>, lint: &LintConfig) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = check_configs(&list, lint, &mut out, &mut err).unwrap();
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

#[test]
fn check_config_checks_every_rule_file_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(&dir, "prom.yml", "");
    let a = write(&dir, "rules/a.yml", GOOD);
    let b = write(
        &dir,
        "rules/b.yml",
        "groups:\n- name: g\n  rules:\n  - record: r\n    expr: up{a=\n",
    );
    let info = ConfigInfo {
        rule_files: vec!["rules/*.yml".into()],
        warnings: vec![],
    };
    let r = configs(vec![(cfg.clone(), Ok(info))], &LintConfig::default());
    assert_eq!(r.code, FAILURE);
    assert_eq!(
        r.out,
        format!("Checking {cfg}\n  SUCCESS: 2 rule files found\n SUCCESS: {cfg} is valid prometheus config file syntax\n\nChecking {a}\n  SUCCESS: 2 rules found\n\nChecking {b}\n\n")
    );
    assert!(
        r.err.starts_with(&format!("  FAILED:\n     {b}: 5:11: ")),
        "{}",
        r.err
    );

    let missing = ConfigInfo {
        rule_files: vec!["rules/nope.yml".into()],
        warnings: vec![],
    };
    let r = configs(vec![(cfg.clone(), Ok(missing))], &LintConfig::default());
    assert_eq!(r.code, FAILURE);
    let nope = format!("{}/rules/nope.yml", dir.path().to_str().unwrap());
    assert_eq!(
        r.err,
        format!("  FAILED: \"{nope}\" does not point to an existing file\n")
    );
    assert_eq!(r.out, format!("Checking {cfg}\n\n"));

    let r = configs(
        vec![(cfg.clone(), Err("bad yaml".into()))],
        &LintConfig::default(),
    );
    assert_eq!((r.code, r.err.as_str()), (FAILURE, "  FAILED: bad yaml\n"));

    let r = configs(
        vec![(cfg.clone(), Ok(ConfigInfo::default()))],
        &LintConfig::default(),
    );
    assert_eq!(r.code, SUCCESS);
    assert_eq!(
        r.out,
        format!("Checking {cfg}\n SUCCESS: {cfg} is valid prometheus config file syntax\n\n")
    );
}

#[test]
fn rule_file_paths_resolve_like_prometheus() {
    assert_eq!(
        resolve_rule_files("cfg/prom.yml", &["/nonexistent/*.yml".into()]),
        Ok(vec![])
    );
    assert!(resolve_rule_files("prom.yml", &["nope.yml".into()]).is_err());
    assert!(resolve_rule_files("prom.yml", &["[".into()]).is_err());
}

#[test]
fn keys_prometheus_would_refuse_are_found() {
    let text =
        "global:\n  scrape_interval: 15s\n  foo: 1\nrule_files: []\nbar: {}\nremote_write: []\n";
    assert_eq!(
        unknown_prometheus_keys(text),
        vec!["bar".to_string(), "foo".to_string()]
    );
    assert!(unknown_prometheus_keys("global: {}\n").is_empty());
    assert!(unknown_prometheus_keys("not: [valid").is_empty());
}
