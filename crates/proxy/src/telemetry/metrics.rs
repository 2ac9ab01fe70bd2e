//! The metrics registry: Istio's standard request metrics and the proxy's own counters,
//! exposed in Prometheus text format.
//!
//! Per-request cost is one (Fx) hash of a few words (the label sets' `Arc` addresses, code,
//! flags) and a shard read lock to find the series handle, then relaxed atomic adds. Only
//! when a pair of label-set `Arc`s is new is the key hashed by its label strings; a series
//! is created (write lock on one of 16 shards) only the first time a label set is seen. The registry is a value passed around, not a global,
//! so tests and several in-process proxies each have their own.

use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use meshlens_model::hash::{FxBuildHasher, FxMap};
use parking_lot::RwLock;

use super::flags::Flags;

/// Envoy's default histogram buckets, used by Istio for `istio_request_duration_milliseconds`.
pub const DURATION_BUCKETS_MS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Istio's buckets for `istio_request_bytes` and `istio_response_bytes`.
pub const BYTES_BUCKETS: &[f64] = &[
    1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0,
];

const SHARDS: usize = 16;

/// Labels that describe the reporting proxy's own workload (the `source_*` labels of a
/// `reporter="source"` proxy). Fixed for a proxy's life.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerLabels {
    pub workload: String,
    pub workload_namespace: String,
    pub principal: String,
    pub app: String,
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub cluster: String,
}

/// The destination side of a request's labels: computed once per endpoint when the config
/// is compiled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DestLabels {
    pub peer: PeerLabels,
    pub service: String,
    pub service_name: String,
    pub service_namespace: String,
}

impl DestLabels {
    /// Labels for a request that never reached a known service (no route).
    pub fn unknown() -> Self {
        let u = || "unknown".to_string();
        DestLabels {
            peer: PeerLabels {
                workload: u(),
                workload_namespace: u(),
                principal: u(),
                app: u(),
                version: u(),
                canonical_service: u(),
                canonical_revision: "latest".into(),
                cluster: u(),
            },
            service: u(),
            service_name: u(),
            service_namespace: u(),
        }
    }
}

/// What Istio calls `request_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Grpc,
}

/// Key of one `istio_*` series. The source labels are the registry's own (an outbound
/// proxy's workload) unless `source` names the caller (an inbound proxy).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub source: Option<Arc<PeerLabels>>,
    pub dest: Arc<DestLabels>,
    pub code: u16,
    pub grpc_status: Option<u16>,
    pub flags: Flags,
    pub protocol: Protocol,
    /// The connection's security: `mutual_tls` when the request came (inbound) or went
    /// (outbound) over the mesh's mutual TLS.
    pub security: crate::conn::Security,
}

/// Entries of [`Metrics::by_identity`] kept at most (over all shards): a sidecar's live label
/// sets are far fewer, and the entries keep their label sets alive.
const MAX_IDENTITIES: usize = 4096;

/// A [`SeriesKey`] compared and hashed by the addresses of its label sets, not their text:
/// built from a borrowed key without touching its reference counts. The entry it keys holds
/// the key's `Arc`s, so an address is not reused while the entry lives.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct IdentityKey {
    dest: usize,
    source: usize,
    code: u16,
    grpc_status: Option<u16>,
    flags: Flags,
    protocol: Protocol,
    security: crate::conn::Security,
}

/// One shard of [`Metrics::by_identity`]: each entry keeps the label sets its key points to.
type Identities = FxMap<IdentityKey, (SeriesKey, Arc<Series>)>;

impl IdentityKey {
    fn of(k: &SeriesKey) -> IdentityKey {
        IdentityKey {
            dest: Arc::as_ptr(&k.dest) as usize,
            source: k.source.as_ref().map_or(0, |s| Arc::as_ptr(s) as usize),
            code: k.code,
            grpc_status: k.grpc_status,
            flags: k.flags,
            protocol: k.protocol,
            security: k.security,
        }
    }
}

/// A cumulative histogram with atomic buckets.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    /// f64 bits, updated with a CAS loop.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let mut cur = self.sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            match self
                .sum
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(x) => cur = x,
            }
        }
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0u64;
        for (i, b) in self.bounds.iter().enumerate() {
            cum += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cum}");
        }
        cum += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cum}");
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cum}");
    }
}

