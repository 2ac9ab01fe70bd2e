//! TCP routes: a listener per service port, bytes copied both ways, Istio's TCP counters
//! equal to what was sent and received, and weighted splits across subsets.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::*;

/// An echo server that first writes its tag and a newline, then echoes until EOF.
async fn echo(tag: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if s.write_all(format!("{tag}\n").as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn mesh(v1: SocketAddr, v2: SocketAddr, rules: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {{name: db}}\nspec:\n  hosts: [db]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 27017, name: tcp-db, protocol: TCP}}\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tcp-db: {}}}, labels: {{version: v1}}}}\n  - {{address: 127.0.0.1, ports: {{tcp-db: {}}}, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: db}}\nspec:\n  host: db\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\n{rules}",
        v1.port(),
        v2.port()
    )
}

/// Connects, sends `msg`, half-closes, and reads everything back.
async fn exchange(addr: SocketAddr, msg: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(msg).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the connection ends")
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn tcp_metric(text: &str, name: &str, version: &str) -> f64 {
    let v = format!("destination_version=\"{version}\"");
    metric_value(text, name, &[&v, "request_protocol=\"tcp\""])
}

#[tokio::test]
async fn bytes_pass_and_counters_match() {
    let (v1, v2) = (echo("v1").await, echo("v2").await);
    let rules = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db]\n  tcp:\n  - match: [{port: 27017}]\n    route: [{destination: {host: db, subset: v1}}]\n";
    let h = start_with(&mesh(v1, v2, rules), |o| {
        o.tcp_listeners = vec![("127.0.0.1:0".parse().unwrap(), 27017)];
    })
    .await;
    let addr = h.proxy.tcp_addrs()[0];
    let payload = vec![b'z'; 100_000];
    let got = exchange(addr, &payload).await;
    assert_eq!(got.len(), 3 + 100_000);
    assert!(got.starts_with("v1\n"));
    assert_eq!(exchange(addr, b"hello").await, "v1\nhello");

    assert!(
        eventually(|| async {
            let m = h.metrics().await;
            tcp_metric(&m, "istio_tcp_connections_closed_total", "v1") == 2.0
        })
        .await,
        "{}",
        h.metrics().await
    );
    let m = h.metrics().await;
    assert_eq!(
        tcp_metric(&m, "istio_tcp_received_bytes_total", "v1"),
        100_005.0,
        "downstream → upstream\n{m}"
    );
    assert_eq!(
        tcp_metric(&m, "istio_tcp_sent_bytes_total", "v1"),
        100_011.0,
        "upstream → downstream"
    );
    assert_eq!(
        tcp_metric(&m, "istio_tcp_connections_opened_total", "v1"),
        2.0
    );
    assert!(m.contains("destination_service=\"db.default.svc.cluster.local\""));
    assert!(m.contains("source_workload=\"productpage-v1\""));
    assert!(m.contains("response_flags=\"-\""));
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn weighted_split_across_subsets() {
    let (v1, v2) = (echo("v1").await, echo("v2").await);
    let rules = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db]\n  tcp:\n  - route:\n    - {destination: {host: db, subset: v1}, weight: 80}\n    - {destination: {host: db, subset: v2}, weight: 20}\n";
    let h = start_with(&mesh(v1, v2, rules), |o| {
        o.tcp_listeners = vec![("127.0.0.1:0".parse().unwrap(), 27017)];
    })
    .await;
    let addr = h.proxy.tcp_addrs()[0];
    let (mut n1, mut n2) = (0, 0);
    for _ in 0..100 {
        match exchange(addr, b"x").await.as_str() {
            "v1\nx" => n1 += 1,
            "v2\nx" => n2 += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // 80/20 over 100 connections: both get some, v1 most (the odds against are ~1e-9).
    assert!(n2 > 0 && n1 > n2, "v1 {n1}, v2 {n2}");
    assert!(
        eventually(|| async {
            let m = h.metrics().await;
            tcp_metric(&m, "istio_tcp_connections_closed_total", "v1") == n1 as f64
                && tcp_metric(&m, "istio_tcp_connections_closed_total", "v2") == n2 as f64
        })
        .await,
        "{}",
        h.metrics().await
    );
    let m = h.metrics().await;
    assert_eq!(
        tcp_metric(&m, "istio_tcp_received_bytes_total", "v2"),
        n2 as f64
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn default_route_subnets_and_unroutable_ports() {
    let (v1, v2) = (echo("v1").await, echo("v2").await);
    // Port 27017 has no VirtualService: the ServiceEntry's default route (both endpoints).
    // Port 5000 is routed only for destination subnet 10.0.0.0/8, which 127.0.0.1 is not.
    let rules = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: other}\nspec:\n  hosts: [other]\n  tcp:\n  - match: [{port: 5000, destinationSubnets: [10.0.0.0/8]}]\n    route: [{destination: {host: db, subset: v2, port: {number: 27017}}}]\n";
    let h = start_with(&mesh(v1, v2, rules), |o| {
        o.tcp_listeners = vec![
            ("127.0.0.1:0".parse().unwrap(), 27017),
            ("127.0.0.1:0".parse().unwrap(), 5000),
        ];
    })
    .await;
    let got = exchange(h.proxy.tcp_addrs()[0], b"q").await;
    assert!(got == "v1\nq" || got == "v2\nq", "{got:?}");
    // No route: the proxy closes the connection without a byte.
    let mut s = TcpStream::connect(h.proxy.tcp_addrs()[1]).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "no route: closed");
    assert!(
        eventually(|| async {
            metric_value(
                &h.metrics().await,
                "istio_tcp_connections_opened_total",
                &["response_flags=\"NR\""],
            ) == 1.0
        })
        .await,
        "{}",
        h.metrics().await
    );
    h.proxy.shutdown().await;
}

/// The mesh's mTLS on a TCP route: the outbound proxy originates it (auto mTLS toward a
/// mesh endpoint), the inbound proxy terminates it under STRICT, and both report
/// `mutual_tls` with the principals proven; plaintext straight to the inbound listener is
/// refused and counted.
#[tokio::test]
async fn tcp_routes_carry_mutual_tls() {
    const OUT_ID: &str = "spiffe://cluster.local/ns/default/sa/client";
    const IN_ID: &str = "spiffe://cluster.local/ns/default/sa/db";
    let pki = pki::Pki::new();
    let (in_dir, _) = pki.issue("db", "db");
    let (out_dir, _) = pki.issue("client", "client");
    let app = echo("v1").await;
    let route = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db]\n  tcp:\n  - route: [{destination: {host: db, subset: v1}}]\n";
    let strict = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: default}\nspec:\n  mtls: {mode: STRICT}\n";
    let inbound = start_with(&(mesh(app, app, route) + strict), |o| {
        o.reporter = meshlens_proxy::Reporter::Destination;
        o.workload = "db-v1".into();
        o.app = "db".into();
        o.cert_dir = Some(in_dir);
        o.tcp_listeners = vec![("127.0.0.1:0".parse().unwrap(), 27017)];
    })
    .await;
    let in_addr = inbound.proxy.tcp_addrs()[0];
    let outbound = start_with(&mesh(in_addr, in_addr, route), |o| {
        o.cert_dir = Some(out_dir);
        o.tcp_listeners = vec![("127.0.0.1:0".parse().unwrap(), 27017)];
    })
    .await;
    let out_addr = outbound.proxy.tcp_addrs()[0];
    assert_eq!(exchange(out_addr, b"hello").await, "v1\nhello");
    assert_eq!(exchange(out_addr, b"again").await, "v1\nagain");

    let mtls = "connection_security_policy=\"mutual_tls\"";
    let in_labels = [
        "reporter=\"destination\"",
        &format!("source_principal=\"{OUT_ID}\""),
        "destination_workload=\"db-v1\"",
        mtls,
    ];
    let in_labels: Vec<&str> = in_labels.iter().map(|s| s.as_ref()).collect();
    assert!(
        eventually(|| async {
            let m = inbound.metrics().await;
            metric_value(&m, "istio_tcp_connections_closed_total", &in_labels) == 2.0
                && metric_value(&m, "istio_tcp_received_bytes_total", &in_labels) == 10.0
        })
        .await,
        "{}",
        inbound.metrics().await
    );
    let out_labels = [
        "reporter=\"source\"",
        &format!("destination_principal=\"{IN_ID}\""),
        mtls,
    ];
    let out_labels: Vec<&str> = out_labels.iter().map(|s| s.as_ref()).collect();
    assert!(
        eventually(|| async {
            let m = outbound.metrics().await;
            metric_value(&m, "istio_tcp_sent_bytes_total", &out_labels) == 16.0
        })
        .await,
        "{}",
        outbound.metrics().await
    );

    // Plaintext to the STRICT inbound listener: closed without a byte of the app's.
    let mut s = TcpStream::connect(in_addr).await.unwrap();
    let _ = s.write_all(b"plain").await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the connection ends");
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    let refused = "meshlens_proxy_tls_handshake_failures_total{reason=\"not_tls\"} 1";
    assert!(
        eventually(|| async { inbound.metrics().await.contains(refused) }).await,
        "{}",
        inbound.metrics().await
    );
    outbound.proxy.shutdown().await;
    inbound.proxy.shutdown().await;
}

