//! The rollout engine in-process: a scripted judge, recording webhooks, a temp mesh directory.
//! (The CLI test drives real proxies; these pin down the decisions quickly.)

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use meshlens_verify::events::{EventKind, EventLog, EventQuery};
use meshlens_verify::judge::Verdict;
use meshlens_verify::meshedit::MeshDir;
use meshlens_verify::rollout::{
    self, BoxFuture, HookClient, HookPhase, Judge, JudgeAnswer, JudgeRequest, Outcome,
    RolloutError, RolloutSpec, Webhook,
};
use parking_lot::Mutex;
use serde_json::{json, Value};

fn mesh_yaml(stable_w: u32, canary_w: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: svc, namespace: default}}\nspec:\n  hosts: [svc]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: 1001}}, labels: {{app: svc, version: v1}}}}\n  - {{address: 127.0.0.1, ports: {{http: 1002}}, labels: {{app: svc, version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc, namespace: default}}\nspec:\n  host: svc\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\n# the split the rollout edits\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc, namespace: default}}\nspec:\n  hosts: [svc]\n  http:\n  - route:\n    - {{destination: {{host: svc, subset: v1}}, weight: {stable_w}}}\n    - {{destination: {{host: svc, subset: v2}}, weight: {canary_w}}}\n"
    )
}

fn setup(yaml: &str) -> (tempfile::TempDir, MeshDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), yaml).unwrap();
    let m = MeshDir::new(dir.path());
    (dir, m)
}

/// The (stable, canary) weights the file holds now.
fn weights(dir: &Path) -> (u64, u64) {
    let m = MeshDir::new(dir);
    let vs = m.find("VirtualService", "default", "svc").unwrap();
    let route = &vs.spec()["http"][0]["route"];
    (
        route[0]["weight"].as_u64().unwrap(),
        route[1]["weight"].as_u64().unwrap(),
    )
}

fn assert_valid(dir: &Path) {
    let report = meshlens_mesh::validate::validate_paths_with(
        &[dir.to_path_buf()],
        &meshlens_mesh::validate::Options::default(),
    );
    assert!(
        !report.has_errors(),
        "{}",
        meshlens_mesh::validate::to_text(&report)
    );
}

type Action = Box<dyn Fn(u32) + Send + Sync>;

/// Answers from a script; records the canary weight the file held at each check.
struct Scripted {
    dir: std::path::PathBuf,
    answers: Mutex<VecDeque<Result<Verdict, String>>>,
    seen: Mutex<Vec<(u32, (u64, u64))>>,
    on_call: Option<Action>,
}

impl Scripted {
    fn new(dir: &Path, answers: Vec<Result<Verdict, String>>) -> Scripted {
        Scripted {
            dir: dir.to_path_buf(),
            answers: Mutex::new(answers.into()),
            seen: Mutex::default(),
            on_call: None,
        }
    }
}

impl Judge for Scripted {
    fn judge<'a>(&'a self, req: &'a JudgeRequest) -> BoxFuture<'a, Result<JudgeAnswer, String>> {
        Box::pin(async move {
            self.seen.lock().push((req.weight, weights(&self.dir)));
            if let Some(f) = &self.on_call {
                f(req.check);
            }
            let next = self
                .answers
                .lock()
                .pop_front()
                .expect("the rollout asked more checks than scripted");
            next.map(|verdict| JudgeAnswer {
                verdict,
                report: json!({"verdict": verdict, "score": 100, "reason": "scripted"}),
            })
        })
    }
}

/// Records every webhook call; answers 200 unless the URL is scripted otherwise.
#[derive(Default)]
struct Hooks {
    calls: Mutex<Vec<(String, Value)>>,
    status: HashMap<String, u16>,
}

impl HookClient for Hooks {
    fn post<'a>(
        &'a self,
        url: &'a str,
        body: &'a Value,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<u16, String>> {
        Box::pin(async move {
            self.calls.lock().push((url.to_string(), body.clone()));
            Ok(self.status.get(url).copied().unwrap_or(200))
        })
    }
}

fn spec(step: u32, max: u32, threshold: u32) -> RolloutSpec {
    let mut s = RolloutSpec::new("svc", "v1", "v2");
    s.step = step;
    s.max = max;
    s.threshold = threshold;
    s.interval = Duration::from_millis(10);
    s.webhooks = vec![
        Webhook::parse("pre-rollout=http://hooks/pre").unwrap(),
        Webhook::parse("rollout=http://hooks/roll").unwrap(),
        Webhook::parse("post-rollout=http://hooks/post").unwrap(),
        Webhook::parse("http://hooks/all?x=1").unwrap(),
    ];
    s
}

