//! Renders every template of `oracle/table.rs` and compares with what Prometheus 2.42
//! rendered for it: values, Go formatting, builtins, Prometheus functions, and the exact
//! text of parse and execution errors.

#[path = "oracle/table.rs"]
mod table;

use std::collections::BTreeMap;

use meshlens_template::{expand, QueryFn, Sample, Template, TemplateData};

/// The data `promtool` had: `q` has two series, a number queries a scalar (a sample
/// without labels), anything else matches nothing.
struct Fixture;

impl QueryFn for Fixture {
    fn query(&self, q: &str) -> Result<Vec<Sample>, String> {
        let series = |instance: &str, value: f64| Sample {
            labels: [("__name__", "q"), ("instance", instance)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        };
        Ok(match q {
            "q" => vec![series("a", 11.0), series("b", 21.0)],
            _ => match q.parse::<f64>() {
                Ok(v) => vec![Sample {
                    labels: BTreeMap::new(),
                    value: v,
                }],
                Err(_) => Vec::new(),
            },
        })
    }
}

fn value(v: &str) -> f64 {
    match v {
        "Inf" | "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or(f64::NAN),
    }
}

#[test]
fn renders_like_prometheus() {
    let mut failures = Vec::new();
    for &(name, template, val, labels, want) in table::CASES {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let external = BTreeMap::new();
        let data = TemplateData {
            labels: &labels,
            external_labels: &external,
            external_url: "",
            value: value(val),
            query: Some(&Fixture),
        };
        let got = match want.strip_prefix("PARSE: ") {
            // promtool refuses the rule file with the bare Go error; at run time
            // Prometheus would render it with its usual prefixes.
            Some(_) => match Template::parse(name, template) {
                Ok(_) => "parsed".to_string(),
                Err(e) => {
                    let rendered = expand(name, template, &data);
                    let expected = format!(
                        "<error expanding template: error parsing template {name}: {}>",
                        e.go_message()
                    );
                    if rendered != expected {
                        failures.push(format!("{template:?}: expand gave {rendered:?}"));
                    }
                    format!("PARSE: {}", e.go_message())
                }
            },
            None => expand(name, template, &data),
        };
        if got != want {
            failures.push(format!("{template:?}\n   want {want:?}\n    got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        table::CASES.len(),
        failures.join("\n")
    );
}
