//! The analyses give the same answers on both storage backends: one server on the embedded
//! engines, one on a 2-shard ClickHouse cluster, fed the same Istio metrics (`meshlens bench
//! istio-mesh`, run once against each) and the same Zipkin spans, then asked for the service
//! graph (every type; from metrics, traces and both), the traffic statistics (with and
//! without filters) and the Zipkin dependency links over one fixed window. Answers are
//! compared as JSON, numbers to 1e-9 relative, and must be non-trivial, so two empty answers
//! cannot pass.
//!
//! What each backend reads: a metrics graph over the last hour comes from the per-edge
//! aggregates each server keeps at ingest (the same code on both); the 26-hour window is
//! beyond the aggregates' 24 h retention, so it goes through PromQL over the stored series,
//! which on ClickHouse means the cluster. Trace graphs pair spans scanned from the embedded
//! store, and on ClickHouse are paired on the shards (`aggregate_calls`); statistics are
//! a projection scan on the embedded store and SQL aggregations on the shards; dependencies
//! are the embedded linker against ClickHouse joins, equal link for link (a server span
//! under a span without kind included: both name the nearest ancestor with a kind).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{get_json, httpc, poll, Server, BIN};
use meshlens_clickhouse::testing::TestCluster;
use serde_json::{json, Value};

/// Istio series carry 31 labels, over the server's default limit of 30.
const LABEL_LIMIT: [&str; 2] = ["--limits.max-label-names-per-series", "64"];

/// Readiness limits: generous, for a loaded machine and a cluster behind a write buffer.
const READY: Duration = Duration::from_secs(120);

/// Starts `meshlens bench istio-mesh` against `server`: six services, an hour of samples.
fn istio_mesh(server: &Server) -> std::process::Child {
    Command::new(BIN)
        .args(["bench", "istio-mesh", "--url"])
        .arg(server.url("/api/v1/write"))
        .args(["--services", "6", "--samples-per-series", "63"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start meshlens bench istio-mesh")
}

/// Waits for a generator run; returns (end in Unix seconds, samples sent).
fn generator_result(child: std::process::Child) -> (i64, u64) {
    let out = child.wait_with_output().expect("wait for istio-mesh");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "istio-mesh failed: {text}");
    let field = |name: &str| -> i64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in: {text}"))
    };
    (field("end_s="), field("sent_samples=") as u64)
}

