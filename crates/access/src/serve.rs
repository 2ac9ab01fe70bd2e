//! The hardened listener every HTTP/gRPC port uses: own accept loop with a connection cap
//! that sheds clients which never finished a request head, TLS from the live web config,
//! HTTP/1.1 and HTTP/2 (h2c prior knowledge too, for OTLP/gRPC), basic auth on every
//! request, response headers, header and idle timeouts, graceful shutdown.
//!
//! Services are `tower_service::Service`s (an `axum::Router` fits as is); a hyper
//! `service_fn` is wrapped in [`HyperService`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::auth::{self, Precheck};
use crate::metrics::{AccessMetrics, ListenerCounters};
use crate::source::{ActiveWebConfig, WebConfigSource};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long in-flight requests get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// bcrypt runs on blocking threads; this many at once, so bad passwords cannot take
/// every core.
const MAX_CONCURRENT_BCRYPT: usize = 4;

#[derive(Clone, Debug)]
pub struct ListenerOptions {
    /// The `listener` label of the metrics: "main", "otlp-http", "otlp-grpc", "proxy-admin".
    pub name: &'static str,
    /// Prometheus's `--web.max-connections` (default 512); 0 = no cap.
    pub max_connections: usize,
    /// A connection must finish its TLS handshake, and then send a complete request head,
    /// within this time each (default 10 s); zero = no limit.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (default 5 min);
    /// zero = never.
    /// HTTP/1 keep-alive connections are closed sooner, by `header_read_timeout`, because
    /// hyper starts that clock when it starts waiting for the next request.
    pub idle_timeout: Duration,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            name: "main",
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl ListenerOptions {
    /// The defaults with another listener name.
    pub fn named(name: &'static str) -> Self {
        ListenerOptions {
            name,
            ..Self::default()
        }
    }
}

/// A response body a listener can send: every `Body` whose chunks and errors cross threads.
/// Written once here (with a blanket impl) instead of at every generic function.
pub trait ListenerBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

impl<B> ListenerBody for B where B: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

/// A service a listener runs, one clone per connection: every such `tower_service::Service`
/// (an `axum::Router`, or a [`HyperService`]) has it through the blanket impl.
pub trait ListenerService<B: ListenerBody>:
    tower_service::Service<
        Request<Incoming>,
        Response = Response<B>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> ListenerService<B> for S
where
    B: ListenerBody,
    S: tower_service::Service<
            Request<Incoming>,
            Response = Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
{
}

/// Adapts a hyper `Service` (e.g. from `hyper::service::service_fn`) to the
/// `tower_service::Service` that [`serve`] takes.
#[derive(Clone, Debug)]
pub struct HyperService<S>(pub S);

impl<S, R> tower_service::Service<R> for HyperService<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.0.call(req)
    }
}

/// Open connections, oldest first, with what shedding needs to know about each.
struct Conns {
    registry: Mutex<Registry>,
    closed: Notify,
    counters: Arc<ListenerCounters>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: BTreeMap<u64, Entry>,
}

struct Entry {
    head_done: Arc<AtomicBool>,
    shed: Option<oneshot::Sender<()>>,
}

enum Room {
    Free,
    Shed,
    Full,
}

impl Conns {
    fn register(&self) -> (u64, Arc<AtomicBool>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let head_done = Arc::new(AtomicBool::new(false));
        let mut reg = self.registry.lock();
        let id = reg.next_id;
        reg.next_id += 1;
        reg.conns.insert(
            id,
            Entry {
                head_done: head_done.clone(),
                shed: Some(tx),
            },
        );
        self.counters
            .open
            .store(reg.conns.len() as i64, Ordering::Relaxed);
        (id, head_done, rx)
    }

    fn remove(&self, id: u64) {
        {
            let mut reg = self.registry.lock();
            reg.conns.remove(&id);
            self.counters
                .open
                .store(reg.conns.len() as i64, Ordering::Relaxed);
        }
        self.closed.notify_waiters();
    }

