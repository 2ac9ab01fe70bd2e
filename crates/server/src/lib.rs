//! The hub: wires storage, ingest, scraping and the HTTP APIs into one process, and owns
//! start-up and shutdown order.
//!
//! Start: lock the data dir, open storage (WAL replay), bind, serve, then start scraping.
//! Shutdown: stop scraping, stop accepting requests and drain in-flight ones, then close
//! storage (flushes and syncs the WAL, persists the head). Ingest always stops before
//! storage closes, so nothing acknowledged is lost.

mod api;
pub mod config;
mod discovery;
mod scrape;
mod self_metrics;
mod ui;

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use meshlens_spanstore::SpanStore;
use meshlens_trace_api::TraceApiState;
use meshlens_tsdb::{Tsdb, TsdbOptions};
use tokio::sync::oneshot;

pub use config::Config;
pub use self_metrics::SelfMetrics;

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub tsdb: TsdbOptions,
    /// Largest accepted remote-write body (compressed); larger gets 413.
    pub max_write_body_bytes: usize,
    /// Largest accepted remote-write body after snappy decompression.
    pub max_write_decompressed_bytes: usize,
    pub maintenance_interval: Duration,
    pub query: meshlens_promql::EngineOptions,
    /// The command line as given, for `/api/v1/status/flags`.
    pub flags: std::collections::BTreeMap<String, String>,
    pub spans: meshlens_spanstore::SpanStoreOptions,
    /// OTLP/gRPC listener (Istio and OpenTelemetry's port 4317); None: off.
    pub otlp_grpc_listen: Option<SocketAddr>,
    /// A separate OTLP/HTTP listener (port 4318); None: off (the main listener serves
    /// `/v1/traces` regardless).
    pub otlp_http_listen: Option<SocketAddr>,
    /// Largest span ingest body accepted (compressed); larger gets 413.
    pub max_span_body_bytes: usize,
    /// Istio (and Kubernetes) YAML files or directories that `/api/v1/validations` checks.
    pub mesh_config: Vec<PathBuf>,
    /// How often span metrics are written into the TSDB.
    pub span_metrics_interval: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            data_dir: PathBuf::from("meshlens-data"),
            config_file: None,
            tsdb: TsdbOptions::default(),
            max_write_body_bytes: 32 << 20,
            max_write_decompressed_bytes: 256 << 20,
            maintenance_interval: Duration::from_secs(60),
            query: meshlens_promql::EngineOptions::default(),
            flags: Default::default(),
            spans: Default::default(),
            otlp_grpc_listen: None,
            otlp_http_listen: None,
            max_span_body_bytes: 16 << 20,
            mesh_config: Vec::new(),
            span_metrics_interval: Duration::from_secs(15),
        }
    }
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
    #[error("opening the span store: {0}")]
    SpanStore(#[from] meshlens_spanstore::SpanStoreError),
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
    spans: Arc<SpanStore>,
    side_tasks: Vec<tokio::task::JoinHandle<()>>,
    side_stop: tokio::sync::watch::Sender<bool>,
    state: Arc<api::AppState>,
    http_stop: Option<oneshot::Sender<()>>,
    http_task: tokio::task::JoinHandle<()>,
    _lock: File,
}

