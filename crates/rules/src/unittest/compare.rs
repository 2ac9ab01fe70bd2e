//! What a test expects against what the rules produced, compared as promtool 2.42 compares
//! them (order-insensitive, values exactly: `NaN` never equals `NaN`), and the failure
//! messages in promtool's layout, byte for byte.

use meshlens_model::Labels;

use super::duration::ModelDuration;
use super::gofmt::{format_float_e, go_quote, labels_string};

/// Name/value pairs sorted by name; kept as pairs (not [`Labels`]) so that an expected
/// empty value stays visible, as in promtool.
pub type Pairs = Vec<(String, String)>;

/// One firing alert's labels and annotations.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelsAndAnnotations {
    pub labels: Pairs,
    pub annotations: Pairs,
}

impl LabelsAndAnnotations {
    /// Builds from unsorted pairs.
    pub fn new(mut labels: Pairs, mut annotations: Pairs) -> Self {
        labels.sort();
        annotations.sort();
        LabelsAndAnnotations {
            labels,
            annotations,
        }
    }

    fn render(&self) -> String {
        format!(
            "Labels:{}\nAnnotations:{}",
            pairs_string(&self.labels),
            pairs_string(&self.annotations)
        )
    }
}

fn pairs_string(p: &Pairs) -> String {
    labels_string(p.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

/// Prefixes every line but the first with `indent`.
pub fn indent_lines(lines: &str, indent: &str) -> String {
    let mut out = String::with_capacity(lines.len());
    for (i, l) in lines.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(indent);
        }
        out.push_str(l);
    }
    out
}

/// A list of alerts as promtool prints one: `[]`, or numbered entries in brackets.
pub fn alerts_string(list: &[LabelsAndAnnotations]) -> String {
    if list.is_empty() {
        return "[]".into();
    }
    let mut s = String::from("[");
    for (i, a) in list.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("\n{i}:"));
        s.push_str(&indent_lines(&format!("\n{}", a.render()), "  "));
    }
    s.push_str("\n]");
    s
}

/// Compares one `alert_rule_test` case; the failure message when they differ.
pub fn check_alerts(
    test_name: &str,
    alertname: &str,
    eval_time: ModelDuration,
    mut exp: Vec<LabelsAndAnnotations>,
    mut got: Vec<LabelsAndAnnotations>,
) -> Option<String> {
    exp.sort();
    got.sort();
    if exp == got {
        return None;
    }
    let name = if test_name.is_empty() {
        String::new()
    } else {
        format!("    name: {test_name},\n")
    };
    let pad = "            ";
    Some(format!(
        "{name}    alertname: {alertname}, time: {eval_time}, \n        exp:{}, \n        got:{}",
        indent_lines(&alerts_string(&exp), pad),
        indent_lines(&alerts_string(&got), pad)
    ))
}

/// One sample of a `promql_expr_test`, expected or returned.
#[derive(Clone, Debug)]
pub struct ParsedSample {
    pub labels: Labels,
    pub value: f64,
}

impl ParsedSample {
    fn render(&self) -> String {
        let pairs = self
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()));
        format!("{} {}", labels_string(pairs), format_float_e(self.value))
    }
}

