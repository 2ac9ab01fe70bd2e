//! One timeline of what the loop saw and did: rollout steps, verdicts, anomalies, alerts,
//! remediations and config changes. Kept in memory (the newest `capacity`) and appended to a
//! JSON-lines file so a restart keeps the history; a torn or foreign line is skipped on open.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// What kind of thing happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Rollout,
    Verdict,
    Anomaly,
    Alert,
    Remediation,
    Config,
}

impl EventKind {
    pub fn parse(s: &str) -> Option<EventKind> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Critical,
}

/// An event as its author states it; the log adds the id (and the time when absent).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewEvent {
    pub kind: Option<EventKind>,
    #[serde(default)]
    pub severity: Severity,
    /// Milliseconds since the epoch; None: now.
    #[serde(default)]
    pub time_ms: Option<i64>,
    /// The service the event is about, for the links to the graph, charts and traces.
    #[serde(default)]
    pub service: Option<String>,
    pub title: String,
    /// Kind-specific figures (a verdict's report, a rollout's weights, an anomaly's score).
    #[serde(default)]
    pub detail: serde_json::Value,
    /// The id of an action that can be undone (a remediation or config change id).
    #[serde(default)]
    pub undo: Option<String>,
}

/// A recorded event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: u64,
    pub kind: EventKind,
    pub severity: Severity,
    pub time_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub title: String,
    pub detail: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
}

/// Which events to list; newest first.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub kinds: Vec<EventKind>,
    pub service: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("an event needs a kind (rollout, verdict, anomaly, alert, remediation or config)")]
    NoKind,
    #[error("an event needs a title")]
    NoTitle,
}

/// Where events are recorded: the server's log, or a client that posts them to a server.
pub trait EventSink: Send + Sync {
    fn record(&self, event: NewEvent) -> Result<Event, EventError>;
}

/// The server's event log.
pub struct EventLog {
    path: Option<PathBuf>,
    capacity: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    events: VecDeque<Event>,
    next_id: u64,
    file: Option<File>,
}

impl EventLog {
    /// A log kept in memory only (tests, tools).
    pub fn in_memory(capacity: usize) -> EventLog {
        EventLog {
            path: None,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                next_id: 1,
                file: None,
            }),
        }
    }

    /// Opens (or creates) the log at `path`, keeping its newest `capacity` events in memory.
    pub fn open(path: &Path, capacity: usize) -> Result<EventLog, EventError> {
        let io = |source| EventError::Io {
            path: path.to_path_buf(),
            source,
        };
        let capacity = capacity.max(1);
        let mut events = VecDeque::new();
        let mut next_id = 1;
        match File::open(path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let Ok(line) = line else { break };
                    let Ok(e) = serde_json::from_str::<Event>(&line) else {
                        continue;
                    };
                    next_id = next_id.max(e.id + 1);
                    events.push_back(e);
                    if events.len() > capacity {
                        events.pop_front();
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(EventLog {
            path: Some(path.to_path_buf()),
            capacity,
            inner: Mutex::new(Inner {
                events,
                next_id,
                file: Some(file),
            }),
        })
    }

    /// Events matching `q`, newest first.
    pub fn list(&self, q: &EventQuery) -> Vec<Event> {
        let inner = self.inner.lock();
        inner
            .events
            .iter()
            .rev()
            .filter(|e| q.since_ms.is_none_or(|t| e.time_ms >= t))
            .filter(|e| q.until_ms.is_none_or(|t| e.time_ms <= t))
            .filter(|e| q.kinds.is_empty() || q.kinds.contains(&e.kind))
            .filter(|e| {
                q.service
                    .as_deref()
                    .is_none_or(|s| e.service.as_deref() == Some(s))
            })
            .take(q.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    pub fn get(&self, id: u64) -> Option<Event> {
        self.inner
            .lock()
            .events
            .iter()
            .find(|e| e.id == id)
            .cloned()
    }
}

impl EventSink for EventLog {
    fn record(&self, new: NewEvent) -> Result<Event, EventError> {
        let kind = new.kind.ok_or(EventError::NoKind)?;
        if new.title.trim().is_empty() {
            return Err(EventError::NoTitle);
        }
        let mut inner = self.inner.lock();
        let event = Event {
            id: inner.next_id,
            kind,
            severity: new.severity,
            time_ms: new.time_ms.unwrap_or_else(meshlens_model::time::now_ms),
            service: new.service,
            title: new.title,
            detail: new.detail,
            undo: new.undo,
        };
        inner.next_id += 1;
        if let Some(f) = inner.file.as_mut() {
            let mut line = serde_json::to_string(&event).unwrap_or_default();
            line.push('\n');
            if let Err(source) = f.write_all(line.as_bytes()) {
                // The timeline is an aid, not a record of truth: keep serving from memory.
                tracing::warn!(path = ?self.path, error = %source, "event log write failed");
            }
        }
        inner.events.push_back(event.clone());
        if inner.events.len() > self.capacity {
            inner.events.pop_front();
        }
        tracing::info!(id = event.id, kind = ?event.kind, title = %event.title, "event");
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, title: &str, service: &str) -> NewEvent {
        NewEvent {
            kind: Some(kind),
            title: title.into(),
            service: Some(service.into()),
            ..Default::default()
        }
    }

    #[test]
    fn events_survive_a_reopen_and_list_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = EventLog::open(&path, 10).unwrap();
        log.record(ev(EventKind::Rollout, "step 10 %", "http-lb"))
            .unwrap();
        log.record(ev(EventKind::Verdict, "pass", "http-lb"))
            .unwrap();
        log.record(ev(EventKind::Anomaly, "p99 up", "clover-server"))
            .unwrap();
        drop(log);
        // A torn last line is skipped.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\":9,\"ki").unwrap();
        let log = EventLog::open(&path, 10).unwrap();
        let all = log.list(&EventQuery::default());
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 2, 1]);
        let next = log
            .record(ev(EventKind::Alert, "firing", "http-lb"))
            .unwrap();
        assert_eq!(next.id, 4);
        let q = EventQuery {
            kinds: vec![EventKind::Rollout, EventKind::Alert],
            service: Some("http-lb".into()),
            ..Default::default()
        };
        assert_eq!(
            log.list(&q).iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![4, 1]
        );
    }

    #[test]
    fn an_event_needs_a_kind_and_a_title() {
        let log = EventLog::in_memory(2);
        assert!(matches!(
            log.record(NewEvent {
                title: "x".into(),
                ..Default::default()
            }),
            Err(EventError::NoKind)
        ));
        assert!(matches!(
            log.record(ev(EventKind::Config, " ", "a")),
            Err(EventError::NoTitle)
        ));
        for i in 0..3 {
            log.record(ev(EventKind::Config, &format!("c{i}"), "a"))
                .unwrap();
        }
        assert_eq!(log.list(&EventQuery::default()).len(), 2);
    }
}