/// The handle of one label set.
pub struct Series {
    requests: AtomicU64,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

impl Series {
    fn new() -> Self {
        Series {
            requests: AtomicU64::new(0),
            duration: Histogram::new(DURATION_BUCKETS_MS),
            request_bytes: Histogram::new(BYTES_BUCKETS),
            response_bytes: Histogram::new(BYTES_BUCKETS),
        }
    }

    /// Records one finished request.
    pub fn record(&self, duration_ms: f64, request_bytes: u64, response_bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.duration.observe(duration_ms);
        self.request_bytes.observe(request_bytes as f64);
        self.response_bytes.observe(response_bytes as f64);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Counters of the proxy itself.
#[derive(Default)]
pub struct ProxyCounters {
    pub spans_dropped: AtomicU64,
    pub spans_sent: AtomicU64,
    pub span_export_failures: AtomicU64,
    pub config_reload_success: AtomicU64,
    pub config_reload_failure: AtomicU64,
    /// 1 when the last attempted load was good, 0 when it was rejected.
    pub config_last_reload_ok: AtomicU64,
    /// Errors in the last rejected load (0 after a good one).
    pub config_errors: AtomicU64,
    pub downstream_cx_total: AtomicU64,
    /// Open HTTP connections of each serving thread (see [`crate::spread`]), once serving.
    pub downstream_open: std::sync::OnceLock<Arc<[std::sync::atomic::AtomicUsize]>>,
    /// TLS handshake failures by reason, inbound and outbound.
    pub tls_handshake_failures: crate::tls::Failures,
}

/// The registry of one proxy.
pub struct Metrics {
    reporter: &'static str,
    source: PeerLabels,
    /// `reporter=…,source_…=…` rendered once.
    source_rendered: String,
    /// Fx-hashed: label sets are hashed on every request, and SipHash over a dozen label
    /// strings costs more than the rest of the update. Label values come from the mesh
    /// config, or from request headers only through bounded caches, so flooding is not a
    /// concern.
    shards: Vec<RwLock<FxMap<SeriesKey, Arc<Series>>>>,
    /// The same series by the identity of the key's label-set `Arc`s: those are built once
    /// per endpoint and peer, so nearly every request finds its series here without hashing
    /// a dozen label strings. Several `Arc`s of equal labels (after a config reload, say)
    /// lead to the one series of `shards`.
    by_identity: Vec<RwLock<Identities>>,
    hasher: FxBuildHasher,
    pub counters: ProxyCounters,
    /// Istio's TCP metrics (TCP listeners).
    pub tcp: super::tcp::TcpMetrics,
}

impl Metrics {
    pub fn new(reporter: &'static str, source: PeerLabels) -> Self {
        let source_rendered = render_source(reporter, &source);
        Metrics {
            reporter,
            source,
            source_rendered,
            shards: (0..SHARDS).map(|_| RwLock::new(FxMap::default())).collect(),
            by_identity: (0..SHARDS).map(|_| RwLock::new(FxMap::default())).collect(),
            hasher: FxBuildHasher::default(),
            counters: ProxyCounters::default(),
            tcp: Default::default(),
        }
    }

    pub fn source(&self) -> &PeerLabels {
        &self.source
    }

    pub fn reporter(&self) -> &'static str {
        self.reporter
    }

    /// The series handle for a label set, created on first use.
    pub fn series(&self, key: &SeriesKey) -> Arc<Series> {
        let id = IdentityKey::of(key);
        let shard = &self.by_identity[(self.hasher.hash_one(id) >> 60) as usize % SHARDS];
        if let Some((_, s)) = shard.read().get(&id) {
            return s.clone();
        }
        let series = self.series_by_labels(key);
        let mut known = shard.write();
        // Reloads make new `Arc`s; the entries of old ones only cost memory, so the map is
        // emptied when it has grown well past any mesh's live label sets.
        if known.len() >= MAX_IDENTITIES / SHARDS {
            known.clear();
        }
        known.insert(id, (key.clone(), series.clone()));
        series
    }

    fn series_by_labels(&self, key: &SeriesKey) -> Arc<Series> {
        let h = self.hasher.hash_one(key);
        let shard = &self.shards[(h >> 60) as usize % SHARDS];
        if let Some(s) = shard.read().get(key) {
            return s.clone();
        }
        shard
            .write()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Series::new()))
            .clone()
    }

