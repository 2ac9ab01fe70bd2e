//! Remediation in the server: the `--remediation.config` engine, fed every few seconds with
//! the rule engine's firing alerts and the anomalies still open in the event log (an anomaly
//! is the labels `{alertname: "anomaly", service, signal}`), with the service's graph
//! neighbourhood for webhook payloads; and `GET /api/v1/remediations`,
//! `POST /api/v1/remediations/{id}/undo`.
//!
//! Anomalies are read from the event log (their start and end events) rather than from the
//! evaluator, so an anomaly recorded by any writer of the timeline can drive an action.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meshlens_analysis::{build_graph, GraphQuery, GraphSource, GraphType};
use meshlens_verify::events::{EventKind, EventQuery};
use meshlens_verify::meshedit::MeshDir;
use meshlens_verify::remediate::{
    self, Engine, EngineOptions, Neighbourhood, Outcome, Trigger, TriggerKind, UndoError,
};
use serde_json::{json, Value};

use crate::api::GlobalState;
use crate::tenants::TenantStack;
use crate::ServerOptions;

/// How often alerts and anomalies are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Anomaly starts older than this without an end are not acted on (a restart may have
/// lost the end).
const ANOMALY_HORIZON_MS: i64 = 6 * 3600 * 1000;

/// The engine, when `--remediation.config` is set.
pub struct Remediations {
    pub engine: Option<Arc<Engine>>,
    file: Option<std::path::PathBuf>,
}

/// Loads the file and starts the poller (stopped by `stop`); `addr` is the bound listener,
/// for links when there is no `--web.external-url`. A bad file stops the start.
pub(crate) fn start(
    opts: &ServerOptions,
    state: &Arc<GlobalState>,
    addr: std::net::SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Arc<Remediations>, crate::rules::LoadError> {
    let Some(file) = opts.remediation_file.clone() else {
        return Ok(Arc::new(Remediations {
            engine: None,
            file: None,
        }));
    };
    let config = remediate::config::load(&file)
        .map_err(|e| crate::rules::LoadError(format!("--remediation.config {e}")))?;
    let mesh = crate::tenants::mesh_paths(&opts.mesh_config, &[])
        .first()
        .map(MeshDir::new);
    let base_url = if opts.rules.external_url.is_empty() {
        format!("http://{addr}")
    } else {
        opts.rules.external_url.clone()
    };
    let graph = Arc::new(GraphNeighbourhood {
        stack: state.tenants.scrape_stack(),
        engine: state.rules.engine.clone(),
    });
    let engine = Engine::new(
        EngineOptions {
            config,
            mesh,
            mesh_write: opts.mesh_write,
            state_file: Some(opts.data_dir.join("remediations.json")),
            base_url,
        },
        state.events.clone(),
        Some(graph),
    )
    .map_err(|e| crate::rules::LoadError(e.to_string()))?;
    let engine = Arc::new(engine);
    tracing::info!(
        file = %file.display(),
        remediations = engine.remediations().len(),
        mesh_write = engine.mesh_write(),
        "remediation hooks loaded"
    );
    tokio::spawn(poll(Arc::downgrade(state), engine.clone(), stop));
    Ok(Arc::new(Remediations {
        engine: Some(engine),
        file: Some(file),
    }))
}

async fn poll(
    state: Weak<GlobalState>,
    engine: Arc<Engine>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(s) = state.upgrade() else { return };
        let mut triggers = firing_alerts(&s.rules.manager.alerts_json());
        triggers.extend(open_anomalies(&s, meshlens_model::time::now_ms()));
        drop(s);
        for o in engine.observe(&triggers).await {
            if let Outcome::Acted(r) = o {
                tracing::info!(id = %r.id, remediation = %r.remediation, status = ?r.status, message = %r.message, "remediation");
            }
        }
    }
}

/// The firing alerts of `GET /api/v1/alerts`'s data.
pub(crate) fn firing_alerts(data: &Value) -> Vec<Trigger> {
    let strings = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    data["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .map(|a| Trigger {
            kind: TriggerKind::Alert,
            labels: strings(&a["labels"]),
            annotations: strings(&a["annotations"]),
            value: a["value"].as_str().and_then(|v| v.parse().ok()),
            since_ms: a["activeAt"]
                .as_str()
                .and_then(meshlens_model::time::parse_time),
        })
        .collect()
}

