//! `meshlens agent`: one per cluster; collects, stamps the cluster, buffers durably and
//! forwards to one or more hubs (`meshlens server`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use meshlens_ingest::remote_write::ProtobufMessage;
use meshlens_server::agent::{normalise_hub_url, AgentOptions, BufferOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The cluster's name, stamped as `cluster` on series and Zipkin spans and as
    /// `k8s.cluster.name` on OTLP spans that do not name one.
    #[arg(long, value_parser = parse_cluster)]
    pub cluster: String,
    /// A hub's base URL (`http://hub:9090`); repeat for an HA pair: each hub gets everything.
    #[arg(long = "hub", required = true, value_parser = parse_hub)]
    pub hubs: Vec<String>,
    /// Address of the HTTP listener (remote write, OTLP/HTTP metrics and traces, Zipkin,
    /// /metrics).
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub listen: SocketAddr,
    /// Where the forwarding buffer lives (locked while the agent runs).
    #[arg(long, default_value = "meshlens-agent-data")]
    pub data_dir: PathBuf,
    /// A Prometheus configuration file (`global` and `scrape_configs` are used).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// OTLP/gRPC listener for spans and metrics, e.g. 0.0.0.0:4317 (`off` by default, so
    /// an agent and a hub on one machine do not both claim 4317).
    #[arg(long = "otlp-grpc-listen", default_value = "off", value_parser = parse_optional_addr)]
    pub otlp_grpc_listen: OptionalAddr,
    /// Resource attributes of OTLP metrics made labels of every series of that resource
    /// (Prometheus's `otlp.promote_resource_attributes`); the rest go to `target_info`.
    #[arg(long = "otlp.promote-resource-attributes", value_delimiter = ',')]
    pub otlp_promote_resource_attributes: Vec<String>,
    /// Largest size of the buffer on disk (bytes, or with KiB/MiB/GiB/TiB; KB/MB/GB/TB are
    /// the same powers of 1024, as in Prometheus); 0: no limit.
    #[arg(long = "buffer.max-size", default_value = "1GiB", value_parser = parse_size)]
    pub buffer_max_size: u64,
    /// Buffered data older than this is dropped (counted) for hubs that have not taken it;
    /// 0s: no limit.
    #[arg(long = "buffer.max-age", default_value = "2h", value_parser = parse_duration)]
    pub buffer_max_age: Duration,
    /// When the buffer is full, drop its oldest data (counted) instead of answering new
    /// writes with 503.
    #[arg(long = "buffer.drop-oldest")]
    pub buffer_drop_oldest: bool,
    /// On SIGTERM, how long to keep sending what is buffered before exiting (the rest is
    /// sent after the next start).
    #[arg(long = "drain-timeout", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// The id the hubs know this agent by; default `<hostname>:<listen port>`.
    #[arg(long = "agent-id")]
    pub agent_id: Option<String>,
    /// Prometheus's web config file (TLS, client certificates, basic auth, headers) for
    /// every listener.
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,
    /// Most open connections per listener.
    #[arg(long = "web.max-connections", default_value_t = 512)]
    pub max_connections: usize,
    /// The remote-write message metrics go to the hubs as (Prometheus's
    /// `protobuf_message`): `prometheus.WriteRequest` (1.0) or
    /// `io.prometheus.write.v2.Request` (2.0: interned strings, metadata with every series;
    /// a hub that shows it reads only 1.0 is sent 1.0 from then on).
    #[arg(
        long = "hub.protobuf-message",
        default_value = "prometheus.WriteRequest",
        value_parser = parse_protobuf_message
    )]
    pub protobuf_message: ProtobufMessage,
    #[command(flatten)]
    pub hub_tls: HubTlsArgs,
    #[command(flatten)]
    pub hub_auth: HubAuthArgs,
}

fn parse_protobuf_message(v: &str) -> Result<ProtobufMessage, String> {
    ProtobufMessage::parse(v)
}

