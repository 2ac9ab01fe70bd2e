//! Delivery of alerts to Alertmanager: a bounded queue, batches, the v2 API.
//!
//! [`Notifier::send`] only enqueues (after adding external labels and applying the alert
//! relabeling), so the rule engine never waits on the network. One sender task takes
//! batches of at most [`MAX_BATCH_SIZE`] alerts and posts each batch to every Alertmanager of
//! every [`AlertmanagerSet`] at once (`POST {scheme}://{address}{path_prefix}/api/v2/alerts`).
//! A full queue drops its oldest alerts; a batch no Alertmanager accepted is dropped. Both
//! are counted under Prometheus 2.42's metric names ([`Notifier::render_metrics`]), and so
//! is every failed request. Semantics follow Prometheus's `notifier` package.

mod alert;
mod client;
mod metrics;
mod sender;
mod set;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;

use meshlens_model::Labels;
use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;

pub use alert::Alert;
pub use set::{AlertmanagerSet, AmAuth, AmSecret, AmTls};

use sender::{ActiveSet, LabelOptions, Queue, Shared};

/// Prometheus's `--alertmanager.notification-queue-capacity` default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// The most alerts in one request, as in Prometheus.
pub const MAX_BATCH_SIZE: usize = 64;

/// `alert_relabel_configs` as a function: the labels after relabeling, `None` to drop.
pub type RelabelFn = Arc<dyn Fn(Labels) -> Option<Labels> + Send + Sync>;

/// Why a set cannot be used as configured.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("unsupported Alertmanager API version {0:?}; only \"v2\" is supported")]
    ApiVersion(String),
    #[error("unsupported scheme {0:?}; use http or https")]
    Scheme(String),
    #[error("reading tls_config.{field} {path}: {source}")]
    Read {
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tls_config.{field} {path}: {reason}")]
    Pem {
        field: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("tls_config: cert_file and key_file must be configured together")]
    CertWithoutKey,
    #[error("tls_config.server_name {0:?} is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
}

/// What the notifier does to every alert, and how many it holds.
#[derive(Clone)]
pub struct NotifierOptions {
    /// The most alerts waiting; beyond it the oldest are dropped.
    pub queue_capacity: usize,
    /// `global.external_labels`: added to alerts that lack the label.
    pub external_labels: Labels,
    /// `alerting.alert_relabel_configs`, applied after the external labels.
    pub relabel: Option<RelabelFn>,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            external_labels: Labels::empty(),
            relabel: None,
        }
    }
}

