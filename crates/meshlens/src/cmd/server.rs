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
    /// Where metrics and spans are stored: `embedded` (the TSDB and span store in
    /// --data-dir), or `clickhouse://HOST:PORT/DATABASE[?cluster=CLUSTER]` (ClickHouse's HTTP
    /// port; with a cluster from its remote_servers, sharded).
    #[arg(long, default_value = "embedded")]
    pub storage: String,
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
    /// Exemplars kept in memory (a ring shared by every series, logged to the WAL; per tenant
    /// with `--multitenancy`): the oldest make room for new ones. 0 keeps none.
    #[arg(long = "storage.exemplars.max-exemplars", default_value_t = 100_000)]
    pub max_exemplars: usize,
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
    /// PromQL queries evaluated at once (the API, the graph); more wait in a queue, within
    /// their timeout.
    #[arg(long = "query.max-concurrency", default_value_t = 20)]
    pub query_max_concurrency: usize,
    /// How far back an instant selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m")]
    pub query_lookback_delta: String,
    /// Evaluate every step of repeated range queries instead of reusing the past steps
    /// already computed (for benchmarks; VictoriaMetrics's `-search.disableCache`).
    #[arg(long = "query.disable-cache")]
    pub query_disable_cache: bool,
    /// Prometheus's feature flags, comma-separated and repeatable:
    /// `promql-delayed-name-removal` keeps `__name__` until a PromQL query's result is
    /// complete; `created-timestamp-zero-ingestion` stores a zero at the created (start)
    /// timestamp of counters, histograms and summaries sent by remote write 2.0 and OTLP or
    /// scraped (protobuf `created_timestamp`, OpenMetrics `_created`).
    /// Features meshlens always has (native-histograms, exemplar-storage,
    /// promql-experimental-functions, promql-duration-expr, promql-extended-range-selectors)
    /// are accepted; unknown names are logged and ignored.
    #[arg(long = "enable-feature", value_name = "FEATURE,...")]
    pub enable_feature: Vec<String>,
    /// OTLP metrics: resource attributes copied onto every series as labels, comma-separated
    /// (Prometheus's `otlp.promote_resource_attributes`); the rest go to `target_info`.
    #[arg(long = "otlp.promote-resource-attributes", value_delimiter = ',')]
    pub otlp_promote_resource_attributes: Vec<String>,
    /// OTLP/gRPC listener for spans and metrics (`off` to disable).
    #[arg(long = "otlp-grpc-listen", default_value = "127.0.0.1:4317")]
    pub otlp_grpc_listen: String,
    /// A separate OTLP/HTTP listener, e.g. 127.0.0.1:4318 (`off` by default; the main
    /// listener serves `POST /v1/traces` and `POST /v1/metrics` regardless).
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
    /// `TENANT=PATH` makes a file only that tenant's (with `--multitenancy`).
    #[arg(long = "mesh")]
    pub mesh: Vec<PathBuf>,
    /// Let the Config view's wizards and `POST /api/v1/mesh/apply` (and remediation actions)
    /// write to the first `--mesh` directory, each write validated, recorded as an event and
    /// undoable. Off by default: the API then only previews edits.
    #[arg(long = "mesh-write")]
    pub mesh_write: bool,
    /// How often the anomaly evaluator scores every service's rate, 5xx share and p99
    /// (`meshlens_anomaly_score`, `/api/v1/anomalies`); 0 turns it off.
    #[arg(long = "anomaly.interval", default_value = "15s")]
    pub anomaly_interval: String,
    /// How long the service graph's per-edge aggregates keep 5-minute buckets: graphs over
    /// windows within it are summed from them instead of PromQL over raw series; 0 turns
    /// the aggregates off.
    #[arg(long = "graph.aggregates-retention", default_value = "24h")]
    pub graph_aggregates_retention: String,
    /// How long the graph aggregates keep 15-second buckets (windows starting within it
    /// are served at 15 s precision, longer ones snapped to 5 minutes).
    #[arg(long = "graph.aggregates-fine-retention", default_value = "1h")]
    pub graph_aggregates_fine_retention: String,
    /// The `remediations:` file: alerts and anomalies (by labels) mapped to a webhook or a
    /// mesh action (shift-traffic, kill-switch, tighten-outlier); mesh actions are dry runs
    /// without --mesh-write. Each action is an event and can be undone.
    #[arg(long = "remediation.config")]
    pub remediation_config: Option<PathBuf>,
    /// Prometheus's web config file (exporter-toolkit format: TLS, client certificates, basic
    /// auth, response headers) for every listener; re-read when it changes.
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,
    /// Most open connections per listener; beyond it, connections that have not sent a
    /// request head yet are closed first.
    #[arg(long = "web.max-connections", default_value_t = 512)]
    pub max_connections: usize,
    /// How long a connection may take to send a request's head.
    #[arg(long = "web.read-header-timeout", default_value = "10s")]
    pub read_header_timeout: String,
    /// How long an idle keep-alive connection stays open.
    #[arg(long = "web.idle-timeout", default_value = "5m")]
    pub idle_timeout: String,
    /// Every request names its tenant in `X-Scope-OrgID` (`a|b` reads across tenants); each
    /// tenant's data is stored and served apart.
    #[arg(long)]
    pub multitenancy: bool,
    /// With --multitenancy: the tenant scraped samples are stored under.
    #[arg(long = "multitenancy.scrape-tenant", default_value = "anonymous")]
    pub scrape_tenant: String,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
}

