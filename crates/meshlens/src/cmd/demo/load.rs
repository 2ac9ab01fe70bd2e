//! The demo's load generator: an open-loop request rate (requests start on schedule whether
//! or not earlier ones finished) over a mix of URLs and user agents, through the ingress.
//! About 2 % ask the ingress for http-lb directly, which the mesh's AuthorizationPolicy
//! refuses (only proxy-access-control may call it): the demo's denied caller.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use rand::{Rng, SeedableRng};

use super::apps::HttpClient;

/// Weighted URLs: most traffic on a few pages, a slow search, a flaky path with an injected
/// fault, and some pages that do not exist.
const URLS: &[(&str, u32)] = &[
    ("/", 30),
    ("/index.html", 15),
    ("/api/products", 20),
    ("/api/cart", 10),
    ("/api/search?q=shoes", 8),
    ("/api/flaky", 7),
    ("/missing/page", 3),
    ("/static/app.js", 7),
];

const AGENTS: &[(&str, u32)] = &[
    ("Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", 45),
    ("Mozilla/5.0 (Macintosh) Firefox/128.0", 25),
    ("Mozilla/5.0 (iPhone) Safari/605.1", 15),
    ("curl/8.5.0", 10),
    ("BadBot/1.0", 5),
];

fn pick<'a>(rng: &mut impl Rng, items: &'a [(&'a str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut r = rng.gen_range(0..total);
    for (v, w) in items {
        if r < *w {
            return v;
        }
        r -= w;
    }
    items[0].0
}

#[derive(Default)]
pub struct LoadStats {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// Sends `rate` requests per second to the ingress until the runtime stops.
pub fn spawn(ingress: SocketAddr, rate: f64, client: HttpClient, stats: Arc<LoadStats>) {
    tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tick.tick().await;
            let url = pick(&mut rng, URLS);
            let agent = pick(&mut rng, AGENTS);
            let canary = rng.gen_bool(0.03);
            let host = if rng.gen_bool(0.02) {
                "http-lb"
            } else {
                "proxy-access-control"
            };
            let mut req = Request::builder()
                .uri(format!("http://{ingress}{url}"))
                .header("host", host)
                .header("user-agent", agent);
            if canary {
                req = req.header("x-canary", "true");
            }
            let req = req.body(Full::new(Bytes::new())).expect("valid request");
            let client = client.clone();
            let stats = stats.clone();
            stats.sent.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let ok = match tokio::time::timeout(Duration::from_secs(15), client.request(req))
                    .await
                {
                    Ok(Ok(resp)) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        ok
                    }
                    _ => false,
                };
                let c = if ok { &stats.ok } else { &stats.failed };
                c.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
}
