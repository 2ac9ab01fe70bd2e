//! The agent against a real hub, in process: what it acknowledges arrives at the hub with the
//! cluster stamped; garbage is refused and never forwarded; a full buffer answers 503 on
//! every ingest path; data written while the hub is down arrives once it is up; scraped
//! series are forwarded too.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshlens_ingest::remote_write::{self, WriteRequest};
use meshlens_model::{Labels, Sample, Span, TimeSeries, TraceId};
use meshlens_server::agent::{AgentOptions, RunningAgent};
use meshlens_server::{RunningServer, ServerOptions};
use serde_json::Value;

const LOCAL: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

async fn start_hub(dir: &Path, listen: SocketAddr) -> RunningServer {
    meshlens_server::start(ServerOptions {
        listen,
        data_dir: dir.to_path_buf(),
        ..Default::default()
    })
    .await
    .expect("hub starts")
}

fn agent_options(dir: &Path, hub: &str) -> AgentOptions {
    let mut o = AgentOptions {
        cluster: "east".into(),
        hubs: vec![hub.to_string()],
        listen: SocketAddr::from(LOCAL),
        data_dir: dir.to_path_buf(),
        drain_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    o.send.max_backoff = Duration::from_millis(500);
    o
}

async fn start_agent(o: AgentOptions) -> RunningAgent {
    meshlens_server::agent::start(o)
        .await
        .expect("agent starts")
}

/// One HTTP/1.1 request; returns status, headers and body.
async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client
        .request(b.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

async fn get(url: &str) -> (u16, Bytes) {
    let (s, _, b) = request("GET", url, &[], Vec::new()).await;
    (s, b)
}

fn series(pairs: &[(&str, &str)], v: f64) -> TimeSeries {
    TimeSeries {
        labels: Labels::from_pairs(pairs.iter().copied()),
        samples: vec![Sample::new(meshlens_model::time::now_ms(), v)],
    }
}

async fn remote_write(agent: SocketAddr, ts: Vec<TimeSeries>) -> (u16, String) {
    let body = remote_write::encode(&WriteRequest {
        timeseries: ts,
        ..Default::default()
    });
    let (s, _, b) = request(
        "POST",
        &format!("http://{agent}/api/v1/write"),
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "snappy"),
        ],
        body,
    )
    .await;
    (s, String::from_utf8_lossy(&b).into_owned())
}

