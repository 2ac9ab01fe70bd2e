//! The SLO file: read raw (unknown fields refused), then validated entry by entry so each
//! error names the entry's index and the field.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use crate::duration::parse_duration;
use crate::sli::locate;
use crate::{LatencySlo, Slo, SloError};

const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// The longest alert window: a shorter SLO window would make the 3d alert meaningless.
const MIN_WINDOW: Duration = Duration::from_secs(3 * 86_400);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    slos: Vec<RawSlo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    service: String,
    #[serde(default)]
    namespace: Option<String>,
    objective: f64,
    #[serde(default)]
    latency: Option<RawLatency>,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    reporter: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    threshold: String,
    objective: f64,
}

/// Reads an SLO file (`slos:` list of `service`, `namespace`, `objective`, `latency`,
/// `window`). `file` is only used in error messages.
pub fn parse_slo_file(text: &str, file: &str) -> Result<Vec<Slo>, SloError> {
    let raw: RawFile = serde_yaml_ng::from_str(text).map_err(|e| SloError::Syntax {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.slos.len());
    for (index, r) in raw.slos.into_iter().enumerate() {
        let invalid = |field: &str, message: String| SloError::Invalid {
            file: file.to_string(),
            index,
            field: field.to_string(),
            message,
        };
        check_name(&r.service).map_err(|m| invalid("service", m))?;
        if let Some(ns) = &r.namespace {
            check_name(ns).map_err(|m| invalid("namespace", m))?;
        }
        check_objective(r.objective).map_err(|m| invalid("objective", m))?;
        let window = match &r.window {
            None => DEFAULT_WINDOW,
            Some(w) => parse_duration(w).map_err(|e| invalid("window", e.to_string()))?,
        };
        if window < MIN_WINDOW {
            return Err(invalid(
                "window",
                "must be at least 3d, the longest alert window".to_string(),
            ));
        }
        let latency = match r.latency {
            None => None,
            Some(l) => {
                let threshold = parse_duration(&l.threshold)
                    .map_err(|e| invalid("latency.threshold", e.to_string()))?;
                locate(threshold.as_secs_f64() * 1000.0)
                    .map_err(|m| invalid("latency.threshold", m))?;
                check_objective(l.objective).map_err(|m| invalid("latency.objective", m))?;
                Some(LatencySlo {
                    threshold,
                    objective: l.objective,
                })
            }
        };
        if !seen.insert((r.service.clone(), r.namespace.clone())) {
            return Err(invalid(
                "service",
                format!(
                    "{:?}{} is already defined by an earlier entry",
                    r.service,
                    r.namespace
                        .as_deref()
                        .map(|n| format!(" in namespace {n:?}"))
                        .unwrap_or_default()
                ),
            ));
        }
        let reporter = match r.reporter.as_deref() {
            None | Some("destination") => crate::Reporter::Destination,
            Some("source") => crate::Reporter::Source,
            Some(other) => {
                return Err(invalid(
                    "reporter",
                    format!("{other:?} is not \"source\" or \"destination\""),
                ))
            }
        };
        out.push(Slo {
            service: r.service,
            namespace: r.namespace,
            objective: r.objective,
            latency,
            window,
            reporter,
        });
    }
    Ok(out)
}

/// Service and namespace names as Istio reports them: Kubernetes names, or a
/// ServiceEntry's host.
fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    if s.len() > 253 {
        return Err("longer than 253 characters".to_string());
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        Some(c) => Err(format!(
            "{s:?} has {c:?}; only letters, digits, '-', '.' and '_' are allowed"
        )),
        None => Ok(()),
    }
}

