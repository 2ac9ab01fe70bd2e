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
        "startTime": rfc3339(start),
        "CWD": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": true,
        "lastConfigTime": rfc3339(start),
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

fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}