/// With `--storage clickhouse://…`: the write buffer and the client.
#[derive(clap::Args)]
pub struct ClickHouseArgs {
    /// Start even when ClickHouse does not answer: writes are buffered, reads answer 503
    /// naming ClickHouse, and the schema is created once it answers. Off: the start stops
    /// with ClickHouse's address named.
    #[arg(long = "storage.clickhouse.start-unreachable")]
    pub start_unreachable: bool,
    /// Largest size of each tenant's write buffer on disk (bytes, or with KiB/MiB/GiB/TiB);
    /// when full, writes get 503 until ClickHouse catches up. At least 1MiB.
    #[arg(long = "storage.clickhouse.buffer-max-size", default_value = "2GiB")]
    pub buffer_max_size: String,
    /// Longest one insert into ClickHouse may take (with a cluster: until every shard has
    /// its rows); a slower one fails and is retried from the buffer.
    #[arg(long = "storage.clickhouse.insert-timeout", default_value = "60s")]
    pub insert_timeout: String,
    /// Longest one ClickHouse query or schema statement may take.
    #[arg(long = "storage.clickhouse.query-timeout", default_value = "60s")]
    pub ch_query_timeout: String,
    /// Longest connecting to ClickHouse may take.
    #[arg(long = "storage.clickhouse.connect-timeout", default_value = "5s")]
    pub connect_timeout: String,
    /// On shutdown, how long to keep inserting what is buffered; the rest is inserted
    /// after the next start.
    #[arg(
        long = "storage.clickhouse.shutdown-drain-timeout",
        default_value = "10s"
    )]
    pub shutdown_drain_timeout: String,
}

impl ClickHouseArgs {
    /// The flags into the server's options, each bad value refused naming its flag.
    fn apply(&self, opts: &mut ServerOptions) -> anyhow::Result<()> {
        let positive = |flag: &str, v: &str| -> anyhow::Result<std::time::Duration> {
            let d = parse_duration(v)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--{flag}"))?;
            if d.is_zero() {
                anyhow::bail!("--{flag}: {v:?} must be longer than 0");
            }
            Ok(d)
        };
        let size = super::agent::parse_size(&self.buffer_max_size)
            .map_err(anyhow::Error::msg)
            .context("--storage.clickhouse.buffer-max-size")?;
        if size < 1 << 20 {
            anyhow::bail!(
                "--storage.clickhouse.buffer-max-size: {:?} is below the 1MiB one write batch may take",
                self.buffer_max_size
            );
        }
        opts.clickhouse_buffer.max_size_bytes = size;
        opts.clickhouse_buffer.drain_timeout = positive(
            "storage.clickhouse.shutdown-drain-timeout",
            &self.shutdown_drain_timeout,
        )?;
        opts.clickhouse_client.insert_timeout =
            positive("storage.clickhouse.insert-timeout", &self.insert_timeout)?;
        opts.clickhouse_client.timeout =
            positive("storage.clickhouse.query-timeout", &self.ch_query_timeout)?;
        opts.clickhouse_client.connect_timeout =
            positive("storage.clickhouse.connect-timeout", &self.connect_timeout)?;
        opts.clickhouse_start_unreachable = self.start_unreachable;
        Ok(())
    }
}

