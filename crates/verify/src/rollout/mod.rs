//! Progressive delivery, Flagger's model: shift a growing share of a service's traffic to the
//! canary subset by editing the VirtualService weights in the mesh directory that
//! `meshlens proxy` watches, judge the canary against the stable version every interval, roll
//! back to 100 % stable after `threshold` failed checks, and promote after a passing check at
//! `max`. Pre-rollout, rollout and post-rollout webhooks are called as Flagger calls them.
//!
//! Decisions:
//! - An inconclusive verdict (too little traffic) holds the weight and counts as a failed
//!   check, as Flagger counts a metric without values: a rollout never advances on no
//!   evidence. A judge that cannot be reached counts the same way.
//! - Failed checks are counted over the whole rollout (Flagger's `failedChecks`), not reset by
//!   a pass.
//! - A webhook answering non-2xx halts: at pre-rollout nothing has changed yet; at rollout the
//!   canary is rolled back. A failing post-rollout webhook is reported, nothing more.
//! - When an edit fails (directory unwritable, edit refused as invalid, a conflicting change)
//!   or the VirtualService was changed by someone else between steps, the rollout stops,
//!   writes back the last weights it wrote successfully (no write when the file still holds
//!   them) and says so; that outcome is [`Outcome::Stopped`].

mod engine;
pub mod http;
mod vs;
mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use engine::run;
pub use vs::Weights;
pub use webhook::{payload as webhook_payload, HookClient};

use crate::judge::Verdict;
use crate::meshedit::EditError;

/// A boxed, sendable future: the judge and webhook callbacks are trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// When a webhook is called (Flagger's webhook types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookPhase {
    /// Before any traffic moves; non-2xx halts with nothing changed.
    PreRollout,
    /// Before each check; non-2xx rolls back.
    Rollout,
    /// After promotion or rollback; failures are only reported.
    PostRollout,
}

impl HookPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::PreRollout => "pre-rollout",
            HookPhase::Rollout => "rollout",
            HookPhase::PostRollout => "post-rollout",
        }
    }

    pub fn parse(s: &str) -> Option<HookPhase> {
        match s {
            "pre-rollout" => Some(HookPhase::PreRollout),
            "rollout" => Some(HookPhase::Rollout),
            "post-rollout" => Some(HookPhase::PostRollout),
            _ => None,
        }
    }
}

/// A webhook: `URL` (every phase) or `PHASE=URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// None: called at every phase.
    pub phase: Option<HookPhase>,
    pub url: String,
}

impl Webhook {
    /// Parses `URL` or `PHASE=URL`; a `=` inside a URL's query is not taken for a phase.
    pub fn parse(s: &str) -> Result<Webhook, RolloutError> {
        let s = s.trim();
        let (phase, url) = match s.split_once('=') {
            Some((p, rest)) if !p.contains("://") && !p.contains('/') => {
                let phase = HookPhase::parse(p).ok_or_else(|| {
                    RolloutError::Usage(format!(
                        "webhook {s:?}: unknown phase {p:?} (pre-rollout, rollout or post-rollout)"
                    ))
                })?;
                (Some(phase), rest)
            }
            _ => (None, s),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return Err(RolloutError::Usage(format!(
                "webhook {s:?}: expected an http:// or https:// URL"
            )));
        }
        Ok(Webhook {
            phase,
            url: url.to_string(),
        })
    }

    pub fn runs_at(&self, phase: HookPhase) -> bool {
        self.phase.is_none_or(|p| p == phase)
    }
}

/// What to roll out, and how.
#[derive(Clone, Debug)]
pub struct RolloutSpec {
    pub service: String,
    /// None: the VirtualService's own namespace, whichever holds the service (must be one).
    pub namespace: Option<String>,
    /// The stable subset (DestinationRule subset name), e.g. `v1`.
    pub stable: String,
    /// The canary subset, e.g. `v2`.
    pub canary: String,
    /// Canary weight added per passing check, percent.
    pub step: u32,
    /// Canary weight at which a passing check promotes, percent.
    pub max: u32,
    /// Time between a weight change and its check.
    pub interval: Duration,
    /// Failed checks that roll back.
    pub threshold: u32,
    pub webhooks: Vec<Webhook>,
    pub webhook_timeout: Duration,
}

