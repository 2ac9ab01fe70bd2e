//! `meshlens demo`: the whole system on loopback in one command. A server with embedded
//! storage; the Clover-style demo mesh, every service behind its own `meshlens proxy`; and a
//! load generator. The server scrapes every proxy and receives their spans.

mod apps;
mod load;
mod topology;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use meshlens_proxy::{Proxy, ProxyOptions, Reporter, RunningProxy, TraceExport};
use tokio::net::TcpListener;

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
    let targets_file = dir.join("scrape-targets.json");
    std::fs::write(&targets_file, "[]")?;
    let config_file = dir.join("meshlens.yml");
    std::fs::write(
        &config_file,
        format!(
            "global: {{scrape_interval: 5s, scrape_timeout: 4s}}\nscrape_configs:\n\
             - job_name: meshlens-proxies\n  metrics_path: /stats/prometheus\n\
             \x20 file_sd_configs: [{{files: [{:?}], refresh_interval: 5s}}]\n",
            targets_file.display().to_string()
        ),
    )?;
    let slo_file = dir.join("slos.yml");
    std::fs::write(&slo_file, topology::SLOS)?;
    let server = meshlens_server::start(meshlens_server::ServerOptions {
        listen: args.listen,
        data_dir: dir.join("data"),
        config_file: Some(config_file),
        maintenance_interval: Duration::from_secs(30),
        mesh_config: vec![dir.join("mesh").join("outbound")],
        rules: meshlens_server::RuleOptions {
            slo_file: Some(slo_file),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .with_context(|| format!("starting the server on {}", args.listen))?;
    let server_url = format!("http://{}", server.addr());
    let zipkin = format!("{server_url}/api/v2/spans");

    let workloads = topology::workloads();
    let client = apps::client()?;
    let mut proxies: Vec<(String, RunningProxy)> = Vec::new();
    let proxy = |mesh: PathBuf,
                 listen: SocketAddr,
                 workload: String,
                 app: &str,
                 version: &str,
                 reporter| {
        let mut o = ProxyOptions::new(mesh, listen);
        o.admin = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        o.trace_export = Some(TraceExport::Zipkin(zipkin.clone()));
        o.workload = workload;
        o.app = app.to_string();
        o.version = version.to_string();
        o.cluster = "demo-cluster".into();
        o.reporter = reporter;
        o.sampling_percent = args.sampling;
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
        });
        proxies.push((format!("{} (inbound)", w.name()), p));
    }

    // The outbound rules, shared by every sidecar and the ingress.
    let outbound = dir.join("mesh").join("outbound");
    std::fs::create_dir_all(&outbound)?;
    std::fs::write(
        outbound.join("mesh.yaml"),
        topology::outbound_config(&endpoints),
    )?;
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
            proxies.push((format!("{} (outbound)", w.name()), p));
            Some(addr)
        } else {
            None
        };
        apps::spawn(listener, w.name(), w.behaviour, sidecar, client.clone());
    }
    let ingress = Proxy::start(proxy(
        outbound.clone(),
        args.ingress,
        "istio-ingressgateway".into(),
        "istio-ingressgateway",
        "v1",
        Reporter::Source,
    ))
    .await
    .with_context(|| format!("starting the ingress on {}", args.ingress))?;
    let ingress_addr = ingress.addr();
    proxies.push(("istio-ingressgateway".into(), ingress));

    // Tell the server where to scrape.
    let targets: Vec<serde_json::Value> = proxies
        .iter()
        .filter_map(|(name, p)| {
            let admin = p.admin_addr()?;
            Some(serde_json::json!({
                "targets": [admin.to_string()],
                "labels": {"proxy": name, "cluster": "demo-cluster"}
            }))
        })
        .collect();
    let tmp = targets_file.with_extension("tmp");
    std::fs::write(&tmp, serde_json::Value::from(targets).to_string())?;
    std::fs::rename(&tmp, &targets_file)?;

    let stats = Arc::new(load::LoadStats::default());
    load::spawn(ingress_addr, args.rate, client, stats.clone());

    println!("meshlens server listening on {server_url}");
    println!("meshlens demo ingress on http://{ingress_addr} (Host: proxy-access-control)");
    println!(
        "\nThe demo mesh runs: {} proxies in front of {} workloads, {} requests/s through the ingress.\n\
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
    for (_, p) in proxies {
        p.shutdown().await;
    }
    server.shutdown().await;
    Ok(())
}
