//! The durability promise in ClickHouse mode, on a real 2-shard cluster: every sample and
//! span acknowledged by `meshlens server --storage clickhouse://…` is in ClickHouse exactly
//! once after a shard went down mid-stream (writes kept being acknowledged: they go to the
//! write buffer), meshlens was SIGKILLed with batches still buffered, the shard came back,
//! and meshlens was SIGKILLed again mid-stream. The checks are the embedded SIGKILL tests'
//! (`server_sigkill.rs`, `traces_sigkill.rs`), through the public APIs.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{httpc, poll, Server};
use meshlens_clickhouse::testing::TestCluster;
use meshlens_ingest::zipkin::encode_json;
use meshlens_model::{Labels, Sample, TimeSeries};

const SERIES: usize = 10;
const SPANS: u64 = 8;
/// Steps per writer at most, over the whole test: bounds its length and the checks.
const MAX_STEPS: u64 = 900;

/// What a writer sent (response or not) and what was acknowledged, by step.
#[derive(Default)]
struct Log {
    sent: BTreeSet<u64>,
    acked: BTreeSet<u64>,
}

type Shared = Arc<Mutex<Log>>;

fn samples(base_t: i64, step: u64) -> Vec<TimeSeries> {
    (0..SERIES)
        .map(|i| TimeSeries {
            labels: Labels::from_pairs([
                ("__name__", "ch_durability_test"),
                ("series", i.to_string().as_str()),
            ]),
            samples: vec![Sample::new(base_t + step as i64 * 1000, step as f64)],
        })
        .collect()
}

/// Sends numbered batches from `from` until the server stops answering or `MAX_STEPS` is
/// reached; returns the next step number.
fn writer(
    addr: String,
    from: u64,
    log: Shared,
    send: impl Fn(&mut httpc::Conn, u64) -> anyhow::Result<httpc::Response> + Send + 'static,
    ok: u16,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let Ok(mut conn) = httpc::Conn::open(&addr) else {
            return from;
        };
        for step in from..MAX_STEPS {
            log.lock().unwrap().sent.insert(step);
            match send(&mut conn, step) {
                Ok(r) if r.status == ok => {
                    log.lock().unwrap().acked.insert(step);
                }
                Ok(r) => panic!(
                    "step {step}: status {} ({})",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ),
                Err(_) => return step + 1,
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        MAX_STEPS
    })
}

struct Writers {
    metrics: JoinHandle<u64>,
    spans: JoinHandle<u64>,
}

fn start_writers(
    server: &Server,
    base_t: i64,
    from: (u64, u64),
    logs: (&Shared, &Shared),
) -> Writers {
    let metrics = writer(
        server.addr.clone(),
        from.0,
        logs.0.clone(),
        move |conn, step| {
            let body = meshlens_ingest::remote_write::encode(
                &meshlens_ingest::remote_write::WriteRequest {
                    timeseries: samples(base_t, step),
                    ..Default::default()
                },
            );
            conn.request(
                "POST",
                "/api/v1/write",
                &[("Content-Encoding", "snappy")],
                &body,
            )
        },
        204,
    );
    let spans = writer(
        server.addr.clone(),
        from.1,
        logs.1.clone(),
        |conn, step| {
            conn.request(
                "POST",
                "/api/v2/spans",
                &[("Content-Type", "application/json")],
                encode_json(&common::step_spans(step, SPANS)).as_bytes(),
            )
        },
        202,
    );
    Writers { metrics, spans }
}

/// Waits until both writers have `n` more acknowledged steps than `before`.
fn wait_acked(logs: (&Shared, &Shared), before: (usize, usize), n: usize) -> (usize, usize) {
    poll(Duration::from_secs(120), || {
        let m = logs.0.lock().unwrap().acked.len();
        let s = logs.1.lock().unwrap().acked.len();
        (m >= before.0 + n && s >= before.1 + n).then_some((m, s))
    })
}

