//! OTLP traces (`ExportTraceServiceRequest`, protobuf and JSON), mapped onto the Zipkin v2
//! model the way the OpenTelemetry Zipkin exporter maps them:
//!
//! | OTLP | Zipkin span |
//! |---|---|
//! | resource `service.name` (else `unknown_service`) | `localEndpoint.serviceName` |
//! | span name | `name` (lower-cased, as Zipkin does) |
//! | kind SERVER / CLIENT / PRODUCER / CONSUMER | the same `kind`; INTERNAL and UNSPECIFIED: no kind |
//! | start time, end - start (nanoseconds) | `timestamp`, `duration` (microseconds) |
//! | attributes, then the other resource attributes | `tags` (span attributes win); arrays and maps as JSON text |
//! | scope name and version | tags `otel.scope.name`, `otel.scope.version` |
//! | status code OK / ERROR | tag `otel.status_code`; ERROR also sets tag `error` to the status message |
//! | events | annotations: the event name, or `name: {attributes as JSON}` |
//! | `peer.service`, `server.address` / `net.peer.name`, `network.peer.address` / `net.peer.ip`, `server.port` / `net.peer.port` | `remoteEndpoint` (serviceName, ipv4/ipv6, port) |
//! | 16-byte trace id | a 128-bit trace id |
//!
//! A span with an invalid trace or span id is rejected alone and counted, as OTLP's partial
//! success asks; the rest of the request is kept.
mod encode;
mod json;
mod proto;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use meshlens_model::{Annotation, Endpoint, Span, SpanKind, TraceId};

use crate::zipkin::write_json_string;

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("malformed protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(String),
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// What a request decoded to: the valid spans, and what was refused with the first reason.
#[derive(Debug, Default)]
pub struct Decoded {
    pub spans: Vec<Span>,
    pub rejected: u64,
    pub first_rejection: Option<String>,
}

impl Decoded {
    fn reject(&mut self, why: String) {
        self.rejected += 1;
        if self.first_rejection.is_none() {
            self.first_rejection = Some(why);
        }
    }
}
pub use encode::{encode_request, encode_response, encode_response_json};
pub use json::decode_json;
pub use proto::{
    any_value, decode_proto, AnyValue, ArrayValue, Event, ExportTracePartialSuccess,
    ExportTraceServiceRequest, ExportTraceServiceResponse, InstrumentationScope, KeyValue,
    KeyValueList, PbSpan, Resource, ResourceSpans, ScopeSpans, Status,
};

/// The attribute value model both encodings decode into.
#[derive(Clone, Debug, PartialEq)]
enum Attr {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Array(Vec<Attr>),
    Map(Vec<(String, Attr)>),
    Bytes(Vec<u8>),
    Empty,
}

impl Attr {
    fn from_pb(v: Option<AnyValue>) -> Attr {
        use any_value::Value as V;
        match v.and_then(|v| v.value) {
            None => Attr::Empty,
            Some(V::StringValue(s)) => Attr::Str(s),
            Some(V::BoolValue(b)) => Attr::Bool(b),
            Some(V::IntValue(i)) => Attr::Int(i),
            Some(V::DoubleValue(d)) => Attr::Double(d),
            Some(V::ArrayValue(a)) => Attr::Array(
                a.values
                    .into_iter()
                    .map(|v| Attr::from_pb(Some(v)))
                    .collect(),
            ),
            Some(V::KvlistValue(l)) => Attr::Map(
                l.values
                    .into_iter()
                    .map(|kv| (kv.key, Attr::from_pb(kv.value)))
                    .collect(),
            ),
            Some(V::BytesValue(b)) => Attr::Bytes(b),
        }
    }

    /// The tag text: scalars plain, arrays and maps as JSON.
    fn to_tag(&self) -> String {
        match self {
            Attr::Str(s) => s.clone(),
            Attr::Bool(b) => b.to_string(),
            Attr::Int(i) => i.to_string(),
            Attr::Double(d) => d.to_string(),
            Attr::Bytes(b) => base64_encode(b),
            Attr::Empty => String::new(),
            Attr::Array(_) | Attr::Map(_) => {
                let mut out = String::new();
                self.write_json(&mut out);
                out
            }
        }
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Attr::Str(s) => write_json_string(out, s),
            Attr::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Attr::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Attr::Double(d) if d.is_finite() => {
                let _ = write!(out, "{d}");
            }
            Attr::Double(d) => write_json_string(out, &d.to_string()),
            Attr::Bytes(b) => write_json_string(out, &base64_encode(b)),
            Attr::Empty => out.push_str("null"),
            Attr::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
            Attr::Map(items) => write_json_map(out, items),
        }
    }
}

