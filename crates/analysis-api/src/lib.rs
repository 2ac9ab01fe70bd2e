//! meshlens-analysis-api: the analyses over HTTP, `GET /api/v1/graph` and
//! `GET /api/v1/stats`, beside the Prometheus and trace APIs.
//!
//! Answers are JSON; errors use Prometheus's envelope
//! (`{"status":"error","errorType":...,"error":...}`) with the status from
//! [`AnalysisError::http_status`], so a bad parameter gets 400 with its name. The work runs
//! on the blocking pool: a graph or a statistic scans storage for up to hundreds of
//! milliseconds and must not stall the async workers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meshlens_analysis::params::{graph_query, stats_query};
use meshlens_analysis::{
    build_graph, build_graph_with_aggregates, compute_stats, AnalysisError, EdgeAggregates,
};
use meshlens_model::{MetricReader, SpanReader};
use meshlens_promql::Engine;
use serde::Serialize;

/// What the analyses read.
pub struct AnalysisState {
    pub metrics: Arc<dyn MetricReader>,
    pub spans: Arc<dyn SpanReader>,
    pub engine: Arc<Engine>,
    /// The tenant's per-edge graph aggregates; None (a view over several tenants, or the
    /// aggregates turned off): every metrics graph goes through PromQL.
    pub aggregates: Option<Arc<EdgeAggregates>>,
}

pub fn router(state: Arc<AnalysisState>) -> Router {
    Router::new()
        .route("/api/v1/graph", get(graph))
        .route("/api/v1/stats", get(stats))
        .with_state(state)
}

type Q = Query<HashMap<String, String>>;

async fn graph(State(st): State<Arc<AnalysisState>>, Query(p): Q) -> Response {
    let q = match graph_query(&p, meshlens_model::time::now_ms()) {
        Ok(q) => q,
        Err(e) => return error(AnalysisError::Param(e)),
    };
    run(move || match &st.aggregates {
        Some(a) => build_graph_with_aggregates(a, &*st.metrics, &*st.spans, &st.engine, &q),
        None => build_graph(&*st.metrics, &*st.spans, &st.engine, &q),
    })
    .await
}

async fn stats(State(st): State<Arc<AnalysisState>>, Query(p): Q) -> Response {
    let q = match stats_query(&p, meshlens_model::time::now_ms()) {
        Ok(q) => q,
        Err(e) => return error(AnalysisError::Param(e)),
    };
    run(move || compute_stats(&*st.spans, &q)).await
}

async fn run<T, F>(f: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce() -> Result<T, AnalysisError> + Send + 'static,
{
    run_blocking("analysis", f, AnalysisError::http_status).await
}

fn error(e: AnalysisError) -> Response {
    error_envelope(e.http_status(), &e.to_string())
}

/// Runs `f` on the blocking pool (it scans storage) and answers its value as JSON, or its
/// error in the envelope with the status `status_of` gives; `what` names a task that died.
/// Shared with the server's other storage-scanning APIs (`/api/v1/verify`).
pub async fn run_blocking<T, E, F>(what: &str, f: F, status_of: fn(&E) -> u16) -> Response
where
    T: Serialize + Send + 'static,
    E: std::fmt::Display + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error_envelope(status_of(&e), &e.to_string()),
        Err(e) => {
            tracing::error!("{what} task failed: {e}");
            envelope(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &format!("{what} failed"),
            )
        }
    }
}

/// The error envelope for an HTTP status, `errorType` as Prometheus names it.
pub fn error_envelope(status: u16, msg: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status.as_u16() {
        400 => "bad_data",
        422 => "execution",
        429 | 503 => "unavailable",
        _ => "internal",
    };
    envelope(status, kind, msg)
}

fn envelope(status: StatusCode, kind: &str, msg: &str) -> Response {
    let body = serde_json::json!({"status": "error", "errorType": kind, "error": msg});
    (status, Json(body)).into_response()
}
