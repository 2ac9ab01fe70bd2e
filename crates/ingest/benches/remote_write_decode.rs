//! Decode cost of remote write 1.0 against 2.0 for the same data: thread CPU time per
//! sample of what the server does with a body (snappy decompression into a kept buffer,
//! parsing into borrowed series with kept vectors, the label checks), and the bytes per
//! sample on the wire. Istio-like series: 14 labels, one sample each, 2,000 series per
//! request (Prometheus's default `max_samples_per_send`), metadata on every series in 2.0.
//!
//! `cargo bench -p meshlens-ingest --bench remote_write_decode` (`-- --requests N`).
//! CPU time is the benchmark thread's own (`/proc/thread-self/schedstat`), so other load
//! on a shared machine inflates it less than wall time; rounds alternate 1.0 and 2.0 and
//! the median round is reported.

use meshlens_ingest::remote_write::{self, v2, wire};
use meshlens_model::{Labels, MetricMetadata, Sample, TimeSeries};

const SERIES_PER_REQUEST: usize = 2_000;

/// Nanoseconds this thread has run on a CPU.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat (Linux) gives the thread's CPU time")
}

fn request(seed: usize) -> remote_write::WriteRequest {
    let services = [
        "cart", "checkout", "payments", "catalog", "frontend", "shipping",
    ];
    let codes = ["200", "404", "503"];
    let timeseries = (0..SERIES_PER_REQUEST)
        .map(|i| {
            let src = services[i % services.len()];
            let dst = services[(i / 7 + 1) % services.len()];
            let pod = format!("{src}-{:x}", 0x5f3a_0000 + (i / 3) % 97);
            let (name, le) = match i % 4 {
                0 => ("istio_requests_total", None),
                1 => (
                    "istio_request_duration_milliseconds_bucket",
                    Some(["5", "25", "100", "+Inf"][i / 4 % 4]),
                ),
                2 => ("istio_request_duration_milliseconds_count", None),
                _ => ("istio_request_bytes_sum", None),
            };
            let mut pairs: Vec<(String, String)> = [
                ("__name__", name),
                ("cluster", "east"),
                ("connection_security_policy", "mutual_tls"),
                ("destination_app", dst),
                (
                    "destination_service",
                    &format!("{dst}.shop.svc.cluster.local"),
                ),
                ("destination_workload", dst),
                ("instance", &format!("10.0.{}.{}:15020", i % 13, i % 251)),
                ("job", "envoy-stats"),
                ("namespace", "shop"),
                ("pod", &pod),
                ("reporter", "source"),
                ("response_code", codes[i % codes.len()]),
                ("source_app", src),
                ("source_workload", src),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            if let Some(le) = le {
                pairs.push(("le".into(), le.into()));
            }
            TimeSeries {
                labels: Labels::from_pairs(pairs),
                samples: vec![Sample::new(
                    1_700_000_000_000 + (seed * 15_000) as i64,
                    i as f64,
                )],
            }
        })
        .collect();
    let md = |family: &str, kind: &str, help: &str| MetricMetadata {
        metric_family: family.into(),
        kind: kind.into(),
        help: help.into(),
        unit: String::new(),
    };
    remote_write::WriteRequest {
        timeseries,
        metadata: vec![
            md("istio_requests_total", "counter", "Requests."),
            md(
                "istio_request_duration_milliseconds",
                "histogram",
                "Request durations.",
            ),
            md("istio_request_bytes", "histogram", "Request sizes."),
        ],
        ..Default::default()
    }
}

fn main() {
    let mut requests = 50usize;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--requests") {
        requests = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(requests);
    }
    let reqs: Vec<_> = (0..requests).map(request).collect();
    let v1: Vec<Vec<u8>> = reqs.iter().map(remote_write::encode).collect();
    let v2b: Vec<Vec<u8>> = reqs.iter().map(v2::encode).collect();
    let samples = (requests * SERIES_PER_REQUEST) as f64;
    let raw1: usize = reqs
        .iter()
        .map(|r| remote_write::encode_protobuf(r).len())
        .sum();
    let raw2: usize = reqs.iter().map(|r| v2::encode_protobuf(r).len()).sum();
    let (z1, z2): (usize, usize) = (
        v1.iter().map(Vec::len).sum(),
        v2b.iter().map(Vec::len).sum(),
    );

    let mut buf = Vec::new();
    let mut bufs = wire::ParseBuffers::default();
    let mut decode_v1 = |body: &[u8]| {
        remote_write::decompress_into(body, 1 << 30, &mut buf).unwrap();
        let req = wire::parse_with(&buf, std::mem::take(&mut bufs)).unwrap();
        let n = remote_write::valid_series(&req).unwrap().len();
        bufs = req.into_buffers();
        n
    };
    let mut buf2 = Vec::new();
    let mut bufs2 = wire::ParseBuffers::default();
    let mut decode_v2 = |body: &[u8]| {
        remote_write::decompress_into(body, 1 << 30, &mut buf2).unwrap();
        let req = v2::parse_with(&buf2, std::mem::take(&mut bufs2)).unwrap();
        let n = req.series().len();
        assert!(req.invalid.is_empty());
        bufs2 = req.into_buffers();
        n
    };
    // Warm the kept buffers, and check both read the same number of series.
    assert_eq!(decode_v1(&v1[0]), decode_v2(&v2b[0]));

    let rounds = 9;
    let (mut t1, mut t2) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = thread_cpu_ns();
        for b in &v1 {
            std::hint::black_box(decode_v1(b));
        }
        let mid = thread_cpu_ns();
        for b in &v2b {
            std::hint::black_box(decode_v2(b));
        }
        let end = thread_cpu_ns();
        t1.push((mid - start) as f64 / samples);
        t2.push((end - mid) as f64 / samples);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (m1, m2) = (median(&mut t1), median(&mut t2));
    println!(
        "remote-write decode, {requests} requests x {SERIES_PER_REQUEST} series (1 sample, 14-15 labels each), median of {rounds} rounds"
    );
    println!(
        "  1.0: {m1:.0} ns CPU/sample, {:.1} B/sample protobuf, {:.1} B/sample snappy",
        raw1 as f64 / samples,
        z1 as f64 / samples
    );
    println!("  2.0: {m2:.0} ns CPU/sample, {:.1} B/sample protobuf, {:.1} B/sample snappy (metadata on every series)", raw2 as f64 / samples, z2 as f64 / samples);
    println!(
        "  2.0 / 1.0: CPU {:.2}x, protobuf bytes {:.2}x, snappy bytes {:.2}x",
        m2 / m1,
        raw2 as f64 / raw1 as f64,
        z2 as f64 / z1 as f64
    );
}
