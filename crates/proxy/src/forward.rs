//! Forwarding: upstream connections, kept alive and pooled per endpoint address.
//!
//! Built on hyper's connection-level client rather than a pooled client so that the proxy
//! dials the endpoint it chose while the request keeps its own authority, and so that a
//! connect failure (flag UF) is told apart from a reset after connecting (UC). HTTP/1.1
//! connections are parked when their response head arrives and reused once its body is consumed; HTTP/2 (h2c,
//! prior knowledge) uses one multiplexed connection per endpoint.
//!
//! Connections are pooled per (endpoint, TLS): a TLS target's connections are keyed by the
//! address and the target's tag, so plaintext and TLS (or two TLS settings) never share one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::body::BoxError;
use crate::h1client;
use crate::tls::{TlsTarget, UpstreamPeer};

/// Request bodies stream (see [`crate::upload`]).
pub type ReqBody = crate::upload::ReqBody;

/// A request to send upstream, possibly more than once (a stale pooled connection, a retry):
/// HTTP/2 and TLS take it as a `Request`, the own HTTP/1.1 client encodes its head straight
/// from the borrowed parts, with no copy of the header map.
pub trait Outgoing {
    fn request(&self, http2: bool) -> Request<ReqBody>;
    fn head(&self) -> h1client::RequestHead<'_>;
    /// A body for one attempt.
    fn body(&self) -> ReqBody;
}

/// Why a request got no response from upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("upstream connect error: {0}")]
    Connect(String),
    #[error("upstream reset: {0}")]
    Reset(String),
}

type H1Pool = HashMap<String, Vec<http1::SendRequest<ReqBody>>>;
/// Plaintext HTTP/1.1 connections of the proxy's own client, idle per endpoint.
type OwnPool = HashMap<String, Arc<h1client::Idle>>;

/// An upstream response body: from the proxy's own HTTP/1.1 client (plaintext) or from
/// hyper's (TLS, HTTP/2).
pub enum UpBody {
    Hyper(Incoming),
    Own(h1client::RespBody),
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            UpBody::Own(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Hyper(b) => b.is_end_stream(),
            UpBody::Own(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Hyper(b) => b.size_hint(),
            UpBody::Own(b) => b.size_hint(),
        }
    }
}

/// Idle HTTP/1.1 connections kept per endpoint, over all serving threads' pools (Envoy's
/// default connection limit per cluster). An HTTP/1.1 connection carries one request at a
/// time, so a proxy with N requests in flight to an endpoint needs N connections; keeping
/// fewer than that idle made every request past the cap dial a new connection and drop it
/// after its response (measured: 128 per thread churned under 1,000 downstream connections).
pub const MAX_IDLE_PER_ENDPOINT: usize = 1024;

