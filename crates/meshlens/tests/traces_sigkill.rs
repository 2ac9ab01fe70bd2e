//! The span store's durability promise: every span acknowledged with a 202 survives a
//! SIGKILL of the server in the middle of a stream of Zipkin posts.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{httpc, poll, Server};
use meshlens_ingest::zipkin::encode_json;

#[test]
fn every_acknowledged_span_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let writer = {
        let acked = acked.clone();
        let addr = server.addr.clone();
        std::thread::spawn(move || {
            let mut conn = httpc::Conn::open(&addr).unwrap();
            // Bounded: at most 20,000 posts, and it stops when the server dies.
            for step in 0..20_000u64 {
                let body = encode_json(&common::step_spans(step, 20));
                match conn.request(
                    "POST",
                    "/api/v2/spans",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                ) {
                    Ok(r) if r.status == 202 => acked.lock().unwrap().push(step),
                    Ok(r) => panic!("unexpected status {}", r.status),
                    Err(_) => return,
                }
            }
        })
    };
    poll(Duration::from_secs(120), || {
        (acked.lock().unwrap().len() >= 300).then_some(())
    });
    server.kill9();
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    let server = Server::start(dir.path(), &[]);
    let mut missing = Vec::new();
    for step in &acked {
        let id = common::step_trace_id(*step);
        let r = httpc::get(&server.url(&format!("/api/v2/trace/{id}"))).unwrap();
        let n = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0);
        if r.status != 200 || n != 20 {
            missing.push((step, r.status, n));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged traces incomplete after restart: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
}
