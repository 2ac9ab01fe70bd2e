//! An alerting rule: its alerts' state machine (inactive → pending → firing, with `for`,
//! `keep_firing_for` and 15 minutes of resolved retention) and the `ALERTS` /
//! `ALERTS_FOR_STATE` series it writes.

use std::collections::{BTreeMap, HashSet};

use meshlens_model::{Labels, LabelsBuilder, METRIC_NAME};
use meshlens_promql::VectorSample;
use meshlens_template::TemplateData;

use crate::eval::{query_vector, to_map, AlertTemplate, ParsedExpr, TemplateQuery};
use crate::views::AlertView;
use crate::EvalContext;

pub(crate) const ALERTS: &str = "ALERTS";
pub(crate) const ALERTS_FOR_STATE: &str = "ALERTS_FOR_STATE";
const ALERT_NAME: &str = "alertname";
const ALERT_STATE: &str = "alertstate";

/// How long a resolved alert is kept (and re-sent), so Alertmanager hears of the resolution
/// even across a lost notification.
const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// The state of one alert (or, for a rule, the highest of its alerts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertState {
    #[default]
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert instance of a rule.
#[derive(Clone, Debug)]
pub(crate) struct Alert {
    pub state: AlertState,
    pub labels: Labels,
    /// Expanded annotations; one that expands to "" is kept, as Prometheus keeps it.
    pub annotations: BTreeMap<String, String>,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub valid_until: Option<i64>,
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    /// Prometheus's `needsSending`: never while pending; at once after a resolution not yet
    /// reported; otherwise once `resend_delay` has passed since the last send.
    pub fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        if let Some(r) = self.resolved_at {
            if self.last_sent_at.is_none_or(|s| r > s) {
                return true;
            }
        }
        match self.last_sent_at {
            None => true,
            Some(s) => s.saturating_add(resend_delay_ms) < ts,
        }
    }

    pub fn view(&self) -> AlertView {
        AlertView {
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            state: self.state,
            active_at_ms: self.active_at,
            fired_at_ms: self.fired_at,
            resolved_at_ms: self.resolved_at,
            keep_firing_since_ms: self.keep_firing_since,
            value: self.value,
        }
    }
}

pub(crate) struct AlertingRule {
    pub name: String,
    parsed: ParsedExpr,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    /// Group labels overridden by the rule's, unexpanded.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `labels` and `annotations` as parsed templates, in the same order.
    pub label_templates: Vec<(String, AlertTemplate)>,
    pub annotation_templates: Vec<(String, AlertTemplate)>,
    /// Alerts by their label set, including resolved ones kept for re-sending.
    pub active: BTreeMap<Labels, Alert>,
    /// `ALERTS` and `ALERTS_FOR_STATE` are written only once `for` state has been restored
    /// (or restoring was not asked for), so a restart does not overwrite the old progress.
    pub restored: bool,
    /// When this instance first wrote `ALERTS_FOR_STATE`: restoring ignores its own samples.
    pub for_state_written_since: Option<i64>,
}

