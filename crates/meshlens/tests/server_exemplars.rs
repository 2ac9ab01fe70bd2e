//! Exemplars end to end: scraped from OpenMetrics beside Debian's Prometheus 2.42 (with
//! `--enable-feature=exemplar-storage`) and compared through `/api/v1/query_exemplars`;
//! received over remote write; kept across restarts by the WAL; refused when their labels
//! are too long; evicted oldest first from the bounded ring.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{get_json, httpc, poll, require_binary, start_prometheus_with, urlencode, Server};
use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::{Exemplar, Labels, Sample, SeriesExemplars, TimeSeries};
use serde_json::Value;

/// Phase 1: exemplars on a counter and on histogram buckets, with timestamps (so both
/// scrapers store the same ones). Phase 2: newer exemplars, one repeated (a duplicate) and
/// one older than its series' newest (out of order, refused by both).
fn body(phase: usize) -> String {
    let (a, b, le05, inf) = match phase {
        1 => (
            r#"# {trace_id="aaa1",span_id="01"} 1 1700000000.123"#,
            r#"# {trace_id="bbb1"} 0.5 1700000001.5"#,
            r#"# {trace_id="ccc1"} 0.25 1700000002.001"#,
            r#"# {trace_id="ddd1"} 7.5 1700000003"#,
        ),
        _ => (
            r#"# {trace_id="aaa2",span_id="02"} 2 1700000010.456"#,
            // The same as phase 1: a duplicate.
            r#"# {trace_id="bbb1"} 0.5 1700000001.5"#,
            // Older than the series' newest: out of order.
            r#"# {trace_id="ccc0"} 0.125 1700000001"#,
            r#"# {trace_id="ddd2"} 9 1700000013.25"#,
        ),
    };
    format!(
        "# TYPE shop_requests counter\n\
         shop_requests_total{{path=\"/a\"}} {phase}0 {a}\n\
         shop_requests_total{{path=\"/b\"}} {phase}1 {b}\n\
         # TYPE shop_latency_seconds histogram\n\
         shop_latency_seconds_bucket{{le=\"0.5\"}} {phase}2 {le05}\n\
         shop_latency_seconds_bucket{{le=\"+Inf\"}} {phase}3 {inf}\n\
         shop_latency_seconds_sum 4.5\n\
         shop_latency_seconds_count {phase}3\n\
         # TYPE shop_temperature gauge\n\
         shop_temperature 21.5\n\
         # EOF\n"
    )
}

/// An OpenMetrics target whose phase the test switches; counts scrapes per scraper
/// (by User-Agent) and phase.
struct Target {
    addr: String,
    phase: Arc<AtomicUsize>,
    scrapes: Arc<Mutex<HashMap<(String, usize), usize>>>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let phase = Arc::new(AtomicUsize::new(1));
        let scrapes = Arc::new(Mutex::new(HashMap::new()));
        let (p, seen) = (phase.clone(), scrapes.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let who = if req.contains("user-agent: prometheus") {
                    "prometheus"
                } else {
                    "meshlens"
                };
                let phase = p.load(Ordering::SeqCst);
                let body = body(phase);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(resp.as_bytes()).is_ok() {
                    *seen
                        .lock()
                        .unwrap()
                        .entry((who.to_string(), phase))
                        .or_insert(0) += 1;
                }
            }
        });
        Target {
            addr,
            phase,
            scrapes,
        }
    }

    /// Waits until both scrapers fetched the current phase at least `n` times.
    fn wait_both(&self, n: usize) {
        let phase = self.phase.load(Ordering::SeqCst);
        poll(Duration::from_secs(120), || {
            let s = self.scrapes.lock().unwrap();
            let got = |who: &str| s.get(&(who.to_string(), phase)).copied().unwrap_or(0);
            (got("prometheus") >= n && got("meshlens") >= n).then_some(())
        });
    }
}

/// `query_exemplars` as a sorted list of (series labels, [(labels, value, ts ms)]).
type Found = Vec<(String, Vec<(String, String, i64)>)>;

