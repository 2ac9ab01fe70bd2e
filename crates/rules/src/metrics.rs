//! Prometheus's rule-engine self-metrics, one series per group (`rule_group="FILE;NAME"`).

use meshlens_model::escape_label_value as escape;
use std::fmt::Write;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::manager::Snapshot;

type Getter = fn(&Snapshot) -> f64;

const METRICS: [(&str, &str, &str, Getter); 9] = [
    (
        "prometheus_rule_evaluations_total",
        "counter",
        "The total number of rule evaluations.",
        |s| s.stats.evaluations as f64,
    ),
    (
        "prometheus_rule_evaluation_failures_total",
        "counter",
        "The total number of rule evaluation failures.",
        |s| s.stats.failures as f64,
    ),
    (
        "prometheus_rule_group_iterations_missed_total",
        "counter",
        "The total number of rule group evaluations missed due to slow rule group evaluation.",
        |s| s.stats.missed as f64,
    ),
    (
        "prometheus_rule_group_iterations_total",
        "counter",
        "The total number of scheduled rule group evaluations, whether executed or missed.",
        |s| s.stats.iterations as f64,
    ),
    (
        "prometheus_rule_group_last_duration_seconds",
        "gauge",
        "The duration of the last rule group evaluation.",
        |s| s.eval_duration.as_secs_f64(),
    ),
    (
        "prometheus_rule_group_interval_seconds",
        "gauge",
        "The interval of a rule group.",
        |s| s.interval.as_secs_f64(),
    ),
    (
        "prometheus_rule_group_rules",
        "gauge",
        "The number of rules.",
        |s| s.rules.len() as f64,
    ),
    (
        "prometheus_rule_group_last_evaluation_timestamp_seconds",
        "gauge",
        "The timestamp of the last rule group evaluation in seconds.",
        |s| {
            s.last_eval
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64())
        },
    ),
    (
        "prometheus_rule_group_last_evaluation_samples",
        "gauge",
        "The number of samples returned during the last rule group evaluation.",
        |s| s.stats.last_samples as f64,
    ),
];

pub(crate) fn render(groups: &[Arc<Snapshot>], out: &mut String) {
    for (name, kind, help, get) in METRICS {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for g in groups {
            let key = escape(&format!("{};{}", g.file, g.name));
            let v = meshlens_model::format_value(get(g));
            let _ = writeln!(out, "{name}{{rule_group=\"{key}\"}} {v}");
        }
    }
}
