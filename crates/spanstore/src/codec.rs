//! Byte-level codecs: varints, the self-contained span record used by the WAL and the head,
//! and a borrowed view (`SpanView`) that both the head and segment decoders fill without
//! allocating, so filters and segment building never materialise fat `Span` structs.

use std::collections::BTreeMap;

use meshlens_model::{Annotation, Endpoint, EndpointRef, Span, SpanKind, SpanRef, TraceId};

/// A malformed record; callers turn it into a corruption error naming the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

pub type DResult<T> = Result<T, Malformed>;

// Span flag bits, shared by the raw (WAL/head) and segment record formats.
pub const F_PARENT: u32 = 1 << 0;
pub const F_NAME: u32 = 1 << 1;
pub const F_KIND_SHIFT: u32 = 2; // 3 bits: 0 none, 1..=4 kind
pub const F_TS: u32 = 1 << 5;
pub const F_DUR: u32 = 1 << 6;
pub const F_DEBUG: u32 = 1 << 7;
pub const F_SHARED: u32 = 1 << 8;
pub const F_LOCAL: u32 = 1 << 9;
pub const F_REMOTE: u32 = 1 << 10;
pub const F_128: u32 = 1 << 11;
pub const F_ANN: u32 = 1 << 12;
pub const F_TAGS: u32 = 1 << 13;
/// Segment format only: the parent is a span of the same trace group, given by position.
pub const F_PARENT_LOCAL: u32 = 1 << 14;

// Endpoint flag bits.
pub const E_SVC: u8 = 1;
pub const E_V4: u8 = 2;
pub const E_V6: u8 = 4;
pub const E_PORT: u8 = 8;

#[inline]
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[inline]
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub fn kind_code(k: Option<SpanKind>) -> u32 {
    match k {
        None => 0,
        Some(SpanKind::Client) => 1,
        Some(SpanKind::Server) => 2,
        Some(SpanKind::Producer) => 3,
        Some(SpanKind::Consumer) => 4,
    }
}

pub fn kind_from_code(c: u32) -> DResult<Option<SpanKind>> {
    Ok(match c {
        0 => None,
        1 => Some(SpanKind::Client),
        2 => Some(SpanKind::Server),
        3 => Some(SpanKind::Producer),
        4 => Some(SpanKind::Consumer),
        _ => return Err(Malformed),
    })
}

/// A bounds-checked cursor over a byte slice; every read fails cleanly on truncation.
pub struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
    /// The record's strings are known to be UTF-8 (head records: see `str`).
    pub trusted: bool,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            trusted: false,
        }
    }

    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader {
            buf,
            pos,
            trusted: false,
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub fn uvarint(&mut self) -> DResult<u64> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = *self.buf.get(self.pos).ok_or(Malformed)?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(Malformed);
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(Malformed);
            }
        }
    }

    #[inline]
    pub fn u8(&mut self) -> DResult<u8> {
        let b = *self.buf.get(self.pos).ok_or(Malformed)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn u64_be(&mut self) -> DResult<u64> {
        let s = self.bytes(8)?;
        Ok(u64::from_be_bytes(s.try_into().map_err(|_| Malformed)?))
    }

    #[inline]
    pub fn bytes(&mut self, n: usize) -> DResult<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Malformed)?;
        let s = self.buf.get(self.pos..end).ok_or(Malformed)?;
        self.pos = end;
        Ok(s)
    }

    #[inline]
    pub fn str(&mut self) -> DResult<&'a str> {
        let n = self.uvarint()? as usize;
        let b = self.bytes(n)?;
        if self.trusted {
            // SAFETY: `trusted` is only set on head records. Those were either encoded by
            // `encode_raw_ref` from `&str` values (the decoder reads strings exactly where
            // the encoder wrote them; `raw_record_round_trip` tests it), or replayed from the
            // WAL through `head::prepare`, which validates every string; the bytes never
            // change after insertion.
            Ok(unsafe { std::str::from_utf8_unchecked(b) })
        } else {
            std::str::from_utf8(b).map_err(|_| Malformed)
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpView<'a> {
    pub service: Option<&'a str>,
    pub ipv4: Option<&'a str>,
    pub ipv6: Option<&'a str>,
    pub port: Option<u16>,
}

impl EpView<'_> {
    fn to_endpoint(self) -> Endpoint {
        Endpoint {
            service_name: self.service.map(str::to_owned),
            ipv4: self.ipv4.map(str::to_owned),
            ipv6: self.ipv6.map(str::to_owned),
            port: self.port,
        }
    }

    /// Which of the endpoint's fields are present, as the encodings' flag byte.
    pub(crate) fn flags(&self) -> u8 {
        let mut f = 0;
        if self.service.is_some() {
            f |= E_SVC;
        }
        if self.ipv4.is_some() {
            f |= E_V4;
        }
        if self.ipv6.is_some() {
            f |= E_V6;
        }
        if self.port.is_some() {
            f |= E_PORT;
        }
        f
    }
}

