//! Accepting connections: HTTP/1.1 and HTTP/2 with prior knowledge (h2c, so gRPC works) on
//! one port. Each connection is its own task, so a malformed request only costs its own
//! connection (hyper answers it with 400). On shutdown the listener stops and open
//! connections are closed gracefully.
//!
//! An inbound proxy first admits each connection under its PeerAuthentication (see
//! [`crate::tls::inbound`]); a TLS session is then served by the protocol ALPN chose.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::body::ProxyBody;
use crate::conn::ConnInfo;
use crate::h1server::{self, InBody};
use crate::spread::{Inbox, Open, Spread};
use crate::telemetry::metrics::Metrics;

/// The HTTP/2 connection preface a prior-knowledge (h2c) client starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Largest buffered message head (and read buffer) per HTTP/1.1 connection, downstream and
/// upstream. hyper starts reading at 8 KiB and grows only when a head or read needs more;
/// 64 KiB keeps Envoy's default 60 KiB header limit while bounding a connection's buffers.
/// Downstream it is also the head limit proper (`max_header_size`):
/// the buffer limit alone let a head that arrived in one read exceed it. (hyper-util's `auto`
/// builder, for the rare connections whose protocol the first bytes do not tell, has no such
/// setting and keeps the buffer limit only.)
pub const MAX_BUF_SIZE: usize = 64 << 10;

/// Plaintext HTTP/1.1 connections (see [`h1server`]): the head limit, and 30 s for a head
/// to arrive once begun (as hyper's `header_read_timeout` for the other connections).
const H1_OPTIONS: h1server::Options = h1server::Options {
    max_head: MAX_BUF_SIZE,
    head_timeout: Duration::from_secs(30),
};

/// How long a new connection may stay silent before its protocol is known.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

enum Proto {
    Http1,
    Http2,
    /// The first bytes so far are a prefix of the HTTP/2 preface: let hyper's `auto`
    /// builder read on.
    Unknown,
}

/// Tells HTTP/1.1 from HTTP/2 prior knowledge by peeking at the first bytes (they stay in
/// the socket), so the common case is served by a single-protocol connection without the
/// `auto` builder's rewind buffer.
async fn sniff(stream: &TcpStream) -> Option<Proto> {
    let mut buf = [0u8; 24];
    let n = tokio::time::timeout(FIRST_BYTES_TIMEOUT, stream.peek(&mut buf))
        .await
        .ok()?
        .ok()?;
    if n == 0 {
        return None;
    }
    Some(if !H2_PREFACE.starts_with(&buf[..n]) {
        Proto::Http1
    } else if n == H2_PREFACE.len() {
        Proto::Http2
    } else {
        Proto::Unknown
    })
}

/// Drives a connection until it ends, or until shutdown, then closes it gracefully.
macro_rules! drive {
    ($conn:expr, $shutdown:expr, $peer:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %$peer, error = %e, "connection ended with an error");
                }
            }
            _ = $shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            }
        }
    }};
}

/// What a serving thread's connections share.
struct Serving<F> {
    handle: F,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    shutdown: watch::Receiver<bool>,
    tls: Option<Arc<crate::tls::inbound::Inbound>>,
}

impl<F> Serving<F> {
    fn new(
        handle: F,
        shutdown: watch::Receiver<bool>,
        tls: Option<Arc<crate::tls::inbound::Inbound>>,
    ) -> Arc<Serving<F>> {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(MAX_BUF_SIZE)
            .max_header_size(MAX_BUF_SIZE)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new());
        Arc::new(Serving {
            handle,
            h1,
            h2,
            shutdown,
            tls,
        })
    }
}

/// Serves `listener` until `shutdown` turns true, calling `handle` for each request. Each
/// accepted connection goes to the serving thread with the fewest open ones (see
/// [`crate::spread`]), which may be this one.
pub fn serve<F, Fut>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    metrics: Option<Arc<Metrics>>,
    tls: Option<Arc<crate::tls::inbound::Inbound>>,
    spread: Spread,
    handle: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(Request<InBody>, Arc<ConnInfo>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    tokio::spawn(async move {
        let serving = Serving::new(handle, shutdown.clone(), tls);
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            if let Some(m) = &metrics {
                m.counters
                    .downstream_cx_total
                    .fetch_add(1, Ordering::Relaxed);
            }
            let _ = stream.set_nodelay(true);
            if let Some((stream, open)) = spread.place(stream, peer) {
                tokio::spawn(connection(serving.clone(), stream, peer, open));
            }
        }
    })
}

