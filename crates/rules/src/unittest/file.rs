//! The unit-test file format of `promtool test rules` (Prometheus 2.42), read strictly: an
//! unknown field is an error, as promtool's `yaml.UnmarshalStrict` makes it.
//!
//! Scalars are read as Go's YAML library reads them into strings: `values: 1` and
//! `exp_labels: {code: 200}` are the strings `"1"` and `"200"`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::duration::ModelDuration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    #[serde(default, deserialize_with = "null_default")]
    pub rule_files: Vec<GoString>,
    #[serde(default)]
    pub evaluation_interval: ModelDuration,
    #[serde(default, deserialize_with = "null_default")]
    pub group_eval_order: Vec<GoString>,
    #[serde(default, deserialize_with = "null_default")]
    pub tests: Vec<TestGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestGroup {
    #[serde(default)]
    pub interval: ModelDuration,
    #[serde(default, deserialize_with = "null_default")]
    pub input_series: Vec<InputSeries>,
    #[serde(default, deserialize_with = "null_default")]
    pub alert_rule_test: Vec<AlertTestCase>,
    #[serde(default, deserialize_with = "null_default")]
    pub promql_expr_test: Vec<PromqlTestCase>,
    #[serde(default, deserialize_with = "null_default")]
    pub external_labels: BTreeMap<GoString, GoString>,
    #[serde(default)]
    pub external_url: GoString,
    #[serde(default)]
    pub name: GoString,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSeries {
    #[serde(default)]
    pub series: GoString,
    #[serde(default)]
    pub values: GoString,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTestCase {
    #[serde(default)]
    pub eval_time: ModelDuration,
    #[serde(default)]
    pub alertname: GoString,
    #[serde(default, deserialize_with = "null_default")]
    pub exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpAlert {
    #[serde(default, deserialize_with = "null_default")]
    pub exp_labels: BTreeMap<GoString, GoString>,
    #[serde(default, deserialize_with = "null_default")]
    pub exp_annotations: BTreeMap<GoString, GoString>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromqlTestCase {
    #[serde(default)]
    pub expr: GoString,
    #[serde(default)]
    pub eval_time: ModelDuration,
    #[serde(default, deserialize_with = "null_default")]
    pub exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpSample {
    #[serde(default)]
    pub labels: GoString,
    #[serde(default)]
    pub value: GoFloat,
}

/// Parses a test file's text.
pub fn parse(text: &str) -> Result<TestFile, String> {
    if text.trim().is_empty() {
        return Ok(TestFile::default());
    }
    serde_yaml_ng::from_str::<Option<TestFile>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            let msg = e.to_string();
            let line = e.location().map(|l| l.line());
            unknown_field_message(&msg, line)
                .or_else(|| syntax_message(&msg))
                .unwrap_or_else(|| format!("yaml: {msg}"))
        })
}

/// A YAML syntax error as Go's yaml.v2 words it: `yaml: line N: PROBLEM`, where N is the
/// problem's 1-based line for scanner errors and the 0-based one for parser errors (the
/// `while parsing …` ones), a quirk kept so messages match.
fn syntax_message(msg: &str) -> Option<String> {
    let at = msg.find(" at line ")?;
    let problem = &msg[..at];
    if problem.contains(": ") && problem.contains('`') {
        return None; // a typed-field error, not syntax
    }
    let rest = &msg[at + " at line ".len()..];
    let line: usize = rest.split(' ').next()?.parse().ok()?;
    let line = if rest.contains("while parsing") {
        line.saturating_sub(1)
    } else {
        line
    };
    Some(if line == 0 {
        format!("yaml: {problem}")
    } else {
        format!("yaml: line {line}: {problem}")
    })
}

/// An unknown field in Go's words (`line 14: field x not found in type main.sample`), so
/// the most common mistake reads the same from both tools.
fn unknown_field_message(msg: &str, line: Option<usize>) -> Option<String> {
    let (path, rest) = match msg.find("unknown field `") {
        Some(i) => (
            msg[..i].trim_end_matches(": "),
            &msg[i + "unknown field `".len()..],
        ),
        None => return None,
    };
    let field = &rest[..rest.find('`')?];
    let last = path.rsplit('.').next().unwrap_or("");
    let last = last.split('[').next().unwrap_or("");
    let go_type = match last {
        "" => "unitTestFile",
        "tests" => "testGroup",
        "input_series" => "series",
        "alert_rule_test" => "alertTestCase",
        "exp_alerts" => "alert",
        "promql_expr_test" => "promqlTestCase",
        "exp_samples" => "sample",
        _ => return None,
    };
    Some(format!(
        "yaml: unmarshal errors:\n  line {}: field {field} not found in type main.{go_type}",
        line?
    ))
}

/// `null` where a list or map is expected means empty, as in Go.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string field read from any YAML scalar (numbers and booleans by their text; null is
/// empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoString(pub String);

impl GoString {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GoString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GoString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoString, E> {
                Ok(GoString(yaml_float_text(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<GoString, E> {
                Ok(GoString::default())
            }
        }
        d.deserialize_any(V)
    }
}

fn yaml_float_text(v: f64) -> String {
    if v.is_nan() {
        ".nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { ".inf" } else { "-.inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A float field read as Go's YAML library reads one: numbers, and plain strings Go's
/// `ParseFloat` takes (`+Inf`, `-Inf`, `1_000`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GoFloat(pub f64);

impl<'de> Deserialize<'de> for GoFloat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoFloat;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoFloat, E> {
                Ok(GoFloat(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoFloat, E> {
                Ok(GoFloat(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoFloat, E> {
                Ok(GoFloat(v as f64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<GoFloat, E> {
                Ok(GoFloat(0.0))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoFloat, E> {
                go_parse_float(v)
                    .map(GoFloat)
                    .ok_or_else(|| E::custom(format!("cannot unmarshal {v:?} into float64")))
            }
        }
        d.deserialize_any(V)
    }
}

/// What Go's YAML library and `strconv.ParseFloat` accept for a float written as text.
fn go_parse_float(text: &str) -> Option<f64> {
    let plain = text.replace('_', "");
    let (neg, body) = match plain.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, plain.strip_prefix('+').unwrap_or(&plain)),
    };
    let lower = body.to_ascii_lowercase();
    let v = match lower.as_str() {
        "inf" | "infinity" | ".inf" => f64::INFINITY,
        "nan" | ".nan" => f64::NAN,
        _ => {
            if let Some(hex) = lower.strip_prefix("0x") {
                i64::from_str_radix(hex, 16).ok()? as f64
            } else {
                let ok = !lower.is_empty()
                    && lower
                        .chars()
                        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'));
                if !ok {
                    return None;
                }
                lower.parse::<f64>().ok()?
            }
        }
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_file() {
        let f = parse(
            r#"
rule_files: [a.yml, "b/*.yml"]
evaluation_interval: 30s
group_eval_order: [g1, g2]
tests:
  - interval: 1m
    name: t
    input_series:
      - series: 'up{job="a"}'
        values: 1
      - series: up
    external_labels: {cluster: 7}
    external_url: http://x
    alert_rule_test:
      - eval_time: 5m
        alertname: A
        exp_alerts:
          - exp_labels: {code: 200, ok: true}
            exp_annotations: {summary: "s", empty: }
      - alertname: B
    promql_expr_test:
      - expr: up
        eval_time: 1m
        exp_samples:
          - labels: up
            value: 1e3
          - value: +Inf
          - value: -1_000
"#,
        )
        .unwrap();
        assert_eq!(f.rule_files.len(), 2);
        assert_eq!(f.evaluation_interval.millis(), 30_000);
        let t = &f.tests[0];
        assert_eq!(t.input_series[0].values.as_str(), "1");
        assert_eq!(t.input_series[1].values.as_str(), "");
        assert_eq!(t.external_labels[&GoString("cluster".into())].as_str(), "7");
        let a = &t.alert_rule_test[0].exp_alerts[0];
        assert_eq!(a.exp_labels[&GoString("code".into())].as_str(), "200");
        assert_eq!(a.exp_labels[&GoString("ok".into())].as_str(), "true");
        assert_eq!(a.exp_annotations[&GoString("empty".into())].as_str(), "");
        assert_eq!(t.alert_rule_test[1].eval_time.millis(), 0);
        let s = &t.promql_expr_test[0].exp_samples;
        assert_eq!(s[0].value.0, 1000.0);
        assert_eq!(s[1].value.0, f64::INFINITY);
        assert_eq!(s[1].labels.as_str(), "");
        assert_eq!(s[2].value.0, -1000.0);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        assert!(parse("foo: 1\n").is_err());
        assert!(parse("tests:\n- interval: 1m\n  nope: 1\n").is_err());
        assert!(parse("tests:\n- interval: 1.5m\n").is_err());
        assert!(
            parse("tests:\n- promql_expr_test:\n  - exp_samples:\n    - value: abc\n").is_err()
        );
        assert!(parse("- a\n").is_err());
        assert!(parse("tests: [\n").is_err());
    }

    #[test]
    fn unknown_fields_read_as_in_go() {
        let e = parse("rule_files: []\nfoo: 1\n").unwrap_err();
        assert_eq!(
            e,
            "yaml: unmarshal errors:\n  line 2: field foo not found in type main.unitTestFile"
        );
        let e = parse(
            "tests:\n- interval: 1m\n  promql_expr_test:\n  - expr: up\n    exp_sample: []\n",
        )
        .unwrap_err();
        assert_eq!(e, "yaml: unmarshal errors:\n  line 5: field exp_sample not found in type main.promqlTestCase");
    }

    #[test]
    fn syntax_errors_read_as_in_go() {
        let e = parse("tests:\n- interval: 1m\n  input_series: [{series: a\n  values: 1}\n")
            .unwrap_err();
        assert!(e.starts_with("yaml: line "), "{e}");
        assert_eq!(
            syntax_message("did not find expected ',' or '}' at line 10 column 5, while parsing a flow mapping at line 9 column 9"),
            Some("yaml: line 9: did not find expected ',' or '}'".into())
        );
        assert_eq!(
            syntax_message("mapping values are not allowed in this context at line 3 column 8"),
            Some("yaml: line 3: mapping values are not allowed in this context".into())
        );
    }

    #[test]
    fn empty_files_and_nulls_are_empty() {
        assert!(parse("").unwrap().tests.is_empty());
        assert!(parse("# only a comment\n").unwrap().tests.is_empty());
        let f = parse("rule_files:\ntests:\n").unwrap();
        assert!(f.rule_files.is_empty() && f.tests.is_empty());
    }
}