fn exemplars(base: &str, query: &str, range: &str) -> Found {
    let v = get_json(&format!(
        "{base}/api/v1/query_exemplars?query={}{range}",
        urlencode(query)
    ));
    assert_eq!(v["status"], "success", "{v}");
    let mut out: Found = v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: no list in {v}"))
        .iter()
        .map(|s| {
            let ex = s["exemplars"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["labels"].to_string(),
                        e["value"].as_str().expect("value is a string").to_string(),
                        (e["timestamp"].as_f64().expect("timestamp") * 1000.0).round() as i64,
                    )
                })
                .collect();
            (s["seriesLabels"].to_string(), ex)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn scraped_exemplars_agree_with_prometheus() {
    if !require_binary("prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start();
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: shop\n    static_configs:\n      - targets: ['{}']\n",
        target.addr
    );
    let cfg = dir.path().join("meshlens.yml");
    std::fs::write(&cfg, &scrape).unwrap();
    let meshlens = Server::start(
        &dir.path().join("meshlens"),
        &["--config", cfg.to_str().unwrap()],
    );
    let (_prom, prom) = start_prometheus_with(
        common::free_port(),
        &scrape,
        &dir.path().join("prom"),
        &["--enable-feature=exemplar-storage"],
    );
    target.wait_both(3);
    target.phase.store(2, Ordering::SeqCst);
    target.wait_both(3);

    let selectors = [
        "shop_requests_total",
        "shop_latency_seconds_bucket{le=\"0.5\"}",
        "{__name__=~\"shop_.*\"}",
        "rate(shop_requests_total{path=\"/a\"}[5m]) + on() group_left sum(shop_latency_seconds_bucket)",
        "shop_temperature",
    ];
    let ranges = ["", "&start=1700000001&end=1700000010.456"];
    for q in selectors {
        for range in ranges {
            let ours = exemplars(&meshlens.url(""), q, range);
            let theirs = exemplars(&prom, q, range);
            assert_eq!(ours, theirs, "query {q:?}{range}");
        }
    }
    // Not vacuous: every phase's exemplars are there, the duplicate once, the late one not.
    let all = exemplars(&meshlens.url(""), "{job=\"shop\"}", "");
    let flat: Vec<&str> = all
        .iter()
        .flat_map(|(_, ex)| ex.iter().map(|e| e.0.as_str()))
        .collect();
    for want in ["aaa1", "aaa2", "bbb1", "ccc1", "ddd1", "ddd2"] {
        assert_eq!(
            flat.iter().filter(|l| l.contains(want)).count(),
            1,
            "{want} in {flat:?}"
        );
    }
    assert!(!flat.iter().any(|l| l.contains("ccc0")), "{flat:?}");
    let a = &all.iter().find(|(s, _)| s.contains("/a")).unwrap().1;
    assert_eq!(a[0].1, "1");
    assert_eq!(a[0].2, 1_700_000_000_123);
    // A query with no selector, as Prometheus: data is null.
    let v = get_json(&meshlens.url("/api/v1/query_exemplars?query=1%2B1"));
    assert_eq!(v["data"], Value::Null);
    // The store's figures.
    let metrics = String::from_utf8(httpc::get(&meshlens.url("/metrics")).unwrap().body).unwrap();
    assert!(
        metrics.contains("prometheus_tsdb_exemplar_exemplars_in_storage 6\n"),
        "{metrics}"
    );
    assert!(metrics.contains("prometheus_tsdb_exemplar_max_exemplars 100000\n"));
}

#[test]
fn exemplars_without_a_timestamp_take_the_scrape_time() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = "# TYPE x counter\nx_total 1 # {trace_id=\"abc\"} 0.5\n# EOF\n";
            let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = s.write_all(resp.as_bytes());
        }
    });
    let cfg = dir.path().join("m.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: x\n    static_configs:\n      - targets: ['{addr}']\n"),
    )
    .unwrap();
    let before = common::now_ms();
    let server = Server::start(&dir.path().join("d"), &["--config", cfg.to_str().unwrap()]);
    // Each scrape offers it again with a new time: not a duplicate, one per scrape.
    let found = poll(Duration::from_secs(60), || {
        let f = exemplars(&server.url(""), "x_total", "");
        (f.len() == 1 && f[0].1.len() >= 2).then_some(f)
    });
    let (_, ex) = &found[0];
    let ts: Vec<i64> = ex.iter().map(|e| e.2).collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?}");
    assert!(
        ts[0] >= before && ts[ts.len() - 1] <= common::now_ms(),
        "{ts:?} vs {before}"
    );
    // The sample the exemplar rides on is stored at the same time.
    let v = server.query("timestamp(x_total)", None);
    assert!(v["data"]["result"][0]["value"][1].as_str().is_some(), "{v}");
}

fn rw(series: &str, t: i64, exemplars: Vec<Exemplar>) -> (TimeSeries, SeriesExemplars) {
    let labels = Labels::from_pairs([("__name__", series), ("job", "rw")]);
    (
        TimeSeries {
            labels: labels.clone(),
            samples: vec![Sample::new(t, 1.0)],
        },
        SeriesExemplars {
            series: labels,
            exemplars,
        },
    )
}

