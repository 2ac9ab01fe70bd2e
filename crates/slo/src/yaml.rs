//! The rule file's YAML, written by hand so expressions come out as readable block scalars
//! and the output cannot fail; every string from the SLO file is double-quoted and escaped.

use std::fmt::Write as _;

/// A Prometheus rule group.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub name: String,
    pub interval: &'static str,
    /// Written as YAML comments above the group (e.g. a part that could not be generated).
    pub notes: Vec<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub(crate) enum Rule {
    Record {
        record: String,
        expr: String,
        labels: Vec<(String, String)>,
    },
    Alert {
        alert: String,
        expr: String,
        hold: String,
        labels: Vec<(String, String)>,
        annotations: Vec<(String, String)>,
    },
}

pub(crate) fn write_file(header: &[&str], groups: &[Group]) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "# {line}");
    }
    if groups.is_empty() {
        out.push_str("groups: []\n");
        return out;
    }
    out.push_str("groups:\n");
    for g in groups {
        for n in &g.notes {
            let _ = writeln!(out, "  # {}", n.replace(['\n', '\r'], " "));
        }
        let _ = writeln!(out, "  - name: {}", quote(&g.name));
        let _ = writeln!(out, "    interval: {}", g.interval);
        out.push_str("    rules:\n");
        for r in &g.rules {
            match r {
                Rule::Record {
                    record,
                    expr,
                    labels,
                } => {
                    let _ = writeln!(out, "      - record: {record}");
                    write_expr(&mut out, expr);
                    write_map(&mut out, "labels", labels);
                }
                Rule::Alert {
                    alert,
                    expr,
                    hold,
                    labels,
                    annotations,
                } => {
                    let _ = writeln!(out, "      - alert: {alert}");
                    write_expr(&mut out, expr);
                    let _ = writeln!(out, "        for: {hold}");
                    write_map(&mut out, "labels", labels);
                    write_map(&mut out, "annotations", annotations);
                }
            }
        }
    }
    out
}

fn write_expr(out: &mut String, expr: &str) {
    out.push_str("        expr: |-\n");
    for line in expr.lines() {
        let _ = writeln!(out, "          {line}");
    }
}

fn write_map(out: &mut String, key: &str, entries: &[(String, String)]) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(out, "        {key}:");
    for (k, v) in entries {
        let _ = writeln!(out, "          {k}: {}", quote(v));
    }
}

/// A YAML double-quoted scalar.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_reads_back_as_the_same_values() {
        let g = Group {
            name: "odd \"name\"\n\\".into(),
            interval: "30s",
            notes: vec!["a note\nsplit".into()],
            rules: vec![
                Rule::Record {
                    record: "a:b:c".into(),
                    expr: "sum(x{a=\"1\"})\n/\n2".into(),
                    labels: vec![("service".into(), "s\u{1}".into())],
                },
                Rule::Alert {
                    alert: "A".into(),
                    expr: "up == 0".into(),
                    hold: "2m".into(),
                    labels: vec![("severity".into(), "page".into())],
                    annotations: vec![("summary".into(), "{{ $value }}: 'x'".into())],
                },
            ],
        };
        let text = write_file(&["head"], &[g]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let g0 = &v["groups"][0];
        assert_eq!(g0["name"].as_str(), Some("odd \"name\"\n\\"));
        assert_eq!(g0["interval"].as_str(), Some("30s"));
        let r = &g0["rules"];
        assert_eq!(r[0]["expr"].as_str(), Some("sum(x{a=\"1\"})\n/\n2"));
        assert_eq!(r[0]["labels"]["service"].as_str(), Some("s\u{1}"));
        assert_eq!(r[1]["for"].as_str(), Some("2m"));
        assert_eq!(
            r[1]["annotations"]["summary"].as_str(),
            Some("{{ $value }}: 'x'")
        );
        let empty = write_file(&[], &[]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&empty).unwrap();
        assert_eq!(v["groups"].as_sequence().map(|s| s.len()), Some(0));
    }
}
