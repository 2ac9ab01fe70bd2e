//! TLS, client certificates, basic auth, headers and live reload of the web config, against
//! `serve` with a real axum app.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use http::StatusCode;
use meshlens_access::WebConfigSource;

fn tls_config(extra: &str) -> String {
    format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}")
}

#[tokio::test]
async fn tls_serves_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let path = dir.path().join("web.yml");
    write_config(&path, &tls_config(""));
    let web = WebConfigSource::load(&path).unwrap();
    let mut srv = start(Some(web), quick_opts()).await;

    let io = tls_connect(srv.addr, client_config(&pki.ca, None, &[b"http/1.1"]))
        .await
        .unwrap();
    let a = get_h1(io, "/", None).await.unwrap();
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"hello"[..]));

    let io = tls_connect(srv.addr, client_config(&pki.ca, None, &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let a = get_h2(io, "/", None).await.unwrap();
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"hello"[..]));

    // plain HTTP on a TLS port is a failed handshake, counted
    let a = get_h1(plain(srv.addr).await, "/", None).await;
    assert!(a.is_err());
    assert!(eventually(|| srv.snapshot().tls_handshake_failures == 1).await);
    srv.stop();
    srv.task.await.unwrap();
}

#[tokio::test]
async fn http2_false_offers_only_http11() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let path = dir.path().join("web.yml");
    write_config(&path, &tls_config("http_server_config:\n  http2: false\n"));
    let srv = start(Some(WebConfigSource::load(&path).unwrap()), quick_opts()).await;
    let io = tls_connect(
        srv.addr,
        client_config(&pki.ca, None, &[b"h2", b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let a = get_h1(io, "/", None).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn require_and_verify_client_cert() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let path = dir.path().join("web.yml");
    write_config(
        &path,
        &tls_config("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"),
    );
    let srv = start(Some(WebConfigSource::load(&path).unwrap()), quick_opts()).await;

    // No certificate: the server refuses during the handshake; with TLS 1.3 the client may
    // only learn it on its first read, so the request must fail either way.
    let no_cert = async {
        let io = tls_connect(srv.addr, client_config(&pki.ca, None, &[b"http/1.1"])).await?;
        get_h1(io, "/", None).await
    };
    assert!(no_cert.await.is_err());

    let wrong_ca = async {
        let io = tls_connect(
            srv.addr,
            client_config(&pki.ca, Some(&pki.stranger), &[b"http/1.1"]),
        )
        .await?;
        get_h1(io, "/", None).await
    };
    assert!(wrong_ca.await.is_err());

    let io = tls_connect(
        srv.addr,
        client_config(&pki.ca, Some(&pki.client), &[b"h2"]),
    )
    .await
    .unwrap();
    let a = get_h2(io, "/", None).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert!(eventually(|| srv.snapshot().tls_handshake_failures == 2).await);
}

async fn expect_auth(addr: std::net::SocketAddr, h2: bool, auth: Option<&str>) -> Answer {
    let io = plain(addr).await;
    if h2 {
        get_h2(io, "/", auth).await.unwrap()
    } else {
        get_h1(io, "/", auth).await.unwrap()
    }
}

#[tokio::test]
async fn basic_auth_over_http1_and_h2c() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    write_config(
        &path,
        &format!(
            "basic_auth_users:\n  alice: '{}'\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n    Content-Security-Policy: default-src 'self'\n",
            bcrypt_hash("wonderland")
        ),
    );
    let srv = start(Some(WebConfigSource::load(&path).unwrap()), quick_opts()).await;
    for h2 in [false, true] {
        let a = expect_auth(srv.addr, h2, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "h2={h2}");
        assert_eq!(a.headers["www-authenticate"], "Basic");
        assert_eq!(&a.body[..], b"Unauthorized");
        assert_eq!(a.headers["x-frame-options"], "deny", "headers on 401 too");

        let a = expect_auth(srv.addr, h2, Some(&basic("alice", "looking-glass"))).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        let a = expect_auth(srv.addr, h2, Some(&basic("bob", "wonderland"))).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);

        for _ in 0..2 {
            let a = expect_auth(srv.addr, h2, Some(&basic("alice", "wonderland"))).await;
            assert_eq!(a.status, StatusCode::OK, "h2={h2}");
            assert_eq!(&a.body[..], b"hello");
            assert_eq!(a.headers["x-frame-options"], "deny");
            assert_eq!(a.headers["content-security-policy"], "default-src 'self'");
        }
    }
    assert_eq!(srv.snapshot().auth_failures, 6);
    let mut text = String::new();
    srv.metrics.render(&mut text);
    assert!(
        text.contains("meshlens_http_auth_failures_total{listener=\"main\"} 6"),
        "{text}"
    );
}

