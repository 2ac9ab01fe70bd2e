//! The status API of a running server: credentials in the config never come back, and the
//! TSDB and build figures are real.

mod common;

use common::{get_json, httpc, Server};
use meshlens_model::{Labels, Sample, TimeSeries};

/// Regression: `/api/v1/status/config` returned the config file verbatim, passwords and
/// tokens included.
#[test]
fn status_config_shows_secret_placeholders_not_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("meshlens.yml");
    std::fs::write(
        &cfg,
        "scrape_configs:\n\
         \x20 - job_name: basic\n    basic_auth: {username: alice, password: basic-pw-7f3a}\n    static_configs: [{targets: ['127.0.0.1:1']}]\n\
         \x20 - job_name: bearer\n    bearer_token: bearer-tok-91c2\n    static_configs: [{targets: ['127.0.0.1:1']}]\n\
         \x20 - job_name: authz\n    authorization: {credentials: authz-cred-55d0}\n    static_configs: [{targets: ['127.0.0.1:1']}]\n",
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    let r = httpc::get(&server.url("/api/v1/status/config")).unwrap();
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body).unwrap();
    for secret in ["basic-pw-7f3a", "bearer-tok-91c2", "authz-cred-55d0"] {
        assert!(!body.contains(secret), "{secret} leaked: {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let yaml = v["data"]["yaml"].as_str().unwrap();
    assert_eq!(yaml.matches("<secret>").count(), 3, "{yaml}");
    assert!(yaml.contains("alice"), "{yaml}");
    // Nor does the targets page, which shows each job's last error.
    let targets = httpc::get(&server.url("/api/v1/targets")).unwrap();
    let targets = String::from_utf8(targets.body).unwrap();
    for secret in ["basic-pw-7f3a", "bearer-tok-91c2", "authz-cred-55d0"] {
        assert!(!targets.contains(secret), "{secret} leaked: {targets}");
    }
}

#[test]
fn tsdb_status_and_buildinfo_are_live() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let count = |v: &serde_json::Value| {
        v["data"]["seriesCountByMetricName"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "status_probe")
            .map_or(0, |e| e["value"].as_u64().unwrap())
    };
    let before = get_json(&server.url("/api/v1/status/tsdb?limit=100"));
    assert_eq!(count(&before), 0, "{before}");
    let mut conn = httpc::Conn::open(&server.addr).unwrap();
    let series: Vec<TimeSeries> = (0..3)
        .map(|i| TimeSeries {
            labels: Labels::from_pairs([
                ("__name__", "status_probe"),
                ("n", i.to_string().as_str()),
            ]),
            samples: vec![Sample::new(1_700_000_000_000, 1.0)],
        })
        .collect();
    let r = server.remote_write(&mut conn, series).unwrap();
    assert_eq!(r.status, 204);
    let after = get_json(&server.url("/api/v1/status/tsdb?limit=100"));
    assert_eq!(count(&after), 3, "{after}");
    let n = |v: &serde_json::Value| v["data"]["headStats"]["numSeries"].as_u64().unwrap();
    assert!(n(&after) >= n(&before) + 3, "{before} {after}");

    let b = get_json(&server.url("/api/v1/status/buildinfo"));
    assert_eq!(b["data"]["version"], env!("CARGO_PKG_VERSION"));
    let rt = get_json(&server.url("/api/v1/status/runtimeinfo"));
    assert!(rt["data"]["goroutineCount"].as_u64().unwrap() > 1, "{rt}");
    assert_eq!(rt["data"]["reloadConfigSuccess"], true);
}
