//! One rule file's check: promtool's validation and duplicate lint, then meshlens's lints.

use std::fmt;

use crate::file::{parse_rule_file, RuleFile, RuleSpec};
use crate::unittest::duration::ModelDuration;

use super::lint::{output_labels, short_rate_windows, template_label_refs};
use super::{duplicates, LintConfig};

/// What checking one file found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileCheck {
    /// Rules found (0 when the file failed, as promtool reports).
    pub rules: usize,
    /// promtool's errors, printed under `FAILED:`.
    pub errors: Vec<String>,
    /// The errors are lint findings only (exit 0, or 3 with `--lint-fatal`).
    pub lint_only: bool,
    /// meshlens's lint findings.
    pub warnings: Vec<RuleWarning>,
}

/// A meshlens lint finding about one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleWarning {
    pub group: String,
    /// 1-based, as in promtool's errors.
    pub rule_index: usize,
    pub rule_name: String,
    pub message: String,
}

impl fmt::Display for RuleWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "group {:?}, rule {}, {:?}: {}",
            self.group, self.rule_index, self.rule_name, self.message
        )
    }
}

/// Reads, validates and lints one rule file.
pub fn check_rule_file(path: &str, lint: &LintConfig) -> FileCheck {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return FileCheck {
                errors: vec![format!("{path}: {e}")],
                ..FileCheck::default()
            }
        }
    };
    let file = match parse_rule_file(path, &text) {
        Ok(f) => f,
        Err(errs) => {
            return FileCheck {
                errors: errs.iter().map(ToString::to_string).collect(),
                ..FileCheck::default()
            }
        }
    };
    let mut check = FileCheck {
        rules: file.groups.iter().map(|g| g.rules.len()).sum(),
        warnings: lint_file(&file, lint),
        ..FileCheck::default()
    };
    if lint.duplicate_rules {
        let dups = duplicates::find(&file.groups);
        if !dups.is_empty() {
            check.rules = 0;
            check.errors = vec![duplicates::message(&dups)];
            check.lint_only = true;
        }
    }
    check
}

/// meshlens's lints over every rule of a parsed file.
pub fn lint_file(file: &RuleFile, lint: &LintConfig) -> Vec<RuleWarning> {
    let mut out = Vec::new();
    for g in &file.groups {
        for (i, rule) in g.rules.iter().enumerate() {
            let mut warn = |message: String| {
                out.push(RuleWarning {
                    group: g.name.clone(),
                    rule_index: i + 1,
                    rule_name: rule.name().to_string(),
                    message,
                })
            };
            lint_rule(rule, lint, &mut warn);
        }
    }
    out
}

fn lint_rule(rule: &RuleSpec, lint: &LintConfig, warn: &mut dyn FnMut(String)) {
    if let RuleSpec::Alerting { for_, .. } = rule {
        if lint.alert_without_for && for_.is_zero() {
            warn("alert has no 'for': it fires on the first evaluation that matches, so one bad scrape is enough to page".into());
        }
    }
    // The file was validated, so the expression parses; a failure here just skips lints.
    let Ok(expr) = meshlens_promql::parse(rule.expr()) else {
        return;
    };
    if lint.short_rate_window {
        let interval_ms = i64::try_from(lint.scrape_interval.as_millis()).unwrap_or(i64::MAX);
        let min = interval_ms.saturating_mul(4);
        for (func, range) in short_rate_windows(&expr, min) {
            warn(format!(
                "{func}() over {} is shorter than 4× the scrape interval ({}): a missed scrape leaves too few samples and the result disappears",
                ModelDuration(range),
                ModelDuration(min)
            ));
        }
    }
    if let (
        true,
        RuleSpec::Alerting {
            labels,
            annotations,
            ..
        },
    ) = (lint.dropped_labels, rule)
    {
        let have = output_labels(&expr);
        let fields = labels
            .iter()
            .map(|(k, v)| ("label", k, v))
            .chain(annotations.iter().map(|(k, v)| ("annotation", k, v)));
        for (kind, key, text) in fields {
            for name in template_label_refs(text) {
                if have.certainly_lacks(&name) {
                    warn(format!(
                        "{kind} {key:?} reads $labels.{name}, but the expression's result never has label {name:?}: it renders empty"
                    ));
                }
            }
        }
    }
}
