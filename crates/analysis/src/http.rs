//! `GET /api/v1/graph` and `GET /api/v1/stats`. Answers are JSON; errors use Prometheus's
//! envelope (`{"status":"error","errorType":...,"error":...}`) and a bad parameter gets 400
//! with its name. The work runs on the blocking pool: a graph or a statistic scans storage
//! for up to hundreds of milliseconds and must not stall the async workers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meshlens_model::{MetricReader, SpanReader};
use meshlens_promql::Engine;
use serde::Serialize;

use crate::graph::{build_graph, GraphQuery, GraphSource, GraphType};
use crate::params::{ParamError, Params};
use crate::stats::{compute_stats, StatsQuery};
use crate::AnalysisError;

/// What the analyses read.
pub struct AnalysisState {
    pub metrics: Arc<dyn MetricReader>,
    pub spans: Arc<dyn SpanReader>,
    pub engine: Arc<Engine>,
}

pub fn router(state: Arc<AnalysisState>) -> Router {
    Router::new()
        .route("/api/v1/graph", get(graph))
        .route("/api/v1/stats", get(stats))
        .with_state(state)
}

type Q = Query<HashMap<String, String>>;

/// Default windows: Kiali's graph default (5 minutes) and an hour for statistics.
const GRAPH_WINDOW_MS: i64 = 5 * 60_000;
const STATS_WINDOW_MS: i64 = 3_600_000;

pub fn graph_query(p: &HashMap<String, String>, now_ms: i64) -> Result<GraphQuery, ParamError> {
    let known = [
        "type",
        "window",
        "end",
        "cluster",
        "namespace",
        "focus",
        "source",
    ];
    let p = Params::new(p, &known)?;
    let graph_type = match p.opt("type") {
        None => GraphType::Workload,
        Some(t) => GraphType::parse(t).ok_or_else(|| {
            ParamError::new(
                "type",
                format!("{t:?}: use workload, app, versionedApp or service"),
            )
        })?,
    };
    let source = match p.opt("source") {
        None => GraphSource::Metrics,
        Some(s) => GraphSource::parse(s).ok_or_else(|| {
            ParamError::new("source", format!("{s:?}: use metrics, traces or both"))
        })?,
    };
    Ok(GraphQuery {
        graph_type,
        window_ms: p.window("window", GRAPH_WINDOW_MS)?,
        end_ms: p.end("end", now_ms)?,
        cluster: p.opt("cluster").map(str::to_string),
        namespace: p.opt("namespace").map(str::to_string),
        focus: p.opt("focus").map(str::to_string),
        source,
    })
}

pub fn stats_query(p: &HashMap<String, String>, now_ms: i64) -> Result<StatsQuery, ParamError> {
    let p = Params::new(p, &["window", "end", "cluster", "service"])?;
    Ok(StatsQuery {
        window_ms: p.window("window", STATS_WINDOW_MS)?,
        end_ms: p.end("end", now_ms)?,
        cluster: p.opt("cluster").map(str::to_string),
        service: p.opt("service").map(str::to_string),
    })
}

async fn graph(State(st): State<Arc<AnalysisState>>, Query(p): Q) -> Response {
    let q = match graph_query(&p, meshlens_model::time::now_ms()) {
        Ok(q) => q,
        Err(e) => return error(AnalysisError::Param(e)),
    };
    run(move || build_graph(&*st.metrics, &*st.spans, &st.engine, &q)).await
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
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(e),
        Err(e) => {
            tracing::error!("analysis task failed: {e}");
            envelope(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "analysis failed",
            )
        }
    }
}

fn error(e: AnalysisError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status.as_u16() {
        400 => "bad_data",
        422 => "execution",
        503 => "unavailable",
        _ => "internal",
    };
    envelope(status, kind, &e.to_string())
}

fn envelope(status: StatusCode, kind: &str, msg: &str) -> Response {
    let body = serde_json::json!({"status": "error", "errorType": kind, "error": msg});
    (status, Json(body)).into_response()
}
