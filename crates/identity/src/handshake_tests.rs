//! Handshakes between the server and client configs over real loopback sockets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tls::MeshServerVerifier;
use crate::*;

struct Mesh {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ca: Ca,
}

impl Mesh {
    fn new() -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let ca = Ca::init(&root.join("ca"), "cluster.local").unwrap();
        Mesh {
            _dir: dir,
            root,
            ca,
        }
    }

    /// Issues `ns`/`sa` into a directory of its own and loads it.
    fn workload(&self, ns: &str, sa: &str) -> Arc<CertSource> {
        let out = self.root.join(format!("{ns}-{sa}"));
        self.ca
            .issue(ns, sa, DEFAULT_TTL)
            .unwrap()
            .write(&out)
            .unwrap();
        CertSource::load(out).unwrap()
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

type Side = Result<Option<SpiffeId>, HandshakeFailure>;

/// One handshake; each side's result is the peer's identity or the failure's class.
async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> (Side, Side) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match TlsAcceptor::from(server).accept(tcp).await {
            Ok(mut tls) => {
                let id = peer_identity(tls.get_ref().1.peer_certificates());
                // Finish the exchange so that the client sees the outcome too.
                let mut b = [0u8; 1];
                let _ = tls.read(&mut b).await;
                let _ = tls.write_all(b"k").await;
                let _ = tls.shutdown().await;
                Ok(id)
            }
            Err(e) => Err(HandshakeFailure::from_io(&e)),
        }
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let cli = match TlsConnector::from(client).connect(name, tcp).await {
        Ok(mut tls) => {
            let id = peer_identity(tls.get_ref().1.peer_certificates());
            // TLS 1.3: a rejected client certificate shows up on the first read.
            let _ = tls.write_all(b"p").await;
            let mut b = [0u8; 1];
            match tls.read(&mut b).await {
                Ok(1) => Ok(id),
                Ok(_) => Err(HandshakeFailure::Other),
                Err(e) => Err(HandshakeFailure::from_io(&e)),
            }
        }
        Err(e) => Err(HandshakeFailure::from_io(&e)),
    };
    (srv.await.unwrap(), cli)
}

fn id(s: &str) -> Option<SpiffeId> {
    Some(s.parse().unwrap())
}

#[tokio::test]
async fn mutual_tls_proves_both_identities() {
    let mesh = Mesh::new();
    let server = mesh.workload("shop", "cart");
    let client = mesh.workload("web", "frontend");
    let (s, c) = handshake(
        server_config(&server, ClientAuth::Required),
        client_config(&client, None),
    )
    .await;
    assert_eq!(s, Ok(id("spiffe://cluster.local/ns/web/sa/frontend")));
    assert_eq!(c, Ok(id("spiffe://cluster.local/ns/shop/sa/cart")));
}

#[tokio::test]
async fn client_expecting_another_identity_refuses_the_server() {
    let mesh = Mesh::new();
    let server = mesh.workload("shop", "cart");
    let client = mesh.workload("web", "frontend");
    let (s, c) = handshake(
        server_config(&server, ClientAuth::Required),
        client_config(&client, id("spiffe://cluster.local/ns/shop/sa/payments")),
    )
    .await;
    assert_eq!(c, Err(HandshakeFailure::WrongIdentity));
    assert_eq!(s, Err(HandshakeFailure::WrongIdentity));
    // The expected identity is accepted.
    let (s, c) = handshake(
        server_config(&server, ClientAuth::Required),
        client_config(&client, id("spiffe://cluster.local/ns/shop/sa/cart")),
    )
    .await;
    assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");
}

#[tokio::test]
async fn certificate_of_another_ca_is_unknown_ca() {
    let mesh = Mesh::new();
    let other = Mesh::new();
    let server = mesh.workload("shop", "cart");
    // Signed by another root, while trusting ours: the server rejects its chain.
    let rogue_dir = mesh.dir("rogue");
    let mut rogue = other.ca.issue("web", "frontend", DEFAULT_TTL).unwrap();
    rogue.root_pem = mesh.ca.root_pem().to_string();
    rogue.write(&rogue_dir).unwrap();
    let rogue = CertSource::load(rogue_dir).unwrap();
    let (s, _c) = handshake(
        server_config(&server, ClientAuth::Required),
        client_config(&rogue, None),
    )
    .await;
    assert_eq!(s, Err(HandshakeFailure::UnknownCa));
}