fn ex(trace: &str, v: f64, t: i64) -> Exemplar {
    Exemplar {
        labels: Labels::from_pairs([("trace_id", trace)]),
        value: v,
        t,
    }
}

fn write(server: &Server, parts: Vec<(TimeSeries, SeriesExemplars)>) -> httpc::Response {
    let (timeseries, exemplars) = parts.into_iter().unzip();
    let body = encode(&WriteRequest {
        timeseries,
        exemplars,
        ..Default::default()
    });
    httpc::Conn::open(&server.addr)
        .unwrap()
        .request(
            "POST",
            "/api/v1/write",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "snappy"),
            ],
            &body,
        )
        .unwrap()
}

fn traces(server: &Server, q: &str) -> Vec<(String, i64)> {
    exemplars(&server.url(""), q, "")
        .into_iter()
        .flat_map(|(_, ex)| ex)
        .map(|(l, v, t)| {
            let l: Value = serde_json::from_str(&l).unwrap();
            (format!("{}={v}", l["trace_id"].as_str().unwrap_or("")), t)
        })
        .collect()
}

#[test]
fn remote_write_exemplars_are_stored_checked_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let t0 = common::now_ms();
    let server = Server::start(&data, &[]);
    let r = write(
        &server,
        vec![
            rw(
                "rw_total",
                t0,
                vec![ex("t1", 1.5, t0 - 10), ex("t2", 2.5, t0)],
            ),
            rw("rw_other", t0, vec![ex("o1", 3.0, t0)]),
        ],
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        traces(&server, "rw_total"),
        vec![("t1=1.5".into(), t0 - 10), ("t2=2.5".into(), t0)]
    );

    // Labels over 128 runes: that exemplar is refused with the reason, the rest is stored.
    let long = Exemplar {
        labels: Labels::from_pairs([("trace_id", "é".repeat(121).as_str())]),
        value: 1.0,
        t: t0 + 1,
    };
    let r = write(
        &server,
        vec![
            rw("rw_total", t0 + 5, vec![long]),
            rw("rw_other", t0 + 5, vec![ex("o2", 4.0, t0 + 5)]),
        ],
    );
    let msg = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 400, "{msg}");
    assert!(msg.contains("129 runes") && msg.contains("128"), "{msg}");
    assert!(msg.contains("rw_total"), "names the series: {msg}");
    assert_eq!(traces(&server, "rw_other").len(), 2);
    assert_eq!(traces(&server, "rw_total").len(), 2);
    let v = server.query("rw_total", Some((t0 + 5) as f64 / 1000.0));
    assert_eq!(
        v["data"]["result"].as_array().unwrap().len(),
        1,
        "sample kept: {v}"
    );

    // A crash: the WAL brings them back.
    let before = traces(&server, "{job=\"rw\"}");
    server.kill9();
    let server = Server::start(&data, &[]);
    assert_eq!(traces(&server, "{job=\"rw\"}"), before);
    // A clean shutdown (checkpointed WAL) too.
    server.terminate();
    let server = Server::start(&data, &[]);
    assert_eq!(traces(&server, "{job=\"rw\"}"), before);

    // Bad parameters answer 400 in Prometheus's error shape.
    for bad in [
        "/api/v1/query_exemplars?query=rw_total%7B",
        "/api/v1/query_exemplars?query=rw_total&start=yesterday",
        "/api/v1/query_exemplars?query=rw_total&start=10&end=5",
        "/api/v1/query_exemplars",
    ] {
        let r = httpc::get(&server.url(bad)).unwrap();
        assert_eq!(r.status, 400, "{bad}");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["errorType"].as_str()),
            (Some("error"), Some("bad_data")),
            "{bad}: {v}"
        );
    }
}