/// Anomalies whose latest event is a start, from the event log.
fn open_anomalies(s: &GlobalState, now: i64) -> Vec<Trigger> {
    let events = s.events.list(&EventQuery {
        kinds: vec![EventKind::Anomaly],
        since_ms: Some(now - ANOMALY_HORIZON_MS),
        limit: Some(5000),
        ..Default::default()
    });
    // Newest first: the first event seen per (service, signal) is its state.
    let mut latest: HashMap<(String, String), &meshlens_verify::events::Event> = HashMap::new();
    for e in &events {
        let (Some(service), Some(signal)) = (e.service.clone(), e.detail["signal"].as_str()) else {
            continue;
        };
        latest.entry((service, signal.to_string())).or_insert(e);
    }
    let mut out: Vec<Trigger> = latest
        .into_iter()
        .filter(|(_, e)| e.detail["phase"] == "start")
        .map(|((service, signal), e)| {
            let mut labels = BTreeMap::new();
            labels.insert("alertname".to_string(), "anomaly".to_string());
            labels.insert("service".to_string(), service);
            labels.insert("signal".to_string(), signal);
            let mut annotations = BTreeMap::new();
            annotations.insert("summary".to_string(), e.title.clone());
            Trigger {
                kind: TriggerKind::Anomaly,
                labels,
                annotations,
                value: e.detail["score"].as_f64(),
                since_ms: e.detail["start"].as_i64().or(Some(e.time_ms)),
            }
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// Callers and callees of a service over the last 5 minutes, from the scrape tenant's
/// service graph (metrics, and traces where Istio reports nothing).
struct GraphNeighbourhood {
    stack: Arc<TenantStack>,
    engine: Arc<meshlens_promql::Engine>,
}

impl Neighbourhood for GraphNeighbourhood {
    fn neighbourhood(&self, service: &str) -> Value {
        let q = GraphQuery {
            graph_type: GraphType::Service,
            window_ms: 300_000,
            end_ms: meshlens_model::time::now_ms(),
            cluster: None,
            namespace: None,
            focus: Some(service.to_string()),
            source: GraphSource::Both,
        };
        let g = match build_graph(
            &*self.stack.metrics_reader,
            &*self.stack.trace_state.reader,
            &self.engine,
            &q,
        ) {
            Ok(g) => g,
            Err(e) => return json!({"service": service, "error": e.to_string()}),
        };
        let node = |id: &str| g.nodes.iter().find(|n| n.id == id);
        let mut callers = Vec::new();
        let mut callees = Vec::new();
        for e in &g.edges {
            let (Some(src), Some(dst)) = (node(&e.source), node(&e.target)) else {
                continue;
            };
            let entry = |n: &meshlens_analysis::Node| {
                json!({"name": n.name, "namespace": n.namespace, "nodeType": n.node_type,
                    "protocol": e.protocol, "requestRate": e.request_rate,
                    "errorRate": e.error_rate})
            };
            if dst.name == service && src.name != service {
                callers.push(entry(src));
            } else if src.name == service && dst.name != service {
                callees.push(entry(dst));
            }
        }
        let me = g.nodes.iter().find(|n| n.name == service);
        json!({
            "service": service,
            "window": "5m",
            "requestRate": me.map(|n| n.request_rate_in),
            "errorRate": me.map(|n| n.error_rate),
            "callers": callers,
            "callees": callees,
        })
    }
}

fn error(status: StatusCode, kind: &str, msg: &str) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "errorType": kind, "error": msg})),
    )
        .into_response()
}

/// `GET /api/v1/remediations`: the configured remediations and the actions taken.
pub async fn list(State(s): State<Arc<GlobalState>>) -> Response {
    let Some(r) = s.remediation.get() else {
        return crate::api::success(
            json!({"configured": false, "remediations": [], "actions": []}),
        );
    };
    let Some(engine) = &r.engine else {
        return crate::api::success(
            json!({"configured": false, "remediations": [], "actions": []}),
        );
    };
    let remediations: Vec<Value> = engine
        .remediations()
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "match": m.matchers.iter().map(|x| match &x.op {
                    remediate::config::MatchOp::Equal(v) => format!("{}=\"{v}\"", x.label),
                    remediate::config::MatchOp::Regex(re) => format!("{}=~\"{}\"", x.label,
                        re.as_str().trim_start_matches("^(?:").trim_end_matches(")$")),
                }).collect::<Vec<_>>(),
                "action": m.action,
                "dryRun": m.dry_run,
                "cooldown": meshlens_model::format_duration(m.cooldown),
            })
        })
        .collect();
    crate::api::success(json!({
        "configured": true,
        "file": r.file.as_ref().map(|f| f.display().to_string()),
        "meshWrite": engine.mesh_write(),
        "remediations": remediations,
        "actions": engine.list(),
    }))
}

/// `POST /api/v1/remediations/{id}/undo`: 404 unknown, 409 conflict (already undone, or the
/// file changed since), 400 not undoable (a webhook, a dry run), 403 without `--mesh-write`.
pub async fn undo(State(s): State<Arc<GlobalState>>, Path(id): Path<String>) -> Response {
    let Some(engine) = s.remediation.get().and_then(|r| r.engine.clone()) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!(
                "no remediation action {id}: remediation is not configured (--remediation.config)"
            ),
        );
    };
    let id2 = id.clone();
    let result = tokio::task::spawn_blocking(move || engine.undo(&id2)).await;
    match result {
        Ok(Ok(rec)) => crate::api::success(json!(rec)),
        Ok(Err(e)) => {
            let (status, kind) = match &e {
                UndoError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                UndoError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                UndoError::NotUndoable(_) => (StatusCode::BAD_REQUEST, "bad_data"),
                UndoError::NotWritable(_) => (StatusCode::FORBIDDEN, "forbidden"),
            };
            error(status, kind, &e.to_string())
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("undoing {id} failed: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_firing_alerts_are_triggers() {
        let data = json!({"alerts": [
            {"labels": {"alertname": "A", "service": "lb"}, "annotations": {"summary": "s"},
             "state": "firing", "activeAt": "2024-01-01T00:00:00Z", "value": "8e-02"},
            {"labels": {"alertname": "B"}, "annotations": {}, "state": "pending",
             "activeAt": "2024-01-01T00:00:00Z", "value": "1e+00"},
        ]});
        let t = firing_alerts(&data);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].labels["service"], "lb");
        assert_eq!(t[0].annotations["summary"], "s");
        assert_eq!(t[0].value, Some(0.08));
        assert_eq!(t[0].since_ms, Some(1_704_067_200_000));
        assert!(firing_alerts(&json!({})).is_empty());
    }
}
