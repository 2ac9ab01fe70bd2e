//! The Config view's API: every Istio object of the server's `--mesh` paths with its
//! validation status, a preview of an edit (its diff and the findings it would add), and,
//! only with `--mesh-write`, the edit written to the mesh directory (the first `--mesh` path)
//! through [`MeshDir`], recorded as a config event that can be undone.
//!
//! `--mesh TENANT=PATH` files belong to one tenant's `/api/v1/validations`; this API is
//! global, so it sees only the paths without a tenant prefix.

mod body;
mod changes;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meshlens_mesh::validate::{self, Finding, Severity};
use meshlens_verify::events::{self, EventKind, EventSink, NewEvent};
use meshlens_verify::meshedit::{EditError, MeshDir, Plan};
use parking_lot::Mutex;
use serde_json::{json, Value};
use serde_yaml_ng::Value as Yaml;

use self::body::parse_body;
use self::changes::{ChangeStore, StoredChange};
use super::{success, GlobalState};

const NO_MESH: &str = "the server has no mesh directory: start it with --mesh DIR (the first --mesh path without a tenant prefix is the one edits are planned on)";
const WRITE_OFF: &str = "writing to the mesh directory is off: start the server with --mesh-write to apply edits (preview works without it)";

/// What the mesh routes share.
pub struct MeshState {
    /// The `--mesh` paths without a tenant prefix; the first is the mesh directory.
    paths: Vec<PathBuf>,
    write: bool,
    changes: ChangeStore,
    /// One write (plan and apply, or an undo) at a time, so a plan is never stale against
    /// another API write.
    writing: Mutex<()>,
}

impl MeshState {
    pub fn new(opts: &crate::ServerOptions) -> MeshState {
        MeshState {
            paths: crate::tenants::mesh_paths(&opts.mesh_config, &[]),
            write: opts.mesh_write,
            changes: ChangeStore::open(&opts.data_dir.join("mesh-changes.jsonl")),
            writing: Mutex::new(()),
        }
    }

    /// A file root is a `MeshDir` too: edits then go into that file.
    fn dir(&self) -> Option<MeshDir> {
        self.paths.first().map(MeshDir::new)
    }

    fn writable(&self) -> bool {
        self.write && !self.paths.is_empty()
    }
}

/// `GET /api/v1/mesh/objects`.
pub async fn objects(State(s): State<Arc<GlobalState>>) -> Response {
    let s2 = s.clone();
    match tokio::task::spawn_blocking(move || list_objects(&s2.mesh)).await {
        Ok(data) => success(data),
        Err(e) => internal(&format!("listing mesh objects failed: {e}")),
    }
}

