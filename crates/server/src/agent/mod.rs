//! `meshlens agent`, one per cluster: collects what the cluster produces (scrapes, remote
//! write, Zipkin and OTLP spans), stamps each series and span with the cluster, and
//! acknowledges only once the data is durable in its forwarding buffer; the forwarder then
//! sends it to every hub from that hub's own cursor.
//!
//! Start: lock the data dir, open the buffer, start the forwarder, bind and serve, then
//! scrape. Shutdown: stop scraping, stop the listeners (in-flight requests finish), drain
//! the forwarder for up to `drain_timeout`, close the buffer. What was acknowledged is on
//! disk before the 2xx, so a SIGKILL loses nothing of it; the next start sends it on.
//!
//! Cluster tags on spans: the agent serves Zipkin and OTLP through two trace-api states whose
//! writers differ only in the tag they add, so a Zipkin span gets `cluster` and an OTLP span
//! (HTTP or gRPC) `k8s.cluster.name`; a span naming its cluster already (either of those, or
//! `istio.cluster_id`) keeps it.

mod http;
mod writer;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use meshlens_forward::{Buffer, Forwarder, HubOptions};
use meshlens_trace_api::{TraceApiState, TraceCounters};

use crate::config::{Config, ConfigError};
use crate::scrape::ScrapeManager;
use crate::{SelfMetrics, ServerError};

pub use meshlens_forward::{BufferOptions, SendOptions};
/// How a buffer's refusal reaches a sender (503 when full, 400 when too large), for every
/// writer that acknowledges once buffered.
pub(crate) use writer::storage_error;
pub use writer::{CLUSTER_LABEL, OTLP_CLUSTER_ATTRIBUTE};

#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Stamped as `cluster` on series (and Zipkin spans), `k8s.cluster.name` on OTLP spans.
    pub cluster: String,
    /// Sent to the hubs as `X-Meshlens-Agent`; default `<hostname>:<bound port>`.
    pub agent_id: Option<String>,
    /// The hubs' base URLs (`http://hub:9090`); each gets everything, from its own cursor.
    pub hubs: Vec<String>,
    /// HTTP: `/api/v1/write`, `/v1/metrics`, `/api/v2/spans`, `/v1/traces`, `/metrics`,
    /// `/-/healthy`, `/-/ready`.
    pub listen: SocketAddr,
    /// Locked for the process's life; the buffer lives in `DATA_DIR/buffer`.
    pub data_dir: PathBuf,
    /// A Prometheus config: `global` and `scrape_configs` are used, as the server uses them.
    pub config_file: Option<PathBuf>,
    /// OTLP/gRPC: the trace and the metrics export services.
    pub otlp_grpc_listen: Option<SocketAddr>,
    /// Resource attributes made labels of OTLP metrics (Prometheus's
    /// `otlp.promote_resource_attributes`); the rest go to `target_info`.
    pub otlp_promote_resource_attributes: Vec<String>,
    /// `dir` is ignored: the buffer is always `DATA_DIR/buffer`.
    pub buffer: BufferOptions,
    /// `cluster` and `agent_id` are set from the fields above.
    pub send: SendOptions,
    /// How long shutdown waits for the hubs to take what is buffered.
    pub drain_timeout: Duration,
    /// Prometheus's web config file (TLS, basic auth, headers) for every listener.
    pub web_config_file: Option<PathBuf>,
    /// For `https://` hubs; None: the system's roots.
    pub hub_tls: Option<Arc<rustls::ClientConfig>>,
    /// Largest remote-write body accepted (compressed); larger gets 413.
    pub max_write_body_bytes: usize,
    /// Largest remote-write body after snappy decompression; larger gets 413.
    pub max_write_decompressed_bytes: usize,
    /// Largest span ingest body accepted (compressed); larger gets 413.
    pub max_span_body_bytes: usize,
    /// Connection cap and timeouts, per listener (the server's defaults).
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            cluster: String::new(),
            agent_id: None,
            hubs: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            data_dir: PathBuf::from("meshlens-agent-data"),
            config_file: None,
            otlp_grpc_listen: None,
            otlp_promote_resource_attributes: Vec::new(),
            buffer: BufferOptions::default(),
            send: SendOptions::default(),
            drain_timeout: Duration::from_secs(30),
            web_config_file: None,
            hub_tls: None,
            max_write_body_bytes: 32 << 20,
            max_write_decompressed_bytes: 128 << 20,
            max_span_body_bytes: 16 << 20,
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

