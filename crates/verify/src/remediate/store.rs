//! The actions taken, kept in memory and in one JSON file under the data directory (written
//! whole to a temporary file, then renamed) so `undo` and the cooldowns survive a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::meshedit::Change;

/// Records kept at most; the oldest go first.
const CAPACITY: usize = 1000;

/// What set an action off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    Alert,
    Anomaly,
}

/// A firing alert, or an anomaly as the labels `{alertname: "anomaly", service, signal}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    pub kind: TriggerKind,
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// When it became active, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
}

impl Trigger {
    /// Its identity: the kind and the labels.
    pub fn key(&self) -> String {
        let mut k = format!("{:?}", self.kind);
        for (n, v) in &self.labels {
            k.push_str(&format!("\u{1}{n}\u{2}{v}"));
        }
        k
    }

    /// The service it is about: the first of the labels `service`,
    /// `destination_service_name`, `app`, `service_name` that is set.
    pub fn service(&self) -> Option<&str> {
        ["service", "destination_service_name", "app", "service_name"]
            .iter()
            .find_map(|k| self.labels.get(*k))
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("alert")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Mesh edits written.
    Applied,
    /// Planned only: the remediation's `dry_run`, or the server runs without `--mesh-write`.
    DryRun,
    /// The webhook answered 2xx.
    Sent,
    /// The mesh already was as the action wants it.
    Unchanged,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Undone {
    pub time_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<u64>,
}

/// One action, as listed by `GET /api/v1/remediations`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    pub id: String,
    pub remediation: String,
    /// The action as configured (`{"type": "shift-traffic", ...}`).
    pub action: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub time_ms: i64,
    pub trigger: Trigger,
    pub status: Status,
    pub dry_run: bool,
    pub message: String,
    /// Unified diffs of the mesh edits (done or, on a dry run, planned).
    #[serde(default)]
    pub diff: String,
    /// What was written, so it can be reverted.
    #[serde(default)]
    pub changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone: Option<Undone>,
}

impl ActionRecord {
    /// Whether `undo` can revert it: written mesh edits, not yet undone.
    pub fn undoable(&self) -> bool {
        self.status == Status::Applied && !self.changes.is_empty() && self.undone.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("remediation state {path}: {message}")]
pub struct StoreError {
    pub path: PathBuf,
    pub message: String,
}

pub(crate) struct Store {
    path: Option<PathBuf>,
    records: Mutex<Vec<ActionRecord>>,
}

impl Store {
    /// Opens the file (a missing one is empty; an unreadable or corrupt one is an error, so
    /// a restart never silently forgets what it could undo).
    pub fn open(path: Option<&Path>) -> Result<Store, StoreError> {
        let err = |p: &Path, message: String| StoreError {
            path: p.to_path_buf(),
            message,
        };
        let records = match path {
            None => Vec::new(),
            Some(p) => match std::fs::read(p) {
                Ok(b) => serde_json::from_slice(&b).map_err(|e| err(p, e.to_string()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(err(p, e.to_string())),
            },
        };
        Ok(Store {
            path: path.map(Path::to_path_buf),
            records: Mutex::new(records),
        })
    }

    pub fn list(&self) -> Vec<ActionRecord> {
        self.records.lock().iter().rev().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<ActionRecord> {
        self.records.lock().iter().find(|r| r.id == id).cloned()
    }

    /// The next id, `rem-N`.
    pub fn next_id(&self) -> String {
        let n = self
            .records
            .lock()
            .iter()
            .filter_map(|r| r.id.strip_prefix("rem-")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        format!("rem-{}", n + 1)
    }

    /// When `remediation` last acted.
    pub fn last_time(&self, remediation: &str) -> Option<i64> {
        self.records
            .lock()
            .iter()
            .filter(|r| r.remediation == remediation)
            .map(|r| r.time_ms)
            .max()
    }

    /// Adds or replaces (by id) and saves.
    pub fn put(&self, rec: ActionRecord) {
        let mut all = self.records.lock();
        match all.iter_mut().find(|r| r.id == rec.id) {
            Some(r) => *r = rec,
            None => all.push(rec),
        }
        let excess = all.len().saturating_sub(CAPACITY);
        all.drain(..excess);
        if let Some(p) = &self.path {
            if let Err(e) = save(p, &all) {
                tracing::warn!(path = %p.display(), error = %e, "saving remediation state failed");
            }
        }
    }
}

fn save(path: &Path, records: &[ActionRecord]) -> std::io::Result<()> {
    let data = serde_json::to_vec_pretty(records).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}