fn check_objective(v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 && v < 100.0 {
        Ok(())
    } else {
        Err(format!(
            "must be a percentage above 0 and below 100 (such as 99.9), got {v}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Slo>, SloError> {
        parse_slo_file(text, "slo.yaml")
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(v) => panic!("accepted: {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_the_documented_example() {
        let slos = parse(
            "slos:\n  - service: reviews\n    namespace: default\n    objective: 99.9\n    \
             latency: {threshold: 300ms, objective: 99}\n    window: 30d\n  - service: ratings\n    objective: 99\n",
        )
        .unwrap();
        assert_eq!(slos.len(), 2);
        assert_eq!(
            slos[0],
            Slo {
                service: "reviews".into(),
                namespace: Some("default".into()),
                objective: 99.9,
                latency: Some(LatencySlo {
                    threshold: Duration::from_millis(300),
                    objective: 99.0
                }),
                window: DEFAULT_WINDOW,
                reporter: Default::default(),
            }
        );
        assert_eq!(slos[1].namespace, None);
        assert_eq!(slos[1].latency, None);
        assert_eq!(slos[1].window, DEFAULT_WINDOW);
    }

    #[test]
    fn empty_list_is_fine() {
        assert_eq!(parse("slos: []\n").unwrap(), vec![]);
    }

    #[test]
    fn unknown_fields_are_refused_with_their_place() {
        let e = err("slos:\n  - service: a\n    objective: 99\n    objectve: 98\n");
        assert!(e.starts_with("slo.yaml: "), "{e}");
        assert!(e.contains("objectve"), "{e}");
        assert!(e.contains("slos[0]"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        let e = err(
            "slos:\n  - service: a\n    objective: 99\n    latency: {threshold: 1s, objective: 9, p: 1}\n",
        );
        assert!(e.contains("slos[0].latency") && e.contains("`p`"), "{e}");
        let e = err("slo:\n  - service: a\n");
        assert!(e.contains("unknown field `slo`"), "{e}");
    }

    #[test]
    fn missing_and_mistyped_fields() {
        let e = err("slos:\n  - service: a\n  - objective: 99\n");
        assert!(e.contains("objective"), "{e}");
        let e = err("slos:\n  - service: a\n    objective: 99\n  - objective: 99\n");
        assert!(e.contains("slos[1]") && e.contains("service"), "{e}");
        let e = err("slos:\n  - service: a\n    objective: high\n");
        assert!(e.contains("slos[0].objective"), "{e}");
        assert!(err("").contains("slo.yaml"));
        assert!(err("[1, 2]").contains("slo.yaml"));
        assert!(err("slos: [").contains("slo.yaml"));
    }

    #[test]
    fn bad_values_name_the_entry_and_field() {
        let cases = [
            (
                "service: ''\n    objective: 99",
                "slos[1].service: must not be empty",
            ),
            ("service: 'a\"b'\n    objective: 99", "slos[1].service:"),
            (
                "service: b\n    namespace: 'x y'\n    objective: 99",
                "slos[1].namespace:",
            ),
            (
                "service: b\n    objective: 100",
                "slos[1].objective: must be a percentage",
            ),
            ("service: b\n    objective: 0", "slos[1].objective:"),
            ("service: b\n    objective: -5", "slos[1].objective:"),
            ("service: b\n    objective: .nan", "slos[1].objective:"),
            (
                "service: b\n    objective: 99\n    window: 30",
                "slos[1].window: invalid duration",
            ),
            (
                "service: b\n    objective: 99\n    window: 1d",
                "slos[1].window: must be at least 3d",
            ),
            (
                "service: b\n    objective: 99\n    latency: {threshold: fast, objective: 99}",
                "slos[1].latency.threshold: invalid duration",
            ),
            (
                "service: b\n    objective: 99\n    latency: {threshold: 2h, objective: 99}",
                "slos[1].latency.threshold: 7200000ms is above the largest finite bucket",
            ),
            (
                "service: b\n    objective: 99\n    latency: {threshold: 0, objective: 99}",
                "slos[1].latency.threshold: must be more than 0",
            ),
            (
                "service: b\n    objective: 99\n    latency: {threshold: 1s, objective: 100.5}",
                "slos[1].latency.objective:",
            ),
            (
                "service: a\n    objective: 98",
                "slos[1].service: \"a\" is already defined",
            ),
        ];
        for (entry, want) in cases {
            let text = format!("slos:\n  - service: a\n    objective: 99\n  - {entry}\n");
            let e = err(&text);
            assert!(e.contains(want), "{entry:?}: got {e:?}, want {want:?}");
            assert!(e.starts_with("slo.yaml: "), "{e}");
        }
    }

    #[test]
    fn same_service_in_two_namespaces_is_allowed() {
        let slos = parse(
            "slos:\n  - {service: a, objective: 99, namespace: x}\n  - {service: a, objective: 99, namespace: y}\n  - {service: a, objective: 99}\n",
        )
        .unwrap();
        assert_eq!(slos.len(), 3);
        let e = err("slos:\n  - {service: a, objective: 99, namespace: x}\n  - {service: a, objective: 9, namespace: x}\n");
        assert!(
            e.contains("slos[1].service: \"a\" in namespace \"x\" is already defined"),
            "{e}"
        );
    }
}
