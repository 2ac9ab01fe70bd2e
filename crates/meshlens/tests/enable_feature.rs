//! `--enable-feature=...` end to end. `meshlens server`: `promql-delayed-name-removal`
//! changes what the query API and rule evaluation return, an unknown name does not stop the
//! server, and `/api/v1/status/flags` shows the flag as given. `meshlens test rules`: the
//! same feature, as promtool takes it.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{get_json, httpc, poll, Server, BIN};
use meshlens_model::{Labels, Sample, TimeSeries};

/// `-x` drops the name at once without the feature, so `label_replace` finds no `__name__`
/// to copy; with it the name is still there until the result is complete.
const QUERY: &str = r#"label_replace(-feature_probe, "n", "$1", "__name__", "(.+)")"#;

/// A server with a recording rule over [`QUERY`] evaluated every second, and one sample of
/// `feature_probe{env="a"}` written now.
fn start(dir: &std::path::Path, extra: &[&str]) -> (Server, f64) {
    let rules = dir.join("rules.yml");
    std::fs::write(
        &rules,
        format!(
            "groups:\n  - name: features\n    rules:\n      - record: probe:renamed\n        expr: '{QUERY}'\n"
        ),
    )
    .unwrap();
    let cfg = dir.join("meshlens.yml");
    std::fs::write(
        &cfg,
        "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n",
    )
    .unwrap();
    let mut args = vec!["--config", cfg.to_str().unwrap()];
    args.extend(extra);
    let server = Server::start(&dir.join("data"), &args);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut conn = httpc::Conn::open(&server.addr).unwrap();
    let r = server
        .remote_write(
            &mut conn,
            vec![TimeSeries {
                labels: Labels::from_pairs([("__name__", "feature_probe"), ("env", "a")]),
                samples: vec![Sample::new(now_ms, 5.0)],
            }],
        )
        .unwrap();
    assert_eq!(r.status, 204);
    (server, now_ms as f64 / 1000.0)
}

/// The one series of an instant query's answer, as its labels and value.
fn only_series(v: &serde_json::Value) -> (serde_json::Value, String) {
    assert_eq!(v["status"], "success", "{v}");
    let result = v["data"]["result"].as_array().expect("a vector");
    assert_eq!(result.len(), 1, "{v}");
    (
        result[0]["metric"].clone(),
        result[0]["value"][1].as_str().unwrap().to_string(),
    )
}

/// The recording rule's series, once a rule evaluation has seen the sample.
fn recorded(server: &Server) -> serde_json::Value {
    poll(Duration::from_secs(30), || {
        let v = server.query("probe:renamed", None);
        let result = v["data"]["result"].as_array()?;
        (result.len() == 1).then(|| result[0]["metric"].clone())
    })
}

#[test]
fn delayed_name_removal_is_off_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (server, at) = start(dir.path(), &[]);
    let (metric, value) = only_series(&server.query(QUERY, Some(at)));
    assert_eq!(metric, serde_json::json!({"env": "a"}));
    assert_eq!(value, "-5");
    assert_eq!(
        recorded(&server),
        serde_json::json!({"__name__": "probe:renamed", "env": "a"})
    );
    let flags = get_json(&server.url("/api/v1/status/flags"));
    assert_eq!(flags["data"]["enable-feature"], "", "{flags}");
}

#[test]
fn enable_feature_turns_on_delayed_name_removal_for_queries_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    // Repeated and comma-separated, with an always-on and an unknown name: the server
    // starts (the unknown one is only logged).
    let (server, at) = start(
        dir.path(),
        &[
            "--enable-feature=native-histograms,promql-delayed-name-removal",
            "--enable-feature",
            "no-such-feature",
        ],
    );
    let (metric, value) = only_series(&server.query(QUERY, Some(at)));
    assert_eq!(
        metric,
        serde_json::json!({"env": "a", "n": "feature_probe"})
    );
    assert_eq!(value, "-5");
    // Rule evaluation uses the same engine.
    assert_eq!(
        recorded(&server),
        serde_json::json!({"__name__": "probe:renamed", "env": "a", "n": "feature_probe"})
    );
    let flags = get_json(&server.url("/api/v1/status/flags"));
    assert_eq!(
        flags["data"]["enable-feature"],
        "native-histograms,promql-delayed-name-removal,no-such-feature",
        "{flags}"
    );
}

/// `meshlens test rules [--enable-feature=...] t.yml` in `dir`: exit code and stdout.
fn test_rules(dir: &std::path::Path, flags: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(BIN)
        .current_dir(dir)
        .args(["test", "rules"])
        .args(flags)
        .arg("t.yml")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn test_rules_takes_enable_feature_as_promtool_does() {
    let dir = tempfile::tempdir().unwrap();
    let expr = QUERY.replace('"', "\\\"");
    std::fs::write(
        dir.path().join("t.yml"),
        format!(
            "tests:\n- interval: 1m\n  input_series:\n  - series: feature_probe{{env=\"a\"}}\n    values: 5\n  promql_expr_test:\n  - expr: \"{expr}\"\n    eval_time: 0\n    exp_samples:\n    - labels: '{{env=\"a\", n=\"feature_probe\"}}'\n      value: -5\n"
        ),
    )
    .unwrap();
    // Off by default, as in promtool: the name is gone before label_replace.
    let (code, _) = test_rules(dir.path(), &[]);
    assert_eq!(code, 1);
    let (code, out) = test_rules(
        dir.path(),
        &["--enable-feature=promql-delayed-name-removal,no-such-feature"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("WARNING: Unknown feature passed to --enable-feature: no-such-feature"),
        "{out}"
    );
    assert!(out.contains("SUCCESS"), "{out}");
    // Also before the subcommand, as promtool's flag is global.
    let out = std::process::Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "test",
            "--enable-feature",
            "promql-delayed-name-removal",
            "rules",
            "t.yml",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// `created-timestamp-zero-ingestion` reaches the OTLP receiver: a counter's start time
/// becomes a zero sample before its first one (the receivers' rules are tested in
/// `meshlens-server`'s `remote_write_v2`), and the flag is shown as given.
#[test]
fn created_timestamp_zero_ingestion_writes_a_zero_at_a_counters_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--enable-feature=created-timestamp-zero-ingestion"],
    );
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (start, t) = (now_ms - 120_000, now_ms - 60_000);
    let ns = |ms: i64| (ms * 1_000_000).to_string();
    let body = serde_json::json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "shop"}}
            ]},
            "scopeMetrics": [{"metrics": [{"name": "orders", "sum": {
                "aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [{
                    "startTimeUnixNano": ns(start), "timeUnixNano": ns(t), "asInt": "4"
                }]
            }}]}]
        }]
    })
    .to_string();
    let r = common::post_otlp_metrics_json(&server.addr, &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = server.query("orders_total[1h]", Some(now_ms as f64 / 1000.0));
    let values: Vec<(i64, String)> = v["data"]["result"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("a matrix: {v}"))
        .iter()
        .map(|p| {
            (
                (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(values, [(start, "0".to_string()), (t, "4".to_string())]);
    let flags = get_json(&server.url("/api/v1/status/flags"));
    assert_eq!(
        flags["data"]["enable-feature"], "created-timestamp-zero-ingestion",
        "{flags}"
    );
}
