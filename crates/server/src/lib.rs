//! The hub: wires storage, ingest, scraping and the HTTP APIs into one process, and owns
//! start-up and shutdown order.
//!
//! Start: lock the data dir, open storage (WAL replay), bind, serve, then start scraping.
//! Shutdown: stop scraping, stop accepting requests and drain in-flight ones, then close
//! storage (flushes and syncs the WAL, persists the head). Ingest always stops before
//! storage closes, so nothing acknowledged is lost. With ClickHouse storage, writes are
//! acknowledged once in each tenant's local write buffer (`durable`); shutdown keeps
//! inserting from it for a few seconds and leaves the rest for the next start.

pub mod agent;
mod alert_events;
mod alerting;
pub mod anomaly;
mod api;
pub mod config;
mod discovery;
pub mod durable;
mod limits;
mod remediation;
mod rules;
mod scrape;
mod self_metrics;
mod status;
pub mod tenants;
mod ui;

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use meshlens_spanstore::SpanStore;
use meshlens_tsdb::TsdbOptions;

pub use config::Config;
/// `ServerOptions::graph_aggregates`, for the command line.
pub use meshlens_analysis::AggregatesOptions as GraphAggregatesOptions;
pub use rules::RuleOptions;
pub use self_metrics::SelfMetrics;

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Where metrics are stored: the embedded TSDB or ClickHouse.
    pub storage: MetricStorage,
    pub config_file: Option<PathBuf>,
    pub tsdb: TsdbOptions,
    /// Largest accepted remote-write body (compressed); larger gets 413.
    pub max_write_body_bytes: usize,
    /// Largest accepted remote-write body after snappy decompression.
    pub max_write_decompressed_bytes: usize,
    pub maintenance_interval: Duration,
    pub query: meshlens_promql::EngineOptions,
    /// Prometheus's `promql-delayed-name-removal` (`--enable-feature`) for the server's
    /// PromQL engine, which the query APIs, rule evaluation, the graph, anomalies and
    /// verification share: see [`meshlens_promql::Engine::with_delayed_name_removal`].
    pub promql_delayed_name_removal: bool,
    /// Prometheus's `created-timestamp-zero-ingestion` (`--enable-feature`): remote write
    /// 2.0, OTLP metrics and scrapes (protobuf `created_timestamp`, OpenMetrics `_created`)
    /// that carry a created (start) timestamp get a zero sample there, before their first
    /// sample (see `meshlens_ingest::created`).
    pub created_timestamp_zero_ingestion: bool,
    /// The command line as given, for `/api/v1/status/flags`.
    pub flags: std::collections::BTreeMap<String, String>,
    pub spans: meshlens_spanstore::SpanStoreOptions,
    /// OTLP/gRPC listener (Istio and OpenTelemetry's port 4317); None: off.
    pub otlp_grpc_listen: Option<SocketAddr>,
    /// A separate OTLP/HTTP listener (port 4318); None: off (the main listener serves
    /// `/v1/traces` and `/v1/metrics` regardless).
    pub otlp_http_listen: Option<SocketAddr>,
    /// Resource attributes of OTLP metrics copied onto every series as labels (Prometheus's
    /// `otlp.promote_resource_attributes`).
    pub otlp_promote_resource_attributes: Vec<String>,
    /// Largest span ingest body accepted (compressed); larger gets 413.
    pub max_span_body_bytes: usize,
    /// Istio (and Kubernetes) YAML files or directories that `/api/v1/validations` checks.
    pub mesh_config: Vec<PathBuf>,
    /// How often span metrics are written into the TSDB.
    pub span_metrics_interval: Duration,
    /// Every request names its tenant in `X-Scope-OrgID`; each tenant has its own storage.
    pub multitenancy: bool,
    /// The tenant that scraped samples go to (with `--multitenancy`; else the only one).
    pub scrape_tenant: String,
    /// Per-tenant ingest limits.
    pub limits: meshlens_access::limits::Limits,
    /// Prometheus's web config file (TLS, basic auth, headers) for every listener.
    pub web_config_file: Option<PathBuf>,
    /// Connection cap and timeouts, per listener.
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// The rule engine, notifier and probes.
    pub rules: RuleOptions,
    /// `--mesh-write`: the Config view's wizards and remediation actions may write to the
    /// first `--mesh` directory (off: they only preview).
    pub mesh_write: bool,
    /// `--remediation.config`: the `remediations:` file.
    pub remediation_file: Option<PathBuf>,
    /// How often every service's RED signals are scored for anomalies; None: off.
    pub anomaly_interval: Option<Duration>,
    /// The service graph's per-edge aggregates kept at ingest (retentions); None: off,
    /// every graph goes through PromQL.
    pub graph_aggregates: Option<meshlens_analysis::AggregatesOptions>,
    /// With ClickHouse storage: the write buffer's limits and pacing (`fsync` is taken
    /// from `tsdb.wal_fsync`).
    pub clickhouse_buffer: durable::DurableOptions,
    /// With ClickHouse storage: the client's timeouts (queries, inserts, connecting).
    pub clickhouse_client: meshlens_clickhouse::ClientOptions,
    /// With ClickHouse storage: start even when ClickHouse does not answer (writes are
    /// buffered, reads answer 503, the schema is created once it answers) instead of
    /// stopping with its address named.
    pub clickhouse_start_unreachable: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            data_dir: PathBuf::from("meshlens-data"),
            storage: MetricStorage::Embedded,
            config_file: None,
            tsdb: TsdbOptions::default(),
            max_write_body_bytes: 32 << 20,
            max_write_decompressed_bytes: 256 << 20,
            maintenance_interval: Duration::from_secs(60),
            query: meshlens_promql::EngineOptions::default(),
            promql_delayed_name_removal: false,
            created_timestamp_zero_ingestion: false,
            flags: Default::default(),
            spans: Default::default(),
            otlp_grpc_listen: None,
            otlp_http_listen: None,
            otlp_promote_resource_attributes: Vec::new(),
            max_span_body_bytes: 16 << 20,
            mesh_config: Vec::new(),
            span_metrics_interval: Duration::from_secs(15),
            multitenancy: false,
            scrape_tenant: tenants::DEFAULT_TENANT.to_string(),
            limits: Default::default(),
            web_config_file: None,
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            rules: RuleOptions::default(),
            mesh_write: false,
            remediation_file: None,
            anomaly_interval: Some(Duration::from_secs(15)),
            graph_aggregates: Some(Default::default()),
            clickhouse_buffer: Default::default(),
            clickhouse_client: Default::default(),
            clickhouse_start_unreachable: false,
        }
    }
}

