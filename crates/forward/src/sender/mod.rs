//! One sender task per destination: reads records from its cursor, batches consecutive
//! records of one kind, sends them, retries 5xx / 429 / network errors with backoff, drops
//! (counted, logged) batches answered with another 4xx, then advances its cursor.

mod hub;
mod metrics;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Buffer, Dropped, ProtobufMessage};

/// The headers every forwarded request carries, which a hub reads to know its agents
/// (lower case, as `http::HeaderName` compares them).
pub const CLUSTER_HEADER: &str = "x-meshlens-cluster";
pub const AGENT_HEADER: &str = "x-meshlens-agent";
/// Samples or spans in the body.
pub const ITEMS_HEADER: &str = "x-meshlens-items";
/// Unix ms at which the oldest record of the body was buffered.
pub const OLDEST_HEADER: &str = "x-meshlens-oldest";

#[derive(Clone, Debug)]
pub struct HubOptions {
    /// The hub's base URL, e.g. `http://hub:9090`; metrics go to `/api/v1/write`, spans to
    /// `/v1/traces`. Also the hub's destination name in the buffer, exactly as given.
    pub url: String,
    /// For `https://` hubs; None: the system's roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Clone, Debug)]
pub struct SendOptions {
    /// Sent as `X-Meshlens-Cluster` and `X-Meshlens-Agent` with every request.
    pub cluster: String,
    pub agent_id: String,
    /// Buffered (snappy-compressed) bytes per request, at most; a larger single record is
    /// sent alone.
    pub max_batch_bytes: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
    /// Sent with every request as given: `Authorization` for hubs behind basic auth or a
    /// bearer token, `X-Scope-OrgID` for a multi-tenant hub.
    pub headers: Vec<(String, String)>,
    /// The remote-write message metrics are sent as (Prometheus's `protobuf_message`). With
    /// 2.0 each series carries its family's metadata, and a hub that answers 415, or 2xx
    /// without the `X-Prometheus-Remote-Write-*-Written` counts 2.0 receivers give (a 1.0
    /// receiver that read an empty request), is sent 1.0 from then on.
    pub protobuf_message: ProtobufMessage,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            cluster: String::new(),
            agent_id: String::new(),
            max_batch_bytes: 256 << 10,
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            headers: Vec::new(),
            protobuf_message: ProtobufMessage::V1,
        }
    }
}

/// What one hub was sent, for `/metrics` and tests.
#[derive(Clone, Debug, Default)]
pub struct HubStats {
    pub url: String,
    pub sent_samples: u64,
    pub sent_spans: u64,
    pub sent_requests: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
    /// Batches answered with a 4xx other than 429, dropped (only the samples the hub did
    /// not report written, when it reports).
    pub rejected: Dropped,
    /// Samples of acknowledged requests that the hub's written counts (float samples plus
    /// native histograms) say it did not write.
    pub unwritten_samples: u64,
    /// The message metrics are sent as now (1.0 after a fallback).
    pub protobuf_message: ProtobufMessage,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub sent_samples: AtomicU64,
    pub sent_spans: AtomicU64,
    pub sent_requests: AtomicU64,
    pub retries: AtomicU64,
    pub rejected_records: AtomicU64,
    pub rejected_items: AtomicU64,
    pub unwritten_samples: AtomicU64,
}

pub struct Forwarder {
    buffer: Arc<Buffer>,
    hubs: Vec<Arc<hub::Hub>>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Forwarder {
    /// Starts one sender per hub; must run inside a tokio runtime. A hub not yet a
    /// destination of the buffer is added (from the oldest record kept). A hub named twice
    /// gets one sender.
    pub fn start(buffer: Arc<Buffer>, hubs: Vec<HubOptions>, opts: SendOptions) -> Forwarder {
        let (stop, _) = watch::channel(false);
        let headers = Arc::new(hub::CommonHeaders::new(&opts));
        let opts = Arc::new(opts);
        let mut started: Vec<Arc<hub::Hub>> = Vec::new();
        let mut tasks = Vec::new();
        for h in hubs {
            if started.iter().any(|s| s.dest == h.url) {
                tracing::warn!(hub = %h.url, "forwarder: hub named twice; one sender");
                continue;
            }
            if let Err(e) = buffer.ensure_destination(&h.url) {
                tracing::error!(hub = %h.url, error = %e, "forwarder: cannot record the hub's cursor; sending anyway");
            }
            let hub = Arc::new(hub::Hub::new(&h, &opts));
            started.push(hub.clone());
            tasks.push(tokio::spawn(hub::run(
                buffer.clone(),
                hub,
                opts.clone(),
                headers.clone(),
                stop.subscribe(),
            )));
        }
        Forwarder {
            buffer,
            hubs: started,
            tasks,
            stop,
        }
    }

    /// Waits until every hub has everything buffered or `timeout` passed, then stops the
    /// senders; true when all caught up.
    pub async fn drain(mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let caught_up = loop {
            if self.hubs.iter().all(|h| self.buffer.caught_up(&h.dest)) {
                break true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break false;
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(10))).await;
        };
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let buffer = self.buffer.clone();
        let dests: Vec<String> = self.hubs.iter().map(|h| h.dest.clone()).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for d in dests {
                if let Err(e) = buffer.persist_cursor(&d) {
                    tracing::warn!(hub = %d, error = %e, "forwarder: cannot record the hub's cursor");
                }
            }
        })
        .await;
        caught_up
    }

    pub fn hub_stats(&self) -> Vec<HubStats> {
        self.hubs
            .iter()
            .map(|h| {
                let c = &h.counters;
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                HubStats {
                    url: h.dest.clone(),
                    sent_samples: get(&c.sent_samples),
                    sent_spans: get(&c.sent_spans),
                    sent_requests: get(&c.sent_requests),
                    retries: get(&c.retries),
                    rejected: Dropped {
                        records: get(&c.rejected_records),
                        items: get(&c.rejected_items),
                    },
                    unwritten_samples: get(&c.unwritten_samples),
                    protobuf_message: h.message(),
                }
            })
            .collect()
    }

    pub fn buffer(&self) -> &Arc<Buffer> {
        &self.buffer
    }

    /// Appends this forwarder's and its buffer's series in the text exposition format.
    pub fn render_metrics(&self, out: &mut String) {
        metrics::render(&self.buffer.stats(), &self.hub_stats(), out);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