fn list_objects(m: &MeshState) -> Value {
    let report = validate::validate_paths(&m.paths);
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for p in &m.paths {
        match MeshDir::new(p).objects() {
            Ok(objs) => {
                for o in objs {
                    let mine: Vec<&Finding> = report
                        .findings
                        .iter()
                        .filter(|f| {
                            f.object.kind == o.kind
                                && f.object.name == o.name
                                && (f.object.namespace == o.namespace
                                    || (f.object.namespace.is_empty() && o.namespace == "default"))
                        })
                        .collect();
                    let status = if mine.iter().any(|f| f.severity == Severity::Error) {
                        "error"
                    } else if mine.iter().any(|f| f.severity == Severity::Warning) {
                        "warning"
                    } else {
                        "valid"
                    };
                    objects.push(json!({
                        "kind": o.kind,
                        "apiVersion": o.api_version,
                        "namespace": o.namespace,
                        "name": o.name,
                        "dir": p.display().to_string(),
                        "file": o.file.display().to_string(),
                        "line": o.line,
                        "yaml": o.yaml,
                        "validation": status,
                        "findings": mine.iter().map(|f| finding_json(f)).collect::<Vec<_>>(),
                    }));
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    json!({
        "writable": m.writable(),
        "dirs": m.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "objects": objects,
        "errors": errors,
    })
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "code": f.code,
        "severity": f.severity,
        "message": f.message,
        "path": f.path,
        "line": f.line,
        "object": {"kind": f.object.kind, "namespace": f.object.namespace, "name": f.object.name},
    })
}

fn plan_json(plan: &Plan, writable: bool) -> Value {
    json!({
        "file": plan.file.display().to_string(),
        "diff": plan.diff,
        "addedErrors": plan.added_errors.iter().map(finding_json).collect::<Vec<_>>(),
        "addedWarnings": plan.added_warnings.iter().map(finding_json).collect::<Vec<_>>(),
        "valid": plan.is_valid(),
        "noop": plan.is_noop(),
        "created": plan.before.is_none(),
        "writable": writable,
    })
}

/// `POST /api/v1/mesh/preview`: what writing the body's object would do; writes nothing.
pub async fn preview(State(s): State<Arc<GlobalState>>, body: axum::body::Bytes) -> Response {
    let Some(dir) = s.mesh.dir() else {
        return bad_data(NO_MESH);
    };
    let edit = match parse_body(&body) {
        Ok(e) => e,
        Err(m) => return bad_data(&m),
    };
    let writable = s.mesh.writable();
    match tokio::task::spawn_blocking(move || dir.plan_upsert(&edit.yaml, &edit.file)).await {
        Ok(Ok(plan)) => success(plan_json(&plan, writable)),
        Ok(Err(e)) => edit_error(e),
        Err(e) => internal(&format!("planning the edit failed: {e}")),
    }
}

/// `POST /api/v1/mesh/apply`: writes the body's object (only with `--mesh-write`).
pub async fn apply(State(s): State<Arc<GlobalState>>, body: axum::body::Bytes) -> Response {
    if !s.mesh.write {
        return error(StatusCode::FORBIDDEN, "forbidden", WRITE_OFF);
    }
    let Some(dir) = s.mesh.dir() else {
        return bad_data(NO_MESH);
    };
    let edit = match parse_body(&body) {
        Ok(e) => e,
        Err(m) => return bad_data(&m),
    };
    let s2 = s.clone();
    let key = edit.key.clone();
    let service = service_of(&key.kind, &edit.value);
    let written = tokio::task::spawn_blocking(move || {
        let _one = s2.mesh.writing.lock();
        let existed = dir
            .find(&edit.key.kind, &edit.key.namespace, &edit.key.name)
            .is_ok();
        let plan = dir
            .plan_upsert(&edit.yaml, &edit.file)
            .map_err(|e| Box::new(edit_error(e)))?;
        if !plan.is_valid() {
            let msg = EditError::Invalid(plan.added_errors.clone()).to_string();
            return Err(Box::new(invalid(&msg, plan_json(&plan, true))));
        }
        if plan.is_noop() {
            return Err(Box::new(bad_data(&format!(
                "{} already holds this {}; nothing to write",
                plan.file.display(),
                edit.key
            ))));
        }
        let change = dir.apply(&plan).map_err(|e| Box::new(edit_error(e)))?;
        let stored =
            s2.mesh
                .changes
                .add(dir.root(), edit.key, change, meshlens_model::time::now_ms());
        Ok((stored, plan, existed))
    })
    .await;
    let (stored, plan, existed) = match written {
        Ok(Ok(w)) => w,
        Ok(Err(resp)) => return *resp,
        Err(e) => return internal(&format!("writing the edit failed: {e}")),
    };
    let verb = if existed { "changed" } else { "created" };
    let event = record(
        &s,
        NewEvent {
            kind: Some(EventKind::Config),
            severity: events::Severity::Info,
            time_ms: Some(stored.time_ms),
            service,
            title: format!("{key} {verb}"),
            detail: json!({
                "file": plan.file.display().to_string(),
                "dir": stored.root.display().to_string(),
                "diff": plan.diff,
                "object": key,
                "change": stored.id,
                "addedWarnings": plan.added_warnings.iter().map(finding_json).collect::<Vec<_>>(),
            }),
            undo: Some(stored.id.clone()),
        },
    );
    success(
        json!({"id": stored.id, "event": event, "diff": plan.diff, "file": plan.file.display().to_string()}),
    )
}

/// `POST /api/v1/mesh/changes/{id}/undo`: puts back what the change replaced, if the file
/// still holds what the change wrote.
pub async fn undo(State(s): State<Arc<GlobalState>>, UrlPath(id): UrlPath<String>) -> Response {
    if !s.mesh.write {
        return error(StatusCode::FORBIDDEN, "forbidden", WRITE_OFF);
    }
    let Some(stored) = s.mesh.changes.get(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!(
                "no mesh change {id:?} (ids look like c-1; GET /api/v1/mesh/changes lists them)"
            ),
        );
    };
    let s2 = s.clone();
    let st = stored.clone();
    let reverted = tokio::task::spawn_blocking(move || {
        let _one = s2.mesh.writing.lock();
        // Read again under the lock: a concurrent undo of the same change may have won.
        if s2.mesh.changes.get(&st.id).is_none_or(|c| c.undone) {
            return Err(Box::new(error(
                StatusCode::CONFLICT,
                "conflict",
                &format!("mesh change {} was already undone", st.id),
            )));
        }
        let dir = MeshDir::new(&st.root);
        let back = dir.revert(&st.change).map_err(|e| Box::new(match e {
            EditError::Conflict(f) => error(
                StatusCode::CONFLICT,
                "conflict",
                &format!(
                    "{} changed since mesh change {} was written; it cannot be undone (edit it by hand or apply a new change)",
                    f.display(),
                    st.id
                ),
            ),
            e => edit_error(e),
        }))?;
        s2.mesh
            .changes
            .mark_undone(&st.id, meshlens_model::time::now_ms());
        let diff = dir
            .plan_file(&back.file, back.before.clone(), back.after.clone())
            .map(|p| p.diff)
            .unwrap_or_default();
        Ok::<_, Box<Response>>(diff)
    })
    .await;
    let diff = match reverted {
        Ok(Ok(d)) => d,
        Ok(Err(resp)) => return *resp,
        Err(e) => return internal(&format!("undoing the change failed: {e}")),
    };
    let key = &stored.object;
    let event = record(
        &s,
        NewEvent {
            kind: Some(EventKind::Config),
            severity: events::Severity::Info,
            time_ms: None,
            service: service_of(&key.kind, &edit_value(&stored)),
            title: format!("{key} change {} undone", stored.id),
            detail: json!({
                "file": stored.change.file.display().to_string(),
                "dir": stored.root.display().to_string(),
                "diff": diff,
                "object": key,
                "change": stored.id,
            }),
            undo: None,
        },
    );
    success(json!({"id": stored.id, "event": event, "diff": diff}))
}

/// `GET /api/v1/mesh/changes`: the changes written through the API, newest first.
pub async fn list_changes(State(s): State<Arc<GlobalState>>) -> Response {
    let list: Vec<Value> = s
        .mesh
        .changes
        .list()
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "object": c.object,
                "dir": c.root.display().to_string(),
                "file": c.change.file.display().to_string(),
                "timeMs": c.time_ms,
                "undone": c.undone,
            })
        })
        .collect();
    success(json!(list))
}

