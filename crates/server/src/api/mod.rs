//! The server's own HTTP routes: remote write ingest, targets, health and self-metrics. The
//! query API is `meshlens-prom-api`'s router, merged beside these.

pub mod clusters;
pub mod events;
pub mod mesh;
pub mod otlp_metrics;
mod rules;
pub mod storage;
mod targets;
pub mod verify;
pub(crate) mod write;

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
    /// How OTLP metrics become series (`--otlp.promote-resource-attributes`, and whether
    /// start times become zeros).
    pub otlp_metrics: meshlens_ingest::otlp::metrics::Settings,
    /// `created-timestamp-zero-ingestion`: remote write 2.0's created timestamps become
    /// zero samples.
    pub created_zeros: bool,
}

/// What the routes outside any tenant use: health, readiness, self-metrics, targets.
pub struct GlobalState {
    pub tenants: Arc<crate::tenants::Tenants>,
    /// Replaced whole when a reload changes the scrape config.
    pub scrape: parking_lot::RwLock<Arc<ScrapeManager>>,
    pub metrics: Arc<SelfMetrics>,
    pub access: Arc<meshlens_access::AccessMetrics>,
    pub limits: Arc<crate::limits::IngestLimits>,
    pub ready: AtomicBool,
    pub rules: Arc<crate::rules::RuleRuntime>,
    /// `--web.enable-lifecycle`.
    pub lifecycle: bool,
    /// What `/api/v1/status/runtimeinfo` reports of the latest (re)load.
    pub config_status: meshlens_prom_api::SharedConfigStatus,
    /// The config as last loaded, to tell whether a reload changed the scrape part.
    pub config: parking_lot::Mutex<crate::config::Config>,
    /// The agents forwarding to this hub, as their writes say.
    pub clusters: clusters::ClusterTracker,
    /// The loop's timeline: rollout steps, verdicts, anomalies, alerts, remediations and
    /// config changes (`<data-dir>/events.jsonl`).
    pub events: Arc<meshlens_verify::events::EventLog>,
    /// The anomaly evaluator (`--anomaly.interval`) and its findings.
    pub anomalies: Arc<crate::anomaly::Anomalies>,
    /// The Config view's mesh objects, edits and their undo log.
    pub mesh: Arc<mesh::MeshState>,
    /// `--remediation.config`: its engine and the actions taken (set once at start).
    pub remediation: std::sync::OnceLock<Arc<crate::remediation::Remediations>>,
}

impl GlobalState {
    /// Re-reads the config file and everything it names (rules, SLOs, probes, Alertmanagers,
    /// scrape jobs); on error the running state stays and the error is returned.
    pub async fn reload(&self) -> Result<(), crate::rules::LoadError> {
        let result = self.reload_inner().await;
        let mut st = self
            .config_status
            .write()
            .unwrap_or_else(|e| e.into_inner());
        st.success = result.is_ok();
        if result.is_ok() {
            st.last_load = std::time::SystemTime::now();
        }
        self.metrics.config_reloads(result.is_ok());
        match &result {
            Ok(()) => tracing::info!("config reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; the last good config keeps running")
            }
        }
        result
    }

    async fn reload_inner(&self) -> Result<(), crate::rules::LoadError> {
        let cfg = self.rules.reload().await?;
        let scrape_changed = {
            let old = self.config.lock();
            old.scrape_configs != cfg.scrape_configs || old.global != cfg.global
        };
        if scrape_changed {
            let main = self.tenants.scrape_stack();
            let created_zeros = self.scrape.read().created_zeros;
            let new = crate::scrape::ScrapeManager::start(
                &cfg,
                main.writer.clone(),
                self.metrics.clone(),
                created_zeros,
            );
            let old = std::mem::replace(&mut *self.scrape.write(), new);
            old.stop().await;
        }
        *self.config.lock() = cfg;
        Ok(())
    }
}

/// Remote write and validations: a tenant's own routes.
pub fn tenant_router(state: Arc<AppState>) -> Router {
    let write_limit = state.max_write_body_bytes;
    Router::new()
        .route(
            "/api/v1/write",
            post(write::remote_write).layer(DefaultBodyLimit::max(write_limit)),
        )
        .route(
            "/v1/metrics",
            post(otlp_metrics::http).layer(DefaultBodyLimit::max(write_limit)),
        )
        .route("/api/v1/validations", get(validations))
        .with_state(state)
}

/// Routes that need no tenant: probes, the server's own metrics and the scrape targets (the
/// operator's configuration, not a tenant's data); `/api/v1/clusters` picks its tenant itself.
pub fn global_router(state: Arc<GlobalState>) -> Router {
    Router::new()
        .route("/api/v1/targets", get(targets::targets))
        .route("/api/v1/rules", get(rules::rules))
        .route("/api/v1/alerts", get(rules::alerts))
        .route("/api/v1/alertmanagers", get(rules::alertmanagers))
        .route("/api/v1/slos", get(rules::slos))
        .route("/api/v1/clusters", get(clusters::clusters))
        .route("/api/v1/events", get(events::list).post(events::record))
        .route("/api/v1/remediations", get(crate::remediation::list))
        .route(
            "/api/v1/remediations/{id}/undo",
            post(crate::remediation::undo),
        )
        .route("/api/v1/anomalies", get(crate::anomaly::list))
        .route("/api/v1/mesh/objects", get(mesh::objects))
        .route("/api/v1/mesh/preview", post(mesh::preview))
        .route("/api/v1/mesh/apply", post(mesh::apply))
        .route("/api/v1/mesh/changes", get(mesh::list_changes))
        .route("/api/v1/mesh/changes/{id}/undo", post(mesh::undo))
        .route("/-/reload", post(rules::reload).put(rules::reload))
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
    crate::self_metrics::render_exemplar_store(&main.tsdb.exemplar_stats(), &mut body);
    crate::self_metrics::render_storage_backend(main.clickhouse.is_some(), &mut body);
    // With ClickHouse the embedded span store stays empty: its zeros would read as lost spans.
    if main.clickhouse.is_none() {
        crate::self_metrics::render_span_store(&main.spans.stats(), &mut body);
    }
    if s.tenants.multitenant() {
        crate::self_metrics::render_tenants(&stacks, &mut body);
    }
    let buffers: Vec<_> = stacks
        .iter()
        .filter_map(|t| Some((t.id.clone(), t.clickhouse_buffer.as_ref()?.stats())))
        .collect();
    crate::durable::render_metrics(&buffers, &mut body);
    s.access.render(&mut body);
    s.limits.render(&mut body);
    s.rules.manager.render_metrics(&mut body);
    s.rules.notifier.render_metrics(&mut body);
    s.clusters.render_metrics(
        meshlens_model::time::now_ms(),
        s.tenants.multitenant(),
        &mut body,
    );
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
