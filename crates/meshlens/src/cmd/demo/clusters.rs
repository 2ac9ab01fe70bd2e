//! Where the demo's telemetry goes. One cluster: the server scrapes every proxy and takes
//! their spans itself, as the demo always did. Several: each cluster has its own in-process
//! `meshlens agent` that scrapes that cluster's proxies, takes their spans and forwards both
//! to the server, which then scrapes nothing: the hub sees the mesh only through agents.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use meshlens_server::agent::{AgentOptions, RunningAgent};

/// The cluster name of the single-cluster demo, as it always was.
pub const SINGLE: &str = "demo-cluster";

/// Largest `--clusters`: the demo mesh has eight workloads, and three clusters already give
/// every kind of cross-cluster call (gateway to front end, front end to back end).
pub const MAX_CLUSTERS: u8 = 3;

/// The global section every demo Prometheus config shares: a quick scrape so the graph
/// fills within seconds.
const GLOBAL: &str = "global: {scrape_interval: 5s, scrape_timeout: 4s}\n";

/// Which cluster each workload runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    clusters: u8,
}

impl Layout {
    /// `n` in `1..=MAX_CLUSTERS` (the CLI refuses anything else); larger reads as the maximum.
    pub fn new(n: u8) -> Layout {
        Layout {
            clusters: n.clamp(1, MAX_CLUSTERS),
        }
    }

    pub fn multi(&self) -> bool {
        self.clusters > 1
    }

    pub fn names(&self) -> &'static [&'static str] {
        match self.clusters {
            1 => &[SINGLE],
            2 => &["east", "west"],
            _ => &["east", "west", "edge"],
        }
    }

    /// The cluster of a workload (as [`super::topology::Workload::name`] spells it, or
    /// `istio-ingressgateway`). Every split puts callers and callees apart, so that requests
    /// cross clusters on more than one hop.
    pub fn of(&self, workload: &str) -> &'static str {
        let front = matches!(workload, "istio-ingressgateway" | "proxy-access-control");
        let lb = workload.starts_with("http-lb");
        match self.clusters {
            1 => SINGLE,
            // East: the gateway, the front end and one backend; west: the load balancers,
            // the other backends and the IDS. Front end → lb and lb → clover-server1 cross.
            2 if front || workload == "clover-server1" => "east",
            2 => "west",
            _ if front => "edge",
            _ if lb => "east",
            _ => "west",
        }
    }
}

/// One cluster's telemetry sink: the server itself (single cluster) or the cluster's agent.
pub struct Site {
    pub name: &'static str,
    /// Where the cluster's proxies send Zipkin spans.
    pub zipkin: String,
    /// The file_sd file listing the cluster's proxies' admin listeners.
    targets_file: PathBuf,
    agent: Option<RunningAgent>,
}

impl Site {
    pub fn agent_addr(&self) -> Option<SocketAddr> {
        self.agent.as_ref().map(RunningAgent::addr)
    }

    /// Lists `targets` (proxy name, admin address) for scraping; replaces the file atomically
    /// so the scraper never reads half of it.
    pub fn set_targets(&self, targets: &[(String, SocketAddr)]) -> anyhow::Result<()> {
        let groups: Vec<serde_json::Value> = targets
            .iter()
            .map(|(name, admin)| {
                serde_json::json!({
                    "targets": [admin.to_string()],
                    "labels": {"proxy": name, "cluster": self.name}
                })
            })
            .collect();
        let tmp = self.targets_file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::Value::from(groups).to_string())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.targets_file)
            .with_context(|| format!("writing {}", self.targets_file.display()))?;
        Ok(())
    }

    /// Stops the agent, if any, forwarding what it still holds (up to its drain timeout).
    pub async fn shutdown(self) {
        if let Some(a) = self.agent {
            a.shutdown().await;
        }
    }
}

/// A Prometheus config scraping the proxies listed in `targets_file` (none yet).
fn scrape_config(targets_file: &Path) -> String {
    format!(
        "{GLOBAL}scrape_configs:\n\
         - job_name: meshlens-proxies\n  metrics_path: /stats/prometheus\n\
         \x20 file_sd_configs: [{{files: [{:?}], refresh_interval: 5s}}]\n",
        targets_file.display().to_string()
    )
}

/// Writes the server's config: with one cluster it scrapes the proxies itself (its targets
/// go in `dir/scrape-targets.json`), with several it scrapes nothing.
pub fn write_hub_config(layout: Layout, dir: &Path) -> anyhow::Result<PathBuf> {
    let config_file = dir.join("meshlens.yml");
    let text = if layout.multi() {
        format!("{GLOBAL}scrape_configs: []\n")
    } else {
        let targets = dir.join("scrape-targets.json");
        std::fs::write(&targets, "[]")?;
        scrape_config(&targets)
    };
    std::fs::write(&config_file, text)
        .with_context(|| format!("writing {}", config_file.display()))?;
    Ok(config_file)
}

