//! Trace context: read B3 (multi and single header) and W3C `traceparent`, start a trace when
//! none came in, and write both formats to the upstream request so that either kind of
//! application library can continue it.

use http::{HeaderMap, HeaderName};
use rand::Rng;

const X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
const X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
const X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
const B3: HeaderName = HeaderName::from_static("b3");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The trace this request belongs to and the span the proxy opens for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id_high: u64,
    pub trace_id: u64,
    /// Whether the trace id is 128 bits wide (B3 allows 64).
    pub wide: bool,
    /// The caller's span, parent of ours.
    pub parent_id: Option<u64>,
    /// The proxy's span.
    pub span_id: u64,
    pub sampled: bool,
    pub debug: bool,
    /// The request carried a `b3` single header: answer in kind.
    pub b3_single: bool,
}

impl TraceContext {
    /// The trace id in hex, as wide as it came in.
    pub fn trace_id_hex(&self) -> String {
        if self.wide {
            format!("{:016x}{:016x}", self.trace_id_high, self.trace_id)
        } else {
            format!("{:016x}", self.trace_id)
        }
    }
}

/// Reads an incoming context; a new trace is sampled at `sampling_percent`. Malformed headers
/// are treated as absent (Envoy does the same), never as an error.
pub fn extract(headers: &HeaderMap, sampling_percent: f64) -> TraceContext {
    let mut rng = rand::thread_rng();
    let span_id = nonzero(&mut rng);
    let decide = |rng: &mut rand::rngs::ThreadRng| {
        sampling_percent >= 100.0 || rng.gen::<f64>() * 100.0 < sampling_percent
    };
    // Most requests carry no context: one pass over the names spares five lookups.
    if headers.keys().any(is_context_header) {
        if let Some(ctx) = incoming(headers, span_id, &mut rng, decide) {
            return ctx;
        }
    }
    // Neither header: start a trace with a 128-bit id.
    TraceContext {
        trace_id_high: rng.gen(),
        trace_id: nonzero(&mut rng),
        wide: true,
        parent_id: None,
        span_id,
        sampled: decide(&mut rng),
        debug: false,
        b3_single: false,
    }
}

/// The context a request brings in B3 (multi or single header) or W3C form, if any parses.
fn incoming(
    headers: &HeaderMap,
    span_id: u64,
    rng: &mut rand::rngs::ThreadRng,
    decide: impl Fn(&mut rand::rngs::ThreadRng) -> bool,
) -> Option<TraceContext> {
    if let Some((hi, lo, wide)) = header(headers, &X_B3_TRACEID).and_then(parse_trace_id) {
        let parent = header(headers, &X_B3_SPANID).and_then(parse_span_id);
        let debug = header(headers, &X_B3_FLAGS) == Some("1");
        let sampled = match header(headers, &X_B3_SAMPLED) {
            Some("1" | "true" | "d") => true,
            Some("0" | "false") => false,
            _ => debug || decide(rng),
        };
        return Some(TraceContext {
            trace_id_high: hi,
            trace_id: lo,
            wide,
            parent_id: parent,
            span_id,
            sampled,
            debug,
            b3_single: false,
        });
    }
    if let Some(v) = header(headers, &B3) {
        let parts: Vec<&str> = v.split('-').collect();
        if parts.len() >= 2 {
            if let (Some((hi, lo, wide)), Some(parent)) =
                (parse_trace_id(parts[0]), parse_span_id(parts[1]))
            {
                let (sampled, debug) = match parts.get(2) {
                    Some(&"1") => (true, false),
                    Some(&"d") => (true, true),
                    Some(&"0") => (false, false),
                    _ => (decide(rng), false),
                };
                return Some(TraceContext {
                    trace_id_high: hi,
                    trace_id: lo,
                    wide,
                    parent_id: Some(parent),
                    span_id,
                    sampled,
                    debug,
                    b3_single: true,
                });
            }
        }
    }
    if let Some(v) = header(headers, &TRACEPARENT) {
        let parts: Vec<&str> = v.trim().split('-').collect();
        if parts.len() >= 4 && parts[0].len() == 2 && parts[0] != "ff" && parts[1].len() == 32 {
            if let (Some((hi, lo, _)), Some(parent), Ok(flags)) = (
                parse_trace_id(parts[1]),
                parse_span_id(parts[2]),
                u8::from_str_radix(parts[3], 16),
            ) {
                return Some(TraceContext {
                    trace_id_high: hi,
                    trace_id: lo,
                    wide: true,
                    parent_id: Some(parent),
                    span_id,
                    sampled: flags & 1 == 1,
                    debug: false,
                    b3_single: false,
                });
            }
        }
    }
    None
}

