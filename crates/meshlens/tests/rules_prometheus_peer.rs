//! The same rule file, the same config and the same live remote-written samples go into
//! Debian's Prometheus and into meshlens, each notifying its own Debian Alertmanager. Both
//! Alertmanagers must hold the same alerts (labels and rendered annotations), firing and then
//! resolved, and both servers the same `ALERTS` and recording-rule series.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    free_port, get_json, httpc, poll, require_binary, start_alertmanager, start_prometheus_with,
    urlencode, Server,
};
use meshlens_model::{Labels, Sample, TimeSeries};

const RULES: &str = r#"groups:
  - name: mesh
    rules:
      - record: service:error_ratio:max
        expr: max by (service) (svc_error_ratio)
      - alert: HighErrorRatio
        expr: service:error_ratio:max > 0.05
        for: 3s
        labels:
          severity: page
          tier: '{{ if gt $value 0.5 }}critical{{ else }}degraded{{ end }}'
        annotations:
          summary: '{{ $labels.service }} fails {{ humanizePercentage $value }} of requests'
          description: >-
            cluster {{ $externalLabels.cluster }}: {{ printf "%.3f" $value }} > 0.05;
            {{ with query "count(svc_error_ratio)" }}{{ . | first | value }} services report{{ end }};
            {{ "checkout-api" | title | toUpper }} {{ reReplaceAll "(.*)-(.*)" "$2" "x-y" }}
      - alert: ServiceSilent
        expr: absent(svc_error_ratio{service="c"})
        labels:
          severity: ticket
        annotations:
          summary: 'service c reports nothing for {{ humanizeDuration 90 }}'
"#;

