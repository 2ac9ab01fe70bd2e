//! Faults, timeouts, retries, connection-pool limits, outlier detection and load balancing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;

fn vs(rules: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc}}\nspec:\n  hosts: [svc]\n  http:\n{rules}---\n")
}

fn dr(policy: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc}}\nspec:\n  host: svc\n  trafficPolicy:\n{policy}  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: none, labels: {{version: nope}}}}\n---\n")
}

async fn flags_count(h: &Harness, code: u16, flags: &str) -> f64 {
    let c = format!("response_code=\"{code}\"");
    let f = format!("response_flags=\"{flags}\"");
    let mut v = 0.0;
    for _ in 0..100 {
        v = metric_value(&h.metrics().await, "istio_requests_total", &[&c, &f]);
        if v > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    v
}

#[tokio::test]
async fn fault_abort_delay_and_no_percentage() {
    let b = Backend::named("ok").await;
    let rules = r#"  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /half}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /nopct}}]
    fault: {abort: {httpStatus: 500}, delay: {fixedDelay: 5s}}
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 10ms, percentage: {value: 100}}}
    route: [{destination: {host: svc}}]
"#;
    let h = start(&format!(
        "{}{}",
        service_entry("svc", &[(&b, "v1")]),
        vs(rules)
    ))
    .await;
    let a = h.get("svc", "/abort").await;
    assert_eq!((a.status, a.body.as_str()), (418, "fault filter abort"));
    assert_eq!(b.count(), 0);
    assert_eq!(
        h.get("svc", "/nopct").await.status,
        200,
        "no percentage, no fault"
    );
    let d = h.get("svc", "/delay").await;
    assert_eq!(d.status, 200);
    let t = tally(&h, "svc", "/half", 400).await;
    let aborted = *t.get("503:fault filter abort").unwrap_or(&0) as f64;
    assert!((aborted - 200.0).abs() < 60.0, "{t:?}"); // sigma 10
    assert_eq!(flags_count(&h, 418, "FI").await, 1.0);
    assert_eq!(flags_count(&h, 200, "DI").await, 1.0);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn timeout_is_504_ut() {
    let b = Backend::start(|_| Reply {
        delay: Some(Duration::from_secs(3)),
        ..Reply::ok("slow")
    })
    .await;
    let rules = "  - timeout: 100ms\n    route: [{destination: {host: svc}}]\n";
    let h = start(&format!(
        "{}{}",
        service_entry("svc", &[(&b, "v1")]),
        vs(rules)
    ))
    .await;
    let a = h.get("svc", "/").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (504, "upstream request timeout")
    );
    assert_eq!(flags_count(&h, 504, "UT").await, 1.0);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn retries_count_attempts_and_flag_urx() {
    let b = Backend::start(|s| match s.path.as_str() {
        "/500" => Reply::status(500),
        _ => Reply::status(503),
    })
    .await;
    let rules = r#"  - match: [{uri: {prefix: /explicit}}]
    retries: {attempts: 3, retryOn: 5xx}
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /off}}]
    retries: {attempts: 0}
    route: [{destination: {host: svc}}]
  - route: [{destination: {host: svc}}]
