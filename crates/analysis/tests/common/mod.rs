//! Shared test traffic: one mesh, written both as Istio metrics into a Tsdb and as spans into
//! a SpanStore, with counts chosen so every figure can be computed by hand.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use meshlens_model::{Endpoint, Labels, MetricWriter, Sample, Span, SpanKind, TimeSeries, TraceId};
use meshlens_spanstore::{SpanStore, SpanStoreOptions};
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbOptions};

pub const WINDOW_MS: i64 = 300_000;

/// A fixed end time: now, rounded down to the minute (stores refuse very old data).
pub fn end_ms() -> i64 {
    let now = meshlens_model::time::now_ms();
    now - now % 60_000
}

/// A workload: (namespace, workload, app, version, Zipkin service name).
#[derive(Clone, Copy)]
pub struct W {
    pub ns: &'static str,
    pub workload: &'static str,
    pub app: &'static str,
    pub version: &'static str,
}

impl W {
    pub fn service(&self) -> String {
        format!("{}.{}", self.app, self.ns)
    }
}

pub const GATEWAY: W = W {
    ns: "istio-system",
    workload: "istio-ingressgateway",
    app: "istio-ingressgateway",
    version: "unknown",
};
pub const PRODUCTPAGE: W = W {
    ns: "default",
    workload: "productpage-v1",
    app: "productpage",
    version: "v1",
};
pub const REVIEWS1: W = W {
    ns: "default",
    workload: "reviews-v1",
    app: "reviews",
    version: "v1",
};
pub const REVIEWS2: W = W {
    ns: "default",
    workload: "reviews-v2",
    app: "reviews",
    version: "v2",
};
pub const RATINGS: W = W {
    ns: "default",
    workload: "ratings-v1",
    app: "ratings",
    version: "v1",
};
pub const DETAILS: W = W {
    ns: "default",
    workload: "details-v1",
    app: "details",
    version: "v1",
};