/// A span borrowed from an encoded buffer (and a segment dictionary). Reused across
/// records to avoid allocation: `clear` keeps the vectors' capacity.
#[derive(Debug)]
pub struct SpanView<'a> {
    pub trace_id: TraceId,
    pub id: u64,
    pub parent_id: Option<u64>,
    pub name: Option<&'a str>,
    pub kind: Option<SpanKind>,
    pub timestamp: Option<u64>,
    pub duration: Option<u64>,
    pub local: Option<EpView<'a>>,
    pub remote: Option<EpView<'a>>,
    pub annotations: Vec<(u64, &'a str)>,
    pub tags: Vec<(&'a str, &'a str)>,
    pub debug: bool,
    pub shared: bool,
}

impl Default for SpanView<'_> {
    fn default() -> Self {
        SpanView {
            trace_id: TraceId {
                high: 0,
                low: 0,
                is_128: false,
            },
            id: 0,
            parent_id: None,
            name: None,
            kind: None,
            timestamp: None,
            duration: None,
            local: None,
            remote: None,
            annotations: Vec::new(),
            tags: Vec::new(),
            debug: false,
            shared: false,
        }
    }
}

impl<'a> SpanView<'a> {
    pub fn local_service(&self) -> Option<&'a str> {
        self.local.and_then(|e| e.service)
    }

    pub fn remote_service(&self) -> Option<&'a str> {
        self.remote.and_then(|e| e.service)
    }

    pub fn from_span(s: &'a Span) -> SpanView<'a> {
        let ep = |e: &'a Endpoint| EpView {
            service: e.service_name.as_deref(),
            ipv4: e.ipv4.as_deref(),
            ipv6: e.ipv6.as_deref(),
            port: e.port,
        };
        SpanView {
            trace_id: s.trace_id,
            id: s.id,
            parent_id: s.parent_id,
            name: s.name.as_deref(),
            kind: s.kind,
            timestamp: s.timestamp,
            duration: s.duration,
            local: s.local_endpoint.as_ref().map(ep),
            remote: s.remote_endpoint.as_ref().map(ep),
            annotations: s
                .annotations
                .iter()
                .map(|a| (a.timestamp, a.value.as_str()))
                .collect(),
            tags: s
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            debug: s.debug,
            shared: s.shared,
        }
    }

    pub fn to_span(&self) -> Span {
        let mut tags = BTreeMap::new();
        for (k, v) in &self.tags {
            tags.insert((*k).to_owned(), (*v).to_owned());
        }
        Span {
            trace_id: self.trace_id,
            id: self.id,
            parent_id: self.parent_id,
            name: self.name.map(str::to_owned),
            kind: self.kind,
            timestamp: self.timestamp,
            duration: self.duration,
            local_endpoint: self.local.map(EpView::to_endpoint),
            remote_endpoint: self.remote.map(EpView::to_endpoint),
            annotations: self
                .annotations
                .iter()
                .map(|(t, v)| Annotation {
                    timestamp: *t,
                    value: (*v).to_owned(),
                })
                .collect(),
            tags,
            debug: self.debug,
            shared: self.shared,
        }
    }

    /// Like `to_span`, but reuses `out`'s allocations (scans decode millions of spans that
    /// mostly share one shape).
    pub fn to_span_into(&self, out: &mut Span) {
        fn set_opt(dst: &mut Option<String>, src: Option<&str>) {
            match (dst.as_mut(), src) {
                (Some(d), Some(s)) => {
                    d.clear();
                    d.push_str(s);
                }
                (_, s) => *dst = s.map(str::to_owned),
            }
        }
        fn set_ep(dst: &mut Option<Endpoint>, src: Option<EpView<'_>>) {
            match (dst.as_mut(), src) {
                (Some(d), Some(s)) => {
                    set_opt(&mut d.service_name, s.service);
                    set_opt(&mut d.ipv4, s.ipv4);
                    set_opt(&mut d.ipv6, s.ipv6);
                    d.port = s.port;
                }
                (_, s) => *dst = s.map(EpView::to_endpoint),
            }
        }
        out.trace_id = self.trace_id;
        out.id = self.id;
        out.parent_id = self.parent_id;
        set_opt(&mut out.name, self.name);
        out.kind = self.kind;
        out.timestamp = self.timestamp;
        out.duration = self.duration;
        set_ep(&mut out.local_endpoint, self.local);
        set_ep(&mut out.remote_endpoint, self.remote);
        out.annotations.truncate(self.annotations.len());
        for (i, (t, v)) in self.annotations.iter().enumerate() {
            match out.annotations.get_mut(i) {
                Some(a) => {
                    a.timestamp = *t;
                    a.value.clear();
                    a.value.push_str(v);
                }
                None => out.annotations.push(Annotation {
                    timestamp: *t,
                    value: (*v).to_owned(),
                }),
            }
        }
        // Same keys in the same order: overwrite values in place.
        let same_keys = out.tags.len() == self.tags.len()
            && out.tags.keys().zip(&self.tags).all(|(a, (b, _))| a == b);
        if same_keys {
            for (val, (_, v)) in out.tags.values_mut().zip(&self.tags) {
                val.clear();
                val.push_str(v);
            }
        } else {
            out.tags.clear();
            for (k, v) in &self.tags {
                out.tags.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        out.debug = self.debug;
        out.shared = self.shared;
    }

    /// Flags common to both formats (parent handling is format specific).
    pub fn base_flags(&self) -> u32 {
        let mut f = kind_code(self.kind) << F_KIND_SHIFT;
        if self.name.is_some() {
            f |= F_NAME;
        }
        if self.timestamp.is_some() {
            f |= F_TS;
        }
        if self.duration.is_some() {
            f |= F_DUR;
        }
        if self.debug {
            f |= F_DEBUG;
        }
        if self.shared {
            f |= F_SHARED;
        }
        if self.local.is_some() {
            f |= F_LOCAL;
        }
        if self.remote.is_some() {
            f |= F_REMOTE;
        }
        if self.trace_id.is_128 {
            f |= F_128;
        }
        if !self.annotations.is_empty() {
            f |= F_ANN;
        }
        if !self.tags.is_empty() {
            f |= F_TAGS;
        }
        f
    }
}

/// Encodes one span in the raw, self-contained record format (WAL and head).
#[cfg(test)]
pub fn encode_raw(s: &Span, out: &mut Vec<u8>) {
    encode_raw_ref(&SpanRef::from_span(s), out);
}

fn ep_ref_flags(e: &EndpointRef<'_>) -> u8 {
    let mut f = 0;
    if e.service_name.is_some() {
        f |= E_SVC;
    }
    if e.ipv4.is_some() {
        f |= E_V4;
    }
    if e.ipv6.is_some() {
        f |= E_V6;
    }
    if e.port.is_some() {
        f |= E_PORT;
    }
    f
}

/// Record flags of a span; the same bits `SpanView::base_flags` computes for a decoded one.
fn ref_flags(v: &SpanRef<'_>) -> u32 {
    let mut f = kind_code(v.kind) << F_KIND_SHIFT;
    for (set, bit) in [
        (v.parent_id.is_some(), F_PARENT),
        (v.name.is_some(), F_NAME),
        (v.timestamp.is_some(), F_TS),
        (v.duration.is_some(), F_DUR),
        (v.debug, F_DEBUG),
        (v.shared, F_SHARED),
        (v.local_endpoint.is_some(), F_LOCAL),
        (v.remote_endpoint.is_some(), F_REMOTE),
        (v.trace_id.is_128, F_128),
        (!v.annotations.is_empty(), F_ANN),
        (!v.tags.is_empty(), F_TAGS),
    ] {
        if set {
            f |= bit;
        }
    }
    f
}

/// Encodes a borrowed span as one raw record. Every string is written from a `&str`, so
/// the record's strings are valid UTF-8 by construction (what `Reader::trusted` relies on).
pub fn encode_raw_ref(v: &SpanRef<'_>, out: &mut Vec<u8>) {
    put_uvarint(out, u64::from(ref_flags(v)));
    if v.trace_id.is_128 {
        out.extend_from_slice(&v.trace_id.high.to_be_bytes());
    }
    out.extend_from_slice(&v.trace_id.low.to_be_bytes());
    out.extend_from_slice(&v.id.to_be_bytes());
    if let Some(p) = v.parent_id {
        out.extend_from_slice(&p.to_be_bytes());
    }
    if let Some(n) = &v.name {
        put_str(out, n);
    }
    if let Some(t) = v.timestamp {
        put_uvarint(out, t);
    }
    if let Some(d) = v.duration {
        put_uvarint(out, d);
    }
    for e in [&v.local_endpoint, &v.remote_endpoint]
        .into_iter()
        .flatten()
    {
        out.push(ep_ref_flags(e));
        for s in [&e.service_name, &e.ipv4, &e.ipv6].into_iter().flatten() {
            put_str(out, s);
        }
        if let Some(p) = e.port {
            put_uvarint(out, u64::from(p));
        }
    }
    if !v.annotations.is_empty() {
        put_uvarint(out, v.annotations.len() as u64);
        for (t, a) in &v.annotations {
            put_uvarint(out, *t);
            put_str(out, a);
        }
    }
    if !v.tags.is_empty() {
        put_uvarint(out, v.tags.len() as u64);
        for (k, val) in &v.tags {
            put_str(out, k);
            put_str(out, val);
        }
    }
}

fn read_raw_ep<'a>(r: &mut Reader<'a>) -> DResult<EpView<'a>> {
    let f = r.u8()?;
    let mut e = EpView::default();
    if f & E_SVC != 0 {
        e.service = Some(r.str()?);
    }
    if f & E_V4 != 0 {
        e.ipv4 = Some(r.str()?);
    }
    if f & E_V6 != 0 {
        e.ipv6 = Some(r.str()?);
    }
    if f & E_PORT != 0 {
        e.port = Some(u16::try_from(r.uvarint()?).map_err(|_| Malformed)?);
    }
    Ok(e)
}