/// The rule engine, Alertmanager notifications, SLOs and probes (Prometheus's flag names).
#[derive(clap::Args)]
pub struct RuleArgs {
    /// Longest downtime after which an alert's `for` progress is still restored.
    #[arg(long = "rules.alert.for-outage-tolerance", default_value = "1h")]
    pub for_outage_tolerance: String,
    /// Least time between a restart and an alert firing whose `for` was restored.
    #[arg(long = "rules.alert.for-grace-period", default_value = "10m")]
    pub for_grace_period: String,
    /// Least time between resending an alert to Alertmanager.
    #[arg(long = "rules.alert.resend-delay", default_value = "1m")]
    pub resend_delay: String,
    /// Alerts queued for Alertmanager at most; older ones are dropped (and counted).
    #[arg(
        long = "alertmanager.notification-queue-capacity",
        default_value_t = 10_000
    )]
    pub notification_queue_capacity: usize,
    /// Allow `POST /-/reload` (SIGHUP always reloads).
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// The URL users reach the server at: the base of alerts' generator URLs.
    #[arg(long = "web.external-url", default_value = "")]
    pub external_url: String,
    /// Service level objectives: multi-window burn-rate alerts are generated and loaded.
    #[arg(long = "slo")]
    pub slo: Option<PathBuf>,
    /// Blackbox probes, beside the config's `probes:`.
    #[arg(long = "probes")]
    pub probes: Option<PathBuf>,
}

/// Per-tenant limits, with Mimir's defaults (0: no limit).
#[derive(clap::Args)]
pub struct LimitArgs {
    #[arg(long = "limits.max-label-names-per-series", default_value_t = 30)]
    pub max_label_names_per_series: usize,
    #[arg(long = "limits.max-label-name-length", default_value_t = 1024)]
    pub max_label_name_length: usize,
    #[arg(long = "limits.max-label-value-length", default_value_t = 2048)]
    pub max_label_value_length: usize,
    /// Series a tenant may have in the head (0: no limit).
    #[arg(long = "limits.max-series-per-tenant", default_value_t = 0)]
    pub max_series_per_tenant: usize,
    /// Samples per second a tenant may write (0: no limit).
    #[arg(long = "limits.ingestion-rate", default_value_t = 0.0)]
    pub ingestion_rate: f64,
    /// Samples a tenant may write at once above the rate.
    #[arg(long = "limits.ingestion-burst-size", default_value_t = 200_000)]
    pub ingestion_burst_size: u64,
    /// Spans per second a tenant may write (0: no limit).
    #[arg(long = "limits.spans-ingestion-rate", default_value_t = 0.0)]
    pub spans_ingestion_rate: f64,
    /// Spans a tenant may write at once above the rate.
    #[arg(long = "limits.spans-ingestion-burst-size", default_value_t = 200_000)]
    pub spans_ingestion_burst_size: u64,
}

impl LimitArgs {
    fn to_limits(&self) -> meshlens_access::limits::Limits {
        meshlens_access::limits::Limits {
            max_label_names_per_series: self.max_label_names_per_series,
            max_label_name_length: self.max_label_name_length,
            max_label_value_length: self.max_label_value_length,
            max_series_per_tenant: self.max_series_per_tenant,
            ingestion_rate: self.ingestion_rate,
            ingestion_burst_size: self.ingestion_burst_size,
            span_ingestion_rate: self.spans_ingestion_rate,
            span_ingestion_burst_size: self.spans_ingestion_burst_size,
        }
    }
}

