use super::*;

#[test]
fn a_real_prometheus_config_loads_with_warnings() {
    let text = include_str!("../../testdata/prometheus-good.yml");
    let (cfg, warnings) = parse(text, "prometheus-good.yml").unwrap();
    assert_eq!(cfg.global.scrape_interval, Duration::from_secs(15));
    assert_eq!(cfg.scrape_configs.len(), 3);
    let node = &cfg.scrape_configs[1];
    assert_eq!(node.job_name, "node");
    assert_eq!(node.scrape_timeout, Duration::from_secs(5));
    assert_eq!(node.static_configs[0].labels["env"], "prod");
    assert!(matches!(node.auth, Auth::Basic { .. }));
    assert_eq!(node.relabel_configs.len(), 1);
    assert_eq!(node.metric_relabel_configs.len(), 1);
    let joined = warnings.join("\n");
    assert!(joined.contains("rule_files"), "{joined}");
    assert!(joined.contains("alerting"), "{joined}");
    assert!(
        joined.contains("scrape_configs[2].kubernetes_sd_configs"),
        "{joined}"
    );
    assert!(!joined.contains("static_configs"), "{joined}");
}

#[test]
fn bad_configs_name_where() {
    for (file, needle) in [
        ("bad-duplicate-job.yml", "multiple scrape configs"),
        ("bad-timeout.yml", "scrape_timeout"),
        ("bad-relabel.yml", "relabel_configs[0]"),
        ("bad-yaml.yml", "bad-yaml.yml"),
    ] {
        let text =
            std::fs::read_to_string(format!("{}/testdata/{file}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let err = parse(&text, file).unwrap_err().to_string();
        assert!(err.contains(needle), "{file}: {err}");
    }
}

/// Regression: `/api/v1/status/config` returned the file verbatim, credentials included.
#[test]
fn status_config_yaml_hides_every_credential() {
    let text = "\
scrape_configs:
  - job_name: basic
    basic_auth: {username: alice, password: pw-basic-111}
    static_configs: [{targets: ['a:1'], labels: {token: not-a-secret}}]
  - job_name: bearer
    bearer_token: tok-bearer-222
  - job_name: authz
    authorization: {type: Bearer, credentials: cred-authz-333}
    tls_config: {ca_file: /etc/ca.pem, server_name: example.org, min_version: TLS12}
  - job_name: from_files
    basic_auth: {username: bob, password_file: /run/secrets/pw}
  - job_name: oauth
    oauth2: {client_id: id, client_secret: oauth-444, token_url: 'https://t/'}
remote_write:
  - url: https://rw/
    basic_auth: {username: rw, password: rw-555}
    sigv4: {access_key: AK, secret_key: sig-666}
alerting:
  alertmanagers:
    - authorization: {credentials: am-777}
";
    let (cfg, _) = parse(text, "secrets.yml").unwrap();
    let shown = &cfg.redacted_yaml;
    for value in [
        "pw-basic-111",
        "tok-bearer-222",
        "cred-authz-333",
        "oauth-444",
        "rw-555",
        "sig-666",
        "am-777",
    ] {
        assert!(!shown.contains(value), "{value} leaked: {shown}");
        assert!(!format!("{cfg:?}").contains(value), "{value} in Debug");
    }
    assert_eq!(shown.matches("<secret>").count(), 7, "{shown}");
    for kept in [
        "/run/secrets/pw",
        "alice",
        "not-a-secret",
        "example.org",
        "AK",
    ] {
        assert!(shown.contains(kept), "{kept} missing: {shown}");
    }
    // The values are still there for the scraper to send.
    match &cfg.scrape_configs[0].auth {
        Auth::Basic { password, .. } => {
            assert_eq!(password.read().unwrap().expose(), "pw-basic-111")
        }
        other => panic!("{other:?}"),
    }
    let tls = &cfg.scrape_configs[2].tls;
    assert_eq!(tls.server_name.as_deref(), Some("example.org"));
    assert_eq!(tls.min_version, Some(TlsVersion::Tls12));
}

#[test]
fn bad_tls_config_names_the_field() {
    let text = "scrape_configs:\n  - job_name: x\n    tls_config: {min_version: TLS9}\n";
    let err = parse(text, "f.yml").unwrap_err().to_string();
    assert!(
        err.contains("scrape_configs[0].tls_config.min_version"),
        "{err}"
    );
}
