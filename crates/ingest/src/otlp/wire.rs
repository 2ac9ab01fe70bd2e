//! Decoding a protobuf `ExportTraceServiceRequest` straight off the request body.
//!
//! Why not prost: its message types own every string, so a request of 500 spans built some
//! 15,000 strings and vectors only to copy them again into spans. Here ids and strings are
//! borrowed from the body and each span is mapped as soon as it is read. The wire rules are
//! the ones prost applies: fields in any order, unknown fields skipped, the last occurrence
//! of a scalar wins, a repeated message field merges, strings must be UTF-8, a field with
//! the wrong wire type is an error.

use std::borrow::Cow;

use super::OtlpError;
use super::{map_span, resource_parts, Attr, Attrs, Context, DecodedRefs, OtelEvent, OtelSpan};

/// Messages nested deeper than this are refused (prost's recursion limit).
pub(super) const MAX_DEPTH: u32 = 100;

pub(super) const VARINT: u8 = 0;
pub(super) const I64: u8 = 1;
pub(super) const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
pub(super) const I32: u8 = 5;

type Result<T> = std::result::Result<T, OtlpError>;

pub(super) fn err(msg: impl Into<String>) -> OtlpError {
    OtlpError::Protobuf(msg.into())
}

/// One nesting level down, or the recursion error.
pub(super) fn deeper(depth: u32) -> Result<u32> {
    depth
        .checked_sub(1)
        .ok_or_else(|| err("recursion limit reached"))
}

/// A cursor over the bytes of one message.
pub(super) struct Wire<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Wire<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Wire<'a> {
        Wire { buf, pos: 0 }
    }

    pub(super) fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| err("buffer underflow"))?;
            self.pos += 1;
            if i == 9 && b > 1 {
                break;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(err("invalid varint"))
    }

    /// The next field's number and wire type; `None` at the end of the message.
    pub(super) fn key(&mut self) -> Result<Option<(u32, u8)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        let k = u32::try_from(k).map_err(|_| err(format!("invalid key value: {k}")))?;
        let (field, wire_type) = (k >> 3, (k & 7) as u8);
        if field == 0 {
            return Err(err("invalid tag value: 0"));
        }
        if wire_type > I32 {
            return Err(err(format!("invalid wire type value: {wire_type}")));
        }
        Ok(Some((field, wire_type)))
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| err("buffer underflow"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(super) fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| err("buffer underflow"))?)
    }

    pub(super) fn str(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| err("invalid string value: data is not UTF-8 encoded"))
    }

    pub(super) fn fixed64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| err("buffer underflow"))?,
        ))
    }

    /// Skips a field this decoder does not read (groups included, as prost does).
    pub(super) fn skip(&mut self, field: u32, wire_type: u8, depth: u32) -> Result<()> {
        match wire_type {
            VARINT => {
                self.varint()?;
            }
            I64 => {
                self.take(8)?;
            }
            LEN => {
                self.bytes()?;
            }
            I32 => {
                self.take(4)?;
            }
            START_GROUP => {
                let depth = deeper(depth)?;
                loop {
                    match self.key()? {
                        None => return Err(err("buffer underflow")),
                        Some((f, END_GROUP)) if f == field => break,
                        Some((_, END_GROUP)) => return Err(err("unexpected end group tag")),
                        Some((f, w)) => self.skip(f, w, depth)?,
                    }
                }
            }
            _ => return Err(err("unexpected end group tag")),
        }
        Ok(())
    }
}

/// A known field must come with its declared wire type.
pub(super) fn want(field: u32, wire_type: u8, expected: u8) -> Result<()> {
    if wire_type == expected {
        Ok(())
    } else {
        Err(err(format!(
            "invalid wire type for field {field}: {wire_type} (expected {expected})"
        )))
    }
}