/// The clusters' sinks: the server for a single cluster, else one agent per cluster, each
/// with its data and config under `dir/agents/<cluster>`, forwarding to `server_url`.
pub async fn start(layout: Layout, dir: &Path, server_url: &str) -> anyhow::Result<Vec<Site>> {
    if !layout.multi() {
        return Ok(vec![Site {
            name: SINGLE,
            zipkin: format!("{server_url}/api/v2/spans"),
            targets_file: dir.join("scrape-targets.json"),
            agent: None,
        }]);
    }
    let mut sites = Vec::new();
    for &name in layout.names() {
        match start_agent(name, dir, server_url).await {
            Ok(site) => sites.push(site),
            Err(e) => {
                for s in sites {
                    s.shutdown().await;
                }
                return Err(e);
            }
        }
    }
    Ok(sites)
}

async fn start_agent(name: &'static str, dir: &Path, server_url: &str) -> anyhow::Result<Site> {
    let home = dir.join("agents").join(name);
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    let targets_file = home.join("scrape-targets.json");
    std::fs::write(&targets_file, "[]")?;
    let config_file = home.join("prometheus.yml");
    std::fs::write(&config_file, scrape_config(&targets_file))?;
    let agent = meshlens_server::agent::start(AgentOptions {
        cluster: name.to_string(),
        agent_id: Some(format!("demo-{name}")),
        hubs: vec![server_url.to_string()],
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: home.join("data"),
        config_file: Some(config_file),
        otlp_grpc_listen: None,
        drain_timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .await
    .with_context(|| format!("starting the agent of cluster {name}"))?;
    Ok(Site {
        name,
        zipkin: format!("http://{}/api/v2/spans", agent.addr()),
        targets_file,
        agent: Some(agent),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::demo::topology::{workloads, Behaviour};

    /// (caller, callee) workload pairs of the demo's call graph.
    fn calls() -> Vec<(String, String)> {
        let ws = workloads();
        let mut out = vec![(
            "istio-ingressgateway".to_string(),
            "proxy-access-control".to_string(),
        )];
        for w in &ws {
            let callee: Option<fn(&str) -> bool> = match w.behaviour {
                Behaviour::AccessControl => Some(|n| n.starts_with("http-lb")),
                Behaviour::LoadBalancer { .. } => {
                    Some(|n| n.starts_with("clover-server") || n == "snort-ids")
                }
                _ => None,
            };
            if let Some(f) = callee {
                for c in ws.iter().map(|c| c.name()).filter(|n| f(n)) {
                    out.push((w.name(), c));
                }
            }
        }
        out
    }

    #[test]
    fn one_cluster_is_todays_demo() {
        let l = Layout::new(1);
        assert!(!l.multi());
        assert_eq!(l.names(), &[SINGLE]);
        assert!(calls()
            .iter()
            .all(|(a, b)| l.of(a) == SINGLE && l.of(b) == SINGLE));
    }

    #[test]
    fn every_split_uses_every_cluster_and_crosses_twice() {
        for n in 2..=MAX_CLUSTERS {
            let l = Layout::new(n);
            assert!(l.multi());
            assert_eq!(l.names().len(), n as usize);
            let mut all: Vec<String> = workloads().iter().map(|w| w.name()).collect();
            all.push("istio-ingressgateway".into());
            for c in l.names() {
                assert!(all.iter().any(|w| l.of(w) == *c), "{n}: {c} is empty");
            }
            assert!(all.iter().all(|w| l.names().contains(&l.of(w))));
            // Distinct (caller cluster, callee cluster) kinds of crossing.
            let mut crossings: Vec<(&str, &str)> = calls()
                .iter()
                .map(|(a, b)| (l.of(a), l.of(b)))
                .filter(|(a, b)| a != b)
                .collect();
            crossings.sort();
            crossings.dedup();
            assert!(crossings.len() >= 2, "{n}: {crossings:?}");
        }
    }

    #[test]
    fn three_clusters_as_documented() {
        let l = Layout::new(3);
        assert_eq!(l.names(), &["east", "west", "edge"]);
        assert_eq!(l.of("istio-ingressgateway"), "edge");
        assert_eq!(l.of("proxy-access-control"), "edge");
        assert_eq!(l.of("http-lb-v2"), "east");
        assert_eq!(l.of("clover-server3"), "west");
        assert_eq!(l.of("snort-ids"), "west");
        assert_eq!(Layout::new(200), l);
    }

    #[test]
    fn hub_scrapes_only_with_one_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let one = std::fs::read_to_string(write_hub_config(Layout::new(1), dir.path()).unwrap());
        assert!(one.unwrap().contains("scrape-targets.json"));
        let three = write_hub_config(Layout::new(3), dir.path()).unwrap();
        let text = std::fs::read_to_string(&three).unwrap();
        let (cfg, _) = meshlens_server::config::parse(&text, "meshlens.yml").unwrap();
        assert!(cfg.scrape_configs.is_empty());
    }
}
