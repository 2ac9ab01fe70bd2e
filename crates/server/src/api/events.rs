//! `GET /api/v1/events`: the loop's timeline, newest first (`since`, `until` as RFC 3339 or
//! Unix seconds, `kind` repeatable or comma-separated, `service`, `limit`), and
//! `POST /api/v1/events`: how a `meshlens rollout` running elsewhere records its steps.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meshlens_verify::events::{EventKind, EventQuery, EventSink, NewEvent};
use serde_json::json;

use super::GlobalState;

pub async fn list(
    State(s): State<Arc<GlobalState>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let mut q = EventQuery {
        limit: Some(500),
        ..Default::default()
    };
    for (k, v) in &params {
        let bad = |what: &str| bad_data(&format!("invalid parameter {k:?}: {what}"));
        match k.as_str() {
            "since" | "until" => {
                let Some(t) = meshlens_model::time::parse_time(v) else {
                    return bad("not a time (RFC 3339 or Unix seconds)");
                };
                if k == "since" {
                    q.since_ms = Some(t);
                } else {
                    q.until_ms = Some(t);
                }
            }
            "kind" => {
                for part in v.split(',').filter(|p| !p.is_empty()) {
                    match EventKind::parse(part) {
                        Some(kind) => q.kinds.push(kind),
                        None => {
                            return bad(
                                "one of rollout, verdict, anomaly, alert, remediation, config",
                            )
                        }
                    }
                }
            }
            "service" => q.service = Some(v.clone()).filter(|s| !s.is_empty()),
            "limit" => match v.parse::<usize>() {
                Ok(n) if n > 0 => q.limit = Some(n),
                _ => return bad("a positive integer"),
            },
            _ => {}
        }
    }
    let events = s.events.list(&q);
    Json(json!({"status": "success", "data": events})).into_response()
}

pub async fn record(State(s): State<Arc<GlobalState>>, body: axum::body::Bytes) -> Response {
    let new: NewEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return bad_data(&format!("the event is not valid JSON: {e}")),
    };
    match s.events.record(new) {
        Ok(e) => (
            StatusCode::OK,
            Json(json!({"status": "success", "data": e})),
        )
            .into_response(),
        Err(e) => bad_data(&e.to_string()),
    }
}

fn bad_data(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "error", "errorType": "bad_data", "error": msg})),
    )
        .into_response()
}