/// The headers that carry trace context, read by [`extract`] and written by [`encode`].
pub const CONTEXT_HEADERS: [HeaderName; 7] = [
    X_B3_TRACEID,
    X_B3_SPANID,
    X_B3_PARENTSPANID,
    X_B3_SAMPLED,
    X_B3_FLAGS,
    B3,
    TRACEPARENT,
];

/// Whether `name` is one of [`CONTEXT_HEADERS`].
pub fn is_context_header(name: &HeaderName) -> bool {
    // Short-circuits on the length for most names; no `HeaderName` is built.
    let n = name.as_str();
    matches!(
        n,
        "x-b3-traceid"
            | "x-b3-spanid"
            | "x-b3-parentspanid"
            | "x-b3-sampled"
            | "x-b3-flags"
            | "b3"
            | "traceparent"
    )
}

/// Writes the context for the upstream as header lines (`name: value\r\n`): B3 multi
/// headers, W3C `traceparent`, and `b3` single when the request used it. Formatted on the
/// stack straight into `out`: this runs for every request.
pub fn encode(ctx: &TraceContext, out: &mut Vec<u8>) {
    let line = |out: &mut Vec<u8>, name: &HeaderName, parts: &[&[u8]]| {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        for p in parts {
            out.extend_from_slice(p);
        }
        out.extend_from_slice(b"\r\n");
    };
    let mut high = [0u8; 16];
    hex16(ctx.trace_id_high, &mut high);
    let mut low = [0u8; 16];
    hex16(ctx.trace_id, &mut low);
    let mut span = [0u8; 16];
    hex16(ctx.span_id, &mut span);
    let mut parent = [0u8; 16];
    if let Some(p) = ctx.parent_id {
        hex16(p, &mut parent);
    }
    // The trace id as wide as it came in (16 or 32 hex digits).
    let tid: &[&[u8]] = if ctx.wide { &[&high, &low] } else { &[&low] };
    line(out, &X_B3_TRACEID, tid);
    line(out, &X_B3_SPANID, &[&span]);
    line(out, &X_B3_SAMPLED, &[if ctx.sampled { b"1" } else { b"0" }]);
    if ctx.parent_id.is_some() {
        line(out, &X_B3_PARENTSPANID, &[&parent]);
    }
    if ctx.debug {
        line(out, &X_B3_FLAGS, &[b"1"]);
    }
    // 00-<32 hex trace id>-<16 hex span id>-<flags>
    let flags: &[u8] = if ctx.sampled { b"-01" } else { b"-00" };
    line(
        out,
        &TRACEPARENT,
        &[b"00-", &high, &low, b"-", &span, flags],
    );
    if ctx.b3_single {
        let decision: &[u8] = match (ctx.debug, ctx.sampled) {
            (true, _) => b"-d",
            (false, true) => b"-1",
            (false, false) => b"-0",
        };
        let (sep, parent): (&[u8], &[u8]) = match ctx.parent_id {
            Some(_) => (b"-", &parent),
            None => (b"", b""),
        };
        let mut parts: Vec<&[u8]> = tid.to_vec();
        parts.extend_from_slice(&[b"-", &span, decision, sep, parent]);
        line(out, &B3, &parts);
    }
}

/// The context written into a header map, replacing the values it had (for requests that
/// are built as maps: HTTP/2, TLS).
pub fn inject(ctx: &TraceContext, headers: &mut HeaderMap) {
    let mut lines = Vec::with_capacity(ENCODED_LEN);
    encode(ctx, &mut lines);
    crate::h1client::insert_lines(&lines.into(), headers);
}

/// Room for [`encode`]'s lines in the common case (no `b3` single).
pub const ENCODED_LEN: usize = 256;

/// `v` as 16 lowercase hex digits into `out` (16 bytes).
fn hex16(v: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate().take(16) {
        *b = HEX[((v >> ((15 - i) * 4)) & 0xf) as usize];
    }
}

