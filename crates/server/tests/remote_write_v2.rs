//! Remote write 2.0 against in-process servers: a request built by hand from the
//! specification's message (symbols, label references, metadata) reads back through
//! `/api/v1/query` and `/api/v1/metadata`; a series with bad references is refused on its
//! own with the rest stored; an unknown message is 415; 1.0 still works on the same path;
//! an agent takes 2.0 and, set to send 2.0, delivers to a hub, metadata included; and with
//! `created-timestamp-zero-ingestion` a created timestamp becomes a zero sample (a float,
//! an empty native histogram, and OTLP's start times alike).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use meshlens_ingest::remote_write::{self, ProtobufMessage, WriteRequest};
use meshlens_model::{Labels, MetricMetadata, Sample, TimeSeries};
use meshlens_server::agent::{AgentOptions, RunningAgent};
use meshlens_server::{RunningServer, ServerOptions};
use serde_json::Value;

const LOCAL: ([u8; 4], u16) = ([127, 0, 0, 1], 0);
const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

async fn start_hub(dir: &Path) -> RunningServer {
    meshlens_server::start(ServerOptions {
        listen: SocketAddr::from(LOCAL),
        data_dir: dir.to_path_buf(),
        ..Default::default()
    })
    .await
    .expect("hub starts")
}