/// Decodes a protobuf `ExportTraceServiceRequest`; spans borrow from `body`.
pub fn decode_proto_refs(body: &[u8]) -> Result<DecodedRefs<'_>> {
    let mut out = DecodedRefs::default();
    let mut w = Wire::new(body);
    let mut ri = 0;
    while let Some((f, wt)) = w.key()? {
        if f == 1 {
            want(f, wt, LEN)?;
            resource_spans(w.bytes()?, ri, &mut out, MAX_DEPTH - 1)?;
            ri += 1;
        } else {
            w.skip(f, wt, MAX_DEPTH)?;
        }
    }
    Ok(out)
}

/// `ResourceSpans`: the resource may come after its scopes, so scopes are mapped last.
fn resource_spans<'a>(
    buf: &'a [u8],
    ri: usize,
    out: &mut DecodedRefs<'a>,
    depth: u32,
) -> Result<()> {
    let mut attrs: Attrs<'a> = Vec::new();
    let mut scopes: Vec<&'a [u8]> = Vec::new();
    let mut w = Wire::new(buf);
    while let Some((f, wt)) = w.key()? {
        match f {
            1 => {
                want(f, wt, LEN)?;
                key_values(w.bytes()?, &mut attrs, deeper(depth)?)?;
            }
            2 => {
                want(f, wt, LEN)?;
                scopes.push(w.bytes()?);
            }
            _ => w.skip(f, wt, depth)?,
        }
    }
    let (service, resource_tags) = resource_parts(attrs);
    for (si, ss) in scopes.into_iter().enumerate() {
        scope_spans(
            ss,
            service.clone(),
            &resource_tags,
            (ri, si),
            out,
            deeper(depth)?,
        )?;
    }
    Ok(())
}

/// `Resource` (and `KeyValueList`): its repeated field 1 of `KeyValue`s, appended to `out`.
pub(super) fn key_values<'a>(buf: &'a [u8], out: &mut Attrs<'a>, depth: u32) -> Result<()> {
    let mut w = Wire::new(buf);
    while let Some((f, wt)) = w.key()? {
        if f == 1 {
            want(f, wt, LEN)?;
            out.push(key_value(w.bytes()?, deeper(depth)?)?);
        } else {
            w.skip(f, wt, depth)?;
        }
    }
    Ok(())
}

fn scope_spans<'a>(
    buf: &'a [u8],
    service: Cow<'a, str>,
    resource_tags: &[(Cow<'a, str>, Cow<'a, str>)],
    (ri, si): (usize, usize),
    out: &mut DecodedRefs<'a>,
    depth: u32,
) -> Result<()> {
    let (mut name, mut version) = ("", "");
    let mut spans: Vec<&'a [u8]> = Vec::new();
    let mut w = Wire::new(buf);
    while let Some((f, wt)) = w.key()? {
        match f {
            1 => {
                want(f, wt, LEN)?;
                let mut s = Wire::new(w.bytes()?);
                while let Some((f, wt)) = s.key()? {
                    match f {
                        1 => {
                            want(f, wt, LEN)?;
                            name = s.str()?;
                        }
                        2 => {
                            want(f, wt, LEN)?;
                            version = s.str()?;
                        }
                        _ => s.skip(f, wt, depth)?,
                    }
                }
            }
            2 => {
                want(f, wt, LEN)?;
                spans.push(w.bytes()?);
            }
            _ => w.skip(f, wt, depth)?,
        }
    }
    let cx = Context {
        service,
        resource_tags: resource_tags.to_vec(),
        scope_name: Cow::Borrowed(name),
        scope_version: Cow::Borrowed(version),
    };
    out.spans.reserve(spans.len());
    for (pi, sb) in spans.into_iter().enumerate() {
        let o = span(sb, deeper(depth)?)?;
        let path = || format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]");
        match map_span(o, &cx, &path) {
            Ok(s) => out.spans.push(s),
            Err(why) => out.reject(why),
        }
    }
    Ok(())
}

