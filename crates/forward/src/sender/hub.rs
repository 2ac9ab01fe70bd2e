//! The sender loop of one hub and its HTTP exchange.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshlens_ingest::remote_write::negotiate::{
    EXEMPLARS_WRITTEN_HEADER, HISTOGRAMS_WRITTEN_HEADER, SAMPLES_WRITTEN_HEADER, VERSION_HEADER,
};
use meshlens_ingest::remote_write::v2::{transcode_v1, FamilyMetadata};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Counters, HubOptions, SendOptions};
use crate::{Batch, Buffer, Kind, ProtobufMessage};

/// Bytes of a refusal's body quoted in the log.
const QUOTED: usize = 200;
/// Bytes of an answer's body read at most (the rest is discarded with the connection).
const ANSWER_LIMIT: usize = 64 << 10;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Header values every request carries, checked once.
pub(crate) struct CommonHeaders {
    cluster: HeaderValue,
    agent: HeaderValue,
    user_agent: HeaderValue,
    extra: Vec<(http::HeaderName, HeaderValue)>,
}

impl CommonHeaders {
    pub fn new(opts: &SendOptions) -> CommonHeaders {
        CommonHeaders {
            cluster: header_value(super::CLUSTER_HEADER, &opts.cluster),
            agent: header_value(super::AGENT_HEADER, &opts.agent_id),
            user_agent: HeaderValue::from_static(concat!(
                "meshlens-agent/",
                env!("CARGO_PKG_VERSION")
            )),
            extra: opts
                .headers
                .iter()
                .filter_map(|(k, v)| match http::HeaderName::from_bytes(k.as_bytes()) {
                    Ok(name) => Some((name, header_value(k, v))),
                    Err(e) => {
                        tracing::error!(header = %k, error = %e, "forwarder: not a header name; not sent");
                        None
                    }
                })
                .collect(),
        }
    }
}

/// The value itself, or (logged) with the characters a header cannot carry left out.
fn header_value(name: &str, v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| {
        let clean: String = v.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').collect();
        tracing::warn!(header = name, value = v, sent = %clean, "forwarder: header value has characters HTTP cannot carry; they are left out");
        HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static(""))
    })
}

pub(crate) struct Hub {
    /// The URL as given: the buffer's destination name and the `hub` label.
    pub dest: String,
    write_uri: Result<Uri, String>,
    traces_uri: Result<Uri, String>,
    client: HttpClient,
    pub counters: Counters,
    /// Metrics go as 2.0 while set; cleared for good when the hub shows it reads only 1.0.
    v2: AtomicBool,
    /// The metadata of every family seen, for 2.0's per-series metadata.
    families: Mutex<FamilyMetadata>,
}

impl Hub {
    pub fn new(h: &HubOptions, opts: &SendOptions) -> Hub {
        let base = h.url.trim_end_matches('/');
        let uri = |path: &str| {
            format!("{base}{path}")
                .parse::<Uri>()
                .map_err(|e| format!("hub URL {:?}: {e}", h.url))
        };
        Hub {
            dest: h.url.clone(),
            write_uri: uri("/api/v1/write"),
            traces_uri: uri("/v1/traces"),
            client: client(h, opts.timeout),
            counters: Counters::default(),
            v2: AtomicBool::new(opts.protobuf_message == ProtobufMessage::V2),
            families: Mutex::new(FamilyMetadata::default()),
        }
    }

    /// The message metrics are sent as now.
    pub fn message(&self) -> ProtobufMessage {
        if self.v2.load(Ordering::Relaxed) {
            ProtobufMessage::V2
        } else {
            ProtobufMessage::V1
        }
    }

    /// Sends 1.0 from now on, for a hub that showed it does not read 2.0.
    fn fall_back(&self, why: &str) {
        if self.v2.swap(false, Ordering::Relaxed) {
            tracing::warn!(hub = %self.dest, answer = why, "forwarder: the hub does not read remote write 2.0; sending 1.0 from now on");
        }
    }
}

