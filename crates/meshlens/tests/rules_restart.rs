//! An alert's `for` progress survives a restart (restored from `ALERTS_FOR_STATE`, as
//! Prometheus does): an alert pending for 40 of its 60 s fires about 20 s after the server
//! comes back, not 60 s.

mod common;

use std::time::{Duration, Instant};

use common::{get_json, Server};

const RULES: &str = r#"groups:
  - name: restart
    interval: 1s
    rules:
      - alert: AlwaysOn
        expr: vector(1)
        for: 60s
        labels:
          severity: ticket
"#;

fn state(s: &Server) -> Option<String> {
    let v = get_json(&s.url("/api/v1/alerts"));
    v["data"]["alerts"][0]["state"].as_str().map(str::to_string)
}

#[test]
fn pending_alert_resumes_its_for_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("rules.yml"), RULES).unwrap();
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(&cfg, "rule_files: [rules.yml]\n").unwrap();
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--rules.alert.for-grace-period=5s",
    ];
    let data = tmp.path().join("data");

    let first = Server::start(&data, &args);
    let started = Instant::now();
    common::poll(Duration::from_secs(30), || {
        (state(&first).as_deref() == Some("pending")).then_some(())
    });
    let pending_since = started;
    while pending_since.elapsed() < Duration::from_secs(40) {
        assert_eq!(state(&first).as_deref(), Some("pending"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = first.terminate();
    assert!(status.success(), "server exited with {status}");

    let second = Server::start(&data, &args);
    let restarted = Instant::now();
    // Well before the 20 s left it is still pending: the restore did not fire it at once.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(state(&second).as_deref(), Some("pending"));
    common::poll(Duration::from_secs(50), || {
        (state(&second).as_deref() == Some("firing")).then_some(())
    });
    let after = restarted.elapsed();
    // Without the restore it would take the whole 60 s of `for` again.
    assert!(
        after < Duration::from_secs(45),
        "fired {after:?} after the restart; the restored `for` should leave about 20 s"
    );
    println!("fired {after:?} after the restart (20 s of `for` were left)");
}
