//! Tenants: one storage stack (TSDB, span store, span metrics) per tenant, opened on its first
//! write, and the dispatch that routes each request to its tenant's APIs by `X-Scope-OrgID`.
//!
//! Why a stack per tenant rather than a tenant label inside one store: isolation is structural
//! (no query path can forget a matcher), a tenant's series limit is its own head's count, and
//! retention or removal of a tenant is a directory. Without `--multitenancy` there is one stack,
//! `anonymous` (Mimir's name for it), stored at the data directory's root as before.
//!
//! With ClickHouse the same choice gives one database per tenant
//! (`meshlens_clickhouse::tenant_database`), not a tenant column: no query can leave the
//! tenant's data, the stores' SQL stays as it is, retention runs per tenant, and removing a
//! tenant is `DROP DATABASE`. The cost is a set of tables per tenant (fine for tens to
//! hundreds of tenants, not for tens of thousands). A tenant's database is created with its
//! schema when its stack opens (its first write); its write buffer lives in its directory.
//! Every tenant shares one ClickHouse client (one connection pool and thread).

mod exemplars;
pub mod federated;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use meshlens_access::tenant::{parse_org_ids, ORG_ID_HEADER};
use meshlens_analysis::EdgeAggregates;
use meshlens_model::{MetricReader, MetricWriter, SpanReader, SpanWriter};
use meshlens_spanstore::SpanStore;
use meshlens_trace_api::TraceApiState;
use meshlens_tsdb::Tsdb;
use tower::ServiceExt;

use crate::api::storage::StorageSource;
use crate::api::{self, AppState};
use crate::limits::{IngestLimits, LimitedSpans};
use crate::{ServerError, ServerOptions};

/// The tenant every request belongs to without `--multitenancy`.
pub const DEFAULT_TENANT: &str = "anonymous";