/// Where a server keeps a tenant's metrics and spans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MetricStorage {
    /// The embedded TSDB in the data directory.
    #[default]
    Embedded,
    /// A ClickHouse server or cluster; with `--multitenancy`, one database per tenant (see
    /// `tenants`).
    ClickHouse(meshlens_clickhouse::StorageUrl),
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {dir}: {source}")]
    DataDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {0} is in use by another meshlens process")]
    Locked(PathBuf),
    #[error("reading config {file}: {source}")]
    ConfigRead {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("opening storage: {0}")]
    Storage(#[from] meshlens_tsdb::TsdbError),
    #[error("opening ClickHouse storage: {0}")]
    ClickHouse(#[from] meshlens_clickhouse::ClickHouseError),
    #[error("opening the span store: {0}")]
    SpanStore(#[from] meshlens_spanstore::SpanStoreError),
    #[error("graph aggregates: {0}")]
    GraphAggregates(#[from] meshlens_analysis::graph::aggregates::AggregatesError),
    #[error("web config: {0}")]
    WebConfig(#[from] meshlens_access::WebConfigError),
    #[error(transparent)]
    Rules(#[from] rules::LoadError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Takes the data directory's lock file; held for the process's life.
pub fn lock_data_dir(dir: &std::path::Path) -> Result<File, ServerError> {
    std::fs::create_dir_all(dir).map_err(|source| ServerError::DataDir {
        dir: dir.into(),
        source,
    })?;
    let f = File::create(dir.join("lock")).map_err(|source| ServerError::DataDir {
        dir: dir.into(),
        source,
    })?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServerError::Locked(dir.into())),
        Err(std::fs::TryLockError::Error(source)) => Err(ServerError::DataDir {
            dir: dir.into(),
            source,
        }),
    }
}

pub fn load_config(path: Option<&std::path::Path>) -> Result<Config, ServerError> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ServerError::ConfigRead {
        file: path.into(),
        source,
    })?;
    let (cfg, warnings) = config::parse(&text, &path.display().to_string())?;
    for w in warnings {
        tracing::warn!(file = %path.display(), "config: {w}");
    }
    Ok(cfg)
}

pub struct RunningServer {
    addr: SocketAddr,
    otlp_grpc_addr: Option<SocketAddr>,
    otlp_http_addr: Option<SocketAddr>,
    tenants: Arc<tenants::Tenants>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    side_stop: tokio::sync::watch::Sender<bool>,
    http_stop: tokio::sync::watch::Sender<bool>,
    state: Arc<api::GlobalState>,
    _lock: File,
}

/// Starts the server; returns once it is listening.
pub async fn start(opts: ServerOptions) -> Result<RunningServer, ServerError> {
    let lock = lock_data_dir(&opts.data_dir)?;
    let cfg = load_config(opts.config_file.as_deref())?;
    let web = match &opts.web_config_file {
        Some(f) => Some(meshlens_access::WebConfigSource::load(f)?),
        None => None,
    };
    let (side_stop, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = SelfMetrics::new();
    let limits = limits::IngestLimits::new(opts.limits.clone());
    // The only PromQL engine the server builds: every query path shares it (and its
    // concurrency limit and result cache).
    let engine = Arc::new(
        meshlens_promql::Engine::new(opts.query.clone())
            .with_delayed_name_removal(opts.promql_delayed_name_removal),
    );
    let prom_status = meshlens_prom_api::PromApiState {
        storage: Arc::new(tenants::federated::FederatedMetrics {
            tenants: Vec::new(),
        }),
        engine: engine.clone(),
        config_yaml: cfg.redacted_yaml.clone(),
        flags: opts.flags.clone(),
        start_time: std::time::SystemTime::now(),
        storage_retention: match (opts.tsdb.retention_time_ms, opts.tsdb.retention_size_bytes) {
            (Some(t), None) => config::format_duration(Duration::from_millis(t as u64)),
            (Some(t), Some(b)) => format!(
                "{} or {b}B",
                config::format_duration(Duration::from_millis(t as u64))
            ),
            (None, Some(b)) => format!("{b}B"),
            (None, None) => "unlimited".into(),
        },
        config_status: Default::default(),
        status: None,
        exemplars: None,
    };
    let config_status = prom_status.config_status.clone();
    let clickhouse_client = match &opts.storage {
        MetricStorage::ClickHouse(url) => Some(Arc::new(meshlens_clickhouse::Client::new(
            url,
            opts.clickhouse_client.clone(),
        )?)),
        MetricStorage::Embedded => None,
    };
    let shared = Arc::new(tenants::Shared {
        clickhouse_client,
        opts: opts.clone(),
        engine: engine.clone(),
        metrics: metrics.clone(),
        limits: limits.clone(),
        prom_status,
        trace_counters: Arc::new(meshlens_trace_api::TraceCounters::default()),
        stop: stop_rx.clone(),
    });
    let tenants = tenants::Tenants::open(shared).await?;
    let main = tenants.scrape_stack();
    let scrape = scrape::ScrapeManager::start(
        &cfg,
        main.writer.clone(),
        metrics.clone(),
        opts.created_timestamp_zero_ingestion,
    );
    let rules = rules::RuleRuntime::start(&opts, &cfg, engine, main.clone())?;
    let access = Arc::new(meshlens_access::AccessMetrics::default());
    let events = Arc::new(
        meshlens_verify::events::EventLog::open(&opts.data_dir.join("events.jsonl"), 10_000)
            .map_err(|e| ServerError::DataDir {
                dir: opts.data_dir.clone(),
                source: std::io::Error::other(e),
            })?,
    );
    let anomalies = anomaly::Anomalies::start(
        opts.anomaly_interval,
        rules.engine.clone(),
        main.clone(),
        events.clone(),
    );
    let state = Arc::new(api::GlobalState {
        tenants: tenants.clone(),
        scrape: parking_lot::RwLock::new(scrape),
        metrics,
        access: access.clone(),
        limits,
        ready: Default::default(),
        rules,
        lifecycle: opts.rules.enable_lifecycle,
        config_status,
        config: parking_lot::Mutex::new(cfg),
        clusters: Default::default(),
        anomalies,
        events,
        mesh: Arc::new(api::mesh::MeshState::new(&opts)),
        remediation: Default::default(),
    });
    let listener_opts = |name: &'static str| meshlens_access::ListenerOptions {
        name,
        max_connections: opts.max_connections,
        header_read_timeout: opts.header_read_timeout,
        idle_timeout: opts.idle_timeout,
    };
    let (http_stop, http_rx) = tokio::sync::watch::channel(false);
    let mut listeners = Vec::new();

    let (listener, addr) = bind(opts.listen).await?;
    let _ = state
        .remediation
        .set(remediation::start(&opts, &state, addr, stop_rx.clone())?);
    alert_events::start(&state, stop_rx.clone());
    let app = api::global_router(state.clone()).merge(ui::router()).merge(
        axum::Router::new()
            .fallback(tenants::dispatch)
            .with_state(tenants.clone()),
    );
    let app = api::clusters::observed(app, state.clone());
    listeners.push(tokio::spawn(meshlens_access::serve(
        listener,
        web.clone(),
        listener_opts("main"),
        access.clone(),
        app,
        stopped(http_rx.clone()),
    )));

    let mut otlp_grpc_addr = None;
    if let Some(a) = opts.otlp_grpc_listen {
        let (l, bound) = bind(a).await?;
        otlp_grpc_addr = Some(bound);
        let t = tenants.clone();
        let service = tower::service_fn(move |req| {
            let t = t.clone();
            async move { Ok::<_, std::convert::Infallible>(tenants::grpc_export(t, req).await) }
        });
        listeners.push(tokio::spawn(meshlens_access::serve(
            l,
            web.clone(),
            listener_opts("otlp-grpc"),
            access.clone(),
            service,
            stopped(http_rx.clone()),
        )));
    }
    let mut otlp_http_addr = None;
    if let Some(a) = opts.otlp_http_listen {
        let (l, bound) = bind(a).await?;
        otlp_http_addr = Some(bound);
        // Only OTLP/HTTP's paths; everything else on this port is a 404.
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::any(tenants::dispatch))
            .route("/v1/metrics", axum::routing::any(tenants::dispatch))
            .with_state(tenants.clone());
        let app = api::clusters::observed(app, state.clone());
        listeners.push(tokio::spawn(meshlens_access::serve(
            l,
            web.clone(),
            listener_opts("otlp-http"),
            access.clone(),
            app,
            stopped(http_rx.clone()),
        )));
    }
    state.ready.store(true, Ordering::Release);
    tracing::info!(%addr, data_dir = %opts.data_dir.display(), multitenancy = opts.multitenancy, "meshlens server started");
    Ok(RunningServer {
        addr,
        otlp_grpc_addr,
        otlp_http_addr,
        tenants,
        listeners,
        side_stop,
        http_stop,
        state,
        _lock: lock,
    })
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn otlp_grpc_addr(&self) -> Option<SocketAddr> {
        self.otlp_grpc_addr
    }

    pub fn otlp_http_addr(&self) -> Option<SocketAddr> {
        self.otlp_http_addr
    }

    /// Re-reads the config file and what it names (SIGHUP); on error the running state stays.
    pub async fn reload(&self) -> Result<(), String> {
        self.state.reload().await.map_err(|e| e.to_string())
    }

    /// Orderly shutdown: scraping and rules, then the listeners (in-flight requests finish),
    /// then each tenant's side tasks and storage.
    pub async fn shutdown(mut self) {
        self.state.ready.store(false, Ordering::Release);
        let scrape = self.state.scrape.read().clone();
        scrape.stop().await;
        self.state.rules.stop().await;
        self.state.anomalies.stop().await;
        let _ = self.http_stop.send(true);
        for l in self.listeners.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(30), l).await;
        }
        let _ = self.side_stop.send(true);
        self.tenants.close().await;
    }
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok((listener, bound))
}

