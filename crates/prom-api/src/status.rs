//! Status endpoints, and the rule endpoints (empty until rules exist).
//!
//! The figures are live: the process that owns storage and the config supplies them through
//! [`StatusSource`]; this crate knows no storage engine.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::response::Response;
use meshlens_model::HeadCardinality;
use serde_json::{json, Value};

use crate::params::Params;
use crate::{blocking, success, ApiError, PromApiState};

/// Live storage figures for the status endpoints.
pub trait StatusSource: Send + Sync {
    /// Corrupt data found and set aside by storage.
    fn corruption_count(&self) -> u64;
    /// Head cardinality with at most `limit` entries per list; None when storage has no head.
    fn tsdb_status(&self, limit: usize) -> Option<HeadCardinality>;
}

/// `reloadConfigSuccess` and `lastConfigTime`: the outcome of the latest config load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConfigStatus {
    pub success: bool,
    pub last_load: SystemTime,
}

impl Default for ConfigStatus {
    /// Loaded successfully, now.
    fn default() -> Self {
        ConfigStatus {
            success: true,
            last_load: SystemTime::now(),
        }
    }
}

/// Shared by every clone of the state (one per tenant); a config reload updates it.
pub type SharedConfigStatus = Arc<std::sync::RwLock<ConfigStatus>>;

/// No `features` field: Grafana would take meshlens for Mimir.
pub async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": env!("MESHLENS_GIT_REVISION"),
        "branch": env!("MESHLENS_GIT_BRANCH"),
        "buildUser": env!("MESHLENS_BUILD_USER"),
        "buildDate": env!("MESHLENS_BUILD_DATE"),
        "goVersion": env!("MESHLENS_RUSTC_VERSION"),
    }))
}

fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    meshlens_model::time::rfc3339_ms(ms)
}

/// Threads of this process (`Threads:` in /proc/self/status), Prometheus's goroutineCount.
fn thread_count() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

pub async fn runtimeinfo(State(s): State<Arc<PromApiState>>) -> Result<Response, ApiError> {
    let config = *s
        .config_status
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let st = s.clone();
    let corruption =
        blocking(move || Ok(st.status.as_ref().map_or(0, |src| src.corruption_count()))).await?;
    Ok(success(json!({
        "startTime": rfc3339(s.start_time),
        "CWD": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": config.success,
        "lastConfigTime": rfc3339(config.last_load),
        "corruptionCount": corruption,
        "goroutineCount": thread_count(),
        "GOMAXPROCS": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "GOMEMLIMIT": 0,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": s.storage_retention,
    })))
}

fn stats(list: &[(String, u64)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect(),
    )
}

/// `/api/v1/status/tsdb`: head cardinality, `limit` (default 10) entries per list.
pub async fn tsdb(
    State(s): State<Arc<PromApiState>>,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = match params.get("limit") {
        None | Some("") => 10,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return Err(ApiError::param("limit", "must be a positive number")),
        },
    };
    let st = s.clone();
    let status = blocking(move || Ok(st.status.as_ref().and_then(|src| src.tsdb_status(limit))))
        .await?
        .ok_or_else(|| ApiError {
            status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
            error_type: "unavailable",
            message: "no TSDB head to report on".into(),
        })?;
    Ok(success(json!({
        "headStats": {
            "numSeries": status.num_series,
            "numLabelPairs": status.num_label_pairs,
            "chunkCount": status.chunk_count,
            "minTime": status.min_time,
            "maxTime": status.max_time,
        },
        "seriesCountByMetricName": stats(&status.series_count_by_metric_name),
        "labelValueCountByLabelName": stats(&status.label_value_count_by_label_name),
        "memoryInBytesByLabelName": stats(&status.memory_in_bytes_by_label_name),
        "seriesCountByLabelValuePair": stats(&status.series_count_by_label_value_pair),
    })))
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