/// Who the agent is to hubs behind `--web.config.file` or `--multitenancy`.
#[derive(clap::Args, Debug, Default)]
pub struct HubAuthArgs {
    /// Basic-auth user for the hubs (with --hub.basic-auth.password-file).
    #[arg(long = "hub.basic-auth.username")]
    pub username: Option<String>,
    /// A file holding the basic-auth password (read once at start; trailing newline ignored).
    #[arg(long = "hub.basic-auth.password-file")]
    pub password_file: Option<PathBuf>,
    /// A file holding a bearer token for the hubs.
    #[arg(long = "hub.bearer-token-file")]
    pub bearer_token_file: Option<PathBuf>,
    /// The tenant to write into on multi-tenant hubs (sent as `X-Scope-OrgID`).
    #[arg(long = "hub.tenant")]
    pub tenant: Option<String>,
}

impl HubAuthArgs {
    /// The headers every forwarded request carries.
    fn headers(&self) -> anyhow::Result<Vec<(String, String)>> {
        use base64::Engine;
        let read = |flag: &str, f: &PathBuf| -> anyhow::Result<String> {
            let s =
                std::fs::read_to_string(f).with_context(|| format!("{flag} {}", f.display()))?;
            Ok(s.trim_end_matches(['\r', '\n']).to_string())
        };
        let mut h = Vec::new();
        match (&self.username, &self.password_file, &self.bearer_token_file) {
            (Some(_), _, Some(_)) => {
                anyhow::bail!(
                    "--hub.basic-auth.username and --hub.bearer-token-file exclude each other"
                )
            }
            (Some(user), password, None) => {
                let password = match password {
                    Some(f) => read("--hub.basic-auth.password-file", f)?,
                    None => String::new(),
                };
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                h.push(("Authorization".to_string(), format!("Basic {token}")));
            }
            (None, Some(_), _) => {
                anyhow::bail!("--hub.basic-auth.password-file needs --hub.basic-auth.username")
            }
            (None, None, Some(f)) => {
                let token = read("--hub.bearer-token-file", f)?;
                h.push(("Authorization".to_string(), format!("Bearer {token}")));
            }
            (None, None, None) => {}
        }
        if let Some(t) = &self.tenant {
            h.push(("X-Scope-OrgID".to_string(), t.clone()));
        }
        Ok(h)
    }
}

/// TLS towards `https://` hubs (Prometheus's `tls_config` fields); without any, the
/// system's roots are trusted.
#[derive(clap::Args, Debug, Default)]
pub struct HubTlsArgs {
    /// Trust only this CA for the hubs' certificates.
    #[arg(long = "hub.tls.ca-file")]
    pub ca_file: Option<PathBuf>,
    /// A client certificate for hubs that ask for one (with --hub.tls.key-file).
    #[arg(long = "hub.tls.cert-file")]
    pub cert_file: Option<PathBuf>,
    #[arg(long = "hub.tls.key-file")]
    pub key_file: Option<PathBuf>,
    /// The name to verify in the hubs' certificates instead of the URL's host.
    #[arg(long = "hub.tls.server-name")]
    pub server_name: Option<String>,
    /// Do not verify the hubs' certificates (testing only).
    #[arg(long = "hub.tls.insecure-skip-verify")]
    pub insecure_skip_verify: bool,
}

impl HubTlsArgs {
    /// None when no flag is given: the forwarder then uses the system's roots.
    fn client_config(&self) -> anyhow::Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
        if self.ca_file.is_none()
            && self.cert_file.is_none()
            && self.key_file.is_none()
            && self.server_name.is_none()
            && !self.insecure_skip_verify
        {
            return Ok(None);
        }
        let tls = meshlens_access::ClientTls {
            ca_file: self.ca_file.as_deref(),
            cert_file: self.cert_file.as_deref(),
            key_file: self.key_file.as_deref(),
            server_name: self.server_name.as_deref(),
            insecure_skip_verify: self.insecure_skip_verify,
            tls13_only: false,
        };
        tls.server_name().context("--hub.tls.server-name")?;
        let cfg = tls.client_config().context("--hub.tls")?;
        Ok(Some(std::sync::Arc::new(cfg)))
    }
}