/// What every tenant's stack shares.
pub(crate) struct Shared {
    pub opts: ServerOptions,
    /// With ClickHouse storage: the one client every tenant's database is reached through.
    pub clickhouse_client: Option<Arc<meshlens_clickhouse::Client>>,
    pub engine: Arc<meshlens_promql::Engine>,
    pub metrics: Arc<crate::SelfMetrics>,
    pub limits: Arc<IngestLimits>,
    /// The Prometheus status endpoints' figures (config shown with secrets redacted).
    pub prom_status: meshlens_prom_api::PromApiState,
    /// Span ingest counters, one family over all tenants.
    pub trace_counters: Arc<meshlens_trace_api::TraceCounters>,
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// One tenant's storage and the routes over it.
pub struct TenantStack {
    pub id: String,
    /// The embedded TSDB: the metric store with `--storage embedded`; with ClickHouse it
    /// holds nothing of the tenant's metrics and only its status figures come from here.
    pub tsdb: Arc<Tsdb>,
    /// Where the tenant's metrics are read from (the TSDB or ClickHouse).
    pub metrics_reader: Arc<dyn MetricReader>,
    /// Where derived metrics (rules, probes, span metrics, anomaly scores) are written,
    /// straight to storage, not through the graph aggregates.
    pub metrics_store: Arc<dyn MetricWriter>,
    /// What every metric ingest path of the tenant writes through (remote write, scrapes,
    /// agents forwarding to this hub): the TSDB, feeding the graph aggregates.
    pub writer: Arc<dyn MetricWriter>,
    /// The service graph's per-edge aggregates; None with `--graph.aggregates-retention=0`.
    pub graph_aggregates: Option<Arc<EdgeAggregates>>,
    /// The embedded span store: the span store with `--storage embedded`; with ClickHouse it
    /// holds nothing of the tenant's spans and only its status figures come from here.
    pub spans: Arc<SpanStore>,
    /// Where the tenant's spans are read from (the embedded span store or ClickHouse).
    pub span_reader: Arc<dyn SpanReader>,
    pub trace_state: Arc<TraceApiState>,
    /// The tenant's server routes' state (writer, limits, OTLP settings), for the OTLP/gRPC
    /// metrics call that arrives outside the routers.
    pub(crate) app: Arc<AppState>,
    /// With ClickHouse: the write buffer every metric and span write goes through, and its
    /// drainer's figures (`stats()`); None with embedded storage.
    pub clickhouse_buffer: Option<Arc<crate::durable::ClickHouseBuffer>>,
    /// The ClickHouse storage with `--storage clickhouse://…`, for its status figures.
    pub clickhouse: Option<Arc<meshlens_clickhouse::ClickHouseStorage>>,
    router: Router,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Every open tenant, and the rules for picking one per request.
pub struct Tenants {
    shared: Arc<Shared>,
    stacks: parking_lot::RwLock<HashMap<String, Arc<TenantStack>>>,
    /// Opening a store replays its WAL: one at a time, and never twice for one tenant.
    opening: tokio::sync::Mutex<()>,
}

/// Where a request goes: a tenant's own stack, or a read-only view over several.
pub enum Target {
    One(Arc<TenantStack>),
    View(Router),
}

/// The OTLP/gRPC listener's service: each call goes to its tenant's span store.
pub async fn grpc_export(
    tenants: Arc<Tenants>,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<meshlens_trace_api::GrpcBody> {
    use meshlens_trace_api::grpc_status;
    match tenants.resolve(req.headers(), true).await {
        Ok(Target::One(stack)) if req.uri().path() == api::otlp_metrics::GRPC_EXPORT_PATH => {
            api::otlp_metrics::grpc(stack.app.clone(), req).await
        }
        Ok(Target::One(stack)) => {
            meshlens_trace_api::otlp_grpc_export(stack.trace_state.clone(), req).await
        }
        Ok(Target::View(_)) => grpc_status(3, "a write must name exactly one tenant"),
        Err(r) => {
            let code = match r.status.as_u16() {
                401 => 16, // UNAUTHENTICATED
                400 => 3,  // INVALID_ARGUMENT
                _ => 14,   // UNAVAILABLE
            };
            grpc_status(code, &r.message)
        }
    }
}

impl Tenants {
    pub(crate) async fn open(shared: Arc<Shared>) -> Result<Arc<Tenants>, ServerError> {
        let t = Arc::new(Tenants {
            shared,
            stacks: Default::default(),
            opening: Default::default(),
        });
        if t.multitenant() {
            // Tenants with data on disk are opened at start, so retention and compaction run
            // for them whether or not anyone writes.
            let root = t.shared.opts.data_dir.join("tenants");
            if let Ok(entries) = std::fs::read_dir(&root) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if meshlens_access::tenant::validate_org_id(&name).is_ok() {
                        t.get_or_open(&name).await?;
                    }
                }
            }
        }
        t.get_or_open(&t.shared.opts.scrape_tenant.clone()).await?;
        Ok(t)
    }

    pub fn multitenant(&self) -> bool {
        self.shared.opts.multitenancy
    }

    /// The tenant that scraped samples and the server's own derived data are written to.
    pub fn scrape_stack(&self) -> Arc<TenantStack> {
        self.stacks.read()[&self.shared.opts.scrape_tenant].clone()
    }