/// The notification queue and its sender task.
pub struct Notifier {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Notifier {
    /// Creates the notifier and spawns its sender on the current tokio runtime. Called
    /// outside a runtime it logs an error and never sends (alerts queue, then drop).
    pub fn start(opts: NotifierOptions) -> Arc<Notifier> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            capacity: opts.queue_capacity,
            options: RwLock::new(Arc::new(LabelOptions {
                external_labels: opts.external_labels,
                relabel: opts.relabel,
            })),
            sets: RwLock::new(Arc::new(Vec::new())),
            more: tokio::sync::Notify::new(),
            metrics: metrics::Metrics::default(),
            in_flight: Default::default(),
        });
        let task = match tokio::runtime::Handle::try_current() {
            Ok(rt) => Some(rt.spawn(sender::run(shared.clone()))),
            Err(e) => {
                tracing::error!(error = %e, "notifier started outside a tokio runtime; alerts will not be sent");
                None
            }
        };
        Arc::new(Notifier {
            shared,
            task: Mutex::new(task),
        })
    }

    /// Replaces every set (on reload, or when discovery changes the addresses). Batches
    /// already in flight finish against the old sets. A set with a bad scheme or API version
    /// is left out and logged; one whose TLS files cannot be read is kept and counts an error
    /// per batch, so the failure shows in the metrics.
    pub fn set_alertmanagers(&self, sets: Vec<AlertmanagerSet>) {
        let mut active = Vec::with_capacity(sets.len());
        for (i, cfg) in sets.into_iter().enumerate() {
            let (urls, bad) = match cfg.urls() {
                Ok(u) => u,
                Err(e) => {
                    tracing::error!(set = i, error = %e, "alertmanager set ignored");
                    continue;
                }
            };
            for addr in bad {
                tracing::warn!(set = i, address = %addr, "invalid alertmanager address ignored");
            }
            let client = client::build(&cfg.tls).map_err(|e| {
                tracing::error!(set = i, error = %e, "alertmanager client setup failed");
                e.to_string()
            });
            for url in &urls {
                self.shared.metrics.register(url);
            }
            active.push(Arc::new(ActiveSet { cfg, urls, client }));
        }
        *self.shared.sets.write() = Arc::new(active);
    }

    /// Replaces the external labels and the alert relabeling (on reload); alerts already
    /// queued keep the labels they were queued with.
    pub fn set_options(&self, external_labels: Labels, relabel: Option<RelabelFn>) {
        *self.shared.options.write() = Arc::new(LabelOptions {
            external_labels,
            relabel,
        });
    }

    /// Queues alerts for delivery; never waits. Each gets the external labels it lacks, then
    /// the relabeling; an alert relabeled away, or left without labels, is not queued.
    pub fn send(&self, alerts: Vec<Alert>) {
        let opts = self.shared.options.read().clone();
        let mut kept: Vec<Alert> = Vec::with_capacity(alerts.len());
        for mut a in alerts {
            if !opts.external_labels.is_empty() {
                let mut b = a.labels.builder();
                for l in opts.external_labels.iter() {
                    if a.labels.get(&l.name).is_none() {
                        b.set(l.name.clone(), l.value.clone());
                    }
                }
                a.labels = b.build();
            }
            if let Some(relabel) = &opts.relabel {
                match relabel(a.labels) {
                    Some(l) => a.labels = l,
                    None => continue,
                }
            }
            if !a.labels.is_empty() {
                kept.push(a);
            }
        }
        if kept.is_empty() {
            return;
        }
        let cap = self.shared.capacity;
        let mut dropped = 0;
        {
            let mut q = self.shared.queue.lock();
            if q.stopping {
                dropped = kept.len();
                kept.clear();
            }
            if kept.len() > cap {
                let d = kept.len() - cap;
                kept.drain(..d);
                dropped += d;
            }
            let over = (q.alerts.len() + kept.len()).saturating_sub(cap);
            q.alerts.drain(..over);
            dropped += over;
            q.alerts.extend(kept);
        }
        if dropped > 0 {
            tracing::warn!(
                num_dropped = dropped,
                "alert notification queue full or stopped, dropping alerts"
            );
            self.shared.metrics.dropped(dropped);
        }
        self.shared.more.notify_one();
    }

    /// The push URL of every Alertmanager in use, set by set, for `/api/v1/alertmanagers`.
    pub fn active_alertmanagers(&self) -> Vec<String> {
        self.shared
            .sets
            .read()
            .iter()
            .flat_map(|s| s.urls.iter().cloned())
            .collect()
    }

    /// Appends the notifier's metrics in the text exposition format.
    pub fn render_metrics(&self, out: &mut String) {
        let gauges = metrics::Gauges {
            queue_length: self.shared.queue.lock().alerts.len(),
            queue_capacity: self.shared.capacity,
            alertmanagers: self.active_alertmanagers().len(),
        };
        self.shared.metrics.render(&gauges, out);
    }

    /// Stops accepting alerts and lets the sender deliver what is queued, for at most the
    /// longest set's timeout plus a second (30 s at most); alerts still queued then are
    /// dropped and counted. Later calls return at once (without waiting for the first).
    pub async fn stop(&self) {
        let was_stopping = std::mem::replace(&mut self.shared.queue.lock().stopping, true);
        if was_stopping {
            return;
        }
        self.shared.more.notify_one();
        let task = self.task.lock().take();
        if let Some(mut task) = task {
            let limit = self.shared.drain_limit();
            if tokio::time::timeout(limit, &mut task).await.is_err() {
                task.abort();
                // Once the task has really ended, the batch it was posting is lost with it.
                let _ = task.await;
                let lost = self
                    .shared
                    .in_flight
                    .swap(0, std::sync::atomic::Ordering::SeqCst);
                tracing::warn!(?limit, "notification queue not drained in time");
                self.shared.metrics.dropped(lost);
            }
        }
        let left = {
            let mut q = self.shared.queue.lock();
            let n = q.alerts.len();
            q.alerts.clear();
            n
        };
        self.shared.metrics.dropped(left);
    }
}

impl Drop for Notifier {
    /// A notifier dropped without `stop` ends its task instead of leaking it.
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