/// One HTTP/1.1 request; returns status, headers and body.
async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, String) {
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
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn write(addr: SocketAddr, content_type: &str, raw: &[u8]) -> (u16, http::HeaderMap, String) {
    request(
        "POST",
        &format!("http://{addr}/api/v1/write"),
        &[
            ("content-type", content_type),
            ("content-encoding", "snappy"),
        ],
        remote_write::compress(raw),
    )
    .await
}

/// The three written counts of an answer.
fn written(h: &http::HeaderMap) -> [Option<u64>; 3] {
    [
        "x-prometheus-remote-write-samples-written",
        "x-prometheus-remote-write-histograms-written",
        "x-prometheus-remote-write-exemplars-written",
    ]
    .map(|n| h.get(n).map(|v| v.to_str().unwrap().parse().unwrap()))
}

/// The server's `meshlens_samples_ingested_total{source="remote_write"}`.
async fn ingested(addr: SocketAddr) -> u64 {
    let (_, _, m) = request("GET", &format!("http://{addr}/metrics"), &[], Vec::new()).await;
    m.lines()
        .find_map(|l| l.strip_prefix("meshlens_samples_ingested_total{source=\"remote_write\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn get_json(url: &str) -> Value {
    let (s, _, b) = request("GET", url, &[], Vec::new()).await;
    assert_eq!(s, 200, "{url}: {b}");
    serde_json::from_str(&b).unwrap()
}

/// `q`'s instant result as (labels, value) pairs, sorted.
async fn query(addr: SocketAddr, q: &str) -> Vec<(Value, String)> {
    let q: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let v = get_json(&format!("http://{addr}/api/v1/query?query={q}")).await;
    let mut out: Vec<(Value, String)> = v["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            (
                r["metric"].clone(),
                // A native histogram's value is its JSON.
                match r["value"][1].as_str() {
                    Some(v) => v.to_string(),
                    None => r["histogram"][1].to_string(),
                },
            )
        })
        .collect();
    out.sort_by_key(|(m, _)| m.to_string());
    out
}

async fn metadata(addr: SocketAddr, metric: &str) -> Value {
    let v = get_json(&format!("http://{addr}/api/v1/metadata?metric={metric}")).await;
    v["data"][metric].clone()
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

/// A protobuf writer of just what the tests need, written from the wire format's rules
/// (not meshlens's encoder): varints, and length-delimited fields.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }
    fn key(&mut self, field: u64, wire_type: u64) -> &mut Self {
        self.varint(field << 3 | wire_type)
    }
    fn bytes(&mut self, field: u64, b: &[u8]) -> &mut Self {
        self.key(field, 2).varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn uint(&mut self, field: u64, v: u64) -> &mut Self {
        self.key(field, 0).varint(v)
    }
    fn double(&mut self, field: u64, v: f64) -> &mut Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// `repeated uint32`, packed.
    fn packed(&mut self, field: u64, refs: &[u64]) -> &mut Self {
        let mut p = Pb::default();
        for r in refs {
            p.varint(*r);
        }
        self.bytes(field, &p.0)
    }
}

/// A `TimeSeries`: label references, (timestamp, value) samples, optional metadata
/// (type, help_ref, unit_ref), created timestamp.
fn series(
    refs: &[u64],
    samples: &[(i64, f64)],
    md: Option<(u64, u64, u64)>,
    created: i64,
) -> Vec<u8> {
    let mut s = Pb::default();
    s.packed(1, refs);
    for (t, v) in samples {
        let mut p = Pb::default();
        p.double(1, *v).uint(2, *t as u64);
        s.bytes(2, &p.0);
    }
    if let Some((kind, help, unit)) = md {
        let mut p = Pb::default();
        p.uint(1, kind).uint(3, help).uint(4, unit);
        s.bytes(5, &p.0);
    }
    if created != 0 {
        s.uint(6, created as u64);
    }
    s.0
}

/// A `Request`: the symbols (field 4), then the series (field 5).
fn v2_request(symbols: &[&str], series: &[Vec<u8>]) -> Vec<u8> {
    let mut r = Pb::default();
    for s in symbols {
        r.bytes(4, s.as_bytes());
    }
    for s in series {
        r.bytes(5, s);
    }
    r.0
}

/// The specification's shape: a table starting with "", sorted label pairs by index, a
/// counter's type, help and unit by index, and a created timestamp.
const SYMBOLS: [&str; 10] = [
    "",
    "__name__",
    "rw2_http_requests_total",
    "job",
    "api-server",
    "method",
    "GET",
    "POST",
    "Total HTTP requests.",
    "requests",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_built_from_the_specification_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path()).await;
    let addr = hub.addr();
    let now = meshlens_model::time::now_ms();
    let md = Some((1, 8, 9)); // counter, "Total HTTP requests.", "requests"
    let raw = v2_request(
        &SYMBOLS,
        &[
            series(
                &[1, 2, 3, 4, 5, 6],
                &[(now - 1000, 7.0), (now, 10.0)],
                md,
                now - 60_000,
            ),
            series(&[1, 2, 3, 4, 5, 7], &[(now, 3.0)], md, 0),
        ],
    );
    let (status, headers, body) = write(addr, V2_CONTENT_TYPE, &raw).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(written(&headers), [Some(3), Some(0), Some(0)]);

    let got = query(addr, "rw2_http_requests_total").await;
    let want = |method: &str, v: &str| {
        (
            serde_json::json!({"__name__": "rw2_http_requests_total", "job": "api-server", "method": method}),
            v.to_string(),
        )
    };
    assert_eq!(got, vec![want("GET", "10"), want("POST", "3")]);
    let md = metadata(addr, "rw2_http_requests_total").await;
    assert_eq!(
        md,
        serde_json::json!([{"type": "counter", "help": "Total HTTP requests.", "unit": "requests"}])
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_refuse_their_series_and_the_rest_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path()).await;
    let addr = hub.addr();
    let now = meshlens_model::time::now_ms();
    let raw = v2_request(
        &SYMBOLS,
        &[
            series(&[1, 2, 3, 4, 5, 6], &[(now, 1.0)], None, 0),
            series(&[1, 2, 3, 4, 5], &[(now, 2.0)], None, 0), // odd
            series(&[1, 2, 3, 4, 5, 99], &[(now, 3.0)], None, 0), // past the table
            series(&[1, 2, 3, 4, 5, 7], &[(now, 4.0)], Some((1, 50, 0)), 0), // help_ref
        ],
    );
    let (status, headers, body) = write(addr, V2_CONTENT_TYPE, &raw).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("3 of 4 samples refused")
            && body.contains("timeseries[1]: labels_refs has an odd number (5) of entries"),
        "{body}"
    );
    assert_eq!(written(&headers)[0], Some(1));
    let got = query(addr, "rw2_http_requests_total").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0["method"], "GET");

    // A table not starting with "" refuses the whole request.
    let mut symbols = SYMBOLS;
    symbols[0] = "oops";
    let raw = v2_request(&symbols, &[series(&[1, 2], &[(now, 1.0)], None, 0)]);
    let (status, headers, body) = write(addr, V2_CONTENT_TYPE, &raw).await;
    assert_eq!(status, 400);
    assert!(body.contains("symbols[0]"), "{body}");
    assert_eq!(written(&headers), [Some(0), Some(0), Some(0)]);

    // A native histogram is stored beside the samples and the exemplar.
    let mut s = series(&[1, 2, 3, 4, 5, 7], &[(now, 5.0)], None, 0);
    let mut ex = Pb::default();
    ex.packed(1, &[3, 4]).double(2, 1.0).uint(3, now as u64);
    let mut p = Pb::default();
    p.bytes(4, &ex.0);
    s.extend_from_slice(&p.0);
    let mut hist = Pb::default();
    hist.uint(1, 3).uint(15, now as u64);
    let mut h = Pb::default();
    h.bytes(3, &hist.0);
    let raw = v2_request(
        &SYMBOLS,
        &[s, {
            let mut only_hist = Pb::default();
            only_hist.packed(1, &[1, 2, 3, 4]);
            only_hist.0.extend_from_slice(&h.0);
            only_hist.0
        }],
    );
    let before = ingested(addr).await;
    let (status, headers, body) = write(addr, V2_CONTENT_TYPE, &raw).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(written(&headers), [Some(1), Some(1), Some(1)]);
    // The histogram sample counts as an ingested sample beside the float one.
    assert_eq!(ingested(addr).await - before, 2);
    let counted = query(addr, "histogram_count(rw2_http_requests_total)").await;
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert_eq!(counted[0].1, "3", "{counted:?}");
    let got = query(addr, "rw2_http_requests_total").await;
    assert_eq!(got.len(), 3, "two float series and the histogram: {got:?}");
    let q: String = url::form_urlencoded::byte_serialize(b"rw2_http_requests_total").collect();
    let ex = get_json(&format!(
        "http://{addr}/api/v1/query_exemplars?query={q}&start={}&end={}",
        (now - 60_000) / 1000,
        now / 1000 + 60
    ))
    .await;
    let series = ex["data"].as_array().expect("exemplar series");
    assert_eq!(series.len(), 1, "{ex}");
    assert_eq!(series[0]["seriesLabels"]["method"], "POST", "{ex}");
    assert_eq!(
        series[0]["exemplars"][0]["labels"]["job"], "api-server",
        "{ex}"
    );
    assert_eq!(series[0]["exemplars"][0]["value"], "1", "{ex}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_types_pick_the_message_and_unknown_ones_get_415() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path()).await;
    let addr = hub.addr();
    let now = meshlens_model::time::now_ms();
    let v2 = v2_request(&SYMBOLS, &[series(&[1, 2, 3, 4], &[(now, 1.0)], None, 0)]);
    for (ct, enc) in [
        (
            "application/x-protobuf;proto=io.prometheus.write.v3.Request",
            "snappy",
        ),
        ("application/json", "snappy"),
        (V2_CONTENT_TYPE, "zstd"),
    ] {
        let (status, headers, body) = request(
            "POST",
            &format!("http://{addr}/api/v1/write"),
            &[("content-type", ct), ("content-encoding", enc)],
            remote_write::compress(&v2),
        )
        .await;
        assert_eq!(status, 415, "{ct} {enc}: {body}");
        assert_eq!(written(&headers), [None, None, None]);
    }
    // 1.0 with and without the proto parameter, on the same path.
    let v1 = remote_write::encode_protobuf(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: Labels::from_pairs([("__name__", "rw1_up"), ("job", "a")]),
            samples: vec![Sample::new(now, 1.0)],
        }],
        ..Default::default()
    });
    for ct in [
        "application/x-protobuf",
        "application/x-protobuf;proto=prometheus.WriteRequest",
    ] {
        let (status, headers, body) = write(addr, ct, &v1).await;
        assert_eq!(status, 204, "{ct}: {body}");
        assert_eq!(written(&headers), [Some(1), Some(0), Some(0)]);
    }
    // A 2.0 body sent as 1.0 decodes as an empty 1.0 request (2.0 reserves 1.0's fields).
    let (status, headers, _) = write(addr, "application/x-protobuf", &v2).await;
    assert_eq!((status, written(&headers)[0]), (204, Some(0)));
    assert!(query(addr, "rw2_http_requests_total").await.is_empty());
    assert_eq!(query(addr, "rw1_up").await.len(), 1);
    hub.shutdown().await;
}

