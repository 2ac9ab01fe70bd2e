//! Zipkin v2 spans: the JSON list (`application/json`) and the proto3 `ListOfSpans`
//! (`application/x-protobuf`), both ways.
//!
//! Decoding normalises as the Zipkin server does: service and span names are lower-cased,
//! hex ids are read case-insensitively and shorter ids are left-padded, a 64-bit or 128-bit
//! trace id keeps its width. Each error names the span (by index) and the field.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};

use meshlens_model::{
    sort_tags, Annotation, Endpoint, EndpointRef, Span, SpanKind, SpanRef, TraceId,
};
use prost::Message;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ZipkinError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("malformed protobuf ListOfSpans: {0}")]
    Protobuf(String),
    #[error("span {index}: {field}: {reason}")]
    InvalidSpan {
        index: usize,
        field: &'static str,
        reason: String,
    },
}

fn invalid(index: usize, field: &'static str, reason: impl Into<String>) -> ZipkinError {
    ZipkinError::InvalidSpan {
        index,
        field,
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan<'a> {
    #[serde(borrow)]
    trace_id: Option<Str<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    parent_id: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    kind: Option<Str<'a>>,
    timestamp: Option<JsonNumber>,
    duration: Option<JsonNumber>,
    #[serde(borrow)]
    local_endpoint: Option<JsonEndpoint<'a>>,
    #[serde(borrow)]
    remote_endpoint: Option<JsonEndpoint<'a>>,
    #[serde(default, borrow)]
    annotations: Vec<JsonAnnotation<'a>>,
    #[serde(default, borrow)]
    tags: Tags<'a>,
    #[serde(default)]
    debug: Option<bool>,
    #[serde(default)]
    shared: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonEndpoint<'a> {
    #[serde(borrow)]
    service_name: Option<Str<'a>>,
    #[serde(borrow)]
    ipv4: Option<Str<'a>>,
    #[serde(borrow)]
    ipv6: Option<Str<'a>>,
    port: Option<serde_json::Number>,
}

#[derive(Deserialize)]
struct JsonAnnotation<'a> {
    timestamp: JsonNumber,
    #[serde(borrow)]
    value: Str<'a>,
}

/// A JSON string, borrowed from the body unless it had escapes. (`Cow<str>` itself always
/// copies when it sits inside an `Option`.)
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// Integers, also accepted as floats (some clients write `1.5e15`). A negative time means
/// unknown, as zero does in Zipkin's span builder; beyond 64 bits is an error.
enum JsonNumber {
    Int(u64),
    Float(f64),
}

