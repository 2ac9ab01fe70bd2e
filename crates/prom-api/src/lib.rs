//! The Prometheus HTTP API over the metrics storage trait and the PromQL engine, with
//! Prometheus's paths, parameters, JSON shapes and error envelopes, so Grafana, promtool and
//! other clients work unchanged.
//!
//! Exactly one place ([`ApiError`]) maps failures to an HTTP status and `errorType`.

mod federate;
mod params;
mod query;
mod series;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use meshlens_model::{MetricReader, StorageError};
use meshlens_promql::{Engine, PromqlError};

pub use status::{ConfigStatus, SharedConfigStatus, StatusSource};

#[derive(Clone)]
pub struct PromApiState {
    pub storage: Arc<dyn MetricReader>,
    pub engine: Arc<Engine>,
    /// The configuration as loaded, credentials already replaced by `<secret>`, for
    /// `/api/v1/status/config`.
    pub config_yaml: String,
    /// Command-line flags, for `/api/v1/status/flags`.
    pub flags: BTreeMap<String, String>,
    pub start_time: SystemTime,
    pub storage_retention: String,
    /// The latest config load, for runtimeinfo.
    pub config_status: SharedConfigStatus,
    /// Storage figures for runtimeinfo and `/api/v1/status/tsdb`; None (a view with no
    /// head of its own): corruptionCount 0, and the tsdb status answers 503.
    pub status: Option<Arc<dyn StatusSource>>,
    /// Where `/api/v1/query_exemplars` reads; None answers every query with no exemplars
    /// (a Prometheus without exemplar storage).
    pub exemplars: Option<Arc<dyn meshlens_model::ExemplarReader>>,
}

/// All routes, with the state applied.
pub fn router(state: PromApiState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route(
            "/api/v1/query_exemplars",
            get(query::exemplars).post(query::exemplars),
        )
        .route(
            "/api/v1/format_query",
            get(query::format).post(query::format),
        )
        .route("/api/v1/series", get(series::series).post(series::series))
        .route("/api/v1/labels", get(series::labels).post(series::labels))
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .route("/api/v1/metadata", get(series::metadata))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/tsdb", get(status::tsdb))
        .route("/api/v1/rules", get(status::rules))
        .route("/api/v1/alerts", get(status::alerts))
        .route("/federate", get(federate::federate))
        .with_state(state)
}

/// An API failure: its status, Prometheus's `errorType` and the message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error_type: "bad_data",
            message: message.into(),
        }
    }

    pub fn param(name: &str, reason: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter \"{name}\": {reason}"))
    }
}

impl From<PromqlError> for ApiError {
    fn from(e: PromqlError) -> Self {
        ApiError {
            status: StatusCode::from_u16(e.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error_type: e.error_type(),
            message: e.to_string(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        PromqlError::Storage(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"status": "error", "errorType": self.error_type, "error": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

/// Runs blocking storage or engine work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error_type: "internal",
        message: format!("request task failed: {e}"),
    })?
}

pub(crate) fn success(data: serde_json::Value) -> Response {
    axum::Json(serde_json::json!({"status": "success", "data": data})).into_response()
}