/// The Zipkin spans both servers get: traces through a small shop, ending just before
/// `end_s`, with every shape the analyses tell apart. Client/server pairs (some sharing one
/// span id), root server spans (calls from outside), calls nobody answered, kind-less spans
/// with HTTP tags calling an uninstrumented-client callee, spans without a duration or a
/// service, gRPC, 5xx and error tags; the cluster in each of the tags that name one, or in
/// none; URLs in each URL tag, with hosts and query strings; three user agents. Plus spans
/// on the window's edges and before it.
fn spans(end_s: i64) -> Vec<Value> {
    let end_us = end_s * 1_000_000;
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64)",
        "curl/8.5.0",
        "okhttp/4.12.0",
    ];
    // The cluster of side `i`: in Istio's tag, OTel's, or none (`unknown`).
    let cluster = |i: i64, tags: &mut serde_json::Map<String, Value>| {
        let (key, value) = match i % 4 {
            0 => ("istio.cluster_id", "east"),
            1 => ("istio.cluster_id", "west"),
            2 => ("k8s.cluster.name", "west"),
            _ => return,
        };
        tags.insert(key.into(), value.into());
    };
    let tid = |t: i64| {
        if t % 4 == 0 {
            format!(
                "{:016x}{:016x}",
                0xa11a_0000u64 + t as u64,
                0x5eed_0000u64 + t as u64
            )
        } else {
            format!("{:016x}", 0x7ace_0000_0000u64 + t as u64)
        }
    };
    let id = |t: i64, k: u64| format!("{:016x}", (t as u64) << 8 | k);
    let span = |t: i64,
                k: u64,
                parent: Option<u64>,
                kind: Option<&str>,
                service: Option<&str>,
                name: &str,
                ts: i64,
                dur: Option<i64>,
                tags: serde_json::Map<String, Value>| {
        let mut s =
            json!({"traceId": tid(t), "id": id(t, k), "name": name, "timestamp": ts, "tags": tags});
        if let Some(p) = parent {
            s["parentId"] = id(t, p).into();
        }
        if let Some(kind) = kind {
            s["kind"] = kind.into();
        }
        if let Some(svc) = service {
            s["localEndpoint"] = json!({"serviceName": svc});
        }
        if let Some(d) = dur {
            s["duration"] = d.into();
        }
        s
    };
    let mut out = Vec::new();
    for t in 0..48i64 {
        let ts = end_us - 50_000_000 - t * 60_000_000;
        let failed = t % 11 == 0;
        // The root: a call from outside the mesh into the frontend.
        let mut tags = serde_json::Map::new();
        tags.insert("http.method".into(), "GET".into());
        tags.insert(
            "http.url".into(),
            format!("https://shop.example.com/home?page={}", t % 3).into(),
        );
        tags.insert(
            "http.status_code".into(),
            (if failed { "500" } else { "200" }).into(),
        );
        tags.insert("http.user_agent".into(), agents[(t % 3) as usize].into());
        cluster(t, &mut tags);
        out.push(span(
            t,
            1,
            None,
            Some("SERVER"),
            Some("frontend.shop"),
            "get /home",
            ts,
            Some(20_000 + t * 137),
            tags,
        ));
        // frontend -> cart: a client span and its server span (or one shared span id).
        let code = if t % 7 == 3 { "503" } else { "200" };
        let mut tags = serde_json::Map::new();
        tags.insert("http.path".into(), "/cart".into());
        tags.insert("http.status_code".into(), code.into());
        cluster(t, &mut tags);
        let mut client = span(
            t,
            2,
            Some(1),
            Some("CLIENT"),
            Some("frontend.shop"),
            "get /cart",
            ts + 1_000,
            Some(9_000 + t * 53),
            tags,
        );
        client["remoteEndpoint"] = json!({"serviceName": "cart.shop"});
        out.push(client);
        let mut tags = serde_json::Map::new();
        if t % 2 == 0 {
            tags.insert("http.target".into(), format!("/cart/items?id={t}").into());
            tags.insert(
                "user_agent.original".into(),
                agents[((t + 1) % 3) as usize].into(),
            );
        } else {
            tags.insert("url.path".into(), "/cart".into());
        }
        let status_key = if t % 5 == 1 {
            "http.response.status_code"
        } else {
            "http.status_code"
        };
        tags.insert(status_key.into(), code.into());
        // The callee's side may sit in another cluster: a cross-cluster call.
        cluster(t + 1, &mut tags);
        let shared = t % 6 == 5;
        let (server_k, server_parent) = if shared { (2, Some(1)) } else { (3, Some(2)) };
        let mut server = span(
            t,
            server_k,
            server_parent,
            Some("SERVER"),
            Some("cart.shop"),
            "get /cart",
            ts + 1_500,
            (t % 9 != 4).then_some(8_000 + t * 41),
            tags,
        );
        if shared {
            server["shared"] = true.into();
        }
        out.push(server);
        // cart -> payment, which sends no span: a call known from the caller alone.
        if t % 3 == 0 {
            let mut tags = serde_json::Map::new();
            tags.insert("http.url".into(), "http://payment/charge".into());
            if t % 9 == 0 {
                tags.insert("error".into(), "timeout".into());
            } else {
                tags.insert("http.status_code".into(), "200".into());
            }
            cluster(t + 1, &mut tags);
            let mut leaf = span(
                t,
                4,
                Some(server_k),
                Some("CLIENT"),
                Some("cart.shop"),
                "post /charge",
                ts + 2_000,
                Some(3_000 + t * 7),
                tags,
            );
            leaf["remoteEndpoint"] = json!({"serviceName": "payment.shop"});
            out.push(leaf);
        }
        // A kind-less span with HTTP tags (a request to the statistics) in `search`, whose
        // callee `catalog` answers with a server span: an uninstrumented client library.
        if t % 4 == 1 {
            let mut tags = serde_json::Map::new();
            tags.insert("http.route".into(), "/search".into());
            tags.insert("http.status_code".into(), "200".into());
            tags.insert("user_agent".into(), agents[2].into());
            cluster(t, &mut tags);
            out.push(span(
                t,
                5,
                Some(1),
                None,
                Some("search"),
                "search",
                ts + 2_500,
                Some(4_000 + t * 11),
                tags,
            ));
            let mut tags = serde_json::Map::new();
            tags.insert("http.url".into(), "/catalog/items".into());
            if t % 8 == 1 {
                tags.insert("rpc.system".into(), "grpc".into());
                tags.insert("grpc.status_code".into(), "0".into());
            } else {
                tags.insert("http.status_code".into(), "200".into());
            }
            cluster(t + 2, &mut tags);
            out.push(span(
                t,
                6,
                Some(5),
                Some("SERVER"),
                Some("catalog.shop"),
                "list items",
                ts + 2_700,
                Some(2_000 + t * 13),
                tags,
            ));
        }
        // A server span without a service: `unknown` to the statistics.
        if t % 10 == 7 {
            let mut tags = serde_json::Map::new();
            tags.insert("http.path".into(), "/anon".into());
            tags.insert("http.status_code".into(), "404".into());
            out.push(span(
                t,
                7,
                Some(1),
                Some("SERVER"),
                None,
                "get /anon",
                ts + 3_000,
                Some(1_000),
                tags,
            ));
        }
    }
    // On the edges of the hour before `end_s`, and before it.
    let edge = |t: i64, ts: i64, service: &str| {
        let mut tags = serde_json::Map::new();
        tags.insert("http.path".into(), "/edge".into());
        tags.insert("http.status_code".into(), "200".into());
        span(
            t,
            1,
            None,
            Some("SERVER"),
            Some(service),
            "get /edge",
            ts,
            Some(5_000),
            tags,
        )
    };
    // At the end: inside the window (end inclusive).
    out.push(edge(100, end_us, "frontend.shop"));
    // At the start: outside the graph's and statistics' (start, end], inside the Zipkin
    // dependencies' [start, end].
    out.push(edge(101, end_us - 3_600_000_000, "frontend.shop"));
    // A trace reaching into the window: its client before the start, its server after.
    let mut client = edge(102, end_us - 3_605_000_000, "mobile-bff.edge");
    client["kind"] = "CLIENT".into();
    client["remoteEndpoint"] = json!({"serviceName": "frontend.shop"});
    out.push(client);
    let mut server = edge(102, end_us - 3_595_000_000, "frontend.shop");
    server["id"] = id(102, 2).into();
    server["parentId"] = id(102, 1).into();
    out.push(server);
    // Two hours before the end: outside every window.
    let mut old = edge(103, end_us - 7_200_000_000, "cart.shop");
    old["kind"] = "CLIENT".into();
    old["remoteEndpoint"] = json!({"serviceName": "payment.shop"});
    out.push(old);
    out
}