/// One edge's traffic in the window: (code, count, duration ms) groups.
pub struct Traffic {
    pub src: W,
    pub dst: W,
    pub groups: Vec<(&'static str, u64, f64)>,
    pub mtls: bool,
}

/// The mesh of the tests (Bookinfo). Per edge in a 5-minute window:
/// - gateway -> productpage-v1: 900 x 200 (8 ms)
/// - productpage-v1 -> reviews-v1: 300 x 200 (8 ms), 240 x 200 (20 ms), 30 x 503 (40 ms),
///   30 x 200 (40 ms)
/// - productpage-v1 -> reviews-v2: 300 x 200 (20 ms)
/// - reviews-v2 -> ratings-v1: 240 x 200, 60 x 500 (20 ms)
/// - productpage-v1 -> details-v1: 120 x 200, 30 x 404 (8 ms)
pub fn traffic() -> Vec<Traffic> {
    vec![
        Traffic {
            src: GATEWAY,
            dst: PRODUCTPAGE,
            groups: vec![("200", 900, 8.0)],
            mtls: false,
        },
        Traffic {
            src: PRODUCTPAGE,
            dst: REVIEWS1,
            groups: vec![
                ("200", 300, 8.0),
                ("200", 240, 20.0),
                ("503", 30, 40.0),
                ("200", 30, 40.0),
            ],
            mtls: true,
        },
        Traffic {
            src: PRODUCTPAGE,
            dst: REVIEWS2,
            groups: vec![("200", 300, 20.0)],
            mtls: true,
        },
        Traffic {
            src: REVIEWS2,
            dst: RATINGS,
            groups: vec![("200", 240, 20.0), ("500", 60, 20.0)],
            mtls: true,
        },
        Traffic {
            src: PRODUCTPAGE,
            dst: DETAILS,
            groups: vec![("200", 120, 8.0), ("404", 30, 8.0)],
            mtls: true,
        },
    ]
}

pub const BUCKETS: [f64; 5] = [5.0, 10.0, 25.0, 50.0, f64::INFINITY];

pub fn tsdb(dir: &std::path::Path) -> Arc<Tsdb> {
    let opts = TsdbOptions {
        wal_fsync: FsyncPolicy::Never,
        ..TsdbOptions::default()
    };
    Arc::new(Tsdb::open(dir, opts).expect("open tsdb"))
}

pub fn spanstore(dir: &std::path::Path) -> Arc<SpanStore> {
    let opts = SpanStoreOptions {
        fsync: false,
        ..SpanStoreOptions::default()
    };
    Arc::new(SpanStore::open(dir, opts).expect("open span store"))
}

fn istio_labels(t: &Traffic, reporter: &str, name: &str) -> Vec<(String, String)> {
    let mut l = vec![
        ("__name__", name),
        ("reporter", reporter),
        ("source_cluster", "east"),
        ("destination_cluster", "east"),
        ("source_workload", t.src.workload),
        ("source_workload_namespace", t.src.ns),
        ("source_app", t.src.app),
        ("source_version", t.src.version),
        ("destination_workload", t.dst.workload),
        ("destination_workload_namespace", t.dst.ns),
        ("destination_app", t.dst.app),
        ("destination_version", t.dst.version),
        ("destination_service_name", t.dst.app),
        ("destination_service_namespace", t.dst.ns),
        ("request_protocol", "http"),
        ("response_flags", "-"),
        (
            "connection_security_policy",
            if t.mtls { "mutual_tls" } else { "none" },
        ),
    ];
    if reporter == "source" {
        // Source proxies do not know the policy (Istio reports "unknown").
        l.retain(|(k, _)| *k != "connection_security_policy");
        l.push(("connection_security_policy", "unknown"));
    }
    l.into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A counter growing linearly from `end - 2 * window` so that `increase(x[window])` at `end`
/// is exactly `count`, sampled every 15 s.
fn linear(count: f64, end: i64) -> Vec<Sample> {
    let t0 = end - 2 * WINDOW_MS;
    (0..=(2 * WINDOW_MS / 15_000))
        .map(|i| {
            let t = t0 + i * 15_000;
            Sample::new(t, count * (t - t0) as f64 / WINDOW_MS as f64)
        })
        .collect()
}

/// Writes the Istio series of `traffic()`, from both reporters.
pub fn write_metrics(w: &dyn MetricWriter, end: i64) {
    let mut batch = Vec::new();
    for t in traffic() {
        for reporter in ["destination", "source"] {
            let mut codes: BTreeMap<&str, u64> = BTreeMap::new();
            for (c, n, _) in &t.groups {
                *codes.entry(c).or_default() += n;
            }
            for (code, n) in codes {
                let mut l = istio_labels(&t, reporter, "istio_requests_total");
                l.push(("response_code".into(), code.into()));
                batch.push(TimeSeries {
                    labels: Labels::from_pairs(l),
                    samples: linear(n as f64, end),
                });
            }
            for le in BUCKETS {
                let n: u64 = t.groups.iter().filter(|g| g.2 <= le).map(|g| g.1).sum();
                let mut l =
                    istio_labels(&t, reporter, "istio_request_duration_milliseconds_bucket");
                l.push(("le".into(), meshlens_model::format_value(le)));
                batch.push(TimeSeries {
                    labels: Labels::from_pairs(l),
                    samples: linear(n as f64, end),
                });
            }
        }
    }
    w.append(&batch).expect("append");
}

fn endpoint(service: String) -> Option<Endpoint> {
    Some(Endpoint {
        service_name: Some(service),
        ..Endpoint::default()
    })
}

/// The same traffic as spans: per request one trace with a CLIENT span in the caller and a
/// SERVER span in the callee, spread evenly over the window.
pub fn spans(end: i64) -> Vec<Span> {
    let mut out = Vec::new();
    let mut tid = 1u64;
    let start_us = (end - WINDOW_MS) as u64 * 1000;
    for t in traffic() {
        let total: u64 = t.groups.iter().map(|g| g.1).sum();
        let step = WINDOW_MS as u64 * 1000 / total;
        let mut i = 0u64;
        for (code, n, ms) in &t.groups {
            for _ in 0..*n {
                let ts = start_us + (i + 1) * step - 1;
                let mut tags = BTreeMap::new();
                tags.insert("http.status_code".to_string(), code.to_string());
                tags.insert("http.method".to_string(), "GET".to_string());
                tags.insert(
                    "http.url".to_string(),
                    format!("http://{}:9080/x", t.dst.app),
                );
                tags.insert("istio.cluster_id".to_string(), "east".to_string());
                if code.starts_with('5') {
                    tags.insert("error".to_string(), "true".to_string());
                }
                let trace_id = TraceId {
                    high: 7,
                    low: tid,
                    is_128: true,
                };
                let dur = (ms * 1000.0) as u64;
                let mut ctags = tags.clone();
                ctags.insert("istio.canonical_revision".into(), t.src.version.into());
                out.push(Span {
                    trace_id,
                    id: tid * 2,
                    parent_id: None,
                    name: Some(format!("{}:9080/*", t.dst.app)),
                    kind: Some(SpanKind::Client),
                    timestamp: Some(ts),
                    duration: Some(dur + 100),
                    local_endpoint: endpoint(t.src.service()),
                    remote_endpoint: endpoint(t.dst.service()),
                    annotations: Vec::new(),
                    tags: ctags,
                    debug: false,
                    shared: false,
                });
                tags.insert("istio.canonical_revision".into(), t.dst.version.into());
                out.push(Span {
                    trace_id,
                    id: tid * 2 + 1,
                    parent_id: Some(tid * 2),
                    name: Some(format!("{}:9080/*", t.dst.app)),
                    kind: Some(SpanKind::Server),
                    timestamp: Some(ts),
                    duration: Some(dur),
                    local_endpoint: endpoint(t.dst.service()),
                    remote_endpoint: None,
                    annotations: Vec::new(),
                    tags,
                    debug: false,
                    shared: false,
                });
                tid += 1;
                i += 1;
            }
        }
    }
    out
}
