//! `meshlens demo`: the whole system on loopback in one command. A server with embedded
//! storage; the Clover-style demo mesh, every service behind its own `meshlens proxy`; and a
//! load generator. With one cluster the server scrapes every proxy and receives their spans;
//! with `--clusters 2|3` each cluster's agent does, forwarding to the server (see
//! [`clusters`]).

mod apps;
mod canary;
mod clusters;
mod load;
mod security;
mod topology;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use meshlens_proxy::{Proxy, ProxyOptions, Reporter, RunningProxy, TraceExport};
use tokio::net::TcpListener;

use clusters::{Layout, MAX_CLUSTERS};
use topology::{host_of, Behaviour, Endpoint};

#[derive(clap::Args)]
pub struct Args {
    /// The server's HTTP listener (APIs and UI).
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// The mesh's ingress: send your own requests here with `Host: proxy-access-control`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    ingress: SocketAddr,
    /// Keep the data here (default: a temporary directory, removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Requests per second from the load generator.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Percent of traces the proxies sample (Istio's default is 1; the demo shows them all).
    #[arg(long, default_value_t = 100.0)]
    sampling: f64,
    /// Stop after this many seconds instead of at Ctrl-C.
    #[arg(long)]
    duration: Option<u64>,
    /// Split the mesh over this many clusters (1 to 3; more are refused). 1: one cluster,
    /// `demo-cluster`, which the server scrapes itself. 2: `east` (ingress,
    /// proxy-access-control, clover-server1) and `west` (http-lb, clover-server2..3,
    /// snort-ids). 3: `edge` (ingress, proxy-access-control), `east` (http-lb v1 and v2) and
    /// `west` (clover-server1..3, snort-ids). With 2 or 3, each cluster has its own
    /// in-process `meshlens agent` that scrapes its proxies, takes their spans and forwards
    /// both to the server.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=MAX_CLUSTERS as i64))]
    clusters: u8,
    /// Roll out http-lb v2 step by step (10 % more every interval, up to 50 %), judged
    /// against v1 by the server: `--canary` (or `--canary=bad`) degrades v2 partway and the
    /// rollout rolls back by itself; `--canary=good` keeps v2 healthy and promotes it.
    /// Follow it in the UI's Events view.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "bad")]
    canary: Option<canary::CanaryMode>,
    /// How often the server scores every service's rate, errors and p99 for anomalies
    /// (`0s`: off). Short, so the models warm up within the demo's first minutes.
    #[arg(long, default_value = "2s", value_parser = parse_anomaly_interval)]
    anomaly_interval: Duration,
    /// Time between the canary's steps (and its checks); 30s or more, so that each check
    /// sees enough of the latest step at the demo's 5 s scrape interval.
    #[arg(long, default_value = "30s", value_parser = parse_interval)]
    canary_interval: Duration,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("meshlens-demo-{}", std::process::id())),
            true,
        ),
    };
    let result = rt.block_on(demo(&args, &dir));
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn demo(args: &Args, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("mesh"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let layout = Layout::new(args.clusters);
    let config_file = clusters::write_hub_config(layout, dir)?;
    let slo_file = dir.join("slos.yml");
    std::fs::write(&slo_file, topology::SLOS)?;
    let server = meshlens_server::start(meshlens_server::ServerOptions {
        listen: args.listen,
        data_dir: dir.join("data"),
        config_file: Some(config_file),
        maintenance_interval: Duration::from_secs(30),
        mesh_config: vec![dir.join("mesh").join("outbound")],
        anomaly_interval: Some(args.anomaly_interval).filter(|d| !d.is_zero()),
        rules: meshlens_server::RuleOptions {
            slo_file: Some(slo_file),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .with_context(|| format!("starting the server on {}", args.listen))?;
    let server_url = format!("http://{}", server.addr());
    let sites = match clusters::start(layout, dir, &server_url).await {
        Ok(s) => s,
        Err(e) => {
            server.shutdown().await;
            return Err(e);
        }
    };
    let zipkin_of = |cluster: &str| {
        sites
            .iter()
            .find(|s| s.name == cluster)
            .map(|s| s.zipkin.clone())
    };

    let mut workloads = topology::workloads();
    // Every workload's identity, shared by its inbound and outbound proxy.
    let mesh_ca = security::MeshCa::open(dir)?;
    let mut certs: HashMap<String, PathBuf> = HashMap::new();
    for w in &workloads {
        certs.insert(w.name(), mesh_ca.issue(&w.name(), host_of(w.service))?);
    }
    certs.insert(INGRESS.into(), mesh_ca.issue(INGRESS, INGRESS)?);
    if args.canary.is_some() {
        // The canary's trouble comes from the rollout's own fault, not from a built-in one.
        for w in workloads.iter_mut().filter(|w| w.service == "http-lb") {
            w.behaviour = Behaviour::LoadBalancer { error_per_mille: 0 };
        }
    }
    let client = apps::client()?;
    let mut proxies: Vec<Running> = Vec::new();
    let proxy = |mesh: PathBuf,
                 listen: SocketAddr,
                 workload: String,
                 app: &str,
                 version: &str,
                 reporter| {
        let cluster = layout.of(&workload);
        let mut o = ProxyOptions::new(mesh, listen);
        o.admin = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        o.trace_export = zipkin_of(cluster).map(TraceExport::Zipkin);
        o.workload = workload;
        o.app = app.to_string();
        o.version = version.to_string();
        o.cluster = cluster.into();
        o.reporter = reporter;
        o.sampling_percent = args.sampling;
        o.cert_dir = certs.get(&o.workload).cloned();
        o
    };
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));

    // Each app's listener, then its inbound proxy in front of it.
    let mut app_listeners = Vec::new();
    let mut endpoints = Vec::new();
    for w in &workloads {
        let l = TcpListener::bind(loopback).await?;
        let app_addr = l.local_addr()?;
        app_listeners.push(l);
        let host = host_of(w.service);
        let mesh = dir.join("mesh").join(format!("inbound-{}", w.name()));
        std::fs::create_dir_all(&mesh)?;
        std::fs::write(
            mesh.join("inbound.yaml"),
            topology::inbound_config(host, app_addr),
        )?;
        std::fs::write(mesh.join("security.yaml"), security::POLICIES)?;
        let p = Proxy::start(proxy(
            mesh,
            loopback,
            w.name(),
            host,
            w.version,
            Reporter::Destination,
        ))
        .await
        .with_context(|| format!("starting the inbound proxy of {}", w.name()))?;
        endpoints.push(Endpoint {
            workload: w,
            inbound: p.addr(),
            cluster: layout.of(&w.name()),
        });
        proxies.push(Running::new(
            format!("{} (inbound)", w.name()),
            layout,
            &w.name(),
            p,
        ));
    }

    // The outbound rules, shared by every sidecar and the ingress.
    let outbound = dir.join("mesh").join("outbound");
    std::fs::create_dir_all(&outbound)?;
    std::fs::write(
        outbound.join("mesh.yaml"),
        topology::outbound_config(&endpoints),
    )?;
    std::fs::write(outbound.join("security.yaml"), security::POLICIES)?;
    for (w, listener) in workloads.iter().zip(app_listeners) {
        let calls_out = matches!(
            w.behaviour,
            Behaviour::AccessControl | Behaviour::LoadBalancer { .. }
        );
        let sidecar = if calls_out {
            let p = Proxy::start(proxy(
                outbound.clone(),
                loopback,
                w.name(),
                host_of(w.service),
                w.version,
                Reporter::Source,
            ))
            .await
            .with_context(|| format!("starting the sidecar of {}", w.name()))?;
            let addr = p.addr();
            proxies.push(Running::new(
                format!("{} (outbound)", w.name()),
                layout,
                &w.name(),
                p,
            ));
            Some(addr)
        } else {
            None
        };
        apps::spawn(listener, w.name(), w.behaviour, sidecar, client.clone());
    }
    let ingress = Proxy::start(proxy(
        outbound.clone(),
        args.ingress,
        INGRESS.into(),
        INGRESS,
        "v1",
        Reporter::Source,
    ))
    .await
    .with_context(|| format!("starting the ingress on {}", args.ingress))?;
    let ingress_addr = ingress.addr();
    proxies.push(Running::new(INGRESS.into(), layout, INGRESS, ingress));

    // Tell each cluster's scraper (the server, or the cluster's agent) where to scrape.
    for site in &sites {
        let targets: Vec<(String, SocketAddr)> = proxies
            .iter()
            .filter(|p| p.cluster == site.name)
            .filter_map(|p| Some((p.name.clone(), p.proxy.admin_addr()?)))
            .collect();
        site.set_targets(&targets)?;
    }

    let stats = Arc::new(load::LoadStats::default());
    load::spawn(ingress_addr, args.rate, client, stats.clone());
    let rollout = args
        .canary
        .map(|mode| canary::spawn(mode, args.canary_interval, dir, &server_url));

    println!("meshlens server listening on {server_url}");
    println!("meshlens demo ingress on http://{ingress_addr} (Host: proxy-access-control)");
    if layout.multi() {
        for site in &sites {
            let names: Vec<String> = std::iter::once(INGRESS.to_string())
                .chain(workloads.iter().map(|w| w.name()))
                .filter(|w| layout.of(w) == site.name)
                .collect();
            let agent = site
                .agent_addr()
                .map_or_else(String::new, |a| format!("http://{a}"));
            println!(
                "meshlens demo cluster {} agent on {agent}: {}",
                site.name,
                names.join(", ")
            );
        }
    }
    let collected = if layout.multi() {
        format!(
            "Each of the {} clusters ({}) has its own agent forwarding to the server; see \
             {server_url}/api/v1/clusters.",
            sites.len(),
            layout.names().join(", ")
        )
    } else {
        "The server scrapes every proxy and receives their spans.".to_string()
    };
    println!(
        "\nThe demo mesh runs: {} proxies in front of {} workloads, {} requests/s through the ingress.\n\
         {collected}\n\
         Look at it:\n\
         \x20 {server_url}/                      the web UI\n\
         \x20 meshlens graph --server {server_url}\n\
         \x20 meshlens stats --server {server_url}\n\
         \x20 meshlens traces --server {server_url} --service http-lb\n\
         \x20 meshlens query --server {server_url} 'sum by (destination_workload, response_code) (rate(istio_requests_total{{reporter=\"source\"}}[1m]))'\n\
         \x20 curl -H 'Host: proxy-access-control' http://{ingress_addr}/api/products\n\
         Grafana: a Prometheus data source at {server_url}, a Zipkin or Jaeger data source at {server_url}.\n\
         Stop with Ctrl-C.",
        proxies.len(),
        workloads.len(),
        args.rate
    );

    let started = Instant::now();
    let stop = async {
        match args.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => crate::cmd::server::wait_for_signal().await,
        }
    };
    tokio::pin!(stop);
    let mut report = tokio::time::interval(Duration::from_secs(30));
    report.tick().await;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = report.tick() => {
                eprintln!(
                    "demo: {:.0} s, {} requests sent, {} ok, {} failed (some failures are part of the show)",
                    started.elapsed().as_secs_f64(),
                    stats.sent.load(Ordering::Relaxed),
                    stats.ok.load(Ordering::Relaxed),
                    stats.failed.load(Ordering::Relaxed)
                );
            }
        }
    }
    eprintln!("demo: shutting down");
    if let Some(r) = rollout {
        r.abort();
    }
    // Proxies first (their last spans go out), then the agents (they forward what they
    // hold), then the server that receives it all.
    for p in proxies {
        p.proxy.shutdown().await;
    }
    for site in sites {
        site.shutdown().await;
    }
    server.shutdown().await;
    Ok(())
}

const INGRESS: &str = "istio-ingressgateway";

fn parse_anomaly_interval(v: &str) -> Result<Duration, String> {
    meshlens_model::parse_duration(v).map_err(|e| e.to_string())
}

fn parse_interval(v: &str) -> Result<Duration, String> {
    match meshlens_model::parse_duration(v) {
        Ok(d) if d >= Duration::from_secs(30) => Ok(d),
        Ok(_) => Err("must be at least 30s".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A started proxy and where it runs.
struct Running {
    name: String,
    cluster: &'static str,
    proxy: RunningProxy,
}

impl Running {
    fn new(name: String, layout: Layout, workload: &str, proxy: RunningProxy) -> Running {
        Running {
            name,
            cluster: layout.of(workload),
            proxy,
        }
    }
}
