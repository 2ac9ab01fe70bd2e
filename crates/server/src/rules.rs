//! The rule engine's wiring: the config's `rule_files` (globs relative to the config file)
//! and the `--slo` file's generated rules, evaluated by one [`RuleManager`] over the scrape
//! tenant's storage (as Prometheus evaluates over its one TSDB); the Alertmanager notifier;
//! the probes; and reload, which swaps all three or none.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meshlens_notifier::Notifier;
use meshlens_probe::{ProbeConfig, ProbeManager};
use meshlens_rules::{ManagerOptions, RuleManager};
use meshlens_slo::Slo;

use crate::config::Config;
use crate::tenants::TenantStack;
use crate::ServerOptions;

/// What the rule engine is given at start and on each reload.
pub(crate) struct RuleRuntime {
    pub manager: Arc<RuleManager>,
    pub notifier: Arc<Notifier>,
    pub probes: ProbeManager,
    /// The objectives of `--slo`, for `/api/v1/slos`.
    pub slos: parking_lot::RwLock<Vec<Slo>>,
    pub engine: Arc<meshlens_promql::Engine>,
    pub stack: Arc<TenantStack>,
    config_file: Option<PathBuf>,
    slo_file: Option<PathBuf>,
    probes_file: Option<PathBuf>,
    /// One reload at a time (SIGHUP and `/-/reload` may race).
    reloading: tokio::sync::Mutex<()>,
    /// The Alertmanagers' file_sd files, re-read on a timer.
    watch: parking_lot::Mutex<crate::alerting::AlertmanagerWatch>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// A rule, SLO or probe file that could not be loaded; the message names file, line and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

impl RuleRuntime {
    pub fn start(
        opts: &ServerOptions,
        cfg: &Config,
        engine: Arc<meshlens_promql::Engine>,
        stack: Arc<TenantStack>,
    ) -> Result<Arc<RuleRuntime>, LoadError> {
        let external_labels = cfg.global.external_labels.clone();
        let notifier = Notifier::start(crate::alerting::notifier_options(
            cfg,
            opts.rules.notification_queue_capacity,
        ));
        let manager = RuleManager::new(
            ManagerOptions {
                external_labels,
                external_url: opts.rules.external_url.clone(),
                default_interval: cfg.global.evaluation_interval,
                outage_tolerance: opts.rules.outage_tolerance,
                grace_period: opts.rules.grace_period,
                resend_delay: opts.rules.resend_delay,
            },
            engine.clone(),
            stack.metrics_reader.clone(),
            stack.metrics_store.clone(),
            Some(notifier.clone() as Arc<dyn meshlens_rules::AlertSink>),
        );
        let probes = ProbeManager::start(Vec::new(), stack.metrics_store.clone());
        let rt = Arc::new(RuleRuntime {
            manager,
            notifier,
            probes,
            slos: Default::default(),
            engine,
            stack,
            config_file: opts.config_file.clone(),
            slo_file: opts.rules.slo_file.clone(),
            probes_file: opts.rules.probes_file.clone(),
            reloading: Default::default(),
            watch: parking_lot::Mutex::new(crate::alerting::AlertmanagerWatch::new(
                &Default::default(),
                Path::new("."),
            )),
            stop: tokio::sync::watch::channel(false).0,
        });
        rt.apply(cfg)?;
        let weak = Arc::downgrade(&rt);
        let mut stop = rt.stop.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let Some(rt) = weak.upgrade() else { return };
                let changed = rt.watch.lock().poll();
                if let Some(sets) = changed {
                    rt.notifier.set_alertmanagers(sets);
                }
            }
        });
        Ok(rt)
    }

    /// Loads everything `cfg` and the side files name; on any error nothing changes.
    pub fn apply(&self, cfg: &Config) -> Result<(), LoadError> {
        let config_dir = self
            .config_file
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut sources = rule_sources(&cfg.rule_files, self.config_file.as_deref())?;
        let slos = match &self.slo_file {
            Some(f) => {
                let text = read(f)?;
                let slos = meshlens_slo::parse_slo_file(&text, &f.display().to_string())
                    .map_err(|e| LoadError(e.to_string()))?;
                sources.push((
                    format!("{} (generated)", f.display()),
                    meshlens_slo::rules_yaml(&slos),
                ));
                slos
            }
            None => Vec::new(),
        };
        let probes = self.probe_configs(cfg)?;
        let watch = crate::alerting::AlertmanagerWatch::new(&cfg.alerting, &config_dir);
        self.manager.load(sources).map_err(|errs| {
            LoadError(
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        self.notifier.set_alertmanagers(watch.sets());
        *self.watch.lock() = watch;
        self.notifier.set_options(
            crate::alerting::external_labels(cfg),
            crate::alerting::alert_relabel(&cfg.alerting),
        );
        self.probes.update(probes);
        *self.slos.write() = slos;
        Ok(())
    }

    fn probe_configs(&self, cfg: &Config) -> Result<Vec<ProbeConfig>, LoadError> {
        let mut out = Vec::new();
        if let Some(v) = &cfg.probes {
            let file = self
                .config_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.extend(
                meshlens_probe::parse_probes(v, &file).map_err(|e| LoadError(e.to_string()))?,
            );
        }
        if let Some(f) = &self.probes_file {
            let text = read(f)?;
            out.extend(
                meshlens_probe::parse_probes_file(&text, &f.display().to_string())
                    .map_err(|e| LoadError(e.to_string()))?,
            );
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(p) = out.iter().find(|p| !seen.insert(p.name.as_str())) {
            return Err(LoadError(format!(
                "probe {:?} is defined twice (in the config's probes: and in --probes)",
                p.name
            )));
        }
        Ok(out)
    }

    /// Re-reads the config file and the side files; the last good state keeps running on
    /// error.
    pub async fn reload(&self) -> Result<Config, LoadError> {
        let _one = self.reloading.lock().await;
        let cfg = crate::load_config(self.config_file.as_deref())
            .map_err(|e| LoadError(e.to_string()))?;
        self.apply(&cfg)?;
        Ok(cfg)
    }

    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        self.manager.stop().await;
        self.probes.stop().await;
        self.notifier.stop().await;
    }
}

/// Every file the `rule_files` patterns match (relative to the config file, as Prometheus
/// expands them), with its text; a pattern matching nothing is not an error, an unreadable
/// file is.
fn rule_sources(
    patterns: &[String],
    config_file: Option<&Path>,
) -> Result<Vec<(String, String)>, LoadError> {
    let config_file = config_file
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    meshlens_rules::check::expand_rule_files(&config_file, patterns)
        .map_err(LoadError)?
        .into_iter()
        .map(|f| Ok((f.clone(), read(Path::new(&f))?)))
        .collect()
}

fn read(f: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(f).map_err(|e| LoadError(format!("{}: {e}", f.display())))
}

/// The rule engine's flags.
#[derive(Clone, Debug)]
pub struct RuleOptions {
    /// `--rules.alert.for-outage-tolerance`: longest downtime after which `for` state is
    /// still restored.
    pub outage_tolerance: Duration,
    /// `--rules.alert.for-grace-period`: least time an alert waits after a restart before
    /// firing.
    pub grace_period: Duration,
    /// `--rules.alert.resend-delay`.
    pub resend_delay: Duration,
    /// `--alertmanager.notification-queue-capacity`.
    pub notification_queue_capacity: usize,
    /// `--web.external-url`: the base of alerts' generator URLs.
    pub external_url: String,
    /// `--slo FILE`: objectives whose burn-rate rules are generated and loaded.
    pub slo_file: Option<PathBuf>,
    /// `--probes FILE`: probes beside the config's `probes:`.
    pub probes_file: Option<PathBuf>,
    /// `--web.enable-lifecycle`: allow `POST /-/reload`.
    pub enable_lifecycle: bool,
}

impl Default for RuleOptions {
    fn default() -> Self {
        RuleOptions {
            outage_tolerance: Duration::from_secs(3600),
            grace_period: Duration::from_secs(600),
            resend_delay: Duration::from_secs(60),
            notification_queue_capacity: 10_000,
            external_url: String::new(),
            slo_file: None,
            probes_file: None,
            enable_lifecycle: false,
        }
    }
}