fn samples_string(list: &[ParsedSample]) -> String {
    if list.is_empty() {
        return "nil".into();
    }
    list.iter()
        .map(ParsedSample::render)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares one `promql_expr_test` case; the failure message when they differ.
pub fn check_samples(
    expr: &str,
    eval_time: ModelDuration,
    mut exp: Vec<ParsedSample>,
    mut got: Vec<ParsedSample>,
) -> Option<String> {
    exp.sort_by(|a, b| a.labels.cmp(&b.labels));
    got.sort_by(|a, b| a.labels.cmp(&b.labels));
    // Exact float equality, as Go's reflect.DeepEqual: NaN never matches.
    let same = exp.len() == got.len()
        && exp
            .iter()
            .zip(&got)
            .all(|(e, g)| e.labels == g.labels && e.value == g.value);
    if same {
        return None;
    }
    Some(format!(
        "    expr: {}, time: {eval_time},\n        exp: {}\n        got: {}",
        go_quote(expr),
        samples_string(&exp),
        samples_string(&got)
    ))
}

/// A query that failed, or an expectation that could not be read.
pub fn expr_error(expr: &str, eval_time: ModelDuration, err: &str) -> String {
    format!(
        "    expr: {}, time: {eval_time}, err: {err}",
        go_quote(expr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn la(labels: &[(&str, &str)], ann: &[(&str, &str)]) -> LabelsAndAnnotations {
        let p = |x: &[(&str, &str)]| {
            x.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        LabelsAndAnnotations::new(p(labels), p(ann))
    }

    #[test]
    fn alerts_compare_in_any_order() {
        let a = la(&[("alertname", "A"), ("x", "1")], &[("s", "1")]);
        let b = la(&[("alertname", "A"), ("x", "2")], &[]);
        let t = ModelDuration(60_000);
        assert_eq!(
            check_alerts(
                "",
                "A",
                t,
                vec![a.clone(), b.clone()],
                vec![b.clone(), a.clone()]
            ),
            None
        );
        assert!(check_alerts("", "A", t, vec![a.clone()], vec![b]).is_some());
        assert!(check_alerts("", "A", t, vec![a.clone()], vec![]).is_some());
        let empty_value = la(&[("alertname", "A"), ("x", "1")], &[("s", "1"), ("e", "")]);
        assert!(check_alerts("", "A", t, vec![empty_value], vec![a]).is_some());
    }

    #[test]
    fn alert_failure_reads_as_promtool_prints_it() {
        let exp = la(
            &[
                ("severity", "page"),
                ("alertname", "InstanceDown"),
                ("job", "a"),
            ],
            &[("summary", "Instance y down")],
        );
        let msg = check_alerts(
            "first",
            "InstanceDown",
            ModelDuration(300_000),
            vec![exp],
            vec![],
        )
        .unwrap();
        let want = "    name: first,\n    alertname: InstanceDown, time: 5m, \n        exp:[\n            0:\n              Labels:{alertname=\"InstanceDown\", job=\"a\", severity=\"page\"}\n              Annotations:{summary=\"Instance y down\"}\n            ], \n        got:[]";
        assert_eq!(msg, want);
    }

    #[test]
    fn two_alerts_are_numbered() {
        let s = alerts_string(&[la(&[("a", "1")], &[]), la(&[("a", "2")], &[])]);
        assert_eq!(
            s,
            "[\n0:\n  Labels:{a=\"1\"}\n  Annotations:{},\n1:\n  Labels:{a=\"2\"}\n  Annotations:{}\n]"
        );
    }

    #[test]
    fn samples_compare_exactly_and_print_in_go_notation() {
        let s = |l: &[(&str, &str)], v| ParsedSample {
            labels: Labels::from_pairs(l.iter().copied()),
            value: v,
        };
        let t = ModelDuration(240_000);
        let up = [("__name__", "job:up:sum"), ("job", "a")];
        assert!(check_samples(
            "x",
            t,
            vec![s(&up, 1.0), s(&[], 2.0)],
            vec![s(&[], 2.0), s(&up, 1.0)]
        )
        .is_none());
        assert!(check_samples("x", t, vec![], vec![]).is_none());
        assert!(check_samples("x", t, vec![s(&[], f64::NAN)], vec![s(&[], f64::NAN)]).is_some());
        assert!(check_samples("x", t, vec![s(&[], 0.0)], vec![s(&[], -0.0)]).is_none());
        let msg = check_samples("job:up:sum", t, vec![s(&up, 2.5)], vec![s(&up, 1.0)]).unwrap();
        assert_eq!(
            msg,
            "    expr: \"job:up:sum\", time: 4m,\n        exp: {__name__=\"job:up:sum\", job=\"a\"} 2.5E+00\n        got: {__name__=\"job:up:sum\", job=\"a\"} 1E+00"
        );
        let msg =
            check_samples("a\"b", t, vec![s(&[], 1.0), s(&[("x", "1")], 2.0)], vec![]).unwrap();
        assert!(
            msg.ends_with("exp: {} 1E+00, {x=\"1\"} 2E+00\n        got: nil"),
            "{msg}"
        );
    }
}
