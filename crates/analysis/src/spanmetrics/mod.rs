//! Tempo's metrics generator, run at ingest: span metrics (calls and latency per service,
//! span name, kind and status) and service-graph metrics (requests, failures and client /
//! server durations per pair of services), with Tempo's metric and label names, written into
//! the TSDB so PromQL, Grafana's Tempo service graph and the alert rules see them.
//!
//! `observe` is called on every ingested batch and only updates in-memory counters; `flush`
//! writes their cumulative values as one sample per series. Client and server spans of one
//! call may arrive in different batches: the first to arrive waits in a bounded pending map
//! (Tempo's `max_items`, 10 000) and expires unpaired at the second flush after it arrived
//! (15 to 30 s at the usual 15 s flush period). Expiry counts flushes, not the wall clock,
//! so the output is a function of the inputs alone.

mod series;

use std::collections::BTreeMap;
use std::sync::Arc;

use meshlens_model::{MetricWriter, Span, SpanKind, SpanRef, StorageError, TimeSeries};
use parking_lot::Mutex;

use series::Sink;
pub use series::{Hist, LATENCY_BUCKETS};

use crate::fx::{FxMap, Interner};

/// Most spans waiting for their other half (Tempo's default `max_items`).
pub const MAX_PENDING: usize = 10_000;
/// The flush period the server uses; the first zero sample of a series sits this far back
/// when there was no earlier flush.
pub const FLUSH_INTERVAL_MS: i64 = 15_000;

const KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUSES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];
/// Tempo's `connection_type` values; the empty one is a direct call.
const CONN: [&str; 4] = ["", "virtual_node", "messaging_system", "database"];

#[derive(Default)]
struct Calls {
    hist: Hist,
    flushed: bool,
}

#[derive(Default)]
struct EdgeStats {
    total: u64,
    failed: u64,
    server: Hist,
    client: Hist,
    flushed: bool,
}

/// One side of a call waiting for the other. Services are ids in `State::services`.
struct Pending {
    is_client: bool,
    service: u32,
    seconds: f64,
    failed: bool,
    messaging: bool,
    /// For clients: the virtual peer to report if no server answers.
    peer: Option<(u32, usize)>,
    generation: u64,
}

#[derive(Default)]
struct State {
    /// service -> span name -> [kind * 3 + status].
    calls: FxMap<String, FxMap<String, Vec<Calls>>>,
    /// Service and peer names of pending spans and edges, interned: a span costs no
    /// string copies once its service was seen.
    services: Interner,
    /// (client, server, connection type) -> figures; sorted by name when rendered.
    edges: FxMap<(u32, u32, usize), EdgeStats>,
    pending: FxMap<(u64, u64, u64), Pending>,
    generation: u64,
    last_flush_ms: Option<i64>,
    /// Spans that expired unpaired, by side ("client"/"server") and service.
    unpaired: BTreeMap<(&'static str, String), (u64, bool)>,
    dropped: (u64, bool),
}

/// Derives Tempo's span metrics and service-graph metrics from ingested spans.
pub struct SpanMetrics {
    writer: Arc<dyn MetricWriter>,
    state: Mutex<State>,
}

fn kind_index(k: Option<SpanKind>) -> usize {
    match k {
        None => 1,
        Some(SpanKind::Server) => 2,
        Some(SpanKind::Client) => 3,
        Some(SpanKind::Producer) => 4,
        Some(SpanKind::Consumer) => 5,
    }
}

/// Zipkin's `error` tag, or OTLP's status carried as `otel.status_code`. One pass over the
/// tags, comparing lengths before bytes: it runs for every span.
fn status_index(s: &SpanRef<'_>) -> usize {
    let (mut error, mut status) = (false, None);
    for (k, v) in &s.tags {
        match k.len() {
            5 if k == "error" => error = true,
            16 if k == "otel.status_code" => status = Some(v.as_ref()),
            _ => {}
        }
    }
    match status {
        Some("ERROR") => 2,
        _ if error => 2,
        Some("OK") => 1,
        _ => 0,
    }
}

/// A client span's peer when no instrumented server answers (Tempo's virtual nodes).
fn virtual_peer<'s>(s: &'s SpanRef<'_>) -> Option<(&'s str, usize)> {
    if let Some(p) = s.remote_service().or_else(|| s.tag("peer.service")) {
        return Some((p, 1));
    }
    let db = s.tag("db.name").or_else(|| s.tag("db.system"))?;
    Some((db, 3))
}