fn write_json_map(out: &mut String, items: &[(String, Attr)]) {
    out.push('{');
    for (i, (k, v)) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, k);
        out.push(':');
        v.write_json(out);
    }
    out.push('}');
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// An event: time (ns), name, attributes.
type OtelEvent = (u64, String, Vec<(String, Attr)>);

/// One OTLP span with its context, in a form independent of the wire encoding.
struct OtelSpan {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    kind: i32,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(String, Attr)>,
    events: Vec<OtelEvent>,
    status_code: i32,
    status_message: String,
}

struct Context<'a> {
    service: &'a str,
    resource_tags: &'a [(String, String)],
    scope_name: &'a str,
    scope_version: &'a str,
}

fn map_span(o: OtelSpan, cx: &Context<'_>, path: &str) -> Result<Span, String> {
    let trace_id = TraceId::from_bytes(&o.trace_id)
        .filter(|t| t.high != 0 || t.low != 0)
        // A zero upper half is a 64-bit id, as Zipkin normalises it: a B3 trace that crossed
        // OTLP (e.g. through an agent) keeps the id it was logged and is looked up with.
        .map(|t| TraceId {
            is_128: t.high != 0,
            ..t
        })
        .ok_or_else(|| format!("{path}.traceId: must be 16 bytes, not all zero"))?;
    let id = id8(&o.span_id).ok_or_else(|| format!("{path}.spanId: must be 8 bytes, not zero"))?;
    let parent_id = match o.parent_span_id.len() {
        0 => None,
        _ => Some(
            id8(&o.parent_span_id)
                .ok_or_else(|| format!("{path}.parentSpanId: must be 8 bytes, not zero"))?,
        ),
    };
    let kind = match o.kind {
        2 => Some(SpanKind::Server),
        3 => Some(SpanKind::Client),
        4 => Some(SpanKind::Producer),
        5 => Some(SpanKind::Consumer),
        _ => None,
    };
    let mut tags: BTreeMap<String, String> = cx.resource_tags.iter().cloned().collect();
    for (k, v) in &o.attributes {
        tags.insert(k.clone(), v.to_tag());
    }
    if !cx.scope_name.is_empty() {
        tags.insert("otel.scope.name".into(), cx.scope_name.to_string());
    }
    if !cx.scope_version.is_empty() {
        tags.insert("otel.scope.version".into(), cx.scope_version.to_string());
    }
    match o.status_code {
        1 => {
            tags.insert("otel.status_code".into(), "OK".into());
        }
        2 => {
            tags.insert("otel.status_code".into(), "ERROR".into());
            tags.insert("error".into(), o.status_message.clone());
        }
        _ => {}
    }
    let remote_endpoint = remote_endpoint(&o.attributes);
    let annotations = o
        .events
        .into_iter()
        .map(|(t, name, attrs)| {
            let value = if attrs.is_empty() {
                name
            } else {
                let mut v = name;
                v.push_str(": ");
                write_json_map(&mut v, &attrs);
                v
            };
            Annotation {
                timestamp: t / 1000,
                value,
            }
        })
        .collect();
    let timestamp = (o.start_ns >= 1000).then_some(o.start_ns / 1000);
    let duration = o.end_ns.saturating_sub(o.start_ns) / 1000;
    Ok(Span {
        trace_id,
        id,
        parent_id,
        name: (!o.name.is_empty()).then(|| o.name.to_lowercase()),
        kind,
        timestamp,
        duration: (timestamp.is_some() && o.end_ns >= o.start_ns).then_some(duration.max(1)),
        local_endpoint: Some(Endpoint {
            service_name: Some(cx.service.to_lowercase()),
            ..Default::default()
        }),
        remote_endpoint,
        annotations,
        tags,
        debug: false,
        shared: false,
    })
}

fn id8(b: &[u8]) -> Option<u64> {
    let v = u64::from_be_bytes(b.try_into().ok()?);
    (v != 0).then_some(v)
}

fn remote_endpoint(attrs: &[(String, Attr)]) -> Option<Endpoint> {
    let get = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            attrs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.to_tag())
                .filter(|v| !v.is_empty())
        })
    };
    let address = get(&[
        "network.peer.address",
        "net.sock.peer.addr",
        "net.peer.ip",
        "server.address",
        "net.peer.name",
    ]);
    let ip = address.as_deref().and_then(|a| a.parse::<IpAddr>().ok());
    let service = get(&["peer.service"]).or_else(|| {
        get(&["server.address", "net.peer.name"]).filter(|h| h.parse::<IpAddr>().is_err())
    });
    let port = get(&["server.port", "net.peer.port", "network.peer.port"])
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0);
    let e = Endpoint {
        service_name: service.map(|s| s.to_lowercase()),
        ipv4: ip.filter(|i| i.is_ipv4()).map(|i| i.to_string()),
        ipv6: ip.filter(|i| i.is_ipv6()).map(|i| i.to_string()),
        port,
    };
    let empty =
        e.service_name.is_none() && e.ipv4.is_none() && e.ipv6.is_none() && e.port.is_none();
    (!empty).then_some(e)
}