/// Starts the server; returns once it is listening.
pub async fn start(opts: ServerOptions) -> Result<RunningServer, ServerError> {
    let lock = lock_data_dir(&opts.data_dir)?;
    let cfg = load_config(opts.config_file.as_deref())?;
    let dir = opts.data_dir.clone();
    let tsdb_opts = opts.tsdb.clone();
    let tsdb = tokio::task::spawn_blocking(move || Tsdb::open(&dir, tsdb_opts))
        .await
        .map_err(|e| ServerError::DataDir {
            dir: opts.data_dir.clone(),
            source: std::io::Error::other(e),
        })??;
    let tsdb = Arc::new(tsdb);
    let spans_dir = opts.data_dir.join("spans");
    let span_opts = opts.spans.clone();
    let spans = tokio::task::spawn_blocking(move || SpanStore::open(&spans_dir, span_opts))
        .await
        .map_err(|e| ServerError::DataDir {
            dir: opts.data_dir.clone(),
            source: std::io::Error::other(e),
        })??;
    let spans = Arc::new(spans);
    tsdb.start_background(opts.maintenance_interval);
    let (listener, addr) = bind(opts.listen).await?;
    let mut trace_state = TraceApiState::new(spans.clone(), spans.clone());
    trace_state.max_body_bytes = opts.max_span_body_bytes;
    let span_metrics = meshlens_analysis::SpanMetrics::new(tsdb.clone());
    {
        let sm = span_metrics.clone();
        trace_state
            .observers
            .push(Arc::new(move |batch: &[meshlens_model::Span]| {
                sm.observe(batch)
            }));
    }
    let trace_state = Arc::new(trace_state);
    let (side_stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut side_tasks = Vec::new();
    let mut otlp_grpc_addr = None;
    if let Some(a) = opts.otlp_grpc_listen {
        let (l, bound) = bind(a).await?;
        otlp_grpc_addr = Some(bound);
        side_tasks.push(tokio::spawn(meshlens_trace_api::serve_otlp_grpc(
            l,
            trace_state.clone(),
            stopped(stop_rx.clone()),
        )));
    }
    let mut otlp_http_addr = None;
    if let Some(a) = opts.otlp_http_listen {
        let (l, bound) = bind(a).await?;
        otlp_http_addr = Some(bound);
        let app = meshlens_trace_api::otlp_http_app(trace_state.clone());
        let stop = stopped(stop_rx.clone());
        side_tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).with_graceful_shutdown(stop).await {
                tracing::error!(error = %e, "otlp http server failed");
            }
        }));
    }
    side_tasks.push(tokio::spawn(span_metrics_flush(
        span_metrics,
        opts.span_metrics_interval,
        stop_rx.clone(),
    )));
    side_tasks.push(tokio::spawn(span_maintenance(
        spans.clone(),
        opts.maintenance_interval,
        stop_rx.clone(),
    )));
    let metrics = SelfMetrics::new();
    let scrape = scrape::ScrapeManager::start(&cfg, tsdb.clone(), metrics.clone());
    let engine = Arc::new(meshlens_promql::Engine::new(opts.query.clone()));
    let analysis = meshlens_analysis::router(Arc::new(meshlens_analysis::AnalysisState {
        metrics: tsdb.clone(),
        spans: spans.clone(),
        engine: engine.clone(),
    }));
    let prom = meshlens_prom_api::router(meshlens_prom_api::PromApiState {
        storage: tsdb.clone(),
        engine,
        config_yaml: cfg.original_yaml.clone(),
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
    });
    let state = Arc::new(api::AppState {
        tsdb: tsdb.clone(),
        spans: spans.clone(),
        trace_counters: trace_state.counters.clone(),
        writer: tsdb.clone(),
        scrape,
        metrics,
        max_write_body_bytes: opts.max_write_body_bytes,
        max_write_decompressed_bytes: opts.max_write_decompressed_bytes,
        mesh_config: opts.mesh_config.clone(),
        ready: Default::default(),
    });
    let app = api::router(state.clone())
        .merge(prom)
        .merge(meshlens_trace_api::router(trace_state))
        .merge(analysis)
        .merge(ui::router());
    let (tx, rx) = oneshot::channel::<()>();
    let http_task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "http server failed");
        }
    });
    state.ready.store(true, Ordering::Release);
    tracing::info!(%addr, data_dir = %opts.data_dir.display(), "meshlens server started");
    Ok(RunningServer {
        addr,
        otlp_grpc_addr,
        otlp_http_addr,
        spans,
        side_tasks,
        side_stop,
        state,
        http_stop: Some(tx),
        http_task,
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

    /// Orderly shutdown: scraping, then HTTP (in-flight requests finish), then storage.
    pub async fn shutdown(mut self) {
        self.state.ready.store(false, Ordering::Release);
        self.state.scrape.stop().await;
        if let Some(tx) = self.http_stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.http_task).await;
        let _ = self.side_stop.send(true);
        for t in self.side_tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        let spans = self.spans.clone();
        match tokio::task::spawn_blocking(move || spans.close()).await {
            Ok(Ok(())) => tracing::info!("span store closed"),
            Ok(Err(e)) => tracing::error!(error = %e, "closing the span store failed"),
            Err(e) => tracing::error!(error = %e, "closing the span store failed"),
        }
        let tsdb = self.state.tsdb.clone();
        let closed = tokio::task::spawn_blocking(move || tsdb.close()).await;
        match closed {
            Ok(Ok(())) => tracing::info!("storage closed"),
            Ok(Err(e)) => tracing::error!(error = %e, "closing storage failed"),
            Err(e) => tracing::error!(error = %e, "closing storage failed"),
        }
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
async fn span_maintenance(
    spans: Arc<SpanStore>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
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

/// Writes the span metrics derived at ingest into the TSDB on a fixed period (cumulative
/// values, so `rate()` works on them), and once more at shutdown.
async fn span_metrics_flush(
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