impl AlertingRule {
    pub fn new(
        name: String,
        expr: String,
        for_ms: i64,
        keep_firing_for_ms: i64,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> AlertingRule {
        let compile = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| (k.clone(), AlertTemplate::new(&name, v)))
                .collect()
        };
        AlertingRule {
            label_templates: compile(&labels),
            annotation_templates: compile(&annotations),
            name,
            parsed: ParsedExpr::new(&expr),
            for_ms,
            keep_firing_for_ms,
            labels,
            annotations,
            active: BTreeMap::new(),
            restored: true,
            for_state_written_since: None,
        }
    }

    /// One evaluation at `ts` (the query runs at `ts - offset`); returns the `ALERTS` and
    /// `ALERTS_FOR_STATE` samples to write.
    pub fn eval(
        &mut self,
        ctx: &EvalContext<'_>,
        ts: i64,
        offset: i64,
        limit: usize,
    ) -> Result<Vec<VectorSample>, String> {
        let res = query_vector(
            ctx.engine,
            ctx.reader,
            &self.parsed,
            ts.saturating_sub(offset),
        )?;
        let tq = TemplateQuery {
            engine: ctx.engine,
            reader: ctx.reader,
            ts_ms: ts,
        };
        let mut fresh: BTreeMap<Labels, Alert> = BTreeMap::new();
        for s in res {
            let series_labels = to_map(&s.labels);
            let data = TemplateData {
                labels: &series_labels,
                external_labels: ctx.external_labels,
                external_url: ctx.external_url,
                value: s.v,
                query: Some(&tq),
            };
            let mut lb = s.labels.builder();
            lb.del(METRIC_NAME);
            for (k, t) in &self.label_templates {
                lb.set(k.as_str(), t.expand(&data));
            }
            lb.set(ALERT_NAME, self.name.as_str());
            let annotations: BTreeMap<String, String> = self
                .annotation_templates
                .iter()
                .map(|(k, t)| (k.clone(), t.expand(&data)))
                .collect();
            let labels = lb.build();
            if fresh.contains_key(&labels) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            fresh.insert(
                labels.clone(),
                Alert {
                    state: AlertState::Pending,
                    labels,
                    annotations,
                    value: s.v,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    last_sent_at: None,
                    valid_until: None,
                    keep_firing_since: None,
                },
            );
        }
        let present: HashSet<Labels> = fresh.keys().cloned().collect();
        for (k, a) in fresh {
            match self.active.get_mut(&k) {
                Some(old) if old.state != AlertState::Inactive => {
                    old.value = a.value;
                    old.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(k, a);
                }
            }
        }

        let mut out = Vec::new();
        let mut active_count = 0usize;
        let mut expired = Vec::new();
        let sample_ts = ts.saturating_sub(offset);
        for (k, a) in self.active.iter_mut() {
            if !present.contains(k) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts.saturating_sub(since) < self.keep_firing_for_ms;
                }
                let stale_resolved = a
                    .resolved_at
                    .is_some_and(|r| ts.saturating_sub(r) > RESOLVED_RETENTION_MS);
                if a.state == AlertState::Pending || stale_resolved {
                    expired.push(k.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            active_count += 1;
            if a.state == AlertState::Pending && ts.saturating_sub(a.active_at) >= self.for_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            if self.restored {
                out.push(VectorSample {
                    labels: series_labels(&self.labels, &self.name, a, ALERTS, Some(a.state)),
                    t: sample_ts,
                    v: 1.0,
                    h: None,
                });
                out.push(VectorSample {
                    labels: series_labels(&self.labels, &self.name, a, ALERTS_FOR_STATE, None),
                    t: sample_ts,
                    v: a.active_at.div_euclid(1000) as f64,
                    h: None,
                });
            }
        }
        for k in expired {
            self.active.remove(&k);
        }
        if limit > 0 && active_count > limit {
            self.active.clear();
            return Err(format!(
                "exceeded limit of {limit} with {active_count} alerts"
            ));
        }
        if self.restored && !out.is_empty() && self.for_state_written_since.is_none() {
            self.for_state_written_since = Some(sample_ts);
        }
        Ok(out)
    }

    /// The labels of an alert's `ALERTS` (with a state) or `ALERTS_FOR_STATE` series: the
    /// rule's raw labels overridden by the alert's, as Prometheus builds them.
    pub fn series_labels(&self, a: &Alert, name: &str, state: Option<AlertState>) -> Labels {
        series_labels(&self.labels, &self.name, a, name, state)
    }

    /// The highest state among its alerts.
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or_default()
    }

    /// Pending and firing alerts (resolved ones are only kept for re-sending).
    pub fn active_views(&self) -> Vec<AlertView> {
        self.active
            .values()
            .filter(|a| a.resolved_at.is_none())
            .map(Alert::view)
            .collect()
    }
}

fn series_labels(
    rule_labels: &BTreeMap<String, String>,
    alert_name: &str,
    a: &Alert,
    metric: &str,
    state: Option<AlertState>,
) -> Labels {
    let mut lb = LabelsBuilder::new();
    for (k, v) in rule_labels {
        lb.set(k.as_str(), v.as_str());
    }
    for l in a.labels.iter() {
        lb.set(l.name.as_str(), l.value.as_str());
    }
    lb.set(METRIC_NAME, metric);
    lb.set(ALERT_NAME, alert_name);
    if let Some(s) = state {
        lb.set(ALERT_STATE, s.as_str());
    }
    lb.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(state: AlertState) -> Alert {
        Alert {
            state,
            labels: Labels::empty(),
            annotations: BTreeMap::new(),
            value: 1.0,
            active_at: 0,
            fired_at: None,
            resolved_at: None,
            last_sent_at: None,
            valid_until: None,
            keep_firing_since: None,
        }
    }

    #[test]
    fn needs_sending_follows_prometheus() {
        assert!(!alert(AlertState::Pending).needs_sending(10, 5));
        let mut a = alert(AlertState::Firing);
        assert!(a.needs_sending(10, 5));
        a.last_sent_at = Some(10);
        assert!(!a.needs_sending(15, 5), "resend delay not yet passed");
        assert!(a.needs_sending(16, 5));
        a.state = AlertState::Inactive;
        a.resolved_at = Some(12);
        assert!(
            a.needs_sending(12, 1000),
            "a new resolution is sent at once"
        );
        a.last_sent_at = Some(12);
        assert!(!a.needs_sending(13, 1000));
    }
}
