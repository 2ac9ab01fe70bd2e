//! Telemetry: Istio's request metrics and one span per proxied request, recorded when the
//! response body ends (so durations and response sizes are the whole exchange, as Envoy
//! measures them).

pub mod export;
pub mod flags;
pub mod metrics;
pub mod peer;
pub mod tcp;
pub mod trace;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::Method;

use export::{SpanRecord, SpanSink};
use flags::Flags;
use metrics::{DestLabels, Metrics, PeerLabels, Protocol, SeriesKey};
use trace::TraceContext;

/// The proxy's telemetry outputs and identity.
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub spans: Option<SpanSink>,
    /// `localEndpoint.serviceName` of spans: the workload.
    pub service_name: Arc<str>,
    /// Envoy-style `sidecar~ip~workload.namespace~namespace.svc.cluster.local`.
    pub node_id: String,
    /// `CLIENT` (reporter=source) or `SERVER` (reporter=destination).
    pub span_kind: &'static str,
    pub sampling_percent: f64,
    /// Outbound proxies: the [`peer::PEER_HEADER`] value naming this workload, set on every
    /// upstream request.
    pub peer_header: Option<http::HeaderValue>,
    /// Inbound proxies: how requests are labelled (own identity as destination, caller from
    /// the peer header as source).
    pub inbound: Option<peer::Inbound>,
}

/// What is known about a request by the time its response ends.
pub struct RequestRecord {
    pub start: Instant,
    pub start_wall: SystemTime,
    pub method: Method,
    /// Span only: empty when the request's span will not be recorded.
    pub url: String,
    pub authority: String,
    pub http_version: &'static str,
    pub protocol: Protocol,
    /// Span only (empty when no span is recorded), as `url`.
    pub user_agent: String,
    pub request_id: http::HeaderValue,
    pub trace: TraceContext,
    pub dest: Arc<DestLabels>,
    /// Inbound proxies: the caller, from the peer header.
    pub source: Option<Arc<PeerLabels>>,
    pub cluster: Option<String>,
    pub upstream: Option<Arc<str>>,
    pub code: u16,
    pub flags: Flags,
    pub request_bytes: u64,
    /// Inbound: the downstream connection's; outbound: the upstream connection's.
    pub security: crate::conn::Security,
}

impl Telemetry {
    /// Records the metrics and, when the trace is sampled, the span of a finished request.
    pub fn finish(&self, rec: &RequestRecord, response_bytes: u64, grpc_status: Option<u16>) {
        let elapsed = rec.start.elapsed();
        let (source, dest) = match &self.inbound {
            None => (None, rec.dest.clone()),
            Some(i) => (
                Some(rec.source.clone().unwrap_or_else(|| i.source(None))),
                i.dest(&rec.dest, &rec.authority),
            ),
        };
        let key = SeriesKey {
            source,
            dest,
            code: rec.code,
            grpc_status: grpc_status.filter(|_| rec.protocol == Protocol::Grpc),
            flags: rec.flags,
            protocol: rec.protocol,
            security: rec.security,
        };
        self.metrics.series(&key).record(
            elapsed.as_secs_f64() * 1000.0,
            rec.request_bytes,
            response_bytes,
        );
        let Some(sink) = &self.spans else { return };
        if !rec.trace.sampled {
            return;
        }
        let start_us = rec
            .start_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let (host, port) = crate::route::split_authority(&rec.authority, 80);
        let mut tags: Vec<(&'static str, String)> = vec![
            ("component", "proxy".into()),
            ("node_id", self.node_id.clone()),
            (
                "guid:x-request-id",
                String::from_utf8_lossy(rec.request_id.as_bytes()).into_owned(),
            ),
            ("http.method", rec.method.to_string()),
            ("http.url", rec.url.clone()),
            ("http.protocol", rec.http_version.into()),
            ("http.status_code", rec.code.to_string()),
            ("downstream_cluster", "-".into()),
            ("user_agent", rec.user_agent.clone()),
            ("request_size", rec.request_bytes.to_string()),
            ("response_size", response_bytes.to_string()),
            ("response_flags", rec.flags.to_string()),
            (
                "upstream_cluster",
                rec.cluster.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "upstream_cluster.name",
                rec.cluster.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "istio.namespace",
                self.metrics.source().workload_namespace.clone(),
            ),
            (
                "istio.canonical_service",
                self.metrics.source().canonical_service.clone(),
            ),
            (
                "istio.canonical_revision",
                self.metrics.source().canonical_revision.clone(),
            ),
        ];
        if let Some(u) = &rec.upstream {
            tags.push(("peer.address", u.to_string()));
        }
        if let Some(g) = grpc_status {
            tags.push(("grpc.status_code", g.to_string()));
        }
        sink.submit(SpanRecord {
            trace_id: rec.trace.trace_id_hex(),
            id: rec.trace.span_id,
            parent_id: rec.trace.parent_id,
            name: format!("{host}:{port}/*"),
            kind: self.span_kind,
            start_us,
            duration_us: elapsed.as_micros() as u64,
            service_name: self.service_name.clone(),
            tags,
            error: rec.code >= 500,
        });
    }
}