/// HTTP and HTTPS (HTTP/1.1, kept alive) with the hub's TLS configuration, else the
/// system's roots.
fn client(h: &HubOptions, timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match &h.tls {
        Some(cfg) => {
            let mut cfg = (**cfg).clone();
            cfg.alpn_protocols.clear();
            builder.with_tls_config(cfg)
        }
        None if h.url.starts_with("https:") => {
            match hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider.clone())
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(hub = %h.url, error = %e, "forwarder: no system CA certificates; the hub's certificate cannot be verified");
                    builder.with_tls_config(no_roots(provider))
                }
            }
        }
        None => builder.with_tls_config(no_roots(provider)),
    };
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector)
}

fn no_roots(provider: Arc<rustls::crypto::CryptoProvider>) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| {
            // The ring provider supports the default versions; kept total all the same.
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        })
}

/// A batch as it goes on the wire.
struct Prepared {
    kind: Kind,
    /// For metrics: the message the body holds.
    message: ProtobufMessage,
    next_seq: u64,
    records: u32,
    items: u64,
    oldest_ms: i64,
    body: Result<Bytes, String>,
}

impl Prepared {
    /// Metrics as the hub's message now (2.0: transcoded from the buffer's 1.0, each series
    /// with its family's metadata), snappy-compressed.
    fn new(b: Batch, hub: &Hub) -> Prepared {
        let message = hub.message();
        let body = match b.kind {
            Kind::Metrics => {
                let raw = match message {
                    ProtobufMessage::V1 => Ok(b.payload),
                    ProtobufMessage::V2 => transcode_v1(&b.payload, &mut hub.families.lock())
                        .map(|(raw, _)| raw)
                        .map_err(|e| format!("transcoding to remote write 2.0: {e}")),
                };
                raw.and_then(|raw| {
                    snap::raw::Encoder::new()
                        .compress_vec(&raw)
                        .map(Bytes::from)
                        .map_err(|e| format!("snappy: {e}"))
                })
            }
            Kind::Spans => Ok(Bytes::from(b.payload)),
        };
        Prepared {
            kind: b.kind,
            message,
            next_seq: b.next_seq,
            records: b.records,
            items: b.items,
            oldest_ms: b.oldest_ms,
            body,
        }
    }
}

enum Outcome {
    /// Acknowledged or refused for good: the cursor moves past it.
    Done,
    /// Its oldest records passed `max_age` while retrying, or the hub turned out not to read
    /// the message it was sent as: read again.
    Reread,
    Stopped,
}

/// The sender loop: read from the cursor, send, advance; the cursor file is written in the
/// background while the next batch goes out.
pub(crate) async fn run(
    buffer: Arc<Buffer>,
    hub: Arc<Hub>,
    opts: Arc<SendOptions>,
    headers: Arc<super::hub::CommonHeaders>,
    mut stop: watch::Receiver<bool>,
) {
    let mut persist: Option<JoinHandle<()>> = None;
    let mut backoff = opts.min_backoff;
    loop {
        if *stop.borrow() {
            break;
        }
        let seen = buffer.durable_end();
        let read = {
            let (b, h, max) = (buffer.clone(), hub.clone(), opts.max_batch_bytes);
            tokio::task::spawn_blocking(move || {
                b.read_batch(&h.dest, max)
                    .map(|o| o.map(|batch| Prepared::new(batch, &h)))
            })
            .await
        };
        let batch = match read {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => {
                tokio::select! {
                    _ = buffer.wait_beyond(seen) => {}
                    r = stop.changed() => if r.is_err() { break },
                }
                continue;
            }
            Ok(Err(e)) => {
                tracing::error!(hub = %hub.dest, error = %e, "forwarder: cannot read the buffer; retrying");
                if !pause(opts.max_backoff, &mut stop).await {
                    break;
                }
                continue;
            }
            Err(e) => {
                tracing::error!(hub = %hub.dest, error = %e, "forwarder: buffer read failed");
                break;
            }
        };
        match send(
            &buffer,
            &hub,
            &opts,
            &headers,
            &batch,
            &mut backoff,
            &mut stop,
        )
        .await
        {
            Outcome::Done => {
                if let Err(e) = buffer.advance(&hub.dest, batch.next_seq) {
                    tracing::error!(hub = %hub.dest, error = %e, "forwarder: cannot advance the cursor");
                }
                if let Some(p) = persist.take() {
                    let _ = p.await;
                }
                let (b, dest) = (buffer.clone(), hub.dest.clone());
                persist = Some(tokio::task::spawn_blocking(move || {
                    if let Err(e) = b.persist_cursor(&dest) {
                        tracing::warn!(hub = %dest, error = %e, "forwarder: cannot record the hub's cursor");
                    }
                }));
            }
            Outcome::Reread => {}
            Outcome::Stopped => break,
        }
    }
    if let Some(p) = persist.take() {
        let _ = p.await;
    }
}