impl RolloutSpec {
    /// A spec with Flagger's usual figures: step 10, max 50, interval 1 m, threshold 2.
    pub fn new(service: &str, stable: &str, canary: &str) -> RolloutSpec {
        RolloutSpec {
            service: service.into(),
            namespace: None,
            stable: stable.into(),
            canary: canary.into(),
            step: 10,
            max: 50,
            interval: Duration::from_secs(60),
            threshold: 2,
            webhooks: Vec::new(),
            webhook_timeout: Duration::from_secs(10),
        }
    }

    pub fn check(&self) -> Result<(), RolloutError> {
        let usage = |m: String| Err(RolloutError::Usage(m));
        if self.service.trim().is_empty() {
            return usage("--service is empty".into());
        }
        if self.stable.trim().is_empty() || self.canary.trim().is_empty() {
            return usage("--stable and --canary name subsets; one is empty".into());
        }
        if self.stable == self.canary {
            return usage(format!(
                "--stable and --canary are both {:?}; they must differ",
                self.stable
            ));
        }
        if !(1..=100).contains(&self.step) {
            return usage(format!("--step {} is not within 1..100", self.step));
        }
        if !(self.step..=100).contains(&self.max) {
            return usage(format!(
                "--max {} is not within --step ({})..100",
                self.max, self.step
            ));
        }
        if self.threshold == 0 {
            return usage("--threshold must be at least 1".into());
        }
        if self.interval.is_zero() {
            return usage("--interval must be positive".into());
        }
        Ok(())
    }
}

/// What the judge is asked at one check.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeRequest {
    pub service: String,
    pub namespace: Option<String>,
    pub stable: String,
    pub canary: String,
    /// The canary's weight now.
    pub weight: u32,
    /// 1-based number of this check.
    pub check: u32,
}

/// A judge's answer: the verdict and the report it came from (recorded in the event).
#[derive(Clone, Debug)]
pub struct JudgeAnswer {
    pub verdict: Verdict,
    pub report: serde_json::Value,
}

/// Judges the canary against the stable version (the CLI asks GET /api/v1/verify; the demo
/// may ask its in-process server; tests script it).
pub trait Judge: Send + Sync {
    fn judge<'a>(&'a self, req: &'a JudgeRequest) -> BoxFuture<'a, Result<JudgeAnswer, String>>;
}

/// How a rollout ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Outcome {
    /// The canary took all traffic.
    Promoted,
    /// Traffic went back to 100 % stable.
    RolledBack { reason: String },
    /// A pre-rollout webhook refused; nothing changed.
    Halted { reason: String },
    /// An edit failed (or someone else changed the VirtualService); the last good weights
    /// were restored when possible.
    Stopped { reason: String, restored: bool },
}

impl Outcome {
    /// The CLI's exit code: 0 promoted, 1 rolled back or halted, 2 the mesh is unusable.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Promoted => 0,
            Outcome::RolledBack { .. } | Outcome::Halted { .. } => 1,
            Outcome::Stopped { .. } => 2,
        }
    }
}

/// The result of a rollout.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutReport {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub service: String,
    pub stable: String,
    pub canary: String,
    /// Weights in the mesh directory at the end.
    pub weights: Weights,
    pub checks: u32,
    pub failed_checks: u32,
    /// The VirtualService edited, `namespace/name`.
    pub virtual_service: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A bad flag value.
    #[error("{0}")]
    Usage(String),
    /// The mesh directory cannot be used for this rollout (no VirtualService for the service,
    /// no route to the stable subset, an unreadable directory).
    #[error("{0}")]
    Mesh(String),
    #[error(transparent)]
    Edit(#[from] EditError),
}
