//! Mutual TLS between real proxies on loopback: an outbound proxy originating the mesh's
//! mTLS (ISTIO_MUTUAL and auto), an inbound proxy enforcing PeerAuthentication, both
//! principals in Istio's metrics, refused certificates counted by reason, and certificate
//! rotation under load.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::pki::Pki;
use common::*;
use http_body_util::Full;
use meshlens_identity::{CertSource, DEFAULT_TTL};
use meshlens_proxy::Reporter;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const OUT_ID: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const IN_ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";

fn peer_authentication(mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: default}}\nspec:\n  mtls: {{mode: {mode}}}\n---\n"
    )
}

/// The inbound proxy of `reviews`, in front of `b`, under `mode`.
async fn inbound(b: &Backend, mode: &str, cert_dir: &Path) -> Harness {
    let yaml = service_entry("reviews", &[(b, "v1")]) + &peer_authentication(mode);
    let dir = cert_dir.to_path_buf();
    start_with(&yaml, move |o| {
        o.reporter = Reporter::Destination;
        o.workload = "reviews-v1".into();
        o.app = "reviews".into();
        o.cert_dir = Some(dir);
    })
    .await
}

/// The mesh CA (kept for its files), a `reviews` backend behind its inbound proxy under
/// STRICT, and productpage's certificate directory for an outbound proxy.
struct Strict {
    _pki: Pki,
    out_dir: std::path::PathBuf,
    b: Backend,
    inb: Harness,
}

async fn strict_reviews() -> Strict {
    let pki = Pki::new();
    let (in_dir, _) = pki.issue("reviews", "reviews");
    let (out_dir, _) = pki.issue("productpage", "productpage");
    let b = Backend::named("reviews").await;
    let inb = inbound(&b, "STRICT", &in_dir).await;
    Strict {
        _pki: pki,
        out_dir,
        b,
        inb,
    }
}

/// An outbound proxy whose `reviews` is the inbound proxy at `port`, with a DestinationRule
/// `tls` of `tls_mode` (none: auto mTLS).
async fn outbound(port: u16, tls_mode: Option<&str>, cert_dir: Option<&Path>) -> Harness {
    let mut yaml = format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 9080, name: http, protocol: HTTP}}\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{http: {port}}}\n    labels: {{app: reviews, version: v1}}\n"
    );
    if let Some(m) = tls_mode {
        yaml.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n  trafficPolicy:\n    tls: {{mode: {m}}}\n"
        ));
    }
    let dir = cert_dir.map(Path::to_path_buf);
    start_with(&yaml, move |o| o.cert_dir = dir).await
}

fn failures(metrics: &str, reason: &str) -> f64 {
    let line = format!("meshlens_proxy_tls_handshake_failures_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

/// A plain HTTP/1.1 request straight to `h`'s listener: the status, or None when the
/// connection was refused or closed.
async fn plain_get(h: &Harness) -> Option<u16> {
    let req = http::Request::builder()
        .uri(format!("http://{}/", h.proxy.addr()))
        .header("host", "reviews")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), h.client.request(req))
        .await
        .expect("an answer or a close in time");
    r.ok().map(|r| r.status().as_u16())
}

#[tokio::test]
async fn proxies_speak_mtls_and_report_both_principals() {
    let Strict {
        _pki,
        out_dir,
        b: _backend,
        inb,
    } = strict_reviews().await;
    let out = outbound(
        inb.proxy.addr().port(),
        Some("ISTIO_MUTUAL"),
        Some(&out_dir),
    )
    .await;
    for _ in 0..3 {
        let a = out.get("reviews", "/").await;
        assert_eq!((a.status, a.body.as_str()), (200, "reviews"));
    }
    let in_labels = [
        "reporter=\"destination\"",
        "source_workload=\"productpage-v1\"",
        &format!("source_principal=\"{OUT_ID}\""),
        "destination_workload=\"reviews-v1\"",
        &format!("destination_principal=\"{IN_ID}\""),
        "connection_security_policy=\"mutual_tls\"",
        "response_code=\"200\"",
    ];
    let in_labels: Vec<&str> = in_labels.iter().map(|s| s.as_ref()).collect();
    assert!(
        eventually(|| async {
            metric_value(&inb.metrics().await, "istio_requests_total", &in_labels) == 3.0
        })
        .await,
        "{}",
        inb.metrics().await
    );
    let out_labels = [
        "reporter=\"source\"".to_string(),
        format!("source_principal=\"{OUT_ID}\""),
        format!("destination_principal=\"{IN_ID}\""),
        "connection_security_policy=\"mutual_tls\"".to_string(),
        "response_code=\"200\"".to_string(),
    ];
    let out_labels: Vec<&str> = out_labels.iter().map(|s| s.as_str()).collect();
    assert!(
        eventually(|| async {
            metric_value(&out.metrics().await, "istio_requests_total", &out_labels) == 3.0
        })
        .await,
        "{}",
        out.metrics().await
    );

    // Auto mTLS: no DestinationRule TLS setting, and an identity: still mutual TLS.
    let auto = outbound(inb.proxy.addr().port(), None, Some(&out_dir)).await;
    assert_eq!(auto.get("reviews", "/").await.status, 200);
    // DISABLE toward a STRICT workload: refused (the connection closes, 503).
    let plain = outbound(inb.proxy.addr().port(), Some("DISABLE"), Some(&out_dir)).await;
    assert_eq!(plain.get("reviews", "/").await.status, 503);
    // ISTIO_MUTUAL without an identity fails fast.
    let none = outbound(inb.proxy.addr().port(), Some("ISTIO_MUTUAL"), None).await;
    assert_eq!(none.get("reviews", "/").await.status, 503);
    assert!(
        eventually(|| async { failures(&inb.metrics().await, "not_tls") >= 1.0 }).await,
        "{}",
        inb.metrics().await
    );
}

