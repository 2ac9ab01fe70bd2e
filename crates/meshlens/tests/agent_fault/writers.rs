//! The fault test's live inputs: a scrape target, a remote-write loop and a span loop. The
//! loops keep writing through every fault and record only what the agent acknowledged.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::httpc;
use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::time::now_ms;
use meshlens_model::{Endpoint, Labels, Sample, Span, TimeSeries, TraceId};

/// What the agent acknowledged, and how often it refused or was unreachable.
#[derive(Default)]
pub struct Ledger {
    /// `fault_test_samples` timestamp (ms) → value, for 2xx answers only.
    pub samples: Mutex<BTreeMap<i64, f64>>,
    /// Trace ids (32 hex digits) acknowledged, with the protocol that carried them.
    pub traces: Mutex<Vec<(String, &'static str)>>,
    /// Requests answered with a non-2xx or not answered; each was retried.
    pub sample_retries: AtomicU64,
    pub span_retries: AtomicU64,
}

pub const SPANS_PER_TRACE: usize = 3;

/// Serves /metrics with a few counters and a gauge that change on every scrape.
pub fn start_target() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = format!(
                "# TYPE fault_target_requests_total counter\n\
                 fault_target_requests_total{{path=\"/a\"}} {}\n\
                 fault_target_requests_total{{path=\"/b\"}} {}\n\
                 # TYPE fault_target_bytes_total counter\n\
                 fault_target_bytes_total {}\n\
                 # TYPE fault_target_queue gauge\n\
                 fault_target_queue {}\n",
                i * 3,
                i / 2,
                i * 1024,
                i % 17
            );
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    addr
}

/// Sleeps until `next` (then `next += period`), or, when behind, restarts the schedule now.
fn tick(next: &mut Instant, period: Duration) {
    let now = Instant::now();
    if *next > now {
        std::thread::sleep(*next - now);
        *next += period;
    } else {
        *next = now + period;
    }
}

/// Writes one new `fault_test_samples{writer="test"}` sample every 100 ms to the agent. A
/// refused request's samples are sent again with the next one, so nothing is skipped and
/// the series stays in order.
pub fn sample_writer(agent: String, stop: Arc<AtomicBool>, ledger: Arc<Ledger>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn = httpc::Conn::open(&agent).unwrap();
        let labels = Labels::from_pairs([("__name__", "fault_test_samples"), ("writer", "test")]);
        let mut pending: Vec<Sample> = Vec::new();
        let (mut seq, mut last_t) = (0u64, 0i64);
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let t = now_ms().max(last_t + 1);
            last_t = t;
            pending.push(Sample::new(t, seq as f64));
            seq += 1;
            let body = encode(&WriteRequest {
                timeseries: vec![TimeSeries {
                    labels: labels.clone(),
                    samples: pending.clone(),
                }],
                ..Default::default()
            });
            let r = conn.request(
                "POST",
                "/api/v1/write",
                &[
                    ("Content-Type", "application/x-protobuf"),
                    ("Content-Encoding", "snappy"),
                    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
                ],
                &body,
            );
            match r {
                Ok(r) if (200..300).contains(&r.status) => {
                    let mut acked = ledger.samples.lock().unwrap();
                    acked.extend(pending.drain(..).map(|s| (s.t, s.v)));
                }
                _ => {
                    ledger.sample_retries.fetch_add(1, Ordering::Relaxed);
                }
            }
            tick(&mut next, Duration::from_millis(100));
        }
    })
}

fn trace(step: u64) -> Vec<Span> {
    let now_us = now_ms() as u64 * 1000;
    (0..SPANS_PER_TRACE as u64)
        .map(|i| Span {
            trace_id: TraceId {
                high: 0xfa17,
                low: step + 1,
                is_128: true,
            },
            id: i + 1,
            parent_id: (i > 0).then_some(1),
            name: Some(format!("fault-op-{i}")),
            kind: None,
            timestamp: Some(now_us + i),
            duration: Some(500 + i),
            local_endpoint: Some(Endpoint {
                service_name: Some("fault-writer".into()),
                ..Default::default()
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags: [("step".to_string(), step.to_string())].into(),
            debug: false,
            shared: false,
        })
        .collect()
}

/// Posts one trace every 200 ms: Zipkin JSON (202 expected), every fifth as OTLP/HTTP
/// protobuf (200 expected). A refused trace is posted again until acknowledged.
pub fn span_writer(agent: String, stop: Arc<AtomicBool>, ledger: Arc<Ledger>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn = httpc::Conn::open(&agent).unwrap();
        let mut step = 0u64;
        let mut next = Instant::now();
        // A retry resends the very same spans, as a real client's would: rebuilt, they would
        // carry a new timestamp and, after a post that was stored but not acknowledged, count
        // as other spans of the same ids.
        let mut spans = trace(step);
        while !stop.load(Ordering::Relaxed) {
            let otlp = step % 5 == 4;
            let r = if otlp {
                let body = meshlens_ingest::otlp::encode_request(&spans);
                conn.request(
                    "POST",
                    "/v1/traces",
                    &[("Content-Type", "application/x-protobuf")],
                    &body,
                )
            } else {
                let body = meshlens_ingest::zipkin::encode_json(&spans);
                conn.request(
                    "POST",
                    "/api/v2/spans",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )
            };
            let want = if otlp { 200 } else { 202 };
            match r {
                Ok(r) if r.status == want => {
                    let id = format!("{:016x}{:016x}", 0xfa17, step + 1);
                    let proto = if otlp { "otlp" } else { "zipkin" };
                    ledger.traces.lock().unwrap().push((id, proto));
                    step += 1;
                    spans = trace(step);
                }
                _ => {
                    ledger.span_retries.fetch_add(1, Ordering::Relaxed);
                }
            }
            tick(&mut next, Duration::from_millis(200));
        }
    })
}

/// Debian's Prometheus scraping itself every second and remote-writing into the agent, with
/// a short batch deadline and backoff so it sends often and resumes soon after a fault.
pub fn prometheus_config(own_port: u16, agent: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{own_port}']\n\
         remote_write:\n  - url: http://{agent}/api/v1/write\n    queue_config:\n      \
         capacity: 2500\n      max_samples_per_send: 500\n      batch_send_deadline: 200ms\n      \
         min_backoff: 50ms\n      max_backoff: 1s\n"
    )
}

/// The agent's scrape config: the test's target every second.
pub fn agent_config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: target\n    static_configs:\n      - targets: ['{target}']\n"
    )
}