    /// Sum of `istio_requests_total` over series matching a predicate (for tests and the admin).
    pub fn requests_where(&self, f: impl Fn(&SeriesKey) -> bool) -> u64 {
        let mut n = 0;
        for shard in &self.shards {
            for (k, s) in shard.read().iter() {
                if f(k) {
                    n += s.requests();
                }
            }
        }
        n
    }

    /// Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut series: Vec<(String, Arc<Series>)> = Vec::new();
        for shard in &self.shards {
            for (k, s) in shard.read().iter() {
                series.push((self.labels(k), s.clone()));
            }
        }
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::with_capacity(1024 + series.len() * 4096);
        out.push_str("# TYPE istio_requests_total counter\n");
        for (l, s) in &series {
            let _ = writeln!(out, "istio_requests_total{{{l}}} {}", s.requests());
        }
        for (name, pick) in [
            (
                "istio_request_duration_milliseconds",
                (|s: &Series| &s.duration) as fn(&Series) -> &Histogram,
            ),
            ("istio_request_bytes", |s: &Series| &s.request_bytes),
            ("istio_response_bytes", |s: &Series| &s.response_bytes),
        ] {
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (l, s) in &series {
                pick(s).write(&mut out, name, l);
            }
        }
        self.tcp
            .render(&mut out, self.reporter, &self.source_rendered);
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let simple: [(&str, &str, &str, u64); 6] = [
            (
                "meshlens_proxy_spans_dropped_total",
                "counter",
                "Spans dropped because the export buffer was full.",
                get(&c.spans_dropped),
            ),
            (
                "meshlens_proxy_spans_sent_total",
                "counter",
                "Spans accepted by the trace collector.",
                get(&c.spans_sent),
            ),
            (
                "meshlens_proxy_span_export_failures_total",
                "counter",
                "Span batches the collector did not accept (error or timeout).",
                get(&c.span_export_failures),
            ),
            (
                "meshlens_proxy_config_last_reload_successful",
                "gauge",
                "Whether the last attempt to load the mesh config succeeded.",
                get(&c.config_last_reload_ok),
            ),
            (
                "meshlens_proxy_config_errors",
                "gauge",
                "Errors found in the last rejected mesh config (0 after a good load).",
                get(&c.config_errors),
            ),
            (
                "meshlens_proxy_downstream_connections_total",
                "counter",
                "Connections accepted on the proxy listener.",
                get(&c.downstream_cx_total),
            ),
        ];
        for (name, ty, help, v) in simple {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}\n{name} {v}");
        }
        if let Some(open) = c.downstream_open.get() {
            let _ = writeln!(out, "# HELP meshlens_proxy_downstream_connections_open Open connections on the proxy listener, by the serving thread that serves them.\n# TYPE meshlens_proxy_downstream_connections_open gauge");
            for (thread, n) in open.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "meshlens_proxy_downstream_connections_open{{thread=\"{thread}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP meshlens_proxy_config_reloads_total Mesh config loads by result.\n# TYPE meshlens_proxy_config_reloads_total counter\nmeshlens_proxy_config_reloads_total{{result=\"success\"}} {}\nmeshlens_proxy_config_reloads_total{{result=\"failure\"}} {}",
            get(&c.config_reload_success),
            get(&c.config_reload_failure)
        );
        c.tls_handshake_failures.render(&mut out);
        out
    }

    /// The full label set of a series, in Istio's order.
    fn labels(&self, k: &SeriesKey) -> String {
        let grpc = k.grpc_status.map(|g| g.to_string()).unwrap_or_default();
        let policy = security_policy(k.security, self.reporter);
        let source = match &k.source {
            Some(src) => std::borrow::Cow::Owned(render_source(self.reporter, src)),
            None => std::borrow::Cow::Borrowed(self.source_rendered.as_str()),
        };
        format!(
            "{},{},request_protocol=\"{}\",response_code=\"{}\",grpc_response_status=\"{}\",response_flags=\"{}\",connection_security_policy=\"{}\"",
            source,
            render_dest(&k.dest),
            match k.protocol {
                Protocol::Http => "http",
                Protocol::Grpc => "grpc",
            },
            k.code,
            grpc,
            k.flags,
            policy,
        )
    }
}

/// `connection_security_policy`: without mTLS Istio reports `unknown` from the source side,
/// `none` from the destination side.
pub(crate) fn security_policy(security: crate::conn::Security, reporter: &str) -> &'static str {
    match security {
        crate::conn::Security::MutualTls => "mutual_tls",
        crate::conn::Security::None if reporter == "source" => "unknown",
        crate::conn::Security::None => "none",
    }
}