/// The hub's instant-query result for `q`.
async fn query(hub: SocketAddr, q: &str) -> Vec<Value> {
    let q: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let (s, b) = get(&format!("http://{hub}/api/v1/query?query={q}")).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Polls `f` until it yields Some, for up to 30 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The metric's labels once the hub has exactly one series for `q`.
async fn one_series(hub: SocketAddr, q: &str) -> serde_json::Map<String, Value> {
    eventually(q, || async {
        let r = query(hub, q).await;
        (r.len() == 1).then(|| r[0]["metric"].as_object().cloned().unwrap())
    })
    .await
}

/// The hub's spans of one trace, once it has `n` of them.
async fn trace(hub: SocketAddr, id: &str, n: usize) -> Vec<Value> {
    eventually(&format!("trace {id}"), || async {
        let (s, b) = get(&format!("http://{hub}/api/v2/trace/{id}")).await;
        if s != 200 {
            return None;
        }
        let v: Value = serde_json::from_slice(&b).ok()?;
        let spans = v.as_array()?.clone();
        (spans.len() >= n).then_some(spans)
    })
    .await
}

fn zipkin_json(trace_id: &str, span_id: &str, tags: &str) -> Vec<u8> {
    let now_us = meshlens_model::time::now_ms() * 1000;
    format!(
        r#"[{{"traceId":"{trace_id}","id":"{span_id}","name":"get /","kind":"SERVER","timestamp":{now_us},"duration":1500,"localEndpoint":{{"serviceName":"frontend"}},"tags":{{{tags}}}}}]"#
    )
    .into_bytes()
}

fn model_span(trace_low: u64, id: u64, tags: &[(&str, &str)]) -> Span {
    Span {
        trace_id: TraceId {
            high: 1,
            low: trace_low,
            is_128: true,
        },
        id,
        parent_id: None,
        name: Some("get /checkout".into()),
        kind: Some(meshlens_model::SpanKind::Server),
        timestamp: Some((meshlens_model::time::now_ms() * 1000) as u64),
        duration: Some(2000),
        local_endpoint: Some(meshlens_model::Endpoint {
            service_name: Some("checkout".into()),
            ..Default::default()
        }),
        remote_endpoint: None,
        annotations: Vec::new(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        debug: false,
        shared: false,
    }
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["tags"][key].as_str()
}

/// One OTLP/gRPC Export call; returns the grpc-status.
async fn grpc_export(addr: SocketAddr, message: &[u8]) -> u32 {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    let req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{addr}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(framed)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status_of = |h: &http::HeaderMap| {
        h.get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
    };
    if let Some(s) = status_of(resp.headers()) {
        return s;
    }
    let collected = resp.into_body().collect().await.unwrap();
    collected
        .trailers()
        .and_then(status_of)
        .expect("a grpc-status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_write_arrives_with_the_cluster_label() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start_hub(&tmp.path().join("hub"), SocketAddr::from(LOCAL)).await;
    let hub_url = format!("http://{}", hub.addr());
    let agent = start_agent(agent_options(&tmp.path().join("agent"), &hub_url)).await;

    let (s, msg) = remote_write(
        agent.addr(),
        vec![
            series(&[("__name__", "rw_plain"), ("job", "app")], 1.0),
            series(&[("__name__", "rw_labelled"), ("cluster", "x")], 2.0),
        ],
    )
    .await;
    assert_eq!(s, 204, "{msg}");

    let plain = one_series(hub.addr(), "rw_plain").await;
    assert_eq!(plain["cluster"], "east");
    assert_eq!(plain["job"], "app");
    let labelled = one_series(hub.addr(), "rw_labelled").await;
    assert_eq!(labelled["cluster"], "x");

    // The agent's own metrics count the request and show the forwarder's.
    let (s, body) = get(&format!("http://{}/metrics", agent.addr())).await;
    assert_eq!(s, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(r#"meshlens_agent_requests_total{path="/api/v1/write",code="204"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("meshlens_agent_info{cluster=\"east\""),
        "{text}"
    );
    assert!(text.contains("meshlens_forward_lag_seconds"), "{text}");
    let (s, _) = get(&format!("http://{}/-/ready", agent.addr())).await;
    assert_eq!(s, 200);
    let (s, _) = get(&format!("http://{}/-/healthy", agent.addr())).await;
    assert_eq!(s, 200);

    agent.shutdown().await;
    hub.shutdown().await;
}

/// A native histogram of 4 observations summing to 6.5 at `t`, or (`consistent` false) one
/// whose spans cover a bucket it does not send, which a hub would refuse.
fn native_histogram(t: i64, consistent: bool) -> meshlens_model::HistogramSample {
    use meshlens_model::{BucketSpan, FloatHistogram};
    let mut h = FloatHistogram {
        schema: 0,
        count: 4.0,
        sum: 6.5,
        zero_threshold: 0.001,
        zero_count: 1.0,
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_buckets: vec![1.0, 2.0],
        ..Default::default()
    };
    if !consistent {
        h.positive_buckets.pop();
    }
    meshlens_model::HistogramSample {
        t,
        h: std::sync::Arc::new(h),
    }
}

/// Native histograms written to the agent in remote write 1.0 and 2.0 arrive at hubs sent
/// 1.0 and 2.0, with the cluster stamped; one a hub would refuse is refused by the agent,
/// named in its answer, and the rest of the request is buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_written_native_histograms_arrive_with_the_cluster_label() {
    use meshlens_ingest::remote_write::v2;
    use meshlens_model::SeriesHistograms;
    for forward_as in [
        meshlens_forward::ProtobufMessage::V1,
        meshlens_forward::ProtobufMessage::V2,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let hub = start_hub(&tmp.path().join("hub"), SocketAddr::from(LOCAL)).await;
        let mut o = agent_options(&tmp.path().join("agent"), &format!("http://{}", hub.addr()));
        o.send.protobuf_message = forward_as;
        let agent = start_agent(o).await;
        let now = meshlens_model::time::now_ms();
        let url = format!("http://{}/api/v1/write", agent.addr());
        for (name, v2) in [("rw1_latency", false), ("rw2_latency", true)] {
            let req = WriteRequest {
                timeseries: vec![series(&[("__name__", "rw_up")], 1.0)],
                histograms: vec![
                    SeriesHistograms {
                        labels: Labels::from_pairs([("__name__", name), ("job", "app")]),
                        samples: vec![native_histogram(now, true)],
                    },
                    SeriesHistograms {
                        labels: Labels::from_pairs([("__name__", "refused_latency")]),
                        samples: vec![native_histogram(now, false)],
                    },
                ],
                ..Default::default()
            };
            let (body, content_type) = if v2 {
                (
                    v2::encode(&req),
                    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                )
            } else {
                (remote_write::encode(&req), "application/x-protobuf")
            };
            let (s, headers, b) = request(
                "POST",
                &url,
                &[
                    ("content-type", content_type),
                    ("content-encoding", "snappy"),
                ],
                body,
            )
            .await;
            let msg = String::from_utf8_lossy(&b);
            assert_eq!(s, 400, "{forward_as:?} {name}: {msg}");
            assert!(
                msg.contains("1 native histogram samples refused")
                    && msg.contains("positive spans cover 2 buckets"),
                "{msg}"
            );
            let header = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_string();
            assert_eq!(header("x-prometheus-remote-write-histograms-written"), "1");
            assert_eq!(header("x-prometheus-remote-write-samples-written"), "1");

            let q = format!("histogram_count({name})");
            let r = eventually(&q, || async {
                let r = query(hub.addr(), &q).await;
                (r.len() == 1).then_some(r)
            })
            .await;
            assert_eq!(r[0]["value"][1], "4", "{forward_as:?} {q}");
            let r = query(hub.addr(), &format!("histogram_sum({name})")).await;
            assert_eq!(r[0]["value"][1], "6.5");
            let m = one_series(hub.addr(), name).await;
            assert_eq!(m["cluster"], "east", "{forward_as:?} {name}");
            assert_eq!(m["job"], "app");
        }
        assert!(query(hub.addr(), "refused_latency").await.is_empty());
        agent.shutdown().await;
        hub.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spans_arrive_with_the_cluster_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start_hub(&tmp.path().join("hub"), SocketAddr::from(LOCAL)).await;
    let hub_url = format!("http://{}", hub.addr());
    let mut o = agent_options(&tmp.path().join("agent"), &hub_url);
    o.otlp_grpc_listen = Some(SocketAddr::from(LOCAL));
    let agent = start_agent(o).await;
    let base = format!("http://{}", agent.addr());

    // Zipkin JSON: tag `cluster`; a span that names its cluster keeps it.
    let json = ("content-type", "application/json");
    let (s, _, b) = request(
        "POST",
        &format!("{base}/api/v2/spans"),
        &[json],
        zipkin_json("00000000000000a1", "00000000000000b1", ""),
    )
    .await;
    assert_eq!(s, 202, "{}", String::from_utf8_lossy(&b));
    let (s, _, _) = request(
        "POST",
        &format!("{base}/api/v2/spans"),
        &[json],
        zipkin_json(
            "00000000000000a2",
            "00000000000000b2",
            r#""istio.cluster_id":"west""#,
        ),
    )
    .await;
    assert_eq!(s, 202);
    let zipkin = trace(hub.addr(), "00000000000000a1", 1).await;
    // OTLP carries 16-byte ids; a 64-bit Zipkin id must still be one at the hub.
    assert_eq!(zipkin[0]["traceId"], "00000000000000a1");
    assert_eq!(tag(&zipkin[0], "cluster"), Some("east"), "{zipkin:?}");
    assert_eq!(tag(&zipkin[0], "k8s.cluster.name"), None);
    let kept = trace(hub.addr(), "00000000000000a2", 1).await;
    assert_eq!(tag(&kept[0], "istio.cluster_id"), Some("west"));
    assert_eq!(tag(&kept[0], "cluster"), None, "{kept:?}");

    // OTLP protobuf over HTTP: `k8s.cluster.name`.
    let body = meshlens_ingest::otlp::encode_request(&[model_span(0xc1, 0xd1, &[])]);
    let (s, _, b) = request(
        "POST",
        &format!("{base}/v1/traces"),
        &[("content-type", "application/x-protobuf")],
        body,
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let otlp = trace(hub.addr(), "000000000000000100000000000000c1", 1).await;
    assert_eq!(tag(&otlp[0], "k8s.cluster.name"), Some("east"), "{otlp:?}");
    assert_eq!(tag(&otlp[0], "cluster"), None);

    // OTLP/gRPC: the same, and an existing cluster attribute stays.
    let grpc = agent.otlp_grpc_addr().expect("grpc listener");
    let msg = meshlens_ingest::otlp::encode_request(&[
        model_span(0xc2, 0xd2, &[]),
        model_span(0xc2, 0xd3, &[("k8s.cluster.name", "edge")]),
    ]);
    assert_eq!(grpc_export(grpc, &msg).await, 0);
    let spans = trace(hub.addr(), "000000000000000100000000000000c2", 2).await;
    let mut clusters: Vec<&str> = spans
        .iter()
        .filter_map(|s| tag(s, "k8s.cluster.name"))
        .collect();
    clusters.sort();
    assert_eq!(clusters, ["east", "edge"], "{spans:?}");

    agent.shutdown().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_is_refused_and_not_forwarded() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start_hub(&tmp.path().join("hub"), SocketAddr::from(LOCAL)).await;
    let hub_url = format!("http://{}", hub.addr());
    let agent = start_agent(agent_options(&tmp.path().join("agent"), &hub_url)).await;
    let base = format!("http://{}", agent.addr());

    let (s, _, b) = request(
        "POST",
        &format!("{base}/api/v1/write"),
        &[("content-encoding", "snappy")],
        b"this is not snappy".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        String::from_utf8_lossy(&b).contains("snappy"),
        "the decoder's message: {b:?}"
    );
    // A valid snappy body holding an invalid label name.
    let (s, msg) = remote_write(
        agent.addr(),
        vec![series(&[("__name__", "bad"), ("0label", "x")], 1.0)],
    )
    .await;
    assert_eq!(s, 400);
    assert!(msg.contains("label"), "{msg}");
    let (s, _, _) = request(
        "POST",
        &format!("{base}/api/v2/spans"),
        &[("content-type", "application/json")],
        b"[{\"traceId\": 12}]".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _, _) = request(
        "POST",
        &format!("{base}/v1/traces"),
        &[("content-type", "application/x-protobuf")],
        vec![0xff; 16],
    )
    .await;
    assert_eq!(s, 400);

    // A marker written after the garbage arrives; nothing before it reached the hub.
    let (s, _) = remote_write(agent.addr(), vec![series(&[("__name__", "marker")], 1.0)]).await;
    assert_eq!(s, 204);
    one_series(hub.addr(), "marker").await;
    assert!(query(hub.addr(), "bad").await.is_empty());
    let (_, body) = get(&format!("http://{}/metrics", hub.addr())).await;
    let text = String::from_utf8_lossy(&body);
    assert!(
        !text.contains(r#"meshlens_remote_write_requests_total{code="400"}"#),
        "the hub was sent something it refused:\n{text}"
    );
    let (_, body) = get(&format!("http://{}/api/v2/services", hub.addr())).await;
    assert_eq!(&body[..], b"[]", "no spans were forwarded");
    let (_, body) = get(&format!("{base}/metrics")).await;
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(r#"meshlens_agent_requests_total{path="/api/v1/write",code="400"} 2"#),
        "{text}"
    );

    agent.shutdown().await;
    hub.shutdown().await;
}

/// The record header the buffer adds to each payload (crates/forward's format).
const RECORD_HEADER: u64 = 21;
const BUFFER_LIMIT: u64 = 4096;

/// `n` letters snappy cannot shrink, so a record's size in the buffer is known.
fn noise(n: usize) -> String {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

/// A one-series request whose buffered record (header and payload) is `record` bytes, give
/// or take a byte or two.
fn filler(record: u64) -> Vec<TimeSeries> {
    let make = |n: usize| {
        vec![TimeSeries {
            labels: Labels::from_pairs([
                ("__name__", "fill".to_string()),
                ("cluster", "east".to_string()),
                ("pad", noise(n)),
            ]),
            samples: vec![Sample::new(meshlens_model::time::now_ms(), 1.0)],
        }]
    };
    let size = |ts: &Vec<TimeSeries>| {
        // The buffer keeps each payload snappy-compressed.
        RECORD_HEADER
            + remote_write::compress(&remote_write::encode_protobuf(&WriteRequest {
                timeseries: ts.clone(),
                ..Default::default()
            }))
            .len() as u64
    };
    let mut n = 1;
    while size(&make(n + 1)) <= record {
        n += 1;
    }
    make(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_buffer_answers_503_on_every_ingest_path() {
    let tmp = tempfile::tempdir().unwrap();
    // No hub listens there, so nothing leaves the buffer.
    let nowhere = std::net::TcpListener::bind(SocketAddr::from(LOCAL)).unwrap();
    let hub_url = format!("http://{}", nowhere.local_addr().unwrap());
    drop(nowhere);
    let mut o = agent_options(&tmp.path().join("agent"), &hub_url);
    o.buffer.max_size_bytes = BUFFER_LIMIT;
    o.drain_timeout = Duration::from_millis(500);
    o.otlp_grpc_listen = Some(SocketAddr::from(LOCAL));
    let agent = start_agent(o).await;
    let base = format!("http://{}", agent.addr());

    // One record that leaves less room than any record needs (its 21-byte header alone):
    // it already carries the cluster, so the agent buffers exactly these bytes.
    let fill = filler(BUFFER_LIMIT - 15);
    let (s, msg) = remote_write(agent.addr(), fill).await;
    assert_eq!(s, 204, "{msg}");
    let (s, msg) = remote_write(agent.addr(), vec![series(&[("__name__", "more")], 1.0)]).await;
    assert_eq!(s, 503, "{msg}");
    assert!(msg.contains("full"), "{msg}");
    // A request larger than the whole buffer could ever hold is not retried: 413.
    let (s, msg) = remote_write(agent.addr(), filler(2 * BUFFER_LIMIT)).await;
    assert_eq!(s, 413, "{msg}");
    let (s, _, b) = request(
        "POST",
        &format!("{base}/api/v2/spans"),
        &[("content-type", "application/json")],
        zipkin_json("00000000000000e1", "00000000000000f1", ""),
    )
    .await;
    assert_eq!(s, 503, "{}", String::from_utf8_lossy(&b));
    let otlp = meshlens_ingest::otlp::encode_request(&[model_span(0xe2, 0xf2, &[])]);
    let (s, _, _) = request(
        "POST",
        &format!("{base}/v1/traces"),
        &[("content-type", "application/x-protobuf")],
        otlp.clone(),
    )
    .await;
    assert_eq!(s, 503);
    // gRPC UNAVAILABLE, which OTLP exporters retry.
    assert_eq!(
        grpc_export(agent.otlp_grpc_addr().unwrap(), &otlp).await,
        14
    );
    let (_, body) = get(&format!("{base}/metrics")).await;
    let text = String::from_utf8_lossy(&body);
    for line in [
        r#"meshlens_agent_requests_total{path="/api/v1/write",code="503"} 1"#,
        r#"meshlens_agent_requests_total{path="/api/v2/spans",code="503"} 1"#,
        r#"meshlens_agent_requests_total{path="/v1/traces",code="503"} 1"#,
        r#"meshlens_samples_rejected_total{source="remote_write",reason="buffer_full"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }

    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_written_while_the_hub_is_down_arrives_when_it_is_up() {
    let tmp = tempfile::tempdir().unwrap();
    let reserved = std::net::TcpListener::bind(SocketAddr::from(LOCAL)).unwrap();
    let hub_addr = reserved.local_addr().unwrap();
    drop(reserved);
    let agent = start_agent(agent_options(
        &tmp.path().join("agent"),
        &format!("http://{hub_addr}"),
    ))
    .await;

    let (s, msg) = remote_write(agent.addr(), vec![series(&[("__name__", "early")], 7.0)]).await;
    assert_eq!(s, 204, "acknowledged while the hub is down: {msg}");
    let (s, _, _) = request(
        "POST",
        &format!("http://{}/api/v2/spans", agent.addr()),
        &[("content-type", "application/json")],
        zipkin_json("00000000000000a7", "00000000000000b7", ""),
    )
    .await;
    assert_eq!(s, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let hub = start_hub(&tmp.path().join("hub"), hub_addr).await;
    let early = one_series(hub.addr(), "early").await;
    assert_eq!(early["cluster"], "east");
    let spans = trace(hub.addr(), "00000000000000a7", 1).await;
    assert_eq!(tag(&spans[0], "cluster"), Some("east"));

    agent.shutdown().await;
    hub.shutdown().await;
}

/// Serves `body` as exposition text on every request.
async fn scrape_target(body: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(LOCAL))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scraped_series_arrive_with_the_cluster_label() {
    let tmp = tempfile::tempdir().unwrap();
    let target = scrape_target(
        "# HELP target_requests_total Requests.\n# TYPE target_requests_total counter\n\
         target_requests_total{code=\"200\"} 42\n",
    )
    .await;
    let hub = start_hub(&tmp.path().join("hub"), SocketAddr::from(LOCAL)).await;
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
             scrape_configs:\n- job_name: target\n  static_configs: [{{targets: ['{target}']}}]\n"
        ),
    )
    .unwrap();
    let mut o = agent_options(&tmp.path().join("agent"), &format!("http://{}", hub.addr()));
    o.config_file = Some(config);
    let agent = start_agent(o).await;

    let up = one_series(hub.addr(), r#"up{job="target"}"#).await;
    assert_eq!(up["cluster"], "east");
    assert_eq!(up["instance"], target.to_string());
    let r = query(hub.addr(), r#"up{job="target"}"#).await;
    assert_eq!(r[0]["value"][1], "1");
    let m = one_series(hub.addr(), "target_requests_total").await;
    assert_eq!(m["cluster"], "east");
    assert_eq!(m["code"], "200");
    assert_eq!(m["job"], "target");

    agent.shutdown().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn bad_options_are_errors_and_the_data_dir_is_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agent");
    let mut o = agent_options(&dir, "http://127.0.0.1:1");
    o.cluster = String::new();
    assert!(meshlens_server::agent::start(o).await.is_err());
    let o = agent_options(&dir, "ftp://hub");
    assert!(meshlens_server::agent::start(o).await.is_err());
    let mut o = agent_options(&dir, "http://127.0.0.1:1");
    o.hubs.clear();
    assert!(meshlens_server::agent::start(o).await.is_err());

    // An unreachable hub is not a start-up error; a second agent on the same dir is.
    let first = start_agent(agent_options(&dir, "http://127.0.0.1:1")).await;
    let second = meshlens_server::agent::start(agent_options(&dir, "http://127.0.0.1:1")).await;
    match second {
        Err(meshlens_server::ServerError::Locked(_)) => {}
        Err(e) => panic!("expected the lock error, got {e}"),
        Ok(_) => panic!("two agents share a data dir"),
    }
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_a_stopped_agent_could_not_send_goes_out_after_its_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let reserved = std::net::TcpListener::bind(SocketAddr::from(LOCAL)).unwrap();
    let hub_addr = reserved.local_addr().unwrap();
    drop(reserved);
    let hub_url = format!("http://{hub_addr}");
    let mut o = agent_options(&tmp.path().join("agent"), &hub_url);
    o.drain_timeout = Duration::from_millis(200);
    let agent = start_agent(o).await;
    let (s, msg) = remote_write(agent.addr(), vec![series(&[("__name__", "kept")], 3.0)]).await;
    assert_eq!(s, 204, "{msg}");
    // The hub is down: the drain gives up, the data stays on disk.
    agent.shutdown().await;

    let hub = start_hub(&tmp.path().join("hub"), hub_addr).await;
    let again = start_agent(agent_options(&tmp.path().join("agent"), &hub_url)).await;
    let kept = one_series(hub.addr(), "kept").await;
    assert_eq!(kept["cluster"], "east");
    again.shutdown().await;
    hub.shutdown().await;
}
