//! Status endpoints, and the rule endpoints (empty until rules exist).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use crate::{success, PromApiState};

/// No `features` field: Grafana would take meshlens for Mimir.
pub async fn buildinfo() -> Response {
    success(json!({
        "version": "3.0.0",
        "revision": concat!("meshlens-", env!("CARGO_PKG_VERSION")),
        "branch": "main",
        "buildUser": "meshlens",
        "buildDate": "",
        "goVersion": "n/a (meshlens is written in Rust)",
    }))
}

pub async fn runtimeinfo(State(s): State<Arc<PromApiState>>) -> Response {
    let start = s
        .start_time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    success(json!({
        "startTime": meshlens_model::time::rfc3339_ms(start),
        "CWD": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": true,
        "lastConfigTime": meshlens_model::time::rfc3339_ms(start),
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "GOMEMLIMIT": 0,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": s.storage_retention,
    }))
}

pub async fn flags(State(s): State<Arc<PromApiState>>) -> Response {
    success(json!(s.flags))
}

pub async fn config(State(s): State<Arc<PromApiState>>) -> Response {
    success(json!({"yaml": s.config_yaml}))
}

pub async fn rules() -> Response {
    success(json!({"groups": []}))
}

pub async fn alerts() -> Response {
    success(json!({"alerts": []}))
}
