//! Request bodies stream end to end: uploads beyond the replay limit pass (no 413), the
//! upstream sees the first bytes before the client has sent the rest, retries resend a body
//! within the replay limit, a body over it is neither retried nor mirrored, and a route's
//! timeout runs from the end of the request.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use common::*;

/// A client body fed chunk by chunk from the test.
struct ChanBody(mpsc::Receiver<Bytes>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// A backend (HTTP/1.1 and h2c) that counts body bytes as they arrive and answers with the
/// total and the protocol version.
async fn counting_backend() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let r = r.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let r = r.clone();
                    async move {
                        let version = req.version();
                        let mut body = req.into_body();
                        let mut total = 0u64;
                        while let Some(Ok(f)) = body.frame().await {
                            if let Some(d) = f.data_ref() {
                                total += d.len() as u64;
                                r.fetch_add(d.len() as u64, Ordering::Relaxed);
                            }
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                            "{total} {version:?}"
                        )))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, received)
}

fn upload_mesh(port: u16, protocol: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {{name: upload}}\nspec:\n  hosts: [upload]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 9080, name: web, protocol: {protocol}}}\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{web: {port}}}\n"
    )
}

const MIB: usize = 1 << 20;

/// Sends `chunks` MiB through the proxy on `client`, proving on the way that the backend
/// received the first chunk before the client sent the second. Returns the answer body.
async fn stream_upload<F, Fut>(send: F, received: &AtomicU64, chunks: usize) -> (u16, String)
where
    F: FnOnce(ChanBody) -> Fut,
    Fut: std::future::Future<Output = Response<Incoming>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(2);
    let resp = tokio::spawn(send(ChanBody(rx)));
    let chunk = Bytes::from(vec![b'x'; MIB]);
    tx.send(chunk.clone()).await.unwrap();
    assert!(
        eventually(|| async { received.load(Ordering::Relaxed) > 0 }).await,
        "the upstream gets the first chunk while the client is still sending"
    );
    for _ in 1..chunks {
        tx.send(chunk.clone()).await.unwrap();
    }
    drop(tx);
    let resp = tokio::time::timeout(Duration::from_secs(120), resp)
        .await
        .expect("answer in time")
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_40_mib_chunked_upload_streams_through_without_413() {
    let (addr, received) = counting_backend().await;
    let h = start(&upload_mesh(addr.port(), "HTTP")).await;
    let stream = tokio::net::TcpStream::connect(h.proxy.addr())
        .await
        .unwrap();
    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (status, body) = stream_upload(
        move |b| async move {
            // No content-length: chunked.
            let req = Request::post("/upload")
                .header("host", "upload:9080")
                .body(b)
                .unwrap();
            client.send_request(req).await.unwrap()
        },
        &received,
        40,
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "41943040 HTTP/1.1"));
    assert!(
        eventually(|| async {
            metric_value(
                &h.metrics().await,
                "istio_request_bytes_sum",
                &["destination_service=\"upload.default.svc.cluster.local\""],
            ) == (40 * MIB) as f64
        })
        .await,
        "istio_request_bytes counts the whole body:\n{}",
        h.metrics().await
    );
    h.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upload_streams_to_an_http2_upstream() {
    let (addr, received) = counting_backend().await;
    let h = start(&upload_mesh(addr.port(), "HTTP2")).await;
    let stream = tokio::net::TcpStream::connect(h.proxy.addr())
        .await
        .unwrap();
    let (mut client, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (status, body) = stream_upload(
        move |b| async move {
            let req = Request::post("http://upload:9080/upload").body(b).unwrap();
            client.send_request(req).await.unwrap()
        },
        &received,
        20,
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "20971520 HTTP/2.0"));
    h.proxy.shutdown().await;
}

fn vs(rules: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc}}\nspec:\n  hosts: [svc]\n  http:\n{rules}---\n")
}

