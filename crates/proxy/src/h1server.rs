//! The proxy's own HTTP/1.1 server side for plaintext downstream connections, the hot path of
//! every sidecar.
//!
//! Why not hyper's server here: a hyper connection holds an 8 KiB head write buffer and a read
//! buffer of 8 KiB or more for its whole life, idle or not (heaptrack under 1,000
//! connections). Here a connection waiting for its next request holds its socket and a few
//! words: the read buffer is allocated when bytes arrive, sized to the head (1 KiB first,
//! doubled up to the 64 KiB head limit), and released once the request has been read; the
//! response head is written from a buffer that lives only for that write.
//!
//! Bad input is answered, never a panic: a head that does not parse gets 400, one over the
//! limit (size or header count) 431, unsupported framing 400 or 501, and the connection
//! closes. `Expect: 100-continue` is answered at once. Requests on one connection are served
//! in order (pipelined ones too); a request body left unread by its handler closes the
//! connection after the response.

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::body::{BoxError, ProxyBody};
use crate::h1client::{
    build_headers, content_length, decode_chunked, ends_with_chunked, has_token, header_ranges,
    header_slots, Chunked, Decoded,
};

/// First read of a request head; doubled while the head is incomplete, up to the limit.
const FIRST_READ: usize = 1024;
/// Largest read while streaming a request body.
const BODY_READ: usize = 16 << 10;
/// A response body frame up to this size goes out in the same write as the head.
const COALESCE: usize = 16 << 10;

/// A downstream request body: hyper's (HTTP/2, TLS) or this server's.
pub enum InBody {
    Hyper(Incoming),
    Own(ReqBody),
}

impl Body for InBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            InBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            InBody::Own(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            InBody::Hyper(b) => b.is_end_stream(),
            InBody::Own(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            InBody::Hyper(b) => b.size_hint(),
            InBody::Own(b) => b.size_hint(),
        }
    }
}

/// What one connection's requests and the connection loop share: the socket and the read
/// state (buffer and the current body's framing).
struct Shared {
    io: TcpStream,
    read: Mutex<ReadState>,
}

struct ReadState {
    buf: BytesMut,
    framing: Framing,
    exact: Option<u64>,
    /// The body broke (bad chunk, reset): the connection cannot serve another request.
    failed: bool,
    /// Send `100 Continue` before reading the body.
    expect_continue: bool,
    /// Which request the state belongs to: a body kept past its exchange reads nothing of
    /// the next request's.
    generation: u64,
}

#[derive(Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked(Chunked),
    Done,
}

