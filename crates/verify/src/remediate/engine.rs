//! The engine: matches triggers to remediations, acts once per trigger episode (a trigger
//! that stays active does not act again; one that ends and comes back does, outside the
//! cooldown), records each action as an event, and undoes mesh actions.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::config::{Action, Remediation, RemediationConfig};
use super::mesh::{self, ActionError, MeshOutcome};
use super::store::{ActionRecord, Status, Store, StoreError, Trigger, Undone};
use crate::events::{EventKind, EventSink, NewEvent, Severity};
use crate::http::{redact, urlencode, HttpClient, Https};
use crate::meshedit::MeshDir;

pub struct EngineOptions {
    pub config: RemediationConfig,
    /// The mesh directory mesh actions edit; None: they fail, saying so.
    pub mesh: Option<MeshDir>,
    /// Off: mesh actions are dry runs.
    pub mesh_write: bool,
    /// Where the actions are kept (`<data-dir>/remediations.json`); None: memory only.
    pub state_file: Option<PathBuf>,
    /// The server's URL as users reach it, for the links in webhook payloads.
    pub base_url: String,
}

/// The service's callers and callees with their rates; the server computes it from its
/// service graph.
pub trait Neighbourhood: Send + Sync {
    fn neighbourhood(&self, service: &str) -> Value;
}

#[derive(Debug)]
pub enum Outcome {
    Acted(Box<ActionRecord>),
    /// Inside the remediation's cooldown: nothing was done.
    Suppressed {
        remediation: String,
        until_ms: i64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("no remediation action {0}")]
    NotFound(String),
    #[error("{0}")]
    NotUndoable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotWritable(String),
}

pub struct Engine {
    opts: EngineOptions,
    events: Arc<dyn EventSink>,
    neighbours: Option<Arc<dyn Neighbourhood>>,
    store: Store,
    /// Trigger episodes active at the last `observe` (remediation name + trigger key).
    active: tokio::sync::Mutex<HashSet<String>>,
    /// The webhooks' client, or why TLS could not be set up (each webhook then fails so).
    http: Result<HttpClient<Https>, String>,
}

impl Engine {
    pub fn new(
        opts: EngineOptions,
        events: Arc<dyn EventSink>,
        neighbours: Option<Arc<dyn Neighbourhood>>,
    ) -> Result<Engine, StoreError> {
        let store = Store::open(opts.state_file.as_deref())?;
        Ok(Engine {
            opts,
            events,
            neighbours,
            store,
            active: Default::default(),
            http: HttpClient::https().map(|c| c.with_user_agent("meshlens-remediation")),
        })
    }

    pub fn remediations(&self) -> &[Remediation] {
        &self.opts.config.remediations
    }

    pub fn mesh_write(&self) -> bool {
        self.opts.mesh_write && self.opts.mesh.is_some()
    }

    /// Actions taken, newest first.
    pub fn list(&self) -> Vec<ActionRecord> {
        self.store.list()
    }

    pub fn get(&self, id: &str) -> Option<ActionRecord> {
        self.store.get(id)
    }

    /// The triggers active now (every firing alert, every current anomaly): acts for each
    /// (remediation, trigger) pair that was not active at the previous call.
    pub async fn observe(&self, triggers: &[Trigger]) -> Vec<Outcome> {
        let mut active = self.active.lock().await;
        let mut now_active = HashSet::new();
        let mut out = Vec::new();
        for t in triggers {
            for r in self.remediations() {
                if !r.matches(&t.labels) {
                    continue;
                }
                let key = format!("{}\u{0}{}", r.name, t.key());
                if !active.contains(&key) && !now_active.contains(&key) {
                    out.push(self.act(r, t).await);
                }
                now_active.insert(key);
            }
        }
        *active = now_active;
        out
    }

