//! The rollout loop: pre-rollout webhooks, the first step, then per interval the rollout
//! webhooks and a check, until promotion, rollback or a failed edit. The loop is bounded by
//! construction: each round either raises the weight (at most max/step times), counts a failed
//! check (at most `threshold` times) or ends.

use serde_json::{json, Value};

use super::vs::{self, Target, Weights};
use super::webhook::{self, HookClient};
use super::{HookPhase, Judge, JudgeRequest, Outcome, RolloutError, RolloutReport, RolloutSpec};
use crate::events::{EventKind, EventSink, NewEvent, Severity};
use crate::judge::Verdict;
use crate::meshedit::MeshDir;

/// Runs a rollout to its end. Errors are for a rollout that cannot start (bad spec, no usable
/// VirtualService); everything after the first check of the mesh is an [`Outcome`].
pub async fn run(
    mesh: &MeshDir,
    spec: &RolloutSpec,
    judge: &dyn Judge,
    hooks: &dyn HookClient,
    events: &dyn EventSink,
) -> Result<RolloutReport, RolloutError> {
    spec.check()?;
    let target = vs::locate(mesh, spec)?;
    let mut r = Run {
        mesh,
        spec,
        hooks,
        events,
        last_good: target.weights,
        target,
        checks: 0,
        failed: 0,
    };
    let outcome = r.drive(judge).await;
    Ok(RolloutReport {
        outcome,
        service: spec.service.clone(),
        stable: spec.stable.clone(),
        canary: spec.canary.clone(),
        weights: r.last_good,
        checks: r.checks,
        failed_checks: r.failed,
        virtual_service: r.target.id(),
    })
}

struct Run<'a> {
    mesh: &'a MeshDir,
    spec: &'a RolloutSpec,
    hooks: &'a dyn HookClient,
    events: &'a dyn EventSink,
    target: Target,
    /// The weights last written successfully (at first: those found).
    last_good: Weights,
    checks: u32,
    failed: u32,
}