#[test]
fn the_ring_keeps_the_newest_exemplars() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = Server::start(&data, &["--storage.exemplars.max-exemplars", "5"]);
    let t0 = common::now_ms();
    for i in 0..8 {
        let series = if i % 2 == 0 { "ring_a" } else { "ring_b" };
        let r = write(
            &server,
            vec![rw(
                series,
                t0 + i,
                vec![ex(&format!("e{i}"), i as f64, t0 + i)],
            )],
        );
        assert_eq!(r.status, 204);
    }
    let kept: Vec<String> = {
        let mut v: Vec<_> = traces(&server, "{job=\"rw\"}");
        v.sort_by_key(|x| x.1);
        v.into_iter().map(|x| x.0).collect()
    };
    assert_eq!(kept, ["e3=3", "e4=4", "e5=5", "e6=6", "e7=7"]);
    let metrics = String::from_utf8(httpc::get(&server.url("/metrics")).unwrap().body).unwrap();
    assert!(metrics.contains("prometheus_tsdb_exemplar_exemplars_in_storage 5\n"));
    assert!(metrics.contains("prometheus_tsdb_exemplar_exemplars_appended_total 8\n"));
    // Disabled: nothing kept, nothing refused as bad input.
    server.terminate();
    let server = Server::start(&data, &["--storage.exemplars.max-exemplars", "0"]);
    let r = write(
        &server,
        vec![rw("ring_c", t0 + 20, vec![ex("z", 1.0, t0 + 20)])],
    );
    assert_eq!(r.status, 204);
    assert!(traces(&server, "{job=\"rw\"}").is_empty());
}

#[test]
fn each_tenant_has_its_own_exemplars() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"), &["--multitenancy"]);
    let t0 = common::now_ms();
    let mut conn = httpc::Conn::open(&server.addr).unwrap();
    for (org, trace) in [("team-a", "aa"), ("team-b", "bb")] {
        let (ts, ex) = rw("mt_total", t0, vec![ex(trace, 1.0, t0)]);
        let body = encode(&WriteRequest {
            timeseries: vec![ts],
            exemplars: vec![ex],
            ..Default::default()
        });
        let r = conn
            .request(
                "POST",
                "/api/v1/write",
                &[
                    ("Content-Type", "application/x-protobuf"),
                    ("Content-Encoding", "snappy"),
                    ("X-Scope-OrgID", org),
                ],
                &body,
            )
            .unwrap();
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    }
    let ask = |conn: &mut httpc::Conn, org: &str, q: &str| -> Value {
        let path = format!("/api/v1/query_exemplars?query={}", urlencode(q));
        let r = conn
            .request("GET", &path, &[("X-Scope-OrgID", org)], b"")
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        serde_json::from_slice(&r.body).unwrap()
    };
    let v = ask(&mut conn, "team-a", "mt_total");
    let list = v["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["exemplars"][0]["labels"]["trace_id"], "aa");
    // A federated read names each series' tenant, and a tenant matcher picks one.
    let v = ask(&mut conn, "team-a|team-b", "mt_total");
    let tenants: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seriesLabels"]["__tenant_id__"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["team-a", "team-b"], "{v}");
    let v = ask(
        &mut conn,
        "team-a|team-b",
        r#"mt_total{__tenant_id__="team-b"}"#,
    );
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["data"][0]["exemplars"][0]["labels"]["trace_id"], "bb");
}

/// An agent takes exemplars as a server does and forwards them to its hub, stamped with its
/// cluster like the series they belong to.
#[test]
fn an_agent_forwards_exemplars_to_its_hub() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("hub"), &["--otlp-grpc-listen", "off"]);
    let port = common::free_port();
    let agent = common::KillOnDrop(
        std::process::Command::new(common::BIN)
            .args(["agent", "--cluster", "east", "--hub", &hub.url("")])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path().join("agent"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn meshlens agent"),
    );
    let agent_url = format!("http://127.0.0.1:{port}");
    common::wait_ready(&agent_url, Duration::from_secs(60));
    let t0 = common::now_ms();
    let too_long = Exemplar {
        labels: Labels::from_pairs([("trace_id", "x".repeat(130).as_str())]),
        value: 1.0,
        t: t0 + 1,
    };
    let (ts, ex1) = rw("fwd_total", t0, vec![ex("f1", 0.5, t0), too_long]);
    let body = encode(&WriteRequest {
        timeseries: vec![ts],
        exemplars: vec![ex1],
        ..Default::default()
    });
    let r = httpc::Conn::open(&format!("127.0.0.1:{port}"))
        .unwrap()
        .request(
            "POST",
            "/api/v1/write",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "snappy"),
            ],
            &body,
        )
        .unwrap();
    // The agent refuses the over-long one as a server would, and forwards the rest.
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("138 runes"));
    let found = poll(Duration::from_secs(60), || {
        let f = exemplars(&hub.url(""), "fwd_total", "");
        (!f.is_empty()).then_some(f)
    });
    assert_eq!(found.len(), 1, "{found:?}");
    let series: Value = serde_json::from_str(&found[0].0).unwrap();
    assert_eq!(series["cluster"], "east", "{series}");
    assert_eq!(found[0].1.len(), 1, "{found:?}");
    assert!(found[0].1[0].0.contains("f1"));
    drop(agent);
}
