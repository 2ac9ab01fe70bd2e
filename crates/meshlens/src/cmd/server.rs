//! `meshlens server`: the long-running hub.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use meshlens_server::config::parse_duration;
use meshlens_server::ServerOptions;
use meshlens_tsdb::FsyncPolicy;

#[derive(clap::Args)]
pub struct Args {
    /// Where metrics (and later traces) are stored.
    #[arg(long, default_value = "meshlens-data")]
    pub data_dir: PathBuf,
    /// Address of the HTTP listener (Prometheus-compatible APIs, remote write, UI).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// A Prometheus configuration file (`global` and `scrape_configs` are used).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// How long to keep samples.
    #[arg(long = "retention.time", default_value = "15d")]
    pub retention_time: String,
    /// Largest total size of stored blocks, in bytes (0: no limit).
    #[arg(long = "retention.size", default_value_t = 0)]
    pub retention_size: u64,
    /// Samples up to this much older than a series' newest sample are still accepted.
    #[arg(long = "out-of-order-window", default_value = "10m")]
    pub out_of_order_window: String,
    /// WAL fsync policy: `always` (every acknowledged write is synced) or a duration such as
    /// `1s` (sync at most that long after a write).
    #[arg(long = "wal-fsync", default_value = "always")]
    pub wal_fsync: String,
    /// Longest a query may run.
    #[arg(long = "query.timeout", default_value = "2m")]
    pub query_timeout: String,
    /// Most samples a single query may hold in memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    pub query_max_samples: usize,
    /// How far back an instant selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m")]
    pub query_lookback_delta: String,
    /// OTLP/gRPC listener for spans (`off` to disable).
    #[arg(long = "otlp-grpc-listen", default_value = "127.0.0.1:4317")]
    pub otlp_grpc_listen: String,
    /// A separate OTLP/HTTP listener, e.g. 127.0.0.1:4318 (`off` by default; the main
    /// listener serves `POST /v1/traces` regardless).
    #[arg(long = "otlp-http-listen", default_value = "off")]
    pub otlp_http_listen: String,
    /// How long to keep spans.
    #[arg(long = "spans.retention.time", default_value = "7d")]
    pub spans_retention_time: String,
    /// Largest total size of stored spans, in bytes (0: no limit).
    #[arg(long = "spans.retention.size", default_value_t = 0)]
    pub spans_retention_size: u64,
    /// Istio / Kubernetes YAML (file or directory; repeatable) that `/api/v1/validations`
    /// checks.
    #[arg(long = "mesh")]
    pub mesh: Vec<PathBuf>,
}

fn optional_addr(flag: &str, v: &str) -> anyhow::Result<Option<SocketAddr>> {
    if v.is_empty() || v == "off" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .with_context(|| format!("--{flag}: {v:?} is not HOST:PORT or off"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

pub fn options(args: &Args) -> anyhow::Result<ServerOptions> {
    let mut opts = ServerOptions {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        config_file: args.config.clone(),
        ..Default::default()
    };
    let retention = parse_duration(&args.retention_time)
        .map_err(anyhow::Error::msg)
        .context("--retention.time")?;
    opts.tsdb.retention_time_ms = (!retention.is_zero()).then_some(retention.as_millis() as i64);
    opts.tsdb.retention_size_bytes = (args.retention_size > 0).then_some(args.retention_size);
    opts.tsdb.out_of_order_window_ms = parse_duration(&args.out_of_order_window)
        .map_err(anyhow::Error::msg)
        .context("--out-of-order-window")?
        .as_millis() as i64;
    opts.tsdb.wal_fsync = match args.wal_fsync.as_str() {
        "always" => FsyncPolicy::EveryAppend,
        d => FsyncPolicy::Interval(
            parse_duration(d)
                .map_err(anyhow::Error::msg)
                .context("--wal-fsync")?,
        ),
    };
    opts.query.timeout = parse_duration(&args.query_timeout)
        .map_err(anyhow::Error::msg)
        .context("--query.timeout")?;
    opts.query.max_samples = args.query_max_samples;
    opts.query.lookback_delta_ms = parse_duration(&args.query_lookback_delta)
        .map_err(anyhow::Error::msg)
        .context("--query.lookback-delta")?
        .as_millis() as i64;
    opts.mesh_config = args.mesh.clone();
    opts.otlp_grpc_listen = optional_addr("otlp-grpc-listen", &args.otlp_grpc_listen)?;
    opts.otlp_http_listen = optional_addr("otlp-http-listen", &args.otlp_http_listen)?;
    opts.spans.retention_ms = parse_duration(&args.spans_retention_time)
        .map_err(anyhow::Error::msg)
        .context("--spans.retention.time")?
        .as_millis() as i64;
    opts.spans.retention_bytes =
        (args.spans_retention_size > 0).then_some(args.spans_retention_size);
    opts.flags = [
        ("listen", args.listen.to_string()),
        ("data-dir", args.data_dir.display().to_string()),
        (
            "config",
            args.config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("retention.time", args.retention_time.clone()),
        ("retention.size", args.retention_size.to_string()),
        ("out-of-order-window", args.out_of_order_window.clone()),
        ("wal-fsync", args.wal_fsync.clone()),
        ("query.timeout", args.query_timeout.clone()),
        ("query.max-samples", args.query_max_samples.to_string()),
        ("query.lookback-delta", args.query_lookback_delta.clone()),
        ("otlp-grpc-listen", args.otlp_grpc_listen.clone()),
        ("otlp-http-listen", args.otlp_http_listen.clone()),
        ("spans.retention.time", args.spans_retention_time.clone()),
        (
            "spans.retention.size",
            args.spans_retention_size.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(opts)
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let opts = options(&args)?;
    let server = meshlens_server::start(opts)
        .await
        .with_context(|| format!("starting the server on {}", args.listen))?;
    if let Some(a) = server.otlp_grpc_addr() {
        println!("meshlens OTLP/gRPC listening on {a}");
    }
    if let Some(a) = server.otlp_http_addr() {
        println!("meshlens OTLP/HTTP listening on http://{a}");
    }
    println!("meshlens server listening on http://{}", server.addr());
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
