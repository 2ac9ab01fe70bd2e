//! The shape of the generated mesh: services, their callees, the pods that report each call
//! (both reporters, as Istio's sidecars do), and the series each reporting pod exports, with
//! counters that grow the way a proxy's would.

use rand::{Rng, SeedableRng};

/// Istio's default duration buckets (milliseconds), `+Inf` included: 20 per histogram.
pub const BUCKETS: [&str; 20] = [
    "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000",
    "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf",
];

/// Series per reporting pod, edge and response code: the request counter, the duration
/// histogram's buckets, its `_sum` and its `_count`.
pub const SERIES_PER_CODE: usize = 1 + BUCKETS.len() + 2;

/// Every fifth edge also answers some requests with 503 (a second response code).
const ERROR_EDGE_EVERY: usize = 5;

/// How big the mesh is.
pub struct Shape {
    pub services: usize,
    /// Callees per service (fewer in meshes too small to have that many distinct ones).
    pub edges_per_service: usize,
    pub services_per_namespace: usize,
    /// Pods per workload (one workload, `v1`, per service).
    pub pods: usize,
}

impl Shape {
    pub fn namespaces(&self) -> usize {
        self.services.div_ceil(self.services_per_namespace.max(1))
    }

    fn namespace(&self, svc: usize) -> String {
        format!("ns-{}", svc / self.services_per_namespace.max(1))
    }

    /// Calls as (caller, callee); `None` is a caller from outside the mesh. Callee k of
    /// service i is i+1+97k round the mesh, skipping self-calls and repeats; the first
    /// service of each namespace also gets traffic from outside the mesh.
    pub fn edges(&self) -> Vec<(Option<usize>, usize)> {
        let n = self.services;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(n * self.edges_per_service);
        for i in 0..n {
            for k in 0..self.edges_per_service {
                let j = (i + 1 + k * 97) % n;
                if j != i && seen.insert((i, j)) {
                    out.push((Some(i), j));
                }
            }
        }
        let per_ns = self.services_per_namespace.max(1);
        out.extend((0..n).step_by(per_ns).map(|j| (None, j)));
        out
    }
}

/// One pod's report of one edge: its labels apart from `__name__`, `response_code` and
/// `le`, sorted by name, and the counters of its series.
pub struct Instance {
    base: Vec<(String, String)>,
    codes: &'static [&'static str],
    per_s: f64,
    median_ms: f64,
    /// Per code: requests, the buckets, sum, count (`SERIES_PER_CODE` each).
    counters: Vec<f64>,
    rng: rand::rngs::StdRng,
}

/// Labels of one pod of service `svc` as the scrape adds them, and the pod's Istio identity.
struct Pod {
    name: String,
    ip: String,
}

fn pod(svc: usize, p: usize, pods: usize) -> Pod {
    let idx = svc * pods + p + 1;
    // A stable replica-set hash, as Kubernetes names pods.
    let hash = (svc as u64).wrapping_mul(2_654_435_761) % 0xff_ffff_ffff;
    Pod {
        name: format!("svc-{svc}-v1-{hash:010x}-{p:05}"),
        ip: format!(
            "10.{}.{}.{}",
            (idx >> 16) & 255,
            (idx >> 8) & 255,
            idx & 255
        ),
    }
}

/// The workload labels of one side of a call (`source_…` or `destination_…`).
fn side(shape: &Shape, prefix: &str, svc: Option<usize>, out: &mut Vec<(String, String)>) {
    let mut put = |k: &str, v: String| out.push((format!("{prefix}_{k}"), v));
    match svc {
        Some(s) => {
            let (name, ns) = (format!("svc-{s}"), shape.namespace(s));
            put("app", name.clone());
            put("canonical_revision", "v1".into());
            put("canonical_service", name.clone());
            put("cluster", "Kubernetes".into());
            put(
                "principal",
                format!("spiffe://cluster.local/ns/{ns}/sa/{name}"),
            );
            put("version", "v1".into());
            put("workload", format!("{name}-v1"));
            put("workload_namespace", ns);
        }
        None => {
            for k in [
                "app",
                "canonical_service",
                "cluster",
                "principal",
                "version",
            ] {
                put(k, "unknown".into());
            }
            put("canonical_revision", "latest".into());
            put("workload", "unknown".into());
            put("workload_namespace", "unknown".into());
        }
    }
}

