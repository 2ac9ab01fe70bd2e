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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use meshlens_model::{Annotation, Endpoint, Span, SpanKind, TraceId};
use prost::Message;
use serde_json::Value;

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

// ---------------------------------------------------------------------------------------
// The protobuf messages (opentelemetry/proto/collector/trace/v1, trace/v1, common/v1).
// ---------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExportTracePartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<PbSpan>,
}

#[derive(Clone, PartialEq, Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct PbSpan {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(int32, tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Event {
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(int32, tag = "3")]
    pub code: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
        #[prost(message, tag = "6")]
        KvlistValue(super::KeyValueList),
        #[prost(bytes, tag = "7")]
        BytesValue(Vec<u8>),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

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

fn kvs_from_pb(kvs: Vec<KeyValue>) -> Vec<(String, Attr)> {
    kvs.into_iter()
        .map(|kv| (kv.key, Attr::from_pb(kv.value)))
        .collect()
}

/// Decodes a protobuf `ExportTraceServiceRequest`.
pub fn decode_proto(body: &[u8]) -> Result<Decoded, OtlpError> {
    let req =
        ExportTraceServiceRequest::decode(body).map_err(|e| OtlpError::Protobuf(e.to_string()))?;
    let mut out = Decoded::default();
    for (ri, rs) in req.resource_spans.into_iter().enumerate() {
        let (service, resource_tags) = resource_parts(kvs_from_pb(
            rs.resource.map(|r| r.attributes).unwrap_or_default(),
        ));
        for (si, ss) in rs.scope_spans.into_iter().enumerate() {
            let scope = ss.scope.unwrap_or_default();
            let cx = Context {
                service: &service,
                resource_tags: &resource_tags,
                scope_name: &scope.name,
                scope_version: &scope.version,
            };
            for (pi, s) in ss.spans.into_iter().enumerate() {
                let status = s.status.unwrap_or_default();
                let o = OtelSpan {
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent_span_id: s.parent_span_id,
                    name: s.name,
                    kind: s.kind,
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                    attributes: kvs_from_pb(s.attributes),
                    events: s
                        .events
                        .into_iter()
                        .map(|e| (e.time_unix_nano, e.name, kvs_from_pb(e.attributes)))
                        .collect(),
                    status_code: status.code,
                    status_message: status.message,
                };
                let path = format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]");
                match map_span(o, &cx, &path) {
                    Ok(span) => out.spans.push(span),
                    Err(why) => out.reject(why),
                }
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// OTLP/JSON: lowerCamelCase fields (snake_case accepted too), hex ids, 64-bit integers as
// strings or numbers, enums as integers or names.
// ---------------------------------------------------------------------------------------

fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel)
        .or_else(|| v.get(snake))
        .filter(|v| !v.is_null())
}

fn json_err(path: &str, reason: impl Into<String>) -> OtlpError {
    OtlpError::Invalid {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn json_array<'a>(
    v: &'a Value,
    camel: &str,
    snake: &str,
    path: &str,
) -> Result<&'a [Value], OtlpError> {
    match field(v, camel, snake) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(json_err(&format!("{path}.{camel}"), "expected an array")),
    }
}

fn json_str<'a>(v: &'a Value, camel: &str, snake: &str) -> &'a str {
    field(v, camel, snake).and_then(Value::as_str).unwrap_or("")
}

fn json_u64(v: &Value, camel: &str, snake: &str, path: &str) -> Result<u64, OtlpError> {
    match field(v, camel, snake) {
        None => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| json_err(&format!("{path}.{camel}"), "expected an unsigned integer")),
        Some(Value::String(s)) => s.parse().map_err(|_| {
            json_err(
                &format!("{path}.{camel}"),
                format!("{s:?} is not an integer"),
            )
        }),
        Some(_) => Err(json_err(&format!("{path}.{camel}"), "expected an integer")),
    }
}

fn json_hex(v: &Value, camel: &str, snake: &str, path: &str) -> Result<Vec<u8>, String> {
    let s = json_str(v, camel, snake);
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{path}.{camel}: {s:?} is not hex"));
    }
    Ok((0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("checked hex"))
        .collect())
}

fn json_enum(v: &Value, camel: &str, names: &[&str]) -> i32 {
    match v.get(camel) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) as i32,
        Some(Value::String(s)) => names.iter().position(|n| n == s).unwrap_or(0) as i32,
        _ => 0,
    }
}