fn header<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn nonzero(rng: &mut impl Rng) -> u64 {
    loop {
        let v: u64 = rng.gen();
        if v != 0 {
            return v;
        }
    }
}

/// 16 or 32 hex digits, not all zero.
fn parse_trace_id(s: &str) -> Option<(u64, u64, bool)> {
    let (hi, lo, wide) = match s.len() {
        16 => (0, u64::from_str_radix(s, 16).ok()?, false),
        32 => (
            u64::from_str_radix(&s[..16], 16).ok()?,
            u64::from_str_radix(&s[16..], 16).ok()?,
            true,
        ),
        _ => return None,
    };
    (hi != 0 || lo != 0).then_some((hi, lo, wide))
}

fn parse_span_id(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok().filter(|v| *v != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn b3_multi_continues_and_keeps_width() {
        let h = map(&[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
        ]);
        let c = extract(&h, 0.0);
        assert_eq!(c.trace_id_hex(), "463ac35c9f6413ad");
        assert_eq!(c.parent_id, Some(0xa2fb4a1d1a96d312));
        assert!(c.sampled);
        let mut out = HeaderMap::new();
        inject(&c, &mut out);
        assert_eq!(out["x-b3-traceid"], "463ac35c9f6413ad");
        assert_eq!(out["x-b3-parentspanid"], "a2fb4a1d1a96d312");
        assert!(out["traceparent"]
            .to_str()
            .unwrap()
            .starts_with("00-0000000000000000463ac35c9f6413ad-"));
    }

    #[test]
    fn traceparent_and_b3_single() {
        let h = map(&[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        )]);
        let c = extract(&h, 100.0);
        assert!(!c.sampled, "the caller's decision wins");
        assert_eq!(c.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        let h = map(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d")]);
        let c = extract(&h, 0.0);
        assert!(c.sampled && c.debug && c.b3_single);
        let mut out = HeaderMap::new();
        inject(&c, &mut out);
        let span = format!("{:016x}", c.span_id);
        assert_eq!(
            out["b3"],
            format!("80f198ee56343ba864fe8b2a57d3eff7-{span}-d-e457b5a2e4d86bd1").as_str()
        );
        assert_eq!(out["x-b3-spanid"], span.as_str());
        assert_eq!(out["x-b3-parentspanid"], "e457b5a2e4d86bd1");
        assert_eq!(
            out["traceparent"],
            format!("00-80f198ee56343ba864fe8b2a57d3eff7-{span}-01").as_str()
        );
    }

    #[test]
    fn encoded_lines_are_the_headers_exactly() {
        let c = TraceContext {
            trace_id_high: 0,
            trace_id: 0x463ac35c9f6413ad,
            wide: false,
            parent_id: None,
            span_id: 0xa2fb4a1d1a96d312,
            sampled: false,
            debug: true,
            b3_single: true,
        };
        let mut out = Vec::new();
        encode(&c, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "x-b3-traceid: 463ac35c9f6413ad\r\n\
             x-b3-spanid: a2fb4a1d1a96d312\r\n\
             x-b3-sampled: 0\r\n\
             x-b3-flags: 1\r\n\
             traceparent: 00-0000000000000000463ac35c9f6413ad-a2fb4a1d1a96d312-00\r\n\
             b3: 463ac35c9f6413ad-a2fb4a1d1a96d312-d\r\n"
        );
        assert!(CONTEXT_HEADERS.iter().all(is_context_header));
        assert!(!is_context_header(&http::header::HOST));
    }

    #[test]
    fn header_lines_go_into_a_map_and_bad_lines_are_skipped() {
        let mut h = map(&[("x-b3-sampled", "1"), ("keep", "me")]);
        let lines = bytes::Bytes::from_static(
            b"x-b3-sampled: 0\r\nno colon here\r\nbad name: x\r\ntraceparent:  00-ab\r\nunterminated: x",
        );
        crate::h1client::insert_lines(&lines, &mut h);
        assert_eq!(h["x-b3-sampled"], "0");
        assert_eq!(h["traceparent"], "00-ab");
        assert_eq!(h["keep"], "me");
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn garbage_starts_a_new_trace() {
        let h = map(&[("x-b3-traceid", "zz"), ("traceparent", "nonsense")]);
        let c = extract(&h, 100.0);
        assert!(c.wide && c.sampled && c.parent_id.is_none());
    }
}
