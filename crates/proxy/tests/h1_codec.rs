//! The proxy's own HTTP/1.1 codec, both sides, against raw sockets: response framings
//! (chunked with trailers, content-length, until close, HEAD) pass through and upstream
//! connections are reused when the framing allows; pipelined requests are answered in order;
//! `Expect: 100-continue` is answered; bad input from either side gets its status code
//! (400, 431, 501 downstream; 503 UC for a broken upstream answer) and the proxy serves on.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::*;

/// A backend speaking raw bytes: for each request head (and its content-length body) it
/// writes what `answer` returns for the head; `close` after it closes the connection.
struct Raw {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

async fn raw_backend(answer: fn(&str) -> (Vec<u8>, bool)) -> Raw {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = read_until_head_end(&mut s, &mut buf).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            n.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < end + len {
                        let mut b = [0u8; 4096];
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                    }
                    buf.drain(..end + len);
                    let (reply, close) = answer(&head);
                    if s.write_all(&reply).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    Raw { port, accepted }
}

/// Reads until `buf` holds a whole head; its length (with the blank line).
async fn read_until_head_end(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut b = [0u8; 4096];
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
}

fn mesh(port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {{name: raw}}\nspec:\n  hosts: [raw]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 80, name: http, protocol: HTTP}}\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{http: {port}}}\n"
    )
}

/// Sends raw bytes to the proxy and reads until `done` says the answer is complete (or the
/// connection closes, or 10 s pass).
async fn exchange(s: &mut TcpStream, send: &[u8], done: impl Fn(&str) -> bool) -> String {
    s.write_all(send).await.unwrap();
    read_answer(s, done).await
}

