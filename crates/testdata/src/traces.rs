//! Realistic Istio-like traces for benchmarks and tests: an ingress gateway
//! calling a frontend that fans out to backends, each call a CLIENT span in the caller's
//! sidecar and a SERVER span in the callee's, with the tags Envoy's Zipkin tracer sets.

use std::collections::BTreeMap;

use meshlens_model::{Endpoint, Span, SpanKind, TraceId};

/// A small deterministic PRNG (splitmix64): the same seed always gives the same traces.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const SERVICES: &[(&str, u16, &[&str])] = &[
    ("istio-ingressgateway", 8080, &[]),
    (
        "frontend",
        8080,
        &["/", "/product", "/cart", "/cart/checkout", "/setCurrency"],
    ),
    (
        "productcatalogservice",
        3550,
        &[
            "/hipstershop.ProductCatalogService/GetProduct",
            "/hipstershop.ProductCatalogService/ListProducts",
        ],
    ),
    (
        "cartservice",
        7070,
        &[
            "/hipstershop.CartService/GetCart",
            "/hipstershop.CartService/AddItem",
        ],
    ),
    (
        "currencyservice",
        7000,
        &[
            "/hipstershop.CurrencyService/Convert",
            "/hipstershop.CurrencyService/GetSupportedCurrencies",
        ],
    ),
    (
        "recommendationservice",
        8080,
        &["/hipstershop.RecommendationService/ListRecommendations"],
    ),
    ("adservice", 9555, &["/hipstershop.AdService/GetAds"]),
    (
        "checkoutservice",
        5050,
        &["/hipstershop.CheckoutService/PlaceOrder"],
    ),
    (
        "paymentservice",
        50051,
        &["/hipstershop.PaymentService/Charge"],
    ),
    (
        "shippingservice",
        50051,
        &[
            "/hipstershop.ShippingService/GetQuote",
            "/hipstershop.ShippingService/ShipOrder",
        ],
    ),
    (
        "emailservice",
        5000,
        &["/hipstershop.EmailService/SendOrderConfirmation"],
    ),
    ("productpage", 9080, &["/productpage", "/api/v1/products"]),
    ("reviews", 9080, &["/reviews"]),
    ("ratings", 9080, &["/ratings"]),
    ("details", 9080, &["/details"]),
    ("redis-cart", 6379, &["/"]),
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "grpc-go/1.60.1",
    "okhttp/4.12.0",
];

struct Svc {
    name: String,
    host: String,
    port: u16,
    paths: &'static [&'static str],
    pods: Vec<(String, String)>, // (ip, node_id)
}

fn services(rng: &mut Rng) -> Vec<Svc> {
    SERVICES
        .iter()
        .enumerate()
        .map(|(i, (name, port, paths))| {
            let pods = (0..3)
                .map(|p| {
                    let ip = format!(
                        "10.{}.{}.{}",
                        1 + i / 8,
                        (i % 8) * 16 + p,
                        2 + rng.below(250)
                    );
                    let node = format!(
                        "sidecar~{ip}~{name}-v1-{:x}-{:05x}.default~default.svc.cluster.local",
                        0x5f00_0000 + rng.below(0xff_ffff),
                        rng.below(0xf_ffff)
                    );
                    (ip, node)
                })
                .collect();
            Svc {
                name: format!("{name}.default"),
                host: format!("{name}.default.svc.cluster.local"),
                port: *port,
                paths,
                pods,
            }
        })
        .collect()
}

/// `n_traces` traces (3-8 spans each) with start times spread evenly over
/// `[start_us, end_us)`; the same arguments always give the same spans.
pub fn generate_spans_at(n_traces: usize, seed: u64, start_us: u64, end_us: u64) -> Vec<Span> {
    let mut rng = Rng::new(seed);
    let svcs = services(&mut rng);
    let step = (end_us.saturating_sub(start_us)) / (n_traces.max(1) as u64);
    let mut out = Vec::with_capacity(n_traces * 6);
    for t in 0..n_traces {
        let t0 = start_us + step * t as u64 + rng.below(step.max(1));
        gen_trace(&mut rng, &svcs, t0, &mut out);
    }
    out
}

struct Call<'a> {
    caller: &'a Svc,
    caller_pod: usize,
    callee: &'a Svc,
    parent: Option<u64>,
    start: u64,
    dur: u64,
}

