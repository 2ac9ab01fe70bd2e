//! `GET /api/v1/targets` in Prometheus's shape.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::{success, GlobalState};
use crate::config::format_duration;
use meshlens_model::time as timefmt;

pub async fn targets(
    State(s): State<Arc<GlobalState>>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let state = p.get("state").map(String::as_str).unwrap_or("any");
    let active: Vec<Value> = if matches!(state, "any" | "active" | "") {
        s.scrape
            .read()
            .active_targets()
            .into_iter()
            .map(|t| {
                json!({
                    "discoveredLabels": labels_json(&t.target.discovered),
                    "labels": labels_json(&t.target.labels),
                    "scrapePool": t.target.job,
                    "scrapeUrl": crate::config::redact_url(&t.target.url),
                    "globalUrl": crate::config::redact_url(&t.target.url),
                    "lastError": t.health.last_error,
                    "lastScrape": t.health.last_scrape.map(timefmt::rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                    "lastScrapeDuration": t.health.last_duration.as_secs_f64(),
                    "health": t.health.health,
                    "scrapeInterval": format_duration(t.target.interval),
                    "scrapeTimeout": format_duration(t.target.timeout),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let dropped: Vec<Value> = if matches!(state, "any" | "dropped" | "") {
        s.scrape
            .read()
            .dropped_targets()
            .into_iter()
            .map(|(_, l)| json!({"discoveredLabels": labels_json(&l)}))
            .collect()
    } else {
        Vec::new()
    };
    success(json!({"activeTargets": active, "droppedTargets": dropped}))
}

fn labels_json(l: &meshlens_model::Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|x| (x.name.clone(), Value::String(x.value.clone())))
            .collect(),
    )
}
