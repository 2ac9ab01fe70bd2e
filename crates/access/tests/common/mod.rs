//! Shared test helpers: certificates from rcgen, a small axum app served by `serve`, and
//! HTTP/1.1 and HTTP/2 clients over plain TCP or tokio-rustls.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshlens_access::{serve, AccessMetrics, ListenerOptions, WebConfigSource};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

pub fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

pub fn leaf(ca: &Ca, names: &[&str], client: bool) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

/// A CA, a server cert for localhost/127.0.0.1, a client cert from that CA and one from
/// another CA, written into `dir` as PEM files.
pub struct Pki {
    pub ca: Ca,
    pub server: Leaf,
    pub client: Leaf,
    pub stranger: Leaf,
}

pub fn pki(dir: &Path) -> Pki {
    let ca1 = ca("meshlens test ca");
    let other = ca("some other ca");
    let server = leaf(&ca1, &["localhost", "127.0.0.1"], false);
    let client = leaf(&ca1, &["client-a"], true);
    let stranger = leaf(&other, &["client-b"], true);
    std::fs::write(dir.join("ca.crt"), ca1.cert.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
    Pki {
        ca: ca1,
        server,
        client,
        stranger,
    }
}

pub fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

pub fn basic(user: &str, password: &str) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {enc}")
}

/// Writes a file so its size or mtime surely differ from the previous content's.
pub fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub struct Server {
    pub addr: SocketAddr,
    pub metrics: Arc<AccessMetrics>,
    pub release: Arc<Notify>,
    /// Notified each time `/block` is entered.
    pub entered: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Server {
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    pub fn snapshot(&self) -> meshlens_access::ListenerSnapshot {
        self.metrics.snapshot("main").unwrap_or_default()
    }
}

/// The test app: `/` says hello, `/block` waits until `release` is notified.
pub fn app(release: Arc<Notify>, entered: Arc<Notify>) -> Router {
    Router::new().route("/", get(|| async { "hello" })).route(
        "/block",
        get(move || {
            let r = release.clone();
            let e = entered.clone();
            async move {
                e.notify_one();
                r.notified().await;
                "released"
            }
        }),
    )
}

pub async fn start(web: Option<Arc<WebConfigSource>>, opts: ListenerOptions) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(AccessMetrics::new());
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        web,
        opts,
        metrics.clone(),
        app(release.clone(), entered.clone()),
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        metrics,
        release,
        entered,
        stop: Some(tx),
        task,
    }
}

pub fn quick_opts() -> ListenerOptions {
    ListenerOptions {
        name: "main",
        max_connections: 64,
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
    }
}

pub fn client_config(ca: &Ca, client: Option<&Leaf>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let b = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some(l) => b
            .with_client_auth_cert(
                vec![l.cert_der.clone()],
                PrivateKeyDer::try_from(l.key_der.clone()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

pub async fn tls_connect(
    addr: SocketAddr,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn request(path: &str, auth: Option<&str>, h2: bool) -> Request<Empty<Bytes>> {
    let mut b = Request::get(if h2 {
        format!("http://localhost{path}")
    } else {
        path.to_string()
    });
    if !h2 {
        b = b.header(http::header::HOST, "localhost");
    }
    if let Some(a) = auth {
        b = b.header(http::header::AUTHORIZATION, a);
    }
    b.body(Empty::new()).unwrap()
}

/// One GET over HTTP/1.1 on `io`.
pub async fn get_h1<I>(io: I, path: &str, auth: Option<&str>) -> Result<Answer, AnyError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(request(path, auth, false)).await?;
    collect(resp).await
}

/// One GET over HTTP/2 on `io` (h2c when `io` is plain TCP).
pub async fn get_h2<I>(io: I, path: &str, auth: Option<&str>) -> Result<Answer, AnyError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(request(path, auth, true)).await?;
    collect(resp).await
}

async fn collect(resp: http::Response<hyper::body::Incoming>) -> Result<Answer, AnyError> {
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await??
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

impl Server {
    /// Waits (bounded) until a `/block` request is in its handler.
    pub async fn wait_entered(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.entered.notified())
            .await
            .expect("/block was not called");
    }
}

pub async fn plain(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Polls `f` every 10 ms, at most 500 times, until it holds.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