fn config(alertmanager: &str) -> String {
    format!(
        r#"global:
  evaluation_interval: 1s
  external_labels:
    cluster: east
rule_files:
  - rules/*.yml
alerting:
  alert_relabel_configs:
    - target_label: team
      replacement: mesh
  alertmanagers:
    - static_configs:
        - targets: ["{alertmanager}"]
"#
    )
}

fn series(now_ms: i64, a: f64) -> Vec<TimeSeries> {
    [("a", a), ("b", 0.01)]
        .iter()
        .map(|(svc, v)| TimeSeries {
            labels: Labels::from_pairs([("__name__", "svc_error_ratio"), ("service", svc)]),
            samples: vec![Sample::new(now_ms, *v)],
        })
        .collect()
}

/// Active alerts an Alertmanager holds: labels → annotations, for alerts not yet ended.
fn held(am: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let v = get_json(&format!(
        "{am}/api/v2/alerts?active=true&silenced=false&inhibited=false"
    ));
    let mut out = BTreeMap::new();
    for a in v.as_array().cloned().unwrap_or_default() {
        if a["status"]["state"] != "active" {
            continue;
        }
        let labels: BTreeMap<String, String> =
            serde_json::from_value(a["labels"].clone()).unwrap_or_default();
        let annotations: BTreeMap<String, String> =
            serde_json::from_value(a["annotations"].clone()).unwrap_or_default();
        out.insert(format!("{labels:?}"), annotations);
    }
    out
}

fn instant(base: &str, q: &str) -> Vec<(BTreeMap<String, String>, String)> {
    let v = get_json(&format!("{base}/api/v1/query?query={}", urlencode(q)));
    assert_eq!(v["status"], "success", "{q} on {base}: {v}");
    let mut out: Vec<_> = v["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            (
                serde_json::from_value(s["metric"].clone()).unwrap_or_default(),
                s["value"][1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn write_both(conns: &mut [httpc::Conn; 2], a: f64) {
    let now = meshlens_model::time::now_ms();
    let body =
        meshlens_ingest::remote_write::encode(&meshlens_ingest::remote_write::WriteRequest {
            timeseries: series(now, a),
            ..Default::default()
        });
    for c in conns.iter_mut() {
        let r = c
            .request(
                "POST",
                "/api/v1/write",
                &[
                    ("Content-Type", "application/x-protobuf"),
                    ("Content-Encoding", "snappy"),
                    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
                ],
                &body,
            )
            .expect("remote write");
        assert!(r.status / 100 == 2, "remote write: {}", r.status);
    }
}

/// Writes every 500 ms until `done` says yes (at most `limit`).
fn feed_until(
    conns: &mut [httpc::Conn; 2],
    a: f64,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) {
    let start = Instant::now();
    loop {
        write_both(conns, a);
        if done() {
            return;
        }
        assert!(start.elapsed() < limit, "not reached within {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn prepare(dir: &Path, alertmanager: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/mesh.yml"), RULES).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, config(alertmanager)).unwrap();
    cfg
}

#[test]
fn alerts_and_rule_series_match_prometheus_through_alertmanager() {
    if !require_binary("prometheus") || !require_binary("prometheus-alertmanager") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_am_p, am_prom) = start_alertmanager(&tmp.path().join("am-prom"));
    let (_am_m, am_mesh) = start_alertmanager(&tmp.path().join("am-mesh"));

    let prom_dir = tmp.path().join("prom");
    let prom_cfg = prepare(&prom_dir, am_prom.trim_start_matches("http://"));
    let (_prom, prom) = start_prometheus_with(
        free_port(),
        &std::fs::read_to_string(&prom_cfg).unwrap(),
        &prom_dir.join("tsdb"),
        &[
            "--web.enable-remote-write-receiver",
            "--rules.alert.resend-delay=1s",
        ],
    );
    let mesh_dir = tmp.path().join("mesh");
    let mesh_cfg = prepare(&mesh_dir, am_mesh.trim_start_matches("http://"));
    let mesh = Server::start(
        &mesh_dir.join("data"),
        &[
            "--config",
            mesh_cfg.to_str().unwrap(),
            "--rules.alert.resend-delay=1s",
        ],
    );
    let mut conns = [
        httpc::Conn::open(&prom).unwrap(),
        httpc::Conn::open(&mesh.url("")).unwrap(),
    ];

    // Firing: both Alertmanagers hold HighErrorRatio for service a and ServiceSilent.
    let both_fire = |am: &str| {
        let h = held(am);
        h.keys().filter(|k| k.contains("HighErrorRatio")).count() == 1
            && h.keys().any(|k| k.contains("ServiceSilent"))
    };
    feed_until(&mut conns, 0.2, Duration::from_secs(120), || {
        both_fire(&am_prom) && both_fire(&am_mesh)
    });
    let (p, m) = (held(&am_prom), held(&am_mesh));
    assert_eq!(
        m, p,
        "firing: meshlens's Alertmanager (left) and Prometheus's (right) differ"
    );
    let high = p.keys().find(|k| k.contains("HighErrorRatio")).unwrap();
    for want in [
        "\"cluster\": \"east\"",
        "\"team\": \"mesh\"",
        "\"service\": \"a\"",
        "\"tier\": \"degraded\"",
    ] {
        assert!(high.contains(want), "{want} missing from {high}");
    }

    // The servers' own series agree while firing.
    for q in [
        "ALERTS",
        "service:error_ratio:max",
        "ALERTS_FOR_STATE > 0",
        "count(ALERTS_FOR_STATE)",
    ] {
        let q_mesh = poll(Duration::from_secs(30), || {
            write_both(&mut conns, 0.2);
            let (a, b) = (instant(&prom, q), instant(&mesh.url(""), q));
            let same = if q.starts_with("ALERTS_FOR_STATE") {
                // activeAt differs by when each server first saw the alert.
                a.iter().map(|x| &x.0).eq(b.iter().map(|x| &x.0))
            } else {
                a == b
            };
            same.then_some(b)
        });
        assert!(!q_mesh.is_empty(), "{q}: empty on both servers");
    }
    let rules = get_json(&mesh.url("/api/v1/rules"));
    let group = &rules["data"]["groups"][0];
    assert_eq!(group["name"], "mesh", "{rules}");
    assert_eq!(group["rules"].as_array().map(Vec::len), Some(3), "{rules}");
    assert_eq!(group["rules"][1]["state"], "firing", "{rules}");
    assert_eq!(group["rules"][1]["health"], "ok", "{rules}");
    let alerts = get_json(&mesh.url("/api/v1/alerts"));
    assert_eq!(
        alerts["data"]["alerts"].as_array().map(Vec::len),
        Some(2),
        "{alerts}"
    );

    // Resolved: the error ratio drops; both Alertmanagers see HighErrorRatio end.
    let resolved = |am: &str| !held(am).keys().any(|k| k.contains("HighErrorRatio"));
    feed_until(&mut conns, 0.01, Duration::from_secs(120), || {
        resolved(&am_prom) && resolved(&am_mesh)
    });
    assert_eq!(
        held(&am_mesh),
        held(&am_prom),
        "after resolving: the Alertmanagers differ"
    );
    let firing_mesh = instant(&mesh.url(""), "ALERTS{alertname=\"HighErrorRatio\"}");
    assert!(firing_mesh.is_empty(), "ALERTS still has {firing_mesh:?}");
}