"#;
    let h = start(&format!(
        "{}{}",
        service_entry("svc", &[(&b, "v1")]),
        vs(rules)
    ))
    .await;
    let a = h.get("svc", "/explicit").await;
    assert_eq!(a.status, 503);
    assert_eq!(b.count(), 4, "1 + attempts tries");
    assert_eq!(flags_count(&h, 503, "URX").await, 1.0);

    h.get("svc", "/off").await;
    assert_eq!(b.count(), 5, "attempts 0 disables retries");

    h.get("svc", "/default").await;
    assert_eq!(b.count(), 8, "Istio's default: 2 retries on 503");
    h.get("svc", "/500").await;
    assert_eq!(b.count(), 9, "500 is not retried by default");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn per_try_timeout_bounds_each_attempt() {
    let b = Backend::start(|_| Reply {
        delay: Some(Duration::from_secs(3)),
        ..Reply::ok("slow")
    })
    .await;
    let rules = "  - retries: {attempts: 2, perTryTimeout: 50ms, retryOn: gateway-error}\n    route: [{destination: {host: svc}}]\n";
    let h = start(&format!(
        "{}{}",
        service_entry("svc", &[(&b, "v1")]),
        vs(rules)
    ))
    .await;
    let a = h.get("svc", "/").await;
    assert_eq!(a.status, 504);
    assert_eq!(b.count(), 3);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn unreachable_upstream_uf_and_no_endpoint_uh() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: svc}}\nspec:\n  hosts: [svc]\n  resolution: STATIC\n  ports: [{{number: 80, name: http}}]\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {dead}}}, labels: {{version: v1}}}}]\n---\n{}{}",
        dr(""),
        vs("  - match: [{uri: {prefix: /none}}]\n    route: [{destination: {host: svc, subset: none}}]\n  - match: [{uri: {prefix: /noretry}}]\n    retries: {attempts: 0}\n    route: [{destination: {host: svc}}]\n  - route: [{destination: {host: svc}}]\n")
    );
    let h = start(&yaml).await;
    let a = h.get("svc", "/noretry").await;
    assert_eq!(a.status, 503);
    assert!(a.body.contains("connection failure"), "{}", a.body);
    assert_eq!(flags_count(&h, 503, "UF").await, 1.0);
    assert_eq!(h.get("svc", "/").await.status, 503);
    assert_eq!(
        flags_count(&h, 503, "UF,URX").await,
        1.0,
        "default retries on connect-failure"
    );
    let a = h.get("svc", "/none").await;
    assert_eq!((a.status, a.body.as_str()), (503, "no healthy upstream"));
    assert_eq!(flags_count(&h, 503, "UH").await, 1.0);
    h.proxy.shutdown().await;
}

async fn three() -> Vec<Backend> {
    vec![
        Backend::named("a").await,
        Backend::named("b").await,
        Backend::named("c").await,
    ]
}

fn lb_mesh(b: &[Backend], policy: &str) -> String {
    format!(
        "{}{}{}",
        service_entry("svc", &[(&b[0], "v1"), (&b[1], "v1"), (&b[2], "v1")]),
        dr(policy),
        vs("  - route: [{destination: {host: svc, subset: v1}}]\n")
    )
}

