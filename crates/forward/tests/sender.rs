//! The senders against in-test hubs (hyper servers on 127.0.0.1).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshlens_forward::{
    Buffer, BufferOptions, Forwarder, HubOptions, Kind, ProtobufMessage, SendOptions,
};
use parking_lot::Mutex;
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
struct Received {
    status: StatusCode,
    path: String,
    headers: HeaderMap,
    /// Decompressed when snappy.
    body: Vec<u8>,
}

type Respond = Arc<dyn Fn(usize) -> StatusCode + Send + Sync>;

struct TestHub {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestHub {
    async fn start(respond: Respond) -> TestHub {
        Self::on(TcpListener::bind("127.0.0.1:0").await.unwrap(), respond)
    }

    fn on(listener: TcpListener, respond: Respond) -> TestHub {
        Self::serve(listener, respond, None)
    }

    fn serve(
        listener: TcpListener,
        respond: Respond,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> TestHub {
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let rec = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (rec, hits, respond) = (rec.clone(), hits.clone(), respond.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (rec, hits, respond) = (rec.clone(), hits.clone(), respond.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let raw = body.collect().await.unwrap().to_bytes();
                            let body = match parts.headers.get("content-encoding") {
                                Some(v) if v == "snappy" => {
                                    snap::raw::Decoder::new().decompress_vec(&raw).unwrap()
                                }
                                _ => raw.to_vec(),
                            };
                            let status = respond(hits.fetch_add(1, Ordering::SeqCst));
                            rec.lock().push(Received {
                                status,
                                path: parts.uri.path().to_string(),
                                headers: parts.headers,
                                body,
                            });
                            let answer = if status.is_client_error() {
                                "bad series: {__name__=\"x\"} ".repeat(20)
                            } else {
                                String::new()
                            };
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from(answer)))
                                    .unwrap(),
                            )
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => http.serve_connection(TokioIo::new(s), svc).await,
                            Err(_) => return,
                        },
                        None => http.serve_connection(TokioIo::new(stream), svc).await,
                    };
                });
            }
        });
        TestHub {
            addr,
            received,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Accepted requests.
    fn accepted(&self) -> Vec<Received> {
        self.received
            .lock()
            .iter()
            .filter(|r| r.status.is_success())
            .cloned()
            .collect()
    }

    fn hits(&self) -> usize {
        self.received.lock().len()
    }

    /// The accepted bodies of one path, concatenated.
    fn stream(&self, path: &str) -> Vec<u8> {
        self.accepted()
            .iter()
            .filter(|r| r.path == path)
            .flat_map(|r| r.body.clone())
            .collect()
    }
}

fn ok() -> Respond {
    Arc::new(|_| StatusCode::NO_CONTENT)
}

fn buffer_opts(dir: &std::path::Path) -> BufferOptions {
    BufferOptions {
        dir: dir.to_path_buf(),
        max_size_bytes: 0,
        max_age: Duration::ZERO,
        drop_oldest: false,
        segment_bytes: 4 << 10,
        fsync: true,
    }
}

fn send_opts(max_batch_bytes: usize) -> SendOptions {
    SendOptions {
        cluster: "east".into(),
        agent_id: "host-1:9100".into(),
        max_batch_bytes,
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
        headers: vec![("X-Scope-OrgID".into(), "team-a".into())],
        ..Default::default()
    }
}

fn hub(url: String) -> HubOptions {
    HubOptions { url, tls: None }
}

fn metric(i: usize) -> Vec<u8> {
    format!("m{i:04};").into_bytes()
}

