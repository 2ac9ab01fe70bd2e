//! Mesh actions end to end on a temporary mesh directory: a dry run writes nothing, a
//! written action leaves valid YAML and undo restores the file byte for byte (also after a
//! restart), a cooldown suppresses a second action, and each action is an event.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use meshlens_verify::events::{EventKind, EventLog, EventQuery};
use meshlens_verify::meshedit::MeshDir;
use meshlens_verify::remediate::config::parse;
use meshlens_verify::remediate::{
    Engine, EngineOptions, Outcome, Status, Trigger, TriggerKind, UndoError,
};

const MESH: &str = "# the rules\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: lb, namespace: default}\nspec:\n  host: lb\n  subsets:\n  - {name: stable, labels: {version: v1}}\n  - {name: canary, labels: {version: v2}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: lb, namespace: default}\nspec:\n  hosts: [lb]\n  http:\n  - route:\n    - {destination: {host: lb, subset: stable}, weight: 70}\n    - {destination: {host: lb, subset: canary}, weight: 30}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: lb, namespace: default}\nspec: {hosts: [lb], location: MESH_INTERNAL, resolution: STATIC, ports: [{number: 80, name: http, protocol: HTTP}], endpoints: [{address: 127.0.0.1, labels: {version: v1}}, {address: 127.0.0.2, labels: {version: v2}}]}\n";

const CONFIG: &str = r#"
remediations:
  - name: drain
    match: {alertname: CanaryErrors}
    action: {type: shift-traffic, away_from: v2}
    cooldown: 1h
  - name: drain-dry
    match: {alertname: Maybe}
    action: {type: shift-traffic, service: lb, away_from: v2}
    dry_run: true
  - name: kill
    match: {alertname: Meltdown}
    action: {type: kill-switch}
  - name: eject
    match: {alertname: anomaly, signal: errors}
    action: {type: tighten-outlier}
  - name: hook
    match: {alertname: Hook}
    action: {type: webhook, url: "http://127.0.0.1:9/x"}
    dry_run: true
"#;

fn alert(name: &str, service: &str) -> Trigger {
    let mut labels = BTreeMap::new();
    labels.insert("alertname".to_string(), name.to_string());
    labels.insert("service".to_string(), service.to_string());
    Trigger {
        kind: TriggerKind::Alert,
        labels,
        annotations: Default::default(),
        value: Some(1.0),
        since_ms: None,
    }
}

struct Setup {
    dir: tempfile::TempDir,
    events: Arc<EventLog>,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mesh")).unwrap();
        std::fs::write(dir.path().join("mesh/mesh.yaml"), MESH).unwrap();
        Setup {
            dir,
            events: Arc::new(EventLog::in_memory(100)),
        }
    }

    fn mesh_file(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mesh/mesh.yaml")).unwrap()
    }

    fn engine(&self, write: bool) -> Engine {
        Engine::new(
            EngineOptions {
                config: parse(CONFIG, "rem.yml").unwrap(),
                mesh: Some(MeshDir::new(self.dir.path().join("mesh"))),
                mesh_write: write,
                state_file: Some(self.dir.path().join("data/remediations.json")),
                base_url: "http://meshlens:9090".into(),
            },
            self.events.clone(),
            None,
        )
        .unwrap()
    }
}

fn acted(mut o: Vec<Outcome>) -> meshlens_verify::remediate::ActionRecord {
    assert_eq!(o.len(), 1, "{o:?}");
    match o.remove(0) {
        Outcome::Acted(r) => *r,
        other => panic!("expected an action, got {other:?}"),
    }
}

fn no_errors(dir: &Path) {
    let report = meshlens_mesh::validate::validate_paths(&[dir.to_path_buf()]);
    let errors: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == meshlens_mesh::validate::Severity::Error)
        .collect();
    assert!(
        errors.is_empty(),
        "the edited mesh has validation errors: {errors:?}"
    );
    assert!(
        report.objects >= 3,
        "{}",
        meshlens_mesh::validate::to_json(&report)
    );
}

