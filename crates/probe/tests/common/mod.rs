//! Loopback targets for the probe tests: a tiny HTTP/1.1 responder (plain and over TLS),
//! certificates made here by rcgen (a CA, a fresh leaf valid 30 days, an expired one), and
//! a closed port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshlens_model::time::{civil_from_days, days_from_civil, now_ms};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// The `Last-Modified` that `/ok` sends, and its Unix seconds.
pub const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
pub const LAST_MODIFIED_SECS: f64 = 784_111_777.0;

pub struct Targets {
    pub http: SocketAddr,
    pub tls_fresh: SocketAddr,
    pub tls_expired: SocketAddr,
    /// A fresh leaf whose issuing CA (trusted, in the CA file) expires before it: the chain's
    /// expiry is the CA's, the presented certificate's is the leaf's.
    pub tls_short_ca: SocketAddr,
    /// The fresh certificate on a server that offers HTTP/2 by ALPN (hyper's).
    pub tls_h2: SocketAddr,
    /// A port nothing listens on.
    pub closed: SocketAddr,
    pub ca_file: PathBuf,
    /// Unix seconds of the leaves' notAfter.
    pub fresh_not_after: i64,
    pub expired_not_after: i64,
    pub short_ca_not_after: i64,
    pub dir: tempfile::TempDir,
}

fn ymd(days: i64) -> (i32, u8, u8) {
    let (y, m, d) = civil_from_days(days);
    (y as i32, m as u8, d as u8)
}

struct Leaf {
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn leaf(
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
    cn: &str,
    from: (i32, u8, u8),
    to: (i32, u8, u8),
) -> Leaf {
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "meshlens tests");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.not_before = date_time_ymd(from.0, from.1, from.2);
    params.not_after = date_time_ymd(to.0, to.1, to.2);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    Leaf {
        der: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

fn make_ca(cn: &str, from: (i32, u8, u8), to: (i32, u8, u8)) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "DE");
    dn.push(DnType::OrganizationName, "meshlens");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.not_before = date_time_ymd(from.0, from.1, from.2);
    params.not_after = date_time_ymd(to.0, to.1, to.2);
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

fn unix(d: (i32, u8, u8)) -> i64 {
    days_from_civil(d.0.into(), d.1.into(), d.2.into()) * 86_400
}

/// Starts every target on 127.0.0.1 and writes the CA file (both CAs).
pub async fn start_targets() -> Targets {
    let dir = tempfile::tempdir().unwrap();
    let today = now_ms().div_euclid(86_400_000);
    let (ca, ca_key) = make_ca("meshlens probe test CA", (2019, 1, 1), (2045, 1, 1));
    let short_to = ymd(today + 10);
    let (short_ca, short_key) = make_ca("meshlens short-lived CA", ymd(today - 1), short_to);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, format!("{}{}", ca.pem(), short_ca.pem())).unwrap();

    let fresh_to = ymd(today + 30);
    let fresh = leaf(&ca, &ca_key, "fresh.test", ymd(today - 1), fresh_to);
    let expired = leaf(&ca, &ca_key, "expired.test", (2020, 1, 1), (2021, 1, 1));
    let for_h2 = leaf(&ca, &ca_key, "fresh.test", ymd(today - 1), fresh_to);
    let chained = leaf(
        &short_ca,
        &short_key,
        "chained.test",
        ymd(today - 1),
        fresh_to,
    );

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    Targets {
        http: serve(None).await,
        tls_fresh: serve(Some(fresh)).await,
        tls_expired: serve(Some(expired)).await,
        tls_short_ca: serve(Some(chained)).await,
        tls_h2: serve_h2(for_h2).await,
        closed,
        ca_file,
        fresh_not_after: unix(fresh_to),
        expired_not_after: unix((2021, 1, 1)),
        short_ca_not_after: unix(short_to),
        dir,
    }
}

async fn serve(tls: Option<Leaf>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(|leaf| tls_config(leaf, &[]));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(s) = a.accept(tcp).await {
                            respond(s).await;
                        }
                    }
                    None => respond(tcp).await,
                }
            });
        }
    });
    addr
}

fn tls_config(leaf: Leaf, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der], leaf.key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// HTTP/1.1 or HTTP/2 (by ALPN) over TLS: 200 `hello world` for every path.
async fn serve_h2(leaf: Leaf) -> SocketAddr {
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls_config(leaf, &[b"h2", b"http/1.1"]);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        bytes::Bytes::from_static(b"hello world"),
                    )))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// Answers one request by its path, then closes.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65_536 {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
    let response: Vec<u8> = match path.as_str() {
        "/ok" => format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nLast-Modified: {LAST_MODIFIED}\r\nConnection: close\r\n\r\nhello world"
        )
        .into_bytes(),
        "/fail" => b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom".to_vec(),
        "/redirect" => b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = s.write_all(&response).await;
    let _ = s.shutdown().await;
}

/// The series of one probe as (name, labels without job/instance) → value.
pub fn flatten(series: &[meshlens_model::TimeSeries]) -> std::collections::BTreeMap<String, f64> {
    series
        .iter()
        .map(|s| {
            let key = s
                .labels
                .iter()
                .filter(|l| l.name != "job" && l.name != "instance")
                .map(|l| format!("{}={:?}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(",");
            (key, s.samples.first().map_or(f64::NAN, |x| x.v))
        })
        .collect()
}

/// The value of the label-less gauge `name`.
pub fn value(series: &[meshlens_model::TimeSeries], name: &str) -> Option<f64> {
    series
        .iter()
        .find(|s| {
            s.labels.metric_name() == Some(name)
                && s.labels
                    .iter()
                    .all(|l| ["__name__", "job", "instance"].contains(&l.name.as_str()))
        })
        .and_then(|s| s.samples.first().map(|x| x.v))
}