/// `a` and `b` equal as JSON, numbers to 1e-9 relative; the first difference, by path.
fn diff(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            ((x - y).abs() > 1e-9 * x.abs().max(y.abs())).then(|| format!("{path}: {x} vs {y}"))
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{path}: {} items vs {}", x.len(), y.len()));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (x, y))| diff(x, y, &format!("{path}[{i}]")))
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(x), Some(y)) => diff(x, y, &format!("{path}.{k}")),
                (x, y) => Some(format!("{path}.{k}: {x:?} vs {y:?}")),
            })
        }
        _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
    }
}

/// A graph with its nodes sorted by id and edges by (source, target, protocol), so the
/// comparison does not depend on the order either side lists them in.
fn sorted_graph(mut g: Value) -> Value {
    let key = |v: &Value, fields: &[&str]| -> Vec<String> {
        fields.iter().map(|f| v[*f].to_string()).collect()
    };
    if let Some(nodes) = g["nodes"].as_array_mut() {
        nodes.sort_by_key(|n| key(n, &["id"]));
    }
    if let Some(edges) = g["edges"].as_array_mut() {
        edges.sort_by_key(|e| key(e, &["source", "target", "protocol"]));
    }
    g
}

/// GETs `path` from both servers and asserts the answers (after `norm`) equal; returns the
/// embedded server's.
fn same(embedded: &Server, ch: &Server, path: &str, norm: fn(Value) -> Value) -> Value {
    let a = norm(get_json(&embedded.url(path)));
    let b = norm(get_json(&ch.url(path)));
    if let Some(d) = diff(&a, &b, "$") {
        panic!("GET {path}: the embedded engines and ClickHouse differ at {d}\nembedded: {a}\nclickhouse: {b}");
    }
    a
}

