//! One HTTP round trip on a fresh connection (keep-alive off, as blackbox_exporter's client),
//! stamping the moments Go's `httptrace` reports so the phase durations mean the same.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::resolve::lookup;
use crate::target::HttpTarget;
use crate::tls::{self, TlsState};

/// The User-Agent sent unless the config sets one.
pub(crate) const USER_AGENT: &str = concat!("meshlens-probe/", env!("CARGO_PKG_VERSION"));

/// The moments of one round trip (Go's `roundTripTrace`).
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub tls: bool,
    pub start: Option<Instant>,
    pub dns_done: Option<Instant>,
    pub connect_done: Option<Instant>,
    pub got_conn: Option<Instant>,
    pub response_start: Option<Instant>,
    pub tls_start: Option<Instant>,
    pub tls_done: Option<Instant>,
    pub end: Option<Instant>,
}

/// What one request needs to know.
pub(crate) struct Hop<'a> {
    pub target: &'a HttpTarget,
    /// Already resolved (the first request's address); else resolved here.
    pub ip: Option<IpAddr>,
    pub method: &'a http::Method,
    pub host_header: &'a str,
    pub headers: &'a BTreeMap<String, String>,
    pub tls_name: &'a str,
    pub tls_client: Option<&'a tls::Client>,
}

/// A response whose body is still to be read; the connection lives as long as it does.
pub(crate) struct Exchange {
    pub response: http::Response<Incoming>,
    pub tls: Option<TlsState>,
    _conn: AbortOnDrop,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects (TLS for https), sends the request and waits for the response head.
pub(crate) async fn round_trip(hop: &Hop<'_>, trace: &mut Trace) -> Result<Exchange, String> {
    let t = hop.target;
    trace.tls = t.https;
    let addrs = match hop.ip {
        Some(ip) => {
            let now = Instant::now();
            trace.start = Some(now);
            trace.dns_done = Some(now);
            vec![ip]
        }
        None => {
            trace.start = Some(Instant::now());
            let found = lookup(&t.host).await;
            trace.dns_done = Some(Instant::now());
            found?
        }
    };
    let mut last_err = String::from("no address to connect to");
    let mut tcp = None;
    for ip in addrs {
        match TcpStream::connect((ip, t.port)).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last_err = format!("connecting to {ip}:{}: {e}", t.port),
        }
    }
    trace.connect_done = Some(Instant::now());
    let tcp = tcp.ok_or(last_err)?;
    let _ = tcp.set_nodelay(true);
    if t.https {
        let client = hop
            .tls_client
            .ok_or_else(|| "no TLS client for an https URL".to_string())?;
        trace.tls_start = Some(Instant::now());
        let shaken = tls::handshake(client, hop.tls_name, tcp).await;
        trace.tls_done = Some(Instant::now());
        let (stream, state) = shaken?;
        trace.got_conn = Some(Instant::now());
        let h2 = state.alpn_h2;
        let (response, conn) = send(stream, h2, request(hop, h2)?).await?;
        trace.response_start = Some(Instant::now());
        Ok(Exchange {
            response,
            tls: Some(state),
            _conn: conn,
        })
    } else {
        trace.got_conn = Some(Instant::now());
        let (response, conn) = send(tcp, false, request(hop, false)?).await?;
        trace.response_start = Some(Instant::now());
        Ok(Exchange {
            response,
            tls: None,
            _conn: conn,
        })
    }
}

fn request(hop: &Hop<'_>, h2: bool) -> Result<http::Request<Empty<Bytes>>, String> {
    let t = hop.target;
    let mut b = http::Request::builder().method(hop.method.clone());
    if h2 {
        let scheme = if t.https { "https" } else { "http" };
        b = b.uri(format!(
            "{scheme}://{}{}",
            hop.host_header, t.path_and_query
        ));
    } else {
        b = b
            .uri(t.path_and_query.as_str())
            .header(http::header::HOST, hop.host_header)
            .header(http::header::CONNECTION, "close");
    }
    let mut has_agent = false;
    for (k, v) in hop.headers {
        if k.eq_ignore_ascii_case("host") {
            continue;
        }
        has_agent |= k.eq_ignore_ascii_case("user-agent");
        b = b.header(k.as_str(), v.as_str());
    }
    if !has_agent {
        b = b.header(http::header::USER_AGENT, USER_AGENT);
    }
    b.body(Empty::new())
        .map_err(|e| format!("building the request: {e}"))
}

async fn send<IO>(
    io: IO,
    h2: bool,
    req: http::Request<Empty<Bytes>>,
) -> Result<(http::Response<Incoming>, AbortOnDrop), String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        let guard = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP request: {e}"))?;
        Ok((resp, guard))
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        let guard = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP request: {e}"))?;
        Ok((resp, guard))
    }
}