#[tokio::test]
async fn round_robin_and_random_spread() {
    let b = three().await;
    let h = start(&lb_mesh(&b, "    loadBalancer: {simple: ROUND_ROBIN}\n")).await;
    let t = tally(&h, "svc", "/", 300).await;
    assert_eq!(t.get("200:a"), Some(&100), "{t:?}");
    assert_eq!(t.get("200:b"), Some(&100), "{t:?}");
    h.proxy.shutdown().await;

    let b = three().await;
    let h = start(&lb_mesh(&b, "    loadBalancer: {simple: RANDOM}\n")).await;
    let t = tally(&h, "svc", "/", 300).await;
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t.values().all(|n| *n > 50), "{t:?}");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn least_request_avoids_the_busy_endpoint() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g2 = gate.clone();
    let busy = Backend::start(move |s| Reply {
        gate: (s.path == "/hold").then(|| g2.clone()),
        ..Reply::ok("busy")
    })
    .await;
    let b = vec![busy, Backend::named("b").await, Backend::named("c").await];
    let h = Arc::new(start(&lb_mesh(&b, "    loadBalancer: {simple: LEAST_REQUEST}\n")).await);
    // Park one request on each endpoint until it lands on `busy`.
    let mut held = Vec::new();
    while b[0].count() == 0 {
        let h2 = h.clone();
        held.push(tokio::spawn(async move { h2.get("svc", "/hold").await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(held.len() < 200);
    }
    let before = b[0].count();
    let t = tally(&h, "svc", "/", 30).await;
    assert_eq!(
        b[0].count(),
        before,
        "the endpoint with a request in flight is avoided: {t:?}"
    );
    gate.add_permits(1000);
    for t in held {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn consistent_hash_on_header_is_sticky() {
    let b = three().await;
    let h = start(&lb_mesh(
        &b,
        "    loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n",
    ))
    .await;
    let mut used = std::collections::HashSet::new();
    for u in 0..20 {
        let user = format!("user-{u}");
        let first = h
            .send("GET", "svc", "/", &[("x-user", &user)], "")
            .await
            .body;
        for _ in 0..5 {
            let again = h
                .send("GET", "svc", "/", &[("x-user", &user)], "")
                .await
                .body;
            assert_eq!(again, first, "{user} stays on its endpoint");
        }
        used.insert(first);
    }
    assert!(used.len() > 1, "keys spread over endpoints: {used:?}");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn pool_overflow_is_503_uo() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g2 = gate.clone();
    let b = Backend::start(move |_| Reply {
        gate: Some(g2.clone()),
        ..Reply::ok("done")
    })
    .await;
    let policy = "    connectionPool:\n      http: {http2MaxRequests: 1}\n";
    let yaml = format!(
        "{}{}{}",
        service_entry("svc", &[(&b, "v1")]),
        dr(policy),
        vs("  - route: [{destination: {host: svc}}]\n")
    );
    let h = Arc::new(start(&yaml).await);
    let h1 = h.clone();
    let first = tokio::spawn(async move { h1.get("svc", "/1").await });
    let _ = b.arrived.acquire().await.unwrap();
    let second = h.get("svc", "/2").await;
    assert_eq!(second.status, 503);
    assert!(second.body.ends_with("overflow"));
    gate.add_permits(10);
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(
        h.get("svc", "/3").await.status,
        200,
        "the slot is free again"
    );
    assert_eq!(flags_count(&h, 503, "UO").await, 1.0);
}

#[tokio::test]
async fn outlier_ejection_and_recovery() {
    let bad = Backend::start(|_| Reply::status(500)).await;
    let good = Backend::named("good").await;
    let policy = "    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 1s, maxEjectionPercent: 100}\n";
    let yaml = format!(
        "{}{}{}",
        service_entry("svc", &[(&bad, "v1"), (&good, "v1")]),
        dr(policy),
        vs("  - retries: {attempts: 0}\n    route: [{destination: {host: svc}}]\n")
    );
    let h = start(&yaml).await;
    for _ in 0..20 {
        h.get("svc", "/").await;
    }
    assert_eq!(bad.count(), 2, "ejected after 2 consecutive 5xx");
    assert_eq!(good.count(), 18);
    // After baseEjectionTime the endpoint gets traffic again.
    let recovered = eventually(|| async {
        h.get("svc", "/").await;
        bad.count() > 2
    })
    .await;
    assert!(recovered);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn all_endpoints_ejected_is_503_uh() {
    let bad = Backend::start(|_| Reply::status(502)).await;
    let policy = "    outlierDetection: {consecutiveGatewayErrors: 1, consecutive5xxErrors: 0, baseEjectionTime: 30s}\n";
    let yaml = format!(
        "{}{}{}",
        service_entry("svc", &[(&bad, "v1")]),
        dr(policy),
        vs("  - retries: {attempts: 0}\n    route: [{destination: {host: svc}}]\n")
    );
    let h = start(&yaml).await;
    assert_eq!(h.get("svc", "/").await.status, 502);
    let a = h.get("svc", "/").await;
    assert_eq!((a.status, a.body.as_str()), (503, "no healthy upstream"));
    assert_eq!(bad.count(), 1);
    h.proxy.shutdown().await;
}

/// `portLevelSettings` for the service's port (9080) replace the destination-level policy:
/// its round robin applies, and the pool limit of the level above is not inherited.
#[tokio::test]
async fn port_level_settings_apply_to_their_port() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut b = Vec::new();
    for name in ["a", "b", "c"] {
        let g = gate.clone();
        b.push(
            Backend::start(move |s| Reply {
                gate: (s.path == "/hold").then(|| g.clone()),
                ..Reply::ok(name)
            })
            .await,
        );
    }
    let policy = "    loadBalancer: {simple: RANDOM}\n    connectionPool:\n      http: {http2MaxRequests: 1}\n    portLevelSettings:\n    - port: {number: 9080}\n      loadBalancer: {simple: ROUND_ROBIN}\n    - port: {number: 9999}\n      connectionPool:\n        http: {http2MaxRequests: 1}\n";
    let h = Arc::new(start(&lb_mesh(&b, policy)).await);
    let t = tally(&h, "svc", "/", 300).await;
    for name in ["a", "b", "c"] {
        assert_eq!(
            t.get(&format!("200:{name}")),
            Some(&100),
            "round robin: {t:?}"
        );
    }
    // With one request parked on an endpoint, others still pass: no limit of 1 on this port.
    let h1 = h.clone();
    let parked = tokio::spawn(async move { h1.get("svc", "/hold").await });
    for _ in 0..500 {
        if b.iter().map(Backend::count).sum::<usize>() > 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        b.iter().map(Backend::count).sum::<usize>(),
        301,
        "the parked request arrived"
    );
    let t = tally(&h, "svc", "/", 6).await;
    assert!(
        t.keys().all(|k| k.starts_with("200:")),
        "no overflow while one request is in flight: {t:?}"
    );
    gate.add_permits(10);
    assert_eq!(parked.await.unwrap().status, 200);
}