/// The agent buffers 1.0 and sends 2.0 to the hub: series, their cluster stamp, their
/// family's metadata and their exemplars arrive, and the hub confirms every sample written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sends_remote_write_2_to_a_hub() {
    let hub_dir = tempfile::tempdir().unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let hub = start_hub(hub_dir.path()).await;
    let mut o = AgentOptions {
        cluster: "east".into(),
        hubs: vec![format!("http://{}", hub.addr())],
        listen: SocketAddr::from(LOCAL),
        data_dir: agent_dir.path().to_path_buf(),
        drain_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    o.send.max_backoff = Duration::from_millis(500);
    o.send.protobuf_message = ProtobufMessage::V2;
    let agent: RunningAgent = meshlens_server::agent::start(o)
        .await
        .expect("agent starts");
    let now = meshlens_model::time::now_ms();
    let ts = |name: &str, le: Option<&str>, v: f64| TimeSeries {
        labels: Labels::from_pairs(
            [("__name__", name), ("job", "shop")]
                .into_iter()
                .chain(le.map(|le| ("le", le))),
        ),
        samples: vec![Sample::new(now, v)],
    };
    let req = WriteRequest {
        timeseries: vec![
            ts("rt_latency_seconds_bucket", Some("0.1"), 3.0),
            ts("rt_latency_seconds_bucket", Some("+Inf"), 5.0),
            ts("rt_latency_seconds_count", None, 5.0),
            ts("rt_up", None, 1.0),
        ],
        metadata: vec![MetricMetadata {
            metric_family: "rt_latency_seconds".into(),
            kind: "histogram".into(),
            help: "Checkout latency.".into(),
            unit: "seconds".into(),
        }],
        exemplars: vec![meshlens_model::SeriesExemplars {
            series: ts("rt_latency_seconds_bucket", Some("0.1"), 3.0).labels,
            exemplars: vec![meshlens_model::Exemplar {
                labels: Labels::from_pairs([("trace_id", "0af7651916cd43dd8448eb211c80319c")]),
                value: 0.07,
                t: now,
            }],
        }],
        ..Default::default()
    };
    let (status, _, body) = request(
        "POST",
        &format!("http://{}/api/v1/write", agent.addr()),
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "snappy"),
        ],
        remote_write::encode(&req),
    )
    .await;
    assert_eq!(status, 204, "{body}");

    let hub_addr = hub.addr();
    let got = eventually("the series at the hub", || async {
        let r = query(hub_addr, r#"{__name__=~"rt_.*"}"#).await;
        (r.len() == 4).then_some(r)
    })
    .await;
    for (labels, _) in &got {
        assert_eq!(labels["cluster"], "east", "{labels}");
    }
    let bucket = query(hub_addr, r#"rt_latency_seconds_bucket{le="+Inf"}"#).await;
    assert_eq!(bucket[0].1, "5");
    let md = eventually("the family's metadata at the hub", || async {
        let m = metadata(hub_addr, "rt_latency_seconds").await;
        m.is_array().then_some(m)
    })
    .await;
    assert_eq!(
        md,
        serde_json::json!([{"type": "histogram", "help": "Checkout latency.", "unit": "seconds"}])
    );
    let q: String = url::form_urlencoded::byte_serialize(b"rt_latency_seconds_bucket").collect();
    let exemplars_url = format!(
        "http://{hub_addr}/api/v1/query_exemplars?query={q}&start={}&end={}",
        (now - 60_000) / 1000,
        now / 1000 + 60
    );
    let ex = eventually("the exemplar at the hub", || async {
        let v = get_json(&exemplars_url).await;
        v["data"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            .then_some(v)
    })
    .await;
    let first = &ex["data"][0];
    assert_eq!(first["seriesLabels"]["cluster"], "east", "{ex}");
    assert_eq!(first["seriesLabels"]["le"], "0.1", "{ex}");
    assert_eq!(
        first["exemplars"][0]["labels"]["trace_id"], "0af7651916cd43dd8448eb211c80319c",
        "{ex}"
    );
    assert_eq!(first["exemplars"][0]["value"], "0.07", "{ex}");
    // The agent reads 2.0 too: the bad series is refused alone, the good one forwarded
    // with its metadata.
    let raw = v2_request(
        &SYMBOLS,
        &[
            series(&[1, 2, 3, 4, 5, 6], &[(now, 9.0)], Some((1, 8, 9)), 0),
            series(&[1, 2, 3], &[(now, 1.0)], None, 0),
        ],
    );
    let (status, headers, body) = write(agent.addr(), V2_CONTENT_TYPE, &raw).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("timeseries[1]: labels_refs has an odd number (3)"),
        "{body}"
    );
    assert_eq!(written(&headers), [Some(1), Some(0), Some(0)]);
    let got = eventually("the agent's 2.0 series at the hub", || async {
        let r = query(hub_addr, "rw2_http_requests_total").await;
        (r.len() == 1).then_some(r)
    })
    .await;
    assert_eq!(got[0].0["cluster"], "east");
    assert_eq!(got[0].1, "9");
    let md = eventually("the counter's metadata at the hub", || async {
        let m = metadata(hub_addr, "rw2_http_requests_total").await;
        m.is_array().then_some(m)
    })
    .await;
    assert_eq!(md[0]["help"], "Total HTTP requests.");

    // Sent as 2.0 throughout, and the hub's written counts confirm every sample (the
    // sender counts after the hub's answer, which may come after the query saw the data).
    let hub_url = format!("http://{hub_addr}");
    let agent_addr = agent.addr();
    let sent = format!("meshlens_forward_sent_samples_total{{hub=\"{hub_url}\"}} 5");
    let m = eventually("the sender's count of confirmed samples", || async {
        let (_, _, m) = request(
            "GET",
            &format!("http://{agent_addr}/metrics"),
            &[],
            Vec::new(),
        )
        .await;
        m.contains(&sent).then_some(m)
    })
    .await;
    for line in [
        format!(
            "meshlens_forward_remote_write_message_info{{hub=\"{hub_url}\",proto=\"io.prometheus.write.v2.Request\"}} 1"
        ),
        format!("meshlens_forward_unwritten_samples_total{{hub=\"{hub_url}\"}} 0"),
    ] {
        assert!(m.contains(&line), "{line} missing from:\n{m}");
    }
    agent.shutdown().await;
    hub.shutdown().await;
}

/// A server storing created-timestamp zeros or not (the TSDB's default out-of-order
/// window of 10 minutes left on, which zeros must not use).
async fn start_with_zeros(dir: &Path, zeros: bool) -> RunningServer {
    meshlens_server::start(ServerOptions {
        listen: SocketAddr::from(LOCAL),
        data_dir: dir.to_path_buf(),
        created_timestamp_zero_ingestion: zeros,
        ..Default::default()
    })
    .await
    .expect("server starts")
}

/// The samples `selector` (one series) holds in the last hour before `now` (ms), read
/// through a range-selector instant query: (time ms, value) for floats, (time ms,
/// "count/sum") for native histograms.
async fn raw_samples(addr: SocketAddr, selector: &str, now: i64) -> Vec<(i64, String)> {
    let q: String =
        url::form_urlencoded::byte_serialize(format!("{selector}[1h]").as_bytes()).collect();
    let time = now as f64 / 1000.0;
    let v = get_json(&format!("http://{addr}/api/v1/query?query={q}&time={time}")).await;
    assert_eq!(v["status"], "success", "{v}");
    let result = v["data"]["result"].as_array().expect("a matrix");
    assert_eq!(result.len(), 1, "one series for {selector}: {v}");
    let ms = |t: &Value| (t.as_f64().unwrap() * 1000.0).round() as i64;
    let mut out = Vec::new();
    for p in result[0]["values"].as_array().into_iter().flatten() {
        out.push((ms(&p[0]), p[1].as_str().unwrap().to_string()));
    }
    for p in result[0]["histograms"].as_array().into_iter().flatten() {
        let (count, sum) = (&p[1]["count"], &p[1]["sum"]);
        out.push((
            ms(&p[0]),
            format!("{}/{}", count.as_str().unwrap(), sum.as_str().unwrap()),
        ));
    }
    out
}

fn samples(pairs: &[(i64, &str)]) -> Vec<(i64, String)> {
    pairs.iter().map(|(t, v)| (*t, v.to_string())).collect()
}

/// Symbols for the created-timestamp tests: a counter's and a histogram's names.
const CT_SYMBOLS: [&str; 8] = [
    "",
    "__name__",
    "ct_requests_total",
    "job",
    "a",
    "ct_latency_seconds",
    "ct_started_total",
    "ct_late_total",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_timestamps_become_zero_samples_with_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_zeros(dir.path(), true).await;
    let addr = server.addr();
    let now = meshlens_model::time::now_ms();
    let counter = Some((1, 0, 0)); // counter, no help, no unit
    let (ct, t1) = (now - 300_000, now - 240_000);
    let raw = v2_request(
        &CT_SYMBOLS,
        &[
            series(&[1, 2, 3, 4], &[(t1, 5.0)], counter, ct),
            // A created timestamp at the sample's own time, or after it: no zero.
            series(&[1, 6, 3, 4], &[(t1, 1.0)], counter, t1),
            series(&[1, 7, 3, 4], &[(t1, 2.0)], counter, t1 + 1),
        ],
    );
    let (status, headers, body) = write(addr, V2_CONTENT_TYPE, &raw).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        written(&headers)[0],
        Some(3),
        "the zeros are not the sender's samples"
    );
    let sel = r#"ct_requests_total{job="a"}"#;
    assert_eq!(
        raw_samples(addr, sel, now).await,
        samples(&[(ct, "0"), (t1, "5")])
    );
    assert_eq!(
        raw_samples(addr, "ct_started_total", now).await,
        samples(&[(t1, "1")])
    );
    assert_eq!(
        raw_samples(addr, "ct_late_total", now).await,
        samples(&[(t1, "2")])
    );

    // A later write whose created timestamp lies before the stored sample (within the
    // out-of-order window, which zeros do not use): its zero is skipped without a word,
    // its sample stored.
    let t2 = now - 180_000;
    let raw = v2_request(
        &CT_SYMBOLS,
        &[series(&[1, 2, 3, 4], &[(t2, 7.0)], counter, t1 - 30_000)],
    );
    let (status, headers, body) = write(addr, V2_CONTENT_TYPE, &raw).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(written(&headers)[0], Some(1));
    // The same created timestamp again (a long-lived counter sends it every time).
    let t3 = now - 150_000;
    let raw = v2_request(
        &CT_SYMBOLS,
        &[series(&[1, 2, 3, 4], &[(t3, 8.0)], counter, ct)],
    );
    let (status, _, body) = write(addr, V2_CONTENT_TYPE, &raw).await;
    assert_eq!(status, 204, "{body}");
    // A restart: a created timestamp after the stored samples gets its zero.
    let (ct4, t4) = (now - 120_000, now - 90_000);
    let raw = v2_request(
        &CT_SYMBOLS,
        &[series(&[1, 2, 3, 4], &[(t4, 2.0)], counter, ct4)],
    );
    let (status, _, body) = write(addr, V2_CONTENT_TYPE, &raw).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        raw_samples(addr, sel, now).await,
        samples(&[
            (ct, "0"),
            (t1, "5"),
            (t2, "7"),
            (t3, "8"),
            (ct4, "0"),
            (t4, "2")
        ])
    );
    server.shutdown().await;

    // Without the feature the same first request stores its samples only.
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_zeros(dir.path(), false).await;
    let addr = server.addr();
    let raw = v2_request(
        &CT_SYMBOLS,
        &[series(&[1, 2, 3, 4], &[(t1, 5.0)], counter, ct)],
    );
    let (status, _, body) = write(addr, V2_CONTENT_TYPE, &raw).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(raw_samples(addr, sel, now).await, samples(&[(t1, "5")]));
    server.shutdown().await;
}