/// `destination_…=…`, the destination labels of every `istio_*` series (HTTP and TCP).
pub(crate) fn render_dest(d: &DestLabels) -> String {
    let p = &d.peer;
    format!(
        "destination_workload=\"{}\",destination_workload_namespace=\"{}\",destination_principal=\"{}\",destination_app=\"{}\",destination_version=\"{}\",destination_service=\"{}\",destination_canonical_service=\"{}\",destination_canonical_revision=\"{}\",destination_service_name=\"{}\",destination_service_namespace=\"{}\",destination_cluster=\"{}\"",
        esc(&p.workload),
        esc(&p.workload_namespace),
        esc(&p.principal),
        esc(&p.app),
        esc(&p.version),
        esc(&d.service),
        esc(&p.canonical_service),
        esc(&p.canonical_revision),
        esc(&d.service_name),
        esc(&d.service_namespace),
        esc(&p.cluster),
    )
}

/// `reporter=…,source_…=…`, the leading labels of every `istio_*` series.
pub(crate) fn render_source(reporter: &str, s: &PeerLabels) -> String {
    format!(
        "reporter=\"{}\",source_workload=\"{}\",source_canonical_service=\"{}\",source_canonical_revision=\"{}\",source_workload_namespace=\"{}\",source_principal=\"{}\",source_app=\"{}\",source_version=\"{}\",source_cluster=\"{}\"",
        reporter,
        esc(&s.workload),
        esc(&s.canonical_service),
        esc(&s.canonical_revision),
        esc(&s.workload_namespace),
        esc(&s.principal),
        esc(&s.app),
        esc(&s.version),
        esc(&s.cluster),
    )
}

/// Escapes a label value for the text format.
pub(crate) fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\\', '"', '\n']) {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(w: &str) -> PeerLabels {
        PeerLabels {
            workload: w.into(),
            workload_namespace: "default".into(),
            principal: "unknown".into(),
            app: w.into(),
            version: "v1".into(),
            canonical_service: w.into(),
            canonical_revision: "v1".into(),
            cluster: "Kubernetes".into(),
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_series_shared() {
        let m = Metrics::new("source", peer("productpage"));
        let key = SeriesKey {
            source: None,
            dest: Arc::new(DestLabels::unknown()),
            code: 404,
            grpc_status: None,
            flags: Flags::NR,
            protocol: Protocol::Http,
            security: crate::conn::Security::None,
        };
        m.series(&key).record(3.0, 0, 10);
        m.series(&key).record(700.0, 5, 10);
        let text = m.render();
        assert!(text.contains("response_flags=\"NR\""), "{text}");
        assert!(text.contains("le=\"5\"} 1\n"), "{text}");
        assert!(text.contains("le=\"1000\"} 2\n"));
        assert!(text.contains("istio_request_duration_milliseconds_sum{"));
        assert!(text.contains("} 703\n"));
        assert_eq!(m.requests_where(|k| k.code == 404), 2);
    }

    /// Label sets equal in text but held in different `Arc`s (a reload rebuilds them) count
    /// into one series, as one line of the exposition.
    #[test]
    fn equal_label_sets_in_different_arcs_share_a_series() {
        let m = Metrics::new("source", peer("productpage"));
        let key = |dest: Arc<DestLabels>, code| SeriesKey {
            source: Some(Arc::new(peer("reviews"))),
            dest,
            code,
            grpc_status: None,
            flags: Flags::NONE,
            protocol: Protocol::Http,
            security: crate::conn::Security::None,
        };
        let first = Arc::new(DestLabels::unknown());
        let reloaded = Arc::new(DestLabels::unknown());
        m.series(&key(first.clone(), 200)).record(1.0, 0, 0);
        m.series(&key(first.clone(), 200)).record(1.0, 0, 0);
        m.series(&key(reloaded, 200)).record(1.0, 0, 0);
        m.series(&key(first, 503)).record(1.0, 0, 0);
        assert_eq!(m.requests_where(|k| k.code == 200), 3);
        assert_eq!(m.requests_where(|k| k.code == 503), 1);
        let text = m.render();
        let lines = text
            .lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .count();
        assert_eq!(lines, 2, "{text}");
    }
}
