//! The mesh-directory changes made through the API, kept so they can be undone: in memory,
//! and appended to `<data-dir>/mesh-changes.jsonl` so an undo still works after a restart.
//! The file is a log of records (an apply, then maybe its undo); a torn or foreign line is
//! skipped on open.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use meshlens_verify::meshedit::Change;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The object a change is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One change written through the API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredChange {
    pub id: String,
    /// The `MeshDir` root the change's file is relative to.
    pub root: PathBuf,
    pub object: ObjectKey,
    pub change: Change,
    pub time_ms: i64,
    #[serde(default)]
    pub undone: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Record {
    Apply(StoredChange),
    Undo {
        id: String,
        #[serde(rename = "timeMs")]
        time_ms: i64,
    },
}

pub struct ChangeStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    changes: BTreeMap<u64, StoredChange>,
    next: u64,
}

/// `c-<n>` → n.
fn number(id: &str) -> Option<u64> {
    id.strip_prefix("c-")?.parse().ok()
}

impl ChangeStore {
    /// Reads what an earlier run recorded at `path`; an unreadable file leaves the store
    /// empty (the mesh files themselves are untouched either way).
    pub fn open(path: &Path) -> ChangeStore {
        let mut changes = BTreeMap::new();
        match std::fs::File::open(path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<Record>(&line) {
                        Ok(Record::Apply(c)) => {
                            if let Some(n) = number(&c.id) {
                                changes.insert(n, c);
                            }
                        }
                        Ok(Record::Undo { id, .. }) => {
                            if let Some(c) = number(&id).and_then(|n| changes.get_mut(&n)) {
                                c.undone = true;
                            }
                        }
                        Err(_) => continue,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "mesh change log unreadable; undo of earlier changes is unavailable")
            }
        }
        let next = changes.keys().next_back().map_or(1, |n| n + 1);
        ChangeStore {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner { changes, next }),
        }
    }

    /// Keeps a written change; returns its id.
    pub fn add(
        &self,
        root: &Path,
        object: ObjectKey,
        change: Change,
        time_ms: i64,
    ) -> StoredChange {
        let mut inner = self.inner.lock();
        let n = inner.next;
        inner.next += 1;
        let stored = StoredChange {
            id: format!("c-{n}"),
            root: root.to_path_buf(),
            object,
            change,
            time_ms,
            undone: false,
        };
        inner.changes.insert(n, stored.clone());
        self.append(&Record::Apply(stored.clone()));
        stored
    }

    pub fn get(&self, id: &str) -> Option<StoredChange> {
        let n = number(id)?;
        self.inner.lock().changes.get(&n).cloned()
    }

    pub fn mark_undone(&self, id: &str, time_ms: i64) {
        let Some(n) = number(id) else { return };
        if let Some(c) = self.inner.lock().changes.get_mut(&n) {
            c.undone = true;
        }
        self.append(&Record::Undo {
            id: id.to_string(),
            time_ms,
        });
    }

    /// Newest first.
    pub fn list(&self) -> Vec<StoredChange> {
        self.inner.lock().changes.values().rev().cloned().collect()
    }

    /// A failed append is logged, not returned: the mesh file is already written, and the
    /// change still undoes from memory until a restart.
    fn append(&self, record: &Record) {
        let result = (|| -> std::io::Result<()> {
            let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
            line.push('\n');
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            f.write_all(line.as_bytes())?;
            f.sync_data()
        })();
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), error = %e, "recording a mesh change failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_undos_survive_a_reopen_and_ids_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh-changes.jsonl");
        let key = ObjectKey {
            kind: "VirtualService".into(),
            namespace: "default".into(),
            name: "lb".into(),
        };
        let change = Change {
            file: "a.yaml".into(),
            before: Some("x".into()),
            after: "y".into(),
        };
        let s = ChangeStore::open(&path);
        assert_eq!(s.add(dir.path(), key.clone(), change.clone(), 1).id, "c-1");
        assert_eq!(s.add(dir.path(), key, change.clone(), 2).id, "c-2");
        s.mark_undone("c-1", 3);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{torn\n")
            .unwrap();
        let s = ChangeStore::open(&path);
        assert!(s.get("c-1").unwrap().undone);
        let c2 = s.get("c-2").unwrap();
        assert!(!c2.undone);
        assert_eq!(c2.change, change);
        assert!(s.get("c-9").is_none() && s.get("nope").is_none());
        assert_eq!(s.list()[0].id, "c-2");
        let key = c2.object.clone();
        assert_eq!(s.add(dir.path(), key, change, 4).id, "c-3");
    }
}
