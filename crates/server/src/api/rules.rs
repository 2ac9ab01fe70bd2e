//! Rules, alerts, Alertmanagers, SLOs and reload: Prometheus's paths and shapes, so Grafana's
//! alerting views and the Prometheus UI's calls work.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{success, GlobalState};
use meshlens_rules::{RuleKind, RulesFilter};

fn bad_data(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "error", "errorType": "bad_data", "error": message})),
    )
        .into_response()
}

/// GET /api/v1/rules?type=alert|record&rule_name[]=…&rule_group[]=…&file[]=…
pub async fn rules(State(s): State<Arc<GlobalState>>, RawQuery(q): RawQuery) -> Response {
    let mut filter = RulesFilter::default();
    for (k, v) in url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "type" => {
                filter.kind = match v.as_ref() {
                    "alert" => Some(RuleKind::Alerting),
                    "record" => Some(RuleKind::Recording),
                    "" => None,
                    other => {
                        return bad_data(format!(
                            "invalid rule type {other:?}: use \"alert\" or \"record\""
                        ))
                    }
                }
            }
            "rule_name[]" => filter.rule_names.push(v.into_owned()),
            "rule_group[]" => filter.groups.push(v.into_owned()),
            "file[]" => filter.files.push(v.into_owned()),
            _ => {}
        }
    }
    success(s.rules.manager.rules_json(&filter))
}

/// GET /api/v1/alerts
pub async fn alerts(State(s): State<Arc<GlobalState>>) -> Response {
    success(s.rules.manager.alerts_json())
}

/// GET /api/v1/alertmanagers
pub async fn alertmanagers(State(s): State<Arc<GlobalState>>) -> Response {
    let active: Vec<Value> = s
        .rules
        .notifier
        .active_alertmanagers()
        .into_iter()
        .map(|url| json!({ "url": url }))
        .collect();
    success(json!({"activeAlertmanagers": active, "droppedAlertmanagers": []}))
}

/// GET /api/v1/slos: each objective of `--slo` with its burn rates and the error budget left,
/// read from the generated recording rules' series at this instant.
pub async fn slos(State(s): State<Arc<GlobalState>>) -> Response {
    let slos = s.rules.slos.read().clone();
    let rt = s.rules.clone();
    let out = tokio::task::spawn_blocking(move || {
        let now = meshlens_model::time::now_ms();
        let firing = rt.manager.alerts_json();
        slos.iter()
            .map(|slo| {
                let mut values = serde_json::Map::new();
                for (key, query) in meshlens_slo::status_queries(slo) {
                    let v =
                        match rt
                            .engine
                            .instant_query(rt.stack.metrics_reader.as_ref(), &query, now)
                        {
                            Ok(r) => first_value(&r.value),
                            Err(_) => None,
                        };
                    values.insert(key, v.map_or(Value::Null, |v| json!(v)));
                }
                let alerts: Vec<Value> = firing["alerts"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|al| al["labels"]["service"] == json!(slo.service))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "service": slo.service,
                    "namespace": slo.namespace,
                    "objective": slo.objective,
                    "latency": slo.latency.as_ref().map(|l| json!({
                        "threshold_ms": l.threshold.as_secs_f64() * 1000.0,
                        "objective": l.objective,
                    })),
                    "window": meshlens_slo::format_duration(slo.window),
                    "values": values,
                    "alerts": alerts,
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    success(json!({ "slos": out }))
}

fn first_value(v: &meshlens_promql::Value) -> Option<f64> {
    match v {
        meshlens_promql::Value::Scalar { v, .. } => Some(*v),
        meshlens_promql::Value::Vector(s) => s.first().map(|s| s.v),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

/// POST|PUT /-/reload: as SIGHUP, when `--web.enable-lifecycle` allows it.
pub async fn reload(State(s): State<Arc<GlobalState>>) -> Response {
    if !s.lifecycle {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n").into_response();
    }
    match s.reload().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
    }
}
