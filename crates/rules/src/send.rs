//! Which alerts go to Alertmanager after an evaluation, with Prometheus's resend and
//! `endsAt` rules.

use std::time::Duration;

use meshlens_model::Labels;
use meshlens_notifier::Alert as Notification;

use crate::group::{millis, RuleKindState};
use crate::Group;

impl Group {
    /// The alerts due to be sent at `ts_ms`, marking them sent: firing alerts not sent for
    /// `resend_delay`, and resolved ones at once and then again every `resend_delay` while
    /// they are kept (15 minutes). A firing alert ends at `ts + 4 * max(resend_delay,
    /// interval)` unless re-sent, so Alertmanager resolves it should this server stop; a
    /// resolved one ends when it resolved. Rules whose last evaluation failed send nothing.
    pub fn alerts_to_send(
        &mut self,
        ts_ms: i64,
        resend_delay: Duration,
        external_url: &str,
    ) -> Vec<Notification> {
        let resend_ms = millis(resend_delay);
        let validity = millis(resend_delay.max(self.interval)).saturating_mul(4);
        let mut out = Vec::new();
        for rule in &mut self.rules {
            let RuleKindState::Alerting(ar) = &mut rule.kind else {
                continue;
            };
            if !rule.last_eval_ok {
                continue;
            }
            let generator_url = format!(
                "{}/graph?g0.expr={}&g0.tab=1",
                external_url,
                query_escape(&rule.query)
            );
            for a in ar.active.values_mut() {
                if !a.needs_sending(ts_ms, resend_ms) {
                    continue;
                }
                a.last_sent_at = Some(ts_ms);
                let valid_until = ts_ms.saturating_add(validity);
                a.valid_until = Some(valid_until);
                out.push(Notification {
                    labels: a.labels.clone(),
                    // The notifier's label set drops annotations that expanded to "".
                    annotations: Labels::from_pairs(a.annotations.iter()),
                    starts_at_ms: a.fired_at.unwrap_or(a.active_at),
                    ends_at_ms: Some(a.resolved_at.unwrap_or(valid_until)),
                    generator_url: generator_url.clone(),
                });
            }
        }
        out
    }
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest `%XX`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_like_go() {
        assert_eq!(
            super::query_escape("rate(x{a=\"b\"}[5m]) > 0.5"),
            "rate%28x%7Ba%3D%22b%22%7D%5B5m%5D%29+%3E+0.5"
        );
    }
}