#[tokio::test]
async fn config_changes_apply_to_the_next_connection_and_bad_ones_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let path = dir.path().join("web.yml");
    write_config(&path, "# nothing yet\n");
    let web = WebConfigSource::load(&path).unwrap();
    let srv = start(Some(web.clone()), quick_opts()).await;
    assert_eq!(
        expect_auth(srv.addr, false, None).await.status,
        StatusCode::OK
    );

    // add a user: the next connection must authenticate
    let users = format!("basic_auth_users:\n  alice: '{}'\n", bcrypt_hash("pw"));
    write_config(&path, &users);
    assert_eq!(
        expect_auth(srv.addr, false, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        expect_auth(srv.addr, false, Some(&basic("alice", "pw")))
            .await
            .status,
        StatusCode::OK
    );

    // turn TLS on
    write_config(&path, &format!("{}{users}", tls_config("")));
    assert!(get_h1(plain(srv.addr).await, "/", None).await.is_err());
    let io = tls_connect(srv.addr, client_config(&pki.ca, None, &[b"http/1.1"]))
        .await
        .unwrap();
    let a = get_h1(io, "/", Some(&basic("alice", "pw"))).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);

    // a broken file keeps the last good config
    write_config(&path, "tls_server_config: [this is not: valid\n");
    let io = tls_connect(srv.addr, client_config(&pki.ca, None, &[b"http/1.1"]))
        .await
        .unwrap();
    let a = get_h1(io, "/", Some(&basic("alice", "pw"))).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert!(web.last_error().is_some());

    // so does a file that parses but names a missing key
    write_config(
        &path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n",
    );
    let io = tls_connect(srv.addr, client_config(&pki.ca, None, &[b"http/1.1"]))
        .await
        .unwrap();
    let a = get_h1(io, "/", None).await.unwrap();
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "users of the last good config still apply"
    );
    assert!(web.last_error().unwrap().contains("missing.key"));

    // a replaced certificate is picked up too: swap in a cert from another CA
    write_config(&path, &tls_config(""));
    let other = ca("rotated ca");
    let rotated = leaf(&other, &["localhost"], false);
    std::fs::write(dir.path().join("server.key"), &rotated.key_pem).unwrap();
    write_config(&dir.path().join("server.crt"), &rotated.cert_pem);
    let io = tls_connect(srv.addr, client_config(&other, None, &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(get_h1(io, "/", None).await.unwrap().status, StatusCode::OK);
    assert!(web.last_error().is_none());
    let _ = srv.metrics.listener("main").open.load(Ordering::Relaxed);
}

#[tokio::test]
async fn load_fails_loudly_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    write_config(
        &path,
        "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
    );
    let e = WebConfigSource::load(&path).unwrap_err().to_string();
    assert!(e.contains("nope.crt"), "{e}");
    write_config(
        &path,
        "basic_auth_users:\n  alice: x\n  typo: 1\nextra: 2\n",
    );
    let e = WebConfigSource::load(&path).unwrap_err().to_string();
    assert!(e.contains("extra") && e.contains("web.yml"), "{e}");
}
