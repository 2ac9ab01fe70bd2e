//! Generated Istio series and spans with known answers: one service version's traffic as a
//! destination proxy reports it (`istio_requests_total` by response code, the duration
//! histogram), scraped every 5 s, deterministic from a seed. Shared with the CLI's tests
//! (`crates/meshlens/tests/verify_cli.rs` includes this file), so it needs only the model.
#![allow(dead_code)]

use meshlens_model::{Labels, Sample, TimeSeries};

pub const SCRAPE_MS: i64 = 5_000;
pub const LE: [f64; 13] = [
    1.0,
    2.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    f64::INFINITY,
];

/// xorshift64*: reproducible noise without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.f64().max(1e-12);
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// One version's traffic.
#[derive(Clone, Debug)]
pub struct Traffic {
    pub service: String,
    pub namespace: String,
    pub version: String,
    /// Requests per second (mean); each scrape's count varies ±30 %.
    pub rps: f64,
    /// Share of requests answered 503.
    pub error_share: f64,
    /// Median latency in ms; each request's is log-normal around it.
    pub median_ms: f64,
    /// Total requests to generate instead of `rps` (spread evenly); for thin traffic.
    pub total: Option<u64>,
    pub seed: u64,
}

impl Traffic {
    pub fn new(service: &str, version: &str, seed: u64) -> Traffic {
        Traffic {
            service: service.into(),
            namespace: "default".into(),
            version: version.into(),
            rps: 20.0,
            error_share: 0.005,
            median_ms: 20.0,
            total: None,
            seed,
        }
    }

    /// Per scrape (from `end - window` to `end`): requests, errors and each latency (ms).
    pub fn requests(&self, end_ms: i64, window_ms: i64) -> Vec<(i64, Vec<(bool, f64)>)> {
        let mut rng = Rng::new(self.seed);
        let scrapes = window_ms / SCRAPE_MS;
        let start = end_ms - scrapes * SCRAPE_MS;
        let mut out = Vec::new();
        let slots = scrapes as u64 + 1;
        for i in 0..=scrapes {
            let t = start + i * SCRAPE_MS;
            let i = i as u64;
            let n = match self.total {
                Some(total) => total * (i + 1) / slots - total * i / slots,
                None => {
                    let mean = self.rps * SCRAPE_MS as f64 / 1000.0;
                    (mean * (0.7 + 0.6 * rng.f64())).round() as u64
                }
            };
            let reqs = (0..n)
                .map(|_| {
                    let err = rng.f64() < self.error_share;
                    let lat = self.median_ms * (0.4 * rng.normal()).exp();
                    (err, lat)
                })
                .collect();
            out.push((t, reqs));
        }
        out
    }

    fn labels(&self, extra: &[(&str, &str)]) -> Labels {
        let mut pairs: Vec<(String, String)> = vec![
            ("reporter".into(), "destination".into()),
            ("destination_service_name".into(), self.service.clone()),
            (
                "destination_service".into(),
                format!("{}.{}.svc.cluster.local", self.service, self.namespace),
            ),
            (
                "destination_service_namespace".into(),
                self.namespace.clone(),
            ),
            ("destination_app".into(), self.service.clone()),
            ("destination_version".into(), self.version.clone()),
            (
                "destination_workload".into(),
                format!("{}-{}", self.service, self.version),
            ),
            ("source_workload".into(), "loadgen".into()),
            ("request_protocol".into(), "http".into()),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Labels::from_pairs(pairs)
    }

    /// The cumulative Istio series a destination proxy would expose, one sample per scrape.
    pub fn series(&self, end_ms: i64, window_ms: i64) -> Vec<TimeSeries> {
        let per = self.requests(end_ms, window_ms);
        let mut ok = 0.0;
        let mut bad = 0.0;
        let mut buckets = [0.0; LE.len()];
        let mut count = 0.0;
        let mut sum = 0.0;
        let mut s_ok = Vec::new();
        let mut s_bad = Vec::new();
        let mut s_buckets: Vec<Vec<Sample>> = vec![Vec::new(); LE.len()];
        let mut s_count = Vec::new();
        let mut s_sum = Vec::new();
        for (t, reqs) in &per {
            for (err, lat) in reqs {
                if *err {
                    bad += 1.0;
                } else {
                    ok += 1.0;
                }
                for (b, le) in buckets.iter_mut().zip(LE) {
                    if *lat <= le {
                        *b += 1.0;
                    }
                }
                count += 1.0;
                sum += lat;
            }
            s_ok.push(Sample::new(*t, ok));
            s_bad.push(Sample::new(*t, bad));
            for (s, b) in s_buckets.iter_mut().zip(buckets) {
                s.push(Sample::new(*t, b));
            }
            s_count.push(Sample::new(*t, count));
            s_sum.push(Sample::new(*t, sum));
        }
        let name = |n: &str| ("__name__", n.to_string());
        let mut out = vec![
            TimeSeries {
                labels: self.labels(&[
                    ("__name__", "istio_requests_total"),
                    ("response_code", "200"),
                ]),
                samples: s_ok,
            },
            TimeSeries {
                labels: self.labels(&[
                    ("__name__", "istio_requests_total"),
                    ("response_code", "503"),
                ]),
                samples: s_bad,
            },
        ];
        for (le, samples) in LE.iter().zip(s_buckets) {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            let (k, v) = name("istio_request_duration_milliseconds_bucket");
            out.push(TimeSeries {
                labels: self.labels(&[(k, &v), ("le", &le)]),
                samples,
            });
        }
        out.push(TimeSeries {
            labels: self.labels(&[("__name__", "istio_request_duration_milliseconds_count")]),
            samples: s_count,
        });
        out.push(TimeSeries {
            labels: self.labels(&[("__name__", "istio_request_duration_milliseconds_sum")]),
            samples: s_sum,
        });
        out
    }

    /// The same traffic as Zipkin v2 JSON server spans, tagged `service.version`, in
    /// bodies of at most `per_body` spans.
    pub fn zipkin_json(&self, end_ms: i64, window_ms: i64, per_body: usize) -> Vec<String> {
        let mut spans = Vec::new();
        let mut id: u64 = self.seed.wrapping_mul(1_000_003) & 0x0fff_ffff_ffff;
        for (t, reqs) in self.requests(end_ms, window_ms) {
            for (k, (err, lat)) in reqs.iter().enumerate() {
                id += 1;
                // Spread over the scrape interval that ends at t.
                let ts_us = (t - SCRAPE_MS) * 1000
                    + (k as i64 + 1) * SCRAPE_MS * 1000 / (reqs.len() as i64 + 1);
                let code = if *err { "503" } else { "200" };
                spans.push(format!(
                    r#"{{"traceId":"{id:016x}","id":"{id:016x}","name":"get /","kind":"SERVER","timestamp":{ts_us},"duration":{},"localEndpoint":{{"serviceName":"{}"}},"tags":{{"service.version":"{}","http.status_code":"{code}"}}}}"#,
                    (lat * 1000.0).round().max(1.0) as u64,
                    self.service,
                    self.version
                ));
            }
        }
        spans
            .chunks(per_body.max(1))
            .map(|c| format!("[{}]", c.join(",")))
            .collect()
    }
}