#[tokio::test]
async fn a_retry_resends_a_post_body_within_the_replay_limit() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let b = Backend::start(move |_| {
        if c.fetch_add(1, Ordering::Relaxed) == 0 {
            Reply::status(503)
        } else {
            Reply::ok("second time lucky")
        }
    })
    .await;
    let h = start(&format!(
        "{}{}",
        service_entry("svc", &[(&b, "v1")]),
        vs("  - retries: {attempts: 2, retryOn: 5xx}\n    route: [{destination: {host: svc}}]\n")
    ))
    .await;
    let a = h.send("POST", "svc", "/r", &[], "the payload").await;
    assert_eq!((a.status, a.body.as_str()), (200, "second time lucky"));
    let seen = b.seen.lock().clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.body, "the payload", "each attempt carries the whole body");
    }
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn over_the_replay_limit_no_retry_and_no_mirror_but_the_request_passes() {
    let fail = Backend::start(|_| Reply::status(503)).await;
    let ok = Backend::named("ok").await;
    let shadow = Backend::named("shadow").await;
    let mesh = format!(
        "{}{}{}{}",
        service_entry("svc", &[(&fail, "v1")]),
        service_entry("good", &[(&ok, "v1")]),
        service_entry("shadow", &[(&shadow, "v1")]),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: good}\nspec:\n  hosts: [good]\n  http:\n  - route: [{destination: {host: good}}]\n    mirror: {host: shadow}\n---\n"
    );
    let h = start_with(&mesh, |o| o.max_request_body = 1024).await;
    let big = "y".repeat(4096);
    let a = h.send("POST", "svc", "/big", &[], &big).await;
    assert_eq!(a.status, 503);
    assert_eq!(
        fail.count(),
        1,
        "a body over the replay limit is not retried"
    );
    let small = h.send("POST", "svc", "/small", &[], "tiny").await;
    assert_eq!(small.status, 503);
    assert_eq!(
        fail.count(),
        4,
        "within the limit: Istio's 2 retries on 503"
    );

    let a = h.send("POST", "good", "/big", &[], &big).await;
    assert_eq!((a.status, a.body.as_str()), (200, "ok"));
    assert_eq!(ok.last().body.len(), 4096);
    let a = h.send("POST", "good", "/small", &[], "tiny").await;
    assert_eq!(a.status, 200);
    assert!(
        eventually(|| async { shadow.count() == 1 }).await,
        "the small body is mirrored"
    );
    // The big body's mirror was skipped while its request was read (the backend reads the
    // whole body before answering), so a later small mirror arriving shows it never came.
    h.send("POST", "good", "/small2", &[], "tiny").await;
    assert!(eventually(|| async { shadow.count() == 2 }).await);
    let paths: Vec<String> = shadow.seen.lock().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        ["/small", "/small2"],
        "the big body skipped its mirror"
    );
    h.proxy.shutdown().await;
}

/// A client body of data frames, then trailers.
struct WithTrailers(Vec<Frame<Bytes>>);

impl Body for WithTrailers {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let v = &mut self.get_mut().0;
        Poll::Ready((!v.is_empty()).then(|| Ok(v.remove(0))))
    }
}

#[tokio::test]
async fn request_trailers_reach_an_http2_upstream() {
    // The backend answers with the request's data and its `x-checksum` trailer.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let c = req.into_body().collect().await.unwrap();
                let trailer = c
                    .trailers()
                    .and_then(|t| t.get("x-checksum"))
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_else(|| "none".into());
                let data = c.to_bytes();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                    "{} {trailer}",
                    String::from_utf8_lossy(&data)
                )))))
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    let h = start(&upload_mesh(port, "HTTP2")).await;
    let stream = tokio::net::TcpStream::connect(h.proxy.addr())
        .await
        .unwrap();
    let (mut client, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    let body = WithTrailers(vec![
        Frame::data(Bytes::from_static(b"part1,")),
        Frame::data(Bytes::from_static(b"part2")),
        Frame::trailers(trailers),
    ]);
    let req = Request::post("http://upload:9080/t").body(body).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), client.send_request(req))
        .await
        .expect("answer in time")
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"part1,part2 abc123");
    h.proxy.shutdown().await;
}

/// A route's timeout counts from the end of the request, as Envoy's: an upload that takes
/// longer than the timeout still gets its answer, and an answer slower than the timeout
/// after the body ended is still 504 UT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_starts_when_the_request_has_been_received() {
    let (addr, _) = counting_backend().await;
    let timeout = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: upload}\nspec:\n  hosts: [upload]\n  http:\n  - timeout: 1s\n    route: [{destination: {host: upload}}]\n";
    let h = start(&format!(
        "{}---\n{timeout}",
        upload_mesh(addr.port(), "HTTP")
    ))
    .await;
    let stream = tokio::net::TcpStream::connect(h.proxy.addr())
        .await
        .unwrap();
    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = mpsc::channel(1);
    let resp = tokio::spawn(async move {
        let req = Request::post("/slow-upload")
            .header("host", "upload:9080")
            .body(ChanBody(rx))
            .unwrap();
        client.send_request(req).await.unwrap()
    });
    // 2.5 s of upload against a 1 s timeout.
    for _ in 0..5 {
        tx.send(Bytes::from_static(b"0123456789")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(tx);
    let resp = tokio::time::timeout(Duration::from_secs(60), resp)
        .await
        .expect("answer in time")
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!((status, &body[..]), (200, &b"50 HTTP/1.1"[..]));
    h.proxy.shutdown().await;

    let slow = Backend::start(|_| Reply {
        delay: Some(Duration::from_secs(5)),
        ..Reply::ok("late")
    })
    .await;
    let h = start(&format!(
        "{}{}",
        service_entry("svc", &[(&slow, "v1")]),
        vs("  - timeout: 1s\n    route: [{destination: {host: svc}}]\n")
    ))
    .await;
    let a = h.send("POST", "svc", "/", &[], "small body").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (504, "upstream request timeout")
    );
    h.proxy.shutdown().await;
}