async fn read_answer(s: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(&String::from_utf8_lossy(&out)) {
        let mut b = [0u8; 8192];
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn response_framings_pass_and_connections_are_reused_when_they_can_be() {
    let raw = raw_backend(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        match path {
            "/chunked" => (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n".to_vec(),
                false,
            ),
            "/close" => (
                b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil close".to_vec(),
                true,
            ),
            "/head" => (b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n".to_vec(), false),
            _ => (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-kind: length\r\n\r\nsized".to_vec(),
                false,
            ),
        }
    })
    .await;
    let h = start(&mesh(raw.port)).await;
    let a = h.get("raw", "/chunked").await;
    assert_eq!((a.status, a.body.as_str()), (200, "hello world"));
    let a = h.get("raw", "/sized").await;
    assert_eq!((a.status, a.body.as_str()), (200, "sized"));
    assert_eq!(a.headers["x-kind"], "length");
    assert_eq!(
        raw.accepted.load(Ordering::SeqCst),
        1,
        "chunked and sized answers leave the upstream connection reusable"
    );
    let a = h.get("raw", "/close").await;
    assert_eq!((a.status, a.body.as_str()), (200, "until close"));
    let a = h.get("raw", "/sized").await;
    assert_eq!(a.body, "sized");
    assert_eq!(
        raw.accepted.load(Ordering::SeqCst),
        2,
        "a body delimited by closing costs its connection"
    );

    // HEAD: the declared length passes, no body follows, and the connection goes on.
    let mut s = TcpStream::connect(h.proxy.addr()).await.unwrap();
    let a = exchange(&mut s, b"HEAD /head HTTP/1.1\r\nhost: raw\r\n\r\n", |a| {
        a.contains("\r\n\r\n")
    })
    .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert!(a.contains("content-length: 1234\r\n"), "{a}");
    assert!(a.ends_with("\r\n\r\n"), "no body after a HEAD answer: {a}");
    let a = exchange(&mut s, b"GET /sized HTTP/1.1\r\nhost: raw\r\n\r\n", |a| {
        a.ends_with("sized")
    })
    .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_expect_continue_and_http10() {
    let backend = Backend::start(|s| Reply::ok(format!("{} {}", s.path, s.body.len()))).await;
    let h = start(&service_entry("reviews", &[(&backend, "v1")])).await;
    let mut s = TcpStream::connect(h.proxy.addr()).await.unwrap();
    let a = exchange(
        &mut s,
        b"GET /one HTTP/1.1\r\nhost: reviews\r\n\r\nPOST /two HTTP/1.1\r\nhost: reviews\r\ncontent-length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nhost: reviews\r\n\r\n",
        |a| a.contains("/three 0"),
    )
    .await;
    let (one, two, three) = (
        a.find("/one 0").unwrap(),
        a.find("/two 3").unwrap(),
        a.find("/three 0").unwrap(),
    );
    assert!(one < two && two < three, "answers in request order: {a}");

    // Expect: 100-continue is answered before the body is sent.
    let a = exchange(
        &mut s,
        b"POST /up HTTP/1.1\r\nhost: reviews\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n",
        |a| a.contains("\r\n\r\n"),
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 100 Continue\r\n\r\n"), "{a}");
    let a = exchange(&mut s, b"wxyz", |a| a.contains("/up 4")).await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");

    // A chunked upload reaches the upstream whole.
    let a = exchange(
        &mut s,
        b"POST /chunks HTTP/1.1\r\nhost: reviews\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        |a| a.contains("/chunks 5"),
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");

    // HTTP/1.0 without keep-alive: answered in 1.0 and closed.
    let mut s = TcpStream::connect(h.proxy.addr()).await.unwrap();
    let a = exchange(
        &mut s,
        b"GET /old HTTP/1.0\r\nhost: reviews\r\n\r\n",
        |_| false,
    )
    .await;
    assert!(a.starts_with("HTTP/1.0 200"), "{a}");
    assert!(a.contains("connection: close"), "{a}");
    assert!(a.ends_with("/old 0"), "{a}");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_their_status_and_the_proxy_serves_on() {
    let backend = Backend::named("reviews").await;
    let h = start(&service_entry("reviews", &[(&backend, "v1")])).await;
    let many_headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"GET / HTTP/1.1\r\nhost: reviews\r\ncontent-length: x\r\n\r\n".to_vec(), "400"),
        (
            b"POST / HTTP/1.1\r\nhost: reviews\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
            "400",
        ),
        (b"POST / HTTP/1.1\r\nhost: reviews\r\ntransfer-encoding: gzip\r\n\r\n".to_vec(), "501"),
        (
            format!("GET / HTTP/1.1\r\nhost: reviews\r\n{many_headers}\r\n").into_bytes(),
            "431",
        ),
        (b"GET / HTTP/1.1\r\nho st: reviews\r\n\r\n".to_vec(), "400"),
        (b"\x16\x03\x01\x00\x10garbage\r\n\r\n".to_vec(), "400"),
        (b"GET /\xff HTTP/1.1\r\nhost: reviews\r\n\r\n".to_vec(), "400"),
    ];
    for (req, status) in cases {
        let mut s = TcpStream::connect(h.proxy.addr()).await.unwrap();
        let a = exchange(&mut s, &req, |_| false).await;
        assert!(
            a.starts_with(&format!("HTTP/1.1 {status}")),
            "{:?} -> {a}",
            String::from_utf8_lossy(&req)
        );
    }
    assert_eq!(
        backend.count(),
        0,
        "no bad request head reached the backend"
    );
    // A broken chunked body (its head streamed on already): the request fails, the
    // connection closes, nothing hangs.
    let mut s = TcpStream::connect(h.proxy.addr()).await.unwrap();
    let _ = exchange(
        &mut s,
        b"POST / HTTP/1.1\r\nhost: reviews\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        |_| false,
    )
    .await;
    // A client that goes away mid-head costs nothing else.
    let mut s = TcpStream::connect(h.proxy.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: rev").await.unwrap();
    drop(s);
    assert_eq!(h.get("reviews", "/").await.status, 200);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_broken_upstream_answer_is_503_uc() {
    let raw = raw_backend(|head| {
        if head.starts_with("GET /garbage") {
            (b"HTTP/1.1 2x0 what\r\n\r\n".to_vec(), true)
        } else if head.starts_with("GET /short") {
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec(),
                true,
            )
        } else {
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                false,
            )
        }
    })
    .await;
    let h = start(&mesh(raw.port)).await;
    let a = h.get("raw", "/garbage").await;
    assert_eq!(a.status, 503);
    assert!(a.body.contains("connection termination"), "{}", a.body);
    // A body cut short reaches the client as a failed (truncated) body, not a hang.
    let mut s = TcpStream::connect(h.proxy.addr()).await.unwrap();
    let a = exchange(&mut s, b"GET /short HTTP/1.1\r\nhost: raw\r\n\r\n", |_| {
        false
    })
    .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert!(
        a.contains("content-length: 10\r\n") && a.ends_with("\r\n\r\nabc"),
        "the client sees the declared length, 3 bytes, then the close: {a}"
    );
    assert_eq!(h.get("raw", "/fine").await.body, "ok");
    let m = h.metrics().await;
    assert!(
        metric_value(&m, "istio_requests_total", &["response_code=\"503\""]) >= 1.0,
        "{m}"
    );
    h.proxy.shutdown().await;
}

/// Heads with many headers (more than the parser keeps inline) pass whole, both ways.
#[tokio::test]
async fn heads_with_many_headers_pass_whole_both_ways() {
    let raw = raw_backend(|head| {
        let echoed = head
            .lines()
            .filter(|l| l.starts_with("x-q"))
            .count()
            .to_string();
        let extra: String = (0..40).map(|i| format!("x-r{i}: value {i}\r\n")).collect();
        let reply = format!(
            "HTTP/1.1 200 OK\r\n{extra}content-length: {}\r\n\r\n{echoed}",
            echoed.len()
        );
        (reply.into_bytes(), false)
    })
    .await;
    let h = start(&mesh(raw.port)).await;
    let many: String = (0..60).map(|i| format!("x-q{i}: v{i}\r\n")).collect();
    let mut s = TcpStream::connect(h.proxy.addr()).await.unwrap();
    let a = exchange(
        &mut s,
        format!("GET / HTTP/1.1\r\nhost: raw\r\n{many}\r\n").as_bytes(),
        |a| a.ends_with("\r\n\r\n60"),
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert!(
        a.ends_with("\r\n\r\n60"),
        "all 60 request headers reach upstream: {a}"
    );
    for i in 0..40 {
        assert!(
            a.contains(&format!("x-r{i}: value {i}\r\n")),
            "response header x-r{i}: {a}"
        );
    }
    h.proxy.shutdown().await;
}

/// Connection-level headers of an upstream answer end at the proxy, including those its
/// `Connection` header names; the rest pass, and the length is the proxy's own statement.
#[tokio::test]
async fn connection_level_response_headers_end_at_the_proxy() {
    let raw = raw_backend(|_| {
        (
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: timeout=5\r\nx-private: secret\r\nProxy-Connection: keep-alive\r\nX-Kept: 1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            false,
        )
    })
    .await;
    let h = start(&mesh(raw.port)).await;
    let mut s = TcpStream::connect(h.proxy.addr()).await.unwrap();
    let a = exchange(&mut s, b"GET / HTTP/1.1\r\nhost: raw\r\n\r\n", |a| {
        a.ends_with("\r\n\r\nok")
    })
    .await;
    let head = a.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{a}");
    assert!(head.contains("\r\nx-kept: 1\r\n"), "{a}");
    assert_eq!(head.matches("content-length: 2\r\n").count(), 1, "{a}");
    for gone in ["x-private", "keep-alive:", "proxy-connection"] {
        assert!(!head.contains(gone), "{gone} passed: {a}");
    }
    // Still one upstream connection: the answer was keep-alive.
    let a = exchange(&mut s, b"GET / HTTP/1.1\r\nhost: raw\r\n\r\n", |a| {
        a.ends_with("\r\n\r\nok")
    })
    .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert_eq!(raw.accepted.load(Ordering::SeqCst), 1);
    h.proxy.shutdown().await;
}

/// With several serving threads, keep-alive connections are spread evenly over them (not
/// left to the kernel's hash), each serving its requests, and counted out when closed.
#[tokio::test]
async fn connections_are_spread_evenly_over_the_serving_threads() {
    let raw = raw_backend(|_| {
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            false,
        )
    })
    .await;
    let h = start_with(&mesh(raw.port), |o| o.threads = 2).await;
    let open = |m: &str, thread: &str| {
        metric_value(
            m,
            "meshlens_proxy_downstream_connections_open",
            &[&format!("thread=\"{thread}\"")],
        )
    };
    let get = b"GET /x HTTP/1.1\r\nhost: raw\r\n\r\n";
    let mut conns = Vec::new();
    for i in 0..4 {
        let mut s = TcpStream::connect(h.proxy.addr()).await.unwrap();
        let a = exchange(&mut s, get, |a| a.ends_with("ok")).await;
        assert!(a.starts_with("HTTP/1.1 200"), "connection {i}: {a}");
        conns.push(s);
    }
    let m = h.metrics().await;
    assert_eq!((open(&m, "0"), open(&m, "1")), (2.0, 2.0), "{m}");
    // Every connection goes on serving on its thread.
    for (i, s) in conns.iter_mut().enumerate() {
        for _ in 0..3 {
            let a = exchange(s, get, |a| a.ends_with("ok")).await;
            assert!(a.starts_with("HTTP/1.1 200"), "connection {i}: {a}");
        }
    }
    drop(conns);
    assert!(
        eventually(|| async {
            let m = h.metrics().await;
            open(&m, "0") == 0.0 && open(&m, "1") == 0.0
        })
        .await,
        "{}",
        h.metrics().await
    );
    let m = h.metrics().await;
    assert!(
        m.lines()
            .any(|l| l == "meshlens_proxy_downstream_connections_total 4"),
        "{m}"
    );
    h.proxy.shutdown().await;
}