async fn append(b: &Arc<Buffer>, kind: Kind, items: u32, payload: Vec<u8>) {
    let b = b.clone();
    tokio::task::spawn_blocking(move || b.append(kind, items, &payload))
        .await
        .unwrap()
        .unwrap();
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_in_order_with_the_headers() {
    let dir = tempfile::tempdir().unwrap();
    let h = TestHub::start(ok()).await;
    let b = Buffer::open(buffer_opts(dir.path()), &[h.url()]).unwrap();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..50 {
        append(&b, Kind::Metrics, 2, metric(i)).await;
    }
    for i in 0..10 {
        append(&b, Kind::Spans, 1, format!("s{i};").into_bytes()).await;
    }
    let f = Forwarder::start(b.clone(), vec![hub(h.url())], send_opts(64));
    // More while it runs.
    for i in 50..80 {
        append(&b, Kind::Metrics, 2, metric(i)).await;
    }
    until("hub has everything", || b.caught_up(&h.url())).await;
    let stats = f.hub_stats();
    assert!(f.drain(Duration::from_secs(5)).await);

    let want: Vec<u8> = (0..80).flat_map(metric).collect();
    assert_eq!(h.stream("/api/v1/write"), want);
    let spans: Vec<u8> = (0..10)
        .flat_map(|i| format!("s{i};").into_bytes())
        .collect();
    assert_eq!(h.stream("/v1/traces"), spans);
    let got = h.accepted();
    assert!(got.len() > 3, "batches of at most 64 bytes: {}", got.len());
    let mut items = 0;
    for r in &got {
        let hd = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            hd("content-type").as_deref(),
            Some("application/x-protobuf")
        );
        assert_eq!(hd("x-meshlens-cluster").as_deref(), Some("east"));
        assert_eq!(hd("x-meshlens-agent").as_deref(), Some("host-1:9100"));
        assert_eq!(hd("x-scope-orgid").as_deref(), Some("team-a"));
        let oldest: i64 = hd("x-meshlens-oldest").unwrap().parse().unwrap();
        assert!(oldest >= before && oldest <= before + 60_000, "{oldest}");
        let n: u64 = hd("x-meshlens-items").unwrap().parse().unwrap();
        if r.path == "/api/v1/write" {
            assert_eq!(hd("content-encoding").as_deref(), Some("snappy"));
            assert_eq!(
                hd("x-prometheus-remote-write-version").as_deref(),
                Some("0.1.0")
            );
            assert_eq!(n, r.body.len() as u64 / 6 * 2);
        } else {
            assert_eq!(hd("content-encoding"), None);
        }
        assert!(r.body.len() <= 64);
        items += n;
    }
    assert_eq!(items, 170);
    assert_eq!(stats[0].sent_samples, 160);
    assert_eq!(stats[0].sent_spans, 10);
    assert_eq!(stats[0].sent_requests, got.len() as u64);
    // The cursor was written: a reopened buffer has nothing left for this hub.
    drop(b);
    let b = Buffer::open(buffer_opts(dir.path()), &[h.url()]).unwrap();
    assert!(b.read_batch(&h.url(), 1 << 20).unwrap().is_none());
    h.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_answering_503_gets_the_batch_once_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let h = TestHub::start(Arc::new(|n| {
        if n < 3 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NO_CONTENT
        }
    }))
    .await;
    let b = Buffer::open(buffer_opts(dir.path()), &[h.url()]).unwrap();
    append(&b, Kind::Metrics, 5, metric(1)).await;
    let f = Forwarder::start(b.clone(), vec![hub(h.url())], send_opts(1 << 20));
    assert!(f.drain(Duration::from_secs(10)).await);
    assert_eq!(h.hits(), 4);
    let got = h.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, metric(1));
    let all = h.received.lock().clone();
    assert!(
        all.iter().all(|r| r.body == metric(1)),
        "the same batch each time"
    );
    h.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let h = TestHub::start(Arc::new(|n| match n {
        0 => StatusCode::TOO_MANY_REQUESTS,
        1 | 2 => StatusCode::BAD_GATEWAY,
        _ => StatusCode::OK,
    }))
    .await;
    let b = Buffer::open(buffer_opts(dir.path()), &[h.url()]).unwrap();
    append(&b, Kind::Spans, 7, b"span".to_vec()).await;
    let f = Forwarder::start(b.clone(), vec![hub(h.url())], send_opts(1 << 20));
    until("sent", || b.caught_up(&h.url())).await;
    let s = &f.hub_stats()[0];
    assert_eq!((s.retries, s.sent_requests, s.sent_spans), (3, 1, 7));
    let mut m = String::new();
    f.render_metrics(&mut m);
    let url = h.url();
    for line in [
        format!("meshlens_forward_retries_total{{hub=\"{url}\"}} 3"),
        format!("meshlens_forward_sent_spans_total{{hub=\"{url}\"}} 7"),
        format!("meshlens_forward_sent_requests_total{{hub=\"{url}\"}} 1"),
        format!("meshlens_forward_buffered_bytes{{hub=\"{url}\"}} 0"),
        format!("meshlens_forward_lag_seconds{{hub=\"{url}\"}} 0"),
        format!("meshlens_forward_dropped_total{{hub=\"{url}\",reason=\"rejected\"}} 0"),
        "meshlens_forward_appended_records_total{kind=\"spans\"} 1".to_string(),
        "meshlens_forward_refused_records_total 0".to_string(),
        "# TYPE meshlens_forward_buffer_bytes gauge".to_string(),
        "# TYPE meshlens_forward_dropped_total counter".to_string(),
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    assert!(f.drain(Duration::from_secs(5)).await);
    h.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_drops_the_batch_and_the_next_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let h = TestHub::start(Arc::new(|n| {
        if n == 0 {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::NO_CONTENT
        }
    }))
    .await;
    let b = Buffer::open(buffer_opts(dir.path()), &[h.url()]).unwrap();
    append(&b, Kind::Metrics, 4, metric(1)).await;
    append(&b, Kind::Metrics, 6, metric(2)).await;
    // One record a batch.
    let f = Forwarder::start(b.clone(), vec![hub(h.url())], send_opts(1));
    until("sent", || b.caught_up(&h.url())).await;
    assert_eq!(h.hits(), 2);
    assert_eq!(h.stream("/api/v1/write"), metric(2));
    let s = &f.hub_stats()[0];
    assert_eq!((s.rejected.records, s.rejected.items), (1, 4));
    assert_eq!((s.sent_samples, s.retries), (6, 0));
    let mut m = String::new();
    f.render_metrics(&mut m);
    let line = format!(
        "meshlens_forward_dropped_total{{hub=\"{}\",reason=\"rejected\"}} 4",
        h.url()
    );
    assert!(m.contains(&line), "{m}");
    assert!(f.drain(Duration::from_secs(5)).await);
    h.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_was_down_catches_up_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let up = TestHub::start(ok()).await;
    // A port nothing listens on, for now.
    let down_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down_url = format!("http://{down_addr}");
    let b = Buffer::open(buffer_opts(dir.path()), &[up.url(), down_url.clone()]).unwrap();
    let f = Forwarder::start(
        b.clone(),
        vec![hub(up.url()), hub(down_url.clone())],
        send_opts(200),
    );
    for i in 0..300 {
        append(&b, Kind::Metrics, 1, metric(i)).await;
    }
    let want: Vec<u8> = (0..300).flat_map(metric).collect();
    until("the up hub has everything", || {
        up.stream("/api/v1/write") == want
    })
    .await;
    assert!(!b.caught_up(&down_url));
    let lagging = b.stats();
    let d = lagging
        .destinations
        .iter()
        .find(|d| d.name == down_url)
        .unwrap();
    assert_eq!(d.buffered_records, 300);
    assert!(d.lag_seconds > 0.0);
    until("retries counted", || f.hub_stats()[1].retries > 0).await;
    assert_eq!(f.hub_stats()[0].retries, 0);
    // Short of time, drain says not everything went.
    let f2 = Forwarder::start(b.clone(), vec![hub(down_url.clone())], send_opts(200));
    assert!(!f2.drain(Duration::from_millis(200)).await);

    let down = TestHub::on(TcpListener::bind(down_addr).await.unwrap(), ok());
    for i in 300..320 {
        append(&b, Kind::Metrics, 1, metric(i)).await;
    }
    assert!(f.drain(Duration::from_secs(20)).await);
    let want: Vec<u8> = (0..320).flat_map(metric).collect();
    assert_eq!(down.stream("/api/v1/write"), want);
    assert_eq!(up.stream("/api/v1/write"), want);
    // Both passed every segment but the active one.
    assert_eq!(b.stats().segments, 1);
    up.task.abort();
    down.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_hub_times_out_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            conns.push(s);
        }
    });
    let b = Buffer::open(buffer_opts(dir.path()), std::slice::from_ref(&url)).unwrap();
    append(&b, Kind::Metrics, 1, metric(0)).await;
    let opts = SendOptions {
        timeout: Duration::from_millis(100),
        ..send_opts(1 << 20)
    };
    let f = Forwarder::start(b.clone(), vec![hub(url.clone())], opts);
    until("timeouts retried", || f.hub_stats()[0].retries >= 2).await;
    assert!(!b.caught_up(&url));
    assert!(!f.drain(Duration::from_millis(50)).await);
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_hubs_are_verified_with_the_given_roots() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h = TestHub::serve(
        listener,
        ok(),
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))),
    );
    let url = format!("https://{}", h.addr);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // ALPN set by the caller is replaced, not a panic.
    client.alpn_protocols = vec![b"h2".to_vec()];

    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open(buffer_opts(dir.path()), std::slice::from_ref(&url)).unwrap();
    append(&b, Kind::Metrics, 1, metric(3)).await;
    let f = Forwarder::start(
        b.clone(),
        vec![HubOptions {
            url: url.clone(),
            tls: Some(Arc::new(client)),
        }],
        send_opts(1 << 20),
    );
    assert!(f.drain(Duration::from_secs(10)).await);
    assert_eq!(h.stream("/api/v1/write"), metric(3));

    // Without those roots the hub's certificate is refused: retried, never sent.
    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open(buffer_opts(dir.path()), std::slice::from_ref(&url)).unwrap();
    append(&b, Kind::Metrics, 1, metric(4)).await;
    let f = Forwarder::start(b.clone(), vec![hub(url.clone())], send_opts(1 << 20));
    until("refused handshakes retried", || {
        f.hub_stats()[0].retries >= 1
    })
    .await;
    assert!(!f.drain(Duration::from_millis(50)).await);
    assert_eq!(h.accepted().len(), 1);
    h.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_aging_past_max_age_while_retried_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let h = TestHub::start(Arc::new(|_| StatusCode::SERVICE_UNAVAILABLE)).await;
    let o = BufferOptions {
        max_age: Duration::from_millis(300),
        ..buffer_opts(dir.path())
    };
    let b = Buffer::open(o, &[h.url()]).unwrap();
    for i in 0..3 {
        append(&b, Kind::Metrics, 2, metric(i)).await;
    }
    let f = Forwarder::start(b.clone(), vec![hub(h.url())], send_opts(1 << 20));
    until("aged out", || b.caught_up(&h.url())).await;
    let d = b.stats().destinations[0].dropped_max_age;
    assert_eq!((d.records, d.items), (3, 6));
    assert!(f.hub_stats()[0].retries > 0);
    assert_eq!(f.hub_stats()[0].sent_requests, 0);
    let mut m = String::new();
    f.render_metrics(&mut m);
    let line = format!(
        "meshlens_forward_dropped_total{{hub=\"{}\",reason=\"max_age\"}} 6",
        h.url()
    );
    assert!(m.contains(&line), "{m}");
    assert!(f.drain(Duration::from_secs(1)).await);
    h.task.abort();
}

