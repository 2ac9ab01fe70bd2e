//! TCP proxying: one listener per TCP service port (`ProxyOptions::tcp_listeners`). Each
//! accepted connection is routed by the VirtualService `tcp:` routes for that port
//! ([`crate::config::tcp`]; weighted, destination subnets matched against the address the
//! connection came in on), an endpoint is picked as for HTTP, and bytes are copied both
//! ways until either side closes. Istio's TCP metrics count bytes as they pass
//! ([`crate::telemetry::tcp`]); a connection that cannot be routed or connected is closed
//! and counted with its response flag (NR, NC, UH, UO, UF). On a port with `tls:` routes the
//! ClientHello is read first and its SNI picks the route; the connection passes through
//! unopened, hello included. The mesh's mTLS works as for
//! HTTP: an inbound proxy admits connections under PeerAuthentication, an outbound one
//! originates TLS as the DestinationRule (or auto mTLS) says, offering no ALPN protocol.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::balance::{self, HashInput};
use crate::body::InFlight;
use crate::conn::{ConnInfo, Security};
use crate::pipeline::Shared;
use crate::resilience::outlier::Observation;
use crate::sni::Hello;
use crate::telemetry::flags::Flags;
use crate::telemetry::metrics::DestLabels;
use crate::telemetry::tcp::{TcpKey, TcpSeries};
use crate::tls::inbound::{Admitted, Inbound};
use crate::tls::Origination;

/// Serves one TCP listener for service port `port` until `shutdown` turns true; open
/// connections are closed then too. An inbound proxy (`inbound` set) admits each connection
/// under PeerAuthentication first, as its HTTP listener does.
pub fn serve(
    listener: TcpListener,
    port: u16,
    px: Arc<Shared>,
    inbound: Option<Arc<Inbound>>,
    connect_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, port, "tcp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            px.telemetry
                .metrics
                .counters
                .downstream_cx_total
                .fetch_add(1, Ordering::Relaxed);
            let px = px.clone();
            let inbound = inbound.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = admit(&px, inbound.as_deref(), port, stream, peer, connect_timeout) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            });
        }
    })
}

/// Terminates the mesh's mTLS on an inbound proxy (refusing what PeerAuthentication
/// refuses, counted as handshake failures), then routes the connection.
async fn admit(
    px: &Shared,
    inbound: Option<&Inbound>,
    port: u16,
    down: TcpStream,
    peer: SocketAddr,
    connect_timeout: Duration,
) {
    let _ = down.set_nodelay(true);
    let Ok(local) = down.local_addr().map(|a| a.ip()) else {
        return;
    };
    let Some(inbound) = inbound else {
        let conn = ConnInfo::plain(peer);
        return connection(px, port, local, down, &conn, connect_timeout).await;
    };
    match inbound.admit(down, peer).await {
        Admitted::Plain(down) => {
            let conn = ConnInfo::plain(peer);
            connection(px, port, local, down, &conn, connect_timeout).await
        }
        Admitted::Tls(down, conn, _) => {
            connection(px, port, local, *down, &conn, connect_timeout).await
        }
        Admitted::Refused => {}
    }
}

/// Where a connection goes, or the flag saying why it goes nowhere.
async fn connection<D>(
    px: &Shared,
    port: u16,
    local: IpAddr,
    mut down: D,
    conn: &ConnInfo,
    connect_timeout: Duration,
) where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let peer = conn.peer;
    // `tls:` routes on this port: the ClientHello names the route; its bytes go on first.
    let needs_sni = px.config.table().tcp.needs_sni(port);
    let (hello, sni) = if needs_sni {
        read_hello(&mut down).await
    } else {
        (Vec::new(), None)
    };
    let down = Prefixed {
        prefix: hello,
        at: 0,
        inner: down,
    };
    let table = px.config.table();
    let Some(route) = table.tcp.route(port, local, sni.as_deref()) else {
        return refused(px, conn, px.unknown_dest.clone(), Flags::NR);
    };
    let Some(wc) = crate::pipeline::choose(&route.dests) else {
        return refused(px, conn, px.unknown_dest.clone(), Flags::UH);
    };
    let cluster = wc.cluster.clone();
    drop(table);
    if cluster.missing_subset {
        return refused(px, conn, cluster.labels.clone(), Flags::NC);
    }
    let headers = http::HeaderMap::new();
    let hash = HashInput {
        headers: &headers,
        query: None,
        source_ip: Some(peer.ip()),
    };
    let Some(ep) = balance::pick(&cluster, &hash, None) else {
        return refused(px, conn, cluster.labels.clone(), Flags::UH);
    };
    // `tcp.maxConnections` and friends bound connections here, as they bound requests.
    let permit = match &cluster.limiter {
        Some(l) => match l.acquire().await {
            Ok(p) => Some(p),
            Err(_) => return refused(px, conn, ep.dest_labels.clone(), Flags::UO),
        },
        None => None,
    };
    let _in_flight = InFlight::on(ep.clone(), permit);
    let tls = match px.tls.origination(&cluster.tls, cluster.mesh_external) {
        Origination::Plain => None,
        Origination::Tls(t) => Some(t),
        Origination::NoIdentity => {
            tracing::warn!(cluster = %cluster.name, "ISTIO_MUTUAL without a workload certificate (--cert-dir)");
            return refused(px, conn, ep.dest_labels.clone(), Flags::UF);
        }
    };
    let address = ep.address(cluster.port.unwrap_or(port));
    let up = match tokio::time::timeout(connect_timeout, TcpStream::connect(&*address)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%address, error = %e, "tcp upstream connect failure");
            observe_failure(&cluster, &ep);
            return refused(px, conn, ep.dest_labels.clone(), Flags::UF);
        }
        Err(_) => {
            tracing::debug!(%address, "tcp upstream connect timeout");
            observe_failure(&cluster, &ep);
            return refused(px, conn, ep.dest_labels.clone(), Flags::UF);
        }
    };
    let _ = up.set_nodelay(true);
    let Some(tls) = tls else {
        let series = series(px, conn, ep.dest_labels.clone(), Flags::NONE, None);
        return relay(down, up, series, &address).await;
    };
    let failures = &px.telemetry.metrics.counters.tls_handshake_failures;
    match tls.connect_opaque(up, &address, failures).await {
        Ok((up, upstream)) => {
            let dest = px.tls.dest_labels(&ep.dest_labels, Some(&upstream));
            let series = series(px, conn, dest, Flags::NONE, Some(upstream.security));
            relay(down, up, series, &address).await
        }
        Err(e) => {
            tracing::debug!(%address, error = %e, "tcp upstream tls failure");
            observe_failure(&cluster, &ep);
            refused(px, conn, ep.dest_labels.clone(), Flags::UF)
        }
    }
}

