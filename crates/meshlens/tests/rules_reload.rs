//! Reloading rules: a bad rule file is refused with its file, line and reason and the last
//! good rules keep running; a good change applies on SIGHUP or `POST /-/reload`, and alerts
//! of unchanged rules keep their state.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{curl, get_json, poll, Server};

const GOOD: &str = r#"groups:
  - name: mesh
    interval: 1s
    rules:
      - alert: Pending
        expr: vector(1)
        for: 1h
"#;

const BAD: &str = r#"groups:
  - name: mesh
    interval: 1s
    rules:
      - alert: Pending
        expr: vector(1)
        for: 1h
      - record: broken
        expr: sum(rate(x[5m])
"#;

const MORE: &str = r#"groups:
  - name: mesh
    interval: 1s
    rules:
      - alert: Pending
        expr: vector(1)
        for: 1h
      - record: job:one
        expr: vector(1)
"#;

fn rule_names(s: &Server) -> Vec<String> {
    let v = get_json(&s.url("/api/v1/rules"));
    v["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn active_at(s: &Server) -> String {
    let v = get_json(&s.url("/api/v1/alerts"));
    v["data"]["alerts"][0]["activeAt"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn bad_rules_are_refused_and_good_ones_reload_keeping_alert_state() {
    if !common::require_binary("curl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, GOOD).unwrap();
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(&cfg, "rule_files: [rules.yml]\n").unwrap();
    let s = Server::start(
        &tmp.path().join("data"),
        &["--config", cfg.to_str().unwrap(), "--web.enable-lifecycle"],
    );
    let first = poll(Duration::from_secs(30), || {
        let a = active_at(&s);
        (!a.is_empty()).then_some(a)
    });

    std::fs::write(&rules, BAD).unwrap();
    let r = curl(&["-X", "POST", &s.url("/-/reload")]);
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.contains("rules.yml"), "no file in: {}", r.body);
    assert!(r.body.contains("9:"), "no line in: {}", r.body);
    assert!(r.body.contains("parse"), "no reason in: {}", r.body);
    assert_eq!(
        rule_names(&s),
        ["Pending"],
        "the last good rules keep running"
    );
    let info = get_json(&s.url("/api/v1/status/runtimeinfo"));
    assert_eq!(info["data"]["reloadConfigSuccess"], false, "{info}");

    std::fs::write(&rules, MORE).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    poll(Duration::from_secs(30), || {
        (rule_names(&s) == ["Pending", "job:one"]).then_some(())
    });
    assert_eq!(active_at(&s), first, "the unchanged alert lost its state");
    let info = get_json(&s.url("/api/v1/status/runtimeinfo"));
    assert_eq!(info["data"]["reloadConfigSuccess"], true, "{info}");

    // Without --web.enable-lifecycle, the endpoint refuses.
    let plain = Server::start(&tmp.path().join("data2"), &[]);
    let r = curl(&["-X", "POST", &plain.url("/-/reload")]);
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn a_bad_rule_file_stops_the_server_from_starting_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("rules.yml"), BAD).unwrap();
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(&cfg, "rule_files: [rules.yml]\n").unwrap();
    let out = Command::new(common::BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--otlp-grpc-listen",
            "off",
        ])
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.yml") && err.contains("9:"),
        "stderr: {err}"
    );
}