/// Serves the connections another thread's [`serve`] hands to this one through `inbox`,
/// until `shutdown` turns true or that thread stops.
pub fn serve_handed<F, Fut>(
    mut inbox: Inbox,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<Arc<crate::tls::inbound::Inbound>>,
    handle: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(Request<InBody>, Arc<ConnInfo>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    tokio::spawn(async move {
        let serving = Serving::new(handle, shutdown.clone(), tls);
        loop {
            let handed = tokio::select! {
                h = inbox.recv() => match h {
                    Some(h) => h,
                    None => break,
                },
                _ = shutdown.changed() => break,
            };
            // Registered with this thread's reactor from here on.
            let stream = match TcpStream::from_std(handed.stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(peer = %handed.peer, error = %e, "handed connection lost");
                    continue;
                }
            };
            tokio::spawn(connection(
                serving.clone(),
                stream,
                handed.peer,
                handed.open,
            ));
        }
    })
}

/// Serves one accepted connection until it ends, or until shutdown; it counts as `open`
/// on its thread until then.
async fn connection<F, Fut>(
    serving: Arc<Serving<F>>,
    stream: TcpStream,
    peer: SocketAddr,
    open: Open,
) where
    F: Fn(Request<InBody>, Arc<ConnInfo>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let _open = open;
    let mut shutdown = serving.shutdown.clone();
    let handle = serving.handle.clone();
    let service = move |conn: Arc<ConnInfo>| {
        let handle = handle.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let fut = handle(req.map(InBody::Hyper), conn.clone());
            async move { Ok::<_, Infallible>(fut.await) }
        })
    };
    let (h1, h2) = (&serving.h1, &serving.h2);
    let stream = match &serving.tls {
        None => stream,
        Some(t) => match t.admit(stream, peer).await {
            crate::tls::inbound::Admitted::Plain(s) => s,
            crate::tls::inbound::Admitted::Refused => return,
            crate::tls::inbound::Admitted::Tls(s, conn, alpn) => {
                let svc = service(conn);
                let io = TokioIo::new(*s);
                return Box::pin(async move {
                    match alpn {
                        Some(true) => drive!(h2.serve_connection(io, svc), shutdown, peer),
                        Some(false) => drive!(h1.serve_connection(io, svc), shutdown, peer),
                        None => {
                            let auto = auto_builder();
                            drive!(auto.serve_connection(io, svc), shutdown, peer)
                        }
                    }
                })
                .await;
            }
        },
    };
    let conn = ConnInfo::plain(peer);
    match sniff(&stream).await {
        None => {}
        // The hot path: the proxy's own HTTP/1.1 server (see `h1server`).
        Some(Proto::Http1) => {
            let handle = &serving.handle;
            h1server::serve(stream, H1_OPTIONS, shutdown, move |req| {
                handle(req, conn.clone())
            })
            .await
        }
        // Boxed, as is the fallback, so that the common HTTP/1.1 connection's task is no
        // larger than its own state.
        Some(Proto::Http2) => {
            let svc = service(conn);
            Box::pin(async move {
                drive!(
                    h2.serve_connection(TokioIo::new(stream), svc),
                    shutdown,
                    peer
                )
            })
            .await
        }
        Some(Proto::Unknown) => {
            let svc = service(conn);
            Box::pin(async move {
                let auto = auto_builder();
                drive!(
                    auto.serve_connection(TokioIo::new(stream), svc),
                    shutdown,
                    peer
                )
            })
            .await
        }
    }
}

/// hyper's HTTP/1.1-or-2 builder, for connections whose first bytes or ALPN did not tell.
fn auto_builder() -> auto::Builder<TokioExecutor> {
    let mut auto = auto::Builder::new(TokioExecutor::new());
    auto.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(MAX_BUF_SIZE)
        .keep_alive(true);
    auto.http2().timer(TokioTimer::new());
    auto
}
