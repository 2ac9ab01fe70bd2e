//! `meshlens rollout` end to end: real `meshlens proxy` processes over loopback backends, a
//! control server standing in for the meshlens server (the test decides each verdict from the
//! traffic it measured through the proxies) and for the webhooks.

mod rollout_support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;

use rollout_support::*;

/// Requests per measurement; with ±8 points of tolerance a fair split misses by chance about
/// once in a thousand measurements (3 standard deviations at 50 %).
const SAMPLE: usize = 400;
const TOLERANCE: f64 = 8.0;

fn args(dir: &Path, control: &Control, step: u32, max: u32, extra: &[&str]) -> Vec<String> {
    args_for("svc", "v2", dir, control, step, max, extra)
}

fn args_for(
    service: &str,
    canary: &str,
    dir: &Path,
    control: &Control,
    step: u32,
    max: u32,
    extra: &[&str],
) -> Vec<String> {
    let mut a: Vec<String> = [
        "--mesh",
        dir.to_str().unwrap(),
        "--service",
        service,
        "--stable",
        "v1",
        "--canary",
        canary,
        "--interval",
        "1s",
        "--threshold",
        "2",
        "--window",
        "1m",
        "--server",
        &control.url(""),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend([
        "--step".into(),
        step.to_string(),
        "--max".into(),
        max.to_string(),
    ]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn assert_share(v2: usize, weight: u64, proxy: &str) {
    let share = 100.0 * v2 as f64 / SAMPLE as f64;
    eprintln!("proxy {proxy}: weight {weight} %, measured {share:.1} % v2");
    assert!(
        (share - weight as f64).abs() <= TOLERANCE,
        "proxy {proxy}: v2 took {share:.1} % of {SAMPLE} requests at weight {weight} %"
    );
}

fn validate_ok(dir: &Path) {
    let out = Command::new(BIN)
        .args(["validate", "-f"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meshlens validate refused the rollout's file:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn event_titles(control: &Control) -> Vec<(String, String)> {
    control
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_string(),
                e["title"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_follows_each_step_through_two_proxies_and_is_promoted() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let mut control = Control::start(HashMap::new()).await;
    let dir = tempfile::tempdir().unwrap();
    write_mesh(dir.path(), &v1, &v2);
    let proxies = [ProxyProc::start(dir.path()), ProxyProc::start(dir.path())];
    let c = client();
    for p in &proxies {
        p.wait_generation(&c, 1).await;
        assert_eq!(
            p.split(&c, 50).await.0,
            0,
            "all traffic on v1 before the rollout"
        );
    }
    let hook = |phase: &str, name: &str| {
        format!("--webhook={phase}{}", control.url(&format!("/hook/{name}")))
    };
    let hooks = [
        hook("pre-rollout=", "pre"),
        hook("rollout=", "roll"),
        hook("post-rollout=", "post"),
        hook("", "all"),
    ];
    let extra: Vec<&str> = hooks.iter().map(String::as_str).collect();
    let mut rollout = RolloutProc::start(&args(dir.path(), &control, 20, 60, &extra));

    // Each check follows exactly one new weight: 20, 40, 60.
    let mut generation = 1;
    for check in 1..=3u64 {
        let call = control.next_judge().await;
        for want in ["service=svc", "baseline=v1", "canary=v2", "window=1m"] {
            assert!(call.query.contains(want), "{want} not in {}", call.query);
        }
        generation += 1;
        let weight = file_canary_weight(dir.path());
        assert_eq!(weight, 20 * check);
        for p in &proxies {
            p.wait_generation(&c, generation).await;
            let (n, errors) = p.split(&c, SAMPLE).await;
            assert_eq!(errors, 0);
            assert_share(n, weight, &p.addr);
        }
        call.answer.send("pass").unwrap();
    }
    let (code, out, err) = rollout.finish().await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("promoted: v2 takes 100 % of svc after 3 checks"),
        "{out}"
    );
    assert_eq!(file_canary_weight(dir.path()), 100);
    for p in &proxies {
        p.wait_generation(&c, generation + 1).await;
        assert_eq!(
            p.split(&c, SAMPLE).await.0,
            SAMPLE,
            "all traffic on v2 after promotion"
        );
    }
    validate_ok(dir.path());

    let log = control.log.lock().unwrap().clone();
    let mut want = vec!["hook pre pre-rollout", "hook all pre-rollout"];
    for _ in 0..3 {
        want.extend(["hook roll rollout", "hook all rollout", "judge"]);
    }
    want.extend(["hook post post-rollout", "hook all post-rollout"]);
    assert_eq!(log, want);
    let bodies = control.hook_bodies.lock().unwrap().clone();
    let post = bodies.last().unwrap();
    assert_eq!(post["name"], "svc");
    assert_eq!(post["namespace"], "default");
    assert_eq!(post["phase"], "Succeeded");
    assert_eq!(post["metadata"]["weight"], "100");
    assert_eq!(bodies[2]["phase"], "Progressing");
    assert_eq!(bodies[2]["metadata"]["weight"], "20");

    // Every step and verdict reached the event log, in order.
    let events = event_titles(&control);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["rollout", "verdict", "rollout", "verdict", "rollout", "verdict", "rollout"],
        "{events:?}"
    );
    assert!(
        events[0]
            .1
            .starts_with("rollout started: v1 80 % / v2 20 %"),
        "{events:?}"
    );
    assert!(
        events[2].1.starts_with("rollout step: v1 60 % / v2 40 %"),
        "{events:?}"
    );
    assert!(events[6].1.starts_with("rollout promoted"), "{events:?}");
    let posted = control.events.lock().unwrap().clone();
    assert_eq!(posted[0]["service"], "svc");
    assert_eq!(posted[0]["detail"]["weight"], 20);
    assert_eq!(posted[1]["detail"]["report"]["verdict"], "pass");
    // The same lines on stdout.
    assert_eq!(
        out.lines().filter(|l| l.contains(" verdict ")).count(),
        3,
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_starts_failing_is_rolled_back_after_threshold_checks() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let mut control = Control::start(HashMap::new()).await;
    let dir = tempfile::tempdir().unwrap();
    write_mesh(dir.path(), &v1, &v2);
    let proxy = ProxyProc::start(dir.path());
    let c = client();
    proxy.wait_generation(&c, 1).await;
    let all = format!("--webhook={}", control.url("/hook/all"));
    let mut rollout = RolloutProc::start(&args(dir.path(), &control, 20, 60, &[&all]));

    // The verdict is the test's judgement of what it measured: more than 5 % of v2's answers
    // failing is a fail. v2 breaks after the first check; a fail holds the weight.
    let mut verdicts = Vec::new();
    let mut generation = 1;
    for (check, writes_before) in [(1, 1), (2, 2), (3, 2)] {
        let call = control.next_judge().await;
        let expected = 1 + writes_before;
        if expected > generation {
            generation = expected;
        }
        let weight = file_canary_weight(dir.path());
        assert_eq!(weight, if check == 1 { 20 } else { 40 });
        proxy.wait_generation(&c, generation).await;
        let (n, errors) = proxy.split(&c, SAMPLE).await;
        assert_share(n, weight, &proxy.addr);
        let verdict = if errors * 20 > n { "fail" } else { "pass" };
        verdicts.push(verdict);
        call.answer.send(verdict).unwrap();
        if check == 1 {
            v2.failing.store(true, Ordering::SeqCst);
        }
    }
    assert_eq!(verdicts, ["pass", "fail", "fail"]);
    let (code, out, err) = rollout.finish().await;
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("rolled back: v1 takes 100 % of svc again: 2 failed checks"),
        "{out}"
    );
    assert_eq!(file_canary_weight(dir.path()), 0);
    proxy.wait_generation(&c, generation + 1).await;
    assert_eq!(
        proxy.split(&c, SAMPLE).await.0,
        0,
        "no traffic on v2 after the rollback"
    );
    validate_ok(dir.path());

    let log = control.log.lock().unwrap().clone();
    let mut want = vec!["hook all pre-rollout"];
    for _ in 0..3 {
        want.extend(["hook all rollout", "judge"]);
    }
    want.push("hook all post-rollout");
    assert_eq!(log, want);
    let bodies = control.hook_bodies.lock().unwrap().clone();
    assert_eq!(bodies.last().unwrap()["phase"], "Failed");
    assert_eq!(bodies.last().unwrap()["metadata"]["failedChecks"], "2");
    let events = event_titles(&control);
    assert!(
        events
            .iter()
            .any(|(_, t)| t.starts_with("rollout holds v2 at 40 %: failed check 1 of 2")),
        "{events:?}"
    );
    assert!(
        events.last().unwrap().1.starts_with("rollout rolled back"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_pre_rollout_webhook_halts_with_nothing_changed() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let control = Control::start(HashMap::from([("pre".to_string(), 503)])).await;
    let dir = tempfile::tempdir().unwrap();
    let before = write_mesh(dir.path(), &v1, &v2);
    let pre = format!("--webhook=pre-rollout={}", control.url("/hook/pre"));
    let roll = format!("--webhook=rollout={}", control.url("/hook/roll"));
    let mut rollout = RolloutProc::start(&args(dir.path(), &control, 10, 50, &[&pre, &roll]));
    let (code, out, err) = rollout.finish().await;
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("halted before any change: pre-rollout webhook"),
        "{out}"
    );
    assert!(out.contains("answered HTTP 503"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mesh.yaml")).unwrap(),
        before
    );
    assert_eq!(*control.log.lock().unwrap(), ["hook pre pre-rollout"]);
    let events = event_titles(&control);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].1.contains("halted"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_rollout_webhook_rolls_back_before_any_check() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let control = Control::start(HashMap::from([("roll".to_string(), 500)])).await;
    let dir = tempfile::tempdir().unwrap();
    write_mesh(dir.path(), &v1, &v2);
    let roll = format!("--webhook=rollout={}", control.url("/hook/roll"));
    let post = format!("--webhook=post-rollout={}", control.url("/hook/post"));
    let mut rollout = RolloutProc::start(&args(dir.path(), &control, 10, 50, &[&roll, &post]));
    let (code, out, err) = rollout.finish().await;
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(file_canary_weight(dir.path()), 0);
    assert_eq!(
        *control.log.lock().unwrap(),
        ["hook roll rollout", "hook post post-rollout"]
    );
    validate_ok(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_mesh_errors_exit_2_naming_the_problem() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let control = Control::start(HashMap::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let before = write_mesh(dir.path(), &v1, &v2);
    let cases: [(&str, &str, &[&str], &str); 5] = [
        ("reviews", "v2", &[], "no VirtualService"),
        ("svc", "v3", &[], "\"v3\""),
        (
            "svc",
            "v2",
            &["--webhook", "confirm=http://x/y"],
            "unknown phase \"confirm\"",
        ),
        ("svc", "v2", &["--output", "yaml"], "yaml"),
        ("svc", "v2", &["--bogus"], "--bogus"),
    ];
    for (service, canary, extra, want) in cases {
        let a = args_for(service, canary, dir.path(), &control, 10, 50, extra);
        let mut p = RolloutProc::start(&a);
        let (code, out, err) = p.finish().await;
        assert_eq!(code, 2, "{extra:?}: stdout {out} stderr {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mesh.yaml")).unwrap(),
        before
    );
    assert!(control.log.lock().unwrap().is_empty());
}