    /// Runs `r` for `t` now unless it is inside its cooldown.
    pub async fn act(&self, r: &Remediation, t: &Trigger) -> Outcome {
        let now = meshlens_model::time::now_ms();
        if let Some(last) = self.store.last_time(&r.name) {
            let until = last + r.cooldown.as_millis() as i64;
            if now < until {
                tracing::info!(remediation = %r.name, trigger = %t.name(), "remediation in cooldown");
                return Outcome::Suppressed {
                    remediation: r.name.clone(),
                    until_ms: until,
                };
            }
        }
        let service = match &r.action {
            Action::ShiftTraffic { service, .. } | Action::KillSwitch { service, .. } => {
                service.clone()
            }
            Action::TightenOutlier { host, .. } => host.clone(),
            Action::Webhook { .. } => None,
        }
        .or_else(|| t.service().map(str::to_string));
        let mut rec = ActionRecord {
            id: self.store.next_id(),
            remediation: r.name.clone(),
            action: serde_json::to_value(&r.action).unwrap_or(Value::Null),
            service: service.clone(),
            time_ms: now,
            trigger: t.clone(),
            status: Status::Failed,
            dry_run: r.dry_run,
            message: String::new(),
            diff: String::new(),
            changes: Vec::new(),
            event_id: None,
            undone: None,
        };
        let mut payload = Value::Null;
        match &r.action {
            Action::Webhook { url, timeout } => {
                payload = self.payload(&rec).await;
                if r.dry_run {
                    rec.status = Status::DryRun;
                    rec.message = format!("dry run: would POST the alert to {}", redact(url));
                } else {
                    match self.post(url, &payload, *timeout).await {
                        Ok(code) => {
                            rec.status = Status::Sent;
                            rec.message = format!("POST {}: {code}", redact(url));
                        }
                        Err(e) => rec.message = e,
                    }
                }
            }
            action => self.mesh_action(action, r.dry_run, &mut rec).await,
        }
        self.record(&mut rec, &r.action, payload);
        self.store.put(rec.clone());
        Outcome::Acted(Box::new(rec))
    }

    /// The webhook action: one JSON POST, bounded by `timeout`; non-2xx is a failure. Errors
    /// show the URL's origin only.
    async fn post(&self, url: &str, payload: &Value, timeout: Duration) -> Result<u16, String> {
        let shown = redact(url);
        let client = self
            .http
            .as_ref()
            .map_err(|e| format!("POST {shown}: {e}"))?;
        let body = serde_json::to_vec(payload).map_err(|e| format!("POST {shown}: {e}"))?;
        client.post_ok(url, &shown, body, timeout).await
    }

    async fn mesh_action(&self, action: &Action, dry_run: bool, rec: &mut ActionRecord) {
        let Some(dir) = self.opts.mesh.clone() else {
            rec.message = "no mesh directory: start the server with --mesh DIR".into();
            return;
        };
        let Some(service) = rec.service.clone() else {
            rec.message = format!(
                "no service: set the action's {} or match alerts with a `service` label",
                if matches!(action, Action::TightenOutlier { .. }) {
                    "host"
                } else {
                    "service"
                }
            );
            return;
        };
        let forced = !dry_run && !self.opts.mesh_write;
        let write = !dry_run && self.opts.mesh_write;
        rec.dry_run = !write;
        let action = action.clone();
        let run = move || -> Result<MeshOutcome, ActionError> {
            match &action {
                Action::ShiftTraffic {
                    namespace,
                    away_from,
                    ..
                } => mesh::shift_traffic(&dir, &service, namespace.as_deref(), away_from, write),
                Action::KillSwitch { namespace, .. } => {
                    mesh::kill_switch(&dir, &service, namespace.as_deref(), write)
                }
                Action::TightenOutlier { namespace, .. } => {
                    mesh::tighten_outlier(&dir, &service, namespace.as_deref(), write)
                }
                Action::Webhook { .. } => Ok(MeshOutcome::default()),
            }
        };
        let result = tokio::task::spawn_blocking(run)
            .await
            .unwrap_or_else(|e| Err(ActionError::NoTarget(format!("the action failed: {e}"))));
        match result {
            Err(e) => rec.message = e.to_string(),
            Ok(o) => {
                rec.diff = o.plans.iter().map(|p| p.diff.as_str()).collect();
                let files: Vec<String> = o
                    .plans
                    .iter()
                    .map(|p| p.file.display().to_string())
                    .collect();
                let mut notes = o.notes.join("; ");
                if !notes.is_empty() {
                    notes = format!(" ({notes})");
                }
                if o.plans.is_empty() {
                    rec.status = Status::Unchanged;
                    rec.message = format!("nothing to change{notes}");
                } else if !write {
                    rec.status = Status::DryRun;
                    rec.message = format!(
                        "dry run{}: would edit {}{notes}",
                        if forced {
                            " (the server runs without --mesh-write)"
                        } else {
                            ""
                        },
                        files.join(", ")
                    );
                } else {
                    rec.status = Status::Applied;
                    rec.changes = o.changes;
                    rec.message = format!("edited {}{notes}", files.join(", "));
                }
            }
        }
    }

    /// The webhook's body: the trigger, the service's neighbourhood, links to the UI.
    async fn payload(&self, rec: &ActionRecord) -> Value {
        let service = rec.service.clone();
        let neighbourhood = match (&self.neighbours, &service) {
            (Some(n), Some(s)) => {
                let (n, s) = (n.clone(), s.clone());
                tokio::task::spawn_blocking(move || n.neighbourhood(&s))
                    .await
                    .unwrap_or(Value::Null)
            }
            _ => Value::Null,
        };
        json!({
            "id": rec.id,
            "remediation": rec.remediation,
            "kind": rec.trigger.kind,
            "alert": rec.trigger,
            "service": service,
            "neighbourhood": neighbourhood,
            "links": service.as_deref().map(|s| links(&self.opts.base_url, s)),
            "timeMs": rec.time_ms,
        })
    }

