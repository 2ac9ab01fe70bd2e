//! Routing by VirtualService rules, against real backends.

mod common;

use common::*;

const VS_HEAD: &str = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n";

fn dr_versions() -> &'static str {
    "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n  - {name: v3, labels: {version: v3}}\n---\n"
}

async fn three() -> (Backend, Backend, Backend) {
    (
        Backend::named("v1").await,
        Backend::named("v2").await,
        Backend::named("v3").await,
    )
}

fn mesh(b: &(Backend, Backend, Backend), rules: &str) -> String {
    format!(
        "{}{}{VS_HEAD}{rules}",
        service_entry("reviews", &[(&b.0, "v1"), (&b.1, "v2"), (&b.2, "v3")]),
        dr_versions()
    )
}

#[tokio::test]
async fn each_match_type_and_first_match_wins() {
    let b = three().await;
    let rules = r#"  - match:
    - uri: {exact: /exact}
    route: [{destination: {host: reviews, subset: v2}}]
  - match:
    - uri: {regex: "/re/[0-9]+"}
    route: [{destination: {host: reviews, subset: v3}}]
  - match:
    - headers: {end-user: {exact: jason}}
    - headers: {x-canary: {prefix: "yes"}}
    route: [{destination: {host: reviews, subset: v2}}]
  - match:
    - method: {exact: POST}
      uri: {prefix: /api}
    route: [{destination: {host: reviews, subset: v3}}]
  - match:
    - queryParams: {tier: {exact: gold}}
    route: [{destination: {host: reviews, subset: v2}}]
  - match:
    - headers: {x-id: {regex: "[a-f]+"}}
    route: [{destination: {host: reviews, subset: v3}}]
  - match:
    - uri: {prefix: /}
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v2}}]
"#;
    let h = start(&mesh(&b, rules)).await;
    assert_eq!(h.get("reviews", "/exact").await.body, "v2");
    assert_eq!(h.get("reviews", "/exact/more").await.body, "v1");
    assert_eq!(h.get("reviews", "/re/123").await.body, "v3");
    assert_eq!(
        h.get("reviews", "/re/12a").await.body,
        "v1",
        "regex is a full match"
    );
    let hdr = |k: &'static str, v: &'static str| {
        let h = &h;
        async move { h.send("GET", "reviews", "/x", &[(k, v)], "").await }
    };
    assert_eq!(hdr("end-user", "jason").await.body, "v2");
    assert_eq!(hdr("end-user", "jasonx").await.body, "v1");
    assert_eq!(
        hdr("x-canary", "yes-please").await.body,
        "v2",
        "blocks are ORed"
    );
    assert_eq!(hdr("x-id", "abc").await.body, "v3");
    assert_eq!(hdr("x-id", "abcz").await.body, "v1");
    assert_eq!(
        h.send("POST", "reviews", "/api/x", &[], "{}").await.body,
        "v3"
    );
    assert_eq!(
        h.send("POST", "reviews", "/other", &[], "").await.body,
        "v1",
        "conditions are ANDed"
    );
    assert_eq!(h.get("reviews", "/q?a=1&tier=gold").await.body, "v2");
    assert_eq!(h.get("reviews", "/q?tier=silver").await.body, "v1");
    // Short name, FQDN, name.namespace(.svc), a port, a trailing dot and upper case all
    // reach the same virtual host.
    for host in [
        "reviews:9080",
        "reviews.default",
        "reviews.default.svc",
        "reviews.default.svc.cluster.local:9080",
        "reviews.default.svc.cluster.local.",
        "Reviews.Default",
    ] {
        assert_eq!(h.get(host, "/exact").await.body, "v2", "{host}");
    }
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn weights_are_relative() {
    let b = three().await;
    let rules = "  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 9\n    - destination: {host: reviews, subset: v2}\n      weight: 1\n";
    let h = start(&mesh(&b, rules)).await;
    let t = tally(&h, "reviews", "/", 1000).await;
    let v2 = *t.get("200:v2").unwrap_or(&0) as f64;
    let v1 = *t.get("200:v1").unwrap_or(&0) as f64;
    assert_eq!(v1 + v2, 1000.0, "{t:?}");
    // 10% of 1000: sigma = sqrt(1000*0.1*0.9) ≈ 9.5; allow 5 sigma.
    assert!((v2 - 100.0).abs() < 48.0, "{t:?}");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn no_route_is_404_nr() {
    let b = three().await;
    let rules = "  - match:\n    - uri: {prefix: /only}\n    route: [{destination: {host: reviews, subset: v1}}]\n";
    let h = start(&mesh(&b, rules)).await;
    assert_eq!(h.get("reviews", "/other").await.status, 404);
    assert_eq!(h.get("unknown-host", "/").await.status, 404);
    let m = h.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "istio_requests_total",
            &["response_code=\"404\"", "response_flags=\"NR\""]
        ),
        2.0,
        "{m}"
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn rewrite_uri_and_authority() {
    let b = three().await;
    let rules = r#"  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new, authority: ratings.internal}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {exact: /exact}}]
    rewrite: {uri: /replaced}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /rx}}]
    rewrite: {uriRegexRewrite: {match: "^/rx/([a-z]+)/(.*)$", rewrite: "/\\2/\\1"}}
    route: [{destination: {host: reviews, subset: v1}}]
