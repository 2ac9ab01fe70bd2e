//! The foundation's durability promise: every sample acknowledged with a 2xx survives a
//! SIGKILL of the server in the middle of a remote-write stream.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{httpc, poll, Server};
use meshlens_model::{Labels, Sample, TimeSeries};

const SERIES: usize = 50;
const BASE_T: i64 = 1_700_000_000_000;

#[test]
fn every_acknowledged_sample_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let acked: Arc<Mutex<BTreeSet<(usize, i64)>>> = Arc::default();
    let addr = server.addr.clone();
    let writer = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            let mut conn = httpc::Conn::open(&addr).unwrap();
            // Bounded: at most 5,000 batches, and it stops when the server dies.
            for step in 0..5000i64 {
                let t = BASE_T + step * 1000;
                let batch: Vec<TimeSeries> = (0..SERIES)
                    .map(|i| TimeSeries {
                        labels: Labels::from_pairs([
                            ("__name__", "durability_test"),
                            ("series", i.to_string().as_str()),
                        ]),
                        samples: vec![Sample::new(t, step as f64)],
                    })
                    .collect();
                let body = meshlens_ingest::remote_write::encode(
                    &meshlens_ingest::remote_write::WriteRequest {
                        timeseries: batch,
                        ..Default::default()
                    },
                );
                match conn.request(
                    "POST",
                    "/api/v1/write",
                    &[("Content-Encoding", "snappy")],
                    &body,
                ) {
                    Ok(r) if (200..300).contains(&r.status) => {
                        let mut a = acked.lock().unwrap();
                        for i in 0..SERIES {
                            a.insert((i, t));
                        }
                    }
                    Ok(r) => panic!("unexpected status {} before the kill", r.status),
                    Err(_) => return step,
                }
            }
            5000
        })
    };
    // Let some batches land, then kill while the writer is still sending.
    poll(Duration::from_secs(60), || {
        (acked.lock().unwrap().len() >= SERIES * 200).then_some(())
    });
    server.kill9();
    let steps = writer.join().unwrap();
    assert!(
        steps < 5000,
        "the writer should have been cut off by the kill"
    );
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());

    let server = Server::start(dir.path(), &[]);
    let last_t = acked.iter().map(|(_, t)| *t).max().unwrap();
    let eval = (last_t as f64) / 1000.0 + 1.0;
    let range_s = (last_t - BASE_T) / 1000 + 10;
    let v = server.query(&format!("durability_test[{range_s}s]"), Some(eval));
    assert_eq!(v["status"], "success", "{v}");
    let mut stored = BTreeSet::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let i: usize = s["metric"]["series"].as_str().unwrap().parse().unwrap();
        for p in s["values"].as_array().unwrap() {
            stored.insert((i, (p[0].as_f64().unwrap() * 1000.0).round() as i64));
        }
    }
    let missing: Vec<_> = acked.difference(&stored).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged samples lost, e.g. {missing:?}",
        acked.difference(&stored).count()
    );
    println!(
        "acknowledged samples: {}, all found after SIGKILL and restart ({} stored)",
        acked.len(),
        stored.len()
    );
}