impl SpanMetrics {
    pub fn new(writer: Arc<dyn MetricWriter>) -> Arc<SpanMetrics> {
        Arc::new(SpanMetrics {
            writer,
            state: Mutex::new(State::default()),
        })
    }

    /// Counts a batch of spans; cheap, never touches storage.
    pub fn observe(&self, spans: &[Span]) {
        let refs: Vec<SpanRef<'_>> = spans.iter().map(SpanRef::from_span).collect();
        self.observe_refs(&refs);
    }

    /// [`SpanMetrics::observe`] for spans borrowed from a request body.
    pub fn observe_refs(&self, spans: &[SpanRef<'_>]) {
        let mut st = self.state.lock();
        for s in spans {
            let Some(service) = s.local_service() else {
                continue;
            };
            let secs = s.duration.unwrap_or(0) as f64 / 1e6;
            let (kind, status) = (kind_index(s.kind), status_index(s));
            st.count_call(
                service,
                s.name.as_deref().unwrap_or(""),
                kind * 3 + status,
                secs,
            );
            let trace = (s.trace_id.high, s.trace_id.low);
            let failed = status == 2;
            match s.kind {
                Some(SpanKind::Client | SpanKind::Producer) => {
                    let peer = virtual_peer(s).map(|(p, conn)| (st.services.id(p), conn));
                    let p = Pending {
                        is_client: true,
                        service: st.services.id(service),
                        seconds: secs,
                        failed,
                        messaging: s.kind == Some(SpanKind::Producer),
                        peer,
                        generation: st.generation,
                    };
                    st.meet((trace.0, trace.1, s.id), p);
                }
                Some(SpanKind::Server | SpanKind::Consumer) => {
                    let key = if s.shared { Some(s.id) } else { s.parent_id };
                    let Some(key) = key else {
                        // A root server span: called by a user outside the traces.
                        let (user, server) = (st.services.id("user"), st.services.id(service));
                        st.edge(user, server, 1, failed, None, Some(secs));
                        continue;
                    };
                    let p = Pending {
                        is_client: false,
                        service: st.services.id(service),
                        seconds: secs,
                        failed,
                        messaging: s.kind == Some(SpanKind::Consumer),
                        peer: None,
                        generation: st.generation,
                    };
                    st.meet((trace.0, trace.1, key), p);
                }
                None => {}
            }
        }
    }

    /// Writes every series' cumulative value at `now_ms`, then expires the pending spans
    /// that have waited through a whole flush period. Returns the number of series written.
    pub fn flush(&self, now_ms: i64) -> Result<usize, StorageError> {
        let batch = {
            let mut st = self.state.lock();
            st.expire();
            let batch = st.render(now_ms);
            st.generation += 1;
            st.last_flush_ms = Some(now_ms);
            batch
        };
        if !batch.is_empty() {
            self.writer.append(&batch)?;
        }
        Ok(batch.len())
    }

    /// Spans waiting for their other half.
    pub fn pending(&self) -> usize {
        self.state.lock().pending.len()
    }
}

impl State {
    fn count_call(&mut self, service: &str, name: &str, slot: usize, secs: f64) {
        let by_name = match self.calls.get_mut(service) {
            Some(m) => m,
            None => self.calls.entry(service.to_string()).or_default(),
        };
        let v = match by_name.get_mut(name) {
            Some(v) => v,
            None => by_name
                .entry(name.to_string())
                .or_insert_with(|| (0..18).map(|_| Calls::default()).collect()),
        };
        v[slot].hist.observe(secs);
    }

    fn edge(
        &mut self,
        client: u32,
        server: u32,
        conn: usize,
        failed: bool,
        c: Option<f64>,
        s: Option<f64>,
    ) {
        let e = self.edges.entry((client, server, conn)).or_default();
        e.total += 1;
        e.failed += u64::from(failed);
        if let Some(c) = c {
            e.client.observe(c);
        }
        if let Some(s) = s {
            e.server.observe(s);
        }
    }

    /// Pairs a span with its waiting other half, or makes it wait.
    fn meet(&mut self, key: (u64, u64, u64), p: Pending) {
        match self.pending.remove(&key) {
            Some(o) if o.is_client != p.is_client => {
                let (c, s) = if p.is_client { (&p, &o) } else { (&o, &p) };
                let conn = if c.messaging || s.messaging { 2 } else { 0 };
                let failed = c.failed || s.failed;
                self.edge(
                    c.service,
                    s.service,
                    conn,
                    failed,
                    Some(c.seconds),
                    Some(s.seconds),
                );
            }
            Some(o) => {
                // Same side twice (a duplicate): keep the first.
                self.pending.insert(key, o);
            }
            None if self.pending.len() >= MAX_PENDING => {
                self.dropped.0 += 1;
            }
            None => {
                self.pending.insert(key, p);
            }
        }
    }