fn span(buf: &[u8], depth: u32) -> Result<OtelSpan<'_>> {
    let mut o = OtelSpan {
        trace_id: Cow::Borrowed(&[]),
        span_id: Cow::Borrowed(&[]),
        parent_span_id: Cow::Borrowed(&[]),
        name: Cow::Borrowed(""),
        kind: 0,
        start_ns: 0,
        end_ns: 0,
        attributes: Vec::with_capacity(16),
        events: Vec::new(),
        status_code: 0,
        status_message: Cow::Borrowed(""),
    };
    let mut w = Wire::new(buf);
    while let Some((f, wt)) = w.key()? {
        match f {
            1 | 2 | 4 | 5 | 9 | 11 | 15 => want(f, wt, LEN)?,
            6 => want(f, wt, VARINT)?,
            7 | 8 => want(f, wt, I64)?,
            _ => {
                w.skip(f, wt, depth)?;
                continue;
            }
        }
        match f {
            1 => o.trace_id = Cow::Borrowed(w.bytes()?),
            2 => o.span_id = Cow::Borrowed(w.bytes()?),
            4 => o.parent_span_id = Cow::Borrowed(w.bytes()?),
            5 => o.name = Cow::Borrowed(w.str()?),
            6 => o.kind = w.varint()? as i32,
            7 => o.start_ns = w.fixed64()?,
            8 => o.end_ns = w.fixed64()?,
            9 => o.attributes.push(key_value(w.bytes()?, deeper(depth)?)?),
            11 => o.events.push(event(w.bytes()?, deeper(depth)?)?),
            _ => status(w.bytes()?, &mut o, deeper(depth)?)?,
        }
    }
    Ok(o)
}

fn event(buf: &[u8], depth: u32) -> Result<OtelEvent<'_>> {
    let (mut time, mut name, mut attrs) = (0, "", Vec::new());
    let mut w = Wire::new(buf);
    while let Some((f, wt)) = w.key()? {
        match f {
            1 => {
                want(f, wt, I64)?;
                time = w.fixed64()?;
            }
            2 => {
                want(f, wt, LEN)?;
                name = w.str()?;
            }
            3 => {
                want(f, wt, LEN)?;
                attrs.push(key_value(w.bytes()?, deeper(depth)?)?);
            }
            _ => w.skip(f, wt, depth)?,
        }
    }
    Ok((time, Cow::Borrowed(name), attrs))
}

/// `Status`, merged into the span's fields (a repeated status message merges).
fn status<'a>(buf: &'a [u8], o: &mut OtelSpan<'a>, depth: u32) -> Result<()> {
    let mut w = Wire::new(buf);
    while let Some((f, wt)) = w.key()? {
        match f {
            2 => {
                want(f, wt, LEN)?;
                o.status_message = Cow::Borrowed(w.str()?);
            }
            3 => {
                want(f, wt, VARINT)?;
                o.status_code = w.varint()? as i32;
            }
            _ => w.skip(f, wt, depth)?,
        }
    }
    Ok(())
}

pub(super) fn key_value(buf: &[u8], depth: u32) -> Result<(Cow<'_, str>, Attr<'_>)> {
    let (mut key, mut value) = ("", Attr::Empty);
    let mut w = Wire::new(buf);
    while let Some((f, wt)) = w.key()? {
        match f {
            1 => {
                want(f, wt, LEN)?;
                key = w.str()?;
            }
            2 => {
                want(f, wt, LEN)?;
                any_value(w.bytes()?, &mut value, deeper(depth)?)?;
            }
            _ => w.skip(f, wt, depth)?,
        }
    }
    Ok((Cow::Borrowed(key), value))
}

