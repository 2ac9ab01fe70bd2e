//! `meshlens test rules` against Debian's `promtool test rules` (2.42): every unit-test
//! file in testdata/rules/ is run by both tools, and the runs are compared by exit code,
//! verdict, warning, the test groups that failed and each failure reported (which alert or
//! expression, at which time, and what the tool got). Every mismatch is collected and
//! reported at once. testdata/rules/EXPECTED.md is a table for people; this test asks
//! promtool itself.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_binary, BIN};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata/rules");

/// Long enough for the slowest file (seven hours of one-minute evaluations) on a busy
/// two-core machine; a run past it is reported as a mismatch, never waited on forever.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// One run of `<tool> test rules ARGS...` from the corpus directory.
struct Run {
    /// None when the process was killed by a signal or by us after RUN_LIMIT.
    exit: Option<i32>,
    /// stdout and stderr interleaved as written (one pipe for both).
    output: String,
    timed_out: bool,
}

fn run(program: &str, args: &[&str]) -> Run {
    let (mut reader, writer) = std::io::pipe().expect("pipe");
    let mut child = {
        // The Command owns the pipe's write ends; dropping it at the end of this block
        // leaves only the child's copies, so reading ends when the child exits.
        let mut cmd = Command::new(program);
        cmd.args(["test", "rules"])
            .args(args)
            .current_dir(CORPUS)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().expect("clone pipe"))
            .stderr(writer);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"))
    };
    let reading = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = reader.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() > RUN_LIMIT => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    Run {
        exit: status.and_then(|s| s.code()),
        output: reading.join().unwrap_or_default(),
        timed_out,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    Failed,
    /// Neither line was printed.
    Silent,
}

/// One failure as reported under `FAILED:`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Failure {
    /// The test group's name: promtool 2.42 names it only for alert_rule_test failures.
    group: Option<String>,
    /// `alertname: A, time: T`, `expr: "Q", time: T`, `rule: R, time: T`, or a note that
    /// the file failed before or while loading (such messages are not compared word for word).
    what: String,
    /// What the tool got (alerts or samples, whitespace collapsed), or `error`.
    got: String,
}

/// What a tool said about one file.
#[derive(Debug)]
struct FileReport {
    file: String,
    verdict: Verdict,
    warned: bool,
    failures: BTreeSet<Failure>,
}

impl FileReport {
    fn failed_groups(&self) -> BTreeSet<String> {
        self.failures
            .iter()
            .map(|f| match &f.group {
                Some(g) => format!("`{g}`"),
                None => "(failures that name no group)".to_string(),
            })
            .collect()
    }
}

/// A failure being read: its group, its head line, the lines after it.
type Item = (Option<String>, Option<String>, Vec<String>);

const LOAD_ERROR: &str = "an error before or while loading (message not compared)";

