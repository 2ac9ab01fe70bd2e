//! Prometheus's rule file format (`model/rulefmt`): `groups:` of `record:` and `alert:`
//! rules, validated as promtool does, each error naming the file, line, group, rule and
//! reason.

mod locate;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub use locate::Pos;

/// One parsed rule file.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleFile {
    pub path: String,
    pub groups: Vec<GroupSpec>,
}

/// A group as written: rules evaluated in order, at one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    /// The rule file it came from (the group's identity is name + file).
    pub file: String,
    /// `None` (or `0` in the file): the global evaluation interval.
    pub interval: Option<Duration>,
    /// Most alerts / series a rule of the group may produce; 0: no limit.
    pub limit: usize,
    /// Evaluate this long in the past (for late-arriving data).
    pub query_offset: Option<Duration>,
    /// Labels added to every rule of the group (a rule's own labels win).
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<RuleSpec>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RuleSpec {
    Recording {
        record: String,
        expr: String,
        labels: BTreeMap<String, String>,
    },
    Alerting {
        alert: String,
        expr: String,
        for_: Duration,
        keep_firing_for: Duration,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    },
}

impl RuleSpec {
    /// The `record:` or `alert:` name.
    pub fn name(&self) -> &str {
        match self {
            RuleSpec::Recording { record, .. } => record,
            RuleSpec::Alerting { alert, .. } => alert,
        }
    }

    pub fn expr(&self) -> &str {
        match self {
            RuleSpec::Recording { expr, .. } | RuleSpec::Alerting { expr, .. } => expr,
        }
    }

    /// The rule's own labels (without the group's).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        match self {
            RuleSpec::Recording { labels, .. } | RuleSpec::Alerting { labels, .. } => labels,
        }
    }
}

/// One problem in a rule file, in promtool's shape:
/// `FILE: LINE:COL: group "G", rule N, "NAME": REASON` (rule-level),
/// `FILE: LINE:COL: REASON` (file or group level).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RuleFileError {
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub col: usize,
    /// The group, for errors inside one.
    pub group: Option<String>,
    /// 1-based index of the rule in its group, for rule-level errors.
    pub rule_index: Option<usize>,
    /// The rule's `record:` or `alert:` (may be empty when missing).
    pub rule_name: String,
    /// A second place involved (`record:` and `alert:` both set), printed after the first.
    pub also_at: Option<Pos>,
    /// Whether the message names `line:col`. promtool names none for label, annotation and
    /// template problems and for values its YAML decoder refuses (bad durations), and
    /// `0:0` for a missing `record:`/`alert:` or `expr:` (positions of absent nodes).
    pub positioned: bool,
    pub reason: String,
}

impl fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        // YAML errors carry their line in the message, as promtool prints them.
        if self.positioned && !self.reason.starts_with("yaml: ") {
            write!(f, "{}:{}: ", self.line, self.col)?;
            if let Some(p) = self.also_at {
                write!(f, "{}:{}: ", p.line, p.col)?;
            }
        }
        if let Some(i) = self.rule_index {
            write!(
                f,
                "group {:?}, rule {i}, {:?}: ",
                self.group.as_deref().unwrap_or(""),
                self.rule_name
            )?;
        }
        f.write_str(&self.reason)
    }
}

/// Parses and validates one rule file; every problem found is returned, not just the first.
pub fn parse_rule_file(path: &str, text: &str) -> Result<RuleFile, Vec<RuleFileError>> {
    let file_error = |pos: Pos, reason: String| RuleFileError {
        file: path.to_string(),
        line: pos.line,
        col: pos.col,
        group: None,
        rule_index: None,
        rule_name: String::new(),
        also_at: None,
        positioned: false,
        reason,
    };
    let raw: Option<raw::RawFile> = match serde_yaml_ng::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    col: l.column(),
                })
                .unwrap_or_default();
            if let Some(reason) = go_yaml_syntax_error(&e) {
                // promtool decodes the file twice (rules, then nodes for positions) and
                // reports a syntax error from each.
                let err = file_error(pos, reason);
                return Err(vec![err.clone(), err]);
            }
            return Err(vec![file_error(pos, yaml_reason(&e.to_string(), pos))]);
        }
    };
    let groups = raw.and_then(|r| r.groups).unwrap_or_default();
    let locator = locate::Locator::new(text);
    validate::validate(path, groups, &locator)
}

