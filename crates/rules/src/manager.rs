//! The server's rule engine: every group on its own tokio timer, reloads that keep the
//! alert state of unchanged rules, and the APIs' and self-metrics' views.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshlens_model::time::now_ms;
use meshlens_model::{Labels, MetricReader, MetricWriter};
use meshlens_notifier::Alert as Notification;
use meshlens_promql::Engine;
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::group::{millis, GroupStats};
use crate::views::RuleView;
use crate::{parse_rule_file, EvalContext, Group, GroupSpec, RuleFileError};

#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// `global.external_labels`, for templates (the notifier adds them to alerts).
    pub external_labels: BTreeMap<String, String>,
    /// `--web.external-url`, for templates and generator URLs.
    pub external_url: String,
    /// `global.evaluation_interval`, for groups without their own.
    pub default_interval: Duration,
    /// `--rules.alert.for-outage-tolerance`.
    pub outage_tolerance: Duration,
    /// `--rules.alert.for-grace-period`.
    pub grace_period: Duration,
    /// `--rules.alert.resend-delay`.
    pub resend_delay: Duration,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            default_interval: Duration::from_secs(60),
            outage_tolerance: Duration::from_secs(3600),
            grace_period: Duration::from_secs(600),
            resend_delay: Duration::from_secs(60),
        }
    }
}

/// Where alerts due for sending go (the notifier, or a test's collector).
pub trait AlertSink: Send + Sync {
    fn send(&self, alerts: Vec<Notification>);
}

impl AlertSink for meshlens_notifier::Notifier {
    fn send(&self, alerts: Vec<Notification>) {
        meshlens_notifier::Notifier::send(self, alerts)
    }
}

/// `type=alert` / `type=record` of `/api/v1/rules`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Alerting,
    Recording,
}

impl RuleKind {
    /// The API's `type` parameter (case-insensitive, as Prometheus); `None` for anything
    /// else, which Prometheus answers with 400 `bad_data`
    /// (`invalid parameter "type": not supported value "x"`).
    pub fn from_param(s: &str) -> Option<RuleKind> {
        match s.to_ascii_lowercase().as_str() {
            "alert" => Some(RuleKind::Alerting),
            "record" => Some(RuleKind::Recording),
            _ => None,
        }
    }
}

/// `/api/v1/rules` filters: `type`, `rule_name[]`, `rule_group[]`, `file[]` (empty: all).
#[derive(Clone, Debug, Default)]
pub struct RulesFilter {
    pub kind: Option<RuleKind>,
    pub rule_names: Vec<String>,
    pub groups: Vec<String>,
    pub files: Vec<String>,
}

/// What the APIs show of a group, refreshed after every evaluation so they never wait for
/// one.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub name: String,
    pub file: String,
    pub interval: Duration,
    pub limit: usize,
    pub rules: Vec<RuleView>,
    pub eval_duration: Duration,
    pub last_eval: Option<SystemTime>,
    pub stats: GroupStats,
}

impl Snapshot {
    fn of(g: &Group) -> Snapshot {
        let (eval_duration, last_eval) = g.last_evaluation();
        Snapshot {
            name: g.spec.name.clone(),
            file: g.spec.file.clone(),
            interval: g.interval,
            limit: g.spec.limit,
            rules: g.rule_views(),
            eval_duration,
            last_eval,
            stats: g.stats.clone(),
        }
    }
}

pub(crate) struct Slot {
    group: Arc<Mutex<Group>>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Set (under the group's lock) when the group is replaced or removed: no evaluation
    /// runs after that.
    stopped: AtomicBool,
    stop_tx: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Slot {
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().clone()
    }
}

type GroupKey = (String, String);

struct State {
    groups: BTreeMap<GroupKey, Arc<Slot>>,
    loaded_once: bool,
    stopped: bool,
}

pub struct RuleManager {
    opts: Arc<ManagerOptions>,
    engine: Arc<Engine>,
    reader: Arc<dyn MetricReader>,
    writer: Arc<dyn MetricWriter>,
    sink: Option<Arc<dyn AlertSink>>,
    runtime: Option<Handle>,
    state: Mutex<State>,
    shutdown_tx: watch::Sender<bool>,
}

impl RuleManager {
    /// Creates the manager; groups start with [`RuleManager::load`]. Call inside the tokio
    /// runtime that should run the groups.
    pub fn new(
        opts: ManagerOptions,
        engine: Arc<Engine>,
        reader: Arc<dyn MetricReader>,
        writer: Arc<dyn MetricWriter>,
        sink: Option<Arc<dyn AlertSink>>,
    ) -> Arc<RuleManager> {
        Arc::new(RuleManager {
            opts: Arc::new(opts),
            engine,
            reader,
            writer,
            sink,
            runtime: Handle::try_current().ok(),
            state: Mutex::new(State {
                groups: BTreeMap::new(),
                loaded_once: false,
                stopped: false,
            }),
            shutdown_tx: watch::channel(false).0,
        })
    }

