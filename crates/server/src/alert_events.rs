//! Puts the rule engine's alerts on the events timeline: one Alert event when an alert
//! starts firing, one when it resolves. Polled from the same state `GET /api/v1/alerts`
//! shows; alerts already on the timeline as firing (before a restart) are not announced
//! twice.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Weak};

use meshlens_verify::events::{EventKind, EventQuery, EventSink, NewEvent, Severity};
use meshlens_verify::remediate::Trigger;
use serde_json::json;

use crate::api::GlobalState;

/// Starts the poller; it ends when `stop` turns true or the server is gone.
pub(crate) fn start(state: &Arc<GlobalState>, stop: tokio::sync::watch::Receiver<bool>) {
    let known = firing_on_timeline(state);
    tokio::spawn(poll(Arc::downgrade(state), known, stop));
}

async fn poll(
    state: Weak<GlobalState>,
    mut known: HashSet<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::remediation::POLL_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(s) = state.upgrade() else { return };
        let firing = crate::remediation::firing_alerts(&s.rules.manager.alerts_json());
        known = record_changes(&*s.events, &known, &firing);
    }
}

/// Records what started and what ended since `known`; returns the firing set now.
fn record_changes(
    events: &dyn EventSink,
    known: &HashSet<String>,
    firing: &[Trigger],
) -> HashSet<String> {
    let mut now = HashSet::new();
    for t in firing {
        let key = key(&t.labels);
        if !known.contains(&key) {
            let summary = t
                .annotations
                .get("summary")
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            record(
                events,
                &t.labels,
                severity(&t.labels),
                format!("alert {} firing{summary}", name(&t.labels)),
                json!({"phase": "firing", "key": key, "labels": t.labels,
                       "annotations": t.annotations, "value": t.value, "activeAt": t.since_ms}),
            );
        }
        now.insert(key);
    }
    for key in known.difference(&now) {
        let labels = parse_key(key);
        record(
            events,
            &labels,
            Severity::Info,
            format!("alert {} resolved", name(&labels)),
            json!({"phase": "resolved", "key": key, "labels": labels}),
        );
    }
    now
}

fn record(
    events: &dyn EventSink,
    labels: &BTreeMap<String, String>,
    severity: Severity,
    title: String,
    detail: serde_json::Value,
) {
    let service = [
        "service",
        "destination_service_name",
        "destination_app",
        "app",
    ]
    .iter()
    .find_map(|k| labels.get(*k).cloned());
    if let Err(e) = events.record(NewEvent {
        kind: Some(EventKind::Alert),
        severity,
        service,
        title,
        detail,
        ..Default::default()
    }) {
        tracing::warn!(error = %e, "alert event not recorded");
    }
}

/// Alerts whose latest event says firing: still firing when the server stopped.
fn firing_on_timeline(state: &GlobalState) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut firing = HashSet::new();
    let q = EventQuery {
        kinds: vec![EventKind::Alert],
        ..Default::default()
    };
    for e in state.events.list(&q) {
        let Some(key) = e.detail["key"].as_str() else {
            continue;
        };
        // Newest first: the first event of a key is its latest.
        if seen.insert(key.to_string()) && e.detail["phase"] == "firing" {
            firing.insert(key.to_string());
        }
    }
    firing
}

fn name(labels: &BTreeMap<String, String>) -> &str {
    labels.get("alertname").map_or("(unnamed)", String::as_str)
}

fn severity(labels: &BTreeMap<String, String>) -> Severity {
    match labels.get("severity").map(String::as_str) {
        Some("critical" | "page") => Severity::Critical,
        Some("info" | "none") => Severity::Info,
        _ => Severity::Warning,
    }
}

/// The alert's identity: its labels as JSON (sorted, as a BTreeMap serialises).
fn key(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_default()
}

fn parse_key(key: &str) -> BTreeMap<String, String> {
    serde_json::from_str(key).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_verify::events::EventLog;
    use meshlens_verify::remediate::TriggerKind;

    fn alert(name: &str, severity: &str) -> Trigger {
        Trigger {
            kind: TriggerKind::Alert,
            labels: [
                ("alertname", name),
                ("severity", severity),
                ("service", "http-lb"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            annotations: [("summary".to_string(), "too many 5xx".to_string())].into(),
            value: Some(0.2),
            since_ms: None,
        }
    }

    #[test]
    fn an_alert_is_announced_once_when_it_fires_and_once_when_it_resolves() {
        let log = EventLog::in_memory(100);
        let a = alert("HttpLbErrors", "critical");
        let known = record_changes(&log, &HashSet::new(), std::slice::from_ref(&a));
        let known = record_changes(&log, &known, std::slice::from_ref(&a));
        let known = record_changes(&log, &known, &[]);
        assert!(known.is_empty());
        let evs = log.list(&EventQuery::default());
        let titles: Vec<&str> = evs.iter().map(|e| e.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "alert HttpLbErrors resolved",
                "alert HttpLbErrors firing: too many 5xx"
            ]
        );
        assert_eq!(evs[1].severity, Severity::Critical);
        assert_eq!(evs[1].service.as_deref(), Some("http-lb"));
        assert_eq!(evs[0].kind, EventKind::Alert);
    }
}