fn gen_trace(rng: &mut Rng, svcs: &[Svc], t0: u64, out: &mut Vec<Span>) {
    let trace_id = TraceId {
        high: rng.next_u64(),
        low: rng.next_u64(),
        is_128: true,
    };
    let ua = USER_AGENTS[rng.below(USER_AGENTS.len() as u64) as usize];
    let error_trace = rng.chance(3);
    let (entry, backends): (usize, &[usize]) = if rng.chance(70) {
        (1, &[2, 3, 4, 5, 6, 7])
    } else {
        (11, &[12, 14])
    };
    let total = 20_000 + rng.below(180_000);
    // Root call: ingress gateway -> entry service.
    let mut calls = vec![Call {
        caller: &svcs[0],
        caller_pod: rng.below(3) as usize,
        callee: &svcs[entry],
        parent: None,
        start: t0,
        dur: total,
    }];
    let fanout = rng.below(4) as usize;
    for k in 0..fanout {
        if calls.len() >= 4 {
            break;
        }
        let mut b = backends[rng.below(backends.len() as u64) as usize];
        // reviews calls ratings; checkout calls payment/shipping/email.
        let nested = if b == 12 {
            Some(13)
        } else if b == 7 {
            Some([8, 9, 10][rng.below(3) as usize])
        } else {
            None
        };
        if k > 0 && b == 7 {
            b = 4;
        }
        let start = t0 + 500 + (k as u64) * total / 4;
        let dur = total / 5 + rng.below(total / 10);
        calls.push(Call {
            caller: &svcs[entry],
            caller_pod: rng.below(3) as usize,
            callee: &svcs[b],
            parent: Some(1),
            start,
            dur,
        });
        if let (Some(n), true) = (nested, calls.len() < 4) {
            calls.push(Call {
                caller: &svcs[b],
                caller_pod: rng.below(3) as usize,
                callee: &svcs[n],
                parent: Some(calls.len() as u64 * 2 - 1),
                start: start + 300,
                dur: dur / 2,
            });
        }
    }
    // Span ids: call i has client id ids[2i], server id ids[2i+1].
    let ids: Vec<u64> = (0..calls.len() * 2).map(|_| rng.next_u64()).collect();
    let mut pods = vec![0usize; calls.len()];
    let failing = if error_trace {
        Some(rng.below(calls.len() as u64) as usize)
    } else {
        None
    };
    // An uninstrumented egress call sometimes (a CLIENT span without a server side).
    let egress = calls.len() == 1 || (calls.len() < 4 && rng.chance(40));
    for (i, c) in calls.iter().enumerate() {
        pods[i] = rng.below(3) as usize;
        let path = c
            .callee
            .paths
            .get(rng.below(c.callee.paths.len().max(1) as u64) as usize);
        let path = path.copied().unwrap_or("/");
        let url = if path.ends_with('/') || path.starts_with("/hipstershop") {
            format!("http://{}:{}{}", c.callee.host, c.callee.port, path)
        } else {
            format!(
                "http://{}:{}{}/{}",
                c.callee.host,
                c.callee.port,
                path,
                rng.below(400)
            )
        };
        let method = if rng.chance(85) { "GET" } else { "POST" };
        let is_err = failing == Some(i);
        let status = if is_err {
            ["500", "503", "504"][rng.below(3) as usize]
        } else if rng.chance(2) {
            "404"
        } else {
            "200"
        };
        let flags = if is_err && rng.chance(50) { "UF" } else { "-" };
        let name = format!("{}:{}{}", c.callee.host, c.callee.port, path_glob(path));
        let client_parent = c.parent.map(|p| ids[p as usize]);
        let callee_pod = &c.callee.pods[pods[i]];
        let caller_pod = &c.caller.pods[c.caller_pod];
        let mk_tags = |cluster: String, node: &str| {
            let mut t = BTreeMap::new();
            t.insert("component".to_string(), "proxy".to_string());
            t.insert("node_id".to_string(), node.to_string());
            t.insert("istio.mesh_id".to_string(), "cluster.local".to_string());
            t.insert("http.method".to_string(), method.to_string());
            t.insert("http.url".to_string(), url.clone());
            t.insert("http.protocol".to_string(), "HTTP/1.1".to_string());
            t.insert("http.status_code".to_string(), status.to_string());
            t.insert("upstream_cluster".to_string(), cluster);
            t.insert("user_agent".to_string(), ua.to_string());
            t.insert("response_flags".to_string(), flags.to_string());
            if is_err {
                t.insert("error".to_string(), "true".to_string());
            }
            t
        };
        let server_skew = 100 + rng.below(400);
        out.push(Span {
            trace_id,
            id: ids[2 * i],
            parent_id: client_parent,
            name: Some(name.clone()),
            kind: Some(SpanKind::Client),
            timestamp: Some(c.start),
            duration: Some(c.dur),
            local_endpoint: Some(Endpoint {
                service_name: Some(c.caller.name.clone()),
                ipv4: Some(caller_pod.0.clone()),
                ipv6: None,
                port: None,
            }),
            remote_endpoint: Some(Endpoint {
                service_name: Some(c.callee.name.clone()),
                ipv4: Some(callee_pod.0.clone()),
                ipv6: None,
                port: Some(c.callee.port),
            }),
            annotations: Vec::new(),
            tags: mk_tags(
                format!("outbound|{}||{}", c.callee.port, c.callee.host),
                &caller_pod.1,
            ),
            debug: false,
            shared: false,
        });
        out.push(Span {
            trace_id,
            id: ids[2 * i + 1],
            parent_id: Some(ids[2 * i]),
            name: Some(name),
            kind: Some(SpanKind::Server),
            timestamp: Some(c.start + server_skew),
            duration: Some(c.dur.saturating_sub(2 * server_skew).max(50)),
            local_endpoint: Some(Endpoint {
                service_name: Some(c.callee.name.clone()),
                ipv4: Some(callee_pod.0.clone()),
                ipv6: None,
                port: None,
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags: mk_tags(format!("inbound|{}||", c.callee.port), &callee_pod.1),
            debug: false,
            shared: false,
        });
    }
    if egress {
        let c = &calls[calls.len() - 1];
        let mut tags = BTreeMap::new();
        tags.insert("component".to_string(), "proxy".to_string());
        tags.insert("http.method".to_string(), "POST".to_string());
        tags.insert(
            "http.url".to_string(),
            "https://api.stripe.com/v1/charges".to_string(),
        );
        tags.insert("http.status_code".to_string(), "200".to_string());
        tags.insert("istio.mesh_id".to_string(), "cluster.local".to_string());
        tags.insert(
            "node_id".to_string(),
            c.callee.pods[pods[calls.len() - 1]].1.clone(),
        );
        tags.insert("response_flags".to_string(), "-".to_string());
        tags.insert(
            "upstream_cluster".to_string(),
            "outbound|443||api.stripe.com".to_string(),
        );
        out.push(Span {
            trace_id,
            id: rng.next_u64(),
            parent_id: Some(ids[2 * (calls.len() - 1) + 1]),
            name: Some("api.stripe.com:443/*".to_string()),
            kind: Some(SpanKind::Client),
            timestamp: Some(c.start + 1000),
            duration: Some(c.dur / 3 + 1),
            local_endpoint: Some(Endpoint {
                service_name: Some(c.callee.name.clone()),
                ipv4: Some(c.callee.pods[pods[calls.len() - 1]].0.clone()),
                ipv6: None,
                port: None,
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags,
            debug: false,
            shared: false,
        });
    }
}

fn path_glob(path: &str) -> String {
    if path.starts_with("/hipstershop") {
        path.to_string()
    } else {
        "/*".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_istio_traces_look_right() {
        let now = 1_700_000_000_000_000u64;
        let spans = generate_spans_at(200, 7, now - 1_000_000, now);
        let mut per_trace: BTreeMap<TraceId, usize> = BTreeMap::new();
        for s in &spans {
            *per_trace.entry(s.trace_id).or_default() += 1;
            assert!(s.tags.len() >= 7);
        }
        assert_eq!(per_trace.len(), 200);
        assert!(
            per_trace.values().all(|&n| (3..=8).contains(&n)),
            "{per_trace:?}"
        );
        assert!(spans.iter().any(|s| s.tags.contains_key("error")));
        assert_eq!(spans, generate_spans_at(200, 7, now - 1_000_000, now));
    }
}
