//! `dns_sd_configs`: every name is re-resolved each refresh interval, as Prometheus does. SRV
//! records give `target:port` targets, A and AAAA records `ip:port` with the configured port.
//! A name whose lookup fails keeps its last good targets (the failure is logged and counted);
//! a name that does not exist, or has no records of the type, has none.
//!
//! The resolver reads `/etc/resolv.conf` (nameservers, search list, ndots, timeout) on every
//! round, so edits to it take effect without a restart, like Prometheus. The environment
//! variable `MESHLENS_DNS_SERVER=IP[:PORT]` replaces its nameservers (the search list stays).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use parking_lot::Mutex;
use tokio::task::{JoinHandle, JoinSet};

use super::TargetGroup;
use crate::config::{DnsRecordType, DnsSdConfig};
use crate::self_metrics::SelfMetrics;

/// The variable naming the nameserver to ask instead of resolv.conf's.
pub const DNS_SERVER_ENV: &str = "MESHLENS_DNS_SERVER";

/// Where lookups go: resolv.conf's nameservers, or one given by `MESHLENS_DNS_SERVER`.
#[derive(Clone, Debug, PartialEq)]
pub enum Nameserver {
    System,
    Fixed(SocketAddr),
    /// The variable was set but unusable; every lookup fails with this reason.
    Invalid(String),
}

impl Nameserver {
    pub fn from_env() -> Nameserver {
        match std::env::var(DNS_SERVER_ENV) {
            Err(std::env::VarError::NotPresent) => Nameserver::System,
            Err(e) => Nameserver::Invalid(format!("{DNS_SERVER_ENV}: {e}")),
            Ok(v) if v.trim().is_empty() => Nameserver::System,
            Ok(v) => Nameserver::parse(v.trim()),
        }
    }

    /// `IP:PORT`, `[IPv6]:PORT`, or a bare IP (port 53).
    pub fn parse(v: &str) -> Nameserver {
        if let Ok(a) = v.parse::<SocketAddr>() {
            return Nameserver::Fixed(a);
        }
        match v.parse::<IpAddr>() {
            Ok(ip) => Nameserver::Fixed(SocketAddr::new(ip, 53)),
            Err(_) => Nameserver::Invalid(format!(
                "{DNS_SERVER_ENV}={v:?} is not IP:PORT (for example 127.0.0.1:5353)"
            )),
        }
    }
}

/// The last good targets of every name of every config of one job.
struct Shared {
    /// `[config][name]`: the groups the name's last successful lookup gave.
    groups: Vec<Vec<Vec<TargetGroup>>>,
    changed: bool,
}

/// One job's DNS discovery: a task per `dns_sd_configs` entry, each on its own interval.
pub struct DnsSd {
    shared: Arc<Mutex<Shared>>,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsSd {
    /// Starts resolving at once; must run inside a tokio runtime when `configs` is not empty.
    pub fn start(
        job: &str,
        configs: &[DnsSdConfig],
        nameserver: Nameserver,
        metrics: Arc<SelfMetrics>,
    ) -> DnsSd {
        let shared = Arc::new(Mutex::new(Shared {
            groups: configs
                .iter()
                .map(|c| vec![Vec::new(); c.names.len()])
                .collect(),
            changed: false,
        }));
        let tasks = configs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                tokio::spawn(run(
                    job.to_string(),
                    i,
                    c.clone(),
                    nameserver.clone(),
                    Arc::downgrade(&shared),
                    metrics.clone(),
                ))
            })
            .collect();
        DnsSd { shared, tasks }
    }

    /// Every name's current groups, when they changed since the last call.
    pub fn poll(&self) -> Option<Vec<TargetGroup>> {
        let mut s = self.shared.lock();
        if !std::mem::take(&mut s.changed) {
            return None;
        }
        Some(s.groups.iter().flatten().flatten().cloned().collect())
    }

    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for DnsSd {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(
    job: String,
    index: usize,
    config: DnsSdConfig,
    nameserver: Nameserver,
    shared: Weak<Mutex<Shared>>,
    metrics: Arc<SelfMetrics>,
) {
    let mut tick = tokio::time::interval(config.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let results = refresh(&config, &nameserver).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut s = shared.lock();
        for (i, result) in results.into_iter().enumerate() {
            metrics.sd_dns_lookups.add(&[], 1);
            match result {
                Ok(groups) => {
                    if s.groups[index][i] != groups {
                        s.groups[index][i] = groups;
                        s.changed = true;
                    }
                }
                Err(e) => {
                    metrics.sd_dns_lookup_failures.add(&[], 1);
                    tracing::error!(
                        job = %job,
                        name = %config.names[i],
                        error = %e,
                        "Error refreshing DNS targets; keeping the last ones"
                    );
                }
            }
        }
    }
}

/// Resolves every name of `config` at once; one result per name, in order.
async fn refresh(
    config: &DnsSdConfig,
    nameserver: &Nameserver,
) -> Vec<Result<Vec<TargetGroup>, String>> {
    let resolver = match resolver(nameserver) {
        Ok(r) => r,
        Err(e) => return config.names.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut set = JoinSet::new();
    for (i, name) in config.names.iter().enumerate() {
        let (resolver, name, config) = (resolver.clone(), name.clone(), config.clone());
        set.spawn(async move { (i, lookup(&resolver, &name, &config).await) });
    }
    let mut out: Vec<Result<Vec<TargetGroup>, String>> = config
        .names
        .iter()
        .map(|_| Err("lookup did not finish".to_string()))
        .collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            out[i] = r;
        }
    }
    out
}

