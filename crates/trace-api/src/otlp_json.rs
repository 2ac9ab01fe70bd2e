//! Stored spans written back as OTLP/JSON `resourceSpans` (the Jaeger v3 API's shape), the
//! inverse of the OTLP-to-Zipkin mapping in `meshlens-ingest`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use meshlens_ingest::zipkin::write_json_string;
use meshlens_model::{Span, SpanKind};

/// `{"resourceSpans":[...]}` for the given spans, one resource per local service.
pub fn resource_spans(spans: &[Span]) -> String {
    let mut by_service: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for s in spans {
        by_service
            .entry(s.local_service().unwrap_or(""))
            .or_default()
            .push(s);
    }
    let mut out = String::from("{\"resourceSpans\":[");
    for (i, (service, spans)) in by_service.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"resource\":{\"attributes\":[");
        attribute(&mut out, "service.name", service);
        out.push_str("]},\"scopeSpans\":[{\"scope\":{},\"spans\":[");
        for (j, s) in spans.into_iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            span(&mut out, s);
        }
        out.push_str("]}]}");
    }
    out.push_str("]}");
    out
}

fn attribute(out: &mut String, key: &str, value: &str) {
    out.push_str("{\"key\":");
    write_json_string(out, key);
    out.push_str(",\"value\":{\"stringValue\":");
    write_json_string(out, value);
    out.push_str("}}");
}

fn span(out: &mut String, s: &Span) {
    let start = s.timestamp.unwrap_or(0) * 1000;
    let end = start + s.duration.unwrap_or(0) * 1000;
    let trace_id = format!("{:016x}{:016x}", s.trace_id.high, s.trace_id.low);
    let _ = write!(
        out,
        "{{\"traceId\":\"{trace_id}\",\"spanId\":\"{:016x}\"",
        s.id
    );
    if let Some(p) = s.parent_id {
        let _ = write!(out, ",\"parentSpanId\":\"{p:016x}\"");
    }
    out.push_str(",\"name\":");
    write_json_string(out, s.name.as_deref().unwrap_or(""));
    let kind = match s.kind {
        None => 1,
        Some(SpanKind::Server) => 2,
        Some(SpanKind::Client) => 3,
        Some(SpanKind::Producer) => 4,
        Some(SpanKind::Consumer) => 5,
    };
    let _ = write!(
        out,
        ",\"kind\":{kind},\"startTimeUnixNano\":\"{start}\",\"endTimeUnixNano\":\"{end}\",\"attributes\":["
    );
    let mut first = true;
    for (k, v) in &s.tags {
        if !first {
            out.push(',');
        }
        first = false;
        attribute(out, k, v);
    }
    if let Some(peer) = s.remote_service() {
        if !first {
            out.push(',');
        }
        attribute(out, "peer.service", peer);
    }
    out.push_str("],\"events\":[");
    for (i, a) in s.annotations.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"timeUnixNano\":\"{}\",\"name\":",
            a.timestamp * 1000
        );
        write_json_string(out, &a.value);
        out.push('}');
    }
    out.push_str("],\"status\":{");
    if let Some(msg) = s.tags.get("error") {
        out.push_str("\"code\":2,\"message\":");
        write_json_string(out, msg);
    }
    out.push_str("}}");
}
