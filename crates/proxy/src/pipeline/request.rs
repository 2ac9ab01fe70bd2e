//! Building the upstream request: rewrites (uri, authority), header edits, hop-by-hop
//! headers removed, `x-request-id` and trace context added. Built once, then turned into a
//! fresh `Request` for every attempt and every mirror.

use bytes::Bytes;
use http::header::{HeaderName, CONNECTION, HOST};
use http::{HeaderMap, HeaderValue, Method, Request};

use super::Target;
use crate::config::table::Rewrite;
use crate::route::{Match, StrMatch};
use crate::telemetry::peer::PEER_HEADER;
use crate::telemetry::{trace, RequestRecord};
use crate::upload::{ReqBody, Upload};

pub struct Template {
    pub method: Method,
    pub path_and_query: String,
    pub authority: String,
    /// Port of the request's authority, for endpoints dialled without a known port.
    pub port: u16,
    pub headers: HeaderMap,
    /// Header lines sent after `headers` (the trace context): see
    /// [`crate::h1client::RequestHead::lines`].
    pub lines: Bytes,
    /// Streamed; each attempt takes its own body from it.
    pub body: Upload,
    /// gRPC needs HTTP/2 end to end, whatever the port's declared protocol.
    pub grpc: bool,
    /// The `Host` value (HTTP/1.1): the request's own when the authority is unchanged.
    host: Option<HeaderValue>,
}

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");

/// Removes connection-level headers, including those the `Connection` header names. Most
/// messages carry none but `Connection`: one pass over the names finds that out.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let present = h.keys().fold(0, |bits, name| bits | hop_by_hop_bit(name));
    remove_hop_by_hop(h, present);
}

/// The bit of `name` in [`crate::hop::NAMES`] (bit 0: Connection), 0 for other names.
fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    crate::hop::bit(name.as_str())
}

/// Removes the hop-by-hop headers whose bits are in `present`: only those, as each removal
/// hashes the name.
fn remove_hop_by_hop(h: &mut HeaderMap, present: u8) {
    if present & 1 != 0 {
        strip_connection_named(h);
    }
    for (i, n) in crate::hop::NAMES.into_iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(n);
        }
    }
}

/// Which of the headers the request path replaces or drops a request has: found in one pass
/// over the names, so that absent ones cost no lookup.
#[derive(Default)]
struct Present {
    hop_by_hop: u8,
    te: bool,
    host: bool,
    content_length: bool,
    forwarded_proto: bool,
    peer: bool,
    trace: bool,
}

impl Present {
    fn of(h: &HeaderMap) -> Present {
        let mut p = Present::default();
        for name in h.keys() {
            let hop = hop_by_hop_bit(name);
            if hop != 0 {
                p.hop_by_hop |= hop;
            } else if name == http::header::TE {
                p.te = true;
            } else if name == HOST {
                p.host = true;
            } else if name == http::header::CONTENT_LENGTH {
                p.content_length = true;
            } else if name == X_FORWARDED_PROTO {
                p.forwarded_proto = true;
            } else if name == PEER_HEADER {
                p.peer = true;
            } else if trace::is_context_header(name) {
                p.trace = true;
            }
        }
        p
    }
}

fn strip_connection_named(h: &mut HeaderMap) {
    // The values are cheap clones; a single `Connection` header (the usual case) needs no
    // list, and names are looked up as `&str` without building a `HeaderName`.
    let mut values = h.get_all(CONNECTION).iter();
    let first = values.next().cloned();
    let rest: Vec<HeaderValue> = values.cloned().collect();
    for v in first.iter().chain(&rest) {
        let Ok(v) = v.to_str() else { continue };
        // `close` names no header, and `keep-alive` is hop-by-hop anyway (removed after).
        let named = v.split(',').map(str::trim).filter(|n| {
            !n.is_empty()
                && !n.eq_ignore_ascii_case("close")
                && !n.eq_ignore_ascii_case("keep-alive")
        });
        for name in named {
            h.remove(name);
        }
    }
}