fn attr_from_json(v: &Value) -> Attr {
    let Some(obj) = v.as_object() else {
        return Attr::Empty;
    };
    if let Some(s) = obj.get("stringValue").or_else(|| obj.get("string_value")) {
        return Attr::Str(s.as_str().unwrap_or_default().to_string());
    }
    if let Some(b) = obj.get("boolValue").or_else(|| obj.get("bool_value")) {
        return Attr::Bool(b.as_bool().unwrap_or(false));
    }
    if let Some(i) = obj.get("intValue").or_else(|| obj.get("int_value")) {
        return match i {
            Value::String(s) => s.parse().map(Attr::Int).unwrap_or(Attr::Str(s.clone())),
            Value::Number(n) => n.as_i64().map(Attr::Int).unwrap_or(Attr::Empty),
            _ => Attr::Empty,
        };
    }
    if let Some(d) = obj.get("doubleValue").or_else(|| obj.get("double_value")) {
        return match d {
            Value::Number(n) => Attr::Double(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => s.parse().map(Attr::Double).unwrap_or(Attr::Str(s.clone())),
            _ => Attr::Empty,
        };
    }
    if let Some(a) = obj.get("arrayValue").or_else(|| obj.get("array_value")) {
        let values = a.get("values").and_then(Value::as_array);
        return Attr::Array(values.into_iter().flatten().map(attr_from_json).collect());
    }
    if let Some(l) = obj.get("kvlistValue").or_else(|| obj.get("kvlist_value")) {
        return Attr::Map(kvs_from_json(l.get("values")));
    }
    if let Some(b) = obj.get("bytesValue").or_else(|| obj.get("bytes_value")) {
        return Attr::Str(b.as_str().unwrap_or_default().to_string());
    }
    Attr::Empty
}

fn kvs_from_json(v: Option<&Value>) -> Vec<(String, Attr)> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let key = kv.get("key")?.as_str()?.to_string();
            Some((
                key,
                kv.get("value").map(attr_from_json).unwrap_or(Attr::Empty),
            ))
        })
        .collect()
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub fn decode_json(body: &[u8]) -> Result<Decoded, OtlpError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| OtlpError::Json(e.to_string()))?;
    if !root.is_object() {
        return Err(json_err("$", "expected an object with resourceSpans"));
    }
    let mut out = Decoded::default();
    for (ri, rs) in json_array(&root, "resourceSpans", "resource_spans", "$")?
        .iter()
        .enumerate()
    {
        let rpath = format!("resourceSpans[{ri}]");
        let resource_attrs = rs
            .get("resource")
            .map(|r| kvs_from_json(r.get("attributes")))
            .unwrap_or_default();
        let (service, resource_tags) = resource_parts(resource_attrs);
        for (si, ss) in json_array(rs, "scopeSpans", "scope_spans", &rpath)?
            .iter()
            .enumerate()
        {
            let spath = format!("{rpath}.scopeSpans[{si}]");
            let scope = ss.get("scope");
            let scope_name = scope.map(|s| json_str(s, "name", "name")).unwrap_or("");
            let scope_version = scope
                .map(|s| json_str(s, "version", "version"))
                .unwrap_or("");
            let cx = Context {
                service: &service,
                resource_tags: &resource_tags,
                scope_name,
                scope_version,
            };
            for (pi, s) in json_array(ss, "spans", "spans", &spath)?.iter().enumerate() {
                let path = format!("{spath}.spans[{pi}]");
                match json_span(s, &path).and_then(|o| map_span(o, &cx, &path)) {
                    Ok(span) => out.spans.push(span),
                    Err(why) => out.reject(why),
                }
            }
        }
    }
    Ok(out)
}

fn json_span(s: &Value, path: &str) -> Result<OtelSpan, String> {
    let status = s.get("status");
    let events = json_array(s, "events", "events", path)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|e| {
            Ok((
                json_u64(e, "timeUnixNano", "time_unix_nano", path).map_err(|e| e.to_string())?,
                json_str(e, "name", "name").to_string(),
                kvs_from_json(e.get("attributes")),
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(OtelSpan {
        trace_id: json_hex(s, "traceId", "trace_id", path)?,
        span_id: json_hex(s, "spanId", "span_id", path)?,
        parent_span_id: json_hex(s, "parentSpanId", "parent_span_id", path)?,
        name: json_str(s, "name", "name").to_string(),
        kind: json_enum(
            s,
            "kind",
            &[
                "SPAN_KIND_UNSPECIFIED",
                "SPAN_KIND_INTERNAL",
                "SPAN_KIND_SERVER",
                "SPAN_KIND_CLIENT",
                "SPAN_KIND_PRODUCER",
                "SPAN_KIND_CONSUMER",
            ],
        ),
        start_ns: json_u64(s, "startTimeUnixNano", "start_time_unix_nano", path)
            .map_err(|e| e.to_string())?,
        end_ns: json_u64(s, "endTimeUnixNano", "end_time_unix_nano", path)
            .map_err(|e| e.to_string())?,
        attributes: kvs_from_json(s.get("attributes")),
        events,
        status_code: status
            .map(|st| {
                json_enum(
                    st,
                    "code",
                    &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"],
                )
            })
            .unwrap_or(0),
        status_message: status
            .map(|st| json_str(st, "message", "message").to_string())
            .unwrap_or_default(),
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