/// `AnyValue`, merged into `into`: the last variant sent wins, and an array or map sent
/// again extends the one before, as prost merges a oneof.
fn any_value<'a>(buf: &'a [u8], into: &mut Attr<'a>, depth: u32) -> Result<()> {
    let mut w = Wire::new(buf);
    while let Some((f, wt)) = w.key()? {
        match f {
            1 => {
                want(f, wt, LEN)?;
                *into = Attr::Str(Cow::Borrowed(w.str()?));
            }
            2 => {
                want(f, wt, VARINT)?;
                *into = Attr::Bool(w.varint()? != 0);
            }
            3 => {
                want(f, wt, VARINT)?;
                *into = Attr::Int(w.varint()? as i64);
            }
            4 => {
                want(f, wt, I64)?;
                *into = Attr::Double(f64::from_bits(w.fixed64()?));
            }
            5 => {
                want(f, wt, LEN)?;
                let mut items = match std::mem::replace(into, Attr::Empty) {
                    Attr::Array(v) => v,
                    _ => Vec::new(),
                };
                let mut a = Wire::new(w.bytes()?);
                let inner = deeper(depth)?;
                while let Some((f, wt)) = a.key()? {
                    if f == 1 {
                        want(f, wt, LEN)?;
                        let mut item = Attr::Empty;
                        any_value(a.bytes()?, &mut item, deeper(inner)?)?;
                        items.push(item);
                    } else {
                        a.skip(f, wt, inner)?;
                    }
                }
                *into = Attr::Array(items);
            }
            6 => {
                want(f, wt, LEN)?;
                let mut items = match std::mem::replace(into, Attr::Empty) {
                    Attr::Map(v) => v,
                    _ => Vec::new(),
                };
                key_values(w.bytes()?, &mut items, deeper(depth)?)?;
                *into = Attr::Map(items);
            }
            7 => {
                want(f, wt, LEN)?;
                *into = Attr::Bytes(Cow::Borrowed(w.bytes()?));
            }
            _ => w.skip(f, wt, depth)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::{
        any_value, AnyValue, ArrayValue, Decoded, Event, ExportTraceServiceRequest,
        InstrumentationScope, KeyValue, KeyValueList, PbSpan, Resource, ResourceSpans, ScopeSpans,
        Status,
    };
    use proptest::prelude::*;
    use prost::Message;

    fn attr_pb(v: Option<&AnyValue>) -> Attr<'_> {
        use any_value::Value as V;
        match v.and_then(|v| v.value.as_ref()) {
            None => Attr::Empty,
            Some(V::StringValue(s)) => Attr::Str(Cow::Borrowed(s)),
            Some(V::BoolValue(b)) => Attr::Bool(*b),
            Some(V::IntValue(i)) => Attr::Int(*i),
            Some(V::DoubleValue(d)) => Attr::Double(*d),
            Some(V::ArrayValue(a)) => {
                Attr::Array(a.values.iter().map(|v| attr_pb(Some(v))).collect())
            }
            Some(V::KvlistValue(l)) => Attr::Map(kvs_pb(&l.values)),
            Some(V::BytesValue(b)) => Attr::Bytes(Cow::Borrowed(b)),
        }
    }

    fn kvs_pb(kvs: &[KeyValue]) -> Attrs<'_> {
        kvs.iter()
            .map(|kv| (Cow::Borrowed(kv.key.as_str()), attr_pb(kv.value.as_ref())))
            .collect()
    }

    /// The decoder `wire` replaced: prost's owned messages, mapped by the same `map_span`.
    fn decode_with_prost(body: &[u8]) -> Result<Decoded> {
        let req = ExportTraceServiceRequest::decode(body).map_err(|e| err(e.to_string()))?;
        let mut out = DecodedRefs::default();
        for (ri, rs) in req.resource_spans.iter().enumerate() {
            let attrs = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            let (service, resource_tags) = resource_parts(kvs_pb(attrs));
            for (si, ss) in rs.scope_spans.iter().enumerate() {
                let cx = Context {
                    service: service.clone(),
                    resource_tags: resource_tags.clone(),
                    scope_name: Cow::Borrowed(ss.scope.as_ref().map_or("", |s| &s.name)),
                    scope_version: Cow::Borrowed(ss.scope.as_ref().map_or("", |s| &s.version)),
                };
                for (pi, s) in ss.spans.iter().enumerate() {
                    let o = OtelSpan {
                        trace_id: Cow::Borrowed(&s.trace_id),
                        span_id: Cow::Borrowed(&s.span_id),
                        parent_span_id: Cow::Borrowed(&s.parent_span_id),
                        name: Cow::Borrowed(&s.name),
                        kind: s.kind,
                        start_ns: s.start_time_unix_nano,
                        end_ns: s.end_time_unix_nano,
                        attributes: kvs_pb(&s.attributes),
                        events: s
                            .events
                            .iter()
                            .map(|e| {
                                (
                                    e.time_unix_nano,
                                    Cow::Borrowed(e.name.as_str()),
                                    kvs_pb(&e.attributes),
                                )
                            })
                            .collect(),
                        status_code: s.status.as_ref().map_or(0, |x| x.code),
                        status_message: Cow::Borrowed(
                            s.status.as_ref().map_or("", |x| x.message.as_str()),
                        ),
                    };
                    let path = || format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]");
                    match map_span(o, &cx, &path) {
                        Ok(s) => out.spans.push(s),
                        Err(why) => out.reject(why),
                    }
                }
            }
        }
        Ok(out.into_owned())
    }

    fn same(body: &[u8]) -> std::result::Result<(), TestCaseError> {
        let (a, b) = (super::super::decode_proto(body), decode_with_prost(body));
        match (a, b) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.spans, b.spans);
                prop_assert_eq!(a.rejected, b.rejected);
                prop_assert_eq!(a.first_rejection, b.first_rejection);
            }
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "wire {:?} but prost {:?}", a.is_ok(), b.is_ok()),
        }
        Ok(())
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("service.name".to_string()),
            Just("peer.service".to_string()),
            Just("server.address".to_string()),
            Just("server.port".to_string()),
            Just("net.peer.ip".to_string()),
            Just("error".to_string()),
            Just("10.1.2.3".to_string()),
            Just("::1".to_string()),
            Just("8080".to_string()),
            "[a-zA-Zé.]{1,8}",
        ]
    }

    fn any_value() -> impl Strategy<Value = AnyValue> {
        use any_value::Value as V;
        let leaf = prop_oneof![
            Just(None),
            word().prop_map(|s| Some(V::StringValue(s))),
            any::<bool>().prop_map(|b| Some(V::BoolValue(b))),
            any::<i64>().prop_map(|i| Some(V::IntValue(i))),
            prop_oneof![any::<f64>(), Just(f64::NAN), Just(1.5)]
                .prop_map(|d| Some(V::DoubleValue(d))),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(|b| Some(V::BytesValue(b))),
        ]
        .prop_map(|value| AnyValue { value });
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(|values| AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
                }),
                proptest::collection::vec((word(), inner), 0..3).prop_map(|kvs| AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, v)| KeyValue {
                                key,
                                value: Some(v)
                            })
                            .collect(),
                    })),
                }),
            ]
        })
    }

    fn key_values() -> impl Strategy<Value = Vec<KeyValue>> {
        proptest::collection::vec(
            (word(), proptest::option::of(any_value()))
                .prop_map(|(key, value)| KeyValue { key, value }),
            0..5,
        )
    }

    fn id(lens: &'static [usize]) -> impl Strategy<Value = Vec<u8>> {
        (proptest::sample::select(lens), any::<u64>(), any::<bool>()).prop_map(|(n, v, zero)| {
            let b = if zero { 0u64 } else { v }.to_be_bytes();
            b.iter().chain(b.iter()).take(n).copied().collect()
        })
    }

    fn span() -> impl Strategy<Value = PbSpan> {
        (
            (id(&[16, 16, 8, 0]), id(&[8, 8, 3]), id(&[0, 8, 5])),
            ("[a-zA-Z /]{0,6}", 0..7i32, any::<u64>(), any::<u64>()),
            key_values(),
            proptest::collection::vec(
                (any::<u64>(), word(), key_values()).prop_map(|(t, name, attributes)| Event {
                    time_unix_nano: t,
                    name,
                    attributes,
                }),
                0..2,
            ),
            proptest::option::of(
                (0..4i32, word()).prop_map(|(code, message)| Status { code, message }),
            ),
        )
            .prop_map(
                |(
                    (trace_id, span_id, parent_span_id),
                    (name, kind, a, b),
                    attributes,
                    events,
                    status,
                )| PbSpan {
                    trace_id,
                    span_id,
                    parent_span_id,
                    name,
                    kind,
                    start_time_unix_nano: a.min(b),
                    end_time_unix_nano: a.max(b),
                    attributes,
                    events,
                    status,
                },
            )
    }

    fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        let scope = (
            proptest::option::of(
                (word(), word()).prop_map(|(name, version)| InstrumentationScope { name, version }),
            ),
            proptest::collection::vec(span(), 0..4),
        )
            .prop_map(|(scope, spans)| ScopeSpans { scope, spans });
        let resource = (
            proptest::option::of(key_values().prop_map(|attributes| Resource { attributes })),
            proptest::collection::vec(scope, 0..3),
        )
            .prop_map(|(resource, scope_spans)| ResourceSpans {
                resource,
                scope_spans,
            });
        proptest::collection::vec(resource, 0..3)
            .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn wire_decoder_equals_prost_on_requests(req in request()) {
            same(&req.encode_to_vec())?;
        }

        /// Concatenated encodings are a merge: repeated spans' fields, status and values.
        #[test]
        fn wire_decoder_merges_like_prost(a in span(), b in span(), extra in key_values()) {
            let mut span_bytes = a.encode_to_vec();
            span_bytes.extend(b.encode_to_vec());
            // A key-value whose value is sent twice.
            if let (Some(first), Some(second)) = (extra.first(), extra.get(1)) {
                let mut kv = first.encode_to_vec();
                kv.extend(KeyValue { key: String::new(), value: second.value.clone() }.encode_to_vec());
                span_bytes.push(9 << 3 | 2);
                prost::encoding::encode_varint(kv.len() as u64, &mut span_bytes);
                span_bytes.extend(kv);
            }
            let mut scope = vec![2 << 3 | 2];
            prost::encoding::encode_varint(span_bytes.len() as u64, &mut scope);
            scope.extend(span_bytes);
            // The scope sent after its spans, and a second resource message merged in.
            scope.extend(ScopeSpans { scope: Some(InstrumentationScope { name: "lib".into(), version: String::new() }), spans: vec![] }.encode_to_vec());
            let mut rs = vec![2 << 3 | 2];
            prost::encoding::encode_varint(scope.len() as u64, &mut rs);
            rs.extend(scope);
            for attrs in [extra.clone(), vec![KeyValue { key: "service.name".into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue("Shop".into())) }) }]] {
                rs.extend(ResourceSpans { resource: Some(Resource { attributes: attrs }), scope_spans: vec![] }.encode_to_vec());
            }
            let mut body = vec![1 << 3 | 2];
            prost::encoding::encode_varint(rs.len() as u64, &mut body);
            body.extend(rs);
            same(&body)?;
        }

        /// Damaged requests: both refuse, or both read the same spans.
        #[test]
        fn wire_decoder_agrees_with_prost_on_damaged_requests(
            req in request(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut body = req.encode_to_vec();
            if body.is_empty() {
                return Ok(());
            }
            for (at, byte) in edits {
                let i = at.index(body.len());
                body[i] = byte;
            }
            same(&body)?;
            let n = cut.index(body.len());
            same(&body[..n])?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_proto_refs(&b);
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut v = AnyValue {
            value: Some(any_value::Value::IntValue(1)),
        };
        for _ in 0..200 {
            v = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "k".into(),
                        value: Some(v),
                    }],
                }),
                scope_spans: vec![],
            }],
        };
        let body = req.encode_to_vec();
        assert!(decode_proto_refs(&body).is_err());
        assert!(decode_with_prost(&body).is_err());
    }
}
