//! DNS service discovery against a real nameserver: Debian's dnsmasq serves an SRV record
//! naming two live targets and an A record; `meshlens server`, pointed at it through
//! `MESHLENS_DNS_SERVER`, must scrape all three with Prometheus's `__meta_dns_*` labels, and
//! keep them when the nameserver goes away.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, get_json, httpc, poll, KillOnDrop, Server, BIN};
use serde_json::Value;

/// dnsmasq from PATH or /usr/sbin (not on a normal user's PATH); a skip, or under CI a
/// failure, when it is missing.
fn dnsmasq() -> Option<PathBuf> {
    let on_path = Command::new("sh")
        .args(["-c", "command -v dnsmasq"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let found = on_path.or_else(|| {
        let p = PathBuf::from("/usr/sbin/dnsmasq");
        p.exists().then_some(p)
    });
    if found.is_none() {
        let why = "dnsmasq is not installed; .ci/run installs it (apt-get install dnsmasq-base)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("SKIPPING: {why}");
    }
    found
}

/// A scrape target answering every request with one gauge.
fn exposition_server(which: &str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = format!("# TYPE dns_sd_test gauge\ndns_sd_test{{which=\"{which}\"}} 1\n");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    port
}

/// dnsmasq on 127.0.0.1:`port` serving only the given records, logging its queries to `log`.
fn start_dnsmasq(bin: &Path, port: u16, log: &Path, records: &[String]) -> KillOnDrop {
    let user = Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--pid-file=",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--log-queries",
    ])
    .arg(format!("--port={port}"))
    .arg(format!("--log-facility={}", log.display()))
    .args(records)
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    if !user.is_empty() {
        cmd.arg(format!("--user={user}"));
    }
    let mut child = KillOnDrop(cmd.spawn().expect("start dnsmasq"));
    std::thread::sleep(Duration::from_millis(300));
    if let Ok(Some(status)) = child.0.try_wait() {
        panic!(
            "dnsmasq exited at once ({status}); its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    child
}

/// `meshlens server` with `config`, asking `dns` instead of resolv.conf's nameservers.
fn start_server(data: &Path, config: &Path, dns: &str) -> Server {
    let mut child = Command::new(BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--otlp-grpc-listen",
            "off",
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("MESHLENS_DNS_SERVER", dns)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn meshlens server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before printing its address")
            .expect("utf-8");
        if let Some((_, a)) = line.split_once("server listening on http://") {
            break a.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let server = Server {
        child,
        addr,
        otlp_grpc: None,
    };
    common::wait_ready(&server.url(""), Duration::from_secs(60));
    server
}

fn active_targets(server: &Server, job: &str) -> Vec<Value> {
    let v = get_json(&server.url("/api/v1/targets"));
    v["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["labels"]["job"] == job)
        .collect()
}

fn self_metric(server: &Server, name: &str) -> f64 {
    let body = httpc::get(&server.url("/metrics")).unwrap().body;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[test]
fn srv_and_a_records_become_scraped_targets() {
    let Some(bin) = dnsmasq() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (exposition_server("one"), exposition_server("two"));
    let dns_port = free_port();
    let log = dir.path().join("dnsmasq.log");
    let dnsmasq = start_dnsmasq(
        &bin,
        dns_port,
        &log,
        &[
            format!("--srv-host=_metrics._tcp.meshlens.test,localhost,{p1},0,10"),
            format!("--srv-host=_metrics._tcp.meshlens.test,localhost,{p2},0,10"),
            "--host-record=targets.meshlens.test,127.0.0.1".to_string(),
        ],
    );
    let config = dir.path().join("meshlens.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: dns-srv
    dns_sd_configs:
      - names: [_metrics._tcp.meshlens.test]
        refresh_interval: 1s
  - job_name: dns-a
    dns_sd_configs:
      - names: [targets.meshlens.test]
        type: A
        port: {p1}
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_dns_name]
        target_label: dns_name
"
        ),
    )
    .unwrap();
    let server = start_server(
        &dir.path().join("data"),
        &config,
        &format!("127.0.0.1:{dns_port}"),
    );
    let dns_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Both SRV records become targets, each up, with the SRV meta labels.
    let srv = poll(Duration::from_secs(120), || {
        let t = active_targets(&server, "dns-srv");
        (t.len() == 2 && t.iter().all(|t| t["health"] == "up")).then_some(t)
    });
    let mut instances: Vec<String> = srv
        .iter()
        .map(|t| t["labels"]["instance"].as_str().unwrap().to_string())
        .collect();
    instances.sort();
    let mut want = vec![format!("localhost:{p1}"), format!("localhost:{p2}")];
    want.sort();
    assert_eq!(instances, want);
    for t in &srv {
        let d = &t["discoveredLabels"];
        assert_eq!(d["__meta_dns_name"], "_metrics._tcp.meshlens.test", "{t}");
        assert_eq!(d["__meta_dns_srv_record_target"], "localhost.", "{t}");
        let port = d["__meta_dns_srv_record_port"].as_str().unwrap();
        assert_eq!(d["__address__"], format!("localhost:{port}"), "{t}");
        assert!(d.get("__meta_dns_mx_record_target").is_none(), "{t}");
    }

    // The A record gives ip:port with the configured port; relabeling sees its meta label.
    let a = poll(Duration::from_secs(120), || {
        let t = active_targets(&server, "dns-a");
        (t.len() == 1 && t[0]["health"] == "up").then(|| t[0].clone())
    });
    assert_eq!(a["labels"]["instance"], format!("127.0.0.1:{p1}"));
    assert_eq!(a["labels"]["dns_name"], "targets.meshlens.test");
    assert_eq!(
        a["discoveredLabels"]["__meta_dns_name"],
        "targets.meshlens.test"
    );
    assert!(
        a["discoveredLabels"]
            .get("__meta_dns_srv_record_target")
            .is_none(),
        "{a}"
    );

    // `up` is 1 for all three, and the targets' own series arrived.
    poll(Duration::from_secs(120), || {
        let v = server.query("up", None);
        let r = v["data"]["result"].as_array().cloned().unwrap_or_default();
        (r.len() == 3 && r.iter().all(|s| s["value"][1] == "1")).then_some(())
    });
    let v = server.query("dns_sd_test{job=\"dns-srv\"}", None);
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 2, "{v}");
    assert!(self_metric(&server, "prometheus_sd_dns_lookups_total") >= 2.0);
    assert!(
        dns_log().contains("_metrics._tcp.meshlens.test"),
        "dnsmasq saw no query:\n{}",
        dns_log()
    );

    // Without the nameserver the lookups fail, are counted, and the targets stay.
    let failures = self_metric(&server, "prometheus_sd_dns_lookup_failures_total");
    drop(dnsmasq);
    poll(Duration::from_secs(120), || {
        (self_metric(&server, "prometheus_sd_dns_lookup_failures_total") >= failures + 2.0)
            .then_some(())
    });
    assert_eq!(active_targets(&server, "dns-srv").len(), 2);
    assert_eq!(active_targets(&server, "dns-a").len(), 1);
    assert_eq!(server.terminate().code(), Some(0));
}