/// Copies bytes both ways until either side closes, counting them on the series.
async fn relay<D, U>(down: D, mut up: U, series: Arc<TcpSeries>, address: &str)
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    series.opened.fetch_add(1, Ordering::Relaxed);
    let _closed = Closed(series.clone());
    let mut down = Counted {
        inner: down,
        series,
    };
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(%address, error = %e, "tcp connection ended with an error");
    }
}

/// The most a ClientHello may take (several records), and how long it may take to arrive.
const MAX_HELLO: usize = 64 * 1024;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads until the connection's first bytes are a whole ClientHello (or clearly are not
/// one); returns the bytes read and the SNI host name, if any.
async fn read_hello<D: AsyncRead + Unpin>(down: &mut D) -> (Vec<u8>, Option<String>) {
    let mut buf = Vec::with_capacity(2048);
    let read = async {
        loop {
            match crate::sni::client_hello(&buf) {
                Hello::Complete(name) => return name,
                Hello::NotTls => return None,
                Hello::Incomplete if buf.len() >= MAX_HELLO => return None,
                Hello::Incomplete => {}
            }
            match down.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    };
    let name = tokio::time::timeout(HELLO_TIMEOUT, read)
        .await
        .ok()
        .flatten();
    (buf, name)
}

/// A downstream connection whose first bytes were already read (a ClientHello): they are
/// read again first, then the connection itself.
struct Prefixed<D> {
    prefix: Vec<u8>,
    at: usize,
    inner: D,
}

impl<D: AsyncRead + Unpin> AsyncRead for Prefixed<D> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<D: AsyncWrite + Unpin> AsyncWrite for Prefixed<D> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Counts the connection closed however its task ends (including shutdown).
struct Closed(Arc<TcpSeries>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

fn observe_failure(cluster: &crate::config::table::Cluster, ep: &crate::config::table::Endpoint) {
    if let Some(od) = &cluster.outlier {
        od.observe(
            &ep.health,
            cluster.endpoints.iter().map(|e| &*e.health),
            Observation::ConnectFailure,
        );
    }
}

/// The series for a connection's labels, as the HTTP metrics label requests: an inbound
/// proxy reports its own workload as the destination and the caller's proven principal; an
/// outbound one the upstream's security (`upstream`, set when it originated TLS).
fn series(
    px: &Shared,
    conn: &ConnInfo,
    dest: Arc<DestLabels>,
    flags: Flags,
    upstream: Option<Security>,
) -> Arc<TcpSeries> {
    let (source, dest, security) = match &px.telemetry.inbound {
        None => (None, dest, upstream.unwrap_or_default()),
        Some(i) => (
            Some(px.tls.source_labels(i.source(None), conn)),
            i.dest(&dest, ""),
            conn.security,
        ),
    };
    px.telemetry.metrics.tcp.series(&TcpKey {
        source,
        dest,
        flags,
        security,
    })
}

/// A connection closed without reaching upstream: opened and closed at once.
fn refused(px: &Shared, conn: &ConnInfo, dest: Arc<DestLabels>, flags: Flags) {
    let s = series(px, conn, dest, flags, None);
    s.opened.fetch_add(1, Ordering::Relaxed);
    s.closed.fetch_add(1, Ordering::Relaxed);
}

/// The downstream socket, counting bytes read from it (received) and written to it (sent).
struct Counted<S> {
    inner: S,
    series: Arc<TcpSeries>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = buf.filled().len() - before;
            this.series.received.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.series.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