    pub fn all(&self) -> Vec<Arc<TenantStack>> {
        let mut v: Vec<_> = self.stacks.read().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn dir_of(&self, id: &str) -> PathBuf {
        if self.multitenant() {
            self.shared.opts.data_dir.join("tenants").join(id)
        } else {
            self.shared.opts.data_dir.clone()
        }
    }

    pub async fn get_or_open(&self, id: &str) -> Result<Arc<TenantStack>, ServerError> {
        if let Some(s) = self.stacks.read().get(id) {
            return Ok(s.clone());
        }
        let _one = self.opening.lock().await;
        if let Some(s) = self.stacks.read().get(id) {
            return Ok(s.clone());
        }
        let stack = Arc::new(open_stack(&self.shared, id, &self.dir_of(id)).await?);
        tracing::info!(tenant = id, "tenant storage opened");
        self.stacks.write().insert(id.to_string(), stack.clone());
        Ok(stack)
    }

    /// Picks the target of a request from its `X-Scope-OrgID`, or says why not (401, 400,
    /// 503). `write`: the request stores data, so it needs exactly one tenant.
    pub async fn resolve(&self, headers: &HeaderMap, write: bool) -> Result<Target, Refusal> {
        if !self.multitenant() {
            return Ok(Target::One(self.scrape_stack()));
        }
        let Some(raw) = headers.get(ORG_ID_HEADER) else {
            return Err(plain(
                StatusCode::UNAUTHORIZED,
                "no org id: this server runs with --multitenancy, so every request needs an X-Scope-OrgID header",
            ));
        };
        let raw = raw.to_str().map_err(|_| {
            plain(
                StatusCode::BAD_REQUEST,
                "X-Scope-OrgID: the value is not visible ASCII",
            )
        })?;
        let ids = parse_org_ids(raw)
            .map_err(|e| plain(StatusCode::BAD_REQUEST, &format!("X-Scope-OrgID: {e}")))?;
        if ids.len() == 1 {
            let id = &ids[0];
            let open = self.stacks.read().get(id).cloned();
            return match open {
                Some(s) => Ok(Target::One(s)),
                None if write => self.get_or_open(id).await.map(Target::One).map_err(|e| {
                    plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("opening tenant {id}: {e}"),
                    )
                }),
                // A tenant that wrote through another meshlens on the same ClickHouse.
                None if self.in_clickhouse(id).await? => {
                    self.get_or_open(id).await.map(Target::One).map_err(|e| {
                        plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &format!("opening tenant {id}: {e}"),
                        )
                    })
                }
                // A tenant that never wrote reads as empty, without creating anything.
                None => Ok(Target::View(self.view(&[]))),
            };
        }
        if write {
            return Err(plain(
                StatusCode::BAD_REQUEST,
                "X-Scope-OrgID: a write must name exactly one tenant, not a|b",
            ));
        }
        let mut stacks = Vec::new();
        for id in &ids {
            let open = self.stacks.read().get(id).cloned();
            match open {
                Some(s) => stacks.push(s),
                None if self.in_clickhouse(id).await? => {
                    stacks.push(self.get_or_open(id).await.map_err(|e| {
                        plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &format!("opening tenant {id}: {e}"),
                        )
                    })?)
                }
                None => {}
            }
        }
        Ok(Target::View(self.view(&stacks)))
    }

    /// With ClickHouse and `--multitenancy`: whether `id` has a database there (written
    /// through another meshlens, or before this data directory was emptied), so a read
    /// opens it rather than answering empty. Never creates anything.
    async fn in_clickhouse(&self, id: &str) -> Result<bool, Refusal> {
        let (crate::MetricStorage::ClickHouse(url), Some(client)) =
            (&self.shared.opts.storage, &self.shared.clickhouse_client)
        else {
            return Ok(false);
        };
        let database = meshlens_clickhouse::tenant_database(&url.database, id);
        let client = client.clone();
        let found = tokio::task::spawn_blocking(move || {
            meshlens_clickhouse::database_exists(&client, &database)
        })
        .await
        .map_err(|e| plain(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
        found.map_err(|e| {
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("looking up tenant {id} in ClickHouse: {e}"),
            )
        })
    }

    /// A read-only view over several tenants (`a|b`).
    fn view(&self, stacks: &[Arc<TenantStack>]) -> Router {
        let metrics = Arc::new(federated::FederatedMetrics {
            tenants: stacks
                .iter()
                .map(|s| (s.id.clone(), s.metrics_reader.clone()))
                .collect(),
        });
        let spans = Arc::new(federated::FederatedSpans {
            tenants: stacks.iter().map(|s| s.span_reader.clone()).collect(),
        });
        let ids: Vec<&str> = stacks.iter().map(|s| s.id.as_str()).collect();
        // Every tenant shares the one ClickHouse; embedded figures are per tenant.
        let storage = match stacks.iter().find_map(|s| s.clickhouse.clone()) {
            Some(ch) => StorageSource::ClickHouse {
                storage: ch,
                buffer: None,
            },
            None => StorageSource::NoStore {
                backend: match self.shared.opts.storage {
                    crate::MetricStorage::Embedded => "embedded",
                    crate::MetricStorage::ClickHouse(_) => "clickhouse",
                },
            },
        };
        let (router, _) = routes(
            &self.shared,
            View {
                tenant: ids.join("|"),
                mesh_tenants: ids.iter().map(|s| s.to_string()).collect(),
                metrics_reader: metrics,
                metrics_writer: Arc::new(federated::NoWrites),
                head: None,
                exemplars: Arc::new(federated::FederatedExemplars {
                    tenants: stacks
                        .iter()
                        .map(|s| (s.id.clone(), s.tsdb.clone() as _))
                        .collect(),
                }),
                graph_aggregates: None,
                storage: Arc::new(storage),
                trace_state: Arc::new({
                    let mut t = TraceApiState::new(Arc::new(federated::NoWrites), spans);
                    t.counters = self.shared.trace_counters.clone();
                    t
                }),
            },
        );
        router
    }

    /// Stops every tenant's side tasks and closes its stores (spans, then metrics).
    pub async fn close(&self) {
        for stack in self.all() {
            let tasks: Vec<_> = stack.tasks.lock().drain(..).collect();
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
            }
            // After the side tasks (span metrics flush into it), before the stores close.
            if let Some(b) = stack.clickhouse_buffer.clone() {
                let _ = tokio::task::spawn_blocking(move || b.shutdown()).await;
            }
            let spans = stack.spans.clone();
            match tokio::task::spawn_blocking(move || spans.close()).await {
                Ok(Ok(())) => tracing::info!(tenant = %stack.id, "span store closed"),
                Ok(Err(e)) => {
                    tracing::error!(tenant = %stack.id, error = %e, "closing the span store failed")
                }
                Err(e) => {
                    tracing::error!(tenant = %stack.id, error = %e, "closing the span store failed")
                }
            }
            let tsdb = stack.tsdb.clone();
            match tokio::task::spawn_blocking(move || tsdb.close()).await {
                Ok(Ok(())) => tracing::info!(tenant = %stack.id, "storage closed"),
                Ok(Err(e)) => {
                    tracing::error!(tenant = %stack.id, error = %e, "closing storage failed")
                }
                Err(e) => tracing::error!(tenant = %stack.id, error = %e, "closing storage failed"),
            }
        }
    }
}

