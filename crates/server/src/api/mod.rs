//! The server's HTTP routes: ingest (remote write), the read API this crate serves itself,
//! targets, health and self-metrics. Exactly one place ([`ApiError`]) turns errors into a
//! status code and Prometheus's error envelope.

mod query;
mod targets;
mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use meshlens_model::{MetricReader, MetricWriter, StorageError};

use crate::config::Config;
use crate::scrape::ScrapeManager;
use crate::self_metrics::SelfMetrics;

pub struct AppState {
    pub tsdb: Arc<meshlens_tsdb::Tsdb>,
    pub writer: Arc<dyn MetricWriter>,
    pub reader: Arc<dyn MetricReader>,
    pub scrape: Arc<ScrapeManager>,
    pub metrics: Arc<SelfMetrics>,
    pub config: Config,
    pub max_write_body_bytes: usize,
    pub max_write_decompressed_bytes: usize,
    pub ready: AtomicBool,
}

pub fn router(state: Arc<AppState>) -> Router {
    let write_limit = state.max_write_body_bytes;
    Router::new()
        .route(
            "/api/v1/write",
            post(write::remote_write).layer(DefaultBodyLimit::max(write_limit)),
        )
        .route(
            "/api/v1/query",
            get(query::instant_get).post(query::instant_post),
        )
        .route("/api/v1/targets", get(targets::targets))
        .route("/api/v1/status/config", get(status_config))
        .route("/metrics", get(self_metrics))
        .route("/-/healthy", get(|| async { "meshlens is Healthy.\n" }))
        .route("/-/ready", get(ready))
        .with_state(state)
}

async fn status_config(State(s): State<Arc<AppState>>) -> Response {
    success(serde_json::json!({"yaml": s.config.original_yaml}))
}

async fn ready(State(s): State<Arc<AppState>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        "meshlens is Ready.\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

async fn self_metrics(State(s): State<Arc<AppState>>) -> Response {
    let body = s.metrics.render(&s.tsdb.stats());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// An API failure: its status and Prometheus's `errorType`.
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
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        let (status, error_type) = match &e {
            StorageError::Closed | StorageError::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            StorageError::TooManySamples { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "execution"),
            StorageError::InvalidRequest { .. } => (StatusCode::BAD_REQUEST, "bad_data"),
            StorageError::Io { .. } | StorageError::Corruption { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        ApiError {
            status,
            error_type,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "status": "error",
            "errorType": self.error_type,
            "error": self.message,
        });
        (self.status, axum::Json(body)).into_response()
    }
}

/// `{"status":"success","data":…}`.
pub fn success(data: serde_json::Value) -> Response {
    axum::Json(serde_json::json!({"status": "success", "data": data})).into_response()
}