#[tokio::test]
async fn strict_refuses_plaintext_and_permissive_accepts_both() {
    let Strict {
        _pki,
        out_dir,
        b,
        inb,
    } = strict_reviews().await;
    assert_eq!(plain_get(&inb).await, None, "STRICT served plaintext");
    assert_eq!(b.count(), 0);
    assert_eq!(failures(&inb.metrics().await, "not_tls"), 1.0);

    inb.write_config(
        &(service_entry("reviews", &[(&b, "v1")]) + &peer_authentication("PERMISSIVE")),
    );
    assert!(
        eventually(|| async { plain_get(&inb).await == Some(200) }).await,
        "PERMISSIVE refused plaintext"
    );
    let out = outbound(
        inb.proxy.addr().port(),
        Some("ISTIO_MUTUAL"),
        Some(&out_dir),
    )
    .await;
    assert_eq!(out.get("reviews", "/").await.status, 200);
    let m = inb.metrics().await;
    assert!(
        metric_value(
            &m,
            "istio_requests_total",
            &[
                "connection_security_policy=\"mutual_tls\"",
                "response_code=\"200\""
            ]
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "istio_requests_total",
            &[
                "connection_security_policy=\"none\"",
                "source_principal=\"unknown\"",
                "response_code=\"200\""
            ]
        ) >= 1.0,
        "{m}"
    );

    // A workload-selected DISABLE overrides the namespace's STRICT: plaintext again.
    let disable = "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: reviews, namespace: default}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: DISABLE}\n";
    inb.write_config(
        &(service_entry("reviews", &[(&b, "v1")]) + &peer_authentication("STRICT") + disable),
    );
    assert!(
        eventually(|| async { plain_get(&inb).await == Some(200) }).await,
        "the workload's DISABLE did not apply"
    );
}

#[tokio::test]
async fn wrong_ca_and_expired_certificates_are_refused_with_their_reason() {
    let pki = Pki::new();
    let other = Pki::new();
    let (in_dir, _) = pki.issue("reviews", "reviews");
    let b = Backend::named("reviews").await;
    let inb = inbound(&b, "STRICT", &in_dir).await;
    let port = inb.proxy.addr().port();

    // Signed by another CA (while trusting ours, so the client side is satisfied).
    let mut rogue = other
        .ca
        .issue("default", "productpage", DEFAULT_TTL)
        .unwrap();
    rogue.root_pem = pki.ca.root_pem().to_string();
    let rogue_dir = pki.path("rogue");
    rogue.write(&rogue_dir).unwrap();
    let out = outbound(port, Some("ISTIO_MUTUAL"), Some(&rogue_dir)).await;
    assert_eq!(out.get("reviews", "/").await.status, 503);
    assert!(
        eventually(|| async { failures(&inb.metrics().await, "unknown_ca") >= 1.0 }).await,
        "{}",
        inb.metrics().await
    );

    // Expired an hour ago.
    let now = SystemTime::now();
    let expired = pki
        .ca
        .issue_between(
            "default",
            "productpage",
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        )
        .unwrap();
    let expired_dir = pki.path("expired");
    expired.write(&expired_dir).unwrap();
    let out = outbound(port, Some("ISTIO_MUTUAL"), Some(&expired_dir)).await;
    assert_eq!(out.get("reviews", "/").await.status, 503);
    assert!(
        eventually(|| async { failures(&inb.metrics().await, "expired") >= 1.0 }).await,
        "{}",
        inb.metrics().await
    );
    assert_eq!(b.count(), 0, "a refused caller reached the application");

    // The other way round: an inbound proxy with an expired certificate is refused by the
    // caller, which counts it.
    let b2 = Backend::named("reviews").await;
    let stale = inbound(&b2, "STRICT", &expired_dir).await;
    let (out_dir, _) = pki.issue("productpage", "productpage");
    let out = outbound(
        stale.proxy.addr().port(),
        Some("ISTIO_MUTUAL"),
        Some(&out_dir),
    )
    .await;
    assert_eq!(out.get("reviews", "/").await.status, 503);
    // (Counted once per attempt: Istio's default retry policy retries connect failures.)
    assert!(failures(&out.metrics().await, "expired") >= 1.0);
}

