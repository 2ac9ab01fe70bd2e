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
pub mod metrics;
mod proto;
mod wire;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

use meshlens_model::{sort_tags, EndpointRef, Span, SpanKind, SpanRef, TraceId};

use crate::zipkin::write_json_string;

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("malformed protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(String),
    #[error("malformed protobuf ExportMetricsServiceRequest: {0}")]
    MetricsProtobuf(String),
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

/// [`Decoded`] with spans borrowed from the request body.
#[derive(Debug, Default)]
pub struct DecodedRefs<'a> {
    pub spans: Vec<SpanRef<'a>>,
    pub rejected: u64,
    pub first_rejection: Option<String>,
}

impl DecodedRefs<'_> {
    fn reject(&mut self, why: String) {
        self.rejected += 1;
        if self.first_rejection.is_none() {
            self.first_rejection = Some(why);
        }
    }

    pub fn into_owned(self) -> Decoded {
        Decoded {
            spans: self.spans.iter().map(SpanRef::to_span).collect(),
            rejected: self.rejected,
            first_rejection: self.first_rejection,
        }
    }
}

pub use encode::{encode_request, encode_response, encode_response_json};
pub use json::decode_json;
pub use proto::{
    any_value, AnyValue, ArrayValue, Event, ExportTracePartialSuccess, ExportTraceServiceRequest,
    ExportTraceServiceResponse, InstrumentationScope, KeyValue, KeyValueList, PbSpan, Resource,
    ResourceSpans, ScopeSpans, Status,
};
pub use wire::decode_proto_refs;

/// Decodes a protobuf `ExportTraceServiceRequest` into owned spans.
pub fn decode_proto(body: &[u8]) -> Result<Decoded, OtlpError> {
    Ok(decode_proto_refs(body)?.into_owned())
}

