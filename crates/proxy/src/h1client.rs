//! The proxy's own HTTP/1.1 client for plaintext upstream connections: the hot path of an
//! outbound sidecar.
//!
//! Why not hyper's client here: each hyper connection keeps a connection task, an 8 KiB head
//! write buffer, a read buffer of 8 KiB or more and a request channel whose first block holds
//! 32 requests, for as long as it sits in the pool; under 1,000 connections that was about
//! 35 KiB per upstream connection (heaptrack). Here an idle pooled connection is its socket
//! and nothing else: the request future writes the head and body itself, reads the response
//! head into a buffer sized to it, and the response body owns the connection until its last
//! byte, when it goes back to its endpoint's idle list. No task, no channel, no wake-up of
//! another task per request.
//!
//! Framing follows RFC 9112: responses to HEAD, 1xx, 204 and 304 have no body; `chunked`
//! (trailers passed on as a trailers frame), `content-length`, or read until the server
//! closes. A response that does not parse is an error (the caller answers 503 UC), never a
//! panic.

use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::body::BoxError;

/// The most headers a response head may carry (hyper's default too).
pub(crate) const MAX_HEADERS: usize = 100;
/// First read of a response head; grown by doubling up to the head limit.
const FIRST_READ: usize = 1024;
/// Largest read while streaming a body.
const BODY_READ: usize = 16 << 10;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the request: {0}")]
    Write(std::io::Error),
    #[error("request body: {0}")]
    RequestBody(BoxError),
    #[error("reading the response: {0}")]
    Read(std::io::Error),
    #[error("connection closed before a response")]
    Closed,
    #[error("response head over {0} bytes")]
    HeadTooLarge(usize),
    #[error("malformed response: {0}")]
    Malformed(&'static str),
}

