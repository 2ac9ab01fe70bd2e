//! OTLP/JSON: lowerCamelCase fields (snake_case accepted too), hex ids, 64-bit integers as
//! strings or numbers, enums as integers or names.

use std::borrow::Cow;

use serde_json::Value;

use super::{
    map_span, resource_parts, Attr, Attrs, Context, Decoded, DecodedRefs, OtelSpan, OtlpError,
};

pub(super) fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel)
        .or_else(|| v.get(snake))
        .filter(|v| !v.is_null())
}

pub(super) fn json_err(path: &str, reason: impl Into<String>) -> OtlpError {
    OtlpError::Invalid {
        path: path.to_string(),
        reason: reason.into(),
    }
}

pub(super) fn json_array<'a>(
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

pub(super) fn json_str<'a>(v: &'a Value, camel: &str, snake: &str) -> &'a str {
    field(v, camel, snake).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn json_u64(v: &Value, camel: &str, snake: &str, path: &str) -> Result<u64, OtlpError> {
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

pub(super) fn json_enum(v: &Value, camel: &str, names: &[&str]) -> i32 {
    match v.get(camel) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) as i32,
        Some(Value::String(s)) => names.iter().position(|n| n == s).unwrap_or(0) as i32,
        _ => 0,
    }
}

pub(super) fn attr_from_json(v: &Value) -> Attr<'_> {
    let Some(obj) = v.as_object() else {
        return Attr::Empty;
    };
    if let Some(s) = obj.get("stringValue").or_else(|| obj.get("string_value")) {
        return Attr::Str(Cow::Borrowed(s.as_str().unwrap_or_default()));
    }
    if let Some(b) = obj.get("boolValue").or_else(|| obj.get("bool_value")) {
        return Attr::Bool(b.as_bool().unwrap_or(false));
    }
    if let Some(i) = obj.get("intValue").or_else(|| obj.get("int_value")) {
        return match i {
            Value::String(s) => s
                .parse()
                .map(Attr::Int)
                .unwrap_or(Attr::Str(Cow::Borrowed(s))),
            Value::Number(n) => n.as_i64().map(Attr::Int).unwrap_or(Attr::Empty),
            _ => Attr::Empty,
        };
    }
    if let Some(d) = obj.get("doubleValue").or_else(|| obj.get("double_value")) {
        return match d {
            Value::Number(n) => Attr::Double(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => s
                .parse()
                .map(Attr::Double)
                .unwrap_or(Attr::Str(Cow::Borrowed(s))),
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
        return Attr::Str(Cow::Borrowed(b.as_str().unwrap_or_default()));
    }
    Attr::Empty
}

pub(super) fn kvs_from_json(v: Option<&Value>) -> Attrs<'_> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let key = Cow::Borrowed(kv.get("key")?.as_str()?);
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
    let mut out = DecodedRefs::default();
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
                service: service.clone(),
                resource_tags: resource_tags.clone(),
                scope_name: Cow::Borrowed(scope_name),
                scope_version: Cow::Borrowed(scope_version),
            };
            for (pi, s) in json_array(ss, "spans", "spans", &spath)?.iter().enumerate() {
                let path = format!("{spath}.spans[{pi}]");
                match json_span(s, &path).and_then(|o| map_span(o, &cx, &|| path.clone())) {
                    Ok(span) => out.spans.push(span),
                    Err(why) => out.reject(why),
                }
            }
        }
    }
    Ok(out.into_owned())
}

fn json_span<'a>(s: &'a Value, path: &str) -> Result<OtelSpan<'a>, String> {
    let status = s.get("status");
    let events = json_array(s, "events", "events", path)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|e| {
            Ok((
                json_u64(e, "timeUnixNano", "time_unix_nano", path).map_err(|e| e.to_string())?,
                Cow::Borrowed(json_str(e, "name", "name")),
                kvs_from_json(e.get("attributes")),
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(OtelSpan {
        trace_id: Cow::Owned(json_hex(s, "traceId", "trace_id", path)?),
        span_id: Cow::Owned(json_hex(s, "spanId", "span_id", path)?),
        parent_span_id: Cow::Owned(json_hex(s, "parentSpanId", "parent_span_id", path)?),
        name: Cow::Borrowed(json_str(s, "name", "name")),
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
        status_message: Cow::Borrowed(
            status
                .map(|st| json_str(st, "message", "message"))
                .unwrap_or(""),
        ),
    })
}
