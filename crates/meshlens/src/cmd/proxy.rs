//! `meshlens proxy`: the sidecar / ingress data plane with Istio routing rules.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use meshlens_proxy::{Proxy, ProxyOptions, Reporter, TraceExport};

#[derive(clap::Args)]
pub struct Args {
    /// Directory of Istio YAML (VirtualService, DestinationRule, ServiceEntry, …); changes
    /// apply without a restart.
    #[arg(long)]
    pub mesh: PathBuf,
    /// Address the proxy listens on (HTTP/1.1 and h2c).
    #[arg(long, default_value = "127.0.0.1:15001")]
    pub listen: SocketAddr,
    /// Admin listener: /metrics, /stats/prometheus, /config, /ready.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Prometheus's web config file (TLS, client certificates, basic auth, headers) for the
    /// admin listener; re-read when it changes.
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,
    /// Send spans as Zipkin v2 JSON to this URL (`/api/v2/spans` is added when it has no path).
    #[arg(long, conflicts_with = "otlp")]
    pub zipkin: Option<String>,
    /// Send spans as OTLP/HTTP JSON to this URL (`/v1/traces` is added when it has no path).
    #[arg(long)]
    pub otlp: Option<String>,
    /// The workload this proxy stands for (source_workload, span service name).
    #[arg(long, default_value = "unknown")]
    pub workload: String,
    /// The workload's version (source_version).
    #[arg(long, default_value = "unknown")]
    pub version: String,
    /// The workload's app label (default: the workload name).
    #[arg(long, default_value = "")]
    pub app: String,
    /// Namespace of the workload; short host names are completed in it.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Percent of new traces to sample (Istio's default is 1).
    #[arg(long, default_value_t = 1.0)]
    pub sampling: f64,
    /// Report as the `source` (outbound sidecar) or `destination` (inbound) side.
    #[arg(long, default_value = "source", value_parser = ["source", "destination"])]
    pub reporter: String,
    /// Serving threads, each a single-threaded runtime with its own listener (SO_REUSEPORT)
    /// and upstream connections; 0: one per CPU.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Serve as an ingress for this Istio Gateway (`NAME`, in --namespace, or `NS/NAME`):
    /// only VirtualServices that name it in `gateways:`, for the hosts its servers list.
    #[arg(long)]
    pub gateway: Option<String>,
    /// A TCP listener, `LISTEN=PORT`: connections to LISTEN are routed by the `tcp:` routes
    /// for service port PORT (repeatable), e.g. `--tcp 127.0.0.1:27017=27017`.
    #[arg(long = "tcp", value_parser = parse_tcp_listener)]
    pub tcp: Vec<(SocketAddr, u16)>,
    /// The workload certificate: a directory with cert-chain.pem, key.pem and root-cert.pem
    /// (as `meshlens ca issue` writes them), re-read when they change. Enables mutual TLS:
    /// PeerAuthentication inbound, ISTIO_MUTUAL and auto mTLS outbound.
    #[arg(long = "cert-dir")]
    pub cert_dir: Option<PathBuf>,
}

/// `LISTEN=PORT` of `--tcp`.
fn parse_tcp_listener(s: &str) -> Result<(SocketAddr, u16), String> {
    let (listen, port) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected LISTEN=PORT, e.g. 127.0.0.1:27017=27017"))?;
    let listen = listen
        .parse()
        .map_err(|_| format!("{listen:?} is not an address (IP:PORT)"))?;
    let port = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    Ok((listen, port))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // A current-thread runtime per serving thread (see `ProxyOptions::threads`): no work
    // stealing, so a request never wakes another thread. Few blocking threads (config
    // reloads), kept briefly, for a small idle footprint.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .build()?;
    rt.block_on(serve(args))
}

pub fn options(args: &Args) -> ProxyOptions {
    let mut o = ProxyOptions::new(args.mesh.clone(), args.listen);
    o.admin = args.admin;
    o.admin_web_config = args.web_config_file.clone();
    o.trace_export = match (&args.zipkin, &args.otlp) {
        (Some(z), _) => Some(TraceExport::Zipkin(z.clone())),
        (None, Some(u)) => Some(TraceExport::Otlp(u.clone())),
        (None, None) => None,
    };
    o.workload = args.workload.clone();
    o.version = args.version.clone();
    o.app = args.app.clone();
    o.namespace = args.namespace.clone();
    o.sampling_percent = args.sampling;
    o.gateway = args.gateway.as_ref().map(|g| match g.contains('/') {
        true => g.clone(),
        false => format!("{}/{g}", args.namespace),
    });
    o.tcp_listeners = args.tcp.clone();
    o.cert_dir = args.cert_dir.clone();
    o.threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    o.reporter = if args.reporter == "destination" {
        Reporter::Destination
    } else {
        Reporter::Source
    };
    o
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let proxy = Proxy::start(options(&args))
        .await
        .with_context(|| format!("starting the proxy with --mesh {}", args.mesh.display()))?;
    eprintln!(
        "meshlens proxy listening on {}{}{}",
        proxy.addr(),
        proxy
            .tcp_addrs()
            .iter()
            .map(|a| format!(", tcp on {a}"))
            .collect::<String>(),
        proxy
            .admin_addr()
            .map(|a| format!(", admin on {a}"))
            .unwrap_or_default()
    );
    tokio::signal::ctrl_c().await?;
    proxy.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_tcp_listener;

    #[test]
    fn tcp_listener_flag() {
        assert_eq!(
            parse_tcp_listener("127.0.0.1:7000=27017"),
            Ok(("127.0.0.1:7000".parse().unwrap(), 27017))
        );
        assert!(parse_tcp_listener("127.0.0.1:7000").is_err());
        assert!(parse_tcp_listener("nohost=1").is_err());
        assert!(parse_tcp_listener("127.0.0.1:7000=99999").is_err());
    }
}