fn resolver(nameserver: &Nameserver) -> Result<TokioResolver, String> {
    let system = hickory_resolver::system_conf::read_system_conf();
    let mut builder = match nameserver {
        Nameserver::Invalid(e) => return Err(e.clone()),
        Nameserver::System => {
            let (config, opts) = system.map_err(|e| format!("cannot use /etc/resolv.conf: {e}"))?;
            Resolver::builder_with_config(config, TokioRuntimeProvider::default())
                .with_options(opts)
        }
        Nameserver::Fixed(addr) => {
            let (domain, search, opts) = match system {
                Ok((c, o)) => {
                    let (domain, search, _) = c.into_parts();
                    (domain, search, o)
                }
                Err(_) => (None, Vec::new(), ResolverOpts::default()),
            };
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            Resolver::builder_with_config(
                ResolverConfig::from_parts(domain, search, vec![ns]),
                TokioRuntimeProvider::default(),
            )
            .with_options(opts)
        }
    };
    // DNS discovery asks the DNS, never /etc/hosts (as Prometheus).
    builder.options_mut().use_hosts_file = ResolveHosts::Never;
    builder.build().map_err(|e| e.to_string())
}

async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    config: &DnsSdConfig,
) -> Result<Vec<TargetGroup>, String> {
    let rtype = match config.record_type {
        DnsRecordType::Srv => RecordType::SRV,
        DnsRecordType::A => RecordType::A,
        DnsRecordType::Aaaa => RecordType::AAAA,
    };
    let answer = match resolver.lookup(name, rtype).await {
        Ok(l) => l,
        // NXDOMAIN, or the name has no records of this type: a definite "no targets".
        Err(e) if e.is_no_records_found() => return Ok(Vec::new()),
        Err(e) => return Err(format!("could not resolve {name:?} ({}): {e}", rtype)),
    };
    let mut groups: Vec<TargetGroup> = answer
        .answers()
        .iter()
        .filter_map(|r| record_group(name, &r.data, config.port))
        .collect();
    groups.sort_by(|a, b| a.targets.cmp(&b.targets));
    groups.dedup();
    Ok(groups)
}

/// One answer record as a target with Prometheus's meta labels; CNAMEs and other records
/// that are not the type asked for give none.
fn record_group(name: &str, data: &RData, port: u16) -> Option<TargetGroup> {
    let mut labels = BTreeMap::from([("__meta_dns_name".to_string(), name.to_string())]);
    let address = match data {
        RData::SRV(srv) => {
            let target = srv.target.to_ascii();
            labels.insert("__meta_dns_srv_record_target".into(), target.clone());
            labels.insert("__meta_dns_srv_record_port".into(), srv.port.to_string());
            format!("{}:{}", target.trim_end_matches('.'), srv.port)
        }
        RData::A(a) => SocketAddr::new(IpAddr::V4(a.0), port).to_string(),
        RData::AAAA(a) => SocketAddr::new(IpAddr::V6(a.0), port).to_string(),
        _ => return None,
    };
    Some(TargetGroup {
        source: name.to_string(),
        targets: vec![address],
        labels,
    })
}

#[cfg(test)]
mod tests;