pub struct RunningAgent {
    addr: SocketAddr,
    otlp_grpc_addr: Option<SocketAddr>,
    agent_id: String,
    state: Arc<http::AgentState>,
    scrape: parking_lot::RwLock<Arc<ScrapeManager>>,
    /// The scrape part of the config as last loaded, to tell whether a reload changed it.
    config: parking_lot::Mutex<Config>,
    config_file: Option<PathBuf>,
    metrics_writer: Arc<writer::BufferMetricWriter>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    http_stop: tokio::sync::watch::Sender<bool>,
    drain_timeout: Duration,
    buffer: Arc<Buffer>,
    _lock: File,
}

/// An error in the options themselves, named like a config error.
fn invalid(flag: &str, reason: impl Into<String>) -> ServerError {
    ServerError::Config(ConfigError::Invalid {
        file: "agent options".into(),
        path: flag.into(),
        reason: reason.into(),
    })
}

/// Checks a hub URL is `http(s)://host[:port][/path]` and returns it without a trailing
/// slash (the forwarder appends the API paths).
pub fn normalise_hub_url(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?}: the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?}: no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?}: a hub URL takes no query or fragment"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The config file, of which only `global` and `scrape_configs` matter to an agent.
fn load_config(path: Option<&Path>) -> Result<Config, ServerError> {
    let cfg = crate::load_config(path)?;
    if let Some(p) = path {
        if !cfg.rule_files.is_empty() {
            tracing::warn!(file = %p.display(), "config: rule_files are not evaluated by an agent (the hub runs rules); ignored");
        }
        if !cfg.alerting.alertmanagers.is_empty() {
            tracing::warn!(file = %p.display(), "config: alerting is not used by an agent; ignored");
        }
        if cfg.probes.is_some() {
            tracing::warn!(file = %p.display(), "config: probes are not run by an agent; ignored");
        }
    }
    Ok(cfg)
}