/// A ClientHello for `name`, as a real TLS client (rustls) sends it first.
fn client_hello(name: &str) -> Vec<u8> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let server = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), server).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// `tls:` routes pick their destination by the ClientHello's SNI (exact before a wildcard,
/// in config order) and pass the connection through unopened; a connection naming no
/// matching host is refused with NR.
#[tokio::test]
async fn tls_routes_pass_through_by_sni() {
    let (v1, v2) = (echo("v1").await, echo("v2").await);
    let yaml = format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {{name: secure}}\nspec:\n  hosts: [secure]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 443, name: tls, protocol: TLS}}\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tls: {}}}, labels: {{version: v1}}}}\n  - {{address: 127.0.0.1, ports: {{tls: {}}}, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: secure}}\nspec:\n  host: secure\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: secure}}\nspec:\n  hosts: [secure]\n  tls:\n  - match: [{{sniHosts: [a.example.com]}}]\n    route: [{{destination: {{host: secure, subset: v1}}}}]\n  - match: [{{port: 443, sniHosts: [\"*.example.com\"]}}]\n    route: [{{destination: {{host: secure, subset: v2}}}}]\n",
        v1.port(),
        v2.port()
    );
    let h = start_with(&yaml, |o| {
        o.tcp_listeners = vec![("127.0.0.1:0".parse().unwrap(), 443)];
    })
    .await;
    let addr = h.proxy.tcp_addrs()[0];
    for (name, want) in [
        ("a.example.com", "v1"),
        ("b.example.com", "v2"),
        ("deep.b.Example.com", "v2"),
    ] {
        let hello = client_hello(name);
        let mut got = exchange_bytes(addr, &hello).await;
        let tag = format!("{want}\n");
        assert!(
            got.starts_with(tag.as_bytes()),
            "{name}: {:?}",
            &got[..3.min(got.len())]
        );
        assert_eq!(
            got.split_off(tag.len()),
            hello,
            "{name}: the hello passes unopened"
        );
    }
    // No SNI route for these: closed, counted as NR.
    assert!(exchange_bytes(addr, &client_hello("other.org"))
        .await
        .is_empty());
    assert!(exchange_bytes(addr, b"not tls at all").await.is_empty());
    assert!(
        eventually(|| async {
            metric_value(
                &h.metrics().await,
                "istio_tcp_connections_opened_total",
                &["response_flags=\"NR\""],
            ) == 2.0
        })
        .await,
        "{}",
        h.metrics().await
    );
    h.proxy.shutdown().await;
}

/// [`exchange`] for bytes that need not be text.
async fn exchange_bytes(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(msg).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the connection ends");
    out
}

/// With several serving threads each accepts on the TCP listener too; every connection is
/// served and counted once.
#[tokio::test]
async fn tcp_listeners_are_served_by_every_thread() {
    let (v1, v2) = (echo("v1").await, echo("v2").await);
    let rules = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db]\n  tcp:\n  - route: [{destination: {host: db, subset: v1}}]\n";
    let h = start_with(&mesh(v1, v2, rules), |o| {
        o.threads = 3;
        o.tcp_listeners = vec![("127.0.0.1:0".parse().unwrap(), 27017)];
    })
    .await;
    let addr = h.proxy.tcp_addrs()[0];
    let conns: Vec<_> = (0..30)
        .map(|i| tokio::spawn(async move { exchange(addr, format!("m{i}").as_bytes()).await }))
        .collect();
    for (i, c) in conns.into_iter().enumerate() {
        assert_eq!(c.await.unwrap(), format!("v1\nm{i}"));
    }
    assert!(
        eventually(|| async {
            tcp_metric(
                &h.metrics().await,
                "istio_tcp_connections_closed_total",
                "v1",
            ) == 30.0
        })
        .await,
        "{}",
        h.metrics().await
    );
    h.proxy.shutdown().await;
}