#[tokio::test]
async fn expired_certificate_is_refused_as_expired() {
    let mesh = Mesh::new();
    let server = mesh.workload("shop", "cart");
    let now = SystemTime::now();
    let old = mesh
        .ca
        .issue_between(
            "web",
            "frontend",
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        )
        .unwrap();
    let dir = mesh.dir("expired");
    old.write(&dir).unwrap();
    let expired = CertSource::load(dir).unwrap();
    // As a client certificate: the server says expired.
    let (s, _) = handshake(
        server_config(&server, ClientAuth::Required),
        client_config(&expired, None),
    )
    .await;
    assert_eq!(s, Err(HandshakeFailure::Expired));
    // As a server certificate: the client says expired, the server hears it in the alert.
    let client = mesh.workload("web", "frontend");
    let (s, c) = handshake(
        server_config(&expired, ClientAuth::Required),
        client_config(&client, None),
    )
    .await;
    assert_eq!(c, Err(HandshakeFailure::Expired));
    assert_eq!(s, Err(HandshakeFailure::Expired));
}

fn client_without_certificate(trust: &Arc<CertSource>) -> Arc<ClientConfig> {
    let provider = Arc::new(provider());
    let verifier = Arc::new(MeshServerVerifier {
        source: trust.clone(),
        expected: Vec::new(),
        provider: provider.clone(),
    });
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(cfg)
}

#[tokio::test]
async fn missing_client_certificate_is_refused_only_when_required() {
    let mesh = Mesh::new();
    let server = mesh.workload("shop", "cart");
    let (s, _) = handshake(
        server_config(&server, ClientAuth::Required),
        client_without_certificate(&server),
    )
    .await;
    assert_eq!(s, Err(HandshakeFailure::NoClientCertificate));
    let (s, c) = handshake(
        server_config(&server, ClientAuth::Optional),
        client_without_certificate(&server),
    )
    .await;
    assert_eq!(s, Ok(None));
    assert_eq!(c, Ok(id("spiffe://cluster.local/ns/shop/sa/cart")));
}

#[tokio::test]
async fn plaintext_is_not_tls() {
    let mesh = Mesh::new();
    let server = server_config(&mesh.workload("shop", "cart"), ClientAuth::Required);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 1];
        tcp.peek(&mut first).await.unwrap();
        let looked = failure::looks_like_tls(first[0]);
        let r = TlsAcceptor::from(server).accept(tcp).await;
        (looked, r.err().map(|e| HandshakeFailure::from_io(&e)))
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (looked, failure) = srv.await.unwrap();
    assert!(!looked);
    assert_eq!(failure, Some(HandshakeFailure::NotTls));
}

fn rewrite(ca: &Ca, dir: &Path) -> Vec<u8> {
    let issued = ca.issue("shop", "cart", DEFAULT_TTL).unwrap();
    issued.write(dir).unwrap();
    issued.serial
}

#[tokio::test]
async fn rotation_serves_new_handshakes_and_keeps_open_sessions() {
    let mesh = Mesh::new();
    let dir = mesh.dir("rotating");
    let first = rewrite(&mesh.ca, &dir);
    let server = CertSource::load(&dir).unwrap();
    let client = mesh.workload("web", "frontend");
    let scfg = server_config(&server, ClientAuth::Required);
    let ccfg = client_config(&client, None);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(scfg);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut b = [0u8; 1];
                while let Ok(1) = tls.read(&mut b).await {
                    if tls.write_all(&b).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let connect = || {
        let ccfg = ccfg.clone();
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::IpAddress(addr.ip().into());
            let tls = TlsConnector::from(ccfg).connect(name, tcp).await.unwrap();
            let serial = serial_of(&tls.get_ref().1.peer_certificates().unwrap()[0]).unwrap();
            (tls, serial)
        }
    };
    let (mut old_conn, serial) = connect().await;
    assert_eq!(serial, first);

    let second = rewrite(&mesh.ca, &dir);
    assert!(server.reload().unwrap());
    let (_, serial) = connect().await;
    assert_eq!(serial, second, "a new handshake got the old certificate");
    // The connection opened before the rotation still works.
    old_conn.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    old_conn.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"x");
}