/// A request body read from the connection as the handler polls it.
pub struct ReqBody {
    shared: Arc<Shared>,
    generation: u64,
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let generation = self.generation;
        let shared = &*self.shared;
        let mut st = shared.read.lock();
        if st.generation != generation {
            return Poll::Ready(None);
        }
        if st.expect_continue {
            // Small and written once: the socket takes it whole or the body fails.
            match shared.io.try_write(b"HTTP/1.1 100 Continue\r\n\r\n") {
                Ok(25) => st.expect_continue = false,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    match shared.io.poll_write_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(_) => {
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                    }
                }
                _ => {
                    st.failed = true;
                    st.framing = Framing::Done;
                    return Poll::Ready(Some(Err("writing 100 Continue failed".into())));
                }
            }
        }
        loop {
            match st.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(left) => {
                    if !st.buf.is_empty() {
                        let take = (st.buf.len() as u64).min(left) as usize;
                        let data = st.buf.split_to(take).freeze();
                        let rest = left - take as u64;
                        st.framing = if rest == 0 {
                            Framing::Done
                        } else {
                            Framing::Length(rest)
                        };
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    let want = left.min(BODY_READ as u64) as usize;
                    match fill(&shared.io, &mut st.buf, want, cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(n)) if n > 0 => {}
                        Poll::Ready(r) => {
                            st.failed = true;
                            st.framing = Framing::Done;
                            let e: BoxError = match r {
                                Err(e) => e.into(),
                                Ok(_) => "client closed before the end of the body".into(),
                            };
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                Framing::Chunked(mut state) => {
                    let st = &mut *st;
                    let step = decode_chunked(&mut state, &mut st.buf);
                    st.framing = match state {
                        Chunked::End => Framing::Done,
                        s => Framing::Chunked(s),
                    };
                    match step {
                        Ok(Decoded::Frame(f)) => return Poll::Ready(Some(Ok(f))),
                        Ok(Decoded::End) => return Poll::Ready(None),
                        Ok(Decoded::More) => {}
                        Err(e) => {
                            st.failed = true;
                            st.framing = Framing::Done;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                    match fill(&shared.io, &mut st.buf, 8192, cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(n)) if n > 0 => {}
                        Poll::Ready(r) => {
                            st.failed = true;
                            st.framing = Framing::Done;
                            let e: BoxError = match r {
                                Err(e) => e.into(),
                                Ok(_) => "client closed inside a chunked body".into(),
                            };
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let st = self.shared.read.lock();
        st.generation != self.generation || matches!(st.framing, Framing::Done)
    }

    fn size_hint(&self) -> SizeHint {
        let st = self.shared.read.lock();
        if st.generation != self.generation {
            return SizeHint::with_exact(0);
        }
        match (st.framing, st.exact) {
            (Framing::Length(n), Some(_)) => SizeHint::with_exact(n),
            (Framing::Done, _) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Reads more bytes into `buf` (at least room for `want`, within bounds).
fn fill(
    io: &TcpStream,
    buf: &mut BytesMut,
    want: usize,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if buf.capacity() - buf.len() < want.min(1024) {
        buf.reserve(want.clamp(1024, BODY_READ));
    }
    loop {
        match io.poll_read_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        match crate::drain::try_read_buf(io, buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

/// Limits and timeouts of a served connection.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Largest request head (and so largest head read buffer).
    pub max_head: usize,
    /// Time a request head may take once its first byte has arrived.
    pub head_timeout: Duration,
}

/// Why a request head was refused.
enum HeadError {
    /// 400: not HTTP/1.x as it should be.
    Bad(&'static str),
    /// 431: over the size or header-count limit.
    TooLarge,
    /// 501: a transfer coding other than chunked.
    NotImplemented,
}

/// Serves one plaintext HTTP/1.x connection until it closes, fails or `shutdown` turns true
/// (a request in progress is finished first).
pub async fn serve<F, Fut>(io: TcpStream, opts: Options, shutdown: watch::Receiver<bool>, handle: F)
where
    F: Fn(Request<InBody>) -> Fut,
    Fut: Future<Output = Response<ProxyBody>>,
{
    let shared = Arc::new(Shared {
        io,
        read: Mutex::new(ReadState {
            buf: BytesMut::new(),
            framing: Framing::Done,
            exact: None,
            failed: false,
            expect_continue: false,
            generation: 0,
        }),
    });
    // One shutdown waiter for the connection's life: made per request, its registration
    // with the channel and removal cost more than the rest of the wait.
    let mut watcher = shutdown.clone();
    let mut stopping = std::pin::pin!(watcher.wait_for(|s| *s));
    loop {
        // Wait for the next request's first bytes without holding a buffer (unless a
        // pipelined request is already buffered).
        let buffered = !shared.read.lock().buf.is_empty();
        if !buffered {
            tokio::select! {
                r = shared.io.readable() => if r.is_err() { return },
                _ = &mut stopping => return,
            }
        }
        let head = match tokio::time::timeout(opts.head_timeout, read_head(&shared, opts.max_head))
            .await
        {
            Err(_) => return,
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                let status = match e {
                    HeadError::Bad(why) => {
                        tracing::debug!(error = why, "bad request head");
                        "400 Bad Request"
                    }
                    HeadError::TooLarge => "431 Request Header Fields Too Large",
                    HeadError::NotImplemented => "501 Not Implemented",
                };
                let mut msg = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\ndate: "
                )
                .into_bytes();
                push_date(&mut msg);
                msg.extend_from_slice(b"\r\n\r\n");
                let _ = write_all(&shared.io, &msg).await;
                return;
            }
        };
        let Parsed {
            req,
            keep_alive: client_keep_alive,
            http10,
        } = head;
        let head_request = req.method() == Method::HEAD;
        let resp = handle(req).await;
        // The request body, if its handler left it unread, makes the connection unusable.
        let body_done = {
            let st = shared.read.lock();
            !st.failed && matches!(st.framing, Framing::Done)
        };
        let keep_alive = client_keep_alive && body_done && !*shutdown.borrow();
        let keep_alive =
            match write_response(&shared.io, resp, head_request, http10, keep_alive).await {
                Ok(k) => k,
                Err(_) => return,
            };
        if !keep_alive {
            return;
        }
        let mut st = shared.read.lock();
        if st.buf.is_empty() {
            // Idle until the next request: no buffer held.
            st.buf = BytesMut::new();
        }
    }
}

struct Parsed {
    req: Request<InBody>,
    keep_alive: bool,
    http10: bool,
}

/// Reads and parses a request head; `Ok(None)`: the connection closed before one began.
async fn read_head(shared: &Arc<Shared>, max_head: usize) -> Result<Option<Parsed>, HeadError> {
    let mut buf = std::mem::take(&mut shared.read.lock().buf);
    loop {
        if !buf.is_empty() {
            if let Some(p) = parse(&mut buf, max_head, shared)? {
                return Ok(Some(p));
            }
        }
        if buf.capacity() - buf.len() < 512 {
            let grow = if buf.capacity() == 0 {
                FIRST_READ
            } else {
                buf.capacity().min(max_head)
            };
            buf.reserve(grow);
        }
        let n = loop {
            match crate::drain::try_read_buf(&shared.io, &mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if shared.io.readable().await.is_err() {
                        return Ok(None);
                    }
                }
                Err(_) => return Ok(None),
            }
        };
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HeadError::Bad("connection closed inside the request head"))
            };
        }
    }
}

/// How many headers the request path adds at most in the common case (`x-request-id`,
/// `x-forwarded-proto`, four of trace context, the peer metadata header).
const ADDED_HEADERS: usize = 8;

/// Parses a complete head at the start of `buf` into a request whose body reads from the
/// connection; the rest of `buf` becomes the body's (and later requests') buffer.
fn parse(
    buf: &mut BytesMut,
    max_head: usize,
    shared: &Arc<Shared>,
) -> Result<Option<Parsed>, HeadError> {
    let mut slots = header_slots();
    let mut r = httparse::Request::new(&mut []);
    let len = match r.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Bad("invalid request head")),
    };
    if len > max_head {
        return Err(HeadError::TooLarge);
    }
    let base = buf.as_ptr() as usize;
    let method = Method::from_bytes(r.method.unwrap_or("").as_bytes())
        .map_err(|_| HeadError::Bad("invalid method"))?;
    let path = r.path.unwrap_or("");
    let path_range = (path.as_ptr() as usize - base, path.len());
    let http10 = r.version == Some(0);
    let ranges = header_ranges(buf, r.headers);
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path_range.0..path_range.0 + path_range.1))
        .map_err(|_| HeadError::Bad("invalid request target"))?;
    // Room for the headers the request path adds (request id, trace context, forwarding),
    // so that adding them does not grow the map.
    let headers = build_headers(&head, &ranges, ADDED_HEADERS, |_| false)
        .ok_or(HeadError::Bad("invalid header name or value"))?;
    drop(head);
    let conn_close = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"close"));
    let keep_alive = if http10 {
        headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"keep-alive"))
    } else {
        !conn_close
    };
    let (framing, exact) = if let Some(te) = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        if http10 {
            return Err(HeadError::Bad("transfer-encoding in an HTTP/1.0 request"));
        }
        if headers.contains_key(http::header::CONTENT_LENGTH) {
            // Both framings: a smuggling attempt as often as not; refused.
            return Err(HeadError::Bad("both transfer-encoding and content-length"));
        }
        if !ends_with_chunked(te.as_bytes()) {
            return Err(HeadError::NotImplemented);
        }
        (Framing::Chunked(Chunked::Size), None)
    } else if headers.contains_key(http::header::CONTENT_LENGTH) {
        let n = content_length(&headers).map_err(|_| HeadError::Bad("invalid content-length"))?;
        (
            if n == 0 {
                Framing::Done
            } else {
                Framing::Length(n)
            },
            Some(n),
        )
    } else {
        (Framing::Done, Some(0))
    };
    let generation;
    let expect_continue = !matches!(framing, Framing::Done)
        && !http10
        && headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    {
        let mut st = shared.read.lock();
        st.buf = std::mem::take(buf);
        st.framing = framing;
        st.exact = exact;
        st.failed = false;
        st.expect_continue = expect_continue;
        st.generation += 1;
        generation = st.generation;
    }
    let mut req = Request::new(InBody::Own(ReqBody {
        shared: shared.clone(),
        generation,
    }));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = if http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    *req.headers_mut() = headers;
    Ok(Some(Parsed {
        req,
        keep_alive,
        http10,
    }))
}

