//! Connection handling of `serve`: header timeout, shedding at the cap, refusal when every
//! connection is busy, idle timeout, graceful shutdown, and hyper `service_fn` services.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::Full;
use meshlens_access::{serve, AccessMetrics, HyperService, ListenerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until EOF or error, bounded; true when the peer closed.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test]
async fn header_timeout_closes_a_half_request() {
    let opts = ListenerOptions {
        header_read_timeout: Duration::from_millis(300),
        ..quick_opts()
    };
    let srv = start(None, opts).await;
    let mut s = plain(srv.addr).await;
    s.write_all(b"GET / HT").await.unwrap();
    assert!(closed_by_server(&mut s).await);
    assert!(eventually(|| srv.snapshot().header_timeouts == 1).await);
    // a silent connection (not even a byte) is closed too
    let mut s = plain(srv.addr).await;
    assert!(closed_by_server(&mut s).await);
    assert!(eventually(|| srv.snapshot().header_timeouts == 2).await);
    // and a well-behaved client is unaffected
    let a = get_h1(plain(srv.addr).await, "/", None).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn slow_clients_at_the_cap_are_shed_for_a_real_one() {
    let opts = ListenerOptions {
        max_connections: 20,
        header_read_timeout: Duration::from_secs(30),
        ..quick_opts()
    };
    let srv = start(None, opts).await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = plain(srv.addr).await;
        s.write_all(b"GET / HTT").await.unwrap();
        slow.push(s);
    }
    assert!(eventually(|| srv.snapshot().open == 20).await);
    let a = tokio::time::timeout(
        Duration::from_secs(5),
        get_h1(plain(srv.addr).await, "/", None),
    )
    .await
    .expect("a real client is answered while the cap is full of slow ones")
    .unwrap();
    assert_eq!(a.status, StatusCode::OK);
    let snap = srv.snapshot();
    assert_eq!(snap.shed, 1);
    assert_eq!(snap.refused, 0);
    // the oldest slow client was the one closed
    assert!(closed_by_server(&mut slow[0]).await);
}

#[tokio::test]
async fn busy_connections_are_not_shed_and_a_new_one_is_refused() {
    let opts = ListenerOptions {
        max_connections: 1,
        header_read_timeout: Duration::from_millis(300),
        ..quick_opts()
    };
    let srv = start(None, opts).await;
    let busy = tokio::spawn(get_h1(plain(srv.addr).await, "/block", None));
    srv.wait_entered().await;
    let mut s = plain(srv.addr).await;
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut s).await);
    assert!(eventually(|| srv.snapshot().refused == 1).await);
    assert_eq!(srv.snapshot().shed, 0);
    srv.release.notify_one();
    let a = busy.await.unwrap().unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"released");
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let opts = ListenerOptions {
        idle_timeout: Duration::from_millis(300),
        ..quick_opts()
    };
    let srv = start(None, opts).await;
    let io = hyper_util::rt::TokioIo::new(plain(srv.addr).await);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get("http://localhost/")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    // the server sends GOAWAY after the idle timeout and the client connection ends
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "idle connection still open");
    assert!(eventually(|| srv.snapshot().open == 0).await);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut srv = start(None, quick_opts()).await;
    let busy = tokio::spawn(get_h1(plain(srv.addr).await, "/block", None));
    srv.wait_entered().await;
    // a connection that never sent a head is dropped at once on shutdown
    let mut idle = plain(srv.addr).await;
    assert!(eventually(|| srv.snapshot().open == 2).await);
    srv.stop();
    assert!(closed_by_server(&mut idle).await);
    // no new connections once stopped
    assert!(eventually(|| std::net::TcpStream::connect(srv.addr).is_err()).await);
    assert!(!srv.task.is_finished());
    srv.release.notify_one();
    let a = busy.await.unwrap().unwrap();
    assert_eq!(&a.body[..], b"released");
    tokio::time::timeout(Duration::from_secs(10), &mut srv.task)
        .await
        .expect("serve returns once connections are closed")
        .unwrap();
}

#[tokio::test]
async fn hyper_service_fn_is_served() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = HyperService(hyper::service::service_fn(
        |req: http::Request<hyper::body::Incoming>| async move {
            let body = format!("you asked for {}", req.uri().path());
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
        },
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let metrics = Arc::new(AccessMetrics::new());
    let task = tokio::spawn(serve(
        listener,
        None,
        ListenerOptions::named("proxy-admin"),
        metrics.clone(),
        svc,
        async move {
            let _ = rx.await;
        },
    ));
    let a = get_h2(plain(addr).await, "/stats", None).await.unwrap();
    assert_eq!(&a.body[..], b"you asked for /stats");
    assert_eq!(metrics.snapshot("proxy-admin").unwrap().accepted, 1);
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}