/// Decodes one raw record into `v` (reusing its vectors).
pub fn decode_raw<'a>(r: &mut Reader<'a>, v: &mut SpanView<'a>) -> DResult<()> {
    let f = u32::try_from(r.uvarint()?).map_err(|_| Malformed)?;
    let is_128 = f & F_128 != 0;
    let high = if is_128 { r.u64_be()? } else { 0 };
    let low = r.u64_be()?;
    v.trace_id = TraceId { high, low, is_128 };
    v.id = r.u64_be()?;
    v.parent_id = if f & F_PARENT != 0 {
        Some(r.u64_be()?)
    } else {
        None
    };
    v.name = if f & F_NAME != 0 {
        Some(r.str()?)
    } else {
        None
    };
    v.kind = kind_from_code((f >> F_KIND_SHIFT) & 7)?;
    v.timestamp = if f & F_TS != 0 {
        Some(r.uvarint()?)
    } else {
        None
    };
    v.duration = if f & F_DUR != 0 {
        Some(r.uvarint()?)
    } else {
        None
    };
    v.local = if f & F_LOCAL != 0 {
        Some(read_raw_ep(r)?)
    } else {
        None
    };
    v.remote = if f & F_REMOTE != 0 {
        Some(read_raw_ep(r)?)
    } else {
        None
    };
    v.annotations.clear();
    if f & F_ANN != 0 {
        let n = r.uvarint()?;
        for _ in 0..n {
            let t = r.uvarint()?;
            v.annotations.push((t, r.str()?));
        }
    }
    v.tags.clear();
    if f & F_TAGS != 0 {
        let n = r.uvarint()?;
        for _ in 0..n {
            let k = r.str()?;
            v.tags.push((k, r.str()?));
        }
    }
    v.debug = f & F_DEBUG != 0;
    v.shared = f & F_SHARED != 0;
    Ok(())
}