/// The machine's name, for the default agent id.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Starts the agent; returns once it is listening. An unreachable hub is not an error:
/// the data waits in the buffer.
pub async fn start(opts: AgentOptions) -> Result<RunningAgent, ServerError> {
    if opts.cluster.trim().is_empty() {
        return Err(invalid("cluster", "must name the cluster"));
    }
    if opts.hubs.is_empty() {
        return Err(invalid("hub", "at least one hub URL is needed"));
    }
    let mut hubs = Vec::with_capacity(opts.hubs.len());
    for h in &opts.hubs {
        let h = normalise_hub_url(h).map_err(|e| invalid("hub", e))?;
        if hubs.contains(&h) {
            return Err(invalid("hub", format!("{h:?} is named twice")));
        }
        hubs.push(h);
    }
    let lock = crate::lock_data_dir(&opts.data_dir)?;
    let cfg = load_config(opts.config_file.as_deref())?;
    let web = match &opts.web_config_file {
        Some(f) => Some(meshlens_access::WebConfigSource::load(f)?),
        None => None,
    };
    let buffer_opts = BufferOptions {
        dir: opts.data_dir.join("buffer"),
        ..opts.buffer.clone()
    };
    let dests = hubs.clone();
    let buffer = tokio::task::spawn_blocking(move || Buffer::open(buffer_opts, &dests))
        .await
        .map_err(|e| ServerError::DataDir {
            dir: opts.data_dir.join("buffer"),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|e| match e {
            meshlens_forward::ForwardError::Io { path, source } => {
                ServerError::DataDir { dir: path, source }
            }
        })?;

    // Bound before the forwarder starts: the default agent id names the port.
    let (listener, addr) = crate::bind(opts.listen).await?;
    let grpc = match opts.otlp_grpc_listen {
        Some(a) => Some(crate::bind(a).await?),
        None => None,
    };
    let agent_id = opts
        .agent_id
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{}:{}", hostname(), addr.port()));
    let send = SendOptions {
        cluster: opts.cluster.clone(),
        agent_id: agent_id.clone(),
        ..opts.send.clone()
    };
    let forwarder = Forwarder::start(
        buffer.clone(),
        hubs.iter()
            .map(|url| HubOptions {
                url: url.clone(),
                tls: opts.hub_tls.clone(),
            })
            .collect(),
        send,
    );

    let stamp = writer::Stamp::new(&opts.cluster, cfg.global.external_labels.iter());
    let metrics_writer = Arc::new(writer::BufferMetricWriter::new(buffer.clone(), stamp));
    let self_metrics = SelfMetrics::new();
    let trace_counters = Arc::new(TraceCounters::default());
    let trace_state = |tag: &'static str| {
        let mut st = TraceApiState::new(
            Arc::new(writer::BufferSpanWriter::new(
                buffer.clone(),
                &opts.cluster,
                tag,
            )),
            Arc::new(writer::NoSpans),
        );
        st.max_body_bytes = opts.max_span_body_bytes;
        st.counters = trace_counters.clone();
        Arc::new(st)
    };
    let zipkin = trace_state(CLUSTER_LABEL);
    let otlp = trace_state(OTLP_CLUSTER_ATTRIBUTE);
    let access = Arc::new(meshlens_access::AccessMetrics::default());
    let state = Arc::new(http::AgentState {
        cluster: opts.cluster.clone(),
        agent_id: agent_id.clone(),
        metrics_writer: metrics_writer.clone(),
        max_write_body_bytes: opts.max_write_body_bytes,
        max_write_decompressed_bytes: opts.max_write_decompressed_bytes,
        self_metrics: self_metrics.clone(),
        trace_counters,
        access: access.clone(),
        requests: Default::default(),
        forwarder: parking_lot::Mutex::new(Some(forwarder)),
        ready: Default::default(),
        otlp_metrics: meshlens_ingest::otlp::metrics::Settings {
            promote_resource_attributes: opts.otlp_promote_resource_attributes.clone(),
            // An agent stores no zeros: it forwards start times as created timestamps
            // (remote write 2.0), and each hub's own flag decides.
            created_timestamp_zero_ingestion: false,
            forward_created_timestamps: true,
        },
    });

    let listener_opts = |name: &'static str| meshlens_access::ListenerOptions {
        name,
        max_connections: opts.max_connections,
        header_read_timeout: opts.header_read_timeout,
        idle_timeout: opts.idle_timeout,
    };
    let (http_stop, http_rx) = tokio::sync::watch::channel(false);
    let mut listeners = vec![tokio::spawn(meshlens_access::serve(
        listener,
        web.clone(),
        listener_opts("main"),
        access.clone(),
        http::router(state.clone(), zipkin, otlp.clone()),
        crate::stopped(http_rx.clone()),
    ))];
    let mut otlp_grpc_addr = None;
    if let Some((l, bound)) = grpc {
        otlp_grpc_addr = Some(bound);
        let agent = state.clone();
        let service = tower::service_fn(move |req: ::http::Request<hyper::body::Incoming>| {
            let (spans, agent) = (otlp.clone(), agent.clone());
            async move {
                Ok::<_, std::convert::Infallible>(
                    if req.uri().path() == crate::api::otlp_metrics::GRPC_EXPORT_PATH {
                        crate::api::otlp_metrics::grpc(agent, req).await
                    } else {
                        meshlens_trace_api::otlp_grpc_export(spans, req).await
                    },
                )
            }
        });
        listeners.push(tokio::spawn(meshlens_access::serve(
            l,
            web,
            listener_opts("otlp-grpc"),
            access,
            service,
            crate::stopped(http_rx),
        )));
    }

    // The agent takes no `--enable-feature` and stores no zeros: its writer asks the scrape
    // loops for created timestamps, which go with the samples to hubs (remote write 2.0).
    let scrape = ScrapeManager::start(&cfg, metrics_writer.clone(), self_metrics, false);
    state.ready.store(true, Ordering::Release);
    tracing::info!(%addr, cluster = %opts.cluster, agent = %agent_id, hubs = ?hubs, data_dir = %opts.data_dir.display(), "meshlens agent started");
    Ok(RunningAgent {
        addr,
        otlp_grpc_addr,
        agent_id,
        state,
        scrape: parking_lot::RwLock::new(scrape),
        config: parking_lot::Mutex::new(cfg),
        config_file: opts.config_file.clone(),
        metrics_writer,
        listeners,
        http_stop,
        drain_timeout: opts.drain_timeout,
        buffer,
        _lock: lock,
    })
}