/// A YAML syntax error in go-yaml v3's words: `yaml: line N: PROBLEM`, where N is the
/// 0-based line of the error's context (or of the problem when the context is on the first
/// line), one more for scanner errors: go-yaml's own arithmetic, which often names the line
/// where the enclosing block starts. `None` for errors that are not libyaml's.
///
/// serde_yaml_ng shows the libyaml error's kind and marks only in its `Debug` text
/// (`Error { kind: PARSER, problem: "...", problem_mark: Mark { line: 6, column: 8 }, ... }`,
/// 1-based lines), so that text is read.
fn go_yaml_syntax_error(e: &serde_yaml_ng::Error) -> Option<String> {
    let dbg = format!("{e:?}");
    let rest = dbg.strip_prefix("Error { kind: ")?;
    let scanner = match rest.split_once(',')?.0 {
        "SCANNER" => true,
        "PARSER" => false,
        _ => return None,
    };
    let problem = debug_string_field(rest, "problem: ")?;
    // A mark's 0-based line; a mark at line 1 column 1 is printed as an index: line 0.
    let line0 = |field: &str| -> u64 {
        rest.split_once(field)
            .and_then(|(_, r)| r.strip_prefix("Mark { line: "))
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |l| l.saturating_sub(1))
    };
    let line = match (line0("context_mark: "), line0("problem_mark: ")) {
        (0, 0) => 0,
        (0, p) => p,
        (c, _) => c,
    };
    let line = if line > 0 && scanner { line + 1 } else { line };
    Some(match line {
        0 => format!("yaml: {problem}"),
        n => format!("yaml: line {n}: {problem}"),
    })
}

/// The Rust-quoted string after `field` in a `Debug` text, unquoted.
fn debug_string_field(text: &str, field: &str) -> Option<String> {
    let start = text.find(field)? + field.len();
    let quoted = text[start..].strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// A YAML decoding error in promtool's words: unknown fields as Go's decoder names them
/// (`field x not found in type rulefmt.RuleNode`), other errors with their line.
fn yaml_reason(msg: &str, pos: Pos) -> String {
    // serde_yaml_ng: "PATH: message at line L column C[, while ...]".
    let mut text = msg.to_string();
    if let Some(i) = text.find(" at line ") {
        let rest = &text[i + 9..];
        let end = rest
            .find(" column ")
            .map(|j| {
                let after = &rest[j + 8..];
                j + 8 + after.bytes().take_while(u8::is_ascii_digit).count()
            })
            .unwrap_or(0);
        text = format!("{}{}", &text[..i], &rest[end..]);
    }
    let (path, message) = match text.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (p, m),
        _ => ("", text.as_str()),
    };
    let line = if pos.line > 0 {
        format!("line {}: ", pos.line)
    } else {
        String::new()
    };
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    {
        let ty = if path.contains("rules[") {
            "RuleNode"
        } else if path.starts_with("groups[") {
            "RuleGroup"
        } else {
            "RuleGroups"
        };
        return format!(
            "yaml: unmarshal errors:\n  {line}field {field} not found in type rulefmt.{ty}"
        );
    }
    let message = message
        .replace("struct RawFile", "rulefmt.RuleGroups")
        .replace("struct RawGroup", "rulefmt.RuleGroup")
        .replace("struct RawRule", "rulefmt.RuleNode");
    let message = if path.is_empty() {
        message
    } else {
        format!("{path}: {message}")
    };
    format!("yaml: {line}{message}")
}

#[cfg(test)]
mod tests;