/// Lower-cases only when needed (service and span names are usually lower case already).
pub fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) || !s.is_ascii() {
        std::borrow::Cow::Owned(s.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(Reader::new(&b).uvarint().unwrap(), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert!(Reader::new(&[0x80]).uvarint().is_err());
    }

    #[test]
    fn raw_record_round_trip() {
        let mut tags = BTreeMap::new();
        tags.insert("http.method".to_string(), "GET".to_string());
        let s = Span {
            trace_id: TraceId {
                high: 7,
                low: 9,
                is_128: true,
            },
            id: 3,
            parent_id: Some(2),
            name: Some("get /".into()),
            kind: Some(SpanKind::Server),
            timestamp: Some(1_700_000_000_000_000),
            duration: Some(1234),
            local_endpoint: Some(Endpoint {
                service_name: Some("a".into()),
                ipv4: Some("10.0.0.1".into()),
                ipv6: None,
                port: Some(8080),
            }),
            remote_endpoint: None,
            annotations: vec![Annotation {
                timestamp: 5,
                value: "wr".into(),
            }],
            tags,
            debug: true,
            shared: true,
        };
        let mut b = Vec::new();
        encode_raw(&s, &mut b);
        let mut v = SpanView::default();
        let mut r = Reader::new(&b);
        decode_raw(&mut r, &mut v).unwrap();
        assert!(r.is_empty());
        assert_eq!(v.to_span(), s);
        for cut in 0..b.len() {
            let mut r = Reader::new(&b[..cut]);
            assert!(decode_raw(&mut r, &mut v).is_err());
        }
    }
}
