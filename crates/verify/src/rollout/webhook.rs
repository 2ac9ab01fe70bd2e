//! Webhooks as Flagger calls them: a JSON POST naming the canary, its phase and figures; any
//! answer but 2xx (or none within the timeout) is a refusal.

use std::time::Duration;

use serde_json::{json, Value};

use super::{BoxFuture, HookPhase, RolloutSpec, Weights};

/// Posts a webhook's JSON body; returns the HTTP status, or why there was none.
pub trait HookClient: Send + Sync {
    fn post<'a>(
        &'a self,
        url: &'a str,
        body: &'a Value,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<u16, String>>;
}

/// Flagger's payload: `name`, `namespace`, `phase` (the canary's phase: Progressing while it
/// runs, Succeeded or Failed after), `metadata` (strings); `type` is the webhook's type.
pub fn payload(
    spec: &RolloutSpec,
    namespace: &str,
    phase: HookPhase,
    canary_phase: &str,
    weights: Weights,
    failed_checks: u32,
) -> Value {
    json!({
        "name": spec.service,
        "namespace": namespace,
        "phase": canary_phase,
        "type": phase.as_str(),
        "metadata": {
            "stable": spec.stable,
            "canary": spec.canary,
            "weight": weights.canary.to_string(),
            "stableWeight": weights.stable.to_string(),
            "failedChecks": failed_checks.to_string(),
            "threshold": spec.threshold.to_string(),
        }
    })
}

/// A refusal: which webhook and why.
pub struct Refusal {
    pub url: String,
    pub why: String,
}

/// Calls the spec's webhooks of `phase` in order and returns the refusals; with
/// `stop_at_refusal` the first one ends the calls (a halt), else all are called (post-rollout).
pub async fn call(
    client: &dyn HookClient,
    spec: &RolloutSpec,
    phase: HookPhase,
    body: &Value,
    stop_at_refusal: bool,
) -> Vec<Refusal> {
    let mut refused = Vec::new();
    for hook in spec.webhooks.iter().filter(|h| h.runs_at(phase)) {
        let why = match client.post(&hook.url, body, spec.webhook_timeout).await {
            Ok(status) if (200..300).contains(&status) => continue,
            Ok(status) => format!("answered HTTP {status}"),
            Err(e) => e,
        };
        refused.push(Refusal {
            url: hook.url.clone(),
            why,
        });
        if stop_at_refusal {
            break;
        }
    }
    refused
}
