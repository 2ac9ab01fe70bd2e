//! meshlens-proxy: the data plane. An HTTP/1.1 and HTTP/2 (h2c, gRPC) proxy that routes by
//! Istio's rules as an outbound sidecar does, and reports Istio's standard telemetry; plus
//! TCP listeners routed by `tcp:` routes ([`tcp`]).
//!
//! The request path is a chain of small modules: [`accept`] → [`pipeline`] (reads the
//! request) → [`route`] → [`resilience`] (fault, timeout, retry, pool limits, outlier
//! detection) around [`balance`] and [`forward`] → [`telemetry`] (metrics and spans,
//! recorded when the response body ends). Request bodies stream through ([`upload`] keeps
//! only what a retry or mirror needs, up to a limit). The mesh config is compiled into an
//! immutable [`config::table::Table`] that is swapped whole on reload, so requests never lock
//! it for long and a rejected config never disturbs the one serving.
//!
//! Design decision: built directly on hyper's connection APIs (no framework, no pooled
//! client) — this is the hot path, and the proxy must choose the endpoint itself while keeping
//! the request's own authority. Every registry (metrics, cluster state) is a value owned by a
//! [`RunningProxy`], so several proxies run side by side in one process.

pub mod accept;
pub mod admin;
pub mod authz;
pub mod balance;
pub mod body;
pub mod config;
pub mod conn;
mod drain;
pub mod forward;
pub mod h1client;
pub mod h1server;
mod hop;
pub mod pipeline;
pub mod resilience;
mod reuse;
pub mod route;
pub mod sni;
pub mod spread;
pub mod tcp;
pub mod telemetry;
pub mod tls;
pub mod upload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshlens_mesh::ConfigError;
use tokio::net::TcpListener;
use tokio::sync::watch;

use config::reload::{ConfigState, ConfigStatus};
use telemetry::export::{ExportConfig, ExportFormat};
use telemetry::metrics::{DestLabels, Metrics, PeerLabels};
use telemetry::Telemetry;

pub use telemetry::metrics::Metrics as MetricsRegistry;

/// Which side of a request the proxy reports as (Istio's `reporter` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reporter {
    /// Outbound sidecar: spans are CLIENT spans; the proxy's workload is the `source_*`
    /// labels, and it names itself to the next hop in `x-meshlens-peer` (see
    /// [`telemetry::peer`]).
    #[default]
    Source,
    /// Inbound sidecar or gateway: spans are SERVER spans; the proxy's workload is the
    /// `destination_*` labels and the caller's (from `x-meshlens-peer`, which is removed
    /// before the request reaches the application) the `source_*` labels.
    Destination,
}

/// Where the proxy sends spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceExport {
    /// Zipkin v2 JSON; `/api/v2/spans` is added to a URL without a path.
    Zipkin(String),
    /// OTLP/HTTP JSON; `/v1/traces` is added to a URL without a path.
    Otlp(String),
}