/// Edges with a positive figure `field`.
fn busy_edges(g: &Value, field: &str) -> usize {
    g["edges"].as_array().map_or(0, |es| {
        es.iter().filter(|e| e[field].as_f64() > Some(0.0)).count()
    })
}

fn nodes(g: &Value) -> usize {
    g["nodes"].as_array().map_or(0, Vec::len)
}

/// The samples of every Istio series a server holds, summed through PromQL at `at_s`.
fn istio_samples(server: &Server, at_s: i64) -> Option<u64> {
    // One sum per name: `count_over_time` drops the name, so the names cannot share one.
    let q = [
        "istio_requests_total",
        "istio_request_duration_milliseconds_bucket",
        "istio_request_duration_milliseconds_sum",
        "istio_request_duration_milliseconds_count",
    ]
    .map(|m| format!("sum(count_over_time({m}[3h]))"))
    .join(" + ");
    let v = server.query(&q, Some(at_s as f64));
    if v["status"] != "success" {
        eprintln!("{v}");
    }
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .map(|f| f as u64)
}

/// Spans a server holds in the day before `end_s` + 1 h, by its statistics.
fn stored_spans(server: &Server, end_s: i64) -> Option<u64> {
    let r =
        httpc::get(&server.url(&format!("/api/v1/stats?window=1d&end={}", end_s + 3600))).ok()?;
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    v["totals"]["spans"].as_u64()
}