/// Sleeps unless stopped first; false when stopped.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        r = stop.changed() => r.is_ok() && !*stop.borrow(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    buffer: &Buffer,
    hub: &Hub,
    opts: &SendOptions,
    headers: &CommonHeaders,
    batch: &Prepared,
    backoff: &mut Duration,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let c = &hub.counters;
    let mut attempt = 0u64;
    loop {
        let failure = match request(hub, headers, batch) {
            Err(reason) => {
                reject(hub, batch, None, &reason, 0);
                return Outcome::Done;
            }
            Ok(req) => {
                let answer = tokio::select! {
                    a = tokio::time::timeout(opts.timeout, exchange(&hub.client, req)) => a,
                    _ = stop.changed() => return Outcome::Stopped,
                };
                let v2 = batch.kind == Kind::Metrics && batch.message == ProtobufMessage::V2;
                match answer {
                    Ok(Ok((status, written, _))) if status.is_success() => {
                        if v2 && written.is_none() {
                            // What a 1.0 receiver answers after reading an empty request:
                            // 2.0 says to take it as 415.
                            hub.fall_back(&format!("{status} without the written counts"));
                            return Outcome::Reread;
                        }
                        c.sent_requests.fetch_add(1, Ordering::Relaxed);
                        let sent = match batch.kind {
                            Kind::Metrics => &c.sent_samples,
                            Kind::Spans => &c.sent_spans,
                        };
                        // A 2.0 hub's count, or (1.0 receivers may not say) all of them.
                        let written = match (batch.kind, written.items()) {
                            (Kind::Metrics, Some(n)) => n.min(batch.items),
                            (Kind::Metrics, None) if v2 => 0,
                            _ => batch.items,
                        };
                        if written < batch.items {
                            let missing = batch.items - written;
                            c.unwritten_samples.fetch_add(missing, Ordering::Relaxed);
                            tracing::warn!(hub = %hub.dest, %status, sent = batch.items, written, "forwarder: the hub acknowledged a batch but reports samples not written");
                        }
                        sent.fetch_add(written, Ordering::Relaxed);
                        if attempt > 0 {
                            tracing::info!(hub = %hub.dest, attempts = attempt + 1, "forwarder: hub accepted the batch after retries");
                        }
                        *backoff = opts.min_backoff;
                        return Outcome::Done;
                    }
                    Ok(Ok((status, _, body)))
                        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS =>
                    {
                        format!("hub answered {status}: {}", quote(&body))
                    }
                    Ok(Ok((StatusCode::UNSUPPORTED_MEDIA_TYPE, _, body))) if v2 => {
                        hub.fall_back(&format!("415: {}", quote(&body)));
                        return Outcome::Reread;
                    }
                    Ok(Ok((status, written, body))) => {
                        // The samples a 2.0 hub reports written were taken (a partial write).
                        let taken = match batch.kind {
                            Kind::Metrics => written.items().unwrap_or(0).min(batch.items),
                            Kind::Spans => 0,
                        };
                        c.sent_samples.fetch_add(taken, Ordering::Relaxed);
                        reject(hub, batch, Some(status), &quote(&body), taken);
                        *backoff = opts.min_backoff;
                        return Outcome::Done;
                    }
                    Ok(Err(e)) => e,
                    Err(_) => format!("no answer within {:?}", opts.timeout),
                }
            }
        };
        attempt += 1;
        c.retries.fetch_add(1, Ordering::Relaxed);
        if attempt.is_power_of_two() {
            tracing::warn!(hub = %hub.dest, attempt, error = %failure, retry_in = ?*backoff, "forwarder: sending failed; retrying");
        } else {
            tracing::debug!(hub = %hub.dest, attempt, error = %failure, "forwarder: sending failed; retrying");
        }
        if !pause(*backoff, stop).await {
            return Outcome::Stopped;
        }
        *backoff = (*backoff * 2).min(opts.max_backoff).max(opts.min_backoff);
        if buffer
            .max_age_cutoff_ms()
            .is_some_and(|cut| batch.oldest_ms < cut)
        {
            return Outcome::Reread;
        }
    }
}

