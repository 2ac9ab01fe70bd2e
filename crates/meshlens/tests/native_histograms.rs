//! Native histograms end to end: scraped in the protobuf format beside Debian's Prometheus
//! 2.42 (`--enable-feature=native-histograms,exemplar-storage`) and compared query by
//! query; remote-written and read back through PromQL and the HTTP API.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{get_json, poll, require_binary, start_prometheus_with, urlencode, Server};
use serde_json::Value;

use common::protobuf::{bytes_field, double_field, varint, varint_field, zigzag};

fn label(name: &str, value: &str) -> Vec<u8> {
    let mut l = Vec::new();
    bytes_field(&mut l, 1, name.as_bytes());
    bytes_field(&mut l, 2, value.as_bytes());
    l
}

/// An exemplar `{trace_id=…}` with value and time (seconds).
fn exemplar(trace: &str, value: f64, seconds: u64) -> Vec<u8> {
    let mut e = Vec::new();
    bytes_field(&mut e, 1, &label("trace_id", trace));
    double_field(&mut e, 2, value);
    let mut ts = Vec::new();
    varint_field(&mut ts, 1, seconds);
    bytes_field(&mut e, 3, &ts);
    e
}

/// The target's body in phase `p`: a native histogram (schema 0, zero bucket, three
/// positive buckets, also two classic buckets with an exemplar) and a counter with an
/// exemplar, as delimited `MetricFamily` messages.
fn body(p: u64) -> Vec<u8> {
    let mut h = Vec::new();
    varint_field(&mut h, 1, 10 * p); // sample_count
    double_field(&mut h, 2, 2.5 * p as f64); // sample_sum
    for (upper, count, ex) in [(0.5, 3 * p, true), (1.0, 6 * p, false)] {
        let mut b = Vec::new();
        varint_field(&mut b, 1, count);
        double_field(&mut b, 2, upper);
        if ex {
            bytes_field(
                &mut b,
                3,
                &exemplar(&format!("b{p}"), 0.3, 1_700_000_000 + p),
            );
        }
        bytes_field(&mut h, 3, &b);
    }
    varint_field(&mut h, 5, zigzag(0)); // schema
    double_field(&mut h, 6, 0.001); // zero_threshold
    varint_field(&mut h, 7, p); // zero_count
    let mut span = Vec::new();
    varint_field(&mut span, 1, zigzag(-1));
    varint_field(&mut span, 2, 3);
    bytes_field(&mut h, 12, &span);
    // Absolute counts 2p, 3p, 4p as deltas.
    let mut deltas = Vec::new();
    for d in [2 * p as i64, p as i64, p as i64] {
        varint(&mut deltas, zigzag(d));
    }
    bytes_field(&mut h, 13, &deltas);
    let mut metric = Vec::new();
    bytes_field(&mut metric, 1, &label("path", "/a"));
    bytes_field(&mut metric, 7, &h);
    let mut latency = Vec::new();
    bytes_field(&mut latency, 1, b"shop_latency_seconds");
    bytes_field(&mut latency, 2, b"Request latency.");
    varint_field(&mut latency, 3, 4);
    bytes_field(&mut latency, 4, &metric);

    let mut counter = Vec::new();
    double_field(&mut counter, 1, 100.0 * p as f64);
    bytes_field(
        &mut counter,
        2,
        &exemplar(&format!("c{p}"), 1.0, 1_700_000_100 + p),
    );
    let mut metric = Vec::new();
    bytes_field(&mut metric, 3, &counter);
    let mut requests = Vec::new();
    bytes_field(&mut requests, 1, b"shop_requests_total");
    varint_field(&mut requests, 3, 0);
    bytes_field(&mut requests, 4, &metric);

    let mut out = Vec::new();
    for family in [latency, requests] {
        varint(&mut out, family.len() as u64);
        out.extend_from_slice(&family);
    }
    out
}

/// A protobuf target whose phase the test switches; counts scrapes per scraper and phase,
/// and what each scraper asked for.
struct Target {
    addr: String,
    phase: Arc<AtomicUsize>,
    scrapes: Arc<Mutex<HashMap<(String, usize), usize>>>,
    accepts: Arc<Mutex<HashMap<String, String>>>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let phase = Arc::new(AtomicUsize::new(1));
        let scrapes = Arc::new(Mutex::new(HashMap::new()));
        let accepts = Arc::new(Mutex::new(HashMap::new()));
        let (p, seen, asked) = (phase.clone(), scrapes.clone(), accepts.clone());
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
                let accept = req
                    .lines()
                    .find_map(|l| l.strip_prefix("accept: "))
                    .unwrap_or("")
                    .to_string();
                asked.lock().unwrap().insert(who.to_string(), accept);
                let phase = p.load(Ordering::SeqCst);
                let body = body(phase as u64);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if s.write_all(head.as_bytes()).is_ok() && s.write_all(&body).is_ok() {
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
            accepts,
        }
    }

    fn wait_both(&self, n: usize) {
        let phase = self.phase.load(Ordering::SeqCst);
        poll(Duration::from_secs(120), || {
            let s = self.scrapes.lock().unwrap();
            let got = |who: &str| s.get(&(who.to_string(), phase)).copied().unwrap_or(0);
            (got("prometheus") >= n && got("meshlens") >= n).then_some(())
        });
    }
}