/// A native histogram with custom buckets (schema -53, bounds 0.5 and 1): counts 2 and 1,
/// sum 1.25, at `t`; as a `TimeSeries` of series `refs` with created timestamp `ct`.
fn histogram_series(refs: &[u64], t: i64, ct: i64) -> Vec<u8> {
    let mut span = Pb::default();
    span.uint(1, 0).uint(2, 2); // offset 0 (zigzag 0), length 2
    let mut bounds = Vec::new();
    for b in [0.5f64, 1.0] {
        bounds.extend_from_slice(&b.to_le_bytes());
    }
    let mut h = Pb::default();
    h.uint(1, 3) // count_int
        .double(3, 1.25) // sum
        .uint(4, 105) // schema -53, zigzag
        .bytes(11, &span.0)
        .packed(12, &[4, 1]) // deltas +2, -1, zigzag
        .uint(15, t as u64)
        .bytes(16, &bounds);
    let mut s = Pb::default();
    s.packed(1, refs).bytes(3, &h.0);
    if ct != 0 {
        s.uint(6, ct as u64);
    }
    s.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_histogram_gets_an_empty_histogram_at_its_created_timestamp() {
    let now = meshlens_model::time::now_ms();
    let (ct, t1, t2) = (now - 300_000, now - 240_000, now - 180_000);
    for zeros in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with_zeros(dir.path(), zeros).await;
        let addr = server.addr();
        let raw = v2_request(&CT_SYMBOLS, &[histogram_series(&[1, 5, 3, 4], t1, ct)]);
        let (status, headers, body) = write(addr, V2_CONTENT_TYPE, &raw).await;
        assert_eq!(status, 204, "{body}");
        assert_eq!(written(&headers)[1], Some(1));
        // The next one's created timestamp is before the stored histogram: no zero.
        let raw = v2_request(&CT_SYMBOLS, &[histogram_series(&[1, 5, 3, 4], t2, t1 - 1)]);
        let (status, _, body) = write(addr, V2_CONTENT_TYPE, &raw).await;
        assert_eq!(status, 204, "{body}");
        let got = raw_samples(addr, "ct_latency_seconds", now).await;
        let want = if zeros {
            samples(&[(ct, "0/0"), (t1, "3/1.25"), (t2, "3/1.25")])
        } else {
            samples(&[(t1, "3/1.25"), (t2, "3/1.25")])
        };
        assert_eq!(got, want, "zeros {zeros}");
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_start_times_become_zero_samples_with_the_feature() {
    let now = meshlens_model::time::now_ms();
    let (start, t) = (now - 300_000, now - 240_000);
    let ns = |ms: i64| (ms as u64 * 1_000_000).to_string();
    let point = serde_json::json!({
        "startTimeUnixNano": ns(start),
        "timeUnixNano": ns(t),
        "asInt": "4",
    });
    let body = serde_json::json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "shop"}}
            ]},
            "scopeMetrics": [{"metrics": [
                {"name": "orders", "sum": {
                    "aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [point]
                }},
                {"name": "queue_depth", "gauge": {"dataPoints": [point]}}
            ]}]
        }]
    })
    .to_string();
    for zeros in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with_zeros(dir.path(), zeros).await;
        let addr = server.addr();
        let (status, _, answer) = request(
            "POST",
            &format!("http://{addr}/v1/metrics"),
            &[("content-type", "application/json")],
            body.clone().into_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer, "{}", "nothing refused");
        let counter = raw_samples(addr, r#"orders_total{job="shop"}"#, now).await;
        if zeros {
            assert_eq!(counter, samples(&[(start, "0"), (t, "4")]));
        } else {
            assert_eq!(counter, samples(&[(t, "4")]));
        }
        // A gauge's start time says nothing of its value: never a zero.
        let gauge = raw_samples(addr, r#"queue_depth{job="shop"}"#, now).await;
        assert_eq!(gauge, samples(&[(t, "4")]), "zeros {zeros}");
        server.shutdown().await;
    }
}