thread_local! {
    /// Which of an [`Upstreams`]' HTTP/1.1 pools this thread uses (see [`set_local_pool`]).
    static LOCAL_POOL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Makes this thread use pool `index` of every [`Upstreams`] with more than one: a serving
/// thread of its own (current-thread runtime) keeps its upstream connections, whose tasks
/// run on it, to itself.
pub fn set_local_pool(index: usize) {
    LOCAL_POOL.with(|c| c.set(index));
}

pub struct Upstreams {
    /// One HTTP/1.1 pool per serving thread (one in all unless the proxy runs several).
    h1: Box<[Mutex<H1Pool>]>,
    /// Likewise for plaintext connections of the proxy's own client ([`h1client`]).
    own: Box<[Mutex<OwnPool>]>,
    h2: Mutex<HashMap<String, http2::SendRequest<ReqBody>>>,
    connect_timeout: Duration,
    max_idle_per_endpoint: usize,
    /// What the last TLS handshake per pool key proved (see [`crate::tls::UpstreamPeer`]).
    peers: Mutex<HashMap<String, UpstreamPeer>>,
    failures: Option<Arc<crate::telemetry::metrics::Metrics>>,
}

impl Upstreams {
    /// `pools`: HTTP/1.1 pools, one per serving thread.
    pub fn new(connect_timeout: Duration, pools: usize) -> Arc<Self> {
        Arc::new(Upstreams {
            h1: (0..pools.max(1)).map(|_| Mutex::default()).collect(),
            own: (0..pools.max(1)).map(|_| Mutex::default()).collect(),
            h2: Mutex::default(),
            connect_timeout,
            // Each thread's share, with a floor for uneven load across threads.
            max_idle_per_endpoint: (MAX_IDLE_PER_ENDPOINT / pools.max(1)).max(128),
            peers: Mutex::default(),
            failures: None,
        })
    }

    /// As [`Upstreams::new`], counting TLS handshake failures in `metrics`.
    pub fn with_metrics(
        connect_timeout: Duration,
        pools: usize,
        metrics: Arc<crate::telemetry::metrics::Metrics>,
    ) -> Arc<Self> {
        let mut u = Upstreams::new(connect_timeout, pools);
        Arc::get_mut(&mut u).expect("just made").failures = Some(metrics);
        u
    }

    /// Sends `req` to `addr` (`host:port`), over TLS when `tls` is given (the response then
    /// carries an [`UpstreamPeer`] extension). `req` may be sent twice when a pooled
    /// connection turns out to be closed before the request was written.
    pub async fn send_via(
        self: &Arc<Self>,
        addr: &str,
        http2: bool,
        tls: Option<&Arc<TlsTarget>>,
        req: &impl Outgoing,
    ) -> Result<Response<UpBody>, SendError> {
        let keyed;
        let key = match tls {
            None => addr,
            Some(t) => {
                keyed = format!("{addr}#{}", t.tag);
                keyed.as_str()
            }
        };
        let mut resp = self.send_keyed(addr, key, http2, tls, req).await?;
        if tls.is_some() {
            if let Some(p) = self.peers.lock().get(key) {
                resp.extensions_mut().insert(p.clone());
            }
        }
        Ok(resp)
    }

    async fn send_keyed(
        self: &Arc<Self>,
        addr: &str,
        key: &str,
        http2: bool,
        tls: Option<&Arc<TlsTarget>>,
        req: &impl Outgoing,
    ) -> Result<Response<UpBody>, SendError> {
        // The HTTP/2 path and dialing (with a TLS handshake) are boxed: their state is
        // kilobytes, and inline it would sit in every in-flight request's future, which the
        // request path boxes per request (measured with heaptrack under 1,000 connections).
        if http2 {
            return Box::pin(self.send_h2(addr, key, tls, req.request(true)))
                .await
                .map(|r| r.map(UpBody::Hyper));
        }
        if tls.is_none() {
            return self.send_own(addr, key, req).await;
        }
        for _ in 0..3 {
            let (mut sender, pooled) = match self.take_idle(key) {
                Some(s) => (s, true),
                None => (Box::pin(self.dial_h1(addr, key, tls)).await?, false),
            };
            match sender.send_request(req.request(false)).await {
                Ok(resp) => {
                    self.park(key, sender);
                    return Ok(resp.map(UpBody::Hyper));
                }
                Err(e) if pooled && (e.is_canceled() || e.is_closed()) => continue,
                Err(e) => return Err(SendError::Reset(e.to_string())),
            }
        }
        Err(SendError::Reset("pooled connections kept closing".into()))
    }

    /// Plaintext HTTP/1.1 with the proxy's own client: an idle connection of this thread's
    /// pool, or a new one. A reused connection the server closed meanwhile is replaced.
    async fn send_own(
        &self,
        addr: &str,
        key: &str,
        req: &impl Outgoing,
    ) -> Result<Response<UpBody>, SendError> {
        let idle = {
            let pools = &self.own;
            let i = if pools.len() == 1 {
                0
            } else {
                LOCAL_POOL.with(|c| c.get()) % pools.len()
            };
            let mut pool = pools[i].lock();
            match pool.get(key) {
                Some(p) => p.clone(),
                None => {
                    let p = h1client::Idle::new(self.max_idle_per_endpoint);
                    pool.insert(key.to_string(), p.clone());
                    p
                }
            }
        };
        for _ in 0..3 {
            let (conn, pooled) = match idle.take() {
                Some(c) => (c, true),
                None => (
                    h1client::Conn::new(self.connect(addr).await?.into_inner()),
                    false,
                ),
            };
            let head = req.head();
            let sent = h1client::send(
                conn,
                &head,
                req.body(),
                idle.clone(),
                crate::accept::MAX_BUF_SIZE,
            );
            match sent.await {
                Ok(resp) => return Ok(resp.map(UpBody::Own)),
                Err(e) if pooled && e.is_stale_connection() => continue,
                Err(e) => return Err(SendError::Reset(e.to_string())),
            }
        }
        Err(SendError::Reset("pooled connections kept closing".into()))
    }

    /// This thread's HTTP/1.1 pool.
    fn local_h1(&self) -> &Mutex<H1Pool> {
        let i = if self.h1.len() == 1 {
            0
        } else {
            LOCAL_POOL.with(|c| c.get()) % self.h1.len()
        };
        &self.h1[i]
    }

    /// An idle connection to `addr`: one whose previous response body was read to its end
    /// (hyper's connection task marks it ready again without anyone polling it). Closed ones
    /// are dropped; busy ones stay parked.
    fn take_idle(&self, addr: &str) -> Option<http1::SendRequest<ReqBody>> {
        let mut pool = self.local_h1().lock();
        let list = pool.get_mut(addr)?;
        // A closed connection is never ready: it is skipped here and dropped by `park`.
        let i = list.iter().position(|s| s.is_ready())?;
        Some(list.swap_remove(i))
    }

    /// Parks a connection right after its response head arrived; it is handed out again
    /// once ready. Parking at once, rather than from a task that waits for readiness, saves
    /// a task spawn and a wake-up per request.
    fn park(&self, addr: &str, sender: http1::SendRequest<ReqBody>) {
        let mut pool = self.local_h1().lock();
        match pool.get_mut(addr) {
            Some(list) => {
                if list.len() >= self.max_idle_per_endpoint {
                    list.retain(|s| !s.is_closed());
                }
                if list.len() < self.max_idle_per_endpoint {
                    list.push(sender);
                }
            }
            None => {
                pool.insert(addr.to_string(), vec![sender]);
            }
        }
    }

    async fn connect(&self, addr: &str) -> Result<TokioIo<TcpStream>, SendError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| SendError::Connect(format!("{addr}: connect timeout")))?
            .map_err(|e| SendError::Connect(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(TokioIo::new(stream))
    }

    /// The TLS session over a new connection, its proven peer remembered under `key`.
    async fn connect_tls(
        &self,
        addr: &str,
        key: &str,
        tls: &TlsTarget,
        http2: bool,
    ) -> Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, SendError> {
        let tcp = self.connect(addr).await?.into_inner();
        let none = crate::tls::Failures::default();
        let failures = self
            .failures
            .as_ref()
            .map_or(&none, |m| &m.counters.tls_handshake_failures);
        let (stream, peer) = tls
            .connect(tcp, addr, http2, failures)
            .await
            .map_err(SendError::Connect)?;
        self.peers.lock().insert(key.to_string(), peer);
        Ok(TokioIo::new(stream))
    }

    async fn dial_h1(
        &self,
        addr: &str,
        key: &str,
        tls: Option<&Arc<TlsTarget>>,
    ) -> Result<http1::SendRequest<ReqBody>, SendError> {
        let mut builder = http1::Builder::new();
        builder.max_buf_size(crate::accept::MAX_BUF_SIZE);
        let err = |e: hyper::Error| SendError::Connect(format!("{addr}: {e}"));
        let sender = match tls {
            None => {
                let (sender, conn) = builder
                    .handshake(self.connect(addr).await?)
                    .await
                    .map_err(err)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
            Some(t) => {
                let io = self.connect_tls(addr, key, t, false).await?;
                let (sender, conn) = builder.handshake(io).await.map_err(err)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
        };
        Ok(sender)
    }

    async fn send_h2(
        &self,
        addr: &str,
        key: &str,
        tls: Option<&Arc<TlsTarget>>,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let existing = {
            let pool = self.h2.lock();
            pool.get(key).filter(|s| !s.is_closed()).cloned()
        };
        let mut sender = match existing {
            Some(s) => s,
            None => {
                let builder = http2::Builder::new(TokioExecutor::new());
                let err = |e: hyper::Error| SendError::Connect(format!("{addr}: {e}"));
                let s = match tls {
                    None => {
                        let io = self.connect(addr).await?;
                        let (s, conn) = builder.handshake(io).await.map_err(err)?;
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                        s
                    }
                    Some(t) => {
                        let io = self.connect_tls(addr, key, t, true).await?;
                        let (s, conn) = builder.handshake(io).await.map_err(err)?;
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                        s
                    }
                };
                self.h2.lock().insert(key.to_string(), s.clone());
                s
            }
        };
        sender
            .ready()
            .await
            .map_err(|e| SendError::Reset(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| SendError::Reset(e.to_string()))
    }
}
