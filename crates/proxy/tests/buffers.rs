//! Per-connection HTTP/1.1 buffers and the head limit: heads larger than the first read and
//! bodies of any allowed size pass both ways, a head over 64 KiB is refused with 431, and
//! keep-alive connections that sat idle between requests go on serving.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn heads_larger_than_the_first_read_pass_both_ways() {
    let big = "x".repeat(30 << 10);
    let b2 = big.clone();
    let backend = Backend::start(move |_| {
        let mut r = Reply::ok("y".repeat(200 << 10));
        r.headers.push(("x-big-response", b2.clone()));
        r
    })
    .await;
    let h = start(&service_entry("reviews", &[(&backend, "v1")])).await;
    let a = h
        .send("GET", "reviews", "/", &[("x-big-request", &big)], "")
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["x-big-response"].len(), big.len());
    assert_eq!(a.body.len(), 200 << 10);
    assert_eq!(backend.last().headers["x-big-request"].len(), big.len());
}

#[tokio::test]
async fn a_head_over_the_limit_is_refused_with_431() {
    let backend = Backend::named("reviews").await;
    let h = start(&service_entry("reviews", &[(&backend, "v1")])).await;
    let huge = "x".repeat(70 << 10);
    let a = h
        .send("GET", "reviews", "/", &[("x-huge", &huge)], "")
        .await;
    assert_eq!(a.status, 431);
    assert_eq!(backend.count(), 0);
}

#[tokio::test]
async fn keep_alive_connections_serve_again_after_waiting() {
    let backend = Backend::start(|s| Reply::ok(format!("{} bytes", s.body.len()))).await;
    let h = start(&service_entry("reviews", &[(&backend, "v1")])).await;
    for i in 0..4usize {
        let body = "b".repeat(1000 * i + 5000);
        let a = h.send("POST", "reviews", "/up", &[], &body).await;
        assert_eq!((a.status, a.body), (200, format!("{} bytes", body.len())));
        // Idle on both sides: the read buffers are released, then allocated again.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(backend.count(), 4);
}