/// An instant query's result as sorted (labels, value) pairs, histograms as their JSON.
fn instant(base: &str, q: &str) -> Vec<(String, String)> {
    let v = get_json(&format!("{base}/api/v1/query?query={}", urlencode(q)));
    assert_eq!(v["status"], "success", "{q}: {v}");
    let mut out: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{q}: {v}"))
        .iter()
        .map(|s| {
            let value = match (&s["value"], &s["histogram"]) {
                (Value::Array(p), _) => p[1].as_str().unwrap().to_string(),
                (_, Value::Array(p)) => p[1].to_string(),
                _ => panic!("{q}: neither value nor histogram in {s}"),
            };
            (s["metric"].to_string(), value)
        })
        .collect();
    out.sort();
    out
}

/// Exemplars of a query, sorted: (series labels, [(labels, value, ts ms)]).
type Found = Vec<(String, Vec<(String, String, i64)>)>;

/// Exemplars of `query` over the test's whole time range.
fn exemplars(base: &str, query: &str) -> Found {
    let v = get_json(&format!(
        "{base}/api/v1/query_exemplars?query={}&start=1699999000&end=1700001000",
        urlencode(query)
    ));
    assert_eq!(v["status"], "success", "{v}");
    let mut out: Vec<_> = v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {v}"))
        .iter()
        .map(|s| {
            let mut ex: Vec<(String, String, i64)> = s["exemplars"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["labels"].to_string(),
                        e["value"].as_str().unwrap().to_string(),
                        (e["timestamp"].as_f64().unwrap() * 1000.0).round() as i64,
                    )
                })
                .collect();
            ex.sort();
            (s["seriesLabels"].to_string(), ex)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn scraped_native_histograms_agree_with_prometheus() {
    if !require_binary("prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start();
    let scrape = |native: &str| {
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: shop\n{native}    static_configs:\n      - targets: ['{}']\n",
            target.addr
        )
    };
    let cfg = dir.path().join("meshlens.yml");
    std::fs::write(&cfg, scrape("    scrape_native_histograms: true\n")).unwrap();
    let meshlens = Server::start(
        &dir.path().join("meshlens"),
        &["--config", cfg.to_str().unwrap()],
    );
    let (_prom, prom) = start_prometheus_with(
        common::free_port(),
        &scrape(""),
        &dir.path().join("prom"),
        &["--enable-feature=native-histograms,exemplar-storage"],
    );
    let ours = meshlens.url("");
    for phase in [1, 2] {
        target.phase.store(phase, Ordering::SeqCst);
        target.wait_both(3);
        for q in [
            "shop_latency_seconds",
            "histogram_count(shop_latency_seconds)",
            "histogram_sum(shop_latency_seconds)",
            // Quantiles and fractions that need interpolation inside an exponential
            // bucket differ by version: Prometheus 2.42 interpolates linearly, Prometheus 3
            // (and meshlens, checked by the PromQL corpus) exponentially. Fractions on bucket
            // bounds need none.
            "histogram_fraction(-1, 1, shop_latency_seconds)",
            "histogram_fraction(-1, 2, shop_latency_seconds)",
            "histogram_fraction(-1, 0.001, shop_latency_seconds)",
            "sum by (job) (shop_latency_seconds)",
            "histogram_count(sum(shop_latency_seconds))",
            "shop_requests_total",
        ] {
            let (a, b) = (instant(&ours, q), instant(&prom, q));
            assert!(!b.is_empty(), "{q}: Prometheus has nothing");
            assert_eq!(a, b, "phase {phase}: {q}");
        }
    }
    let count = instant(&ours, "histogram_count(shop_latency_seconds)");
    assert_eq!(count[0].1, "20", "phase 2's histogram: {count:?}");
    let asked = target.accepts.lock().unwrap().clone();
    assert!(
        asked["meshlens"].starts_with("application/vnd.google.protobuf"),
        "{asked:?}"
    );
    // Exemplars: the counter's, from both; the histogram's bucket exemplar as Prometheus
    // keeps it (compared whatever it is, and ours must have it).
    for q in ["shop_requests_total", "shop_latency_seconds"] {
        assert_eq!(exemplars(&ours, q), exemplars(&prom, q), "{q}");
    }
    let ex = exemplars(&ours, "shop_requests_total");
    assert_eq!(ex[0].1.len(), 2, "one per phase: {ex:?}");
    let ex = exemplars(&ours, "shop_latency_seconds");
    assert_eq!(
        ex[0].1.len(),
        2,
        "the bucket's exemplar, one per phase: {ex:?}"
    );
}

/// A remote-write 1.0 `TimeSeries` with native histogram samples (integer histograms,
/// schema 1, counts growing by `step` per sample), each given as (time ms, counts of the
/// three buckets, zero count).
fn rw_histogram_series(name: &str, samples: &[(i64, [u64; 3], u64)], bad: bool) -> Vec<u8> {
    let mut ts = Vec::new();
    bytes_field(&mut ts, 1, &label("__name__", name));
    bytes_field(&mut ts, 1, &label("job", "rw"));
    for (t, counts, zero) in samples {
        let mut h = Vec::new();
        varint_field(&mut h, 1, counts.iter().sum::<u64>() + zero); // count_int
        double_field(&mut h, 3, counts.iter().sum::<u64>() as f64 * 0.5); // sum
        varint_field(&mut h, 4, zigzag(1)); // schema
        double_field(&mut h, 5, 0.001); // zero_threshold
        varint_field(&mut h, 6, *zero); // zero_count_int
        let mut span = Vec::new();
        varint_field(&mut span, 1, zigzag(0));
        varint_field(&mut span, 2, if bad { 4 } else { 3 });
        bytes_field(&mut h, 11, &span);
        let mut deltas = Vec::new();
        let mut prev = 0i64;
        for c in counts {
            varint(&mut deltas, zigzag(*c as i64 - prev));
            prev = *c as i64;
        }
        bytes_field(&mut h, 12, &deltas);
        varint_field(&mut h, 15, *t as u64);
        bytes_field(&mut ts, 4, &h);
    }
    ts
}

/// Posts an uncompressed remote-write 1.0 request to the server.
fn remote_write(server: &Server, req: &[u8]) -> common::httpc::Response {
    let mut conn = common::httpc::Conn::open(&server.addr).unwrap();
    conn.request(
        "POST",
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
        ],
        &meshlens_ingest::remote_write::compress(req),
    )
    .unwrap()
}