    /// Parses every source (name shown as the group's file, text); all-or-nothing: on any
    /// error nothing changes and the old groups keep running. Unchanged groups keep running
    /// untouched; changed ones take over the alert state of their predecessor
    /// ([`Group::copy_state_from`]); removed ones have their series marked stale two
    /// intervals later. Each group runs on its own timer, offset within its interval by a
    /// hash of its name and file, as Prometheus spreads them.
    pub fn load(
        self: &Arc<Self>,
        sources: Vec<(String, String)>,
    ) -> Result<(), Vec<RuleFileError>> {
        let mut errors = Vec::new();
        let mut specs = Vec::new();
        for (name, text) in &sources {
            match parse_rule_file(name, text) {
                Ok(f) => specs.extend(f.groups),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut state = self.state.lock();
        if state.stopped {
            return Ok(());
        }
        let first_load = !state.loaded_once;
        state.loaded_once = true;
        let mut old = std::mem::take(&mut state.groups);
        let mut next = BTreeMap::new();
        // A file given twice: its groups once (the last copy wins, as in Prometheus).
        let specs: BTreeMap<GroupKey, GroupSpec> = specs
            .into_iter()
            .map(|s| ((s.file.clone(), s.name.clone()), s))
            .collect();
        for (key, spec) in specs {
            let mut group = Group::new(spec, self.opts.default_interval);
            if let Some(prev) = old.remove(&key) {
                let same = {
                    let g = prev.group.lock();
                    g.spec == group.spec && g.interval == group.interval
                };
                if same {
                    next.insert(key, prev);
                    continue;
                }
                let g = prev.group.lock();
                prev.stopped.store(true, Ordering::SeqCst);
                let _ = prev.stop_tx.send(true);
                group.copy_state_from(&g);
            } else if first_load {
                group.await_restore();
            }
            let slot = self.start(group, first_load);
            next.insert(key, slot);
        }
        for (_, slot) in old {
            self.retire(slot);
        }
        state.groups = next;
        Ok(())
    }

    fn start(self: &Arc<Self>, group: Group, restore: bool) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            snapshot: RwLock::new(Arc::new(Snapshot::of(&group))),
            group: Arc::new(Mutex::new(group)),
            stopped: AtomicBool::new(false),
            stop_tx: watch::channel(false).0,
            task: Mutex::new(None),
        });
        match self.runtime.clone().or_else(|| Handle::try_current().ok()) {
            Some(rt) => {
                let task = rt.spawn(run(self.clone(), slot.clone(), restore));
                *slot.task.lock() = Some(task);
            }
            None => tracing::error!("rule manager outside a tokio runtime; groups will not run"),
        }
        slot
    }

    /// Stops a removed group and, two intervals later (unless the manager stops first),
    /// marks its series stale.
    fn retire(&self, slot: Arc<Slot>) {
        let interval = {
            let g = slot.group.lock();
            slot.stopped.store(true, Ordering::SeqCst);
            g.interval
        };
        let _ = slot.stop_tx.send(true);
        let Some(rt) = self.runtime.clone().or_else(|| Handle::try_current().ok()) else {
            return;
        };
        let writer = self.writer.clone();
        let mut shutdown = self.shutdown_tx.subscribe();
        rt.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(interval * 2) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let _ = tokio::task::spawn_blocking(move || {
                let g = slot.group.lock();
                g.mark_all_stale(&*writer, now_ms());
            })
            .await;
        });
    }

    /// Stops every group, waiting for evaluations in progress to finish.
    pub async fn stop(&self) {
        let _ = self.shutdown_tx.send(true);
        let slots: Vec<Arc<Slot>> = {
            let mut st = self.state.lock();
            st.stopped = true;
            std::mem::take(&mut st.groups).into_values().collect()
        };
        for slot in &slots {
            slot.stopped.store(true, Ordering::SeqCst);
            let _ = slot.stop_tx.send(true);
        }
        for slot in slots {
            let task = slot.task.lock().take();
            if let Some(t) = task {
                let _ = t.await;
            }
        }
    }

    /// The current groups, ordered by file then name.
    pub(crate) fn snapshots(&self) -> Vec<Arc<Snapshot>> {
        let slots: Vec<Arc<Slot>> = self.state.lock().groups.values().cloned().collect();
        slots.iter().map(|s| s.snapshot()).collect()
    }

    /// `data` of `GET /api/v1/rules`.
    pub fn rules_json(&self, filter: &RulesFilter) -> serde_json::Value {
        crate::json::rules(&self.snapshots(), filter)
    }

    /// `data` of `GET /api/v1/alerts`.
    pub fn alerts_json(&self) -> serde_json::Value {
        crate::json::alerts(&self.snapshots())
    }

    /// Prometheus's `prometheus_rule_*` metrics, in the text exposition format.
    pub fn render_metrics(&self, out: &mut String) {
        crate::metrics::render(&self.snapshots(), out)
    }
}

