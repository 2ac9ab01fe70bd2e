//! Hot reload: the config directory is polled (file names, sizes and mtimes) every interval;
//! on a change it is loaded and compiled, and only a good result replaces the table. A bad
//! one is logged with file, line and reason, counted, and shown at the admin `/config`
//! endpoint, while the last good table keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshlens_mesh::{ConfigError, MeshConfig};
use parking_lot::RwLock;
use serde::Serialize;
use tokio::sync::watch;

use super::compile::{compile, CompileContext};
use super::table::{StateRegistry, Table};
use crate::telemetry::metrics::Metrics;

/// The state of the config as the admin endpoint reports it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ConfigStatus {
    /// Whether the last load attempt was accepted.
    pub ok: bool,
    /// Loads accepted so far (the first included).
    pub generation: u64,
    /// Objects in the serving config.
    pub objects: usize,
    /// Objects of other kinds that were skipped, as `file:line kind name`.
    pub ignored: Vec<String>,
    /// Errors of the last rejected load (empty after a good one).
    pub errors: Vec<ConfigError>,
    /// Unix seconds of the last load attempt.
    pub last_attempt_unix: u64,
}

/// The serving table and everything reloading needs.
pub struct ConfigState {
    pub dir: PathBuf,
    pub table: RwLock<Arc<Table>>,
    pub status: RwLock<ConfigStatus>,
    pub registry: StateRegistry,
    pub namespace: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// The Gateway served (`ns/name`); `None` for a sidecar.
    pub gateway: Option<String>,
    pub metrics: Arc<Metrics>,
    /// The directory as of the last load, taken before reading it so that no change made
    /// during a load goes unnoticed.
    seen: parking_lot::Mutex<Fingerprint>,
}

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

impl ConfigState {
    /// First load; errors are returned, not served around.
    pub fn load(
        dir: PathBuf,
        namespace: String,
        labels: std::collections::BTreeMap<String, String>,
        gateway: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Result<ConfigState, Vec<ConfigError>> {
        let registry = StateRegistry::default();
        let seen = parking_lot::Mutex::new(fingerprint(&dir));
        let ctx = CompileContext {
            namespace: &namespace,
            labels: &labels,
            registry: &registry,
            gateway: gateway.as_deref(),
        };
        let (table, status) = load_and_compile(&dir, &ctx)?;
        metrics
            .counters
            .config_reload_success
            .fetch_add(1, Ordering::Relaxed);
        metrics
            .counters
            .config_last_reload_ok
            .store(1, Ordering::Relaxed);
        Ok(ConfigState {
            dir,
            table: RwLock::new(Arc::new(table)),
            status: RwLock::new(ConfigStatus {
                generation: 1,
                ..status
            }),
            registry,
            namespace,
            labels,
            gateway,
            metrics,
            seen,
        })
    }

    /// Reloads when the directory changed since the last load.
    pub fn reload_if_changed(&self) -> Option<bool> {
        self.take_change().then(|| self.reload())
    }

    /// Whether the directory changed since it was last looked at (a directory listing and a
    /// stat per file: cheap enough to run on a serving thread).
    pub fn take_change(&self) -> bool {
        let now = fingerprint(&self.dir);
        let mut seen = self.seen.lock();
        if *seen == now {
            return false;
        }
        *seen = now;
        true
    }

    pub fn table(&self) -> Arc<Table> {
        self.table.read().clone()
    }

    /// Reloads now; returns whether the new config was accepted.
    pub fn reload(&self) -> bool {
        let c = &self.metrics.counters;
        let ctx = CompileContext {
            namespace: &self.namespace,
            labels: &self.labels,
            registry: &self.registry,
            gateway: self.gateway.as_deref(),
        };
        match load_and_compile(&self.dir, &ctx) {
            Ok((table, status)) => {
                *self.table.write() = Arc::new(table);
                let mut s = self.status.write();
                let generation = s.generation + 1;
                *s = ConfigStatus {
                    generation,
                    ..status
                };
                c.config_reload_success.fetch_add(1, Ordering::Relaxed);
                c.config_last_reload_ok.store(1, Ordering::Relaxed);
                c.config_errors.store(0, Ordering::Relaxed);
                tracing::info!(dir = %self.dir.display(), generation, "mesh config reloaded");
                true
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!(file = %e.file.display(), line = e.line, reason = %e.reason, "mesh config rejected; the previous config keeps serving");
                }
                c.config_reload_failure.fetch_add(1, Ordering::Relaxed);
                c.config_last_reload_ok.store(0, Ordering::Relaxed);
                c.config_errors
                    .store(errors.len() as u64, Ordering::Relaxed);
                let mut s = self.status.write();
                s.ok = false;
                s.errors = errors;
                s.last_attempt_unix = unix_now();
                false
            }
        }
    }
}

fn load_and_compile(
    dir: &Path,
    ctx: &CompileContext<'_>,
) -> Result<(Table, ConfigStatus), Vec<ConfigError>> {
    let cfg = MeshConfig::load_dir(dir)?;
    let table = compile(&cfg, ctx)?;
    for i in &cfg.ignored {
        tracing::info!(source = %i.source, kind = %i.kind, name = %i.name, "{}", i.note);
    }
    let status = ConfigStatus {
        ok: true,
        generation: 0,
        objects: cfg.len(),
        ignored: cfg
            .ignored
            .iter()
            .map(|i| format!("{} {} {}", i.source, i.kind, i.name))
            .collect(),
        errors: Vec::new(),
        last_attempt_unix: unix_now(),
    };
    Ok((table, status))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A cheap picture of the directory: (path, size, mtime) of each config file.
fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(p);
            } else if meshlens_mesh::is_config_file(&p) {
                out.push((p, md.len(), md.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

/// Polls the directory until `shutdown`; reloads on any change.
pub fn spawn_watcher(
    state: Arc<ConfigState>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            // Only a change costs a blocking thread (parsing and compiling): an idle proxy
            // then keeps no thread (and its allocator arena) alive for the polling.
            if state.take_change() {
                let s = state.clone();
                let _ = tokio::task::spawn_blocking(move || s.reload()).await;
            }
        }
    })
}