    /// Below the cap: free. At the cap: closes the oldest connection that has not yet sent
    /// a complete request head, if there is one.
    fn make_room(&self, max: usize) -> Room {
        let mut reg = self.registry.lock();
        if reg.conns.len() < max {
            return Room::Free;
        }
        let victim = reg
            .conns
            .iter()
            .find(|(_, e)| !e.head_done.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        let Some(id) = victim else { return Room::Full };
        if let Some(mut e) = reg.conns.remove(&id) {
            if let Some(tx) = e.shed.take() {
                let _ = tx.send(());
            }
        }
        self.counters
            .open
            .store(reg.conns.len() as i64, Ordering::Relaxed);
        Room::Shed
    }
}

/// Removes a connection from the registry however its task ends (even when aborted).
struct ConnGuard {
    conns: Arc<Conns>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conns.remove(self.id);
    }
}

/// What every connection task shares.
struct Inner {
    web: Option<Arc<WebConfigSource>>,
    plain: Arc<ActiveWebConfig>,
    opts: ListenerOptions,
    counters: Arc<ListenerCounters>,
    bcrypt: Arc<Semaphore>,
}

enum Admission {
    Admit,
    Refuse,
    Shutdown,
}

/// Serves HTTP/1.1 and HTTP/2 on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish (up to 30 s) and returns.
pub async fn serve<S, B>(
    listener: TcpListener,
    web: Option<Arc<WebConfigSource>>,
    opts: ListenerOptions,
    metrics: Arc<AccessMetrics>,
    service: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    S: ListenerService<B>,
    B: ListenerBody,
{
    let counters = metrics.listener(opts.name);
    let conns = Arc::new(Conns {
        registry: Mutex::new(Registry::default()),
        closed: Notify::new(),
        counters: counters.clone(),
    });
    let inner = Arc::new(Inner {
        web,
        plain: Arc::new(ActiveWebConfig::plain()),
        opts: opts.clone(),
        counters: counters.clone(),
        bcrypt: Arc::new(Semaphore::new(MAX_CONCURRENT_BCRYPT)),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let shutdown = shutdown;
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = opts.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        ListenerCounters::inc(&counters.accepted);
        match admit(&conns, &opts, shutdown.as_mut()).await {
            Admission::Admit => {}
            Admission::Refuse => {
                ListenerCounters::inc(&counters.refused);
                drop(tcp);
                continue;
            }
            Admission::Shutdown => break,
        }
        let (id, head_done, shed_rx) = conns.register();
        let guard = ConnGuard {
            conns: conns.clone(),
            id,
        };
        tasks.spawn(connection(
            inner.clone(),
            service.clone(),
            tcp,
            head_done,
            shed_rx,
            stop_rx.clone(),
            guard,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = opts.name,
            "connections still open after the shutdown grace period; closing them"
        );
    }
    tasks.shutdown().await;
}

/// How long a new connection may wait for a slot when no header timeout is set.
const DEFAULT_ADMIT_WAIT: Duration = Duration::from_secs(10);

/// `now + d`, saturating far in the future instead of overflowing.
fn deadline_after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// Zero means "no limit" for the listener's timeouts.
fn limit(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// At the cap, shed or wait (up to `header_read_timeout`) for a slot.
async fn admit(
    conns: &Conns,
    opts: &ListenerOptions,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Admission {
    let deadline = deadline_after(limit(opts.header_read_timeout).unwrap_or(DEFAULT_ADMIT_WAIT));
    let max = if opts.max_connections == 0 {
        usize::MAX
    } else {
        opts.max_connections
    };
    loop {
        // Registered before looking, so a close between the look and the wait still wakes us.
        let notified = conns.closed.notified();
        match conns.make_room(max) {
            Room::Free => return Admission::Admit,
            Room::Shed => {
                ListenerCounters::inc(&conns.counters.shed);
                return Admission::Admit;
            }
            Room::Full => {}
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => return Admission::Refuse,
            _ = shutdown.as_mut() => return Admission::Shutdown,
        }
    }
}

#[derive(Clone, Copy)]
enum Proto {
    Auto,
    H1,
    H2,
}

#[allow(clippy::too_many_arguments)]
async fn connection<S, B>(
    inner: Arc<Inner>,
    service: S,
    tcp: TcpStream,
    head_done: Arc<AtomicBool>,
    mut shed_rx: oneshot::Receiver<()>,
    mut stop: watch::Receiver<bool>,
    _guard: ConnGuard,
) where
    S: ListenerService<B>,
    B: ListenerBody,
{
    let active = match &inner.web {
        Some(w) => w.current(),
        None => inner.plain.clone(),
    };
    let _ = tcp.set_nodelay(true);
    let Some(tls) = active.tls.clone() else {
        let conn = Conn {
            inner,
            active,
            head_done,
        };
        return conn
            .serve(TokioIo::new(tcp), Proto::Auto, service, shed_rx, stop)
            .await;
    };
    let handshake = tokio::time::timeout(
        limit(inner.opts.header_read_timeout).unwrap_or(Duration::MAX),
        tokio_rustls::TlsAcceptor::from(tls).accept(tcp),
    );
    let stream = tokio::select! {
        r = handshake => r,
        _ = &mut shed_rx => return,
        _ = stop.wait_for(|v| *v) => return,
    };
    let stream = match stream {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            ListenerCounters::inc(&inner.counters.tls_handshake_failures);
            tracing::debug!(listener = inner.opts.name, error = %e, "tls handshake failed");
            return;
        }
        Err(_) => {
            ListenerCounters::inc(&inner.counters.tls_handshake_failures);
            tracing::debug!(listener = inner.opts.name, "tls handshake timed out");
            return;
        }
    };
    let proto = match stream.get_ref().1.alpn_protocol() {
        Some(b"h2") => Proto::H2,
        Some(_) => Proto::H1,
        None if active.http2 => Proto::Auto,
        None => Proto::H1,
    };
    let conn = Conn {
        inner,
        active,
        head_done,
    };
    conn.serve(TokioIo::new(stream), proto, service, shed_rx, stop)
        .await
}

struct Conn {
    inner: Arc<Inner>,
    active: Arc<ActiveWebConfig>,
    head_done: Arc<AtomicBool>,
}

impl Conn {
    async fn serve<I, S, B>(
        self,
        io: I,
        proto: Proto,
        service: S,
        mut shed_rx: oneshot::Receiver<()>,
        mut stop: watch::Receiver<bool>,
    ) where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: ListenerService<B>,
        B: ListenerBody,
    {
        let opts = &self.inner.opts;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limit(opts.header_read_timeout));
        builder.http2().timer(TokioTimer::new());
        let builder = match proto {
            Proto::Auto => builder,
            Proto::H1 => builder.http1_only(),
            Proto::H2 => builder.http2_only(),
        };
        let activity = Arc::new(Activity::new());
        let svc = AccessService {
            inner: service,
            active: self.active.clone(),
            head_done: self.head_done.clone(),
            activity: activity.clone(),
            counters: self.inner.counters.clone(),
            bcrypt: self.inner.bcrypt.clone(),
        };
        let conn = builder.serve_connection(io, svc);
        tokio::pin!(conn);
        let head_limit = limit(opts.header_read_timeout);
        let first_head = tokio::time::sleep_until(deadline_after(head_limit.unwrap_or_default()));
        tokio::pin!(first_head);
        let mut first_armed = head_limit.is_some();
        let idle_limit = limit(opts.idle_timeout);
        let idle = tokio::time::sleep_until(deadline_after(idle_limit.unwrap_or_default()));
        tokio::pin!(idle);
        let mut draining = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        let timeout = e.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_timeout());
                        if timeout && !self.head_done.load(Ordering::Acquire) {
                            ListenerCounters::inc(&self.inner.counters.header_timeouts);
                        }
                        tracing::debug!(listener = opts.name, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = &mut shed_rx => return,
                _ = first_head.as_mut(), if first_armed => {
                    first_armed = false;
                    if !self.head_done.load(Ordering::Acquire) {
                        ListenerCounters::inc(&self.inner.counters.header_timeouts);
                        return;
                    }
                }
                _ = idle.as_mut(), if !draining && idle_limit.is_some() => {
                    match activity.idle_deadline(opts.idle_timeout) {
                        Some(next) => idle.as_mut().reset(next),
                        None => {
                            conn.as_mut().graceful_shutdown();
                            draining = true;
                        }
                    }
                }
                _ = stop.wait_for(|v| *v), if !draining => {
                    if !self.head_done.load(Ordering::Acquire) {
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}

/// Requests in flight on a connection and when the last one started or finished.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    /// When the connection will have been idle for `idle`; `None` if it already has.
    fn idle_deadline(&self, idle: Duration) -> Option<tokio::time::Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Some(deadline_after(idle));
        }
        let since_start = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let idle_for = self.start.elapsed().saturating_sub(since_start);
        (idle_for < idle).then(|| deadline_after(idle - idle_for))
    }
}

/// Held by a response body until hyper drops it (sent or abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The response body the listener sends: the service's body (data as `Bytes`) plus the
/// in-flight guard.
struct ResponseBody {
    inner: UnsyncBoxBody<Bytes, BoxError>,
    _guard: InFlight,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn box_body<B: ListenerBody>(b: B) -> UnsyncBoxBody<Bytes, BoxError> {
    b.map_frame(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
        .map_err(Into::into)
        .boxed_unsync()
}

/// Reads and drops what a refused request carries (up to 64 KiB, for at most a second), so
/// an HTTP/2 client that is still sending sees the 401 rather than a reset of its stream;
/// a larger upload is cut off by the reset instead.
async fn drain_refused_body(mut body: Incoming) {
    use http_body_util::BodyExt;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > 64 << 10 {
                break;
            }
        }
    })
    .await;
}

fn unauthorized() -> Response<UnsyncBoxBody<Bytes, BoxError>> {
    let body = Full::new(Bytes::from_static(b"Unauthorized"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let h = resp.headers_mut();
    h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Per connection: marks the head as complete, checks basic auth, calls the service, adds
/// the configured headers.
struct AccessService<S> {
    inner: S,
    active: Arc<ActiveWebConfig>,
    head_done: Arc<AtomicBool>,
    activity: Arc<Activity>,
    counters: Arc<ListenerCounters>,
    bcrypt: Arc<Semaphore>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for AccessService<S>
where
    // The `Response` projection is what ties `B` to `S` for this impl.
    S: ListenerService<B> + tower_service::Service<Request<Incoming>, Response = Response<B>>,
    B: ListenerBody,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.head_done.store(true, Ordering::Release);
        let guard = self.activity.begin();
        let mut svc = self.inner.clone();
        let active = self.active.clone();
        let counters = self.counters.clone();
        let bcrypt = self.bcrypt.clone();
        Box::pin(async move {
            let allowed = match auth::precheck(&active, req.headers().get(header::AUTHORIZATION)) {
                Precheck::Allowed => true,
                Precheck::Denied(_) => false,
                Precheck::Slow(job) => {
                    let permit = bcrypt.acquire_owned().await.ok();
                    let a = active.clone();
                    let r = tokio::task::spawn_blocking(move || {
                        let _permit = permit;
                        job.run(&a)
                    })
                    .await;
                    matches!(r, Ok(Ok(())))
                }
            };
            let mut resp = if allowed {
                match poll_fn(|cx| svc.poll_ready(cx)).await {
                    Ok(()) => {}
                    Err(never) => match never {},
                }
                match svc.call(req).await {
                    Ok(r) => r.map(box_body),
                    Err(never) => match never {},
                }
            } else {
                ListenerCounters::inc(&counters.auth_failures);
                drain_refused_body(req.into_body()).await;
                unauthorized()
            };
            for (name, value) in &active.headers {
                if !resp.headers().contains_key(name) {
                    resp.headers_mut().insert(name.clone(), value.clone());
                }
            }
            Ok(resp.map(|inner| ResponseBody {
                inner,
                _guard: guard,
            }))
        })
    }
}
