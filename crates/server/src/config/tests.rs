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