/// The attribute value model both encodings decode into; strings borrowed where possible.
#[derive(Clone, Debug, PartialEq)]
enum Attr<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    Int(i64),
    Double(f64),
    Array(Vec<Attr<'a>>),
    Map(Vec<(Cow<'a, str>, Attr<'a>)>),
    Bytes(Cow<'a, [u8]>),
    Empty,
}

/// Attributes as decoded: key and value, in the order sent.
type Attrs<'a> = Vec<(Cow<'a, str>, Attr<'a>)>;

/// Tags as text: key and value.
type Tags<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

impl<'a> Attr<'a> {
    /// The tag text: scalars plain, arrays and maps as JSON.
    fn to_tag(&self) -> Cow<'a, str> {
        match self {
            Attr::Str(s) => s.clone(),
            Attr::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Attr::Int(i) => Cow::Owned(i.to_string()),
            Attr::Double(d) => Cow::Owned(d.to_string()),
            Attr::Bytes(b) => Cow::Owned(base64_encode(b)),
            Attr::Empty => Cow::Borrowed(""),
            Attr::Array(_) | Attr::Map(_) => {
                let mut out = String::new();
                self.write_json(&mut out);
                Cow::Owned(out)
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

fn write_json_map(out: &mut String, items: &[(Cow<'_, str>, Attr<'_>)]) {
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

/// Lower-cases without copying when there is nothing to change.
fn lower(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        Cow::Owned(s.to_lowercase())
    } else {
        s
    }
}

/// An event: time (ns), name, attributes.
type OtelEvent<'a> = (u64, Cow<'a, str>, Attrs<'a>);

/// One OTLP span with its context, in a form independent of the wire encoding.
struct OtelSpan<'a> {
    trace_id: Cow<'a, [u8]>,
    span_id: Cow<'a, [u8]>,
    parent_span_id: Cow<'a, [u8]>,
    name: Cow<'a, str>,
    kind: i32,
    start_ns: u64,
    end_ns: u64,
    attributes: Attrs<'a>,
    events: Vec<OtelEvent<'a>>,
    status_code: i32,
    status_message: Cow<'a, str>,
}

/// What the spans of one scope share: the resource's (lower-cased) service and other
/// attributes as tags, and the scope.
struct Context<'a> {
    service: Cow<'a, str>,
    resource_tags: Tags<'a>,
    scope_name: Cow<'a, str>,
    scope_version: Cow<'a, str>,
}

/// Maps one span; the error (a rejection) names it by `path`, built only then.
fn map_span<'a>(
    o: OtelSpan<'a>,
    cx: &Context<'a>,
    path: &dyn Fn() -> String,
) -> Result<SpanRef<'a>, String> {
    let trace_id = TraceId::from_bytes(&o.trace_id)
        .filter(|t| t.high != 0 || t.low != 0)
        // A zero upper half is a 64-bit id, as Zipkin normalises it: a B3 trace that crossed
        // OTLP (e.g. through an agent) keeps the id it was logged and is looked up with.
        .map(|t| TraceId {
            is_128: t.high != 0,
            ..t
        })
        .ok_or_else(|| format!("{}.traceId: must be 16 bytes, not all zero", path()))?;
    let id =
        id8(&o.span_id).ok_or_else(|| format!("{}.spanId: must be 8 bytes, not zero", path()))?;
    let parent_id = match o.parent_span_id.len() {
        0 => None,
        _ => Some(
            id8(&o.parent_span_id)
                .ok_or_else(|| format!("{}.parentSpanId: must be 8 bytes, not zero", path()))?,
        ),
    };
    let kind = match o.kind {
        2 => Some(SpanKind::Server),
        3 => Some(SpanKind::Client),
        4 => Some(SpanKind::Producer),
        5 => Some(SpanKind::Consumer),
        _ => None,
    };
    // Pushed in precedence order (resource, attributes, scope, status): on repeated keys
    // the last one wins, as inserting into a map in this order did.
    let mut tags = Vec::with_capacity(cx.resource_tags.len() + o.attributes.len() + 4);
    tags.extend(cx.resource_tags.iter().cloned());
    for (k, v) in &o.attributes {
        tags.push((k.clone(), v.to_tag()));
    }
    if !cx.scope_name.is_empty() {
        tags.push((Cow::Borrowed("otel.scope.name"), cx.scope_name.clone()));
    }
    if !cx.scope_version.is_empty() {
        tags.push((
            Cow::Borrowed("otel.scope.version"),
            cx.scope_version.clone(),
        ));
    }
    match o.status_code {
        1 => tags.push((Cow::Borrowed("otel.status_code"), Cow::Borrowed("OK"))),
        2 => {
            tags.push((Cow::Borrowed("otel.status_code"), Cow::Borrowed("ERROR")));
            tags.push((Cow::Borrowed("error"), o.status_message.clone()));
        }
        _ => {}
    }
    sort_tags(&mut tags);
    let remote_endpoint = remote_endpoint(&o.attributes);
    let annotations = o
        .events
        .into_iter()
        .map(|(t, name, attrs)| {
            let value = if attrs.is_empty() {
                name
            } else {
                let mut v = name.into_owned();
                v.push_str(": ");
                write_json_map(&mut v, &attrs);
                Cow::Owned(v)
            };
            (t / 1000, value)
        })
        .collect();
    let timestamp = (o.start_ns >= 1000).then_some(o.start_ns / 1000);
    let duration = o.end_ns.saturating_sub(o.start_ns) / 1000;
    Ok(SpanRef {
        trace_id,
        id,
        parent_id,
        name: (!o.name.is_empty()).then(|| lower(o.name)),
        kind,
        timestamp,
        duration: (timestamp.is_some() && o.end_ns >= o.start_ns).then_some(duration.max(1)),
        local_endpoint: Some(EndpointRef {
            service_name: Some(cx.service.clone()),
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

fn remote_endpoint<'a>(attrs: &[(Cow<'a, str>, Attr<'a>)]) -> Option<EndpointRef<'a>> {
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
    let e = EndpointRef {
        service_name: service.map(lower),
        ipv4: ip
            .filter(|i| i.is_ipv4())
            .map(|i| Cow::Owned(i.to_string())),
        ipv6: ip
            .filter(|i| i.is_ipv6())
            .map(|i| Cow::Owned(i.to_string())),
        port,
    };
    let empty =
        e.service_name.is_none() && e.ipv4.is_none() && e.ipv6.is_none() && e.port.is_none();
    (!empty).then_some(e)
}

/// Splits resource attributes into the (lower-cased) service name and the rest as tags.
fn resource_parts(attrs: Attrs<'_>) -> (Cow<'_, str>, Tags<'_>) {
    let mut service = None;
    let mut rest = Vec::with_capacity(attrs.len());
    for (k, v) in attrs {
        if k == "service.name" {
            service = Some(v.to_tag());
        } else {
            rest.push((k, v.to_tag()));
        }
    }
    let service = service
        .filter(|s| !s.is_empty())
        .unwrap_or(Cow::Borrowed("unknown_service"));
    (lower(service), rest)
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