impl<'de> Deserialize<'de> for JsonNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JsonNumber;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonNumber, E> {
                Ok(JsonNumber::Int(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonNumber, E> {
                Ok(JsonNumber::Float(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonNumber, E> {
                Ok(JsonNumber::Float(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonNumber {
    fn value(&self) -> Option<u64> {
        const LIMIT: f64 = 9.223_372_036_854_775e18;
        match *self {
            JsonNumber::Int(v) => Some(v),
            JsonNumber::Float(f) if (-LIMIT..=LIMIT).contains(&f) => Some(f.max(0.0) as u64),
            JsonNumber::Float(_) => None,
        }
    }
}

/// The `tags` object, sorted by key (the last of repeated keys wins). Values should be
/// strings; numbers and booleans are kept in their text form.
#[derive(Default)]
struct Tags<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Tags<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Tags<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of tags")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Tags<'a>, A::Error> {
                let mut tags = Vec::with_capacity(m.size_hint().unwrap_or(12));
                while let Some(k) = m.next_key::<Str<'a>>()? {
                    let v = m.next_value::<Scalar<'a>>()?;
                    tags.push((k.0, v.0));
                }
                sort_tags(&mut tags);
                Ok(Tags(tags))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A tag value: a string, or a number or boolean as text (numbers as `serde_json` writes them).
struct Scalar<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'a>, E> {
                Ok(Scalar(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'a>, E> {
                Ok(Scalar(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar<'a>, E> {
                Ok(Scalar(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'a>, E> {
                Ok(Scalar(Cow::Borrowed(if v { "true" } else { "false" })))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'a>, E> {
                Ok(Scalar(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'a>, E> {
                Ok(Scalar(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'a>, E> {
                serde_json::Number::from_f64(v)
                    .map(|n| Scalar(Cow::Owned(n.to_string())))
                    .ok_or_else(|| E::custom("a tag value is not a finite number"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Lower-cases without copying when there is nothing to change.
fn lower(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        Cow::Owned(s.to_lowercase())
    } else {
        s
    }
}

/// Decodes a JSON array of v2 spans.
pub fn decode_json(body: &[u8]) -> Result<Vec<Span>, ZipkinError> {
    Ok(decode_json_refs(body)?
        .iter()
        .map(SpanRef::to_span)
        .collect())
}

/// Decodes a JSON array of v2 spans; strings borrow from `body` where they can.
pub fn decode_json_refs(body: &[u8]) -> Result<Vec<SpanRef<'_>>, ZipkinError> {
    let raw: Vec<JsonSpan<'_>> =
        serde_json::from_slice(body).map_err(|e| ZipkinError::Json(e.to_string()))?;
    raw.into_iter()
        .enumerate()
        .map(|(i, s)| span_from_json(i, s))
        .collect()
}

fn span_from_json(i: usize, s: JsonSpan<'_>) -> Result<SpanRef<'_>, ZipkinError> {
    let trace_id = match s.trace_id.as_ref().map(|t| t.0.as_ref()) {
        None => return Err(invalid(i, "traceId", "missing")),
        Some(t) => TraceId::parse_hex(t)
            .filter(|t| t.high != 0 || t.low != 0)
            .ok_or_else(|| invalid(i, "traceId", format!("{t:?} is not 1 to 32 hex digits")))?,
    };
    let id = match s.id.as_ref().map(|t| t.0.as_ref()) {
        None => return Err(invalid(i, "id", "missing")),
        Some(v) => parse_span_id(v).ok_or_else(|| invalid(i, "id", bad_span_id(v)))?,
    };
    let parent_id = match s.parent_id.as_ref().map(|t| t.0.as_ref()) {
        None | Some("") => None,
        Some(v) => Some(parse_span_id(v).ok_or_else(|| invalid(i, "parentId", bad_span_id(v)))?),
    };
    let kind = match s.kind.as_ref().map(|t| t.0.as_ref()) {
        None => None,
        Some(k) => Some(SpanKind::parse(&k.to_ascii_uppercase()).ok_or_else(|| {
            invalid(
                i,
                "kind",
                format!("{k:?} is not CLIENT, SERVER, PRODUCER or CONSUMER"),
            )
        })?),
    };
    let number = |n: Option<JsonNumber>, field| match n {
        None => Ok(None),
        Some(n) => n
            .value()
            .map(|v| (v != 0).then_some(v))
            .ok_or_else(|| invalid(i, field, "beyond the 64-bit range")),
    };
    let timestamp = number(s.timestamp, "timestamp")?;
    let duration = number(s.duration, "duration")?;
    let mut annotations = Vec::with_capacity(s.annotations.len());
    for a in s.annotations {
        annotations.push((
            number(Some(a.timestamp), "annotations")?.unwrap_or(0),
            a.value.0,
        ));
    }
    Ok(SpanRef {
        trace_id,
        id,
        parent_id: parent_id.filter(|p| *p != 0),
        name: s.name.map(|n| n.0).filter(|n| !n.is_empty()).map(lower),
        kind,
        timestamp,
        duration,
        local_endpoint: endpoint_from_json(i, "localEndpoint", s.local_endpoint)?,
        remote_endpoint: endpoint_from_json(i, "remoteEndpoint", s.remote_endpoint)?,
        annotations,
        tags: s.tags.0,
        debug: s.debug.unwrap_or(false),
        shared: s.shared.unwrap_or(false),
    })
}

fn endpoint_from_json<'a>(
    i: usize,
    field: &'static str,
    e: Option<JsonEndpoint<'a>>,
) -> Result<Option<EndpointRef<'a>>, ZipkinError> {
    let Some(e) = e else { return Ok(None) };
    // A port that is not a TCP port is dropped, as an unknown one.
    let port = e
        .port
        .and_then(|p| p.as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0);
    if let Some(Str(ip)) = &e.ipv4 {
        ip.parse::<Ipv4Addr>()
            .map_err(|_| invalid(i, field, format!("ipv4 {ip:?} is not an IPv4 address")))?;
    }
    if let Some(Str(ip)) = &e.ipv6 {
        ip.parse::<Ipv6Addr>()
            .map_err(|_| invalid(i, field, format!("ipv6 {ip:?} is not an IPv6 address")))?;
    }
    Ok(normalise_endpoint_ref(EndpointRef {
        service_name: e.service_name.map(|s| lower(s.0)),
        ipv4: e.ipv4.map(|s| s.0),
        ipv6: e.ipv6.map(|s| s.0),
        port,
    }))
}

/// An endpoint with nothing in it is absent, as in Zipkin.
fn normalise_endpoint_ref(mut e: EndpointRef<'_>) -> Option<EndpointRef<'_>> {
    if e.service_name.as_deref() == Some("") {
        e.service_name = None;
    }
    let empty =
        e.service_name.is_none() && e.ipv4.is_none() && e.ipv6.is_none() && e.port.is_none();
    (!empty).then_some(e)
}

/// An endpoint with nothing in it is absent, as in Zipkin.
fn normalise_endpoint(mut e: Endpoint) -> Option<Endpoint> {
    if e.service_name.as_deref() == Some("") {
        e.service_name = None;
    }
    let empty =
        e.service_name.is_none() && e.ipv4.is_none() && e.ipv6.is_none() && e.port.is_none();
    (!empty).then_some(e)
}

/// 1 to 16 hex digits, not all zero.
pub fn parse_span_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok().filter(|v| *v != 0)
}

fn bad_span_id(v: &str) -> String {
    format!("{v:?} is not 1 to 16 hex digits (and not zero)")
}

/// Appends one span as Zipkin v2 JSON, omitting absent and empty fields.
pub fn write_json_span(out: &mut String, s: &Span) {
    out.push_str("{\"traceId\":\"");
    let _ = write!(out, "{}", s.trace_id);
    out.push('"');
    if let Some(p) = s.parent_id {
        let _ = write!(out, ",\"parentId\":\"{p:016x}\"");
    }
    let _ = write!(out, ",\"id\":\"{:016x}\"", s.id);
    if let Some(k) = s.kind {
        let _ = write!(out, ",\"kind\":\"{}\"", k.as_str());
    }
    if let Some(n) = &s.name {
        out.push_str(",\"name\":");
        write_json_string(out, n);
    }
    if let Some(t) = s.timestamp {
        let _ = write!(out, ",\"timestamp\":{t}");
    }
    if let Some(d) = s.duration {
        let _ = write!(out, ",\"duration\":{d}");
    }
    if let Some(e) = &s.local_endpoint {
        out.push_str(",\"localEndpoint\":");
        write_json_endpoint(out, e);
    }
    if let Some(e) = &s.remote_endpoint {
        out.push_str(",\"remoteEndpoint\":");
        write_json_endpoint(out, e);
    }
    if !s.annotations.is_empty() {
        out.push_str(",\"annotations\":[");
        for (i, a) in s.annotations.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"timestamp\":{},\"value\":", a.timestamp);
            write_json_string(out, &a.value);
            out.push('}');
        }
        out.push(']');
    }
    if !s.tags.is_empty() {
        out.push_str(",\"tags\":{");
        for (i, (k, v)) in s.tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(out, k);
            out.push(':');
            write_json_string(out, v);
        }
        out.push('}');
    }
    if s.debug {
        out.push_str(",\"debug\":true");
    }
    if s.shared {
        out.push_str(",\"shared\":true");
    }
    out.push('}');
}

/// Encodes spans as a JSON array.
pub fn encode_json(spans: &[Span]) -> String {
    let mut out = String::with_capacity(spans.len() * 400 + 2);
    out.push('[');
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_span(&mut out, s);
    }
    out.push(']');
    out
}

fn write_json_endpoint(out: &mut String, e: &Endpoint) {
    out.push('{');
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
    };
    if let Some(n) = &e.service_name {
        sep(out);
        out.push_str("\"serviceName\":");
        write_json_string(out, n);
    }
    if let Some(ip) = &e.ipv4 {
        sep(out);
        out.push_str("\"ipv4\":");
        write_json_string(out, ip);
    }
    if let Some(ip) = &e.ipv6 {
        sep(out);
        out.push_str("\"ipv6\":");
        write_json_string(out, ip);
    }
    if let Some(p) = e.port {
        sep(out);
        let _ = write!(out, "\"port\":{p}");
    }
    out.push('}');
}

/// Writes `s` as a JSON string literal.
pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------
// proto3
// ---------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, Message)]
struct PbListOfSpans {
    #[prost(message, repeated, tag = "1")]
    spans: Vec<PbSpan>,
}

#[derive(Clone, PartialEq, Message)]
struct PbSpan {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    parent_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    id: Vec<u8>,
    #[prost(int32, tag = "4")]
    kind: i32,
    #[prost(string, tag = "5")]
    name: String,
    #[prost(fixed64, tag = "6")]
    timestamp: u64,
    #[prost(uint64, tag = "7")]
    duration: u64,
    #[prost(message, optional, tag = "8")]
    local_endpoint: Option<PbEndpoint>,
    #[prost(message, optional, tag = "9")]
    remote_endpoint: Option<PbEndpoint>,
    #[prost(message, repeated, tag = "10")]
    annotations: Vec<PbAnnotation>,
    #[prost(btree_map = "string, string", tag = "11")]
    tags: BTreeMap<String, String>,
    #[prost(bool, tag = "12")]
    debug: bool,
    #[prost(bool, tag = "13")]
    shared: bool,
}

#[derive(Clone, PartialEq, Message)]
struct PbEndpoint {
    #[prost(string, tag = "1")]
    service_name: String,
    #[prost(bytes = "vec", tag = "2")]
    ipv4: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    ipv6: Vec<u8>,
    #[prost(int32, tag = "4")]
    port: i32,
}

#[derive(Clone, PartialEq, Message)]
struct PbAnnotation {
    #[prost(fixed64, tag = "1")]
    timestamp: u64,
    #[prost(string, tag = "2")]
    value: String,
}

/// Decodes a proto3 `zipkin.proto3.ListOfSpans`.
pub fn decode_proto(body: &[u8]) -> Result<Vec<Span>, ZipkinError> {
    let list = PbListOfSpans::decode(body).map_err(|e| ZipkinError::Protobuf(e.to_string()))?;
    list.spans
        .into_iter()
        .enumerate()
        .map(|(i, s)| span_from_proto(i, s))
        .collect()
}

fn span_from_proto(i: usize, s: PbSpan) -> Result<Span, ZipkinError> {
    let trace_id = TraceId::from_bytes(&s.trace_id)
        .filter(|t| t.high != 0 || t.low != 0)
        .ok_or_else(|| invalid(i, "trace_id", "must be 8 or 16 bytes, not all zero"))?;
    let id = id_from_bytes(&s.id).ok_or_else(|| invalid(i, "id", "must be 8 bytes, not zero"))?;
    let parent_id = match s.parent_id.len() {
        0 => None,
        _ => Some(
            id_from_bytes(&s.parent_id)
                .ok_or_else(|| invalid(i, "parent_id", "must be 8 bytes, not zero"))?,
        ),
    };
    let kind = match s.kind {
        0 => None,
        1 => Some(SpanKind::Client),
        2 => Some(SpanKind::Server),
        3 => Some(SpanKind::Producer),
        4 => Some(SpanKind::Consumer),
        k => return Err(invalid(i, "kind", format!("unknown kind {k}"))),
    };
    Ok(Span {
        trace_id,
        id,
        parent_id,
        name: (!s.name.is_empty()).then(|| s.name.to_lowercase()),
        kind,
        timestamp: (s.timestamp != 0).then_some(s.timestamp),
        duration: (s.duration != 0).then_some(s.duration),
        local_endpoint: endpoint_from_proto(i, "local_endpoint", s.local_endpoint)?,
        remote_endpoint: endpoint_from_proto(i, "remote_endpoint", s.remote_endpoint)?,
        annotations: s
            .annotations
            .into_iter()
            .map(|a| Annotation {
                timestamp: a.timestamp,
                value: a.value,
            })
            .collect(),
        tags: s.tags,
        debug: s.debug,
        shared: s.shared,
    })
}

fn id_from_bytes(b: &[u8]) -> Option<u64> {
    let v = u64::from_be_bytes(b.try_into().ok()?);
    (v != 0).then_some(v)
}

fn endpoint_from_proto(
    i: usize,
    field: &'static str,
    e: Option<PbEndpoint>,
) -> Result<Option<Endpoint>, ZipkinError> {
    let Some(e) = e else { return Ok(None) };
    let ipv4 = match e.ipv4.len() {
        0 => None,
        4 => Some(Ipv4Addr::new(e.ipv4[0], e.ipv4[1], e.ipv4[2], e.ipv4[3]).to_string()),
        n => return Err(invalid(i, field, format!("ipv4 has {n} bytes, not 4"))),
    };
    let ipv6 = match e.ipv6.len() {
        0 => None,
        16 => {
            let b: [u8; 16] = e.ipv6.as_slice().try_into().expect("16 bytes");
            Some(Ipv6Addr::from(b).to_string())
        }
        n => return Err(invalid(i, field, format!("ipv6 has {n} bytes, not 16"))),
    };
    let port = match e.port {
        0 => None,
        p => Some(
            u16::try_from(p).map_err(|_| invalid(i, field, format!("port {p} is out of range")))?,
        ),
    };
    Ok(normalise_endpoint(Endpoint {
        service_name: (!e.service_name.is_empty()).then(|| e.service_name.to_lowercase()),
        ipv4,
        ipv6,
        port,
    }))
}

/// Encodes spans as a proto3 `ListOfSpans` (what Zipkin's proto reporters send).
pub fn encode_proto(spans: &[Span]) -> Vec<u8> {
    let endpoint = |e: &Option<Endpoint>| {
        e.as_ref().map(|e| PbEndpoint {
            service_name: e.service_name.clone().unwrap_or_default(),
            ipv4: e
                .ipv4
                .as_deref()
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
                .map(|a| a.octets().to_vec())
                .unwrap_or_default(),
            ipv6: e
                .ipv6
                .as_deref()
                .and_then(|s| s.parse::<Ipv6Addr>().ok())
                .map(|a| a.octets().to_vec())
                .unwrap_or_default(),
            port: e.port.map(i32::from).unwrap_or(0),
        })
    };
    let list = PbListOfSpans {
        spans: spans
            .iter()
            .map(|s| PbSpan {
                trace_id: if s.trace_id.is_128 {
                    let mut b = s.trace_id.high.to_be_bytes().to_vec();
                    b.extend_from_slice(&s.trace_id.low.to_be_bytes());
                    b
                } else {
                    s.trace_id.low.to_be_bytes().to_vec()
                },
                parent_id: s
                    .parent_id
                    .map(|p| p.to_be_bytes().to_vec())
                    .unwrap_or_default(),
                id: s.id.to_be_bytes().to_vec(),
                kind: match s.kind {
                    None => 0,
                    Some(SpanKind::Client) => 1,
                    Some(SpanKind::Server) => 2,
                    Some(SpanKind::Producer) => 3,
                    Some(SpanKind::Consumer) => 4,
                },
                name: s.name.clone().unwrap_or_default(),
                timestamp: s.timestamp.unwrap_or(0),
                duration: s.duration.unwrap_or(0),
                local_endpoint: endpoint(&s.local_endpoint),
                remote_endpoint: endpoint(&s.remote_endpoint),
                annotations: s
                    .annotations
                    .iter()
                    .map(|a| PbAnnotation {
                        timestamp: a.timestamp,
                        value: a.value.clone(),
                    })
                    .collect(),
                tags: s.tags.clone(),
                debug: s.debug,
                shared: s.shared,
            })
            .collect(),
    };
    list.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = r#"[{"traceId":"5AF7183FB1D4CF5F","parentId":"6b221d5bc9e6496c",
      "id":"352bff9a74ca9ad2","kind":"client","name":"GET /API","timestamp":1556604172355737,
      "duration":1431,"localEndpoint":{"serviceName":"Frontend","ipv4":"192.168.99.1","port":3306},
      "remoteEndpoint":{"serviceName":"backend","ipv6":"2001:db8::c001"},
      "annotations":[{"timestamp":1556604172355800,"value":"wr"}],
      "tags":{"http.status_code":200,"error":"", "ok":true},"shared":true}]"#;

    #[test]
    fn json_decodes_and_normalises_like_zipkin() {
        let spans = decode_json(SAMPLE.as_bytes()).unwrap();
        let s = &spans[0];
        assert_eq!(s.trace_id.to_string(), "5af7183fb1d4cf5f");
        assert!(!s.trace_id.is_128);
        assert_eq!(s.parent_id, Some(0x6b221d5bc9e6496c));
        assert_eq!(s.kind, Some(SpanKind::Client));
        assert_eq!(s.name.as_deref(), Some("get /api"));
        assert_eq!(s.local_service(), Some("frontend"));
        assert_eq!(s.tags["http.status_code"], "200");
        assert_eq!(s.tags["ok"], "true");
        assert!(s.shared);
    }

    #[test]
    fn json_round_trips() {
        let spans = decode_json(SAMPLE.as_bytes()).unwrap();
        let again = decode_json(encode_json(&spans).as_bytes()).unwrap();
        assert_eq!(spans, again);
    }

    #[test]
    fn proto_round_trips() {
        let spans = decode_json(SAMPLE.as_bytes()).unwrap();
        let again = decode_proto(&encode_proto(&spans)).unwrap();
        assert_eq!(spans, again);
    }

    #[test]
    fn errors_name_the_span_and_field() {
        let e =
            decode_json(br#"[{"traceId":"0000000000000001","id":"1"},{"traceId":"zz","id":"1"}]"#)
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "span 1: traceId: \"zz\" is not 1 to 32 hex digits"
        );
        let e = decode_json(br#"[{"traceId":"01","id":"1","kind":"sideways"}]"#).unwrap_err();
        assert!(e.to_string().starts_with("span 0: kind:"), "{e}");
        let e = decode_json(br#"[{"traceId":"01"}]"#).unwrap_err();
        assert_eq!(e.to_string(), "span 0: id: missing");
        let e = decode_json(b"[{").unwrap_err();
        assert!(e.to_string().starts_with("malformed JSON"), "{e}");
    }

    #[test]
    fn string_escapes_survive() {
        let mut s = decode_json(SAMPLE.as_bytes()).unwrap();
        s[0].tags.insert("q".into(), "a\"b\\c\n\u{1}é".into());
        assert_eq!(decode_json(encode_json(&s).as_bytes()).unwrap(), s);
    }

    /// The JSON decoder before spans were borrowed (owned strings, untagged enums), kept
    /// to check the borrowing one against.
    mod legacy {
        use super::super::*;

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct JsonSpan {
            trace_id: Option<String>,
            id: Option<String>,
            parent_id: Option<String>,
            name: Option<String>,
            kind: Option<String>,
            timestamp: Option<JsonNumber>,
            duration: Option<JsonNumber>,
            local_endpoint: Option<JsonEndpoint>,
            remote_endpoint: Option<JsonEndpoint>,
            #[serde(default)]
            annotations: Vec<JsonAnnotation>,
            #[serde(default)]
            tags: BTreeMap<String, JsonScalar>,
            #[serde(default)]
            debug: Option<bool>,
            #[serde(default)]
            shared: Option<bool>,
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct JsonEndpoint {
            service_name: Option<String>,
            ipv4: Option<String>,
            ipv6: Option<String>,
            port: Option<serde_json::Number>,
        }

        #[derive(Deserialize)]
        struct JsonAnnotation {
            timestamp: JsonNumber,
            value: String,
        }

        /// Integers, also accepted as floats (some clients write `1.5e15`). A negative time means
        /// unknown, as zero does in Zipkin's span builder; beyond 64 bits is an error.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum JsonNumber {
            Int(u64),
            Float(f64),
        }

        impl JsonNumber {
            fn value(&self) -> Option<u64> {
                const LIMIT: f64 = 9.223_372_036_854_775e18;
                match *self {
                    JsonNumber::Int(v) => Some(v),
                    JsonNumber::Float(f) if (-LIMIT..=LIMIT).contains(&f) => {
                        Some(f.max(0.0) as u64)
                    }
                    JsonNumber::Float(_) => None,
                }
            }
        }

        /// Tag values should be strings; numbers and booleans are kept in their text form.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum JsonScalar {
            Str(String),
            Bool(bool),
            Num(serde_json::Number),
        }

        impl JsonScalar {
            fn into_string(self) -> String {
                match self {
                    JsonScalar::Str(s) => s,
                    JsonScalar::Bool(b) => b.to_string(),
                    JsonScalar::Num(n) => n.to_string(),
                }
            }
        }

        /// Decodes a JSON array of v2 spans.
        pub(super) fn decode_json(body: &[u8]) -> Result<Vec<Span>, ZipkinError> {
            let raw: Vec<JsonSpan> =
                serde_json::from_slice(body).map_err(|e| ZipkinError::Json(e.to_string()))?;
            raw.into_iter()
                .enumerate()
                .map(|(i, s)| span_from_json(i, s))
                .collect()
        }

        fn span_from_json(i: usize, s: JsonSpan) -> Result<Span, ZipkinError> {
            let trace_id = match s.trace_id.as_deref() {
                None => return Err(invalid(i, "traceId", "missing")),
                Some(t) => TraceId::parse_hex(t)
                    .filter(|t| t.high != 0 || t.low != 0)
                    .ok_or_else(|| {
                        invalid(i, "traceId", format!("{t:?} is not 1 to 32 hex digits"))
                    })?,
            };
            let id = match s.id.as_deref() {
                None => return Err(invalid(i, "id", "missing")),
                Some(v) => parse_span_id(v).ok_or_else(|| invalid(i, "id", bad_span_id(v)))?,
            };
            let parent_id = match s.parent_id.as_deref() {
                None | Some("") => None,
                Some(v) => {
                    Some(parse_span_id(v).ok_or_else(|| invalid(i, "parentId", bad_span_id(v)))?)
                }
            };
            let kind = match s.kind.as_deref() {
                None => None,
                Some(k) => Some(SpanKind::parse(&k.to_ascii_uppercase()).ok_or_else(|| {
                    invalid(
                        i,
                        "kind",
                        format!("{k:?} is not CLIENT, SERVER, PRODUCER or CONSUMER"),
                    )
                })?),
            };
            let number = |n: Option<JsonNumber>, field| match n {
                None => Ok(None),
                Some(n) => n
                    .value()
                    .map(|v| (v != 0).then_some(v))
                    .ok_or_else(|| invalid(i, field, "beyond the 64-bit range")),
            };
            let timestamp = number(s.timestamp, "timestamp")?;
            let duration = number(s.duration, "duration")?;
            let mut annotations = Vec::with_capacity(s.annotations.len());
            for a in s.annotations {
                annotations.push(Annotation {
                    timestamp: number(Some(a.timestamp), "annotations")?.unwrap_or(0),
                    value: a.value,
                });
            }
            Ok(Span {
                trace_id,
                id,
                parent_id: parent_id.filter(|p| *p != 0),
                name: s.name.filter(|n| !n.is_empty()).map(|n| n.to_lowercase()),
                kind,
                timestamp,
                duration,
                local_endpoint: endpoint_from_json(i, "localEndpoint", s.local_endpoint)?,
                remote_endpoint: endpoint_from_json(i, "remoteEndpoint", s.remote_endpoint)?,
                annotations,
                tags: s
                    .tags
                    .into_iter()
                    .map(|(k, v)| (k, v.into_string()))
                    .collect(),
                debug: s.debug.unwrap_or(false),
                shared: s.shared.unwrap_or(false),
            })
        }

        fn endpoint_from_json(
            i: usize,
            field: &'static str,
            e: Option<JsonEndpoint>,
        ) -> Result<Option<Endpoint>, ZipkinError> {
            let Some(e) = e else { return Ok(None) };
            // A port that is not a TCP port is dropped, as an unknown one.
            let port = e
                .port
                .and_then(|p| p.as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0);
            if let Some(ip) = &e.ipv4 {
                ip.parse::<Ipv4Addr>().map_err(|_| {
                    invalid(i, field, format!("ipv4 {ip:?} is not an IPv4 address"))
                })?;
            }
            if let Some(ip) = &e.ipv6 {
                ip.parse::<Ipv6Addr>().map_err(|_| {
                    invalid(i, field, format!("ipv6 {ip:?} is not an IPv6 address"))
                })?;
            }
            Ok(normalise_endpoint(Endpoint {
                service_name: e.service_name.map(|s| s.to_lowercase()),
                ipv4: e.ipv4,
                ipv6: e.ipv6,
                port,
            }))
        }
    }

    fn one_of(values: &'static [&'static str]) -> BoxedStrategy<String> {
        proptest::sample::select(values)
            .prop_map(str::to_string)
            .boxed()
    }

    /// A field's value: mostly what clients send, sometimes what they should not.
    fn value(valid: BoxedStrategy<String>) -> BoxedStrategy<String> {
        prop_oneof![
            40 => valid,
            1 => one_of(&["null", "true", "[]", "{}", "-7", "\"\""]),
        ]
        .boxed()
    }

    fn text() -> BoxedStrategy<String> {
        prop_oneof![
            one_of(&[
                "\"Frontend\"",
                "\"get /API\"",
                "\"a\\\"b\\u00e9\\n\"",
                "\"\"",
                "\"ÄB\""
            ]),
            "\"[a-zA-Z0-9 ./é]{0,6}\"",
        ]
        .boxed()
    }

    fn number() -> BoxedStrategy<String> {
        prop_oneof![
            one_of(&[
                "0",
                "-7",
                "1.5e15",
                "1e300",
                "2.50",
                "18446744073709551615",
                "18446744073709551616"
            ]),
            any::<u64>().prop_map(|v| v.to_string()),
        ]
        .boxed()
    }

    /// An object holding each of `fields` or not, in the given order.
    fn object(fields: Vec<(&'static str, BoxedStrategy<String>)>) -> BoxedStrategy<String> {
        let parts: Vec<BoxedStrategy<Option<String>>> = fields
            .into_iter()
            .map(|(k, v)| {
                let p = if k == "traceId" || k == "id" {
                    0.97
                } else {
                    0.6
                };
                proptest::option::weighted(p, v.prop_map(move |v| format!("\"{k}\":{v}"))).boxed()
            })
            .collect();
        parts
            .prop_map(|p| {
                format!(
                    "{{{}}}",
                    p.into_iter().flatten().collect::<Vec<_>>().join(",")
                )
            })
            .boxed()
    }

    fn json_span() -> BoxedStrategy<String> {
        let id = || {
            value(one_of(&[
                "\"352bff9a74ca9ad2\"",
                "\"1\"",
                "\"6B221D5BC9E6496C\"",
                "\"352bff9a74ca9ad2\"",
                "\"0\"",
                "\"xyz\"",
            ]))
        };
        let endpoint = || {
            value(object(vec![
                ("serviceName", value(text())),
                (
                    "ipv4",
                    value(one_of(&["\"10.0.0.1\"", "\"10.0.0.2\"", "\"::1\""])),
                ),
                (
                    "ipv6",
                    value(one_of(&["\"2001:db8::c001\"", "\"::1\"", "\"10.0.0.1\""])),
                ),
                ("port", value(one_of(&["8080", "0", "70000", "-1", "80.5"]))),
            ]))
        };
        let tag_value = prop_oneof![text(), number(), one_of(&["true", "false", "null", "[1]"])];
        let tags = proptest::collection::vec(
            (
                proptest::sample::select(&["http.status_code", "error", "Upper", "a\\u00e9"][..]),
                tag_value,
            ),
            0..5,
        )
        .prop_map(|kv| {
            let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", body.join(","))
        });
        let annotation = object(vec![
            ("timestamp", value(number())),
            ("value", value(text())),
        ]);
        let annotations =
            proptest::collection::vec(annotation, 0..3).prop_map(|a| format!("[{}]", a.join(",")));
        object(vec![
            (
                "traceId",
                value(one_of(&[
                    "\"5af7183fb1d4cf5f\"",
                    "\"463AC35C9F6413AD48485A3953BB6124\"",
                    "\"5af7183fb1d4cf5f\"",
                    "\"0000000000000000\"",
                ])),
            ),
            ("id", id()),
            ("parentId", id()),
            ("name", value(text())),
            (
                "kind",
                value(one_of(&[
                    "\"client\"",
                    "\"SERVER\"",
                    "\"Producer\"",
                    "\"sideways\"",
                ])),
            ),
            ("timestamp", value(number())),
            ("duration", value(number())),
            ("localEndpoint", endpoint()),
            ("remoteEndpoint", endpoint()),
            ("annotations", value(annotations.boxed())),
            ("tags", value(tags.boxed())),
            ("debug", value(one_of(&["true", "false"]))),
            ("shared", value(one_of(&["true", "false"]))),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_json(&b);
            let _ = decode_proto(&b);
        }

        /// The borrowing decoder reads every body as the owned one did: the same spans, or
        /// an error for the same span and field (serde's own messages may differ).
        #[test]
        fn borrowed_json_decoding_equals_the_owned_decoder(
            spans in proptest::collection::vec(json_span(), 0..3)
        ) {
            let body = format!("[{}]", spans.join(","));
            match (decode_json(body.as_bytes()), legacy::decode_json(body.as_bytes())) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(ZipkinError::Json(_)), Err(ZipkinError::Json(_))) => {}
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => prop_assert!(false, "{}: new {:?}, old {:?}", body, a, b),
            }
        }
    }
}