/// A real 1.0 record of one series `rw2_i` with two samples, as the agent buffers them.
fn v1_record(i: usize) -> Vec<u8> {
    use meshlens_ingest::remote_write::{encode_protobuf, WriteRequest};
    use meshlens_model::{Labels, MetricMetadata, Sample, TimeSeries};
    encode_protobuf(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: Labels::from_pairs([("__name__", format!("rw2_{i}")), ("job", "j".into())]),
            samples: vec![Sample::new(1_000, i as f64), Sample::new(2_000, 1.0)],
        }],
        metadata: vec![MetricMetadata {
            metric_family: format!("rw2_{i}"),
            kind: "gauge".into(),
            help: "Help.".into(),
            unit: String::new(),
        }],
        ..Default::default()
    })
}

/// Sent as 2.0, a hub that answers 415, or 2xx without the written counts (a 1.0 receiver
/// that read an empty request), gets the same batch again as 1.0, and 1.0 from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_2_falls_back_to_1_0_for_a_hub_that_reads_only_1_0() {
    use meshlens_ingest::remote_write::{decode, v2};
    for first in [StatusCode::UNSUPPORTED_MEDIA_TYPE, StatusCode::NO_CONTENT] {
        let dir = tempfile::tempdir().unwrap();
        let h = TestHub::start(Arc::new(move |i| {
            if i == 0 {
                first
            } else {
                StatusCode::NO_CONTENT
            }
        }))
        .await;
        let b = Buffer::open(buffer_opts(dir.path()), &[h.url()]).unwrap();
        for i in 0..3 {
            append(&b, Kind::Metrics, 2, v1_record(i)).await;
        }
        let mut opts = send_opts(1 << 20);
        opts.protobuf_message = ProtobufMessage::V2;
        let f = Forwarder::start(b.clone(), vec![hub(h.url())], opts);
        until("hub has everything", || b.caught_up(&h.url())).await;
        let stats = f.hub_stats().remove(0);
        assert!(f.drain(Duration::from_secs(5)).await);
        assert_eq!(stats.protobuf_message, ProtobufMessage::V1, "{first}");
        assert_eq!(stats.sent_samples, 6, "{first}");
        assert_eq!(stats.unwritten_samples, 0);
        let got = h.received.lock().clone();
        let hd = |r: &Received, n: &str| r.headers.get(n).unwrap().to_str().unwrap().to_string();
        // The first request was 2.0, holding the three series with their metadata.
        assert_eq!(
            hd(&got[0], "content-type"),
            "application/x-protobuf;proto=io.prometheus.write.v2.Request"
        );
        assert_eq!(hd(&got[0], "x-prometheus-remote-write-version"), "2.0.0");
        let first_req = v2::parse(&got[0].body).unwrap();
        assert_eq!(first_req.series().len(), 3);
        assert_eq!(first_req.raw.metadata.len(), 3);
        // Everything after it is 1.0 and holds the same data.
        let rest: Vec<&Received> = got[1..].iter().collect();
        assert!(!rest.is_empty());
        let mut series = Vec::new();
        for r in rest {
            assert_eq!(hd(r, "content-type"), "application/x-protobuf", "{first}");
            assert_eq!(hd(r, "x-prometheus-remote-write-version"), "0.1.0");
            let compressed = meshlens_ingest::remote_write::compress(&r.body);
            series.extend(decode(&compressed).unwrap().timeseries);
        }
        assert_eq!(series.len(), 3, "{first}");
        assert_eq!(
            first_req.to_write_request().timeseries,
            series,
            "2.0 and 1.0 carried the same series"
        );
    }
}