/// Requests that store data, which must name exactly one tenant.
fn is_write(req: &Request) -> bool {
    req.method() == Method::POST
        && matches!(
            req.uri().path(),
            "/api/v1/write" | "/api/v2/spans" | "/v1/traces" | "/v1/metrics"
        )
        || req.uri().path().starts_with("/opentelemetry.proto.")
}

/// Why a request has no tenant to go to: its status and message.
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

fn plain(status: StatusCode, msg: &str) -> Refusal {
    Refusal {
        status,
        message: msg.to_string(),
    }
}

/// The fallback of the main listener: every tenant-scoped route, dispatched by org id.
pub async fn dispatch(State(tenants): State<Arc<Tenants>>, req: Request) -> Response {
    let write = is_write(&req);
    match tenants.resolve(req.headers(), write).await {
        Ok(Target::One(stack)) => call(stack.router.clone(), req).await,
        Ok(Target::View(router)) => call(router, req).await,
        Err(r) => {
            tenants
                .shared
                .metrics
                .tenant_refusals
                .add(&[("code", r.status.as_str())], 1);
            (r.status, format!("{}\n", r.message)).into_response()
        }
    }
}

async fn call(router: Router, req: Request) -> Response {
    match router.oneshot(req.map(Body::new)).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// What one set of routes reads and writes: a tenant's own stores, or a federated view.
struct View {
    tenant: String,
    /// Tenants whose `--mesh TENANT=PATH` files `/api/v1/validations` shows.
    mesh_tenants: Vec<String>,
    metrics_reader: Arc<dyn MetricReader>,
    metrics_writer: Arc<dyn MetricWriter>,
    /// The tenant's TSDB, for its series limit; None in federated views.
    head: Option<Arc<Tsdb>>,
    /// Where `/api/v1/query_exemplars` reads: the tenant's TSDB (its ring, whichever the
    /// metric storage), or every tenant's for a federated view.
    exemplars: Arc<dyn meshlens_model::ExemplarReader>,
    /// The tenant's graph aggregates; None in federated views (graphs use PromQL).
    graph_aggregates: Option<Arc<EdgeAggregates>>,
    /// What `/api/v1/status/storage` reports on.
    storage: Arc<StorageSource>,
    trace_state: Arc<TraceApiState>,
}

/// A view's routes, and the state of the server's own routes among them.
fn routes(shared: &Shared, v: View) -> (Router, Arc<AppState>) {
    let mut prom = shared.prom_status.clone();
    prom.storage = v.metrics_reader.clone();
    prom.exemplars = Some(v.exemplars.clone());
    prom.status = v.head.clone().map(crate::status::ServerStatus::for_tsdb);
    let analysis = meshlens_analysis_api::router(Arc::new(meshlens_analysis_api::AnalysisState {
        metrics: v.metrics_reader.clone(),
        spans: v.trace_state.reader.clone(),
        engine: shared.engine.clone(),
        aggregates: v.graph_aggregates.clone(),
    }));
    let verify = api::verify::router(Arc::new(api::verify::VerifyState {
        metrics: v.metrics_reader.clone(),
        spans: v.trace_state.reader.clone(),
        engine: shared.engine.clone(),
    }));
    let state = Arc::new(AppState {
        tenant: v.tenant,
        writer: v.metrics_writer,
        head: v.head,
        metrics: shared.metrics.clone(),
        limits: shared.limits.clone(),
        max_write_body_bytes: shared.opts.max_write_body_bytes,
        max_write_decompressed_bytes: shared.opts.max_write_decompressed_bytes,
        mesh_config: mesh_paths(&shared.opts.mesh_config, &v.mesh_tenants),
        otlp_metrics: meshlens_ingest::otlp::metrics::Settings {
            promote_resource_attributes: shared.opts.otlp_promote_resource_attributes.clone(),
            created_timestamp_zero_ingestion: shared.opts.created_timestamp_zero_ingestion,
            forward_created_timestamps: false,
        },
        created_zeros: shared.opts.created_timestamp_zero_ingestion,
    });
    let router = api::tenant_router(state.clone())
        .merge(meshlens_prom_api::router(prom))
        .merge(meshlens_trace_api::router(v.trace_state))
        .merge(analysis)
        .merge(verify)
        .merge(api::storage::router(v.storage));
    (router, state)
}

/// `--mesh PATH` is every tenant's; `--mesh TENANT=PATH` only that tenant's.
pub(crate) fn mesh_paths(all: &[PathBuf], tenants: &[String]) -> Vec<PathBuf> {
    all.iter()
        .filter_map(|p| {
            let s = p.to_string_lossy();
            match s.split_once('=') {
                Some((t, rest)) if meshlens_access::tenant::validate_org_id(t).is_ok() => {
                    tenants.iter().any(|x| x == t).then(|| PathBuf::from(rest))
                }
                _ => Some(p.clone()),
            }
        })
        .collect()
}

async fn open_stack(
    shared: &Arc<Shared>,
    id: &str,
    dir: &Path,
) -> Result<TenantStack, ServerError> {
    let opts = &shared.opts;
    let tsdb_dir = dir.to_path_buf();
    let tsdb_opts = opts.tsdb.clone();
    let tsdb = tokio::task::spawn_blocking(move || Tsdb::open(&tsdb_dir, tsdb_opts))
        .await
        .map_err(|e| ServerError::DataDir {
            dir: dir.into(),
            source: std::io::Error::other(e),
        })??;
    let tsdb = Arc::new(tsdb);
    let mut retention_or_connect = Vec::new();
    let mut clickhouse = None;
    let mut durable = None;
    let (metrics_reader, metrics_store, head): MetricStores = match &opts.storage {
        crate::MetricStorage::Embedded => (tsdb.clone(), tsdb.clone(), Some(tsdb.clone())),
        crate::MetricStorage::ClickHouse(url) => {
            let ch = open_clickhouse(shared, url, id).await?;
            let store = ch.metric_store();
            let buffer = crate::durable::open_for(opts, id, dir, &ch).await?;
            if !ch.is_ready() {
                retention_or_connect.push(tokio::spawn(clickhouse_connect(
                    ch.clone(),
                    shared.stop.clone(),
                )));
            }
            let metrics_keep = opts.tsdb.retention_time_ms;
            let spans_keep = Some(opts.spans.retention_ms).filter(|&ms| ms > 0);
            if metrics_keep.is_some() || spans_keep.is_some() {
                retention_or_connect.push(tokio::spawn(clickhouse_retention(
                    ch.clone(),
                    metrics_keep,
                    spans_keep,
                    opts.maintenance_interval,
                    shared.stop.clone(),
                )));
            }
            clickhouse = Some(ch);
            let writer: Arc<dyn MetricWriter> = Arc::new(exemplars::ExemplarsBeside {
                inner: buffer.metric_writer(),
                exemplars: tsdb.clone(),
            });
            durable = Some(buffer);
            (store, writer, None)
        }
    };
    let (metrics_writer, graph_aggregates) =
        graph_aggregates(shared, id, &metrics_reader, &metrics_store)?;
    let spans_dir = dir.join("spans");
    let span_opts = opts.spans.clone();
    let spans = tokio::task::spawn_blocking(move || SpanStore::open(&spans_dir, span_opts))
        .await
        .map_err(|e| ServerError::DataDir {
            dir: dir.into(),
            source: std::io::Error::other(e),
        })??;
    let spans = Arc::new(spans);
    tsdb.start_background(opts.maintenance_interval);
    // With ClickHouse the tenant's spans are written to and read from the cluster; the
    // embedded span store stays open (empty) for the status figures only.
    let (span_reader, span_store): (Arc<dyn SpanReader>, Arc<dyn SpanWriter>) =
        match (&clickhouse, &durable) {
            (Some(ch), Some(buffer)) => (ch.span_store(), buffer.span_writer()),
            _ => (spans.clone(), spans.clone()),
        };
    let writer: Arc<dyn SpanWriter> = Arc::new(LimitedSpans {
        tenant: id.to_string(),
        inner: span_store,
        limits: shared.limits.clone(),
    });
    let mut trace_state = TraceApiState::new(writer, span_reader.clone());
    trace_state.max_body_bytes = opts.max_span_body_bytes;
    trace_state.counters = shared.trace_counters.clone();
    if opts.spans.retention_ms > 0 {
        trace_state.max_search_window_ms = trace_state
            .max_search_window_ms
            .min(opts.spans.retention_ms);
    }
    let span_metrics = meshlens_analysis::SpanMetrics::new(metrics_store.clone());
    {
        let sm = span_metrics.clone();
        trace_state
            .observers
            .push(Arc::new(move |batch: &[meshlens_model::SpanRef<'_>]| {
                sm.observe_refs(batch)
            }));
    }
    let trace_state = Arc::new(trace_state);
    let mut tasks = vec![
        tokio::spawn(crate::span_metrics_flush(
            span_metrics,
            opts.span_metrics_interval,
            shared.stop.clone(),
        )),
        tokio::spawn(crate::span_maintenance(
            spans.clone(),
            opts.maintenance_interval,
            shared.stop.clone(),
        )),
    ];
    tasks.extend(retention_or_connect);
    let (router, app) = routes(
        shared,
        View {
            tenant: id.to_string(),
            mesh_tenants: vec![id.to_string()],
            metrics_reader: metrics_reader.clone(),
            metrics_writer: metrics_writer.clone(),
            head,
            exemplars: tsdb.clone(),
            graph_aggregates: graph_aggregates.clone(),
            storage: Arc::new(match &clickhouse {
                Some(ch) => StorageSource::ClickHouse {
                    storage: ch.clone(),
                    buffer: durable.clone(),
                },
                None => StorageSource::Embedded {
                    tsdb: tsdb.clone(),
                    spans: spans.clone(),
                },
            }),
            trace_state: trace_state.clone(),
        },
    );
    Ok(TenantStack {
        id: id.to_string(),
        tsdb,
        metrics_reader,
        metrics_store,
        writer: metrics_writer,
        graph_aggregates,
        spans,
        span_reader,
        trace_state,
        app,
        clickhouse_buffer: durable,
        clickhouse,
        router,
        tasks: parking_lot::Mutex::new(tasks),
    })
}

/// The tenant's ClickHouse storage over the shared client: its own database with
/// `--multitenancy`, the configured one otherwise. The schema is created now, and a
/// ClickHouse that does not answer stops the start (or the tenant's first write), unless
/// `--storage.clickhouse.start-unreachable`: then the schema waits for the first
/// operation, or [`clickhouse_connect`], to find ClickHouse answering.
async fn open_clickhouse(
    shared: &Shared,
    url: &meshlens_clickhouse::StorageUrl,
    id: &str,
) -> Result<Arc<meshlens_clickhouse::ClickHouseStorage>, ServerError> {
    let opts = &shared.opts;
    let url = if opts.multitenancy {
        url.for_tenant(id)
    } else {
        url.clone()
    };
    let client = match &shared.clickhouse_client {
        Some(c) => c.clone(),
        None => Arc::new(meshlens_clickhouse::Client::new(
            &url,
            opts.clickhouse_client.clone(),
        )?),
    };
    let ch = Arc::new(meshlens_clickhouse::ClickHouseStorage::connect(
        client,
        &url,
        &Default::default(),
    ));
    if opts.clickhouse_start_unreachable {
        return Ok(ch);
    }
    let c = ch.clone();
    tokio::task::spawn_blocking(move || c.ensure_ready())
        .await
        .map_err(|e| ServerError::DataDir {
            dir: opts.data_dir.clone(),
            source: std::io::Error::other(e),
        })??;
    Ok(ch)
}

/// With `--storage.clickhouse.start-unreachable`: tries every 2 s until ClickHouse answers
/// and the tenant's schema is in place, so the buffer drains and reads work without
/// waiting for a request to try. Warns once.
async fn clickhouse_connect(
    ch: Arc<meshlens_clickhouse::ClickHouseStorage>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut warned = false;
    while !ch.is_ready() {
        let c = ch.clone();
        match tokio::task::spawn_blocking(move || c.ensure_ready()).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) if !warned => {
                warned = true;
                tracing::warn!(storage = %ch.url(), error = %e,
                    "clickhouse does not answer; writes are buffered, reads answer 503, and the schema is created once it answers");
            }
            Ok(Err(_)) => {}
            Err(_) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// `--retention.time` on ClickHouse: each maintenance interval, the UTC days that lie wholly
/// before now minus the retention are dropped, whole partitions on every shard (the embedded
/// TSDB counts from its newest sample instead; a cluster's writers have no common newest).
async fn clickhouse_retention(
    ch: Arc<meshlens_clickhouse::ClickHouseStorage>,
    metrics_keep_ms: Option<i64>,
    spans_keep_ms: Option<i64>,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let kinds: Vec<(meshlens_clickhouse::DataKind, i64)> = [
        (meshlens_clickhouse::DataKind::Metrics, metrics_keep_ms),
        (meshlens_clickhouse::DataKind::Spans, spans_keep_ms),
    ]
    .into_iter()
    .filter_map(|(k, keep)| keep.map(|ms| (k, ms)))
    .collect();
    loop {
        for &(kind, keep_ms) in &kinds {
            let c = ch.clone();
            let pass = tokio::task::spawn_blocking(move || {
                c.enforce_retention(kind, meshlens_model::time::now_ms(), keep_ms)
            });
            match pass.await {
                Ok(Ok(dropped)) => {
                    for (table, day) in dropped {
                        tracing::info!(table, day, "clickhouse retention dropped a day");
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "clickhouse retention failed"),
                Err(_) => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// A tenant's metric reader, its storage writer, and the embedded head (None on ClickHouse).
type MetricStores = (
    Arc<dyn MetricReader>,
    Arc<dyn MetricWriter>,
    Option<Arc<Tsdb>>,
);

/// The writer every metric ingest path of a tenant uses, and the graph aggregates it feeds.
type MetricsIngest = (Arc<dyn MetricWriter>, Option<Arc<EdgeAggregates>>);

/// The tenant's graph aggregates and the writer that feeds them, with their rebuild from
/// the TSDB started on a thread of its own (it reads up to a day of Istio series once; until
/// it is done, graphs use PromQL and say so). Without aggregates, the TSDB itself.
fn graph_aggregates(
    shared: &Shared,
    id: &str,
    reader: &Arc<dyn MetricReader>,
    store: &Arc<dyn MetricWriter>,
) -> Result<MetricsIngest, ServerError> {
    let Some(opts) = shared.opts.graph_aggregates else {
        return Ok((store.clone(), None));
    };
    let aggs = Arc::new(EdgeAggregates::new(opts)?);
    let (a, reader, tenant) = (aggs.clone(), reader.clone(), id.to_string());
    std::thread::Builder::new()
        .name("graph-aggregates".into())
        .spawn(move || {
            let t = std::time::Instant::now();
            match a.rebuild(&*reader) {
                Ok(r) => {
                    let st = a.stats();
                    tracing::info!(
                        tenant,
                        series = r.series,
                        samples = r.samples,
                        edges = st.edges,
                        bytes = st.bytes,
                        secs = t.elapsed().as_secs_f64(),
                        "graph aggregates rebuilt from storage"
                    );
                }
                Err(e) => tracing::warn!(
                    tenant,
                    error = %e,
                    "rebuilding the graph aggregates failed; graphs use PromQL"
                ),
            }
        })
        .map_err(|e| ServerError::DataDir {
            dir: shared.opts.data_dir.clone(),
            source: e,
        })?;
    let writer = Arc::new(meshlens_analysis::AggregatingWriter::new(
        store.clone(),
        aggs.clone(),
    ));
    Ok((writer, Some(aggs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_files_named_for_a_tenant_are_only_that_tenants() {
        let all = vec![
            PathBuf::from("shared.yaml"),
            PathBuf::from("team-a=a.yaml"),
            PathBuf::from("team-b=b.yaml"),
        ];
        assert_eq!(
            mesh_paths(&all, &["team-a".into()]),
            vec![PathBuf::from("shared.yaml"), PathBuf::from("a.yaml")]
        );
        assert_eq!(mesh_paths(&all, &[]), vec![PathBuf::from("shared.yaml")]);
    }
}