/// `--storage`.
fn storage(args: &Args) -> anyhow::Result<meshlens_server::MetricStorage> {
    super::parse_storage(&args.storage)
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
        storage: storage(args)?,
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
    opts.tsdb.max_exemplars = args.max_exemplars;
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
    opts.query.max_concurrency = args.query_max_concurrency;
    opts.query.disable_cache = args.query_disable_cache;
    let features = super::features::Features::parse(&args.enable_feature);
    features.log();
    opts.promql_delayed_name_removal = features.delayed_name_removal;
    opts.created_timestamp_zero_ingestion = features.created_timestamp_zero_ingestion;
    opts.query.lookback_delta_ms = parse_duration(&args.query_lookback_delta)
        .map_err(anyhow::Error::msg)
        .context("--query.lookback-delta")?
        .as_millis() as i64;
    opts.mesh_config = args.mesh.clone();
    opts.mesh_write = args.mesh_write;
    opts.remediation_file = args.remediation_config.clone();
    let anomaly = if args.anomaly_interval.trim() == "0" {
        std::time::Duration::ZERO
    } else {
        parse_duration(&args.anomaly_interval)
            .map_err(anyhow::Error::msg)
            .context("--anomaly.interval")?
    };
    opts.anomaly_interval = (!anomaly.is_zero()).then_some(anomaly);
    opts.graph_aggregates = graph_aggregates(args)?;
    opts.otlp_grpc_listen = optional_addr("otlp-grpc-listen", &args.otlp_grpc_listen)?;
    opts.otlp_http_listen = optional_addr("otlp-http-listen", &args.otlp_http_listen)?;
    opts.otlp_promote_resource_attributes = args
        .otlp_promote_resource_attributes
        .iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    opts.spans.retention_ms = parse_duration(&args.spans_retention_time)
        .map_err(anyhow::Error::msg)
        .context("--spans.retention.time")?
        .as_millis() as i64;
    opts.spans.retention_bytes =
        (args.spans_retention_size > 0).then_some(args.spans_retention_size);
    opts.web_config_file = args.web_config_file.clone();
    opts.max_connections = args.max_connections.max(1);
    opts.header_read_timeout = parse_duration(&args.read_header_timeout)
        .map_err(anyhow::Error::msg)
        .context("--web.read-header-timeout")?;
    opts.idle_timeout = parse_duration(&args.idle_timeout)
        .map_err(anyhow::Error::msg)
        .context("--web.idle-timeout")?;
    opts.multitenancy = args.multitenancy;
    meshlens_access::tenant::validate_org_id(&args.scrape_tenant)
        .map_err(|e| anyhow::anyhow!("--multitenancy.scrape-tenant: {e}"))?;
    opts.scrape_tenant = args.scrape_tenant.clone();
    opts.limits = args.limits.to_limits();
    let r = &args.rules;
    let duration = |flag: &str, v: &str| {
        parse_duration(v)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--{flag}"))
    };
    opts.rules = meshlens_server::RuleOptions {
        outage_tolerance: duration("rules.alert.for-outage-tolerance", &r.for_outage_tolerance)?,
        grace_period: duration("rules.alert.for-grace-period", &r.for_grace_period)?,
        resend_delay: duration("rules.alert.resend-delay", &r.resend_delay)?,
        notification_queue_capacity: r.notification_queue_capacity.max(1),
        external_url: if r.external_url.is_empty() {
            format!("http://{}", args.listen)
        } else {
            r.external_url.trim_end_matches('/').to_string()
        },
        slo_file: r.slo.clone(),
        probes_file: r.probes.clone(),
        enable_lifecycle: r.enable_lifecycle,
    };
    args.clickhouse.apply(&mut opts)?;
    opts.flags = flags(args);
    Ok(opts)
}

/// `--graph.aggregates-retention` and `--graph.aggregates-fine-retention`, checked.
fn graph_aggregates(
    args: &Args,
) -> anyhow::Result<Option<meshlens_server::GraphAggregatesOptions>> {
    if args.graph_aggregates_retention.trim() == "0" {
        return Ok(None);
    }
    let ms = |flag: &str, v: &str| {
        parse_duration(v)
            .map(|d| d.as_millis() as i64)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--{flag}"))
    };
    let opts = meshlens_server::GraphAggregatesOptions {
        coarse_retention_ms: ms(
            "graph.aggregates-retention",
            &args.graph_aggregates_retention,
        )?,
        fine_retention_ms: ms(
            "graph.aggregates-fine-retention",
            &args.graph_aggregates_fine_retention,
        )?,
        ..Default::default()
    };
    opts.validate().context("--graph.aggregates-retention")?;
    Ok(Some(opts))
}