/// How to run a proxy. [`ProxyOptions::new`] gives Istio's defaults.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Directory of Istio YAML, watched for changes.
    pub mesh_dir: PathBuf,
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/stats/prometheus`, `/config`); none when unset.
    pub admin: Option<SocketAddr>,
    /// Prometheus's web config file (TLS, basic auth, headers) for the admin listener.
    pub admin_web_config: Option<PathBuf>,
    pub trace_export: Option<TraceExport>,
    /// The workload this proxy stands beside (`source_workload`, span service name).
    pub workload: String,
    pub version: String,
    /// `app` label; the workload name when empty.
    pub app: String,
    pub namespace: String,
    /// Istio's cluster id label.
    pub cluster: String,
    pub reporter: Reporter,
    /// Percent of new traces sampled (Istio's default is 1).
    pub sampling_percent: f64,
    /// How often the config directory is checked for changes.
    pub reload_interval: Duration,
    /// Spans buffered for export before new ones are dropped.
    pub span_buffer: usize,
    pub span_batch: usize,
    pub span_export_timeout: Duration,
    /// The replay limit: how much of a request body is kept so that a retry or a mirror can
    /// send it again. Bodies stream whatever their size; one over the limit is not retried
    /// and not mirrored (see [`upload`]).
    pub max_request_body: usize,
    pub connect_timeout: Duration,
    /// Threads serving the proxy listener. 1 (default): the calling runtime serves it,
    /// whatever its flavour. N > 1: the calling runtime plus N - 1 threads, each running a
    /// current-thread runtime with its own upstream connection pool. The calling runtime
    /// accepts and gives each connection to the thread with the fewest open ones (see
    /// [`spread`]); a downstream connection, its requests and their upstream connections
    /// then stay on one thread, without cross-thread wake-ups. TCP listeners are bound by
    /// every thread with `SO_REUSEPORT`, the kernel spreading their connections.
    /// Meant for a current-thread calling runtime (as `meshlens proxy` uses).
    pub threads: usize,
    /// Serve as this Istio Gateway (`ns/name`): only VirtualServices bound to it by
    /// `gateways:`, for the hosts its servers expose. `None`: a sidecar (`mesh`).
    pub gateway: Option<String>,
    /// TCP listeners: (listen address, service port). Connections to each are routed by the
    /// `tcp:` routes for that service port (see [`tcp`]); served by the calling runtime.
    pub tcp_listeners: Vec<(SocketAddr, u16)>,
    /// The workload identity: a directory with Istio's `cert-chain.pem`, `key.pem` and
    /// `root-cert.pem`, re-read every `reload_interval`. With it the proxy speaks the mesh's
    /// mutual TLS (see [`tls`]); without it, plaintext only.
    pub cert_dir: Option<PathBuf>,
}

impl ProxyOptions {
    pub fn new(mesh_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        ProxyOptions {
            mesh_dir: mesh_dir.into(),
            listen,
            admin: None,
            admin_web_config: None,
            trace_export: None,
            workload: "unknown".into(),
            version: "unknown".into(),
            app: String::new(),
            namespace: "default".into(),
            cluster: "Kubernetes".into(),
            reporter: Reporter::Source,
            sampling_percent: 1.0,
            reload_interval: Duration::from_secs(1),
            span_buffer: 4096,
            span_batch: 256,
            span_export_timeout: Duration::from_secs(5),
            max_request_body: 16 << 20,
            connect_timeout: Duration::from_secs(10),
            threads: 1,
            gateway: None,
            tcp_listeners: Vec::new(),
            cert_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("mesh config in {dir} is invalid:\n{}", list(.errors))]
    Config {
        dir: PathBuf,
        errors: Vec<ConfigError>,
    },
    #[error("trace export: {0}")]
    TraceExport(String),
    #[error("invalid option: {0}")]
    Option(String),
    #[error("admin web config: {0}")]
    WebConfig(#[from] meshlens_access::WebConfigError),
    #[error("workload certificate: {0}")]
    Identity(#[from] meshlens_identity::IdentityError),
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Entry point.
pub struct Proxy;

impl Proxy {
    /// Loads the config, binds the listeners and starts serving. Must be called within a
    /// Tokio runtime.
    pub async fn start(opts: ProxyOptions) -> Result<RunningProxy, ProxyError> {
        if !(0.0..=100.0).contains(&opts.sampling_percent) {
            return Err(ProxyError::Option(format!(
                "sampling must be a percentage in [0, 100], got {}",
                opts.sampling_percent
            )));
        }
        let app = if opts.app.is_empty() {
            opts.workload.clone()
        } else {
            opts.app.clone()
        };
        let identity = match &opts.cert_dir {
            Some(dir) => Some(Arc::new(tls::ProxyIdentity::load(dir)?)),
            None => None,
        };
        let source = PeerLabels {
            workload: opts.workload.clone(),
            workload_namespace: opts.namespace.clone(),
            principal: identity
                .as_ref()
                .map_or_else(|| "unknown".into(), |i| i.principal.to_string()),
            app: app.clone(),
            version: opts.version.clone(),
            canonical_service: app.clone(),
            canonical_revision: opts.version.clone(),
            cluster: opts.cluster.clone(),
        };
        let reporter = match opts.reporter {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        };
        let (peer_header, inbound) = match opts.reporter {
            Reporter::Source => (Some(telemetry::peer::encode(&source)), None),
            Reporter::Destination => (None, Some(telemetry::peer::Inbound::new(source.clone()))),
        };
        let metrics = Arc::new(Metrics::new(reporter, source));
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), app.clone()),
            ("version".to_string(), opts.version.clone()),
        ]
        .into();
        let config = ConfigState::load(
            opts.mesh_dir.clone(),
            opts.namespace.clone(),
            labels,
            opts.gateway.clone(),
            metrics.clone(),
        )
        .map_err(|errors| ProxyError::Config {
            dir: opts.mesh_dir.clone(),
            errors,
        })?;
        let config = Arc::new(config);
        let threads = opts.threads.max(1);
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { addr, source })
        };
        let listener = bind(opts.listen).await?;
        let addr = listener.local_addr().map_err(|source| ProxyError::Bind {
            addr: opts.listen,
            source,
        })?;
        let mut tcp_listeners = Vec::new();
        for (listen, port) in &opts.tcp_listeners {
            // Each serving thread binds the same address too (see `spawn_serving_thread`).
            let l = if threads > 1 {
                bind_reuseport(*listen).map_err(|source| ProxyError::Bind {
                    addr: *listen,
                    source,
                })?
            } else {
                bind(*listen).await?
            };
            let a = l.local_addr().map_err(|source| ProxyError::Bind {
                addr: *listen,
                source,
            })?;
            tcp_listeners.push((l, a, *port));
        }
        let admin_listener = match opts.admin {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let admin_web = match &opts.admin_web_config {
            Some(f) => Some(meshlens_access::WebConfigSource::load(f)?),
            None => None,
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let spans = match &opts.trace_export {
            None => None,
            Some(t) => {
                let (url, format) = match t {
                    TraceExport::Zipkin(u) => (u, ExportFormat::ZipkinV2),
                    TraceExport::Otlp(u) => (u, ExportFormat::OtlpJson),
                };
                let mut cfg = ExportConfig::new(url, format).map_err(ProxyError::TraceExport)?;
                cfg.buffer = opts.span_buffer;
                cfg.batch = opts.span_batch.max(1);
                cfg.timeout = opts.span_export_timeout;
                let (sink, task) =
                    telemetry::export::start(cfg, metrics.clone(), shutdown_rx.clone());
                tasks.push(task);
                Some(sink)
            }
        };
        let telemetry = Arc::new(Telemetry {
            metrics: metrics.clone(),
            spans,
            service_name: Arc::from(opts.workload.as_str()),
            node_id: format!(
                "sidecar~{}~{}.{}~{}.svc.cluster.local",
                addr.ip(),
                opts.workload,
                opts.namespace,
                opts.namespace
            ),
            span_kind: match opts.reporter {
                Reporter::Source => "CLIENT",
                Reporter::Destination => "SERVER",
            },
            sampling_percent: opts.sampling_percent,
            peer_header,
            inbound,
        });
        let shared = Arc::new(pipeline::Shared {
            config: config.clone(),
            upstreams: forward::Upstreams::with_metrics(
                opts.connect_timeout,
                threads,
                metrics.clone(),
            ),
            telemetry,
            max_request_body: opts.max_request_body,
            unknown_dest: Arc::new(DestLabels::unknown()),
            // Policies guard what a proxy serves: an inbound sidecar or a gateway.
            enforce_authz: opts.reporter == Reporter::Destination || opts.gateway.is_some(),
            tls: Arc::new(tls::Context {
                identity: identity.clone(),
                inbound: opts.reporter == Reporter::Destination,
                ..Default::default()
            }),
        });
        // PeerAuthentication applies to the inbound side only: an outbound sidecar's
        // listener takes its own application's plaintext.
        let inbound_tls = (opts.reporter == Reporter::Destination).then(|| {
            Arc::new(tls::inbound::Inbound {
                identity: identity.clone(),
                config: config.clone(),
                metrics: metrics.clone(),
            })
        });
        if let Some(id) = &identity {
            tasks.push(id.source.watch(opts.reload_interval, shutdown_rx.clone()));
            tracing::info!(id = %id.id, "workload identity loaded");
        }
        forward::set_local_pool(0);
        let tcp_ports: Vec<(SocketAddr, u16)> =
            tcp_listeners.iter().map(|(_, a, p)| (*a, *p)).collect();
        let (spread, inboxes) = spread::Spread::new(threads);
        let _ = metrics.counters.downstream_open.set(spread.counts());
        for (i, inbox) in (1..threads).zip(inboxes) {
            tasks.push(spawn_serving_thread(
                i,
                inbox,
                addr,
                &tcp_ports,
                opts.connect_timeout,
                shared.clone(),
                shutdown_rx.clone(),
                inbound_tls.clone(),
            )?);
        }
        let mut tcp_addrs = Vec::new();
        for (l, a, port) in tcp_listeners {
            tcp_addrs.push(a);
            tasks.push(tcp::serve(
                l,
                port,
                shared.clone(),
                inbound_tls.clone(),
                opts.connect_timeout,
                shutdown_rx.clone(),
            ));
        }
        let px = shared.clone();
        tasks.push(accept::serve(
            listener,
            shutdown_rx.clone(),
            Some(metrics.clone()),
            inbound_tls,
            spread,
            move |req, conn| pipeline::handle(px.clone(), req, conn),
        ));
        let mut admin_addr = None;
        if let Some(l) = admin_listener {
            admin_addr = l.local_addr().ok();
            let admin = Arc::new(admin::Admin {
                metrics: metrics.clone(),
                config: config.clone(),
            });
            let service = tower::service_fn(move |req| {
                let r = admin.handle(&req);
                async move { Ok::<_, std::convert::Infallible>(r) }
            });
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(meshlens_access::serve(
                l,
                admin_web,
                meshlens_access::ListenerOptions {
                    name: "proxy-admin",
                    ..Default::default()
                },
                Arc::new(meshlens_access::AccessMetrics::default()),
                service,
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )));
        }
        tasks.push(config::reload::spawn_watcher(
            config.clone(),
            opts.reload_interval,
            shutdown_rx,
        ));
        tracing::info!(%addr, admin = ?admin_addr, dir = %opts.mesh_dir.display(), "proxy listening");
        Ok(RunningProxy {
            addr,
            tcp_addrs,
            admin_addr,
            metrics,
            config,
            shutdown_tx,
            tasks,
        })
    }
}

/// A listener sharing its address with the other serving threads' (`SO_REUSEPORT`: the
/// kernel spreads new connections over them).
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serving thread `index` (see [`ProxyOptions::threads`]): a current-thread runtime serving the
/// HTTP connections handed to it through `inbox` and accepting on its own listener of each
/// TCP listener's address (`tcp`: address and service port, bound with `SO_REUSEPORT`).
/// Returns once those are bound; the handle (of a task on the calling runtime) ends when
/// the thread's serving loop has.
#[allow(clippy::too_many_arguments)]
fn spawn_serving_thread(
    index: usize,
    inbox: spread::Inbox,
    addr: SocketAddr,
    tcp: &[(SocketAddr, u16)],
    connect_timeout: Duration,
    shared: Arc<pipeline::Shared>,
    shutdown: watch::Receiver<bool>,
    inbound_tls: Option<Arc<tls::inbound::Inbound>>,
) -> Result<tokio::task::JoinHandle<()>, ProxyError> {
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let tcp = tcp.to_vec();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ProxyError::Bind { addr, source })?;
    std::thread::Builder::new()
        .name(format!("meshlens-proxy-{index}"))
        .spawn(move || {
            forward::set_local_pool(index);
            rt.block_on(async move {
                let bound = tcp
                    .iter()
                    .map(|(a, port)| Ok((bind_reuseport(*a)?, *port)))
                    .collect::<std::io::Result<Vec<_>>>();
                let tcp = match bound {
                    Ok(l) => {
                        let _ = bound_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                for (l, port) in tcp {
                    tcp::serve(
                        l,
                        port,
                        shared.clone(),
                        inbound_tls.clone(),
                        connect_timeout,
                        shutdown.clone(),
                    );
                }
                let task = accept::serve_handed(inbox, shutdown, inbound_tls, move |req, conn| {
                    pipeline::handle(shared.clone(), req, conn)
                });
                let _ = task.await;
            });
            let _ = done_tx.send(());
        })
        .map_err(|source| ProxyError::Bind { addr, source })?;
    match bound_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(source)) => return Err(ProxyError::Bind { addr, source }),
        Err(_) => {
            return Err(ProxyError::Bind {
                addr,
                source: std::io::Error::other("serving thread ended"),
            })
        }
    }
    Ok(tokio::spawn(async move {
        let _ = done_rx.await;
    }))
}

/// A started proxy. Dropping it without [`RunningProxy::shutdown`] leaves it serving until the
/// runtime ends.
pub struct RunningProxy {
    addr: SocketAddr,
    tcp_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    config: Arc<ConfigState>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningProxy {
    /// The proxy listener's address (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TCP listeners' addresses, in the order of [`ProxyOptions::tcp_listeners`].
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The proxy's metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The config status (as served at the admin `/config`).
    pub fn config_status(&self) -> ConfigStatus {
        self.config.status.read().clone()
    }

    /// Checks the config directory now instead of waiting for the next poll; returns whether
    /// the config was accepted.
    pub fn reload_now(&self) -> bool {
        self.config.reload()
    }

    /// Stops accepting, closes connections gracefully and flushes buffered spans.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}