impl Run<'_> {
    async fn drive(&mut self, judge: &dyn Judge) -> Outcome {
        let spec = self.spec;
        let body = self.payload(HookPhase::PreRollout, "Progressing");
        let refused = webhook::call(self.hooks, spec, HookPhase::PreRollout, &body, true).await;
        if let Some(x) = refused.first() {
            let reason = format!("pre-rollout webhook {} {}", x.url, x.why);
            self.emit(
                EventKind::Rollout,
                Severity::Warning,
                format!(
                    "rollout of {} halted: {reason}; nothing changed",
                    spec.canary
                ),
                json!({"outcome": "halted", "reason": reason, "webhook": x.url}),
            );
            return Outcome::Halted { reason };
        }
        let mut weight = spec.step;
        if let Err(stop) = self.set(Weights::canary(weight)) {
            return stop;
        }
        self.emit(
            EventKind::Rollout,
            Severity::Info,
            format!(
                "rollout started: {} {} % / {} {} %",
                spec.stable,
                100 - weight,
                spec.canary,
                weight
            ),
            json!({"phase": "started"}),
        );
        loop {
            tokio::time::sleep(spec.interval).await;
            let body = self.payload(HookPhase::Rollout, "Progressing");
            let refused = webhook::call(self.hooks, spec, HookPhase::Rollout, &body, true).await;
            if let Some(x) = refused.first() {
                let reason = format!("rollout webhook {} {}", x.url, x.why);
                return self.roll_back(reason).await;
            }
            self.checks += 1;
            let req = JudgeRequest {
                service: spec.service.clone(),
                namespace: spec.namespace.clone(),
                stable: spec.stable.clone(),
                canary: spec.canary.clone(),
                weight,
                check: self.checks,
            };
            let verdict = match judge.judge(&req).await {
                Ok(a) => {
                    let score = a.report.get("score").cloned().unwrap_or(Value::Null);
                    let why = a
                        .report
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    self.emit(
                        EventKind::Verdict,
                        match a.verdict {
                            Verdict::Pass => Severity::Info,
                            _ => Severity::Warning,
                        },
                        format!(
                            "check {} at {} %: {} vs {} {}{why}",
                            self.checks,
                            weight,
                            spec.canary,
                            spec.stable,
                            verdict_word(a.verdict)
                        ),
                        json!({"verdict": a.verdict, "score": score, "report": a.report}),
                    );
                    a.verdict
                }
                Err(e) => {
                    self.emit(
                        EventKind::Verdict,
                        Severity::Warning,
                        format!("check {} at {} %: no verdict: {e}", self.checks, weight),
                        json!({"verdict": Value::Null, "error": e}),
                    );
                    // No evidence is not a pass (Flagger counts it as a failed check).
                    Verdict::Inconclusive
                }
            };
            if verdict == Verdict::Pass {
                if weight >= spec.max {
                    return self.promote().await;
                }
                weight = (weight + spec.step).min(spec.max);
                if let Err(stop) = self.set(Weights::canary(weight)) {
                    return stop;
                }
                self.emit(
                    EventKind::Rollout,
                    Severity::Info,
                    format!(
                        "rollout step: {} {} % / {} {} %",
                        spec.stable,
                        100 - weight,
                        spec.canary,
                        weight
                    ),
                    json!({"phase": "step"}),
                );
                continue;
            }
            self.failed += 1;
            if self.failed >= spec.threshold {
                let reason = format!(
                    "{} failed checks of {} allowed (last: {})",
                    self.failed,
                    spec.threshold,
                    verdict_word(verdict)
                );
                return self.roll_back(reason).await;
            }
            self.emit(
                EventKind::Rollout,
                Severity::Warning,
                format!(
                    "rollout holds {} at {} %: failed check {} of {}",
                    spec.canary, weight, self.failed, spec.threshold
                ),
                json!({"phase": "hold"}),
            );
        }
    }

    fn payload(&self, phase: HookPhase, canary_phase: &str) -> Value {
        webhook::payload(
            self.spec,
            &self.target.namespace,
            phase,
            canary_phase,
            self.last_good,
            self.failed,
        )
    }

    async fn roll_back(&mut self, reason: String) -> Outcome {
        let spec = self.spec;
        if let Err(stop) = self.set(Weights::canary(0)) {
            return stop;
        }
        self.emit(
            EventKind::Rollout,
            Severity::Critical,
            format!(
                "rollout rolled back: {} 100 % / {} 0 %: {reason}",
                spec.stable, spec.canary
            ),
            json!({"outcome": "rolledBack", "reason": reason}),
        );
        self.post_rollout("Failed").await;
        Outcome::RolledBack { reason }
    }

    async fn promote(&mut self) -> Outcome {
        let spec = self.spec;
        let all = Weights {
            stable: 0,
            canary: 100,
        };
        if let Err(stop) = self.set(all) {
            return stop;
        }
        self.emit(
            EventKind::Rollout,
            Severity::Info,
            format!(
                "rollout promoted: {} 100 % after {} checks",
                spec.canary, self.checks
            ),
            json!({"outcome": "promoted"}),
        );
        self.post_rollout("Succeeded").await;
        Outcome::Promoted
    }

    async fn post_rollout(&mut self, canary_phase: &str) {
        let body = self.payload(HookPhase::PostRollout, canary_phase);
        let refused =
            webhook::call(self.hooks, self.spec, HookPhase::PostRollout, &body, false).await;
        for x in refused {
            self.emit(
                EventKind::Rollout,
                Severity::Warning,
                format!("post-rollout webhook {} {}", x.url, x.why),
                json!({"webhook": x.url}),
            );
        }
    }

    /// Writes `w`; on failure restores the last good weights and returns the outcome.
    fn set(&mut self, w: Weights) -> Result<(), Outcome> {
        let failure = match vs::current(self.mesh, self.spec, &self.target) {
            Ok(now) if now != self.last_good => format!(
                "VirtualService {} was changed outside the rollout (weights now {now}, the \
                 rollout last wrote {})",
                self.target.id(),
                self.last_good
            ),
            Ok(_) => match vs::write(self.mesh, self.spec, &self.target, w) {
                Ok(_) => {
                    self.last_good = w;
                    return Ok(());
                }
                Err(e) => format!("writing weights {w} failed: {e}"),
            },
            Err(e) => format!("reading VirtualService {}: {e}", self.target.id()),
        };
        let good = self.last_good;
        let (restored, note) = match vs::write(self.mesh, self.spec, &self.target, good) {
            Ok(Some(_)) => (true, format!("restored the last good weights {good}")),
            Ok(None) => (true, format!("the last good weights {good} are in place")),
            Err(e) => (
                false,
                format!("restoring the last good weights {good} failed: {e}"),
            ),
        };
        let reason = format!("{failure}; {note}");
        self.emit(
            EventKind::Rollout,
            Severity::Critical,
            format!("rollout stopped: {reason}"),
            json!({"outcome": "stopped", "reason": reason, "restored": restored}),
        );
        Err(Outcome::Stopped { reason, restored })
    }

    fn emit(&self, kind: EventKind, severity: Severity, title: String, extra: Value) {
        let spec = self.spec;
        let mut detail = json!({
            "service": spec.service,
            "namespace": self.target.namespace,
            "virtualService": self.target.id(),
            "stable": spec.stable,
            "canary": spec.canary,
            "weight": self.last_good.canary,
            "stableWeight": self.last_good.stable,
            "step": spec.step,
            "max": spec.max,
            "threshold": spec.threshold,
            "check": self.checks,
            "failedChecks": self.failed,
        });
        if let (Some(d), Value::Object(x)) = (detail.as_object_mut(), extra) {
            d.extend(x);
        }
        let ev = NewEvent {
            kind: Some(kind),
            severity,
            time_ms: Some(meshlens_model::time::now_ms()),
            service: Some(spec.service.clone()),
            title,
            detail,
            undo: None,
        };
        if let Err(e) = self.events.record(ev) {
            tracing::warn!(error = %e, "rollout event not recorded");
        }
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
    }
}