/// Writes a response; returns whether the connection may serve another request.
async fn write_response(
    io: &TcpStream,
    resp: Response<ProxyBody>,
    head_request: bool,
    http10: bool,
    mut keep_alive: bool,
) -> std::io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let bodiless = head_request
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    // The body's own length wins over a stale header; an unknown length is chunked (or, to
    // an HTTP/1.0 client, delimited by closing).
    let exact = body.size_hint().exact();
    let chunked = !bodiless && exact.is_none() && !http10;
    if !bodiless && exact.is_none() && http10 {
        keep_alive = false;
    }
    let mut head = crate::reuse::buffer(
        64 + parts
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>(),
    );
    head.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    let mut has_date = false;
    for (n, v) in &parts.headers {
        // Framing is this hop's own: a bodiless answer keeps the length it declares (HEAD),
        // any other gets the body's real length or chunked coding.
        if (n == http::header::CONTENT_LENGTH && !bodiless)
            || n == http::header::TRANSFER_ENCODING
            || n == http::header::CONNECTION
        {
            continue;
        }
        has_date |= n == http::header::DATE;
        head.extend_from_slice(n.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !has_date {
        head.extend_from_slice(b"date: ");
        push_date(&mut head);
        head.extend_from_slice(b"\r\n");
    }
    if let (false, Some(n)) = (bodiless, exact) {
        head.extend_from_slice(b"content-length: ");
        // Formatted in place: `Write` for `Vec` cannot fail.
        let _ = write!(head, "{n}");
        head.extend_from_slice(b"\r\n");
    }
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !keep_alive {
        head.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        head.extend_from_slice(b"connection: keep-alive\r\n");
    }
    head.extend_from_slice(b"\r\n");
    crate::reuse::give_header_map(parts.headers);
    if bodiless {
        write_all(io, &head).await?;
        return Ok(keep_alive);
    }
    // The first frame rides with the head when it is small (one write for most answers).
    let mut pending: Option<Frame<Bytes>> = None;
    if !body.is_end_stream() {
        match body.frame().await {
            None => {}
            Some(Err(_)) => return Err(std::io::Error::other("response body failed")),
            Some(Ok(f)) => match f.data_ref() {
                Some(d) if d.len() <= COALESCE => {
                    if chunked && !d.is_empty() {
                        head.extend_from_slice(format!("{:x}\r\n", d.len()).as_bytes());
                        head.extend_from_slice(d);
                        head.extend_from_slice(b"\r\n");
                    } else if !chunked {
                        head.extend_from_slice(d);
                    }
                }
                _ => pending = Some(f),
            },
        }
    }
    if body.is_end_stream() && pending.is_none() {
        if chunked {
            head.extend_from_slice(b"0\r\n\r\n");
        }
        write_all(io, &head).await?;
        return Ok(keep_alive);
    }
    write_all(io, &head).await?;
    drop(head);
    loop {
        let frame = match pending.take() {
            Some(f) => f,
            None => match body.frame().await {
                None => break,
                // Mid-body failure: the client sees a truncated message and the close.
                Some(Err(_)) => return Err(std::io::Error::other("response body failed")),
                Some(Ok(f)) => f,
            },
        };
        match frame.into_data() {
            Ok(d) if d.is_empty() => {}
            Ok(d) if chunked => {
                let mut b = Vec::with_capacity(d.len().min(COALESCE) + 20);
                b.extend_from_slice(format!("{:x}\r\n", d.len()).as_bytes());
                if d.len() <= COALESCE {
                    b.extend_from_slice(&d);
                    b.extend_from_slice(b"\r\n");
                    write_all(io, &b).await?;
                } else {
                    write_all(io, &b).await?;
                    write_all(io, &d).await?;
                    write_all(io, b"\r\n").await?;
                }
            }
            Ok(d) => write_all(io, &d).await?,
            Err(f) => {
                if let (true, Ok(t)) = (chunked, f.into_trailers()) {
                    let mut b = b"0\r\n".to_vec();
                    for (n, v) in &t {
                        b.extend_from_slice(n.as_str().as_bytes());
                        b.extend_from_slice(b": ");
                        b.extend_from_slice(v.as_bytes());
                        b.extend_from_slice(b"\r\n");
                    }
                    b.extend_from_slice(b"\r\n");
                    write_all(io, &b).await?;
                    return Ok(keep_alive);
                }
            }
        }
    }
    if chunked {
        write_all(io, b"0\r\n\r\n").await?;
    }
    Ok(keep_alive)
}

async fn write_all(io: &TcpStream, mut b: &[u8]) -> std::io::Result<()> {
    while !b.is_empty() {
        match io.try_write(b) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => b = &b[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => io.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends the `Date` value, formatted once per second per thread.
fn push_date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs || c.1.is_empty() {
            *c = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(c.1.as_bytes());
    })
}
