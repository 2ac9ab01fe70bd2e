//! Restoring alerts' `for` progress after a restart from the `ALERTS_FOR_STATE` series the
//! previous run wrote (Prometheus's `RestoreForState`).

use std::collections::HashMap;
use std::time::Duration;

use meshlens_model::{is_stale_nan, LabelMatcher, Labels, METRIC_NAME};

use crate::alerting::ALERTS_FOR_STATE;
use crate::group::{millis, RuleKindState};
use crate::{EvalContext, Group};

impl Group {
    /// Call once after the first evaluation of a group loaded at start-up. For each alert
    /// active now whose `ALERTS_FOR_STATE` series has a sample within `outage_tolerance`
    /// before `ts_ms`, the time already spent pending counts again: the alert fires when
    /// the rest of its `for` has passed since `ts_ms` (but no sooner than `grace_period`
    /// from now). Rules with `for` shorter than the grace period are not restored. Marks
    /// every alerting rule restored, so `ALERTS` are written from then on.
    pub fn restore_for_state(
        &mut self,
        ctx: &EvalContext<'_>,
        ts_ms: i64,
        outage_tolerance: Duration,
        grace_period: Duration,
    ) {
        let grace = millis(grace_period);
        let mint = ts_ms.saturating_sub(millis(outage_tolerance));
        for rule in &mut self.rules {
            let RuleKindState::Alerting(ar) = &mut rule.kind else {
                continue;
            };
            let hold = ar.for_ms;
            // Samples this instance wrote itself say nothing about the previous run.
            let maxt = ar
                .for_state_written_since
                .map_or(ts_ms, |t| ts_ms.min(t.saturating_sub(1)));
            ar.restored = true;
            if hold < grace || ar.active.is_empty() {
                continue;
            }
            let matchers = [
                LabelMatcher::equal(METRIC_NAME, ALERTS_FOR_STATE),
                LabelMatcher::equal("alertname", ar.name.as_str()),
            ];
            let series = match ctx.reader.select(&matchers, mint, maxt) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(alert = %ar.name, error = %e, "restoring 'for' state failed");
                    continue;
                }
            };
            let last: HashMap<Labels, (i64, f64)> = series
                .into_iter()
                .filter_map(|s| {
                    let last = s.samples.last()?;
                    Some((s.labels, (last.t, last.v)))
                })
                .collect();
            let keys: Vec<Labels> = ar.active.keys().cloned().collect();
            for k in keys {
                let Some(a) = ar.active.get(&k) else { continue };
                let want = ar.series_labels(a, ALERTS_FOR_STATE, None);
                let Some(&(t, v)) = last.get(&want) else {
                    continue;
                };
                if is_stale_nan(v) || !v.is_finite() {
                    continue;
                }
                // Prometheus keeps both times in whole seconds.
                let down_at = t.div_euclid(1000) * 1000;
                let mut active_at = (v as i64).saturating_mul(1000);
                let remaining = hold.saturating_sub(down_at.saturating_sub(active_at));
                if remaining <= 0 {
                    // It was firing when the previous run stopped: the next evaluation
                    // fires it again.
                } else if remaining < grace {
                    active_at = ts_ms.saturating_add(grace).saturating_sub(hold);
                } else {
                    active_at = active_at.saturating_add(ts_ms.saturating_sub(down_at));
                }
                if let Some(a) = ar.active.get_mut(&k) {
                    a.active_at = active_at;
                }
            }
        }
    }
}