/// Splits a run's output into one report per `Unit Testing:  FILE` section; lines before
/// the first section (usage errors) are returned apart.
fn parse(output: &str) -> (Vec<String>, Vec<FileReport>) {
    let mut preamble = Vec::new();
    let mut reports: Vec<FileReport> = Vec::new();
    let mut item: Option<Item> = None;
    let mut in_failed = false;

    fn finish(item: &mut Option<Item>, reports: &mut [FileReport]) {
        if let (Some((group, head, body)), Some(r)) = (item.take(), reports.last_mut()) {
            r.failures.insert(failure(group, head, &body));
        }
    }

    for line in output.lines() {
        if let Some(file) = line.strip_prefix("Unit Testing:") {
            finish(&mut item, &mut reports);
            in_failed = false;
            reports.push(FileReport {
                file: file.trim().to_string(),
                verdict: Verdict::Silent,
                warned: false,
                failures: BTreeSet::new(),
            });
            continue;
        }
        let Some(report) = reports.last_mut() else {
            if !line.trim().is_empty() {
                preamble.push(line.to_string());
            }
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with("  WARNING:") {
            report.warned = true;
        } else if line == "  SUCCESS" {
            report.verdict = Verdict::Success;
        } else if line == "  FAILED:" {
            report.verdict = Verdict::Failed;
            in_failed = true;
        } else if !in_failed {
            // Anything else outside a failure block is not part of the comparison.
        } else if let Some(g) = line.strip_prefix("    name: ") {
            finish(&mut item, &mut reports);
            item = Some((Some(g.trim_end_matches(',').to_string()), None, Vec::new()));
        } else if is_head(line) {
            match &mut item {
                Some((Some(_), head @ None, _)) => *head = Some(line.trim().to_string()),
                _ => {
                    finish(&mut item, &mut reports);
                    item = Some((None, Some(line.trim().to_string()), Vec::new()));
                }
            }
        } else if !line.starts_with(' ') {
            finish(&mut item, &mut reports);
            item = Some((None, None, vec![line.to_string()]));
        } else if let Some((_, _, body)) = &mut item {
            body.push(line.to_string());
        }
    }
    finish(&mut item, &mut reports);
    (preamble, reports)
}

fn is_head(line: &str) -> bool {
    ["    alertname: ", "    expr: ", "    rule: "]
        .iter()
        .any(|p| line.starts_with(p))
}

fn failure(group: Option<String>, head: Option<String>, body: &[String]) -> Failure {
    let Some(head) = head else {
        return Failure {
            group,
            what: LOAD_ERROR.to_string(),
            got: String::new(),
        };
    };
    if let Some((what, _message)) = head.split_once(", err: ") {
        return Failure {
            group,
            what: what.to_string(),
            got: "error".to_string(),
        };
    }
    let what = head.trim_end_matches([',', ' ']).to_string();
    let text = body.join("\n");
    let got = text
        .rsplit_once("got:")
        .map(|(_, g)| g.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    Failure {
        group,
        what,
        got: without_template_errors(&got),
    }
}

/// A failed template expansion puts Go's error text in the annotation; only the fact that
/// it failed is compared, as `"<error expanding template>"`.
fn without_template_errors(got: &str) -> String {
    const MARK: &str = "\"<error expanding template";
    let mut out = String::new();
    let mut rest = got;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        out.push_str("\"<error expanding template>\"");
        // The value is Go-quoted: it ends at the first quote not escaped by a backslash.
        let after = &rest[at + 1..];
        let mut end = after.len();
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = i + 1;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn exit_text(r: &Run) -> String {
    match (r.exit, r.timed_out) {
        (_, true) => format!("killed after {}s", RUN_LIMIT.as_secs()),
        (Some(c), _) => c.to_string(),
        (None, _) => "killed by a signal".to_string(),
    }
}

/// Compares one file's two runs, appending every difference to `out`.
fn compare_file(file: &str, p: &Run, m: &Run, out: &mut Vec<String>) {
    let before = out.len();
    let mut note = |s: String| out.push(format!("{file}: {s}"));
    if p.exit != m.exit || m.timed_out {
        note(format!(
            "exit code: promtool {}, meshlens {}",
            exit_text(p),
            exit_text(m)
        ));
    }
    let (_, pr) = parse(&p.output);
    let (_, mr) = parse(&m.output);
    let (Some(pr), Some(mr)) = (pr.first(), mr.first()) else {
        let (who, said) = match pr.is_empty() {
            true => ("promtool", &p.output),
            false => ("meshlens", &m.output),
        };
        note(format!(
            "no `Unit Testing:` section from {who}:\n{}",
            indent(said)
        ));
        return;
    };
    if pr.verdict != mr.verdict {
        note(format!(
            "verdict: promtool {:?}, meshlens {:?}",
            pr.verdict, mr.verdict
        ));
    }
    if pr.warned != mr.warned {
        note(format!(
            "WARNING line: promtool {}, meshlens {}",
            pr.warned, mr.warned
        ));
    }
    let (pg, mg) = (pr.failed_groups(), mr.failed_groups());
    for g in pg.difference(&mg) {
        note(format!("group {g}: promtool FAILED, meshlens passed"));
    }
    for g in mg.difference(&pg) {
        note(format!("group {g}: meshlens FAILED, promtool passed"));
    }
    let key = |f: &Failure| (f.group.clone(), f.what.clone());
    let pm: BTreeMap<_, _> = pr.failures.iter().map(|f| (key(f), f)).collect();
    let mm: BTreeMap<_, _> = mr.failures.iter().map(|f| (key(f), f)).collect();
    let at = |g: &Option<String>| g.as_ref().map(|g| format!("group `{g}`, "));
    for (k, f) in &pm {
        let at = at(&k.0).unwrap_or_default();
        match mm.get(k) {
            None => note(format!("{at}{}: only promtool fails it (got {})", k.1, f.got)),
            Some(g) if g.got != f.got => note(format!(
                "{at}{}: both fail it, with different results\n    promtool got: {}\n    meshlens got: {}",
                k.1, f.got, g.got
            )),
            Some(_) => {}
        }
    }
    for (k, f) in mm.iter().filter(|(k, _)| !pm.contains_key(k)) {
        let at = at(&k.0).unwrap_or_default();
        note(format!(
            "{at}{}: only meshlens fails it (got {})",
            k.1, f.got
        ));
    }
    if out.len() > before {
        // Show meshlens's own words once per differing file.
        let tail: String = m.output.chars().take(3000).collect();
        out.push(format!("{file}: meshlens printed:\n{}", indent(&tail)));
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("      | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn corpus_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(CORPUS)
        .expect("read testdata/rules")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".test.yml"))
        .collect();
    files.sort();
    files
}

/// Test groups in a corpus file, counted by their `- name:` lines (the corpus names every
/// group, and no other key in a test file is called `name`).
fn group_count(file: &str) -> usize {
    std::fs::read_to_string(format!("{CORPUS}/{file}"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim_start().starts_with("- name:"))
        .count()
}

#[test]
fn test_rules_matches_promtool_file_by_file() {
    if !require_binary("promtool") {
        return;
    }
    let files = corpus_files();
    let mut mismatches = Vec::new();
    let mut corpus_problems = Vec::new();
    let (mut promtool_ok, mut promtool_failed) = (0, 0);

    for file in &files {
        let p = run("promtool", &[file]);
        let m = run(BIN, &[file]);
        match p.exit {
            Some(0) => promtool_ok += 1,
            _ => promtool_failed += 1,
        }
        // Failures that name no group can only be attributed when the file has one group.
        let (_, pr) = parse(&p.output);
        if let Some(r) = pr.first() {
            if r.failures.iter().any(|f| f.group.is_none()) && group_count(file) > 1 {
                corpus_problems.push(format!(
                    "{file}: promtool reports failures without a group name in a file with several groups; split it"
                ));
            }
        }
        compare_file(file, &p, &m, &mut mismatches);
    }

    // The corpus itself must mean something with this promtool.
    if files.len() < 40 {
        corpus_problems.push(format!("only {} unit-test files (want ≥ 40)", files.len()));
    }
    if promtool_ok < 20 || promtool_failed < 10 {
        corpus_problems.push(format!(
            "promtool passed {promtool_ok} and failed {promtool_failed} files (want ≥ 20 and ≥ 10): is it 2.42, and run from {CORPUS}?"
        ));
    }

    let mut report = format!(
        "{} files; promtool: {promtool_ok} exit 0, {promtool_failed} exit 1\n",
        files.len()
    );
    for p in &corpus_problems {
        let _ = writeln!(report, "CORPUS: {p}");
    }
    for m in &mismatches {
        let _ = writeln!(report, "{m}");
    }
    println!("{report}");
    assert!(
        corpus_problems.is_empty() && mismatches.is_empty(),
        "`meshlens test rules` differs from `promtool test rules`:\n{report}"
    );
}

/// Several files in one run, a missing file and no file at all: exit codes and the
/// per-file verdicts in order.
#[test]
fn test_rules_matches_promtool_on_command_lines() {
    if !require_binary("promtool") {
        return;
    }
    let cases: [&[&str]; 3] = [
        &[
            "notation_fail_wrong_value.test.yml",
            "slo_no_burn.test.yml",
            "missing_rule_file_promql_only.test.yml",
        ],
        &["does_not_exist.test.yml"],
        &[],
    ];
    let mut mismatches = Vec::new();
    for args in cases {
        let p = run("promtool", args);
        let m = run(BIN, args);
        let shown = format!("test rules {}", args.join(" "));
        if p.exit != m.exit || m.timed_out {
            mismatches.push(format!(
                "`{shown}`: exit code: promtool {}, meshlens {}",
                exit_text(&p),
                exit_text(&m)
            ));
        }
        let sections = |r: &Run| -> Vec<(String, Verdict, bool)> {
            parse(&r.output)
                .1
                .into_iter()
                .map(|f| (f.file, f.verdict, f.warned))
                .collect()
        };
        let (ps, ms) = (sections(&p), sections(&m));
        if ps != ms {
            mismatches.push(format!(
                "`{shown}`: files and verdicts: promtool {ps:?}, meshlens {ms:?}\n  meshlens printed:\n{}",
                indent(&m.output)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "`meshlens test rules` differs from `promtool test rules`:\n{}",
        mismatches.join("\n")
    );
}

/// The parser that both comparisons rest on, over promtool 2.42's own words.
#[test]
fn parser_reads_promtool_output() {
    let output = "Unit Testing:  a.test.yml\n  WARNING: no file match pattern rules/x.yml\n  FAILED:\n    name: g1,\n    alertname: A, time: 5m, \n        exp:[], \n        got:[\n            0:\n              Labels:{alertname=\"A\"}\n              Annotations:{s=\"<error expanding template: at <humanize>: \\\"x\\\": invalid>\", t=\"ok\"}\n            ]\n\n    expr: \"up\", time: 1m,\n        exp: nil\n        got: {__name__=\"up\"} 1E+00\n\n    expr: \"sum(\", time: 0s, err: 1:5: parse error\n\nrules/bad.yml: 5:15: group \"g\", rule 1: could not parse\n\nUnit Testing:  b.test.yml\n  SUCCESS\n\npromtool: error: stray\n";
    let (pre, reports) = parse(output);
    assert!(pre.is_empty());
    assert_eq!(reports.len(), 2);
    let a = &reports[0];
    assert_eq!(a.file, "a.test.yml");
    assert_eq!(a.verdict, Verdict::Failed);
    assert!(a.warned);
    let got: Vec<_> = a
        .failures
        .iter()
        .map(|f| (f.group.as_deref(), f.what.as_str(), f.got.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (None, LOAD_ERROR, ""),
            (None, "expr: \"sum(\", time: 0s", "error"),
            (None, "expr: \"up\", time: 1m", "{__name__=\"up\"} 1E+00"),
            (
                Some("g1"),
                "alertname: A, time: 5m",
                "[ 0: Labels:{alertname=\"A\"} Annotations:{s=\"<error expanding template>\", t=\"ok\"} ]"
            ),
        ]
    );
    assert_eq!(
        a.failed_groups().into_iter().collect::<Vec<_>>(),
        vec!["(failures that name no group)", "`g1`"]
    );
    assert_eq!(reports[1].verdict, Verdict::Success);
    assert!(reports[1].failures.is_empty());

    let (pre, reports) = parse("promtool: error: path 'x' does not exist, try --help\n");
    assert_eq!(pre.len(), 1);
    assert!(reports.is_empty());
}
