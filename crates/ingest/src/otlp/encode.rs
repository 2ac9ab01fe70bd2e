//! Encoders: the export response (protobuf and JSON), and Zipkin-model spans as an OTLP
//! request.

use std::collections::BTreeMap;

use meshlens_model::{Span, SpanKind};
use prost::Message;

use super::proto::{
    any_value, AnyValue, Event, ExportTracePartialSuccess, ExportTraceServiceRequest,
    ExportTraceServiceResponse, KeyValue, PbSpan, Resource, ResourceSpans, ScopeSpans, Status,
};
use crate::zipkin::write_json_string;

/// The response body: empty when all was accepted, else the partial success.
pub fn encode_response(rejected: u64, message: &str) -> Vec<u8> {
    ExportTraceServiceResponse {
        partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: rejected as i64,
            error_message: message.to_string(),
        }),
    }
    .encode_to_vec()
}

/// The same response in OTLP/JSON.
pub fn encode_response_json(rejected: u64, message: &str) -> String {
    if rejected == 0 {
        return "{}".into();
    }
    let mut out =
        format!("{{\"partialSuccess\":{{\"rejectedSpans\":\"{rejected}\",\"errorMessage\":");
    write_json_string(&mut out, message);
    out.push_str("}}");
    out
}

/// Encodes Zipkin-model spans as an OTLP request, one resource per local service: what the
/// proxy sends with `--otlp`, and what the span benchmark replays.
pub fn encode_request(spans: &[Span]) -> Vec<u8> {
    let mut by_service: BTreeMap<&str, Vec<PbSpan>> = BTreeMap::new();
    for s in spans {
        let trace_id = if s.trace_id.is_128 {
            let mut b = s.trace_id.high.to_be_bytes().to_vec();
            b.extend_from_slice(&s.trace_id.low.to_be_bytes());
            b
        } else {
            let mut b = vec![0u8; 8];
            b.extend_from_slice(&s.trace_id.low.to_be_bytes());
            b
        };
        let mut attributes: Vec<KeyValue> = s
            .tags
            .iter()
            .filter(|(k, _)| k.as_str() != "error")
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(v.clone())),
                }),
            })
            .collect();
        if let Some(peer) = s.remote_service() {
            attributes.push(KeyValue {
                key: "peer.service".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(peer.to_string())),
                }),
            });
        }
        let start = s.timestamp.unwrap_or(0) * 1000;
        by_service
            .entry(s.local_service().unwrap_or("unknown_service"))
            .or_default()
            .push(PbSpan {
                trace_id,
                span_id: s.id.to_be_bytes().to_vec(),
                parent_span_id: s
                    .parent_id
                    .map(|p| p.to_be_bytes().to_vec())
                    .unwrap_or_default(),
                name: s.name.clone().unwrap_or_default(),
                kind: match s.kind {
                    None => 1,
                    Some(SpanKind::Server) => 2,
                    Some(SpanKind::Client) => 3,
                    Some(SpanKind::Producer) => 4,
                    Some(SpanKind::Consumer) => 5,
                },
                start_time_unix_nano: start,
                end_time_unix_nano: start + s.duration.unwrap_or(0) * 1000,
                attributes,
                events: s
                    .annotations
                    .iter()
                    .map(|a| Event {
                        time_unix_nano: a.timestamp * 1000,
                        name: a.value.clone(),
                        attributes: Vec::new(),
                    })
                    .collect(),
                status: s.tags.get("error").map(|m| Status {
                    message: m.clone(),
                    code: 2,
                }),
            });
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(service.to_string())),
                        }),
                    }],
                }),
                scope_spans: vec![ScopeSpans { scope: None, spans }],
            })
            .collect(),
    }
    .encode_to_vec()
}