"#;
    let h = start(&mesh(&b, rules)).await;
    assert_eq!(h.get("reviews", "/old/path?x=1").await.status, 200);
    let s = b.0.last();
    assert_eq!(s.path, "/new/path?x=1");
    assert_eq!(s.host, "ratings.internal");
    h.get("reviews", "/exact").await;
    assert_eq!(b.0.last().path, "/replaced");
    h.get("reviews", "/rx/abc/def").await;
    assert_eq!(b.0.last().path, "/def/abc");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn redirect_and_direct_response() {
    let b = three().await;
    let rules = r#"  - match: [{uri: {prefix: /moved}}]
    redirect: {uri: /here, authority: example.com}
  - match: [{uri: {prefix: /temp}}]
    redirect: {uri: /t, redirectCode: 307, port: 8443, scheme: https}
  - match: [{uri: {prefix: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
"#;
    let h = start(&mesh(&b, rules)).await;
    let a = h.get("reviews", "/moved?q=1").await;
    assert_eq!(a.status, 301);
    assert_eq!(a.headers["location"], "http://example.com/here?q=1");
    let a = h.get("reviews:9080", "/temp").await;
    assert_eq!(a.status, 307);
    assert_eq!(a.headers["location"], "https://reviews:8443/t");
    let a = h.get("reviews", "/teapot").await;
    assert_eq!((a.status, a.body.as_str()), (418, "short and stout"));
    assert_eq!(b.0.count() + b.1.count() + b.2.count(), 0);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn mirror_gets_a_shadow_copy() {
    let b = three().await;
    let rules = r#"  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
"#;
    let h = start(&mesh(&b, rules)).await;
    let a = h.send("POST", "reviews:9080", "/m", &[], "payload").await;
    assert_eq!(a.body, "v1");
    assert!(
        eventually(|| async { b.1.count() == 1 }).await,
        "mirror received a copy"
    );
    let s = b.1.last();
    assert_eq!(s.host, "reviews-shadow:9080");
    assert_eq!(s.body, "payload");
    assert_eq!(b.0.last().host, "reviews:9080");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn mirror_percentage_zero_sends_nothing() {
    let b = three().await;
    let rules = r#"  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 0}
"#;
    let h = start(&mesh(&b, rules)).await;
    for _ in 0..20 {
        h.get("reviews", "/").await;
    }
    // The main request is answered after the mirror is spawned; give mirrors a moment by
    // sending one more request through the same runtime.
    h.get("reviews", "/").await;
    assert_eq!(b.1.count(), 0);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn http2_prior_knowledge_request() {
    let b = three().await;
    let rules = "  - route: [{destination: {host: reviews, subset: v3}}]\n";
    let h = start(&mesh(&b, rules)).await;
    // A gRPC-style client: prior-knowledge HTTP/2, `:authority` naming the service.
    let stream = tokio::net::TcpStream::connect(h.proxy.addr())
        .await
        .unwrap();
    let (mut client, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("http://reviews/h2")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"\0\0\0\0\0",
        )))
        .unwrap();
    let resp = client.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"v3");
    let seen = b.2.last();
    assert_eq!(
        seen.version,
        http::Version::HTTP_2,
        "gRPC stays on HTTP/2 upstream"
    );
    assert_eq!(seen.host, "reviews");
    let m = h.metrics().await;
    assert!(
        eventually(|| async {
            metric_value(
                &h.metrics().await,
                "istio_requests_total",
                &["request_protocol=\"grpc\""],
            ) == 1.0
        })
        .await,
        "{m}"
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn malformed_request_gets_400_and_others_keep_working() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = three().await;
    let h = start(&mesh(
        &b,
        "  - route: [{destination: {host: reviews, subset: v1}}]\n",
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(h.proxy.addr())
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\nBad Header\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"));
    let mut s = tokio::net::TcpStream::connect(h.proxy.addr())
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.0 400"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(h.get("reviews", "/").await.body, "v1");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn workload_entries_and_direct_dial() {
    let (v1, v2, direct) = (
        Backend::named("we-v1").await,
        Backend::named("we-v2").await,
        Backend::named("direct").await,
    );
    let yaml = format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: prod}}
spec:
  hosts: [ratings.prod.svc.cluster.local]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: ratings}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ratings-vm-1, namespace: prod}}
spec: {{address: 127.0.0.1, ports: {{http: {p1}}}, labels: {{app: ratings, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ratings-vm-2, namespace: prod}}
spec: {{address: 127.0.0.1, ports: {{http: {p2}}}, labels: {{app: ratings, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings, namespace: prod}}
spec:
  host: ratings
  subsets: [{{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ratings, namespace: prod}}
spec:
  hosts: [ratings]
  http:
  - match: [{{uri: {{prefix: /direct}}}}]
    route: [{{destination: {{host: 127.0.0.1, port: {{number: {p3}}}}}}}]
  - route: [{{destination: {{host: ratings, subset: v2}}}}]
"#,
        p1 = v1.port(),
        p2 = v2.port(),
        p3 = direct.port()
    );
    let h = start(&yaml).await;
    assert_eq!(h.get("ratings.prod", "/").await.body, "we-v2");
    assert_eq!(
        h.get("ratings.prod.svc.cluster.local", "/").await.body,
        "we-v2"
    );
    assert_eq!(h.get("ratings.prod:9080", "/direct").await.body, "direct");
    assert_eq!(v1.count(), 0);
    let labels = [
        "destination_workload=\"ratings-vm-2\"",
        "destination_workload_namespace=\"prod\"",
        "destination_version=\"v2\"",
        "destination_service=\"ratings.prod.svc.cluster.local\"",
        "destination_service_namespace=\"prod\"",
    ];
    assert!(
        eventually(|| async {
            metric_value(&h.metrics().await, "istio_requests_total", &labels) == 2.0
        })
        .await,
        "{}",
        h.metrics().await
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn objects_not_exported_to_the_proxys_namespace_are_not_applied() {
    let b = three().await;
    // The VirtualService sends everything to v3 but is private to namespace `team-a`; the
    // DestinationRule exported to `default` still defines the subsets.
    let private_vs = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: reviews-a, namespace: team-a}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  exportTo: [\".\"]\n  http:\n  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]\n---\n";
    let yaml = format!(
        "{}{}{private_vs}{VS_HEAD}  - route: [{{destination: {{host: reviews, subset: v2}}}}]\n",
        service_entry("reviews", &[(&b.0, "v1"), (&b.1, "v2"), (&b.2, "v3")]),
        dr_versions()
    );
    let h = start(&yaml).await;
    assert_eq!(h.get("reviews", "/").await.body, "v2");

    // A ServiceEntry exported elsewhere only: its host is unknown here.
    let hidden = format!(
        "{}{}",
        service_entry("ratings", &[(&b.0, "v1")])
            .replace("spec:\n", "spec:\n  exportTo: [team-b]\n"),
        service_entry("reviews", &[(&b.1, "v2")])
    );
    let h = start(&hidden).await;
    assert_eq!(h.get("ratings", "/").await.status, 404);
    assert_eq!(h.get("reviews", "/").await.body, "v2");
}