/// The serial of the certificate the proxy at `addr` presents to a new connection.
async fn presented_serial(addr: std::net::SocketAddr, client: &Arc<CertSource>) -> Vec<u8> {
    let cfg = meshlens_identity::client_config(client, None);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(cfg)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .unwrap();
    let chain = tls.get_ref().1.peer_certificates().unwrap();
    meshlens_identity::serial_of(&chain[0]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_request() {
    let pki = Pki::new();
    let (in_dir, first) = pki.issue("reviews", "reviews");
    let (out_dir, _) = pki.issue("productpage", "productpage");
    let client_source = CertSource::load(&out_dir).unwrap();
    let b = Backend::named("reviews").await;
    let inb = inbound(&b, "STRICT", &in_dir).await;
    let addr = inb.proxy.addr();
    assert_eq!(presented_serial(addr, &client_source).await, first);
    let out = Arc::new(outbound(addr.port(), Some("ISTIO_MUTUAL"), Some(&out_dir)).await);

    // Four callers send requests until told to stop (at most 2,000 each) while both sides'
    // certificates are rewritten.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (out, stop) = (out.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut sent, mut failed) = (0, 0);
                while sent < 2000 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if out.get("reviews", "/").await.status != 200 {
                        failed += 1;
                    }
                    sent += 1;
                }
                (sent, failed)
            })
        })
        .collect();
    let wait_for = |n: usize| {
        let b = &b;
        async move {
            for _ in 0..2000 {
                if b.count() >= n {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            false
        }
    };
    assert!(wait_for(50).await, "no load before the rotation");
    let (_, second) = pki.issue("reviews", "reviews");
    pki.issue("productpage", "productpage");

    // New connections present the new certificate once the proxy has re-read it.
    let mut serial = Vec::new();
    for _ in 0..400 {
        serial = presented_serial(addr, &client_source).await;
        if serial == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(serial, second, "the rotated certificate is not served");
    // Load goes on after the rotation, then stops.
    let after = b.count() + 100;
    assert!(wait_for(after).await, "no load after the rotation");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut sent, mut failed) = (0, 0);
    for w in workers {
        let (s, f) = w.await.unwrap();
        sent += s;
        failed += f;
    }
    assert_eq!(failed, 0, "requests failed during rotation");
    assert_eq!(b.count(), sent);
    // And the mesh keeps working with the rotated certificates on both sides.
    assert_eq!(out.get("reviews", "/").await.status, 200);
    let m = inb.metrics().await;
    assert_eq!(failures(&m, "expired"), 0.0, "{m}");
    assert_eq!(failures(&m, "unknown_ca"), 0.0, "{m}");
}

/// An outbound proxy whose DestinationRule for `reviews` (the proxy at `port`) has `tls`.
async fn outbound_with_tls(port: u16, tls: &str, cert_dir: Option<&Path>) -> Harness {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 9080, name: http, protocol: HTTP}}\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{http: {port}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n  trafficPolicy:\n    tls: {tls}\n"
    );
    let dir = cert_dir.map(Path::to_path_buf);
    start_with(&yaml, move |o| o.cert_dir = dir).await
}

