//! `meshlens check rules` and `meshlens check config`: promtool's checks (same output, same
//! exit codes: 0 valid, 1 invalid, 3 lint problems with `--lint-fatal`), its
//! `duplicate-rules` lint, and meshlens's own lints (see [`lint`]), which print warnings
//! and leave the exit code alone unless `--lint-fatal` is given.

mod duplicates;
pub mod lint;
mod rules;

pub use rules::{check_rule_file, FileCheck, RuleWarning};

use std::io::{self, Write};
use std::time::Duration;

use crate::unittest::glob;
use crate::unittest::gofmt::go_quote;

pub const SUCCESS: i32 = 0;
pub const FAILURE: i32 = 1;
/// promtool's "one or more lint issues detected".
pub const LINT_FAILURE: i32 = 3;

/// Which lints run. promtool's `--lint` takes `all`, `duplicate-rules` and `none`; meshlens
/// adds `alert-without-for`, `short-rate-window` and `dropped-labels`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LintConfig {
    pub duplicate_rules: bool,
    pub alert_without_for: bool,
    pub short_rate_window: bool,
    pub dropped_labels: bool,
    /// Lint findings exit with 3.
    pub fatal: bool,
    /// `rate()` windows shorter than 4× this are reported. Prometheus's default global
    /// `scrape_interval` (1m) unless told otherwise.
    pub scrape_interval: Duration,
}

/// The `--lint` value when none is given: promtool's default plus meshlens's lints.
pub const DEFAULT_LINT: &str = "duplicate-rules,alert-without-for,short-rate-window,dropped-labels";

impl LintConfig {
    /// Reads a comma-separated `--lint` value; unknown names are returned so the caller can
    /// warn about them, as promtool does.
    pub fn parse(spec: &str, fatal: bool, scrape_interval: Duration) -> (LintConfig, Vec<String>) {
        let mut c = LintConfig {
            duplicate_rules: false,
            alert_without_for: false,
            short_rate_window: false,
            dropped_labels: false,
            fatal,
            scrape_interval,
        };
        let mut unknown = Vec::new();
        for item in spec.split(',') {
            match item {
                "all" => {
                    c.duplicate_rules = true;
                    c.alert_without_for = true;
                    c.short_rate_window = true;
                    c.dropped_labels = true;
                }
                "duplicate-rules" => c.duplicate_rules = true,
                "alert-without-for" => c.alert_without_for = true,
                "short-rate-window" => c.short_rate_window = true,
                "dropped-labels" => c.dropped_labels = true,
                "none" => {}
                other => unknown.push(other.to_string()),
            }
        }
        (c, unknown)
    }
}

impl Default for LintConfig {
    fn default() -> Self {
        LintConfig::parse(DEFAULT_LINT, false, Duration::from_secs(60)).0
    }
}

/// Tallies findings over files into promtool's exit code.
#[derive(Default)]
struct Outcome {
    failed: bool,
    has_errors: bool,
    linted: bool,
}

impl Outcome {
    fn add(&mut self, c: &FileCheck) {
        if !c.errors.is_empty() {
            self.failed = true;
            self.has_errors |= !c.lint_only;
        }
        self.linted |= !c.warnings.is_empty();
    }

    fn exit_code(&self, lint: &LintConfig) -> i32 {
        if self.failed && self.has_errors {
            FAILURE
        } else if (self.failed || self.linted) && lint.fatal {
            LINT_FAILURE
        } else {
            SUCCESS
        }
    }
}

/// Prints one file's result as promtool's `checkRules` does; `error_indent` is what
/// precedes each error line (nothing for `check rules`, five spaces under `check config`).
fn print_file(
    c: &FileCheck,
    error_indent: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    for w in &c.warnings {
        writeln!(err, "  WARNING: {w}")?;
    }
    if c.errors.is_empty() {
        writeln!(out, "  SUCCESS: {} rules found", c.rules)?;
    } else {
        writeln!(err, "  FAILED:")?;
        for e in &c.errors {
            writeln!(err, "{error_indent}{e}")?;
        }
    }
    writeln!(out)
}

