//! Throughput of the buffer and the sender on this machine: concurrent fsynced appends
//! (group commit), batch reads, and end to end to an in-process hub that only counts.
//! `cargo bench -p meshlens-forward --profile dev` (or the release profile) prints rates;
//! the comparison with Prometheus's agent lives in the repository's bench scripts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use meshlens_forward::{Buffer, BufferOptions, Forwarder, HubOptions, Kind, SendOptions};

const RECORD: usize = 16 << 10;

fn opts(dir: &std::path::Path, fsync: bool) -> BufferOptions {
    BufferOptions {
        dir: dir.to_path_buf(),
        max_size_bytes: 0,
        max_age: Duration::ZERO,
        drop_oldest: false,
        segment_bytes: 64 << 20,
        fsync,
    }
}

/// Protobuf-like bytes that compress about as well as remote-write requests.
fn payload(i: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(RECORD);
    let mut n = i as u64;
    while p.len() < RECORD {
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
        p.extend_from_slice(b"\x0a\x2b\x0a\x08__name__\x12\x13http_requests_total\x12");
        p.extend_from_slice(&n.to_le_bytes());
    }
    p.truncate(RECORD);
    p
}

fn appends(threads: usize, each: usize, fsync: bool) {
    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open(opts(dir.path(), fsync), &["hub".to_string()]).unwrap();
    let p = Arc::new(payload(1));
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (b, p) = (b.clone(), p.clone());
            std::thread::spawn(move || {
                for _ in 0..each {
                    b.append(Kind::Metrics, 100, &p).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = (threads * each) as f64;
    let s = b.stats();
    println!(
        "append fsync={fsync} threads={threads}: {:.0} records/s, {:.0} MB/s, {} fsyncs for {} records",
        n / secs,
        n * RECORD as f64 / secs / 1e6,
        s.fsyncs,
        s.appended_records
    );

    let start = Instant::now();
    let mut bytes = 0usize;
    let mut compressed = 0usize;
    let mut enc = snap::raw::Encoder::new();
    while let Some(batch) = b.read_batch("hub", 1 << 20).unwrap() {
        bytes += batch.payload.len();
        compressed += enc.compress_vec(&batch.payload).unwrap().len();
        b.advance("hub", batch.next_seq).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "read+snappy: {:.0} MB/s ({} MB, ratio {:.2})",
        bytes as f64 / secs / 1e6,
        bytes >> 20,
        bytes as f64 / compressed.max(1) as f64
    );
}

async fn end_to_end(records: usize) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let g = g.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let g = g.clone();
                        async move {
                            let raw = req.into_body().collect().await.unwrap().to_bytes();
                            let n = snap::raw::decompress_len(&raw).unwrap_or(0);
                            g.fetch_add(n as u64, Ordering::Relaxed);
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(204)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open(opts(dir.path(), true), std::slice::from_ref(&url)).unwrap();
    let f = Forwarder::start(
        b.clone(),
        vec![HubOptions { url, tls: None }],
        SendOptions::default(),
    );
    let start = Instant::now();
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            tokio::task::spawn_blocking(move || {
                let p = payload(7);
                for _ in 0..records / 4 {
                    b.append(Kind::Metrics, 100, &p).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    assert!(f.drain(Duration::from_secs(120)).await);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "end to end (4 writers, fsync, 1 hub): {:.0} MB/s, {:.0} records/s, hub got {} MB",
        (records * RECORD) as f64 / secs / 1e6,
        records as f64 / secs,
        got.load(Ordering::Relaxed) >> 20
    );
}

fn main() {
    for (threads, fsync) in [(1, true), (8, true), (8, false)] {
        appends(threads, 2000 / threads.min(4), fsync);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(end_to_end(8000));
}