/// One group's timer loop.
async fn run(mgr: Arc<RuleManager>, slot: Arc<Slot>, mut restore: bool) {
    let mut stop = slot.stop_tx.subscribe();
    let (interval_ms, key_hash) = {
        let g = slot.group.lock();
        let h = Labels::from_pairs([
            ("name", g.spec.name.as_str()),
            ("file", g.spec.file.as_str()),
        ])
        .stable_hash();
        (millis(g.interval).max(1), h)
    };
    let offset = (key_hash % interval_ms as u64) as i64;
    let now = now_ms();
    let mut next = (now - offset).div_euclid(interval_ms) * interval_ms + offset + interval_ms;
    loop {
        let wait = next - now_ms();
        if wait > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        if slot.stopped.load(Ordering::SeqCst) {
            return;
        }
        let missed = ((now_ms() - next) / interval_ms).max(0);
        let ts = next + missed * interval_ms;
        if missed > 0 {
            tracing::warn!(missed, "rule group evaluation missed its interval");
        }
        let (m, s, do_restore) = (mgr.clone(), slot.clone(), restore);
        let res =
            tokio::task::spawn_blocking(move || iterate(&m, &s, ts, missed, do_restore)).await;
        restore = false;
        match res {
            Ok(Some(alerts)) => {
                if let (Some(sink), false) = (&mgr.sink, alerts.is_empty()) {
                    sink.send(alerts);
                }
            }
            Ok(None) => return,
            Err(e) => tracing::error!(error = %e, "rule group evaluation task failed"),
        }
        next = ts + interval_ms;
    }
}

/// One iteration, on a blocking thread: evaluate, restore `for` state after the first,
/// collect the alerts to send, publish the snapshot. `None` once the group is stopped.
fn iterate(
    mgr: &RuleManager,
    slot: &Slot,
    ts: i64,
    missed: i64,
    restore: bool,
) -> Option<Vec<Notification>> {
    let mut g = slot.group.lock();
    if slot.stopped.load(Ordering::SeqCst) {
        return None;
    }
    let ctx = EvalContext {
        engine: &mgr.engine,
        reader: &*mgr.reader,
        writer: &*mgr.writer,
        external_labels: &mgr.opts.external_labels,
        external_url: &mgr.opts.external_url,
    };
    g.stats.iterations += 1 + missed as u64;
    g.stats.missed += missed as u64;
    g.eval(&ctx, ts);
    if restore {
        g.restore_for_state(&ctx, ts, mgr.opts.outage_tolerance, mgr.opts.grace_period);
    }
    let alerts = g.alerts_to_send(ts, mgr.opts.resend_delay, &mgr.opts.external_url);
    *slot.snapshot.write() = Arc::new(Snapshot::of(&g));
    Some(alerts)
}

impl Group {
    /// Writes stale markers for every series the group's rules last wrote.
    pub(crate) fn mark_all_stale(&self, writer: &dyn MetricWriter, ts: i64) {
        let series: HashSet<&Labels> = self
            .rules
            .iter()
            .flat_map(|r| r.series_prev.iter())
            .chain(self.stale_series.iter())
            .collect();
        if series.is_empty() {
            return;
        }
        let batch: Vec<meshlens_model::TimeSeries> = series
            .into_iter()
            .map(|l| meshlens_model::TimeSeries {
                labels: l.clone(),
                samples: vec![meshlens_model::Sample::new(ts, meshlens_model::STALE_NAN)],
            })
            .collect();
        if let Err(e) = writer.append(&batch) {
            tracing::warn!(error = %e, "marking a removed group's series stale failed");
        }
    }
}