fn hook_order(h: &Hooks) -> Vec<String> {
    h.calls
        .lock()
        .iter()
        .map(|(u, b)| {
            format!(
                "{} {}",
                u.trim_start_matches("http://hooks/"),
                b["type"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_good_canary_steps_to_max_and_is_promoted() {
    let (dir, m) = setup(&mesh_yaml(100, 0));
    let judge = Scripted::new(dir.path(), vec![Ok(Verdict::Pass); 3]);
    let hooks = Hooks::default();
    let log = EventLog::in_memory(100);
    let report = rollout::run(&m, &spec(20, 60, 2), &judge, &hooks, &log)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Promoted);
    assert_eq!(report.outcome.exit_code(), 0);
    assert_eq!((report.checks, report.failed_checks), (3, 0));
    // Each check saw the weight it was asked about, in the file.
    assert_eq!(
        *judge.seen.lock(),
        vec![(20, (80, 20)), (40, (60, 40)), (60, (40, 60))]
    );
    assert_eq!(weights(dir.path()), (0, 100));
    assert_valid(dir.path());
    // Only the VirtualService's document changed; the others keep their text.
    let text = std::fs::read_to_string(dir.path().join("mesh.yaml")).unwrap();
    let before = mesh_yaml(100, 0);
    let others = &before[..before.find("# the split").unwrap()];
    assert!(text.starts_with(others), "{text}");
    assert_eq!(
        hook_order(&hooks),
        [
            "pre pre-rollout",
            "all?x=1 pre-rollout",
            "roll rollout",
            "all?x=1 rollout",
            "roll rollout",
            "all?x=1 rollout",
            "roll rollout",
            "all?x=1 rollout",
            "post post-rollout",
            "all?x=1 post-rollout",
        ]
    );
    let post = &hooks.calls.lock()[8].1;
    assert_eq!(post["name"], "svc");
    assert_eq!(post["namespace"], "default");
    assert_eq!(post["phase"], "Succeeded");
    assert_eq!(post["metadata"]["weight"], "100");
    let events = log.list(&EventQuery::default());
    let titles: Vec<&str> = events.iter().rev().map(|e| e.title.as_str()).collect();
    assert!(
        titles[0].starts_with("rollout started: v1 80 % / v2 20 %"),
        "{titles:?}"
    );
    assert!(
        titles.last().unwrap().starts_with("rollout promoted"),
        "{titles:?}"
    );
    let verdicts = events
        .iter()
        .filter(|e| e.kind == EventKind::Verdict)
        .count();
    assert_eq!(verdicts, 3);
    let promoted = &events[0];
    assert_eq!(promoted.detail["weight"], 100);
    assert_eq!(promoted.detail["check"], 3);
}

#[tokio::test]
async fn a_bad_canary_is_rolled_back_after_threshold_failed_checks() {
    let (dir, m) = setup(&mesh_yaml(100, 0));
    let answers = vec![
        Ok(Verdict::Pass),
        Ok(Verdict::Fail),
        Ok(Verdict::Inconclusive),
    ];
    let judge = Scripted::new(dir.path(), answers);
    let hooks = Hooks::default();
    let log = EventLog::in_memory(100);
    let report = rollout::run(&m, &spec(20, 60, 2), &judge, &hooks, &log)
        .await
        .unwrap();
    assert!(
        matches!(&report.outcome, Outcome::RolledBack { reason } if reason.contains("2 failed checks")),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.outcome.exit_code(), 1);
    // A failed check holds the weight; the inconclusive one counts as failed too.
    assert_eq!(
        *judge.seen.lock(),
        vec![(20, (80, 20)), (40, (60, 40)), (40, (60, 40))]
    );
    assert_eq!(weights(dir.path()), (100, 0));
    assert_valid(dir.path());
    let post = hooks.calls.lock().last().unwrap().1.clone();
    assert_eq!(
        (post["type"].as_str(), post["phase"].as_str()),
        (Some("post-rollout"), Some("Failed"))
    );
    let events = log.list(&EventQuery::default());
    assert!(
        events[0].title.starts_with("rollout rolled back"),
        "{}",
        events[0].title
    );
    assert!(events.iter().any(|e| e
        .title
        .starts_with("rollout holds v2 at 40 %: failed check 1 of 2")));
}

#[tokio::test]
async fn a_judge_that_cannot_answer_is_a_failed_check() {
    let (dir, m) = setup(&mesh_yaml(100, 0));
    let judge = Scripted::new(
        dir.path(),
        vec![
            Err("connection refused".into()),
            Err("connection refused".into()),
        ],
    );
    let log = EventLog::in_memory(100);
    let report = rollout::run(&m, &spec(10, 50, 2), &judge, &Hooks::default(), &log)
        .await
        .unwrap();
    assert!(matches!(report.outcome, Outcome::RolledBack { .. }));
    assert_eq!(weights(dir.path()), (100, 0));
    assert!(log.list(&EventQuery::default()).iter().any(
        |e| e.kind == EventKind::Verdict && e.title.contains("no verdict: connection refused")
    ));
}

#[tokio::test]
async fn a_refusing_pre_rollout_webhook_halts_with_nothing_changed() {
    let yaml = mesh_yaml(100, 0);
    let (dir, m) = setup(&yaml);
    let judge = Scripted::new(dir.path(), vec![]);
    let hooks = Hooks {
        status: HashMap::from([("http://hooks/pre".to_string(), 412)]),
        ..Default::default()
    };
    let log = EventLog::in_memory(100);
    let report = rollout::run(&m, &spec(10, 50, 2), &judge, &hooks, &log)
        .await
        .unwrap();
    assert!(
        matches!(&report.outcome, Outcome::Halted { reason } if reason.contains("http://hooks/pre answered HTTP 412")),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.outcome.exit_code(), 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mesh.yaml")).unwrap(),
        yaml
    );
    assert!(judge.seen.lock().is_empty());
    assert_eq!(hook_order(&hooks), ["pre pre-rollout"]);
}

#[tokio::test]
async fn a_refusing_rollout_webhook_rolls_back() {
    let (dir, m) = setup(&mesh_yaml(100, 0));
    let judge = Scripted::new(dir.path(), vec![]);
    let hooks = Hooks {
        status: HashMap::from([("http://hooks/roll".to_string(), 500)]),
        ..Default::default()
    };
    let log = EventLog::in_memory(100);
    let report = rollout::run(&m, &spec(10, 50, 5), &judge, &hooks, &log)
        .await
        .unwrap();
    assert!(
        matches!(&report.outcome, Outcome::RolledBack { reason } if reason.contains("rollout webhook http://hooks/roll")),
        "{:?}",
        report.outcome
    );
    assert!(judge.seen.lock().is_empty());
    assert_eq!(weights(dir.path()), (100, 0));
    assert_eq!(
        hook_order(&hooks),
        [
            "pre pre-rollout",
            "all?x=1 pre-rollout",
            "roll rollout",
            "post post-rollout",
            "all?x=1 post-rollout"
        ]
    );
}

#[tokio::test]
async fn a_failed_write_stops_and_keeps_the_last_good_weights() {
    let (dir, m) = setup(&mesh_yaml(100, 0));
    let mut judge = Scripted::new(dir.path(), vec![Ok(Verdict::Pass)]);
    // A directory where the atomic write puts its temporary file: the next write fails, as
    // an unwritable directory would (root ignores permissions, this it cannot ignore).
    let blocker = dir.path().join(".mesh.yaml.meshlens-tmp");
    judge.on_call = Some(Box::new(move |_| std::fs::create_dir(&blocker).unwrap()));
    let log = EventLog::in_memory(100);
    let report = rollout::run(&m, &spec(20, 60, 2), &judge, &Hooks::default(), &log)
        .await
        .unwrap();
    let Outcome::Stopped { reason, restored } = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert!(restored, "{reason}");
    assert!(reason.contains("writing weights 60/40 failed"), "{reason}");
    assert!(reason.contains("80/20 are in place"), "{reason}");
    assert_eq!(report.outcome.exit_code(), 2);
    assert_eq!(weights(dir.path()), (80, 20));
    assert!(log.list(&EventQuery::default())[0]
        .title
        .starts_with("rollout stopped"));
}

#[tokio::test]
async fn a_change_made_by_someone_else_stops_and_restores() {
    let (dir, m) = setup(&mesh_yaml(100, 0));
    let mut judge = Scripted::new(dir.path(), vec![Ok(Verdict::Pass)]);
    let file = dir.path().join("mesh.yaml");
    judge.on_call = Some(Box::new(move |_| {
        std::fs::write(&file, mesh_yaml(50, 50)).unwrap();
    }));
    let report = rollout::run(
        &m,
        &spec(20, 60, 2),
        &judge,
        &Hooks::default(),
        &EventLog::in_memory(10),
    )
    .await
    .unwrap();
    let Outcome::Stopped { reason, restored } = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert!(restored);
    assert!(
        reason.contains("changed outside the rollout (weights now 50/50"),
        "{reason}"
    );
    assert_eq!(weights(dir.path()), (80, 20));
    assert_valid(dir.path());
}

#[tokio::test]
async fn an_unusable_mesh_or_spec_is_an_error_before_anything_changes() {
    let judge = Scripted::new(Path::new("."), vec![]);
    let hooks = Hooks::default();
    let log = EventLog::in_memory(10);
    let run = |yaml: String, s: RolloutSpec| {
        let (dir, m) = setup(&yaml);
        let (judge, hooks, log) = (&judge, &hooks, &log);
        async move {
            let r = rollout::run(&m, &s, judge, hooks, log).await;
            assert_eq!(
                std::fs::read_to_string(dir.path().join("mesh.yaml")).unwrap(),
                yaml
            );
            r.map(|_| ()).unwrap_err()
        }
    };
    let other = RolloutSpec::new("reviews", "v1", "v2");
    let e = run(mesh_yaml(100, 0), other).await;
    assert!(
        matches!(&e, RolloutError::Mesh(m) if m.contains("no VirtualService") && m.contains("reviews")),
        "{e}"
    );
    let e = run(mesh_yaml(100, 0), RolloutSpec::new("svc", "v0", "v2")).await;
    assert!(
        matches!(&e, RolloutError::Mesh(m) if m.contains("no http route to subset \"v0\"")),
        "{e}"
    );
    let only_v1 = mesh_yaml(100, 0).replace(
        "    - {destination: {host: svc, subset: v2}, weight: 0}\n",
        "",
    );
    assert_ne!(only_v1, mesh_yaml(100, 0));
    let e = run(only_v1, RolloutSpec::new("svc", "v1", "v3")).await;
    assert!(
        matches!(&e, RolloutError::Mesh(m) if m.contains("subset \"v3\"") && m.contains("v1, v2")),
        "{e}"
    );
    let mut bad = spec(0, 50, 2);
    bad.webhooks.clear();
    let e = run(mesh_yaml(100, 0), bad).await;
    assert!(
        matches!(&e, RolloutError::Usage(m) if m.contains("--step 0")),
        "{e}"
    );
    let e = run(mesh_yaml(100, 0), spec(30, 20, 2)).await;
    assert!(
        matches!(&e, RolloutError::Usage(m) if m.contains("--max 20")),
        "{e}"
    );
    assert!(hooks.calls.lock().is_empty());
}

#[test]
fn webhook_forms() {
    let w = Webhook::parse("rollout=http://h:1/x?a=b").unwrap();
    assert_eq!(
        (w.phase, w.url.as_str()),
        (Some(HookPhase::Rollout), "http://h:1/x?a=b")
    );
    let w = Webhook::parse("http://h:1/x?a=b").unwrap();
    assert_eq!((w.phase, w.url.as_str()), (None, "http://h:1/x?a=b"));
    assert!(w.runs_at(HookPhase::PostRollout));
    let e = Webhook::parse("confirm=http://h/x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown phase \"confirm\""), "{e}");
    assert!(Webhook::parse("ftp://h/x").is_err());
}

#[tokio::test]
async fn a_route_to_the_stable_subset_alone_gets_the_canary_added() {
    let only_v1 = mesh_yaml(100, 0).replace(
        "    - {destination: {host: svc, subset: v2}, weight: 0}\n",
        "",
    );
    let (dir, m) = setup(&only_v1);
    let judge = Scripted::new(dir.path(), vec![Ok(Verdict::Pass)]);
    let mut s = spec(50, 50, 1);
    s.webhooks.clear();
    let report = rollout::run(&m, &s, &judge, &Hooks::default(), &EventLog::in_memory(10))
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Promoted);
    assert_eq!(*judge.seen.lock(), vec![(50, (50, 50))]);
    assert_eq!(weights(dir.path()), (0, 100));
    assert_valid(dir.path());
}