/// Resolves once the stop flag is raised.
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Span retention, on the same period as the TSDB's maintenance.
pub(crate) async fn span_maintenance(
    spans: Arc<SpanStore>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let s = spans.clone();
        let _ = tokio::task::spawn_blocking(move || warm_stats(&s)).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let s = spans.clone();
        match tokio::task::spawn_blocking(move || s.enforce_retention()).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(segments = n, "span retention dropped segments"),
            Ok(Err(e)) => tracing::warn!(error = %e, "span retention failed"),
            _ => {}
        }
    }
}

/// Traffic statistics over everything stored, answered and dropped: it leaves each sealed
/// segment's partial results in the store's memo, so the first statistics request after a
/// start or a segment seal reads them instead of scanning the segments' spans.
fn warm_stats(spans: &SpanStore) {
    // All time, future timestamps included: a part is memoised only when the window holds it.
    let end_ms = i64::MAX / 1000;
    let q = meshlens_analysis::StatsQuery {
        window_ms: end_ms,
        end_ms,
        cluster: None,
        service: None,
    };
    let t = std::time::Instant::now();
    match meshlens_analysis::compute_stats(spans, &q) {
        Ok(_) => tracing::debug!(ms = t.elapsed().as_millis() as u64, "statistics warmed"),
        Err(e) => tracing::debug!(error = %e, "warming statistics failed"),
    }
}

/// Writes the span metrics derived at ingest into the TSDB on a fixed period (cumulative
/// values, so `rate()` works on them), and once more at shutdown.
pub(crate) async fn span_metrics_flush(
    metrics: Arc<meshlens_analysis::SpanMetrics>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let last = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let m = metrics.clone();
        let now = meshlens_model::time::now_ms();
        match tokio::task::spawn_blocking(move || m.flush(now)).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "writing span metrics failed"),
            Err(e) => tracing::warn!(error = %e, "writing span metrics failed"),
            Ok(Ok(_)) => {}
        }
        if last {
            return;
        }
    }
}
