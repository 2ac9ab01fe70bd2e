//! Ingest counters, rendered into the server's `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The transports spans arrive by, as the `transport` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    ZipkinJson,
    ZipkinProto,
    OtlpHttpProto,
    OtlpHttpJson,
    OtlpGrpc,
}

impl Transport {
    const ALL: [Transport; 5] = [
        Transport::ZipkinJson,
        Transport::ZipkinProto,
        Transport::OtlpHttpProto,
        Transport::OtlpHttpJson,
        Transport::OtlpGrpc,
    ];

    fn label(self) -> &'static str {
        match self {
            Transport::ZipkinJson => "zipkin_json",
            Transport::ZipkinProto => "zipkin_proto",
            Transport::OtlpHttpProto => "otlp_http_protobuf",
            Transport::OtlpHttpJson => "otlp_http_json",
            Transport::OtlpGrpc => "otlp_grpc",
        }
    }
}

#[derive(Default)]
pub struct TraceCounters {
    accepted: [AtomicU64; 5],
    rejected: [AtomicU64; 5],
    failed_requests: [AtomicU64; 5],
}

impl TraceCounters {
    pub(crate) fn accepted(&self, t: Transport, n: usize) {
        self.accepted[t as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, t: Transport, n: u64) {
        self.rejected[t as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, t: Transport) {
        self.failed_requests[t as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn total_accepted(&self) -> u64 {
        self.accepted
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let families = [
            (
                "meshlens_spans_ingested_total",
                "Spans stored, by transport.",
                &self.accepted,
            ),
            (
                "meshlens_spans_rejected_total",
                "Spans refused for invalid ids or fields, by transport.",
                &self.rejected,
            ),
            (
                "meshlens_span_requests_failed_total",
                "Span ingest requests answered with an error, by transport.",
                &self.failed_requests,
            ),
        ];
        for (name, help, values) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for t in Transport::ALL {
                let v = values[t as usize].load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{transport=\"{}\"}} {v}", t.label());
            }
        }
    }
}