#[tokio::test]
async fn simple_and_mutual_tls_from_destination_rule_files() {
    let pki = Pki::new();
    let (in_dir, _) = pki.issue("reviews", "reviews");
    let (out_dir, _) = pki.issue("productpage", "productpage");
    let b = Backend::named("reviews").await;
    // The workload certificates name no host, so name checks are skipped here.
    let simple = "{mode: SIMPLE, insecureSkipVerify: true}".to_string();
    let mutual = format!(
        "{{mode: MUTUAL, insecureSkipVerify: true, clientCertificate: {}, privateKey: {}, caCertificates: {}}}",
        out_dir.join("cert-chain.pem").display(),
        out_dir.join("key.pem").display(),
        out_dir.join("root-cert.pem").display()
    );

    // SIMPLE: TLS without a client certificate, accepted under PERMISSIVE (not mutual).
    let permissive = inbound(&b, "PERMISSIVE", &in_dir).await;
    let out = outbound_with_tls(permissive.proxy.addr().port(), &simple, None).await;
    assert_eq!(out.get("reviews", "/").await.status, 200);
    let m = permissive.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "istio_requests_total",
            &[
                "connection_security_policy=\"none\"",
                "response_code=\"200\""
            ]
        ),
        1.0,
        "{m}"
    );

    // ... and refused under STRICT, counted as a missing client certificate.
    let strict = inbound(&b, "STRICT", &in_dir).await;
    let out = outbound_with_tls(strict.proxy.addr().port(), &simple, None).await;
    assert_eq!(out.get("reviews", "/").await.status, 503);
    assert!(
        eventually(|| async { failures(&strict.metrics().await, "no_client_certificate") >= 1.0 })
            .await,
        "{}",
        strict.metrics().await
    );

    // MUTUAL with the workload's files: accepted under STRICT, the caller's principal proven.
    let out = outbound_with_tls(strict.proxy.addr().port(), &mutual, None).await;
    assert_eq!(out.get("reviews", "/").await.status, 200);
    let m = strict.metrics().await;
    let principal = format!("source_principal=\"{OUT_ID}\"");
    assert_eq!(
        metric_value(
            &m,
            "istio_requests_total",
            &[
                principal.as_str(),
                "connection_security_policy=\"mutual_tls\"",
                "response_code=\"200\""
            ]
        ),
        1.0,
        "{m}"
    );

    // A rule naming a file that does not exist is refused with the rule's place.
    let bad = "{mode: MUTUAL, clientCertificate: /nonexistent/cert.pem, privateKey: /nonexistent/key.pem}";
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n  trafficPolicy:\n    tls: {bad}\n---\n{}",
        service_entry("reviews", &[(&b, "v1")])
    );
    std::fs::write(dir.path().join("mesh.yaml"), yaml).unwrap();
    let opts = meshlens_proxy::ProxyOptions::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    match meshlens_proxy::Proxy::start(opts).await {
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("mesh.yaml:1") && e.contains("/nonexistent/cert.pem"),
                "{e}"
            );
        }
        Ok(_) => panic!("a DestinationRule with missing files was accepted"),
    }
}

/// gRPC keeps HTTP/2 end to end through the mTLS hop: ALPN picks h2 between the proxies.
#[tokio::test]
async fn grpc_stays_on_http2_over_mtls() {
    let Strict {
        _pki,
        out_dir,
        b,
        inb,
    } = strict_reviews().await;
    let out = outbound(
        inb.proxy.addr().port(),
        Some("ISTIO_MUTUAL"),
        Some(&out_dir),
    )
    .await;
    let stream = TcpStream::connect(out.proxy.addr()).await.unwrap();
    let (mut client, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = http::Request::post("http://reviews/pkg.Svc/Call")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap();
        let resp = client.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"reviews");
    }
    assert_eq!(b.last().version, http::Version::HTTP_2);
    let labels = [
        "request_protocol=\"grpc\"",
        "connection_security_policy=\"mutual_tls\"",
    ];
    assert!(
        eventually(|| async {
            metric_value(&inb.metrics().await, "istio_requests_total", &labels) == 2.0
        })
        .await,
        "{}",
        inb.metrics().await
    );
}

/// A DestinationRule's `subjectAltNames` pins the server's identity: another workload's
/// certificate is refused by the caller, and both sides count a wrong identity.
#[tokio::test]
async fn subject_alt_names_pin_the_server_identity() {
    let Strict {
        _pki,
        out_dir,
        b,
        inb,
    } = strict_reviews().await;
    let port = inb.proxy.addr().port();
    let wrong =
        "{mode: ISTIO_MUTUAL, subjectAltNames: [\"spiffe://cluster.local/ns/default/sa/ratings\"]}";
    let right = format!("{{mode: ISTIO_MUTUAL, subjectAltNames: [\"{IN_ID}\"]}}");
    let out = outbound_with_tls(port, wrong, Some(&out_dir)).await;
    assert_eq!(out.get("reviews", "/").await.status, 503);
    let m = out.metrics().await;
    assert!(failures(&m, "wrong_identity") >= 1.0, "{m}");
    assert!(
        eventually(|| async { failures(&inb.metrics().await, "wrong_identity") >= 1.0 }).await,
        "{}",
        inb.metrics().await
    );
    assert_eq!(b.count(), 0);
    let out = outbound_with_tls(port, &right, Some(&out_dir)).await;
    assert_eq!(out.get("reviews", "/").await.status, 200);
}
