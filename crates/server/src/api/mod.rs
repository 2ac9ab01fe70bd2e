//! The server's own HTTP routes: remote write ingest, targets, health and self-metrics. The
//! query API is `meshlens-prom-api`'s router, merged beside these.

mod targets;
mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use meshlens_model::MetricWriter;

use crate::scrape::ScrapeManager;
use crate::self_metrics::SelfMetrics;

pub struct AppState {
    pub tsdb: Arc<meshlens_tsdb::Tsdb>,
    pub spans: Arc<meshlens_spanstore::SpanStore>,
    pub trace_counters: Arc<meshlens_trace_api::TraceCounters>,
    pub writer: Arc<dyn MetricWriter>,
    pub scrape: Arc<ScrapeManager>,
    pub metrics: Arc<SelfMetrics>,
    pub max_write_body_bytes: usize,
    pub max_write_decompressed_bytes: usize,
    /// What `/api/v1/validations` checks.
    pub mesh_config: Vec<std::path::PathBuf>,
    pub ready: AtomicBool,
}

pub fn router(state: Arc<AppState>) -> Router {
    let write_limit = state.max_write_body_bytes;
    Router::new()
        .route(
            "/api/v1/write",
            post(write::remote_write).layer(DefaultBodyLimit::max(write_limit)),
        )
        .route("/api/v1/targets", get(targets::targets))
        .route("/api/v1/validations", get(validations))
        .route("/metrics", get(self_metrics))
        .route("/-/healthy", get(|| async { "meshlens is Healthy.\n" }))
        .route("/-/ready", get(ready))
        .with_state(state)
}

/// Kiali-style findings over the server's `--mesh` files, read afresh on each request so
/// edits show at once.
async fn validations(State(s): State<Arc<AppState>>) -> Response {
    let paths = s.mesh_config.clone();
    match tokio::task::spawn_blocking(move || meshlens_mesh::validate::validate_paths(&paths)).await
    {
        Ok(report) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            meshlens_mesh::validate::to_json(&report),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("validation failed: {e}"),
        )
            .into_response(),
    }
}

async fn ready(State(s): State<Arc<AppState>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        "meshlens is Ready.\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

async fn self_metrics(State(s): State<Arc<AppState>>) -> Response {
    let mut body = s.metrics.render(&s.tsdb.stats());
    s.trace_counters.render(&mut body);
    crate::self_metrics::render_span_store(&s.spans.stats(), &mut body);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `{"status":"success","data":…}`.
pub fn success(data: serde_json::Value) -> Response {
    axum::Json(serde_json::json!({"status": "success", "data": data})).into_response()
}