impl RunningAgent {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn otlp_grpc_addr(&self) -> Option<SocketAddr> {
        self.otlp_grpc_addr
    }

    /// What the hubs see in `X-Meshlens-Agent`.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The agent's `/metrics` text, for callers that embed it (the demo, tests).
    pub fn render_metrics(&self) -> String {
        http::render_metrics(&self.state)
    }

    /// Re-reads the config file (SIGHUP) and restarts scraping if its scrape part changed;
    /// on error the running scrape jobs stay. External labels are fixed at start.
    pub async fn reload(&self) -> Result<(), ServerError> {
        let cfg = load_config(self.config_file.as_deref())?;
        let changed = {
            let old = self.config.lock();
            old.scrape_configs != cfg.scrape_configs || old.global != cfg.global
        };
        if changed {
            if self.config.lock().global.external_labels != cfg.global.external_labels {
                tracing::warn!("config: a change of external_labels takes effect at restart");
            }
            let new = ScrapeManager::start(
                &cfg,
                self.metrics_writer.clone(),
                self.state.self_metrics.clone(),
                false,
            );
            let old = std::mem::replace(&mut *self.scrape.write(), new);
            old.stop().await;
        }
        *self.config.lock() = cfg;
        tracing::info!("agent config reloaded");
        Ok(())
    }

    /// Orderly shutdown: scraping, then the listeners (in-flight requests finish), then the
    /// forwarder drains for up to `drain_timeout`; what it could not send stays buffered
    /// for the next start.
    pub async fn shutdown(mut self) {
        self.state.ready.store(false, Ordering::Release);
        let scrape = self.scrape.read().clone();
        scrape.stop().await;
        let _ = self.http_stop.send(true);
        for l in self.listeners.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(30), l).await;
        }
        let forwarder = self.state.forwarder.lock().take();
        if let Some(f) = forwarder {
            if f.drain(self.drain_timeout).await {
                tracing::info!("agent drained: every hub has everything buffered");
            } else {
                let stats = self.buffer.stats();
                tracing::warn!(
                    timeout = ?self.drain_timeout,
                    buffered_bytes = stats.total_bytes,
                    "agent stopped before every hub caught up; the rest stays buffered for the next start"
                );
            }
        }
        self.buffer.close();
        tracing::info!(agent = %self.agent_id, "meshlens agent stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls_are_checked_and_normalised() {
        assert_eq!(
            normalise_hub_url("http://hub:9090/").unwrap(),
            "http://hub:9090"
        );
        assert_eq!(
            normalise_hub_url("https://hub.example/prefix").unwrap(),
            "https://hub.example/prefix"
        );
        assert!(normalise_hub_url("hub:9090").is_err());
        assert!(normalise_hub_url("ftp://hub").is_err());
        assert!(normalise_hub_url("http://hub/?x=1").is_err());
        assert!(normalise_hub_url("not a url").is_err());
    }
}
