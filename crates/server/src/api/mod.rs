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

/// What one tenant's (or one federated view's) server routes use.
pub struct AppState {
    /// The tenant, or `a|b` for a federated read view.
    pub tenant: String,
    pub writer: Arc<dyn MetricWriter>,
    /// The tenant's TSDB, for its series limit; None in federated views.
    pub head: Option<Arc<meshlens_tsdb::Tsdb>>,
    pub metrics: Arc<SelfMetrics>,
    pub limits: Arc<crate::limits::IngestLimits>,
    pub max_write_body_bytes: usize,
    pub max_write_decompressed_bytes: usize,
    /// What `/api/v1/validations` checks.
    pub mesh_config: Vec<std::path::PathBuf>,
}

/// What the routes outside any tenant use: health, readiness, self-metrics, targets.
pub struct GlobalState {
    pub tenants: Arc<crate::tenants::Tenants>,
    pub scrape: Arc<ScrapeManager>,
    pub metrics: Arc<SelfMetrics>,
    pub access: Arc<meshlens_access::AccessMetrics>,
    pub limits: Arc<crate::limits::IngestLimits>,
    pub ready: AtomicBool,
}

/// Remote write and validations: a tenant's own routes.
pub fn tenant_router(state: Arc<AppState>) -> Router {
    let write_limit = state.max_write_body_bytes;
    Router::new()
        .route(
            "/api/v1/write",
            post(write::remote_write).layer(DefaultBodyLimit::max(write_limit)),
        )
        .route("/api/v1/validations", get(validations))
        .with_state(state)
}

/// Routes that need no tenant: probes, the server's own metrics and the scrape targets (the
/// operator's configuration, not a tenant's data).
pub fn global_router(state: Arc<GlobalState>) -> Router {
    Router::new()
        .route("/api/v1/targets", get(targets::targets))
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

async fn ready(State(s): State<Arc<GlobalState>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        "meshlens is Ready.\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

async fn self_metrics(State(s): State<Arc<GlobalState>>) -> Response {
    let stacks = s.tenants.all();
    let main = s.tenants.scrape_stack();
    let mut body = s.metrics.render(&main.tsdb.stats());
    main.trace_state.counters.render(&mut body);
    crate::self_metrics::render_span_store(&main.spans.stats(), &mut body);
    if s.tenants.multitenant() {
        crate::self_metrics::render_tenants(&stacks, &mut body);
    }
    s.access.render(&mut body);
    s.limits.render(&mut body);
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
