//! Read-only snapshots of rule state, for the APIs, the UI and the unit-test runner.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use meshlens_model::Labels;

use crate::AlertState;

/// A rule's health after its last evaluation, as `/api/v1/rules` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuleHealth {
    /// Not evaluated yet.
    #[default]
    Unknown,
    Ok,
    Err,
}

impl RuleHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleHealth::Unknown => "unknown",
            RuleHealth::Ok => "ok",
            RuleHealth::Err => "err",
        }
    }
}

/// One alert of an alerting rule, pending or firing.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertView {
    /// The alert's identity: series labels (without `__name__`), rule and group labels,
    /// `alertname`.
    pub labels: Labels,
    /// Every annotation of the rule, expanded; an empty one is kept, as in Prometheus's
    /// API (a [`Labels`] would drop it).
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    /// Set once resolved; resolved alerts are not listed in views, only re-sent.
    pub resolved_at_ms: Option<i64>,
    /// While `keep_firing_for` holds a firing alert whose condition is gone.
    pub keep_firing_since_ms: Option<i64>,
    /// The expression's value at the last evaluation.
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AlertingRuleView {
    pub name: String,
    /// The expression as Prometheus prints it.
    pub query: String,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    /// The group's and the rule's labels, unexpanded.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The highest state of its alerts.
    pub state: AlertState,
    /// Pending and firing alerts, ordered by labels.
    pub alerts: Vec<AlertView>,
    pub health: RuleHealth,
    pub last_error: Option<String>,
    pub evaluation_time: Duration,
    /// Wall-clock start of the last evaluation.
    pub last_evaluation: Option<SystemTime>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RecordingRuleView {
    pub name: String,
    pub query: String,
    pub labels: BTreeMap<String, String>,
    pub health: RuleHealth,
    pub last_error: Option<String>,
    pub evaluation_time: Duration,
    pub last_evaluation: Option<SystemTime>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RuleView {
    Alerting(AlertingRuleView),
    Recording(RecordingRuleView),
}

impl RuleView {
    pub fn name(&self) -> &str {
        match self {
            RuleView::Alerting(r) => &r.name,
            RuleView::Recording(r) => &r.name,
        }
    }
}