/// A family's value from `/metrics`, summed over its series.
fn self_metric(server: &Server, name: &str) -> Option<f64> {
    let r = httpc::get(&server.url("/metrics")).ok()?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[test]
fn acknowledged_writes_survive_clickhouse_and_meshlens_crashes() {
    let mut cluster = match TestCluster::start() {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => panic!("the ClickHouse test cluster did not start: {e}"),
    };
    let storage = cluster.storage_url(0, "sigkill");
    let args = ["--storage", storage.as_str()];
    let dir = tempfile::tempdir().unwrap();
    // Whole seconds an hour ago: every step's sample is a distinct, recent timestamp.
    let base_t = (common::now_ms() - 3_600_000) / 1000 * 1000;
    let (mlog, slog): (Shared, Shared) = Default::default();
    let logs = (&mlog, &slog);

    // 1. Everything up.
    let server = Server::start(dir.path(), &args);
    let w = start_writers(&server, base_t, (0, 0), logs);
    let n = wait_acked(logs, (0, 0), 20);

    // 2. Shard 2 down: inserts fail, writes are still acknowledged (buffered), retried.
    cluster.nodes[1].kill();
    let n = wait_acked(logs, n, 30);
    poll(Duration::from_secs(60), || {
        (self_metric(&server, "meshlens_clickhouse_insert_retries_total")? > 0.0).then_some(())
    });
    assert!(self_metric(&server, "meshlens_clickhouse_buffer_pending_records").unwrap() > 0.0);

    // 3. SIGKILL meshlens mid-stream, with batches still buffered; the shard comes back.
    server.kill9();
    let next = (w.metrics.join().unwrap(), w.spans.join().unwrap());
    cluster.nodes[1].restart().unwrap();

    // 4. meshlens again on the same data dir: it inserts what it had buffered, takes new
    //    writes, and is SIGKILLed mid-stream again (inserts in flight).
    let server = Server::start(dir.path(), &args);
    let w = start_writers(&server, base_t, next, logs);
    wait_acked(logs, n, 30);
    server.kill9();
    let next = (w.metrics.join().unwrap(), w.spans.join().unwrap());
    assert!(
        next.0 < MAX_STEPS && next.1 < MAX_STEPS,
        "the writers should have been cut off by the kill"
    );

    // 5. A last start drains the buffer; then every acknowledged write must be there once.
    let server = Server::start(dir.path(), &args);
    poll(Duration::from_secs(120), || {
        (self_metric(&server, "meshlens_clickhouse_buffer_pending_records")? == 0.0).then_some(())
    });
    let (mlog, slog) = (mlog.lock().unwrap(), slog.lock().unwrap());
    check_samples(&server, base_t, &mlog);
    check_spans(&server, &slog);
    println!(
        "acknowledged: {} sample batches, {} span batches; all found once after two SIGKILLs and a shard restart",
        mlog.acked.len(),
        slog.acked.len()
    );
}

fn check_samples(server: &Server, base_t: i64, log: &Log) {
    let last = *log.sent.iter().max().unwrap();
    let eval = (base_t + last as i64 * 1000) as f64 / 1000.0 + 1.0;
    let range_s = last + 10;
    let v = server.query(&format!("ch_durability_test[{range_s}s]"), Some(eval));
    assert_eq!(v["status"], "success", "{v}");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), SERIES, "{v}");
    for s in result {
        let steps: Vec<u64> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64 - base_t) as u64 / 1000)
            .collect();
        let stored: BTreeSet<u64> = steps.iter().copied().collect();
        assert_eq!(stored.len(), steps.len(), "a sample returned twice: {s}");
        let lost: Vec<_> = log.acked.difference(&stored).take(5).collect();
        assert!(
            lost.is_empty(),
            "series {}: {} acknowledged samples lost, e.g. steps {lost:?}",
            s["metric"]["series"],
            log.acked.difference(&stored).count()
        );
        assert!(stored.is_subset(&log.sent), "samples never sent: {s}");
    }
    // count_over_time sees each stored sample once.
    let v = server.query(
        &format!("sum(count_over_time(ch_durability_test[{range_s}s]))"),
        Some(eval),
    );
    let counted: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .parse()
        .unwrap();
    let at_least = (log.acked.len() * SERIES) as f64;
    let at_most = (log.sent.len() * SERIES) as f64;
    assert!(
        counted >= at_least && counted <= at_most,
        "count_over_time {counted}, acknowledged {at_least}, sent {at_most}"
    );
    let v = common::get_json(&server.url(&format!(
        "/api/v1/series?match%5B%5D=ch_durability_test&start={}&end={}",
        base_t / 1000,
        eval
    )));
    assert_eq!(v["data"].as_array().map(Vec::len), Some(SERIES), "{v}");
}

fn check_spans(server: &Server, log: &Log) {
    let mut missing = Vec::new();
    for step in &log.acked {
        let id = common::step_trace_id(*step).to_string();
        let r = httpc::get(&server.url(&format!("/api/v2/trace/{id}"))).unwrap();
        let n = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0);
        if r.status != 200 || n != SPANS as usize {
            missing.push((step, r.status, n));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged traces incomplete or doubled: {:?}",
        missing.len(),
        log.acked.len(),
        &missing[..missing.len().min(10)]
    );
    // Search: every acknowledged trace, each with its spans once.
    let end = common::now_ms();
    let v = common::get_json(&server.url(&format!(
        "/api/v2/traces?serviceName=svc-0&endTs={end}&lookback=3600000&limit={MAX_STEPS}"
    )));
    let traces = v.as_array().unwrap_or_else(|| panic!("{v}"));
    let mut found = BTreeSet::new();
    for t in traces {
        let spans = t.as_array().unwrap();
        assert_eq!(spans.len(), SPANS as usize, "{t}");
        let low = &spans[0]["traceId"].as_str().unwrap()[16..];
        found.insert(u64::from_str_radix(low, 16).unwrap() - 1);
    }
    assert!(
        log.acked.is_subset(&found),
        "search misses acknowledged traces"
    );
    assert!(found.is_subset(&log.sent), "search finds traces never sent");
}
