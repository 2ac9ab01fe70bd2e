//! `meshlens test rules`: promtool's rule unit tests (Prometheus 2.42's `promtool test
//! rules`), with its file format, its evaluation order, its comparisons and its output, so
//! the same test files give the same verdicts and exit codes from both tools.
//!
//! Output, as promtool's: `Unit Testing:  FILE` on stdout, then `  SUCCESS`, or
//! `  FAILED:` and every failure on stderr (each followed by a blank line on stdout).
//! Exit code 0 when every file passes, 1 otherwise.

mod compare;
pub(crate) mod duration;
mod file;
pub(crate) mod glob;
pub(crate) mod gofmt;
pub mod mem;
mod runner;
pub mod series;
mod values;

pub use mem::MemStorage;

use std::io::{self, Write};

use crate::GroupSpec;

pub const SUCCESS: i32 = 0;
pub const FAILURE: i32 = 1;

/// What running one test file found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileOutcome {
    /// Printed on stderr before the verdict (`  WARNING: no file match pattern …`).
    pub warnings: Vec<String>,
    /// Failure messages in promtool's layout; empty when every test passed.
    pub failures: Vec<String>,
}

impl FileOutcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn fail(mut self, msg: String) -> FileOutcome {
        self.failures.push(msg);
        self
    }
}

/// How the tests' queries are evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestOptions {
    /// Prometheus 2's range windows, `[t - range, t]` (promtool 2.42 runs the tests with
    /// them); false: Prometheus 3's left-open `(t - range, t]`, as the server evaluates.
    pub closed_ranges: bool,
    /// Prometheus's `promql-delayed-name-removal` (promtool's `--enable-feature`; off by
    /// default there too): see [`meshlens_promql::Engine::with_delayed_name_removal`].
    pub delayed_name_removal: bool,
}

impl Default for TestOptions {
    /// promtool 2.42's semantics, so the same files give the same verdicts.
    fn default() -> Self {
        TestOptions {
            closed_ranges: true,
            delayed_name_removal: false,
        }
    }
}

/// Runs every test file and prints as promtool does; returns the exit code.
pub fn run_files(
    files: &[String],
    opts: &TestOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<i32> {
    let mut failed = false;
    for f in files {
        writeln!(out, "Unit Testing:  {f}")?;
        let outcome = test_file(f, opts);
        for w in &outcome.warnings {
            writeln!(err, "{w}")?;
        }
        if outcome.passed() {
            writeln!(out, "  SUCCESS")?;
        } else {
            failed = true;
            writeln!(err, "  FAILED:")?;
            for e in &outcome.failures {
                writeln!(err, "{e}")?;
                writeln!(out)?;
            }
        }
        writeln!(out)?;
    }
    Ok(if failed { FAILURE } else { SUCCESS })
}

/// Runs one test file.
pub fn test_file(path: &str, opts: &TestOptions) -> FileOutcome {
    let outcome = FileOutcome::default();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return outcome.fail(format!("open {path}: {e}")),
    };
    let spec = match file::parse(&text) {
        Ok(s) => s,
        Err(e) => return outcome.fail(e),
    };
    let (rule_files, mut outcome) = match resolve(path, &spec.rule_files) {
        Ok(found) => found,
        Err(e) => return outcome.fail(e),
    };
    let eval_interval_ms = match spec.evaluation_interval.millis() {
        0 => 60_000,
        ms => ms,
    };
    let mut order: Vec<(&str, usize)> = Vec::new();
    for (i, g) in spec.group_eval_order.iter().enumerate() {
        if order.iter().any(|(n, _)| *n == g.as_str()) {
            return outcome.fail(format!("group name repeated in evaluation order: {g}"));
        }
        order.push((g.as_str(), i));
    }
    // promtool loads the rule files afresh for every test group; they do not change in
    // between, so they are read once here, and a failure fails every group that gets to
    // loading them.
    let groups = load_groups(&rule_files, &order);
    let setup = runner::Setup {
        eval_interval_ms,
        groups: &groups,
        closed_ranges: opts.closed_ranges,
        delayed_name_removal: opts.delayed_name_removal,
    };
    for tg in &spec.tests {
        outcome.failures.extend(runner::run_group(tg, &setup));
    }
    outcome
}

/// Rule-file patterns relative to the test file, expanded; a pattern matching nothing is
/// a warning, as in promtool.
fn resolve(
    test_file: &str,
    patterns: &[file::GoString],
) -> Result<(Vec<String>, FileOutcome), String> {
    let dir = glob::dir(test_file);
    let mut outcome = FileOutcome::default();
    let mut out = Vec::new();
    for p in patterns {
        let p = p.as_str();
        let full = if !p.is_empty() && !p.starts_with('/') {
            glob::join(&dir, p)
        } else {
            p.to_string()
        };
        let found = glob::glob(&full).map_err(|e| e.to_string())?;
        if found.is_empty() {
            outcome
                .warnings
                .push(format!("  WARNING: no file match pattern {full}"));
        }
        out.extend(found);
    }
    Ok((out, outcome))
}

/// Reads and validates every rule file and orders their groups for evaluation: groups
/// named in `group_eval_order` by their position there, the others as if first (promtool's
/// partial order; ties keep file order).
fn load_groups(files: &[String], order: &[(&str, usize)]) -> Result<Vec<GroupSpec>, Vec<String>> {
    let mut groups: Vec<GroupSpec> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| vec![format!("{f}: open {f}: {e}")])?;
        let parsed = crate::parse_rule_file(f, &text)
            .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        for g in parsed.groups {
            // The same file listed twice yields one copy of each group (keyed by file and
            // name, as promtool's map).
            match groups
                .iter_mut()
                .find(|x| x.file == g.file && x.name == g.name)
            {
                Some(existing) => *existing = g,
                None => groups.push(g),
            }
        }
    }
    let rank = |g: &GroupSpec| {
        order
            .iter()
            .find(|(n, _)| *n == g.name)
            .map_or(0, |(_, i)| *i)
    };
    groups.sort_by_key(rank);
    Ok(groups)
}

#[cfg(test)]
mod tests;