/// Counts a refused batch, less the `taken` items the hub reports written.
fn reject(hub: &Hub, batch: &Prepared, status: Option<StatusCode>, answer: &str, taken: u64) {
    let c = &hub.counters;
    c.rejected_records
        .fetch_add(batch.records as u64, Ordering::Relaxed);
    c.rejected_items
        .fetch_add(batch.items - taken, Ordering::Relaxed);
    tracing::warn!(
        hub = %hub.dest,
        status = status.map(|s| s.as_u16()),
        answer,
        items = batch.items,
        written = taken,
        records = batch.records,
        kind = batch.kind.as_str(),
        "forwarder: the hub refused a batch; it is dropped"
    );
}

fn request(hub: &Hub, h: &CommonHeaders, batch: &Prepared) -> Result<Request<Full<Bytes>>, String> {
    let body = batch.body.clone()?;
    let uri = match batch.kind {
        Kind::Metrics => hub.write_uri.clone()?,
        Kind::Spans => hub.traces_uri.clone()?,
    };
    let content_type = match batch.kind {
        Kind::Metrics => batch.message.content_type(),
        Kind::Spans => "application/x-protobuf",
    };
    let mut b = Request::post(uri)
        .header(CONTENT_TYPE, content_type)
        .header(USER_AGENT, h.user_agent.clone())
        .header(super::CLUSTER_HEADER, h.cluster.clone())
        .header(super::AGENT_HEADER, h.agent.clone())
        .header(super::ITEMS_HEADER, batch.items)
        .header(super::OLDEST_HEADER, batch.oldest_ms);
    for (k, v) in &h.extra {
        b = b.header(k, v.clone());
    }
    if batch.kind == Kind::Metrics {
        b = b
            .header(CONTENT_ENCODING, "snappy")
            .header(VERSION_HEADER, batch.message.version());
    }
    b.body(Full::new(body)).map_err(|e| e.to_string())
}

/// The `X-Prometheus-Remote-Write-*-Written` counts of an answer, where given.
#[derive(Clone, Copy, Debug, Default)]
struct WrittenCounts {
    samples: Option<u64>,
    histograms: Option<u64>,
    exemplars: Option<u64>,
}

impl WrittenCounts {
    fn from(headers: &http::HeaderMap) -> WrittenCounts {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        WrittenCounts {
            samples: get(SAMPLES_WRITTEN_HEADER),
            histograms: get(HISTOGRAMS_WRITTEN_HEADER),
            exemplars: get(EXEMPLARS_WRITTEN_HEADER),
        }
    }

    /// Float and native histogram samples written (a buffer record counts both as items),
    /// when the receiver says how many samples it wrote.
    fn items(&self) -> Option<u64> {
        self.samples
            .map(|n| n.saturating_add(self.histograms.unwrap_or(0)))
    }

    /// None of the three given.
    fn is_none(&self) -> bool {
        self.samples.is_none() && self.histograms.is_none() && self.exemplars.is_none()
    }
}

/// Sends and reads the answer (up to a limit, so the connection can be kept).
async fn exchange(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, WrittenCounts, Bytes), String> {
    let resp = client.request(req).await.map_err(|e| chain(&e))?;
    let status = resp.status();
    let written = WrittenCounts::from(resp.headers());
    let body = Limited::new(resp.into_body(), ANSWER_LIMIT)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Ok((status, written, body))
}

/// An error with its causes, which the client's terse errors need.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn quote(body: &[u8]) -> String {
    let cut = &body[..body.len().min(QUOTED)];
    String::from_utf8_lossy(cut).trim().to_string()
}
