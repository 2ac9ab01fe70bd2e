//! Scraping: discovery feeds targets to one loop per target; the manager starts and stops
//! loops as discovery changes and answers `/api/v1/targets`.

mod fetch;
mod scrape_loop;
pub mod target;
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use meshlens_model::{Labels, MetricWriter};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ScrapeConfig};
use crate::discovery::{self, DnsSd, FileSd, Nameserver, TargetGroup};
use crate::self_metrics::SelfMetrics;
pub use scrape_loop::{Health, Stop};
use target::Target;

struct Running {
    target: Target,
    health: Arc<RwLock<Health>>,
    stop: watch::Sender<Stop>,
    handle: JoinHandle<()>,
}

struct Job {
    config: Arc<ScrapeConfig>,
    client: fetch::HttpClient,
    static_groups: Vec<TargetGroup>,
    file_sd: FileSd,
    file_groups: Vec<TargetGroup>,
    dns_sd: DnsSd,
    dns_groups: Vec<TargetGroup>,
}

/// What `/api/v1/targets` shows of one target.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    pub target: Target,
    pub health: Health,
}

pub struct ScrapeManager {
    writer: Arc<dyn MetricWriter>,
    /// `created-timestamp-zero-ingestion`: scraped created timestamps become zero samples
    /// (kept by a reload's new manager).
    pub(crate) created_zeros: bool,
    metrics: Arc<SelfMetrics>,
    jobs: Mutex<BTreeMap<String, Job>>,
    running: Mutex<HashMap<u64, Running>>,
    dropped: Mutex<BTreeMap<String, Vec<Labels>>>,
    discovery_stop: watch::Sender<bool>,
    discovery_task: Mutex<Option<JoinHandle<()>>>,
}

impl ScrapeManager {
    /// Starts scraping every job of `config`; must run inside a tokio runtime.
    /// `created_zeros`: see [`crate::ServerOptions::created_timestamp_zero_ingestion`].
    pub fn start(
        config: &Config,
        writer: Arc<dyn MetricWriter>,
        metrics: Arc<SelfMetrics>,
        created_zeros: bool,
    ) -> Arc<Self> {
        let (tx, mut rx) = watch::channel(false);
        // Shown from the start, as Prometheus does, even with no DNS discovery configured.
        metrics.sd_dns_lookups.with(&[]);
        metrics.sd_dns_lookup_failures.with(&[]);
        let nameserver = Nameserver::from_env();
        if let Nameserver::Invalid(e) = &nameserver {
            tracing::error!(error = %e, "DNS service discovery cannot resolve any name");
        }
        let jobs = config
            .scrape_configs
            .iter()
            .filter_map(|sc| {
                let client = match fetch::client(&sc.tls) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(job = %sc.job_name, error = %e, "cannot set up the job's HTTP client; the job is not scraped");
                        return None;
                    }
                };
                Some((
                    sc.job_name.clone(),
                    Job {
                        client,
                        config: Arc::new(sc.clone()),
                        static_groups: discovery::static_groups(sc),
                        file_sd: FileSd::new(sc.file_sd_configs.clone()),
                        file_groups: Vec::new(),
                        dns_sd: DnsSd::start(
                            &sc.job_name,
                            &sc.dns_sd_configs,
                            nameserver.clone(),
                            metrics.clone(),
                        ),
                        dns_groups: Vec::new(),
                    },
                ))
            })
            .collect();
        let mgr = Arc::new(ScrapeManager {
            writer,
            created_zeros,
            metrics,
            jobs: Mutex::new(jobs),
            running: Mutex::new(HashMap::new()),
            dropped: Mutex::new(BTreeMap::new()),
            discovery_stop: tx,
            discovery_task: Mutex::new(None),
        });
        let names: Vec<String> = mgr.jobs.lock().keys().cloned().collect();
        for j in &names {
            mgr.refresh_job(j, true);
        }
        let weak = Arc::downgrade(&mgr);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = rx.changed() => return,
                }
                let Some(m) = weak.upgrade() else { return };
                for j in &names {
                    m.refresh_job(j, false);
                }
            }
        });
        *mgr.discovery_task.lock() = Some(task);
        mgr
    }

    /// Polls the job's file and DNS discovery and reconciles its running loops.
    fn refresh_job(&self, job: &str, force: bool) {
        let (config, client, groups) = {
            let mut jobs = self.jobs.lock();
            let Some(j) = jobs.get_mut(job) else { return };
            let file_changed = if j.file_sd.is_empty() {
                None
            } else {
                j.file_sd.poll()
            };
            let dns_changed = j.dns_sd.poll();
            if file_changed.is_none() && dns_changed.is_none() && !force {
                return;
            }
            if let Some(g) = file_changed {
                j.file_groups = g;
            }
            if let Some(g) = dns_changed {
                j.dns_groups = g;
            }
            let mut groups = j.static_groups.clone();
            groups.extend(j.file_groups.iter().cloned());
            groups.extend(j.dns_groups.iter().cloned());
            (j.config.clone(), j.client.clone(), groups)
        };
        let (targets, dropped) = target::build(&config, &groups);
        self.dropped.lock().insert(job.to_string(), dropped);
        let wanted: HashMap<u64, Target> = targets.into_iter().map(|t| (t.key(), t)).collect();
        let mut running = self.running.lock();
        let gone: Vec<u64> = running
            .iter()
            .filter(|(k, r)| r.target.job == job && !wanted.contains_key(k))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(r) = running.remove(&k) {
                let _ = r.stop.send(Stop::TargetGone);
            }
        }
        for (k, t) in wanted {
            if running.contains_key(&k) {
                continue;
            }
            let (tx, rx) = watch::channel(Stop::Running);
            let (lp, health) = scrape_loop::ScrapeLoop::new(
                t.clone(),
                config.clone(),
                self.writer.clone(),
                self.metrics.clone(),
                client.clone(),
                self.created_zeros,
            );
            let handle = tokio::spawn(lp.run(rx));
            running.insert(
                k,
                Running {
                    target: t,
                    health,
                    stop: tx,
                    handle,
                },
            );
        }
    }

    pub fn active_targets(&self) -> Vec<TargetStatus> {
        let mut v: Vec<TargetStatus> = self
            .running
            .lock()
            .values()
            .map(|r| TargetStatus {
                target: r.target.clone(),
                health: r.health.read().clone(),
            })
            .collect();
        v.sort_by(|a, b| (&a.target.job, &a.target.url).cmp(&(&b.target.job, &b.target.url)));
        v
    }

    pub fn dropped_targets(&self) -> Vec<(String, Labels)> {
        self.dropped
            .lock()
            .iter()
            .flat_map(|(j, ls)| ls.iter().map(move |l| (j.clone(), l.clone())))
            .collect()
    }

    /// Stops discovery and every loop without writing staleness markers.
    pub async fn stop(&self) {
        let _ = self.discovery_stop.send(true);
        if let Some(t) = self.discovery_task.lock().take() {
            t.abort();
        }
        for j in self.jobs.lock().values_mut() {
            j.dns_sd.stop();
        }
        let loops: Vec<Running> = self.running.lock().drain().map(|(_, r)| r).collect();
        for r in &loops {
            let _ = r.stop.send(Stop::Shutdown);
        }
        for r in loops {
            let _ = tokio::time::timeout(Duration::from_secs(10), r.handle).await;
        }
    }
}