impl Error {
    /// The server closed (or reset) a kept-alive connection before answering anything: a
    /// request on a reused connection may be sent again on another.
    pub fn is_stale_connection(&self) -> bool {
        match self {
            Error::Closed => true,
            Error::Write(e) | Error::Read(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

/// An open upstream connection.
pub struct Conn {
    io: TcpStream,
}

impl Conn {
    pub fn new(io: TcpStream) -> Self {
        Conn { io }
    }

    /// Whether an idle connection can still carry a request: the server has neither closed
    /// it nor sent anything unasked. Costs a syscall only when the socket reports readable.
    pub fn is_reusable(&self) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness may be left over from the last response: look.
            Poll::Ready(Ok(())) => {
                let mut b = [0u8; 1];
                matches!(self.io.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Idle connections to one endpoint, shared by the pool and the response bodies that give
/// their connection back.
pub struct Idle {
    conns: Mutex<Vec<Conn>>,
    max: usize,
}

impl Idle {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Idle {
            conns: Mutex::new(Vec::new()),
            max,
        })
    }

    /// A live idle connection, most recently used first; dead ones are dropped.
    pub fn take(&self) -> Option<Conn> {
        let mut list = self.conns.lock();
        while let Some(c) = list.pop() {
            if c.is_reusable() {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, c: Conn) {
        let mut list = self.conns.lock();
        if list.len() < self.max {
            list.push(c);
        }
    }

    pub fn len(&self) -> usize {
        self.conns.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request head as the proxy's upstream side holds it: borrowed, so that a request sent
/// again (a retry, a stale pooled connection) is encoded from the same parts without a copy.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// Origin form: path and query.
    pub target: &'a str,
    /// Written first when given; `headers` should then hold no `Host`.
    pub host: Option<&'a HeaderValue>,
    pub headers: &'a HeaderMap,
    /// Header lines (`name: value\r\n`) written after `headers` as they are: what the proxy
    /// adds to every request, formatted once and not hashed into the map.
    pub lines: &'a [u8],
}

/// Adds header lines (`name: value\r\n`, as in [`RequestHead::lines`]) to a map, replacing
/// values of the same names; the values share `lines`' buffer. Lines that are not a valid
/// header are skipped.
pub fn insert_lines(lines: &Bytes, headers: &mut HeaderMap) {
    let mut at = 0;
    while let Some(len) = lines[at..].windows(2).position(|w| w == b"\r\n") {
        let line = at..at + len;
        at += len + 2;
        let Some(colon) = lines[line.clone()].iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(name) = HeaderName::from_bytes(&lines[line.start..line.start + colon]) else {
            continue;
        };
        let mut value = line.start + colon + 1;
        while value < line.end && lines[value] == b' ' {
            value += 1;
        }
        if let Ok(v) = HeaderValue::from_maybe_shared(lines.slice(value..line.end)) {
            headers.insert(name, v);
        }
    }
}

/// Sends the request `req` (with `body`) on `conn` and reads the response head; the response
/// body streams from the connection, which returns to `idle` once the body has been read to
/// its end (if the exchange lets the connection be reused).
pub async fn send<B>(
    mut conn: Conn,
    req: &RequestHead<'_>,
    mut body: B,
    idle: Arc<Idle>,
    max_head: usize,
) -> Result<Response<RespBody>, Error>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let head_only = *req.method == Method::HEAD;
    let close_requested = req
        .headers
        .get(http::header::CONNECTION)
        .is_some_and(|v| has_token(v.as_bytes(), b"close"));
    let framing = if body.is_end_stream() {
        if matches!(*req.method, Method::POST | Method::PUT | Method::PATCH) {
            ReqFraming::Length(0)
        } else {
            ReqFraming::None
        }
    } else {
        match body.size_hint().exact() {
            Some(n) => ReqFraming::Length(n),
            None => ReqFraming::Chunked,
        }
    };
    let mut head = crate::reuse::buffer(head_len(req));
    encode_head(&mut head, req, framing);
    // A small body of known length goes out with its head in one write.
    let mut left = match framing {
        ReqFraming::Length(n) => n,
        _ => 0,
    };
    if left > 0 && left <= 4096 {
        if let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Error::RequestBody(e.into()))?;
            if let Ok(d) = frame.into_data() {
                if d.len() as u64 > left {
                    return Err(Error::RequestBody(
                        "request body longer than its content-length".into(),
                    ));
                }
                left -= d.len() as u64;
                head.extend_from_slice(&d);
            }
        }
    }
    conn.io.write_all(&head).await.map_err(Error::Write)?;
    drop(head);
    if !(matches!(framing, ReqFraming::None) || left == 0 && body.is_end_stream()) {
        write_body(&mut conn.io, &mut body, framing, left).await?;
    }
    drop(body);

    let mut buf = BytesMut::with_capacity(FIRST_READ);
    loop {
        let (status, version, headers, len) = loop {
            match parse_head(&buf, max_head)? {
                Some(h) => break h,
                None => {
                    if buf.capacity() - buf.len() < 256 {
                        buf.reserve(buf.capacity().min(max_head));
                    }
                    let n = conn.io.read_buf(&mut buf).await.map_err(Error::Read)?;
                    if n == 0 {
                        return Err(if buf.is_empty() {
                            Error::Closed
                        } else {
                            Error::Malformed("connection closed inside the response head")
                        });
                    }
                }
            }
        };
        let head = buf.split_to(len).freeze();
        // 1xx (100 Continue, 103 Early Hints): informational, the final answer follows. 101
        // would switch protocols, which the proxy never asks for.
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(Error::Malformed(
                    "101 Switching Protocols without an upgrade",
                ));
            }
            continue;
        }
        let status =
            StatusCode::from_u16(status).map_err(|_| Error::Malformed("invalid status code"))?;
        let hop = HopHeaders::read(&head, &headers);
        let keep_alive = !close_requested
            && match version {
                Version::HTTP_10 => hop.keep_alive,
                _ => !hop.close,
            };
        let bodiless =
            head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let framing = if bodiless {
            RespFraming::Length(0)
        } else if let Some(te) = hop.transfer_encoding {
            if ends_with_chunked(te) {
                RespFraming::Chunked(Chunked::Size)
            } else {
                RespFraming::UntilClose
            }
        } else if !hop.lengths.is_empty() {
            RespFraming::Length(content_length_of(hop.lengths.iter().copied())?)
        } else {
            RespFraming::UntilClose
        };
        // Connection-level headers end at this hop, so they never enter the map; nor does
        // the length of a body that has one, which the downstream side states from the body
        // itself (a bodiless answer keeps the length it declares).
        let headers = build_headers(&head, &headers, 0, |name| {
            hop.ends_here(name) || (!bodiless && name.eq_ignore_ascii_case(b"content-length"))
        })
        .ok_or(Error::Malformed("invalid header name or value"))?;
        drop(hop);
        drop(head);
        let reusable = keep_alive && !matches!(framing, RespFraming::UntilClose);
        if buf.is_empty() {
            // Nothing of the body came with the head: the buffer is allocated again only when
            // the body needs it.
            buf = BytesMut::new();
        }
        let mut body = RespBody {
            conn: Some(conn),
            buf,
            framing,
            idle: reusable.then_some(idle),
            exact: None,
        };
        if let RespFraming::Length(n) = body.framing {
            body.exact = Some(n);
            if n == 0 {
                body.finish();
            }
        }
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.version_mut() = version;
        *resp.headers_mut() = headers;
        return Ok(resp);
    }
}

#[derive(Clone, Copy)]
enum ReqFraming {
    None,
    Length(u64),
    Chunked,
}

fn head_len(req: &RequestHead<'_>) -> usize {
    let h: usize = req
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let host = req.host.map_or(0, |v| v.len() + 8);
    req.method.as_str().len() + req.target.len() + host + h + req.lines.len() + 64
}

fn encode_head(out: &mut Vec<u8>, req: &RequestHead<'_>, framing: ReqFraming) {
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(h) = req.host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (n, v) in req.headers {
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(req.lines);
    match framing {
        ReqFraming::None => {}
        ReqFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            // Formatted in place: `Write` for `Vec` cannot fail.
            let _ = write!(out, "{n}");
            out.extend_from_slice(b"\r\n");
        }
        ReqFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the rest of the body; `left`: bytes still due under a content-length.
async fn write_body<B>(
    io: &mut TcpStream,
    body: &mut B,
    framing: ReqFraming,
    left: u64,
) -> Result<(), Error>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut left = Some(left);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::RequestBody(e.into()))?;
        let Ok(data) = frame.into_data() else {
            // Trailers: HTTP/1.1 upstreams get none (as hyper's client sends none).
            continue;
        };
        if data.is_empty() {
            continue;
        }
        match framing {
            ReqFraming::Chunked => {
                let size = format!("{:x}\r\n", data.len());
                if data.len() <= 8192 {
                    let mut b = Vec::with_capacity(size.len() + data.len() + 2);
                    b.extend_from_slice(size.as_bytes());
                    b.extend_from_slice(&data);
                    b.extend_from_slice(b"\r\n");
                    io.write_all(&b).await.map_err(Error::Write)?;
                } else {
                    io.write_all(size.as_bytes()).await.map_err(Error::Write)?;
                    io.write_all(&data).await.map_err(Error::Write)?;
                    io.write_all(b"\r\n").await.map_err(Error::Write)?;
                }
            }
            _ => {
                let l = left.unwrap_or(0);
                if data.len() as u64 > l {
                    return Err(Error::RequestBody(
                        "request body longer than its content-length".into(),
                    ));
                }
                left = Some(l - data.len() as u64);
                io.write_all(&data).await.map_err(Error::Write)?;
            }
        }
    }
    match framing {
        ReqFraming::Chunked => io.write_all(b"0\r\n\r\n").await.map_err(Error::Write),
        ReqFraming::Length(_) if left != Some(0) => Err(Error::RequestBody(
            "request body shorter than its content-length".into(),
        )),
        _ => Ok(()),
    }
}

/// Where each header's name and value lie in a head: (name start, name end, value start,
/// value end). Kept inline for the usual few headers: the head's bytes move into a shared
/// buffer after parsing, so the parser's borrowed slices cannot be kept.
pub(crate) type HeaderRanges = smallvec::SmallVec<[(u32, u32, u32, u32); 16]>;

/// Header slots for httparse, left uninitialised: filling all `MAX_HEADERS` of them for
/// every head cost more than the parse itself.
pub(crate) fn header_slots<'b>() -> [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}

/// The ranges of parsed headers, as offsets from `base` (the head's first byte).
pub(crate) fn header_ranges(base: &[u8], headers: &[httparse::Header<'_>]) -> HeaderRanges {
    let base = base.as_ptr() as usize;
    headers
        .iter()
        .map(|h| {
            // Heads are at most `max_head` (far below 4 GiB) long.
            let n = (h.name.as_ptr() as usize - base) as u32;
            let v = (h.value.as_ptr() as usize - base) as u32;
            (n, n + h.name.len() as u32, v, v + h.value.len() as u32)
        })
        .collect()
}

type Head = (u16, Version, HeaderRanges, usize);

/// Parses a complete response head at the start of `buf`: status, version, header name and
/// value ranges, head length. `None`: more bytes needed.
fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<Head>, Error> {
    let mut slots = header_slots();
    let mut r = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut r, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => {
            let ranges = header_ranges(buf, r.headers);
            let version = match r.version {
                Some(0) => Version::HTTP_10,
                _ => Version::HTTP_11,
            };
            Ok(Some((r.code.unwrap_or(0), version, ranges, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            Err(Error::HeadTooLarge(max_head))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Error::Malformed("too many headers")),
        Err(_) => Err(Error::Malformed("invalid response head")),
    }
}

/// The header map of a head whose headers lie at `ranges`, with room for `extra` more;
/// values share the head's buffer. `None`: a name or value that is not valid.
pub(crate) fn build_headers(
    head: &Bytes,
    ranges: &[(u32, u32, u32, u32)],
    extra: usize,
    skip: impl Fn(&[u8]) -> bool,
) -> Option<HeaderMap> {
    let mut map = crate::reuse::header_map(ranges.len() + extra);
    for &(ns, ne, vs, ve) in ranges {
        let name = &head[ns as usize..ne as usize];
        if skip(name) {
            continue;
        }
        let name = HeaderName::from_bytes(name).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize)).ok()?;
        map.append(name, value);
    }
    Some(map)
}

pub(crate) fn content_length(h: &HeaderMap) -> Result<u64, Error> {
    content_length_of(
        h.get_all(http::header::CONTENT_LENGTH)
            .iter()
            .map(|v| v.as_bytes()),
    )
}

/// The one length the `Content-Length` values state (repeats of the same number allowed).
fn content_length_of<'v>(values: impl Iterator<Item = &'v [u8]>) -> Result<u64, Error> {
    let mut found: Option<u64> = None;
    for v in values {
        for part in v.split(|&b| b == b',') {
            let s = std::str::from_utf8(part)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(Error::Malformed("invalid content-length"))?;
            let n: u64 = s
                .parse()
                .map_err(|_| Error::Malformed("invalid content-length"))?;
            if found.is_some_and(|f| f != n) {
                return Err(Error::Malformed("conflicting content-length values"));
            }
            found = Some(n);
        }
    }
    found.ok_or(Error::Malformed("invalid content-length"))
}

pub(crate) fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// What a head's connection-level headers say, read from its raw bytes: the framing and
/// keep-alive decisions need no header map, and these headers do not go into one.
struct HopHeaders<'h> {
    close: bool,
    keep_alive: bool,
    /// The last `Transfer-Encoding` value.
    transfer_encoding: Option<&'h [u8]>,
    lengths: smallvec::SmallVec<[&'h [u8]; 1]>,
    /// Names the `Connection` header lists (other than `close` and `keep-alive`).
    named: smallvec::SmallVec<[&'h [u8]; 2]>,
}

impl<'h> HopHeaders<'h> {
    fn read(head: &'h [u8], ranges: &[(u32, u32, u32, u32)]) -> Self {
        let mut hop = HopHeaders {
            close: false,
            keep_alive: false,
            transfer_encoding: None,
            lengths: Default::default(),
            named: Default::default(),
        };
        for &(ns, ne, vs, ve) in ranges {
            let name = &head[ns as usize..ne as usize];
            let value = &head[vs as usize..ve as usize];
            if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        hop.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        hop.keep_alive = true;
                    } else if !token.is_empty() {
                        hop.named.push(token);
                    }
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                hop.transfer_encoding = Some(value);
            } else if name.eq_ignore_ascii_case(b"content-length") {
                hop.lengths.push(value);
            }
        }
        hop
    }

    /// Whether a header of this name ends at this hop.
    fn ends_here(&self, name: &[u8]) -> bool {
        crate::hop::is_hop_by_hop(name) || self.named.iter().any(|n| name.eq_ignore_ascii_case(n))
    }
}

pub(crate) fn ends_with_chunked(v: &[u8]) -> bool {
    v.rsplit(|&b| b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

enum RespFraming {
    /// Bytes of the body still to come.
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

#[derive(Clone, Copy)]
pub(crate) enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields up to an empty line.
    Trailers,
    /// The body has been read to its end.
    End,
}

/// A response body read straight from its upstream connection.
pub struct RespBody {
    conn: Option<Conn>,
    buf: BytesMut,
    framing: RespFraming,
    /// Where the connection goes when the body ends; `None`: it is closed instead.
    idle: Option<Arc<Idle>>,
    exact: Option<u64>,
}

/// The longest chunk-size line (with extensions) or trailer section accepted.
pub(crate) const MAX_LINE: usize = 8 << 10;

impl RespBody {
    fn finish(&mut self) {
        self.framing = RespFraming::Done;
        self.buf = BytesMut::new();
        if let (Some(c), Some(idle)) = (self.conn.take(), self.idle.take()) {
            idle.put(c);
        }
    }

    /// Reads more into the buffer: `Ready(Ok(0))` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<std::io::Result<usize>> {
        let Some(conn) = &self.conn else {
            return Poll::Ready(Ok(0));
        };
        if self.buf.capacity() - self.buf.len() < want.min(1024) {
            self.buf.reserve(want.clamp(1024, BODY_READ));
        }
        loop {
            match conn.io.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            match crate::drain::try_read_buf(&conn.io, &mut self.buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    /// As [`RespBody::finish`] once the decoder has consumed the whole body.
    fn finish_keep_buf(&mut self) {
        // Bytes after the response: the server sent something unasked; do not reuse.
        if !self.buf.is_empty() {
            self.idle = None;
        }
        self.finish();
    }
}

/// What one step of the chunked decoder found.
pub(crate) enum Decoded {
    /// More bytes are needed.
    More,
    Frame(Frame<Bytes>),
    /// The body ended (after its trailers, if any).
    End,
}

/// One step of a chunked body's decoder over the bytes buffered so far: consumes what it
/// decodes from `buf`. Shared by the client (responses) and the server (requests).
pub(crate) fn decode_chunked(state: &mut Chunked, buf: &mut BytesMut) -> Result<Decoded, BoxError> {
    loop {
        match *state {
            Chunked::End => return Ok(Decoded::End),
            Chunked::Size => {
                let Some(eol) = find_crlf(buf) else {
                    return if buf.len() > MAX_LINE {
                        Err("chunk size line too long".into())
                    } else {
                        Ok(Decoded::More)
                    };
                };
                let line = &buf[..eol];
                let hex = line
                    .split(|&b| b == b';')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii();
                if hex.is_empty() || hex.len() > 15 {
                    return Err("invalid chunk size".into());
                }
                let mut n: u64 = 0;
                for &b in hex {
                    let d = (b as char).to_digit(16).ok_or("invalid chunk size")?;
                    n = n * 16 + u64::from(d);
                }
                buf.advance(eol + 2);
                *state = if n == 0 {
                    Chunked::Trailers
                } else {
                    Chunked::Data(n)
                };
            }
            Chunked::Data(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let take = (buf.len() as u64).min(left) as usize;
                let data = buf.split_to(take).freeze();
                *state = if take as u64 == left {
                    Chunked::DataEnd
                } else {
                    Chunked::Data(left - take as u64)
                };
                return Ok(Decoded::Frame(Frame::data(data)));
            }
            Chunked::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Decoded::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("missing CRLF after chunk data".into());
                }
                buf.advance(2);
                *state = Chunked::Size;
            }
            Chunked::Trailers => {
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                    *state = Chunked::End;
                    return Ok(Decoded::End);
                }
                let Some(end) = find(buf, b"\r\n\r\n") else {
                    return if buf.len() > MAX_LINE {
                        Err("trailer section too long".into())
                    } else {
                        Ok(Decoded::More)
                    };
                };
                let block = buf.split_to(end + 4).freeze();
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut trailers = HeaderMap::new();
                match httparse::parse_headers(&block, &mut slots) {
                    Ok(httparse::Status::Complete((_, hs))) => {
                        for h in hs {
                            if let (Ok(n), Ok(v)) = (
                                HeaderName::from_bytes(h.name.as_bytes()),
                                HeaderValue::from_bytes(h.value),
                            ) {
                                trailers.append(n, v);
                            }
                        }
                    }
                    _ => return Err("invalid trailers".into()),
                }
                *state = Chunked::End;
                return Ok(Decoded::Frame(Frame::trailers(trailers)));
            }
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    find(b, b"\r\n")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match &this.framing {
                RespFraming::Done => return Poll::Ready(None),
                RespFraming::Length(left) => {
                    let left = *left;
                    if left == 0 {
                        this.finish_keep_buf();
                        return Poll::Ready(None);
                    }
                    if !this.buf.is_empty() {
                        let take = (this.buf.len() as u64).min(left) as usize;
                        let data = this.buf.split_to(take).freeze();
                        let rest = left - take as u64;
                        this.framing = RespFraming::Length(rest);
                        if rest == 0 {
                            this.finish_keep_buf();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    let want = left.min(BODY_READ as u64) as usize;
                    match this.poll_fill(cx, want) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(0)) => {
                            this.fail();
                            return Poll::Ready(Some(Err(
                                "upstream closed before the end of the body".into(),
                            )));
                        }
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => {
                            this.fail();
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    }
                }
                RespFraming::UntilClose => {
                    if !this.buf.is_empty() {
                        let data = this.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match this.poll_fill(cx, BODY_READ) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(0)) => {
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => {
                            this.fail();
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    }
                }
                RespFraming::Chunked(state) => {
                    let mut state = *state;
                    let step = decode_chunked(&mut state, &mut this.buf);
                    this.framing = RespFraming::Chunked(state);
                    match step {
                        Ok(Decoded::Frame(frame)) => {
                            if matches!(state, Chunked::End) {
                                this.finish_keep_buf();
                            }
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        Ok(Decoded::End) => {
                            this.finish_keep_buf();
                            return Poll::Ready(None);
                        }
                        Ok(Decoded::More) => {}
                        Err(e) => {
                            this.fail();
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                    match this.poll_fill(cx, 8192) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(0)) => {
                            this.fail();
                            return Poll::Ready(Some(Err(
                                "upstream closed inside a chunked body".into()
                            )));
                        }
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => {
                            this.fail();
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, RespFraming::Done | RespFraming::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.framing, self.exact) {
            (RespFraming::Length(n), Some(_)) => SizeHint::with_exact(*n),
            (RespFraming::Done, _) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl RespBody {
    /// The exchange broke: the connection is closed, never reused.
    fn fail(&mut self) {
        self.idle = None;
        self.conn = None;
        self.framing = RespFraming::Done;
        self.buf = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_or_are_refused() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx: y\r\n\r\nok";
        let (s, v, h, len) = parse_head(ok, 1024).unwrap().unwrap();
        assert_eq!(
            (s, v, h.len(), len),
            (200, Version::HTTP_11, 2, ok.len() - 2)
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nx: y\r\n", 1024)
            .unwrap()
            .is_none());
        assert!(parse_head(b"HTTP/1.1 2x0 OK\r\n\r\n", 1024).is_err());
        assert!(matches!(
            parse_head(&[b'a'; 64], 16),
            Err(Error::Malformed(_)) | Err(Error::HeadTooLarge(_))
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nx: yyyyyyyyyyyyyyyyyyyyyyyy", 16),
            Err(Error::HeadTooLarge(16))
        ));
    }

    #[test]
    fn content_length_values() {
        let mut h = HeaderMap::new();
        h.append("content-length", HeaderValue::from_static("12"));
        assert_eq!(content_length(&h).unwrap(), 12);
        h.append("content-length", HeaderValue::from_static("12, 12"));
        assert_eq!(content_length(&h).unwrap(), 12);
        h.append("content-length", HeaderValue::from_static("13"));
        assert!(content_length(&h).is_err());
        let mut h = HeaderMap::new();
        h.append("content-length", HeaderValue::from_static("-1"));
        assert!(content_length(&h).is_err());
    }

    #[test]
    fn tokens() {
        assert!(has_token(b"keep-alive, Close", b"close"));
        assert!(!has_token(b"closed", b"close"));
        assert!(ends_with_chunked(b"gzip, chunked"));
        assert!(!ends_with_chunked(b"chunked, gzip"));
    }

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), BoxError> {
        let mut buf = BytesMut::from(input);
        let mut state = Chunked::Size;
        let mut data = Vec::new();
        let mut trailers = None;
        loop {
            match decode_chunked(&mut state, &mut buf)? {
                Decoded::Frame(f) => match f.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Decoded::End => return Ok((data, trailers)),
                Decoded::More => return Err("incomplete".into()),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode() {
        let (d, t) = decode_all(b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((d.as_slice(), t.is_none()), (&b"abcde"[..], true));
        let (d, t) = decode_all(b"1\r\nx\r\n0\r\ngrpc-status: 0\r\n\r\n").unwrap();
        assert_eq!(d, b"x");
        assert_eq!(t.unwrap()["grpc-status"], "0");
        assert!(decode_all(b"zz\r\nabc\r\n").is_err());
        assert!(decode_all(b"3\r\nabcXX0\r\n\r\n").is_err());
        assert!(decode_all(b"3\r\nab").is_err());
    }
}