#[test]
fn remote_written_native_histograms_are_stored_queried_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let now = common::now_ms() / 60_000 * 60_000;
    let samples: Vec<(i64, [u64; 3], u64)> = (0..10u64)
        .map(|i| (now - (9 - i as i64) * 60_000, [i, 2 * i, 3 * i], i))
        .collect();
    let mut req = Vec::new();
    bytes_field(
        &mut req,
        1,
        &rw_histogram_series("rt_latency_seconds", &samples, false),
    );
    // A second series whose spans cover more buckets than it sends: refused alone.
    bytes_field(
        &mut req,
        1,
        &rw_histogram_series("rt_broken_seconds", &samples[..1], true),
    );
    let r = remote_write(&server, &req);
    let msg = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 400, "{msg}");
    assert!(
        msg.contains("timeseries[1]: native histogram refused: positive spans cover 4 buckets but 3 counts were sent"),
        "{msg}"
    );
    let at = (now / 1000) as f64;
    let check = |server: &Server| {
        let v = server.query("histogram_count(rt_latency_seconds)", Some(at));
        assert_eq!(v["data"]["result"][0]["value"][1], "63", "9+18+27+9: {v}");
        let v = server.query("histogram_sum(rt_latency_seconds)", Some(at));
        assert_eq!(v["data"]["result"][0]["value"][1], "27", "{v}");
        // rate over 5 minutes of counts growing 7 per minute, extrapolated as Prometheus.
        let v = server.query("histogram_count(rate(rt_latency_seconds[5m]))", Some(at));
        let rate: f64 = v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((rate - 7.0 / 60.0).abs() < 1e-9, "{v}");
        let v = server.query("rt_latency_seconds", Some(at));
        let h = &v["data"]["result"][0]["histogram"][1];
        assert_eq!(h["count"], "63", "{v}");
        assert!(h["buckets"].as_array().is_some_and(|b| b.len() == 4), "{v}");
        let v = server.query("rt_broken_seconds", Some(at));
        assert_eq!(v["data"]["result"], serde_json::json!([]), "{v}");
    };
    check(&server);
    // Kept across a restart (WAL replay) and a SIGKILL.
    server.kill9();
    let server = Server::start(&data, &[]);
    check(&server);
    // The range API gives "histograms".
    let v = get_json(&server.url(&format!(
        "/api/v1/query_range?query=rt_latency_seconds&start={}&end={}&step=60",
        at - 240.0,
        at
    )));
    let series = &v["data"]["result"][0];
    assert!(series.get("values").is_none(), "{v}");
    assert_eq!(
        series["histograms"].as_array().map(Vec::len),
        Some(5),
        "{v}"
    );
}

#[test]
fn web_ui_shows_native_histograms() {
    if !common::require_binary("chromium") || !common::require_python_module("playwright") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--otlp-grpc-listen", "off"]);
    let now = common::now_ms();
    let samples: Vec<(i64, [u64; 3], u64)> = (0..10u64)
        .map(|i| (now - (9 - i as i64) * 60_000, [i, 2 * i, 3 * i], i))
        .collect();
    let mut req = Vec::new();
    bytes_field(
        &mut req,
        1,
        &rw_histogram_series("rt_latency_seconds", &samples, false),
    );
    let r = remote_write(&server, &req);
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    // The newest histogram: 9 + 18 + 27 in three buckets and 9 in the zero bucket.
    common::run_browser_script(
        "ui_histograms.py",
        &server.url(""),
        "ui-histograms-screenshots",
        &["rt_latency_seconds", "63", "4"],
    );
}