/// The object as the change wrote it (for a change that created a file, or replaced a
/// document, the written document is in `after`).
fn edit_value(c: &StoredChange) -> Yaml {
    meshlens_mesh::load::split_documents(&c.change.after)
        .into_iter()
        .filter_map(|d| serde_yaml_ng::from_str::<Yaml>(d.text).ok())
        .find(|v| {
            v.get("kind").and_then(Yaml::as_str) == Some(c.object.kind.as_str())
                && v.get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Yaml::as_str)
                    == Some(c.object.name.as_str())
        })
        .unwrap_or(Yaml::Null)
}

/// The service an object routes, for the event's links: the short name of its host.
fn service_of(kind: &str, v: &Yaml) -> Option<String> {
    let spec = v.get("spec")?;
    let host = match kind {
        "VirtualService" | "ServiceEntry" => spec.get("hosts")?.get(0)?.as_str()?,
        "DestinationRule" => spec.get("host")?.as_str()?,
        _ => return None,
    };
    let short = host.split('.').next().unwrap_or(host);
    (!short.is_empty() && short != "*").then(|| short.to_string())
}

fn record(s: &GlobalState, e: NewEvent) -> Value {
    match s.events.record(e) {
        Ok(ev) => serde_json::to_value(ev).unwrap_or(Value::Null),
        Err(err) => {
            tracing::warn!(error = %err, "recording a config event failed");
            Value::Null
        }
    }
}

fn edit_error(e: EditError) -> Response {
    let msg = e.to_string();
    match e {
        EditError::Parse { .. } | EditError::Outside(_) => bad_data(&msg),
        EditError::NotFound { .. } => error(StatusCode::NOT_FOUND, "not_found", &msg),
        EditError::Conflict(_) => error(StatusCode::CONFLICT, "conflict", &msg),
        EditError::Invalid(f) => invalid(
            &msg,
            json!({"addedErrors": f.iter().map(finding_json).collect::<Vec<_>>(), "valid": false}),
        ),
        EditError::Io { .. } => internal(&msg),
    }
}

fn invalid(msg: &str, data: Value) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"status": "error", "errorType": "invalid", "error": msg, "data": data})),
    )
        .into_response()
}

fn bad_data(msg: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_data", msg)
}

fn internal(msg: &str) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
}

fn error(status: StatusCode, kind: &str, msg: &str) -> Response {
    (
        status,
        Json(json!({"status": "error", "errorType": kind, "error": msg})),
    )
        .into_response()
}