/// `--otlp-grpc-listen`'s value: an address or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_optional_addr(v: &str) -> Result<OptionalAddr, String> {
    if v.is_empty() || v == "off" {
        return Ok(OptionalAddr(None));
    }
    v.parse()
        .map(|a| OptionalAddr(Some(a)))
        .map_err(|_| format!("{v:?} is not HOST:PORT or off"))
}

fn parse_cluster(v: &str) -> Result<String, String> {
    if v.trim().is_empty() {
        return Err("the cluster name must not be empty".into());
    }
    Ok(v.to_string())
}

fn parse_hub(v: &str) -> Result<String, String> {
    normalise_hub_url(v)
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    meshlens_model::parse_duration(v).map_err(|e| e.to_string())
}

/// Bytes, with an optional binary unit (`512MiB`, `1GiB`, `1.5GB`).
pub fn parse_size(v: &str) -> Result<u64, String> {
    let s = v.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{v:?}: unknown unit {other:?} (use B, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    if num.is_empty() {
        return Err(format!("{v:?} is not a size such as 512MiB"));
    }
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{v:?} is not a size such as 512MiB"))?;
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{v:?} is too large"));
    }
    Ok(bytes as u64)
}

pub fn options(args: &Args) -> anyhow::Result<AgentOptions> {
    Ok(AgentOptions {
        cluster: args.cluster.clone(),
        agent_id: args.agent_id.clone(),
        hubs: args.hubs.clone(),
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        config_file: args.config.clone(),
        otlp_grpc_listen: args.otlp_grpc_listen.0,
        otlp_promote_resource_attributes: args.otlp_promote_resource_attributes.clone(),
        buffer: BufferOptions {
            max_size_bytes: args.buffer_max_size,
            max_age: args.buffer_max_age,
            drop_oldest: args.buffer_drop_oldest,
            ..Default::default()
        },
        drain_timeout: args.drain_timeout,
        web_config_file: args.web_config_file.clone(),
        max_connections: args.max_connections.max(1),
        hub_tls: args.hub_tls.client_config()?,
        send: meshlens_server::agent::SendOptions {
            headers: args.hub_auth.headers()?,
            protobuf_message: args.protobuf_message,
            ..Default::default()
        },
        ..Default::default()
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::footprint::limit_allocator_retention();
    // An agent is a light collector: a few workers suffice however large the node is.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    crate::footprint::spawn_trimmer(Duration::from_secs(5));
    let agent = meshlens_server::agent::start(options(&args)?)
        .await
        .with_context(|| format!("starting the agent on {}", args.listen))?;
    if let Some(a) = agent.otlp_grpc_addr() {
        println!("meshlens agent OTLP/gRPC listening on {a}");
    }
    println!("meshlens agent listening on http://{}", agent.addr());
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let stop = super::server::wait_for_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hup.recv() => {
                if let Err(e) = agent.reload().await {
                    tracing::error!(error = %e, "config reload failed; the running config stays");
                }
            }
        }
    }
    tracing::info!("shutting down: draining to the hubs");
    agent.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("1e400").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn flags_parse_into_options() {
        let cli = Cli::try_parse_from([
            "agent",
            "--cluster",
            "east",
            "--hub",
            "http://a:9090/",
            "--hub",
            "http://b:9090",
            "--buffer.max-size",
            "512MiB",
            "--buffer.max-age",
            "30m",
            "--buffer.drop-oldest",
            "--drain-timeout",
            "5s",
            "--otlp-grpc-listen",
            "127.0.0.1:4317",
        ])
        .unwrap();
        let o = options(&cli.args).unwrap();
        assert!(o.hub_tls.is_none());
        assert_eq!(o.cluster, "east");
        assert_eq!(o.hubs, ["http://a:9090", "http://b:9090"]);
        assert_eq!(o.buffer.max_size_bytes, 512 << 20);
        assert_eq!(o.buffer.max_age, Duration::from_secs(1800));
        assert!(o.buffer.drop_oldest);
        assert_eq!(o.drain_timeout, Duration::from_secs(5));
        assert_eq!(o.otlp_grpc_listen, Some("127.0.0.1:4317".parse().unwrap()));
        assert_eq!(o.send.protobuf_message, ProtobufMessage::V1);
    }

    #[test]
    fn protobuf_message_flag_picks_remote_write_2() {
        let base = ["agent", "--cluster", "e", "--hub", "http://hub:9090"];
        let cli = Cli::try_parse_from(
            base.iter()
                .copied()
                .chain(["--hub.protobuf-message", "io.prometheus.write.v2.Request"]),
        )
        .unwrap();
        let o = options(&cli.args).unwrap();
        assert_eq!(o.send.protobuf_message, ProtobufMessage::V2);
        let Err(err) =
            Cli::try_parse_from(base.iter().copied().chain(["--hub.protobuf-message", "v2"]))
        else {
            panic!("an unknown message is refused");
        };
        let err = err.to_string();
        assert!(err.contains("io.prometheus.write.v2.Request"), "{err}");
    }

    #[test]
    fn hub_auth_flags_become_headers() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let pw = pw.to_str().unwrap();
        let base = ["agent", "--cluster", "e", "--hub", "http://hub:9090"];
        let flags = [
            "--hub.basic-auth.username",
            "agent",
            "--hub.basic-auth.password-file",
            pw,
            "--hub.tenant",
            "team-a",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(&flags)).unwrap();
        let headers = options(&cli.args).unwrap().send.headers;
        assert_eq!(
            headers,
            vec![
                (
                    "Authorization".to_string(),
                    "Basic YWdlbnQ6czNjcmV0".to_string()
                ),
                ("X-Scope-OrgID".to_string(), "team-a".to_string()),
            ]
        );
        let both = [
            "--hub.basic-auth.username",
            "a",
            "--hub.bearer-token-file",
            pw,
        ];
        let cli = Cli::try_parse_from(base.iter().chain(&both)).unwrap();
        assert!(format!("{:#}", options(&cli.args).unwrap_err()).contains("exclude each other"));
    }

    #[test]
    fn hub_tls_flags_build_a_client_config() {
        let base = ["agent", "--cluster", "e", "--hub", "https://hub:9090"];
        let cli =
            Cli::try_parse_from(base.iter().chain(&["--hub.tls.insecure-skip-verify"])).unwrap();
        assert!(options(&cli.args).unwrap().hub_tls.is_some());
        let missing = ["--hub.tls.ca-file", "/nonexistent/ca.pem"];
        let cli = Cli::try_parse_from(base.iter().chain(&missing)).unwrap();
        let err = options(&cli.args).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
    }

    #[test]
    fn bad_flags_are_clap_errors() {
        let bad: [&[&str]; 6] = [
            &["agent", "--hub", "http://a:9090"],
            &["agent", "--cluster", "east"],
            &["agent", "--cluster", "", "--hub", "http://a"],
            &["agent", "--cluster", "e", "--hub", "a:9090"],
            &[
                "agent",
                "--cluster",
                "e",
                "--hub",
                "http://a",
                "--buffer.max-size",
                "lots",
            ],
            &[
                "agent",
                "--cluster",
                "e",
                "--hub",
                "http://a",
                "--drain-timeout",
                "5",
            ],
        ];
        for argv in bad {
            let err = Cli::try_parse_from(argv).err();
            let err = err.unwrap_or_else(|| panic!("{argv:?} was accepted"));
            assert_eq!(err.exit_code(), 2, "{argv:?}: {err}");
        }
    }
}
