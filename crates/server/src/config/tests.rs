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
    assert_eq!(cfg.rule_files, ["rules/*.yml"]);
    assert_eq!(cfg.alerting.alertmanagers.len(), 1);
    assert_eq!(
        cfg.alerting.alertmanagers[0].static_configs[0].targets,
        ["alertmanager:9093"]
    );
    let joined = warnings.join("\n");
    assert!(!joined.contains("rule_files"), "{joined}");
    assert!(!joined.contains("alerting"), "{joined}");
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

#[test]
fn alerting_rule_files_and_probes_load() {
    let text = "\
rule_files: [rules/*.yml, /etc/extra.yml]
probes: {modules: {http_2xx: {prober: http}}}
alerting:
  alert_relabel_configs:
    - {source_labels: [severity], regex: debug, action: drop}
  alertmanagers:
    - scheme: https
      path_prefix: /am
      timeout: 5s
      api_version: v2
      basic_auth: {username: u, password: am-pw-1}
      tls_config: {ca_file: ca.pem, server_name: am.example, insecure_skip_verify: true}
      static_configs: [{targets: ['a:9093', 'b:9093']}]
      file_sd_configs: [{files: [am/*.json], refresh_interval: 30s}]
      relabel_configs: [{action: keep, source_labels: [x]}]
      dns_sd_configs: [{names: [am.example]}]
    - bearer_token_file: /run/token
    - authorization: {type: Token, credentials: am-cred-2}
";
    let (cfg, warnings) = parse(text, "a.yml").unwrap();
    assert_eq!(cfg.rule_files, ["rules/*.yml", "/etc/extra.yml"]);
    assert!(cfg
        .probes
        .as_ref()
        .is_some_and(|p| p.get("modules").is_some()));
    let a = &cfg.alerting;
    assert_eq!(a.alert_relabel_configs.len(), 1);
    let am = &a.alertmanagers[0];
    assert_eq!(
        (
            am.scheme.as_str(),
            am.path_prefix.as_str(),
            am.timeout,
            am.api_version.as_str()
        ),
        ("https", "/am", Duration::from_secs(5), "v2")
    );
    assert!(matches!(&am.auth, Auth::Basic { username, .. } if username == "u"));
    assert_eq!(am.tls.server_name.as_deref(), Some("am.example"));
    assert!(am.tls.insecure_skip_verify);
    assert_eq!(am.static_configs[0].targets, ["a:9093", "b:9093"]);
    assert_eq!(
        am.file_sd_configs[0].refresh_interval,
        Duration::from_secs(30)
    );
    // Prometheus's defaults.
    let d = &a.alertmanagers[1];
    assert_eq!(
        (
            d.scheme.as_str(),
            d.path_prefix.as_str(),
            d.timeout,
            d.api_version.as_str()
        ),
        ("http", "", Duration::from_secs(10), "v2")
    );
    assert_eq!(
        d.auth,
        Auth::Authorization {
            kind: "Bearer".into(),
            credentials: Secret::File("/run/token".into())
        }
    );
    assert!(
        matches!(&a.alertmanagers[2].auth, Auth::Authorization { kind, .. } if kind == "Token")
    );
    // Known to Prometheus but not acted on: warned, by path.
    let joined = warnings.join("\n");
    for w in [
        "alerting.alertmanagers[0].relabel_configs",
        "alerting.alertmanagers[0].dns_sd_configs",
    ] {
        assert!(joined.contains(w), "{w} in {joined}");
    }
    assert_eq!(warnings.len(), 2, "{joined}");
    // Credentials hidden from the status page, kept for sending.
    for leaked in ["am-pw-1", "am-cred-2"] {
        assert!(!cfg.redacted_yaml.contains(leaked), "{}", cfg.redacted_yaml);
        assert!(!format!("{cfg:?}").contains(leaked));
    }
    assert!(cfg.redacted_yaml.contains("/run/token"));
}

#[test]
fn bad_alerting_configs_name_where() {
    for (text, needles) in [
        (
            "alerting: {alertmanagers: [{static_config: [{targets: [a]}]}]}",
            &["alerting.alertmanagers[0].static_config", "unknown field"][..],
        ),
        (
            "alerting: {alertmanager: []}",
            &["alerting.alertmanager", "unknown field"],
        ),
        (
            "alerting: {alertmanagers: [{api_version: v1}]}",
            &["alerting.alertmanagers[0].api_version", "use v2"],
        ),
        (
            "alerting: {alertmanagers: [{api_version: v3}]}",
            &["alerting.alertmanagers[0].api_version", "\"v3\""],
        ),
        (
            "alerting: {alert_relabel_configs: [{action: keep, regex: '('}]}",
            &["alerting.alert_relabel_configs[0]", "invalid regex"],
        ),
        (
            "alerting: {alert_relabel_configs: [{action: replace}]}",
            &["alerting.alert_relabel_configs[0]", "target_label"],
        ),
        (
            "alerting: {alertmanagers: [{timeout: soon}]}",
            &["alerting.alertmanagers[0].timeout"],
        ),
        (
            "alerting: {alertmanagers: [{scheme: ftp}]}",
            &["alerting.alertmanagers[0].scheme"],
        ),
        (
            "alerting: {alertmanagers: [{basic_auth: {username: u, password: p}, bearer_token: t}]}",
            &["alerting.alertmanagers[0].bearer_token", "at most one"],
        ),
        (
            "alerting: {alertmanagers: [{tls_config: {cert_file: c.pem}}]}",
            &["alerting.alertmanagers[0].tls_config", "together"],
        ),
        ("alerting: {alertmanagers: {}}", &["alerting.alertmanagers", "list"]),
        ("alerting: [1]", &["alerting", "mapping"]),
        ("rule_files: rules.yml", &["rule_files", "list"]),
    ] {
        let err = parse(text, "bad.yml").unwrap_err().to_string();
        for needle in needles {
            assert!(err.contains(needle), "{text}: {err} lacks {needle}");
        }
    }
}

#[test]
fn dns_sd_configs_load_with_prometheus_defaults() {
    let text = "\
scrape_configs:
  - job_name: srv
    dns_sd_configs:
      - names: [_metrics._tcp.example.org, _api._tcp.example.org]
  - job_name: hosts
    dns_sd_configs:
      - names: [hosts.example.org]
        type: a
        port: 9100
        refresh_interval: 5m
      - names: [v6.example.org]
        type: AAAA
        port: 9101
";
    let (cfg, warnings) = parse(text, "dns.yml").unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let srv = &cfg.scrape_configs[0].dns_sd_configs[0];
    assert_eq!(
        srv.names,
        ["_metrics._tcp.example.org", "_api._tcp.example.org"]
    );
    assert_eq!(srv.record_type, DnsRecordType::Srv);
    assert_eq!(srv.port, 0);
    assert_eq!(srv.refresh_interval, Duration::from_secs(30));
    let hosts = &cfg.scrape_configs[1].dns_sd_configs;
    assert_eq!(hosts[0].record_type, DnsRecordType::A);
    assert_eq!(hosts[0].port, 9100);
    assert_eq!(hosts[0].refresh_interval, Duration::from_secs(300));
    assert_eq!(hosts[1].record_type, DnsRecordType::Aaaa);
    assert_eq!(hosts[1].port, 9101);
}

#[test]
fn bad_dns_sd_configs_name_the_field() {
    let job = |body: &str| format!("scrape_configs:\n  - job_name: x\n    dns_sd_configs:\n{body}");
    for (body, path, reason) in [
        (
            "      - names: [a.example]\n        prot: 80\n",
            "scrape_configs[0].dns_sd_configs[0].prot",
            "unknown field",
        ),
        (
            "      - names: []\n",
            "scrape_configs[0].dns_sd_configs[0].names",
            "at least one SRV record name",
        ),
        (
            "      - {}\n",
            "scrape_configs[0].dns_sd_configs[0].names",
            "at least one",
        ),
        (
            "      - names: [a]\n      - names: [b]\n        type: A\n",
            "scrape_configs[0].dns_sd_configs[1].port",
            "a port is required",
        ),
        (
            "      - names: [a]\n        type: MX\n        port: 25\n",
            "scrape_configs[0].dns_sd_configs[0].type",
            "MX is not supported",
        ),
        (
            "      - names: [a]\n        type: TXT\n",
            "scrape_configs[0].dns_sd_configs[0].type",
            "invalid DNS-SD records type TXT",
        ),
        (
            "      - names: [a]\n        type: A\n        port: 70000\n",
            "scrape_configs[0].dns_sd_configs[0].port",
            "out of range",
        ),
        (
            "      - names: [a]\n        refresh_interval: soon\n",
            "scrape_configs[0].dns_sd_configs[0].refresh_interval",
            "invalid duration",
        ),
        (
            "      - names: a\n",
            "scrape_configs[0].dns_sd_configs[0].names",
            "list of strings",
        ),
        (
            "      names: [a]\n",
            "scrape_configs[0].dns_sd_configs",
            "must be a list",
        ),
    ] {
        let err = parse(&job(body), "f.yml").unwrap_err().to_string();
        assert!(
            err.contains(&format!("f.yml: {path}: ")) && err.contains(reason),
            "{body}: {err}"
        );
    }
}
