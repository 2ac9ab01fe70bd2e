//! The state shared by [`crate::Notifier`]'s handle and its sender task, and the task itself:
//! take up to [`crate::MAX_BATCH_SIZE`] alerts, post them to every Alertmanager of every set
//! at once, count the outcome, repeat while the queue holds alerts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshlens_model::Labels;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::client::{self, HttpClient, SendError};
use crate::metrics::Metrics;
use crate::{alert, Alert, AlertmanagerSet, RelabelFn, MAX_BATCH_SIZE};

#[derive(Default)]
pub(crate) struct Queue {
    pub alerts: VecDeque<Alert>,
    /// Set by `stop`: the task drains what is queued and ends; `send` drops from then on.
    pub stopping: bool,
}

/// What `send` applies to every alert; replaced whole on reload.
pub(crate) struct LabelOptions {
    pub external_labels: Labels,
    pub relabel: Option<RelabelFn>,
}

/// A set ready to send to: its push URLs and its client. A client that could not be built
/// (an unreadable CA file, say) is kept as its error, so every batch counts an error for
/// the set's Alertmanagers instead of the set vanishing silently.
pub(crate) struct ActiveSet {
    pub cfg: AlertmanagerSet,
    pub urls: Vec<String>,
    pub client: Result<HttpClient, String>,
}

pub(crate) struct Shared {
    pub queue: Mutex<Queue>,
    pub capacity: usize,
    pub options: RwLock<Arc<LabelOptions>>,
    pub sets: RwLock<Arc<Vec<Arc<ActiveSet>>>>,
    /// Woken by `send` and `stop`; a wake-up with no waiter is kept for the next wait, so
    /// none is lost between the task's "queue empty" check and its wait.
    pub more: Notify,
    pub metrics: Metrics,
    /// Alerts of the batch being posted, so `stop` can count them if it must abort the post.
    pub in_flight: AtomicUsize,
}

impl Shared {
    /// The oldest alerts, at most one batch; `None` when the queue is empty.
    fn next_batch(&self) -> Result<Option<Vec<Alert>>, Stopped> {
        let mut q = self.queue.lock();
        if q.alerts.is_empty() {
            return if q.stopping { Err(Stopped) } else { Ok(None) };
        }
        let n = q.alerts.len().min(MAX_BATCH_SIZE);
        self.in_flight.store(n, Ordering::SeqCst);
        Ok(Some(q.alerts.drain(..n).collect()))
    }

    /// How long `stop` waits for the queue to drain: one request's timeout (the longest
    /// set's) and a second, at most 30 s.
    pub fn drain_limit(&self) -> Duration {
        let longest = self
            .sets
            .read()
            .iter()
            .map(|s| s.cfg.timeout)
            .max()
            .unwrap_or_default();
        (longest + Duration::from_secs(1)).min(Duration::from_secs(30))
    }
}

struct Stopped;

/// The sender task; ends once stopping and the queue is empty.
pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        match shared.next_batch() {
            Err(Stopped) => return,
            Ok(None) => shared.more.notified().await,
            Ok(Some(batch)) => {
                send_all(&shared, batch).await;
                shared.in_flight.store(0, Ordering::SeqCst);
            }
        }
    }
}

/// Posts one batch to every Alertmanager concurrently. The batch is dropped (and counted)
/// only when no Alertmanager took it, as Prometheus does; there is no retry of a batch, the
/// rule engine re-sends active alerts on its own schedule.
async fn send_all(shared: &Shared, alerts: Vec<Alert>) {
    let n = alerts.len();
    let sets = shared.sets.read().clone();
    let payload = match alert::encode(&alerts) {
        Ok(p) => Bytes::from(p),
        Err(e) => {
            tracing::error!(error = %e, count = n, "encoding alerts failed");
            shared.metrics.dropped(n);
            return;
        }
    };
    let mut tasks = JoinSet::new();
    for set in sets.iter() {
        for url in &set.urls {
            let (set, url, payload) = (set.clone(), url.clone(), payload.clone());
            tasks.spawn(async move {
                let begin = Instant::now();
                let res = match &set.client {
                    Ok(c) => client::post(c, &url, &set.cfg.auth, payload, set.cfg.timeout).await,
                    Err(e) => Err(SendError::Transport(format!("client setup failed: {e}"))),
                };
                (url, res, begin.elapsed())
            });
        }
    }
    let mut delivered = 0usize;
    while let Some(done) = tasks.join_next().await {
        let Ok((url, res, took)) = done else { continue };
        shared.metrics.attempt(&url, n, res.is_ok(), took);
        match res {
            Ok(()) => delivered += 1,
            Err(e) => {
                tracing::error!(alertmanager = %url, count = n, error = %e, "error sending alerts")
            }
        }
    }
    if delivered == 0 {
        shared.metrics.dropped(n);
    }
}
