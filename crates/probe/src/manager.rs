//! Runs the probes: one task and timer per (probe, target), its series appended to the
//! metric writer after every probe. Like a Prometheus scrape loop it marks series stale when
//! they disappear (a certificate series after a failed handshake, or a removed target), and
//! it spreads first probes over the interval by a hash of job and target so they never all
//! fire together.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use meshlens_model::time::now_ms;
use meshlens_model::{Labels, MetricWriter, Sample, TimeSeries, STALE_NAN};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::ProbeConfig;
use crate::probe_once;

/// Runs every configured probe until [`ProbeManager::stop`].
pub struct ProbeManager {
    runtime: Option<tokio::runtime::Handle>,
    writer: Arc<dyn MetricWriter>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tasks: HashMap<(String, String), Task>,
    stopped: bool,
}

struct Task {
    cfg: Arc<ProbeConfig>,
    /// Sends whether to write staleness markers on the way out.
    stop: oneshot::Sender<bool>,
    join: JoinHandle<()>,
}

impl ProbeManager {
    /// Starts one timer per target. Call inside a tokio runtime: its handle is kept, so
    /// [`update`](Self::update) may then be called from any thread.
    pub fn start(probes: Vec<ProbeConfig>, writer: Arc<dyn MetricWriter>) -> ProbeManager {
        let runtime = tokio::runtime::Handle::try_current().ok();
        if runtime.is_none() {
            tracing::error!("probe manager started outside a tokio runtime; probes will not run");
        }
        let manager = ProbeManager {
            runtime,
            writer,
            state: Mutex::new(State::default()),
        };
        manager.update(probes);
        manager
    }

    /// Applies a reloaded config: targets whose probe config is unchanged keep their timers;
    /// removed ones stop and mark their series stale; new or changed ones start.
    pub fn update(&self, probes: Vec<ProbeConfig>) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        let mut state = self.lock();
        if state.stopped {
            return;
        }
        let mut wanted: HashMap<(String, String), Arc<ProbeConfig>> = HashMap::new();
        for p in probes {
            let cfg = Arc::new(p);
            for t in &cfg.targets {
                wanted.insert((cfg.name.clone(), t.clone()), cfg.clone());
            }
        }
        let old: Vec<(String, String)> = state.tasks.keys().cloned().collect();
        for key in old {
            let keep = wanted
                .get(&key)
                .is_some_and(|c| state.tasks.get(&key).is_some_and(|t| *t.cfg == **c));
            if keep {
                wanted.remove(&key);
            } else if let Some(task) = state.tasks.remove(&key) {
                // A replaced target's new task writes the same series: no markers then.
                let _ = task.stop.send(!wanted.contains_key(&key));
            }
        }
        for ((job, target), cfg) in wanted {
            let (stop, stop_rx) = oneshot::channel();
            let join = runtime.spawn(run_target(
                cfg.clone(),
                target.clone(),
                self.writer.clone(),
                stop_rx,
            ));
            state.tasks.insert((job, target), Task { cfg, stop, join });
        }
    }

    /// Stops every probe and waits for in-flight ones to end; no staleness markers are
    /// written (as Prometheus on shutdown), and later updates are ignored.
    pub async fn stop(&self) {
        let tasks: Vec<Task> = {
            let mut state = self.lock();
            state.stopped = true;
            state.tasks.drain().map(|(_, t)| t).collect()
        };
        let mut joins = Vec::with_capacity(tasks.len());
        for t in tasks {
            let _ = t.stop.send(false);
            joins.push(t.join);
        }
        for j in joins {
            let _ = j.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// When a target's first probe runs: a stable spread over the interval.
fn first_offset(job: &str, target: &str, interval: Duration) -> Duration {
    let hash = Labels::from_pairs([("job", job), ("instance", target)]).stable_hash();
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(hash % ms)
}

async fn run_target(
    cfg: Arc<ProbeConfig>,
    target: String,
    writer: Arc<dyn MetricWriter>,
    mut stop: oneshot::Receiver<bool>,
) {
    let start = tokio::time::Instant::now() + first_offset(&cfg.name, &target, cfg.interval);
    let mut ticker = tokio::time::interval_at(start, cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last: HashSet<Labels> = HashSet::new();
    let mut failing = false;
    let mark_stale = loop {
        tokio::select! {
            r = &mut stop => break r.unwrap_or(false),
            _ = ticker.tick() => {}
        }
        let ts = now_ms();
        let mut series = tokio::select! {
            r = &mut stop => break r.unwrap_or(false),
            s = probe_once(&cfg, &target, ts) => s,
        };
        let now: HashSet<Labels> = series.iter().map(|s| s.labels.clone()).collect();
        series.extend(stale(last.difference(&now), ts));
        last = now;
        // Logged when storing starts or stops failing, not at every interval.
        match append(&writer, series).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(job = %cfg.name, target = %target, "storing probe results works again");
            }
            Ok(()) => {}
            Err(e) if failing => {
                tracing::debug!(job = %cfg.name, target = %target, error = %e, "storing probe results failed")
            }
            Err(e) => {
                failing = true;
                tracing::warn!(job = %cfg.name, target = %target, error = %e, "storing probe results failed");
            }
        }
    };
    if mark_stale && !last.is_empty() {
        if let Err(e) = append(&writer, stale(last.iter(), now_ms()).collect()).await {
            tracing::warn!(job = %cfg.name, target = %target, error = %e, "storing staleness markers failed");
        }
    }
}

fn stale<'a>(
    labels: impl Iterator<Item = &'a Labels>,
    ts: i64,
) -> impl Iterator<Item = TimeSeries> {
    labels
        .map(move |l| TimeSeries {
            labels: l.clone(),
            samples: vec![Sample::new(ts, STALE_NAN)],
        })
        .collect::<Vec<_>>()
        .into_iter()
}

/// Appends off the async threads (appends may wait for fsync).
async fn append(writer: &Arc<dyn MetricWriter>, batch: Vec<TimeSeries>) -> Result<(), String> {
    let writer = writer.clone();
    match tokio::task::spawn_blocking(move || writer.append(&batch)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("interrupted: {e}")),
    }
}