/// `check rules FILE...`; returns the exit code.
pub fn check_rules(
    files: &[String],
    lint: &LintConfig,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<i32> {
    let mut outcome = Outcome::default();
    for f in files {
        writeln!(out, "Checking {f}")?;
        let c = check_rule_file(f, lint);
        print_file(&c, "", out, err)?;
        outcome.add(&c);
    }
    Ok(outcome.exit_code(lint))
}

/// What the caller's config parser found in one Prometheus config file.
#[derive(Clone, Debug, Default)]
pub struct ConfigInfo {
    /// `rule_files` as written (globs, relative to the config file's directory).
    pub rule_files: Vec<String>,
    /// Fields meshlens reads but does not act on; printed as warnings.
    pub warnings: Vec<String>,
}

/// `check config FILE...`: each config (already parsed by the caller, or its error), then
/// every rule file its `rule_files` name. Returns the exit code.
pub fn check_configs(
    configs: &[(String, Result<ConfigInfo, String>)],
    lint: &LintConfig,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<i32> {
    let mut outcome = Outcome::default();
    for (file, parsed) in configs {
        writeln!(out, "Checking {file}")?;
        let rule_files = parsed
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|info| resolve_rule_files(file, &info.rule_files));
        match (&rule_files, parsed) {
            (Err(e), _) => {
                writeln!(err, "  FAILED: {e}")?;
                outcome.failed = true;
                outcome.has_errors = true;
            }
            (Ok(found), Ok(info)) => {
                for w in &info.warnings {
                    writeln!(err, "  WARNING: {w}")?;
                }
                if !found.is_empty() {
                    writeln!(out, "  SUCCESS: {} rule files found", found.len())?;
                }
                writeln!(
                    out,
                    " SUCCESS: {file} is valid prometheus config file syntax"
                )?;
            }
            (Ok(_), Err(_)) => {}
        }
        writeln!(out)?;
        for rf in rule_files.iter().flatten() {
            writeln!(out, "Checking {rf}")?;
            let c = check_rule_file(rf, lint);
            print_file(&c, "     ", out, err)?;
            outcome.add(&c);
        }
    }
    Ok(outcome.exit_code(lint))
}

/// Top-level and `global` keys Prometheus 2.42's config does not know. meshlens's own
/// config parser only warns about fields it ignores (it cannot tell those from typos), but
/// `check config` must refuse what Prometheus would refuse; these two levels are where
/// typos land most.
pub fn unknown_prometheus_keys(config_text: &str) -> Vec<String> {
    const TOP: &[&str] = &[
        "global",
        "alerting",
        "rule_files",
        "scrape_configs",
        "storage",
        "tracing",
        "remote_write",
        "remote_read",
    ];
    const GLOBAL: &[&str] = &[
        "scrape_interval",
        "scrape_timeout",
        "evaluation_interval",
        "query_log_file",
        "external_labels",
    ];
    let Ok(serde_yaml_ng::Value::Mapping(root)) = serde_yaml_ng::from_str(config_text) else {
        return Vec::new();
    };
    let unknown = |m: &serde_yaml_ng::Mapping, known: &[&str]| -> Vec<String> {
        m.keys()
            .filter_map(|k| k.as_str())
            .filter(|k| !known.contains(k))
            .map(str::to_string)
            .collect()
    };
    let mut out = unknown(&root, TOP);
    if let Some(serde_yaml_ng::Value::Mapping(g)) = root.get("global") {
        out.extend(unknown(g, GLOBAL));
    }
    out
}

/// The rule files a config names: each pattern joined to the config's directory and
/// expanded; a pattern without `*` must name an existing file, as promtool requires.
pub fn resolve_rule_files(config_file: &str, patterns: &[String]) -> Result<Vec<String>, String> {
    let dir = glob::dir(config_file);
    let mut out = Vec::new();
    for p in patterns {
        let (full, found) = expand_pattern(&dir, p).map_err(|e| e.to_string())?;
        if !full.contains('*') && found.is_empty() {
            return Err(format!(
                "{} does not point to an existing file",
                go_quote(&full)
            ));
        }
        out.extend(found);
    }
    Ok(out)
}

/// The files the config's `rule_files` patterns name, relative to the config file, as the
/// Prometheus server expands them (Go's `filepath.Glob`): a pattern that matches nothing adds
/// nothing; only a malformed pattern is an error.
pub fn expand_rule_files(config_file: &str, patterns: &[String]) -> Result<Vec<String>, String> {
    let dir = glob::dir(config_file);
    let mut out = Vec::new();
    for p in patterns {
        let (_, found) = expand_pattern(&dir, p).map_err(|e| format!("rule_files: {p:?}: {e}"))?;
        out.extend(found);
    }
    Ok(out)
}

/// One pattern made absolute against `dir`, and what it matches.
fn expand_pattern(dir: &str, p: &str) -> Result<(String, Vec<String>), glob::BadPattern> {
    let full = if p.is_empty() || p.starts_with('/') {
        p.to_string()
    } else {
        glob::join(dir, p)
    };
    let found = glob::glob(&full)?;
    Ok((full, found))
}

#[cfg(test)]
mod tests;