impl Template {
    pub fn build(
        t: &Target<'_>,
        method: Method,
        mut headers: HeaderMap,
        rec: &RequestRecord,
        body: Upload,
        peer: Option<&HeaderValue>,
    ) -> Self {
        let mut present = Present::of(&headers);
        if present.hop_by_hop != 0 {
            remove_hop_by_hop(&mut headers, present.hop_by_hop);
            // `Connection` may have named any header.
            present = Present::of(&headers);
        }
        // `te: trailers` is how gRPC asks for trailers; anything else is hop-by-hop.
        if present.te
            && headers
                .get(http::header::TE)
                .is_some_and(|v| v.as_bytes() != b"trailers")
        {
            headers.remove(http::header::TE);
        }
        if present.host {
            headers.remove(HOST);
        }
        if present.content_length {
            headers.remove(http::header::CONTENT_LENGTH);
        }
        if !present.forwarded_proto {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        }
        // The caller's identity is ours to state (outbound) or to consume (inbound).
        match peer {
            Some(p) => {
                headers.insert(PEER_HEADER, p.clone());
            }
            None if present.peer => {
                headers.remove(PEER_HEADER);
            }
            None => {}
        }
        // The trace context replaces the caller's: its headers go, and the proxy's are
        // written as lines, unless the route's header edits name one of them and must see
        // it in the map.
        if present.trace {
            for n in &trace::CONTEXT_HEADERS {
                headers.remove(n);
            }
        }
        let edits = [&t.route.headers.request, &t.wc.headers.request];
        let mut lines = Vec::new();
        if edits
            .iter()
            .any(|e| e.names().any(trace::is_context_header))
        {
            trace::inject(&rec.trace, &mut headers);
        } else {
            lines.reserve(trace::ENCODED_LEN);
            trace::encode(&rec.trace, &mut lines);
        }
        for e in edits {
            e.apply(&mut headers);
        }

        let mut path = None;
        let mut authority = None;
        if let Some(rw) = &t.route.rewrite {
            let rewritten = rewrite_path(rw, t.matched, t.path);
            if rewritten != t.path {
                if let Ok(v) = HeaderValue::from_str(t.path) {
                    headers.insert(X_ENVOY_ORIGINAL_PATH, v);
                }
            }
            path = Some(rewritten);
            authority = rw.authority.clone();
        }
        let rewritten = path.is_some();
        let mut path_and_query = match (path, t.query) {
            (Some(p), None) => p,
            (p, Some(q)) => format!("{}?{q}", p.as_deref().unwrap_or(t.path)),
            (None, None) => t.path.to_string(),
        };
        // The request's own target came from a parsed URI; a rewritten one that is not a
        // valid target (empty, say) is sent as `/`.
        if rewritten && path_and_query.parse::<http::Uri>().is_err() {
            path_and_query = "/".to_string();
        }
        let host = match (&authority, t.host_header) {
            (None, Some(h)) => Some(h.clone()),
            _ => HeaderValue::from_str(authority.as_deref().unwrap_or(t.authority)).ok(),
        };
        Template {
            host,
            method,
            path_and_query,
            authority: authority.unwrap_or_else(|| t.authority.to_string()),
            port: t.port,
            headers,
            lines: lines.into(),
            body,
            grpc: rec.protocol == crate::telemetry::metrics::Protocol::Grpc,
        }
    }

    /// The copy sent to a mirror: Envoy appends `-shadow` to the host (before the port). Its
    /// body is empty until the mirror's own (see [`Upload::for_mirror`]) replaces it.
    pub fn shadow(&self) -> Template {
        let authority = match self.authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => {
                format!("{h}-shadow:{p}")
            }
            _ => format!("{}-shadow", self.authority),
        };
        Template {
            host: HeaderValue::from_str(&authority).ok(),
            method: self.method.clone(),
            path_and_query: self.path_and_query.clone(),
            authority,
            port: self.port,
            headers: self.headers.clone(),
            lines: self.lines.clone(),
            body: Upload::Empty,
            grpc: self.grpc,
        }
    }

    /// A request for one attempt. HTTP/2 carries the authority in the URI (`:authority`),
    /// HTTP/1.1 in `Host`.
    pub fn to_request(&self, http2: bool) -> Request<ReqBody> {
        let mut req = Request::new(self.body.attempt());
        *req.method_mut() = self.method.clone();
        *req.headers_mut() = self.headers.clone();
        crate::h1client::insert_lines(&self.lines, req.headers_mut());
        if http2 {
            *req.uri_mut() = format!("http://{}{}", self.authority, self.path_and_query)
                .parse()
                .unwrap_or_else(|_| http::Uri::from_static("/"));
            *req.version_mut() = http::Version::HTTP_2;
        } else {
            *req.uri_mut() = self
                .path_and_query
                .parse()
                .unwrap_or_else(|_| http::Uri::from_static("/"));
            if let Some(h) = &self.host {
                req.headers_mut().insert(HOST, h.clone());
            }
        }
        req
    }
}

/// The request's header map goes back for the next request on this thread.
impl Drop for Template {
    fn drop(&mut self) {
        crate::reuse::give_header_map(std::mem::take(&mut self.headers));
    }
}

impl crate::forward::Outgoing for Template {
    fn request(&self, http2: bool) -> Request<ReqBody> {
        self.to_request(http2)
    }

    fn head(&self) -> crate::h1client::RequestHead<'_> {
        crate::h1client::RequestHead {
            method: &self.method,
            target: &self.path_and_query,
            host: self.host.as_ref(),
            headers: &self.headers,
            lines: &self.lines,
        }
    }

    fn body(&self) -> ReqBody {
        self.body.attempt()
    }
}

/// Istio's `rewrite.uri` as Envoy applies it: a prefix match has its prefix replaced, an
/// exact or regex match the whole path, and a route without a uri match the leading `/`.
pub fn rewrite_path(rw: &Rewrite, matched: Option<&Match>, path: &str) -> String {
    if let Some((re, sub)) = &rw.regex {
        return re.replace_all(path, sub.as_str()).into_owned();
    }
    let Some(uri) = &rw.uri else {
        return path.to_string();
    };
    match matched.and_then(|m| m.uri.as_ref()) {
        Some(StrMatch::Prefix(p)) => format!("{uri}{}", path.get(p.len()..).unwrap_or("")),
        Some(_) => uri.clone(),
        None => format!("{uri}{}", path.get(1..).unwrap_or("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut n: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        n.sort_unstable();
        n
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = map(&[
            ("connection", "close, X-Hop"),
            ("connection", "Keep-Alive"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("proxy-authorization", "Basic x"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("x-end", "kept"),
            ("content-type", "text/plain"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(names(&h), ["content-type", "te", "x-end"]);

        let mut plain = map(&[("x-end", "kept"), ("content-length", "2")]);
        strip_hop_by_hop(&mut plain);
        assert_eq!(names(&plain), ["content-length", "x-end"]);
    }
}
