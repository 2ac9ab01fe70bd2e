//! SQL text built from user input: string literals and label matchers.
//!
//! Every value from a request reaches ClickHouse as a quoted literal built here; names of
//! databases and clusters are checked when the address is parsed (see `url`).

use meshlens_model::{LabelMatcher, MatchOp, METRIC_NAME};

/// A ClickHouse string literal: backslash and single quote escaped, everything else as is.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The expression for one label's value in the `series` table: the empty string when the
/// series lacks the label, as PromQL matchers see a missing label. `__name__` reads the
/// metric name column, which leads the sort key.
pub fn label_expr(name: &str) -> String {
    if name == METRIC_NAME {
        "metric_name".to_string()
    } else {
        // Index 0 (not found) yields the element type's default, the empty string.
        format!("label_values[indexOf(label_names, {})]", quote(name))
    }
}

/// A matcher as a condition on the `series` table.
///
/// Regexes: PromQL anchors them at both ends and lets `.` match newlines; ClickHouse's
/// `match()` (re2) searches anywhere, so the pattern is wrapped `^(?s:…)$` as the model's
/// matcher does. A regex that is a plain alternation of literals becomes `IN`, which
/// ClickHouse evaluates without a regex engine.
pub fn matcher_condition(m: &LabelMatcher) -> String {
    let col = label_expr(&m.name);
    match m.op {
        MatchOp::Equal => format!("{col} = {}", quote(&m.value)),
        MatchOp::NotEqual => format!("{col} != {}", quote(&m.value)),
        MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
            let not = if m.op == MatchOp::RegexNoMatch {
                "NOT "
            } else {
                ""
            };
            if let Some(set) = literal_set(m) {
                let list: Vec<String> = set.iter().map(|s| quote(s)).collect();
                format!("{col} {not}IN ({})", list.join(", "))
            } else {
                format!(
                    "{not}match({col}, {})",
                    quote(&format!("^(?s:{})$", portable_groups(&m.value)))
                )
            }
        }
    }
}

/// Named groups written `(?P<name>…)`: the model's matcher (like Prometheus) also takes
/// `(?<name>…)`, which the re2 of current ClickHouse releases takes but 18.16's refuses;
/// `(?P<` is the form every re2 knows. Escaped characters and character classes are
/// left alone.
fn portable_groups(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 4);
    let mut chars = re.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '[' if !in_class => {
                in_class = true;
                // A `]` first in the class (after any `^`) is a literal.
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().unwrap_or('^'));
                }
                if chars.peek() == Some(&']') {
                    out.push(chars.next().unwrap_or(']'));
                }
            }
            // `[:alpha:]` inside a class ends with its own `]`.
            '[' if chars.peek() == Some(&':') => {
                for n in chars.by_ref() {
                    out.push(n);
                    if n == ']' {
                        break;
                    }
                }
            }
            ']' if in_class => in_class = false,
            '(' if !in_class => {
                let mut ahead = chars.clone();
                if ahead.next() == Some('?')
                    && ahead.next() == Some('<')
                    && ahead
                        .next()
                        .is_some_and(|n| n.is_alphanumeric() || n == '_')
                {
                    chars.next();
                    out.push_str("?P");
                }
            }
            _ => {}
        }
    }
    out
}

/// The literals of a regex that is only `a|b|c` (no metacharacters at all).
fn literal_set(m: &LabelMatcher) -> Option<Vec<String>> {
    let special = |c: char| "\\.+*?()[]{}^$|".contains(c);
    let parts: Vec<&str> = m.value.split('|').collect();
    if parts.iter().any(|p| p.chars().any(special)) {
        return None;
    }
    Some(parts.into_iter().map(str::to_string).collect())
}

/// All matchers as one `WHERE` condition (`1` when there are none).
pub fn matchers_condition(matchers: &[LabelMatcher]) -> String {
    if matchers.is_empty() {
        return "1".to_string();
    }
    let parts: Vec<String> = matchers
        .iter()
        .map(|m| format!("({})", matcher_condition(m)))
        .collect();
    parts.join(" AND ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_escape_backslash_and_quote() {
        assert_eq!(quote("a'b\\c"), r"'a\'b\\c'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("\n"), "'\n'");
    }

    #[test]
    fn matchers_become_sql() {
        let m = |op, n: &str, v: &str| LabelMatcher::new(op, n, v).unwrap();
        assert_eq!(
            matcher_condition(&m(MatchOp::Equal, "__name__", "up")),
            "metric_name = 'up'"
        );
        assert_eq!(
            matcher_condition(&m(MatchOp::NotEqual, "job", "a'")),
            r"label_values[indexOf(label_names, 'job')] != 'a\''"
        );
        assert_eq!(
            matcher_condition(&m(MatchOp::RegexMatch, "job", "api|db|")),
            "label_values[indexOf(label_names, 'job')] IN ('api', 'db', '')"
        );
        assert_eq!(
            matcher_condition(&m(MatchOp::RegexNoMatch, "job", "a.*")),
            "NOT match(label_values[indexOf(label_names, 'job')], '^(?s:a.*)$')"
        );
        assert_eq!(
            matcher_condition(&m(MatchOp::RegexMatch, "path", r"/a\.b")),
            r"match(label_values[indexOf(label_names, 'path')], '^(?s:/a\\.b)$')"
        );
        assert_eq!(matchers_condition(&[]), "1");
    }

    #[test]
    fn named_groups_take_the_form_every_re2_knows() {
        assert_eq!(portable_groups("(?<a>x)|(?P<b>y)"), "(?P<a>x)|(?P<b>y)");
        // Escaped, inside a class, or not a name: left as written.
        assert_eq!(portable_groups(r"\(?<a>x)"), r"\(?<a>x)");
        assert_eq!(portable_groups("[(?<a>]x"), "[(?<a>]x");
        assert_eq!(portable_groups("[](?<a>]"), "[](?<a>]");
        assert_eq!(portable_groups("[[:alpha:](?<]"), "[[:alpha:](?<]");
        assert_eq!(portable_groups("(?<=a)"), "(?<=a)");
        assert_eq!(portable_groups("[^]](?<n>ü)"), "[^]](?P<n>ü)");
    }
}