#[tokio::test]
async fn a_dry_run_records_the_diff_and_writes_nothing() {
    let s = Setup::new();
    // Asked for a dry run.
    let e = s.engine(true);
    let r = acted(e.observe(&[alert("Maybe", "ignored")]).await);
    assert_eq!(r.status, Status::DryRun, "{r:?}");
    assert!(r.dry_run);
    assert!(
        r.diff
            .contains("-    - {destination: {host: lb, subset: canary}, weight: 30}"),
        "{}",
        r.diff
    );
    assert!(r.diff.contains("weight: 0"), "{}", r.diff);
    assert!(r.changes.is_empty());
    assert_eq!(s.mesh_file(), MESH);
    // Forced: the server runs without --mesh-write, and says so.
    let e = s.engine(false);
    let r = acted(e.observe(&[alert("CanaryErrors", "lb")]).await);
    assert_eq!(r.status, Status::DryRun);
    assert!(r.message.contains("--mesh-write"), "{}", r.message);
    assert_eq!(s.mesh_file(), MESH);
    assert!(matches!(e.undo(&r.id), Err(UndoError::NotUndoable(_))));
    let names: Vec<_> = std::fs::read_dir(s.dir.path().join("mesh"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[tokio::test]
async fn shift_traffic_writes_valid_yaml_and_undo_restores_byte_for_byte_after_a_restart() {
    let s = Setup::new();
    let e = s.engine(true);
    let r = acted(e.observe(&[alert("CanaryErrors", "lb")]).await);
    assert_eq!(r.status, Status::Applied, "{r:?}");
    let vs = MeshDir::new(s.dir.path().join("mesh"))
        .find("VirtualService", "default", "lb")
        .unwrap();
    let route = &vs.spec()["http"][0]["route"];
    assert_eq!(route[0]["weight"].as_i64(), Some(100));
    assert_eq!(route[1]["weight"].as_i64(), Some(0));
    assert!(s.mesh_file().starts_with("# the rules\n"));
    no_errors(&s.dir.path().join("mesh"));

    // The action is an event whose undo is its id.
    let evs = s.events.list(&EventQuery {
        kinds: vec![EventKind::Remediation],
        ..Default::default()
    });
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].undo.as_deref(), Some(r.id.as_str()));
    assert_eq!(evs[0].service.as_deref(), Some("lb"));
    assert_eq!(evs[0].detail["status"], "applied");

    // A restart: the action is read back from the data directory.
    drop(e);
    let e = s.engine(true);
    assert_eq!(e.list().len(), 1);
    let undone = e.undo(&r.id).unwrap();
    assert!(undone.undone.is_some());
    assert_eq!(s.mesh_file(), MESH, "undo restores the file byte for byte");
    assert!(matches!(e.undo(&r.id), Err(UndoError::Conflict(_))));
    assert!(matches!(e.undo("rem-999"), Err(UndoError::NotFound(_))));
    let evs = s.events.list(&EventQuery::default());
    assert_eq!(evs.len(), 2);
    assert!(evs[0].title.contains("undid"), "{}", evs[0].title);
}

#[tokio::test]
async fn an_edited_file_is_a_conflict_on_undo() {
    let s = Setup::new();
    let e = s.engine(true);
    let r = acted(e.observe(&[alert("Meltdown", "lb")]).await);
    assert_eq!(r.status, Status::Applied, "{r:?}");
    let vs = MeshDir::new(s.dir.path().join("mesh"))
        .find("VirtualService", "default", "lb")
        .unwrap();
    assert_eq!(
        vs.spec()["http"][0]["fault"]["abort"]["httpStatus"].as_i64(),
        Some(503)
    );
    assert_eq!(
        vs.spec()["http"][0]["fault"]["abort"]["percentage"]["value"].as_f64(),
        Some(100.0)
    );
    no_errors(&s.dir.path().join("mesh"));
    let edited = s.mesh_file() + "# someone else\n";
    std::fs::write(s.dir.path().join("mesh/mesh.yaml"), &edited).unwrap();
    let err = e.undo(&r.id).unwrap_err();
    assert!(matches!(err, UndoError::Conflict(_)), "{err}");
    assert_eq!(s.mesh_file(), edited, "a refused undo writes nothing");
}

#[tokio::test]
async fn tighten_outlier_from_an_anomaly_and_undo() {
    let s = Setup::new();
    let e = s.engine(true);
    let mut t = alert("anomaly", "lb");
    t.kind = TriggerKind::Anomaly;
    t.labels.insert("signal".into(), "errors".into());
    let r = acted(e.observe(std::slice::from_ref(&t)).await);
    assert_eq!(r.status, Status::Applied, "{r:?}");
    let dr = MeshDir::new(s.dir.path().join("mesh"))
        .find("DestinationRule", "default", "lb")
        .unwrap();
    let od = &dr.spec()["trafficPolicy"]["outlierDetection"];
    assert_eq!(od["consecutive5xxErrors"].as_i64(), Some(1));
    assert_eq!(od["interval"].as_str(), Some("5s"));
    assert_eq!(od["baseEjectionTime"].as_str(), Some("60s"));
    assert_eq!(od["maxEjectionPercent"].as_i64(), Some(100));
    no_errors(&s.dir.path().join("mesh"));
    e.undo(&r.id).unwrap();
    assert_eq!(s.mesh_file(), MESH);
}

#[tokio::test]
async fn a_cooldown_suppresses_a_second_action_and_an_active_trigger_acts_once() {
    let s = Setup::new();
    let e = s.engine(true);
    let t = alert("CanaryErrors", "lb");
    let r = acted(e.observe(std::slice::from_ref(&t)).await);
    assert_eq!(r.status, Status::Applied);
    // Still firing: the same episode, nothing more.
    assert!(e.observe(std::slice::from_ref(&t)).await.is_empty());
    e.undo(&r.id).unwrap();
    // It ends and comes back within the cooldown (1h): suppressed.
    assert!(e.observe(&[]).await.is_empty());
    let o = e.observe(std::slice::from_ref(&t)).await;
    assert!(
        matches!(&o[..], [Outcome::Suppressed { remediation, .. }] if remediation == "drain"),
        "{o:?}"
    );
    assert_eq!(s.mesh_file(), MESH, "the suppressed action wrote nothing");
    assert_eq!(e.list().len(), 1);
}

#[tokio::test]
async fn a_webhook_action_cannot_be_undone_and_failures_are_recorded() {
    let s = Setup::new();
    let e = s.engine(true);
    let r = acted(e.observe(&[alert("Hook", "lb")]).await);
    assert_eq!(r.status, Status::DryRun);
    let err = e.undo(&r.id).unwrap_err();
    assert!(matches!(err, UndoError::NotUndoable(_)));
    assert!(err.to_string().contains("webhook"), "{err}");
    // A service without a VirtualService: shifting fails, saying why, and is recorded.
    let r2 = acted(e.observe(&[alert("CanaryErrors", "nosuch")]).await);
    assert_eq!(r2.status, Status::Failed);
    assert!(
        r2.message.contains("no VirtualService for nosuch"),
        "{}",
        r2.message
    );
    assert_eq!(e.get(&r2.id).unwrap().status, Status::Failed);
    // The kill switch creates one.
    let r = acted(e.observe(&[alert("Meltdown", "nosuch")]).await);
    assert_eq!(
        r.status,
        Status::Applied,
        "kill-switch creates a VirtualService: {r:?}"
    );
    assert!(s
        .dir
        .path()
        .join("mesh/remediation-kill-switch-nosuch.yaml")
        .exists());
    e.undo(&r.id).unwrap();
    assert_eq!(s.mesh_file(), MESH);
    assert!(!s
        .dir
        .path()
        .join("mesh/remediation-kill-switch-nosuch.yaml")
        .exists());
}