    fn record(&self, rec: &mut ActionRecord, action: &Action, payload: Value) {
        let what = match &rec.service {
            Some(s) => format!("{} on {s}", action.type_name()),
            None => action.type_name().to_string(),
        };
        let (severity, title) = match rec.status {
            Status::Applied => (Severity::Warning, format!("{}: {what}", rec.remediation)),
            Status::DryRun => (
                Severity::Info,
                format!("{}: {what} (dry run)", rec.remediation),
            ),
            Status::Sent => (Severity::Info, format!("{}: {what} sent", rec.remediation)),
            Status::Unchanged => (
                Severity::Info,
                format!("{}: {what}, already in place", rec.remediation),
            ),
            Status::Failed => (
                Severity::Warning,
                format!("{}: {what} failed", rec.remediation),
            ),
        };
        let mut detail = json!({
            "id": rec.id,
            "remediation": rec.remediation,
            "action": rec.action,
            "status": rec.status,
            "dryRun": rec.dry_run,
            "trigger": rec.trigger,
            "message": rec.message,
            "diff": rec.diff,
            "undoable": rec.undoable(),
        });
        if !payload.is_null() {
            detail["payload"] = payload;
        }
        let ev = NewEvent {
            kind: Some(EventKind::Remediation),
            severity,
            time_ms: Some(rec.time_ms),
            service: rec.service.clone(),
            title,
            detail,
            undo: Some(rec.id.clone()),
        };
        match self.events.record(ev) {
            Ok(e) => rec.event_id = Some(e.id),
            Err(e) => tracing::warn!(error = %e, "recording a remediation event failed"),
        }
    }

    /// Reverts a mesh action's edits and records that as an event.
    pub fn undo(&self, id: &str) -> Result<ActionRecord, UndoError> {
        let mut rec = self
            .store
            .get(id)
            .ok_or_else(|| UndoError::NotFound(id.to_string()))?;
        if let Some(u) = &rec.undone {
            return Err(UndoError::Conflict(format!(
                "{id} was already undone (at {} ms)",
                u.time_ms
            )));
        }
        if rec.action["type"] == "webhook" {
            return Err(UndoError::NotUndoable(format!(
                "{id} was a webhook call ({}); a request that was sent cannot be taken back",
                rec.action["url"].as_str().unwrap_or("?")
            )));
        }
        if !rec.undoable() {
            return Err(UndoError::NotUndoable(format!(
                "{id} wrote nothing to undo ({}: {})",
                serde_json::to_value(rec.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                rec.message
            )));
        }
        let dir = match (&self.opts.mesh, self.opts.mesh_write) {
            (Some(d), true) => d,
            _ => {
                return Err(UndoError::NotWritable(format!(
                    "undoing {id} writes to the mesh directory: start the server with --mesh DIR --mesh-write"
                )))
            }
        };
        let mut reverted = Vec::new();
        for c in rec.changes.iter().rev() {
            match dir.revert(c) {
                Ok(r) => reverted.push(r),
                Err(e) => {
                    // Put back what this undo already reverted, so the action stays whole.
                    for r in reverted.iter().rev() {
                        let _ = dir.revert(r);
                    }
                    return Err(UndoError::Conflict(format!("cannot undo {id}: {e}")));
                }
            }
        }
        let now = meshlens_model::time::now_ms();
        let files: Vec<String> = rec
            .changes
            .iter()
            .map(|c| c.file.display().to_string())
            .collect();
        let ev = NewEvent {
            kind: Some(EventKind::Remediation),
            severity: Severity::Info,
            time_ms: Some(now),
            service: rec.service.clone(),
            title: format!(
                "{}: undid {id} ({})",
                rec.remediation,
                rec.action["type"].as_str().unwrap_or("")
            ),
            detail: json!({"id": id, "undid": id, "remediation": rec.remediation, "files": files}),
            undo: None,
        };
        let event_id = self.events.record(ev).ok().map(|e| e.id);
        rec.undone = Some(Undone {
            time_ms: now,
            event_id,
        });
        self.store.put(rec.clone());
        Ok(rec)
    }
}

/// Links to the service's traces, error traces and graph in the UI (its hash routes).
pub fn links(base: &str, service: &str) -> Value {
    let base = base.trim_end_matches('/');
    let s = urlencode(service);
    json!({
        "traces": format!("{base}/ui/#/traces?service={s}&range=15m"),
        "errorTraces": format!("{base}/ui/#/traces?service={s}&errors=1&range=15m"),
        "graph": format!("{base}/ui/#/topology?focus={s}&range=15m"),
        "events": format!("{base}/api/v1/events?service={s}"),
    })
}