/// Every reporting pod of every edge, with counters started at random values.
pub fn instances(shape: &Shape, seed: u64) -> Vec<Instance> {
    let mut out = Vec::new();
    for (e, (src, dst)) in shape.edges().into_iter().enumerate() {
        let codes: &'static [&'static str] = if e % ERROR_EDGE_EVERY == 0 {
            &["200", "503"]
        } else {
            &["200"]
        };
        let edge_rate = 1.0 + (e * 7 % 20) as f64;
        let median_ms = 5.0 + (e * 13 % 200) as f64;
        let reporters = [("source", src), ("destination", Some(dst))];
        for (reporter, at) in reporters {
            // Callers from outside the mesh have no sidecar: only the destination reports.
            let Some(at) = at else { continue };
            for p in 0..shape.pods {
                let pd = pod(at, p, shape.pods);
                let mut base = vec![
                    ("app".to_string(), format!("svc-{at}")),
                    ("instance".into(), format!("{}:15020", pd.ip)),
                    ("job".into(), "kubernetes-pods".into()),
                    ("namespace".into(), shape.namespace(at)),
                    ("pod".into(), pd.name),
                    ("version".into(), "v1".into()),
                    ("reporter".into(), reporter.into()),
                    ("request_protocol".into(), "http".into()),
                    ("response_flags".into(), "-".into()),
                    (
                        "connection_security_policy".into(),
                        match (reporter, src) {
                            ("destination", Some(_)) => "mutual_tls",
                            ("destination", None) => "none",
                            _ => "unknown",
                        }
                        .into(),
                    ),
                    (
                        "destination_service".into(),
                        format!("svc-{dst}.{}.svc.cluster.local", shape.namespace(dst)),
                    ),
                    ("destination_service_name".into(), format!("svc-{dst}")),
                    ("destination_service_namespace".into(), shape.namespace(dst)),
                ];
                side(shape, "source", src, &mut base);
                side(shape, "destination", Some(dst), &mut base);
                base.sort();
                let seed = seed ^ ((e as u64) << 20) ^ ((p as u64) << 4) ^ (reporter.len() as u64);
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let mut counters = Vec::with_capacity(codes.len() * SERIES_PER_CODE);
                for _ in codes {
                    let total = rng.gen_range(0.0..1e6f64).round();
                    counters.push(total);
                    counters.extend(BUCKETS.iter().map(|le| share_below(le, median_ms, total)));
                    counters.push((total * median_ms * 100.0).round() / 100.0);
                    counters.push(total);
                }
                out.push(Instance {
                    base,
                    codes,
                    per_s: edge_rate / shape.pods as f64,
                    median_ms,
                    counters,
                    rng,
                });
            }
        }
    }
    out
}

/// How many of `n` requests took at most `le` ms, latencies log-logistic around the median.
fn share_below(le: &str, median_ms: f64, n: f64) -> f64 {
    match le.parse::<f64>() {
        Ok(b) if b.is_finite() => (n / (1.0 + (median_ms / b).powf(2.5))).floor(),
        _ => n,
    }
}

impl Instance {
    pub fn series(&self) -> usize {
        self.counters.len()
    }

    pub fn labels(&self) -> &[(String, String)] {
        &self.base
    }

    /// Series `k`'s metric name, bucket bound (histogram buckets only) and response code.
    pub fn series_id(&self, k: usize) -> (&'static str, Option<&'static str>, &'static str) {
        let code = self.codes[k / SERIES_PER_CODE];
        let (name, le) = match k % SERIES_PER_CODE {
            0 => ("istio_requests_total", None),
            b if b <= BUCKETS.len() => (
                "istio_request_duration_milliseconds_bucket",
                Some(BUCKETS[b - 1]),
            ),
            b if b == BUCKETS.len() + 1 => ("istio_request_duration_milliseconds_sum", None),
            _ => ("istio_request_duration_milliseconds_count", None),
        };
        (name, le, code)
    }

    /// One scrape later: every counter grows by that scrape's requests; returns the values.
    pub fn advance(&mut self, scrape_s: u64) -> &[f64] {
        for (c, code) in self.codes.iter().enumerate() {
            let mean = self.per_s * scrape_s as f64;
            let n = if *code == "200" {
                (mean * self.rng.gen_range(0.9..1.1)).round()
            } else {
                (mean * 0.02 * self.rng.gen_range(0.0..2.0)).round()
            };
            let slot = &mut self.counters[c * SERIES_PER_CODE..(c + 1) * SERIES_PER_CODE];
            slot[0] += n;
            for (i, le) in BUCKETS.iter().enumerate() {
                slot[1 + i] += share_below(le, self.median_ms, n);
            }
            let took = n * self.median_ms * self.rng.gen_range(0.8..1.2);
            slot[BUCKETS.len() + 1] = ((slot[BUCKETS.len() + 1] + took) * 100.0).round() / 100.0;
            slot[BUCKETS.len() + 2] += n;
        }
        &self.counters
    }
}
