//! One rule group's runtime state and its evaluation: rules in order at one timestamp,
//! each rule's output written before the next rule runs, stale markers for series a rule
//! stopped producing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use meshlens_model::{
    Labels, MetricReader, MetricWriter, RejectReason, Sample, TimeSeries, STALE_NAN,
};
use meshlens_promql::{Engine, VectorSample};

use crate::alerting::AlertingRule;
use crate::recording::RecordingRule;
use crate::views::{AlertingRuleView, RecordingRuleView, RuleHealth, RuleView};
use crate::{GroupSpec, RuleSpec};

/// What evaluation reads from and writes to.
pub struct EvalContext<'a> {
    pub engine: &'a Engine,
    pub reader: &'a dyn MetricReader,
    pub writer: &'a dyn MetricWriter,
    /// For templates' `$externalLabels`.
    pub external_labels: &'a BTreeMap<String, String>,
    /// For templates' `$externalURL`.
    pub external_url: &'a str,
}

/// What one group evaluation did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupEvalOutcome {
    /// Samples the storage accepted (recording results, `ALERTS`, `ALERTS_FOR_STATE`).
    pub samples_written: usize,
    /// Rules whose evaluation or write failed.
    pub failures: usize,
    pub duration: Duration,
}

pub(crate) enum RuleKindState {
    Recording(RecordingRule),
    Alerting(AlertingRule),
}

pub(crate) struct RuleState {
    pub kind: RuleKindState,
    /// The expression as Prometheus prints it (API `query`, generator URLs).
    pub query: String,
    pub health: RuleHealth,
    pub last_error: Option<String>,
    pub eval_duration: Duration,
    pub last_eval: Option<SystemTime>,
    /// Whether the last evaluation succeeded (only then are its alerts sent).
    pub last_eval_ok: bool,
    /// Series written by the last successful evaluation, to mark stale when they vanish.
    pub series_prev: HashSet<Labels>,
}

impl RuleState {
    fn name(&self) -> &str {
        match &self.kind {
            RuleKindState::Recording(r) => &r.name,
            RuleKindState::Alerting(r) => &r.name,
        }
    }

    fn labels(&self) -> &BTreeMap<String, String> {
        match &self.kind {
            RuleKindState::Recording(r) => &r.labels,
            RuleKindState::Alerting(r) => &r.labels,
        }
    }

    /// Prometheus matches rules across reloads by name and labels.
    fn identity(&self) -> String {
        format!("{}{:?}", self.name(), self.labels())
    }
}

/// Counters the manager reports as `prometheus_rule_*`; kept with the group so a reload
/// that replaces it carries them on.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupStats {
    pub evaluations: u64,
    pub failures: u64,
    pub iterations: u64,
    pub missed: u64,
    pub last_samples: u64,
}

/// The runtime state of one group.
pub struct Group {
    pub(crate) spec: GroupSpec,
    pub(crate) interval: Duration,
    pub(crate) rules: Vec<RuleState>,
    /// Series of rules removed by a reload, marked stale at the next evaluation.
    pub(crate) stale_series: Vec<Labels>,
    pub(crate) eval_duration: Duration,
    pub(crate) last_eval: Option<SystemTime>,
    pub(crate) stats: GroupStats,
}

impl Group {
    /// Builds a group from its spec. Its alerting rules write `ALERTS` from the first
    /// evaluation on (promtool's behaviour); the server calls [`Group::await_restore`] for
    /// groups loaded at start-up, so that `for` state is restored first.
    pub fn new(spec: GroupSpec, default_interval: Duration) -> Group {
        let interval = [spec.interval.unwrap_or(default_interval), default_interval]
            .into_iter()
            .find(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(60));
        let rules = spec
            .rules
            .iter()
            .map(|r| compile(&spec.labels, r))
            .collect();
        Group {
            spec,
            interval,
            rules,
            stale_series: Vec::new(),
            eval_duration: Duration::ZERO,
            last_eval: None,
            stats: GroupStats::default(),
        }
    }

