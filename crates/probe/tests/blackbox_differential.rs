//! Differential test against the real blackbox_exporter (Debian's
//! `prometheus-blackbox-exporter`): the same loopback targets probed by both, and the same
//! series (names and labels) with the same values for everything that is not a timing.
//! Skipped with a message when the binary is absent, unless `CI=true`. `PROBE_DEBUG=1` prints
//! both sides of every case.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{start_targets, Targets};
use meshlens_probe::{parse_probes_file, probe_once, ProbeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BLACKBOX: &str = "/usr/bin/prometheus-blackbox-exporter";

/// Series whose values are durations: compared by presence only.
const TIMINGS: &[&str] = &[
    "probe_duration_seconds",
    "probe_dns_lookup_time_seconds",
    "probe_http_duration_seconds",
];

struct Blackbox {
    child: Child,
    addr: String,
}

impl Drop for Blackbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The module bodies, shared by both configs: blackbox's `modules:` and our `probes:`.
fn modules(t: &Targets) -> Vec<(&'static str, String, String)> {
    let ca = t.ca_file.display();
    vec![
        (
            "http_2xx",
            format!("{{prober: http, timeout: 5s, http: {{tls_config: {{ca_file: {ca}}}}}}}"),
            format!("module: http\n    http: {{tls_config: {{ca_file: {ca}}}}}"),
        ),
        (
            "http_insecure",
            "{prober: http, timeout: 5s, http: {tls_config: {insecure_skip_verify: true}}}".into(),
            "module: http\n    http: {tls_config: {insecure_skip_verify: true}}".into(),
        ),
        (
            "http_body_match",
            "{prober: http, timeout: 5s, http: {fail_if_body_not_matches_regexp: ['hel+o']}}"
                .into(),
            "module: http\n    http: {fail_if_body_not_matches_regexp: ['hel+o']}".into(),
        ),
        (
            "http_body_mismatch",
            "{prober: http, timeout: 5s, http: {fail_if_body_matches_regexp: ['hel+o']}}".into(),
            "module: http\n    http: {fail_if_body_matches_regexp: ['hel+o']}".into(),
        ),
        (
            "http_no_redirects",
            "{prober: http, timeout: 5s, http: {follow_redirects: false}}".into(),
            "module: http\n    http: {no_follow_redirects: true}".into(),
        ),
        (
            "tcp_connect",
            "{prober: tcp, timeout: 5s}".into(),
            "module: tcp".into(),
        ),
        (
            "tls_connect",
            format!("{{prober: tcp, timeout: 5s, tcp: {{tls: true, tls_config: {{ca_file: {ca}}}}}}}"),
            format!("module: tls\n    tls: {{ca_file: {ca}}}"),
        ),
        (
            "tls_insecure",
            "{prober: tcp, timeout: 5s, tcp: {tls: true, tls_config: {insecure_skip_verify: true}}}"
                .into(),
            "module: tcp\n    tcp: {tls: true}\n    tls: {insecure_skip_verify: true}".into(),
        ),
    ]
}

fn start_blackbox(t: &Targets) -> Blackbox {
    let mut yaml = String::from("modules:\n");
    for (name, body, _) in modules(t) {
        yaml.push_str(&format!("  {name}: {body}\n"));
    }
    let path = t.dir.path().join("blackbox.yml");
    std::fs::write(&path, yaml).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(BLACKBOX)
        .arg(format!("--config.file={}", path.display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Blackbox { child, addr }
}

fn our_probes(t: &Targets) -> BTreeMap<&'static str, ProbeConfig> {
    let mut yaml = String::from("probes:\n");
    for (name, _, ours) in modules(t) {
        yaml.push_str(&format!(
            "  - name: {name}\n    targets: ['127.0.0.1:1']\n    {ours}\n"
        ));
    }
    let file = t.dir.path().join("probes.yml");
    let probes = parse_probes_file(&yaml, &file.display().to_string()).unwrap();
    modules(t)
        .into_iter()
        .map(|(n, _, _)| n)
        .zip(probes)
        .collect()
}

async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// blackbox's answer for one probe, as (name and labels) → value.
async fn blackbox_probe(bb: &Blackbox, module: &str, target: &str) -> BTreeMap<String, f64> {
    let path = format!("/probe?module={module}&target={}", encode(target));
    let (status, body) = http_get(&bb.addr, &path).await.expect("blackbox answers");
    assert_eq!(status, 200, "blackbox {path}: {body}");
    let parsed = meshlens_ingest::exposition::parse(
        body.as_bytes(),
        meshlens_ingest::exposition::Format::PrometheusText,
    )
    .unwrap();
    let series: Vec<meshlens_model::TimeSeries> = parsed
        .samples
        .into_iter()
        .map(|s| meshlens_model::TimeSeries {
            labels: s.labels,
            samples: vec![meshlens_model::Sample::new(0, s.value)],
        })
        .collect();
    common::flatten(&series)
}

fn name_of(key: &str) -> &str {
    key.split(',')
        .next()
        .and_then(|n| n.strip_prefix("__name__=\""))
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_match_blackbox_exporter() {
    if !Path::new(BLACKBOX).exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{BLACKBOX} is missing (install prometheus-blackbox-exporter; .ci/apt/probes.txt)"
            );
        }
        eprintln!(
            "skipping: {BLACKBOX} is not installed (apt-get install prometheus-blackbox-exporter)"
        );
        return;
    }
    let t = start_targets().await;
    let bb = start_blackbox(&t);
    let mut ready = false;
    for _ in 0..300 {
        if let Some((200, _)) = http_get(&bb.addr, "/-/healthy").await {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "blackbox_exporter did not become ready on {}",
        bb.addr
    );
    let ours = our_probes(&t);

    let http = |p: &str| format!("http://{}{p}", t.http);
    let https = |a: std::net::SocketAddr, p: &str| format!("https://{a}{p}");
    // (module, target, expected probe_success) — the expectation keeps the test honest even
    // if both tools went wrong the same way.
    let cases: Vec<(&str, String, f64)> = vec![
        ("http_2xx", http("/ok"), 1.0),
        ("http_2xx", http("/fail"), 0.0),
        ("http_2xx", http("/redirect"), 1.0),
        ("http_2xx", http("/chunked"), 1.0),
        ("http_no_redirects", http("/redirect"), 0.0),
        ("http_body_match", http("/ok"), 1.0),
        ("http_body_mismatch", http("/ok"), 0.0),
        ("http_body_match", http("/fail"), 0.0),
        ("http_2xx", format!("http://{}/ok", t.closed), 0.0),
        ("http_2xx", https(t.tls_fresh, "/ok"), 1.0),
        ("http_2xx", https(t.tls_expired, "/ok"), 0.0),
        ("http_insecure", https(t.tls_expired, "/ok"), 1.0),
        ("tcp_connect", t.http.to_string(), 1.0),
        ("tcp_connect", t.closed.to_string(), 0.0),
        ("tls_connect", t.tls_fresh.to_string(), 1.0),
        ("tls_connect", t.tls_expired.to_string(), 0.0),
        ("tls_insecure", t.tls_expired.to_string(), 1.0),
        ("tls_connect", t.tls_short_ca.to_string(), 1.0),
        ("http_2xx", https(t.tls_short_ca, "/ok"), 1.0),
        ("http_2xx", https(t.tls_h2, "/"), 1.0),
        ("http_insecure", https(t.tls_h2, "/"), 1.0),
    ];
    let mut failures = Vec::new();
    for (module, target, want_success) in &cases {
        let theirs = blackbox_probe(&bb, module, target).await;
        let series = probe_once(&ours[module], target, 0).await;
        let mine = common::flatten(&series);
        let what = format!("{module} {target}");
        if std::env::var("PROBE_DEBUG").is_ok() {
            eprintln!("{what}\n theirs {theirs:#?}\n mine {mine:#?}");
        }
        let their_keys: BTreeSet<&String> = theirs.keys().collect();
        let my_keys: BTreeSet<&String> = mine.keys().collect();
        if their_keys != my_keys {
            failures.push(format!(
                "{what}: series differ\n  only blackbox: {:?}\n  only meshlens: {:?}",
                their_keys.difference(&my_keys).collect::<Vec<_>>(),
                my_keys.difference(&their_keys).collect::<Vec<_>>()
            ));
            continue;
        }
        for (key, theirs_v) in &theirs {
            if TIMINGS.contains(&name_of(key)) {
                continue;
            }
            let mine_v = mine[key];
            if mine_v != *theirs_v {
                failures.push(format!(
                    "{what}: {key} blackbox {theirs_v} meshlens {mine_v}"
                ));
            }
        }
        let success = theirs.get("__name__=\"probe_success\"").copied();
        if success != Some(*want_success) {
            failures.push(format!(
                "{what}: probe_success {success:?}, expected {want_success}"
            ));
        }
        // The expiry is the certificate's own notAfter, to the second.
        let expiry = mine
            .get("__name__=\"probe_ssl_earliest_cert_expiry\"")
            .copied();
        let fresh_leaf = [
            t.tls_fresh.to_string(),
            t.tls_short_ca.to_string(),
            t.tls_h2.to_string(),
        ];
        let want_expiry = if fresh_leaf.iter().any(|a| target.contains(a)) && *want_success == 1.0 {
            Some(t.fresh_not_after as f64)
        } else if target.contains(&t.tls_expired.to_string()) && *want_success == 1.0 {
            Some(t.expired_not_after as f64)
        } else {
            None
        };
        if expiry != want_expiry {
            failures.push(format!(
                "{what}: expiry {expiry:?}, expected {want_expiry:?}"
            ));
        }
        // The verified chain ends at the short-lived CA, which expires first.
        if target.contains(&t.tls_short_ca.to_string()) {
            let chain = mine
                .get("__name__=\"probe_ssl_last_chain_expiry_timestamp_seconds\"")
                .copied();
            if chain != Some(t.short_ca_not_after as f64) {
                failures.push(format!("{what}: chain expiry {chain:?}, expected the CA's"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
