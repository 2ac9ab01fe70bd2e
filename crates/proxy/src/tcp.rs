//! TCP proxying: one listener per TCP service port (`ProxyOptions::tcp_listeners`). Each
//! accepted connection is routed by the VirtualService `tcp:` routes for that port
//! ([`crate::config::tcp`]; weighted, destination subnets matched against the address the
//! connection came in on), an endpoint is picked as for HTTP, and bytes are copied both
//! ways until either side closes. Istio's TCP metrics count bytes as they pass
//! ([`crate::telemetry::tcp`]); a connection that cannot be routed or connected is closed
//! and counted with its response flag (NR, NC, UH, UO, UF).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::balance::{self, HashInput};
use crate::body::InFlight;
use crate::pipeline::Shared;
use crate::resilience::outlier::Observation;
use crate::telemetry::flags::Flags;
use crate::telemetry::metrics::DestLabels;
use crate::telemetry::tcp::{TcpKey, TcpSeries};

/// Serves one TCP listener for service port `port` until `shutdown` turns true; open
/// connections are closed then too.
pub fn serve(
    listener: TcpListener,
    port: u16,
    px: Arc<Shared>,
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
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = connection(&px, port, stream, peer, connect_timeout) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            });
        }
    })
}

/// Where a connection goes, or the flag saying why it goes nowhere.
async fn connection(
    px: &Shared,
    port: u16,
    down: TcpStream,
    peer: SocketAddr,
    connect_timeout: Duration,
) {
    let _ = down.set_nodelay(true);
    let local = match down.local_addr() {
        Ok(a) => a.ip(),
        Err(_) => return,
    };
    let table = px.config.table();
    let Some(route) = table.tcp.route(port, local) else {
        return refused(px, px.unknown_dest.clone(), Flags::NR);
    };
    let Some(wc) = crate::pipeline::choose(&route.dests) else {
        return refused(px, px.unknown_dest.clone(), Flags::UH);
    };
    let cluster = wc.cluster.clone();
    drop(table);
    if cluster.missing_subset {
        return refused(px, cluster.labels.clone(), Flags::NC);
    }
    let headers = http::HeaderMap::new();
    let hash = HashInput {
        headers: &headers,
        query: None,
        source_ip: Some(peer.ip()),
    };
    let Some(ep) = balance::pick(&cluster, &hash, None) else {
        return refused(px, cluster.labels.clone(), Flags::UH);
    };
    // `tcp.maxConnections` and friends bound connections here, as they bound requests.
    let permit = match &cluster.limiter {
        Some(l) => match l.acquire().await {
            Ok(p) => Some(p),
            Err(_) => return refused(px, ep.dest_labels.clone(), Flags::UO),
        },
        None => None,
    };
    let _in_flight = InFlight::on(ep.clone(), permit);
    let address = ep.address(cluster.port.unwrap_or(port));
    let up = match tokio::time::timeout(connect_timeout, TcpStream::connect(&*address)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%address, error = %e, "tcp upstream connect failure");
            observe_failure(&cluster, &ep);
            return refused(px, ep.dest_labels.clone(), Flags::UF);
        }
        Err(_) => {
            tracing::debug!(%address, "tcp upstream connect timeout");
            observe_failure(&cluster, &ep);
            return refused(px, ep.dest_labels.clone(), Flags::UF);
        }
    };
    let _ = up.set_nodelay(true);
    let series = series(px, ep.dest_labels.clone(), Flags::NONE);
    series.opened.fetch_add(1, Ordering::Relaxed);
    let _closed = Closed(series.clone());
    let mut down = Counted {
        inner: down,
        series,
    };
    let mut up = up;
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(%address, error = %e, "tcp connection ended with an error");
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

/// The series for a connection's labels, as the HTTP metrics label requests.
fn series(px: &Shared, dest: Arc<DestLabels>, flags: Flags) -> Arc<TcpSeries> {
    let (source, dest) = match &px.telemetry.inbound {
        None => (None, dest),
        Some(i) => (Some(i.source(None)), i.dest(&dest, "")),
    };
    px.telemetry.metrics.tcp.series(&TcpKey {
        source,
        dest,
        flags,
    })
}

/// A connection closed without reaching upstream: opened and closed at once.
fn refused(px: &Shared, dest: Arc<DestLabels>, flags: Flags) {
    let s = series(px, dest, flags);
    s.opened.fetch_add(1, Ordering::Relaxed);
    s.closed.fetch_add(1, Ordering::Relaxed);
}

/// The downstream socket, counting bytes read from it (received) and written to it (sent).
struct Counted {
    inner: TcpStream,
    series: Arc<TcpSeries>,
}

impl AsyncRead for Counted {
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

impl AsyncWrite for Counted {
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
