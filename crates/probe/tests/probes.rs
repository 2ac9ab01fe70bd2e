//! Probe behaviour that needs no peer: labels, timeouts, the SSL switches, status codes.

mod common;

use common::{start_targets, value, LAST_MODIFIED_SECS};
use meshlens_probe::{parse_probes_file, probe_once, ProbeConfig};

fn probe(yaml_body: &str) -> ProbeConfig {
    let yaml = format!("probes:\n  - name: p\n    targets: ['127.0.0.1:1']\n    {yaml_body}\n");
    parse_probes_file(&yaml, "probes.yml")
        .unwrap()
        .pop()
        .unwrap()
}

#[tokio::test]
async fn series_carry_job_instance_and_config_labels() {
    let t = start_targets().await;
    let mut cfg = probe(&format!(
        "module: tls\n    labels: {{team: web, version: v1}}\n    tls: {{ca_file: {}}}",
        t.ca_file.display()
    ));
    cfg.name = "certs".into();
    let target = t.tls_fresh.to_string();
    let series = probe_once(&cfg, &target, 1234).await;
    let success = series
        .iter()
        .find(|s| s.labels.metric_name() == Some("probe_success"))
        .map(|s| s.samples[0].v);
    assert_eq!(success, Some(1.0));
    for s in &series {
        assert_eq!(s.labels.get("job"), Some("certs"));
        assert_eq!(s.labels.get("instance"), Some(target.as_str()));
        assert_eq!(s.labels.get("team"), Some("web"));
        assert_eq!(s.samples.len(), 1);
        assert_eq!(s.samples[0].t, 1234);
    }
    // The metric's own `version` label yields to the target label, as in a Prometheus scrape.
    let info = series
        .iter()
        .find(|s| s.labels.metric_name() == Some("probe_tls_version_info"))
        .expect("probe_tls_version_info");
    assert_eq!(info.labels.get("version"), Some("v1"));
    assert_eq!(info.labels.get("exported_version"), Some("TLS 1.3"));
}

#[tokio::test]
async fn timeout_keeps_what_was_measured() {
    let t = start_targets().await;
    let cfg = probe("module: http\n    interval: 2s\n    timeout: 300ms");
    let series = probe_once(&cfg, &format!("http://{}/slow", t.http), 0).await;
    assert_eq!(value(&series, "probe_success"), Some(0.0));
    assert_eq!(value(&series, "probe_http_status_code"), Some(0.0));
    assert_eq!(value(&series, "probe_ip_protocol"), Some(4.0));
    assert!(value(&series, "probe_duration_seconds").is_some());
}

#[tokio::test]
async fn ssl_switches_and_status_codes() {
    let t = start_targets().await;
    let ca = t.ca_file.display();
    let cases = [
        (
            "http: {fail_if_not_ssl: true}".to_string(),
            format!("http://{}/ok", t.http),
            0.0,
        ),
        (
            "http: {fail_if_not_ssl: true, tls_config: {ca_file: CA}}"
                .replace("CA", &ca.to_string()),
            format!("https://{}/ok", t.tls_fresh),
            1.0,
        ),
        (
            "http: {fail_if_ssl: true, tls_config: {ca_file: CA}}".replace("CA", &ca.to_string()),
            format!("https://{}/ok", t.tls_fresh),
            0.0,
        ),
        (
            "http: {valid_status_codes: [500]}".to_string(),
            format!("http://{}/fail", t.http),
            1.0,
        ),
        (
            "http: {valid_status_codes: [500]}".to_string(),
            format!("http://{}/ok", t.http),
            0.0,
        ),
        // The default trust store does not know the test CA.
        (
            "http: {}".to_string(),
            format!("https://{}/ok", t.tls_fresh),
            0.0,
        ),
        (
            "http: {method: HEAD}".to_string(),
            format!("http://{}/ok", t.http),
            1.0,
        ),
    ];
    for (body, target, want) in cases {
        let cfg = probe(&format!("module: http\n    {body}"));
        let series = probe_once(&cfg, &target, 0).await;
        assert_eq!(
            value(&series, "probe_success"),
            Some(want),
            "{body} {target}"
        );
    }
}

#[tokio::test]
async fn last_modified_only_when_sent() {
    let t = start_targets().await;
    let cfg = probe("module: http");
    let ok = probe_once(&cfg, &format!("http://{}/ok", t.http), 0).await;
    assert_eq!(
        value(&ok, "probe_http_last_modified_timestamp_seconds"),
        Some(LAST_MODIFIED_SECS)
    );
    let fail = probe_once(&cfg, &format!("http://{}/fail", t.http), 0).await;
    assert_eq!(
        value(&fail, "probe_http_last_modified_timestamp_seconds"),
        None
    );
}

#[tokio::test]
async fn unresolvable_and_malformed_targets_fail_cleanly() {
    let tcp = probe("module: tcp\n    timeout: 2s");
    let series = probe_once(&tcp, "no-such-host.invalid:80", 0).await;
    assert_eq!(value(&series, "probe_success"), Some(0.0));
    assert_eq!(value(&series, "probe_ip_protocol"), Some(0.0));
    // A target that is not host:port fails before resolving, as in blackbox.
    let series = probe_once(&tcp, "no port here", 0).await;
    assert_eq!(value(&series, "probe_success"), Some(0.0));
    assert_eq!(value(&series, "probe_ip_protocol"), None);
    let http = probe("module: http\n    timeout: 2s");
    let series = probe_once(&http, "http://[::1", 0).await;
    assert_eq!(value(&series, "probe_success"), Some(0.0));
    assert_eq!(value(&series, "probe_http_status_code"), Some(0.0));
}