/// Polls `seen` until it answers `want`, at most [`READY`]; fails with the last answer.
fn wait_for(server: &str, what: &str, want: u64, mut seen: impl FnMut() -> Option<u64>) {
    let start = std::time::Instant::now();
    loop {
        let last = seen();
        if last == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < READY,
            "{server}: {what}: {last:?} after {READY:?}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn graph_stats_and_dependencies_agree_on_embedded_and_clickhouse() {
    let cluster = match TestCluster::start() {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => panic!("the ClickHouse test cluster did not start: {e}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let embedded = Server::start(&dir.path().join("embedded"), &LABEL_LIMIT);
    let storage = cluster.storage_url(0, "analysis_backends");
    let mut args = vec!["--storage", storage.as_str()];
    args.extend(LABEL_LIMIT);
    let ch = Server::start(&dir.path().join("clickhouse"), &args);

    // Each server's graph aggregates rebuild from (empty) storage at start; until they are
    // ready the live feed leaves older samples to that rebuild. Wait, so both take all.
    for s in [&embedded, &ch] {
        poll(READY, || {
            let g = get_json(&s.url("/api/v1/graph?window=5m"));
            (g["computedFrom"] == "aggregates").then_some(())
        });
    }

    // The generator's samples end at the current minute: run both within one minute, so
    // both servers get the same timestamps (the seed fixes the values).
    let into_minute = common::now_ms() % 60_000;
    if into_minute > 40_000 {
        std::thread::sleep(Duration::from_millis((61_000 - into_minute) as u64));
    }
    let runs = [istio_mesh(&embedded), istio_mesh(&ch)];
    let [(end_s, sent), (end_ch, sent_ch)] = runs.map(generator_result);
    assert_eq!(
        (end_s, sent),
        (end_ch, sent_ch),
        "both generator runs must cover the same minutes"
    );
    assert!(sent > 0);

    let posted = spans(end_s);
    let body = Value::Array(posted.clone()).to_string();
    for s in [&embedded, &ch] {
        let mut conn = httpc::Conn::open(&s.addr).unwrap();
        let r = conn
            .request(
                "POST",
                "/api/v2/spans",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .unwrap();
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    }

    // Both hold everything: every sample sent, every span posted.
    for (name, s) in [("embedded", &embedded), ("clickhouse", &ch)] {
        wait_for(name, "Istio samples", sent, || istio_samples(s, end_s));
        wait_for(name, "spans", posted.len() as u64, || {
            stored_spans(s, end_s)
        });
    }

    let hour = format!("window=1h&end={end_s}");
    // Metrics graphs: from each server's aggregates over the hour; through PromQL over the
    // stored series (the ClickHouse reader on the cluster) over 26 hours.
    for gt in ["workload", "app", "versionedApp", "service"] {
        let g = same(
            &embedded,
            &ch,
            &format!("/api/v1/graph?type={gt}&{hour}"),
            sorted_graph,
        );
        assert_eq!(g["computedFrom"], "aggregates", "{g}");
        assert!(nodes(&g) >= 6, "{gt}: {g}");
        assert!(busy_edges(&g, "requestRate") >= 6, "{gt}: {g}");
        let g = same(
            &embedded,
            &ch,
            &format!("/api/v1/graph?type={gt}&window=26h&end={end_s}"),
            sorted_graph,
        );
        assert_eq!(g["computedFrom"], "promql", "{g}");
        assert!(busy_edges(&g, "requestRate") >= 6, "{gt}: {g}");
    }
    for filter in ["namespace=ns-0", "focus=svc-1-v1", "cluster=Kubernetes"] {
        let g = same(
            &embedded,
            &ch,
            &format!("/api/v1/graph?{filter}&window=26h&end={end_s}"),
            sorted_graph,
        );
        assert!(busy_edges(&g, "requests") >= 1, "{filter}: {g}");
    }

    // Trace graphs, and metrics with traces for the edges Istio does not report.
    for gt in ["workload", "app", "versionedApp", "service"] {
        let g = same(
            &embedded,
            &ch,
            &format!("/api/v1/graph?type={gt}&source=traces&{hour}"),
            sorted_graph,
        );
        assert!(nodes(&g) >= 5, "{gt}: {g}");
        assert!(busy_edges(&g, "requests") >= 5, "{gt}: {g}");
        let g = same(
            &embedded,
            &ch,
            &format!("/api/v1/graph?type={gt}&source=both&{hour}"),
            sorted_graph,
        );
        let from_traces = g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["sources"] == json!(["traces"]))
            .count();
        assert!(busy_edges(&g, "requestRate") >= 11, "{gt}: {g}");
        assert!(from_traces >= 5, "{gt}: {g}");
    }
    for filter in ["cluster=east", "cluster=unknown", "focus=cart"] {
        let g = same(
            &embedded,
            &ch,
            &format!("/api/v1/graph?source=traces&{filter}&{hour}"),
            sorted_graph,
        );
        assert!(busy_edges(&g, "requests") >= 1, "{filter}: {g}");
    }

    // Statistics: the whole hour, and by cluster, service, both.
    for filter in [
        "",
        "&cluster=east",
        "&cluster=west",
        "&cluster=unknown",
        "&service=cart.shop",
        "&service=search",
        "&service=unknown",
        "&cluster=west&service=frontend.shop",
    ] {
        let v = same(
            &embedded,
            &ch,
            &format!("/api/v1/stats?{hour}{filter}"),
            |v| v,
        );
        assert!(v["totals"]["requests"].as_u64() > Some(0), "{filter}: {v}");
        assert!(v["totals"]["traces"].as_u64() > Some(0), "{filter}: {v}");
        if filter.is_empty() {
            assert!(v["per_service"].as_array().unwrap().len() >= 4, "{v}");
            assert!(v["per_cluster"].as_array().unwrap().len() >= 3, "{v}");
            assert!(v["user_agents"].as_array().unwrap().len() >= 3, "{v}");
            assert!(v["response_times"].as_array().unwrap().len() >= 4, "{v}");
        }
    }
    // A filter nothing matches: empty on both, alike.
    same(
        &embedded,
        &ch,
        &format!("/api/v1/stats?{hour}&service=nobody"),
        |v| v,
    );

    // Zipkin dependency links over the same hour (milliseconds), and a lookback that
    // stops short of the earliest traces.
    for lookback in [3_600_000, 600_000] {
        let path = format!(
            "/api/v2/dependencies?endTs={}&lookback={lookback}",
            end_s * 1000
        );
        let a = sorted_links(get_json(&embedded.url(&path)));
        let b = sorted_links(get_json(&ch.url(&path)));
        if let Some(d) = diff(&a, &b, "$") {
            panic!("GET {path}: the embedded engines and ClickHouse differ at {d}\nembedded: {a}\nclickhouse: {b}");
        }
        let links = a.as_array().unwrap();
        assert!(links.len() >= 3, "{a}");
        assert!(
            links.iter().all(|l| l["callCount"].as_u64() > Some(0)),
            "{a}"
        );
    }
}

/// Dependency links sorted by (parent, child).
fn sorted_links(mut v: Value) -> Value {
    if let Some(links) = v.as_array_mut() {
        links.sort_by_key(|l| (l["parent"].to_string(), l["child"].to_string()));
    }
    v
}