    fn expire(&mut self) {
        let g = self.generation;
        let mut expired: Vec<Pending> = Vec::new();
        self.pending.retain(|_, p| {
            let keep = p.generation >= g;
            if !keep {
                expired.push(std::mem::replace(
                    p,
                    Pending {
                        is_client: false,
                        service: 0,
                        seconds: 0.0,
                        failed: false,
                        messaging: false,
                        peer: None,
                        generation: 0,
                    },
                ));
            }
            keep
        });
        // Deterministic order whatever the hash map's.
        let names = &self.services;
        expired.sort_by(|a, b| {
            (names.name(a.service), a.is_client).cmp(&(names.name(b.service), b.is_client))
        });
        for p in expired {
            match (p.peer, p.is_client) {
                (Some((peer, conn)), true) => {
                    self.edge(p.service, peer, conn, p.failed, Some(p.seconds), None)
                }
                _ => {
                    let side = if p.is_client { "client" } else { "server" };
                    let service = self.services.name(p.service).to_string();
                    self.unpaired.entry((side, service)).or_default().0 += 1;
                }
            }
        }
    }

    fn render(&mut self, now_ms: i64) -> Vec<TimeSeries> {
        let zero_ms = self.last_flush_ms.unwrap_or(now_ms - FLUSH_INTERVAL_MS);
        let mut out = Vec::new();
        let mut services: Vec<(&String, &mut FxMap<String, Vec<Calls>>)> =
            self.calls.iter_mut().collect();
        services.sort_by(|a, b| a.0.cmp(b.0));
        for (service, names) in services {
            let mut names: Vec<(&String, &mut Vec<Calls>)> = names.iter_mut().collect();
            names.sort_by(|a, b| a.0.cmp(b.0));
            for (name, slots) in names {
                for (i, c) in slots.iter_mut().enumerate() {
                    if c.hist.count() == 0 {
                        continue;
                    }
                    let l = [
                        ("service", service.as_str()),
                        ("span_name", name.as_str()),
                        ("span_kind", KINDS[i / 3]),
                        ("status_code", STATUSES[i % 3]),
                    ];
                    let mut s = Sink {
                        now_ms,
                        zero_ms,
                        is_new: !c.flushed,
                        out: &mut out,
                    };
                    s.push("traces_spanmetrics_calls_total", &l, c.hist.count() as f64);
                    c.hist.render("traces_spanmetrics_latency", &l, &mut s);
                    c.flushed = true;
                }
            }
        }
        let names = &self.services;
        let mut edges: Vec<(&(u32, u32, usize), &mut EdgeStats)> = self.edges.iter_mut().collect();
        edges.sort_by(|(a, _), (b, _)| {
            (names.name(a.0), names.name(a.1), a.2).cmp(&(names.name(b.0), names.name(b.1), b.2))
        });
        for ((client, server, conn), e) in edges {
            let l = [
                ("client", names.name(*client)),
                ("server", names.name(*server)),
                ("connection_type", CONN[*conn]),
            ];
            let mut s = Sink {
                now_ms,
                zero_ms,
                is_new: !e.flushed,
                out: &mut out,
            };
            s.push("traces_service_graph_request_total", &l, e.total as f64);
            s.push(
                "traces_service_graph_request_failed_total",
                &l,
                e.failed as f64,
            );
            e.server
                .render("traces_service_graph_request_server_seconds", &l, &mut s);
            e.client
                .render("traces_service_graph_request_client_seconds", &l, &mut s);
            e.flushed = true;
        }
        for ((side, service), (n, flushed)) in self.unpaired.iter_mut() {
            let l = [(*side, service.as_str())];
            let mut s = Sink {
                now_ms,
                zero_ms,
                is_new: !*flushed,
                out: &mut out,
            };
            s.push("traces_service_graph_unpaired_spans_total", &l, *n as f64);
            *flushed = true;
        }
        if self.dropped.0 > 0 {
            let mut s = Sink {
                now_ms,
                zero_ms,
                is_new: !self.dropped.1,
                out: &mut out,
            };
            s.push(
                "traces_service_graph_dropped_spans_total",
                &[],
                self.dropped.0 as f64,
            );
            self.dropped.1 = true;
        }
        out
    }
}