/// Splits resource attributes into the service name and the rest (as tags).
fn resource_parts(attrs: Vec<(String, Attr)>) -> (String, Vec<(String, String)>) {
    let mut service = None;
    let mut rest = Vec::new();
    for (k, v) in attrs {
        if k == "service.name" {
            service = Some(v.to_tag());
        } else {
            rest.push((k, v.to_tag()));
        }
    }
    let service = service
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown_service".into());
    (service, rest)
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    const JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"Checkout"}},
        {"key":"host.name","value":{"stringValue":"node-1"}}]},
      "scopeSpans":[{"scope":{"name":"my.lib","version":"1.2"},"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
         "parentSpanId":"eee19b7ec3c1b173","name":"GET /cart","kind":3,
         "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
         "attributes":[{"key":"http.status_code","value":{"intValue":"500"}},
           {"key":"peer.service","value":{"stringValue":"Cart"}},
           {"key":"server.port","value":{"intValue":8080}},
           {"key":"list","value":{"arrayValue":{"values":[{"stringValue":"a"},{"boolValue":true}]}}}],
         "events":[{"timeUnixNano":"1544712660500000000","name":"retry",
           "attributes":[{"key":"attempt","value":{"intValue":"2"}}]}],
         "status":{"code":2,"message":"boom"}},
        {"traceId":"00","spanId":"eee19b7ec3c1b174"}]}]}]}"#;

    #[test]
    fn json_maps_like_the_zipkin_exporter() {
        let d = decode_json(JSON.as_bytes()).unwrap();
        assert_eq!(d.rejected, 1);
        assert!(d.first_rejection.unwrap().contains("spans[1].traceId"));
        let s = &d.spans[0];
        assert_eq!(s.trace_id.to_string(), "5b8efff798038103d269b633813fc60c");
        assert_eq!(s.local_service(), Some("checkout"));
        assert_eq!(s.remote_service(), Some("cart"));
        assert_eq!(s.remote_endpoint.as_ref().unwrap().port, Some(8080));
        assert_eq!(s.kind, Some(SpanKind::Client));
        assert_eq!(s.name.as_deref(), Some("get /cart"));
        assert_eq!(s.timestamp, Some(1_544_712_660_000_000));
        assert_eq!(s.duration, Some(1_000_000));
        assert_eq!(s.tags["http.status_code"], "500");
        assert_eq!(s.tags["host.name"], "node-1");
        assert_eq!(s.tags["list"], "[\"a\",true]");
        assert_eq!(s.tags["error"], "boom");
        assert_eq!(s.tags["otel.status_code"], "ERROR");
        assert_eq!(s.tags["otel.scope.name"], "my.lib");
        assert_eq!(s.annotations[0].value, "retry: {\"attempt\":2}");
        assert_eq!(s.annotations[0].timestamp, 1_544_712_660_500_000);
    }

    #[test]
    fn proto_round_trip_through_the_encoder() {
        let d = decode_json(JSON.as_bytes()).unwrap();
        let again = decode_proto(&encode_request(&d.spans)).unwrap();
        assert_eq!(again.rejected, 0);
        let (a, b) = (&d.spans[0], &again.spans[0]);
        assert_eq!(a.trace_id, b.trace_id);
        assert_eq!(a.parent_id, b.parent_id);
        assert_eq!(a.timestamp, b.timestamp);
        assert_eq!(a.duration, b.duration);
        assert_eq!(a.kind, b.kind);
        assert_eq!(b.tags["error"], "boom");
        assert_eq!(b.remote_service(), Some("cart"));
    }

    #[test]
    fn errors_say_where() {
        assert!(matches!(
            decode_json(b"[1]"),
            Err(OtlpError::Invalid { .. })
        ));
        assert!(decode_json(b"{")
            .unwrap_err()
            .to_string()
            .starts_with("malformed JSON"));
        let e = decode_json(br#"{"resourceSpans":{}}"#).unwrap_err();
        assert_eq!(e.to_string(), "$.resourceSpans: expected an array");
        assert!(decode_proto(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn partial_success_response() {
        let r =
            ExportTraceServiceResponse::decode(encode_response(2, "bad ids").as_slice()).unwrap();
        assert_eq!(r.partial_success.unwrap().rejected_spans, 2);
        assert!(encode_response(0, "").is_empty());
        assert_eq!(encode_response_json(0, ""), "{}");
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"f"), "Zg==");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_json(&b);
            let _ = decode_proto(&b);
        }
    }
}