    pub fn spec(&self) -> &GroupSpec {
        &self.spec
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Duration and wall-clock start of the last evaluation.
    pub fn last_evaluation(&self) -> (Duration, Option<SystemTime>) {
        (self.eval_duration, self.last_eval)
    }

    /// Holds back `ALERTS` / `ALERTS_FOR_STATE` until [`Group::restore_for_state`] runs:
    /// what Prometheus does for the rules it loads at start-up.
    pub fn await_restore(&mut self) {
        for r in &mut self.rules {
            if let RuleKindState::Alerting(a) = &mut r.kind {
                a.restored = false;
            }
        }
    }

    /// Marks every alerting rule restored without looking at storage (promtool's
    /// `SetRestored(true)`); the default for a new group.
    pub fn mark_restored(&mut self) {
        for r in &mut self.rules {
            if let RuleKindState::Alerting(a) = &mut r.kind {
                a.restored = true;
            }
        }
    }

    fn offset_ms(&self) -> i64 {
        self.spec
            .query_offset
            .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
    }

    /// Evaluates every rule in order at `ts_ms` (queries at `ts_ms` minus `query_offset`),
    /// writes recording results and `ALERTS` / `ALERTS_FOR_STATE` at the query time, and
    /// updates state, health, last error and durations. Never panics; a rule's error is
    /// stored as its last error and counted.
    pub fn eval(&mut self, ctx: &EvalContext<'_>, ts_ms: i64) -> GroupEvalOutcome {
        let started = Instant::now();
        let wall = SystemTime::now();
        let offset = self.offset_ms();
        let limit = self.spec.limit;
        let mut out = GroupEvalOutcome::default();
        let mut produced = 0u64;
        for rule in &mut self.rules {
            let rule_started = Instant::now();
            rule.last_eval = Some(SystemTime::now());
            self.stats.evaluations += 1;
            let result = match &mut rule.kind {
                RuleKindState::Recording(r) => r.eval(ctx, ts_ms, offset, limit),
                RuleKindState::Alerting(r) => r.eval(ctx, ts_ms, offset, limit),
            };
            match result {
                Err(e) => {
                    tracing::warn!(group = %self.spec.name, rule = %rule.name(), error = %e, "evaluating rule failed");
                    rule.health = RuleHealth::Err;
                    rule.last_error = Some(e);
                    rule.last_eval_ok = false;
                    out.failures += 1;
                    self.stats.failures += 1;
                }
                Ok(samples) => {
                    rule.health = RuleHealth::Ok;
                    rule.last_error = None;
                    rule.last_eval_ok = true;
                    produced += samples.len() as u64;
                    match write(ctx.writer, rule, samples, ts_ms.saturating_sub(offset)) {
                        Ok(accepted) => out.samples_written += accepted,
                        Err(e) => {
                            tracing::warn!(group = %self.spec.name, rule = %rule.name(), error = %e, "writing rule results failed");
                            rule.health = RuleHealth::Err;
                            rule.last_error = Some(e);
                            out.failures += 1;
                            self.stats.failures += 1;
                        }
                    }
                }
            }
            rule.eval_duration = rule_started.elapsed();
        }
        if !self.stale_series.is_empty() {
            let batch = stale_batch(self.stale_series.iter(), ts_ms.saturating_sub(offset));
            if ctx.writer.append(&batch).is_ok() {
                self.stale_series.clear();
            }
        }
        self.stats.last_samples = produced;
        out.duration = started.elapsed();
        self.eval_duration = out.duration;
        self.last_eval = Some(wall);
        out
    }

    /// Carries state over from the group this one replaces (same name and file): alerts and
    /// written series of rules with the same name and labels; the series of rules that
    /// are gone are marked stale at the next evaluation.
    pub fn copy_state_from(&mut self, old: &Group) {
        self.eval_duration = old.eval_duration;
        self.last_eval = old.last_eval;
        self.stats = old.stats.clone();
        let mut by_identity: HashMap<String, VecDeque<usize>> = HashMap::new();
        for (i, r) in old.rules.iter().enumerate() {
            by_identity.entry(r.identity()).or_default().push_back(i);
        }
        for rule in &mut self.rules {
            let Some(fi) = by_identity
                .get_mut(&rule.identity())
                .and_then(VecDeque::pop_front)
            else {
                continue;
            };
            let from = &old.rules[fi];
            rule.series_prev = from.series_prev.clone();
            if let (RuleKindState::Alerting(to), RuleKindState::Alerting(f)) =
                (&mut rule.kind, &from.kind)
            {
                for (k, a) in &f.active {
                    to.active.insert(k.clone(), a.clone());
                }
            }
        }
        self.stale_series = old.stale_series.clone();
        for idxs in by_identity.values() {
            for &fi in idxs {
                self.stale_series
                    .extend(old.rules[fi].series_prev.iter().cloned());
            }
        }
    }

    /// Alerting rules in file order, with their pending and firing alerts.
    pub fn alerting_rules(&self) -> Vec<AlertingRuleView> {
        self.rule_views()
            .into_iter()
            .filter_map(|r| match r {
                RuleView::Alerting(a) => Some(a),
                RuleView::Recording(_) => None,
            })
            .collect()
    }

    /// Every rule in file order.
    pub fn rule_views(&self) -> Vec<RuleView> {
        self.rules.iter().map(view).collect()
    }
}

fn compile(group_labels: &BTreeMap<String, String>, spec: &RuleSpec) -> RuleState {
    let mut labels = group_labels.clone();
    labels.extend(spec.labels().iter().map(|(k, v)| (k.clone(), v.clone())));
    let kind = match spec {
        RuleSpec::Recording { record, expr, .. } => RuleKindState::Recording(RecordingRule {
            name: record.clone(),
            parsed: crate::eval::ParsedExpr::new(expr),
            labels,
        }),
        RuleSpec::Alerting {
            alert,
            expr,
            for_,
            keep_firing_for,
            annotations,
            ..
        } => RuleKindState::Alerting(AlertingRule::new(
            alert.clone(),
            expr.clone(),
            millis(*for_),
            millis(*keep_firing_for),
            labels,
            annotations.clone(),
        )),
    };
    RuleState {
        kind,
        query: meshlens_promql::parse(spec.expr())
            .map(|e| e.to_string())
            .unwrap_or_else(|_| spec.expr().to_string()),
        health: RuleHealth::Unknown,
        last_error: None,
        eval_duration: Duration::ZERO,
        last_eval: None,
        last_eval_ok: false,
        series_prev: HashSet::new(),
    }
}

pub(crate) fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// Writes a rule's samples, then stale markers for the series it no longer produces.
/// Returns the samples accepted; a refused write is the rule's error.
fn write(
    writer: &dyn MetricWriter,
    rule: &mut RuleState,
    samples: Vec<VectorSample>,
    stale_ts: i64,
) -> Result<usize, String> {
    let mut returned = HashSet::with_capacity(samples.len());
    let batch: Vec<TimeSeries> = samples
        .into_iter()
        .map(|s| {
            returned.insert(s.labels.clone());
            TimeSeries {
                labels: s.labels,
                samples: vec![Sample::new(s.t, s.v)],
            }
        })
        .collect();
    let mut accepted = 0;
    if !batch.is_empty() {
        let outcome = writer.append(&batch).map_err(|e| e.to_string())?;
        accepted = outcome.accepted as usize;
        if let Some(reason) = RejectReason::ALL
            .into_iter()
            .find(|r| outcome.count(*r) > 0)
        {
            // Like Prometheus: the rule is unhealthy, the rest of the batch is kept.
            rule.health = RuleHealth::Err;
            rule.last_error = Some(format!(
                "{} of {} samples refused by storage: {}",
                outcome.rejected(),
                batch.len(),
                reject_message(reason)
            ));
        }
    }
    let gone: Vec<&Labels> = rule
        .series_prev
        .iter()
        .filter(|l| !returned.contains(*l))
        .collect();
    if !gone.is_empty() {
        // Refusals of stale markers are expected (another rule may write the series).
        let _ = writer.append(&stale_batch(gone.into_iter(), stale_ts));
    }
    rule.series_prev = returned;
    Ok(accepted)
}

fn reject_message(r: RejectReason) -> &'static str {
    match r {
        RejectReason::OutOfOrder => "out of order sample",
        RejectReason::OutOfBounds => "out of bounds",
        RejectReason::Duplicate => "duplicate sample for timestamp",
        RejectReason::InvalidLabels => "invalid labels",
    }
}

fn stale_batch<'a>(series: impl Iterator<Item = &'a Labels>, ts: i64) -> Vec<TimeSeries> {
    series
        .map(|l| TimeSeries {
            labels: l.clone(),
            samples: vec![Sample::new(ts, STALE_NAN)],
        })
        .collect()
}

fn view(r: &RuleState) -> RuleView {
    match &r.kind {
        RuleKindState::Recording(rec) => RuleView::Recording(RecordingRuleView {
            name: rec.name.clone(),
            query: r.query.clone(),
            labels: rec.labels.clone(),
            health: r.health,
            last_error: r.last_error.clone(),
            evaluation_time: r.eval_duration,
            last_evaluation: r.last_eval,
        }),
        RuleKindState::Alerting(a) => RuleView::Alerting(AlertingRuleView {
            name: a.name.clone(),
            query: r.query.clone(),
            for_: Duration::from_millis(a.for_ms as u64),
            keep_firing_for: Duration::from_millis(a.keep_firing_for_ms as u64),
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            state: a.state(),
            alerts: a.active_views(),
            health: r.health,
            last_error: r.last_error.clone(),
            evaluation_time: r.eval_duration,
            last_evaluation: r.last_eval,
        }),
    }
}