/// The command line as `/api/v1/status/flags` shows it: each flag's name and value.
fn flags(args: &Args) -> std::collections::BTreeMap<String, String> {
    /// One `name => value` a line; every value is shown with its `Display`.
    macro_rules! table {
        ($($name:literal => $value:expr,)*) => {
            [$(($name.to_string(), $value.to_string())),*].into_iter().collect()
        };
    }
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let limits = &args.limits;
    let r = &args.rules;
    let ch = &args.clickhouse;
    table! {
        "listen" => args.listen,
        "data-dir" => args.data_dir.display(),
        // Parsed again only to drop a password from what the API shows.
        "storage" => meshlens_clickhouse::StorageUrl::parse(&args.storage)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| args.storage.clone()),
        "storage.clickhouse.start-unreachable" => ch.start_unreachable,
        "storage.clickhouse.buffer-max-size" => ch.buffer_max_size,
        "storage.clickhouse.insert-timeout" => ch.insert_timeout,
        "storage.clickhouse.query-timeout" => ch.ch_query_timeout,
        "storage.clickhouse.connect-timeout" => ch.connect_timeout,
        "storage.clickhouse.shutdown-drain-timeout" => ch.shutdown_drain_timeout,
        "config" => path(&args.config),
        "retention.time" => args.retention_time,
        "retention.size" => args.retention_size,
        "out-of-order-window" => args.out_of_order_window,
        "wal-fsync" => args.wal_fsync,
        "storage.exemplars.max-exemplars" => args.max_exemplars,
        "query.timeout" => args.query_timeout,
        "query.max-samples" => args.query_max_samples,
        "query.max-concurrency" => args.query_max_concurrency,
        "query.lookback-delta" => args.query_lookback_delta,
        "query.disable-cache" => args.query_disable_cache,
        "enable-feature" => super::features::as_given(&args.enable_feature),
        "otlp-grpc-listen" => args.otlp_grpc_listen,
        "otlp-http-listen" => args.otlp_http_listen,
        "otlp.promote-resource-attributes" => args.otlp_promote_resource_attributes.join(","),
        "spans.retention.time" => args.spans_retention_time,
        "spans.retention.size" => args.spans_retention_size,
        "web.config.file" => path(&args.web_config_file),
        "web.max-connections" => args.max_connections,
        "web.read-header-timeout" => args.read_header_timeout,
        "web.idle-timeout" => args.idle_timeout,
        "multitenancy" => args.multitenancy,
        "multitenancy.scrape-tenant" => args.scrape_tenant,
        "mesh-write" => args.mesh_write,
        "remediation.config" => path(&args.remediation_config),
        "anomaly.interval" => args.anomaly_interval,
        "graph.aggregates-retention" => args.graph_aggregates_retention,
        "graph.aggregates-fine-retention" => args.graph_aggregates_fine_retention,
        "limits.max-label-names-per-series" => limits.max_label_names_per_series,
        "limits.max-label-name-length" => limits.max_label_name_length,
        "limits.max-label-value-length" => limits.max_label_value_length,
        "limits.max-series-per-tenant" => limits.max_series_per_tenant,
        "limits.ingestion-rate" => limits.ingestion_rate,
        "limits.ingestion-burst-size" => limits.ingestion_burst_size,
        "limits.spans-ingestion-rate" => limits.spans_ingestion_rate,
        "limits.spans-ingestion-burst-size" => limits.spans_ingestion_burst_size,
        "rules.alert.for-outage-tolerance" => r.for_outage_tolerance,
        "rules.alert.for-grace-period" => r.for_grace_period,
        "rules.alert.resend-delay" => r.resend_delay,
        "alertmanager.notification-queue-capacity" => r.notification_queue_capacity,
        "web.enable-lifecycle" => r.enable_lifecycle,
        "web.external-url" => r.external_url,
        "slo" => path(&r.slo),
        "probes" => path(&r.probes),
    }
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
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let stop = wait_for_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hup.recv() => {
                // The outcome is logged and shown in /api/v1/status/runtimeinfo.
                let _ = server.reload().await;
            }
        }
    }
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
