//! `/api/v1/rules` and `/api/v1/alerts` in Prometheus's JSON shapes.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use meshlens_model::time::civil_from_days;
use meshlens_model::Labels;
use serde_json::{json, Map, Value};

use crate::manager::Snapshot;
use crate::views::{AlertView, RuleView};
use crate::{RuleKind, RulesFilter};

pub(crate) fn rules(groups: &[Arc<Snapshot>], f: &RulesFilter) -> Value {
    let narrowed = !f.rule_names.is_empty() || !f.groups.is_empty() || !f.files.is_empty();
    let mut out = Vec::new();
    for g in groups {
        if !f.groups.is_empty() && !f.groups.contains(&g.name) {
            continue;
        }
        if !f.files.is_empty() && !f.files.contains(&g.file) {
            continue;
        }
        let rules: Vec<Value> = g
            .rules
            .iter()
            .filter(|r| f.rule_names.is_empty() || f.rule_names.iter().any(|n| n == r.name()))
            .filter_map(|r| rule(r, f.kind))
            .collect();
        // Newer Prometheus leaves out groups whose rules were all filtered away.
        if narrowed && rules.is_empty() {
            continue;
        }
        out.push(json!({
            "name": g.name,
            "file": g.file,
            "rules": rules,
            "interval": g.interval.as_secs_f64(),
            "limit": g.limit,
            "evaluationTime": g.eval_duration.as_secs_f64(),
            "lastEvaluation": go_time(g.last_eval),
        }));
    }
    json!({ "groups": out })
}

fn rule(r: &RuleView, kind: Option<RuleKind>) -> Option<Value> {
    match r {
        RuleView::Alerting(a) if kind != Some(RuleKind::Recording) => {
            let mut v = json!({
                "state": a.state.as_str(),
                "name": a.name,
                "query": a.query,
                "duration": a.for_.as_secs_f64(),
                "keepFiringFor": a.keep_firing_for.as_secs_f64(),
                "labels": a.labels,
                "annotations": a.annotations,
                "alerts": a.alerts.iter().map(alert).collect::<Vec<_>>(),
                "health": a.health.as_str(),
                "evaluationTime": a.evaluation_time.as_secs_f64(),
                "lastEvaluation": go_time(a.last_evaluation),
                "type": "alerting",
            });
            if let (Some(e), Some(o)) = (&a.last_error, v.as_object_mut()) {
                o.insert("lastError".into(), json!(e));
            }
            Some(v)
        }
        RuleView::Recording(rec) if kind != Some(RuleKind::Alerting) => {
            let mut o = Map::new();
            o.insert("name".into(), json!(rec.name));
            o.insert("query".into(), json!(rec.query));
            if !rec.labels.is_empty() {
                o.insert("labels".into(), json!(rec.labels));
            }
            o.insert("health".into(), json!(rec.health.as_str()));
            if let Some(e) = &rec.last_error {
                o.insert("lastError".into(), json!(e));
            }
            o.insert(
                "evaluationTime".into(),
                json!(rec.evaluation_time.as_secs_f64()),
            );
            o.insert("lastEvaluation".into(), json!(go_time(rec.last_evaluation)));
            o.insert("type".into(), json!("recording"));
            Some(Value::Object(o))
        }
        _ => None,
    }
}

pub(crate) fn alerts(groups: &[Arc<Snapshot>]) -> Value {
    let list: Vec<Value> = groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .filter_map(|r| match r {
            RuleView::Alerting(a) => Some(a.alerts.iter().map(alert)),
            RuleView::Recording(_) => None,
        })
        .flatten()
        .collect();
    json!({ "alerts": list })
}

fn alert(a: &AlertView) -> Value {
    let mut v = json!({
        "labels": labels(&a.labels),
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": go_time_ms(a.active_at_ms),
        "value": go_float_e(a.value),
    });
    if let (Some(t), Some(o)) = (a.keep_firing_since_ms, v.as_object_mut()) {
        o.insert("keepFiringSince".into(), json!(go_time_ms(t)));
    }
    v
}

fn labels(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|l| (l.name.clone(), Value::String(l.value.clone())))
            .collect(),
    )
}

/// Go's JSON for a `time.Time` (RFC 3339, fraction without trailing zeros, UTC); the zero
/// time when never.
pub(crate) fn go_time(t: Option<SystemTime>) -> String {
    let Some(d) = t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) else {
        return "0001-01-01T00:00:00Z".into();
    };
    format_time(d.as_secs() as i64, d.subsec_nanos())
}

pub(crate) fn go_time_ms(ms: i64) -> String {
    format_time(
        ms.div_euclid(1000),
        (ms.rem_euclid(1000) as u32) * 1_000_000,
    )
}

fn format_time(secs: i64, nanos: u32) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: `1e+00`, `1.5e-07`, `NaN`, `+Inf`.
pub(crate) fn go_float_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(go_float_e(1.0), "1e+00");
        assert_eq!(go_float_e(0.0), "0e+00");
        assert_eq!(go_float_e(-1234.5), "-1.2345e+03");
        assert_eq!(go_float_e(1.5e-7), "1.5e-07");
        assert_eq!(go_float_e(1e100), "1e+100");
        assert_eq!(go_float_e(f64::NEG_INFINITY), "-Inf");
        assert_eq!(go_time_ms(1_700_000_000_120), "2023-11-14T22:13:20.12Z");
        assert_eq!(go_time_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
    }
}
