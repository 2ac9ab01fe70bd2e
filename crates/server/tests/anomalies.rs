//! The anomaly evaluator end to end: a server with a 1 s interval gets 20 minutes of steady
//! Istio series for two services by remote write (the model warms on that stored past), then
//! live samples; when one service's latency and 5xx share step up, `/api/v1/anomalies` lists
//! it, `meshlens_anomaly_score` answers above 1 in PromQL, and an Anomaly event is recorded,
//! while the steady service stays unflagged.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::{Labels, Sample, TimeSeries};
use meshlens_server::{start, ServerOptions};
use serde_json::Value;
use support::{get_json, http};

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const BUCKETS: [f64; 9] = [
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    f64::INFINITY,
];

/// One service's cumulative Istio counters, advanced request by request.
struct Service {
    name: &'static str,
    ok: f64,
    err: f64,
    buckets: [f64; 9],
    seed: u64,
}

impl Service {
    fn new(name: &'static str, seed: u64) -> Service {
        Service {
            name,
            ok: 0.0,
            err: 0.0,
            buckets: [0.0; 9],
            seed,
        }
    }

    fn rand(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` requests; `bad`: half fail with 503 and all take 600-900 ms.
    fn serve(&mut self, n: usize, bad: bool) {
        for _ in 0..n {
            let r = self.rand();
            let (failed, ms) = if bad {
                (r < 0.5, 600.0 + 300.0 * self.rand())
            } else {
                (r < 0.01, 5.0 + 30.0 * self.rand() * self.rand())
            };
            if failed {
                self.err += 1.0;
            } else {
                self.ok += 1.0;
            }
            for (i, le) in BUCKETS.iter().enumerate() {
                if ms <= *le {
                    self.buckets[i] += 1.0;
                }
            }
        }
    }

    fn series(&self, t: i64, out: &mut Vec<TimeSeries>) {
        let base = [
            ("reporter", "destination"),
            ("destination_service_name", self.name),
            ("destination_canonical_service", self.name),
        ];
        let mut push = |extra: Vec<(&str, String)>, v: f64| {
            let mut pairs: Vec<(String, String)> = base
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            pairs.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
            out.push(TimeSeries {
                labels: Labels::from_pairs(pairs),
                samples: vec![Sample::new(t, v)],
            });
        };
        push(
            vec![
                ("__name__", "istio_requests_total".into()),
                ("response_code", "200".into()),
            ],
            self.ok,
        );
        push(
            vec![
                ("__name__", "istio_requests_total".into()),
                ("response_code", "503".into()),
            ],
            self.err,
        );
        for (i, le) in BUCKETS.iter().enumerate() {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                format!("{le}")
            };
            push(
                vec![
                    (
                        "__name__",
                        "istio_request_duration_milliseconds_bucket".into(),
                    ),
                    ("le", le),
                ],
                self.buckets[i],
            );
        }
    }
}

fn write(addr: SocketAddr, series: Vec<TimeSeries>) {
    let body = encode(&WriteRequest {
        timeseries: series,
        ..Default::default()
    });
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    let (status, body) = http(addr, "POST", "/api/v1/write", &headers, &body);
    assert!(
        status == 204 || status == 200,
        "write: {status} {}",
        String::from_utf8_lossy(&body)
    );
}

/// (current, history) entries for `service` in `/api/v1/anomalies`.
fn anomalies(addr: SocketAddr, service: &str) -> (Vec<Value>, Vec<Value>) {
    let (status, v) = get_json(addr, &format!("/api/v1/anomalies?service={service}"), &[]);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["threshold"], 1.0, "{v}");
    let list = |k: &str| v["data"][k].as_array().cloned().unwrap_or_default();
    (list("current"), list("history"))
}

fn score_query(addr: SocketAddr, q: &str) -> Vec<Value> {
    let (status, v) = get_json(addr, &format!("/api/v1/query?query={}", enc(q)), &[]);
    assert_eq!(status, 200, "{v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_and_error_step_is_listed_scored_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        anomaly_interval: Some(Duration::from_secs(1)),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let addr = server.addr();
    let result = tokio::task::spawn_blocking(move || scenario(addr)).await;
    server.shutdown().await;
    result.unwrap();
}

fn scenario(addr: SocketAddr) {
    // 20 minutes of steady history, a sample every 5 s, about 20 requests per second.
    let mut reviews = Service::new("reviews", 0x9E37_79B9_7F4A_7C15);
    let mut ratings = Service::new("ratings", 0xD1B5_4A32_D192_ED03);
    let now = meshlens_model::time::now_ms();
    let mut batch: Vec<TimeSeries> = Vec::new();
    for i in (0..240).rev() {
        reviews.serve(100, false);
        ratings.serve(100, false);
        let t = now - i * 5_000;
        reviews.series(t, &mut batch);
        ratings.series(t, &mut batch);
    }
    // One series per label set, samples in time order.
    let mut merged: Vec<TimeSeries> = Vec::new();
    for ts in batch {
        match merged.iter_mut().find(|m| m.labels == ts.labels) {
            Some(m) => m.samples.extend(ts.samples),
            None => merged.push(ts),
        }
    }
    write(addr, merged);

    // Live samples every second; `bad` flips reviews into the fault.
    let bad = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (bad, stop) = (bad.clone(), stop.clone());
        std::thread::spawn(move || {
            // Bounded: at most 10 minutes of samples.
            for _ in 0..600 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                reviews.serve(20, bad.load(Ordering::Relaxed));
                ratings.serve(20, false);
                let mut b = Vec::new();
                let t = meshlens_model::time::now_ms();
                reviews.series(t, &mut b);
                ratings.series(t, &mut b);
                write(addr, b);
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };

    // The models warm on the stored past: scores below 1 for the steady services.
    poll("scores for reviews", Duration::from_secs(120), || {
        let r = score_query(
            addr,
            "meshlens_anomaly_score{service=\"reviews\",signal=\"p99\"}",
        );
        (!r.is_empty()).then_some(())
    });
    let (current, _) = anomalies(addr, "reviews");
    assert!(current.is_empty(), "flagged before the fault: {current:?}");

    bad.store(true, Ordering::Relaxed);
    let fault_at = Instant::now();
    let listed = poll(
        "reviews listed as anomalous",
        Duration::from_secs(120),
        || {
            let (current, _) = anomalies(addr, "reviews");
            current.into_iter().find(|c| c["signal"] == "p99")
        },
    );
    eprintln!(
        "p99 of reviews listed {:?} after the fault: {listed}",
        fault_at.elapsed()
    );
    assert_eq!(listed["service"], "reviews");
    assert!(listed["score"].as_f64().unwrap() >= 1.0, "{listed}");
    assert!(
        listed["value"].as_f64().unwrap() > 500.0,
        "p99 value {listed}"
    );
    assert!(listed["since"].as_i64().is_some());
    let high = poll(
        "the score above 1 in PromQL",
        Duration::from_secs(60),
        || {
            let r = score_query(
                addr,
                "meshlens_anomaly_score{service=\"reviews\",signal=\"p99\"} > 1",
            );
            r.into_iter().next()
        },
    );
    assert_eq!(high["metric"]["signal"], "p99", "{high}");
    poll("the 5xx share flagged too", Duration::from_secs(60), || {
        let (current, _) = anomalies(addr, "reviews");
        current.into_iter().find(|c| c["signal"] == "errors")
    });
    let (_, history) = anomalies(addr, "reviews");
    assert!(
        history
            .iter()
            .any(|h| h["signal"] == "p99" && h["end"].is_null()),
        "open episode in the history: {history:?}"
    );
    let (status, events) = get_json(addr, "/api/v1/events?kind=anomaly&service=reviews", &[]);
    assert_eq!(status, 200);
    let events = events["data"].as_array().cloned().unwrap_or_default();
    assert!(
        events
            .iter()
            .any(|e| e["detail"]["signal"] == "p99" && e["detail"]["phase"] == "start"),
        "anomaly event recorded: {events:?}"
    );
    let (current, _) = anomalies(addr, "ratings");
    assert!(
        current.is_empty(),
        "the steady service is flagged: {current:?}"
    );

    // Bad input is a 400 with the bad_data envelope.
    let (status, v) = get_json(addr, "/api/v1/anomalies?since=yesterday", &[]);
    assert_eq!(status, 400);
    assert_eq!(v["errorType"], "bad_data");
    assert!(v["error"].as_str().unwrap().contains("since"), "{v}");

    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}
