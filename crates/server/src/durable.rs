//! Durable writes in ClickHouse mode: every metric and span write of a tenant is appended to
//! a write-ahead buffer on local disk and acknowledged once it is there; a drainer thread
//! then inserts the buffered batches into ClickHouse, in order.
//!
//! Why: ClickHouse is a remote cluster that restarts, loses a shard or stalls on merges.
//! Without a buffer each of those is an error to every sender (and lost data for senders
//! that do not retry); with one, ingest only depends on the local disk.
//!
//! Contract.
//! - A write returns `Ok` once its batch is durable in the buffer: fsynced with
//!   `--wal-fsync=always` (the default), written to the page cache with an interval policy
//!   (which then survives a crash of meshlens but not of the machine, as the TSDB's WAL).
//! - The drainer inserts batches through the ClickHouse stores and moves its cursor
//!   (fsynced) only after ClickHouse acknowledged the insert. A failed insert is retried
//!   with exponential backoff (200 ms doubling to 10 s) for as long as it takes; one
//!   warning when inserts start failing, one message when they succeed again.
//! - Inserts are therefore at-least-once: a batch inserted just before a crash (its cursor
//!   not yet moved), or partly inserted when one shard was down, is inserted again. Both
//!   stores deduplicate on the query side (see `meshlens_clickhouse::metrics` and
//!   `meshlens_clickhouse::spans`), so a retried batch reads back exactly once.
//! - What is acknowledged is never dropped by the drainer: there is no age limit, and when
//!   the buffer is full (see [`DurableOptions::max_size_bytes`]) new writes are refused
//!   with 503, which remote-write and span senders retry. The one exception is a record
//!   that cannot be decoded any more (disk damage caught by the buffer's checksums): it is
//!   skipped, logged and counted, since retrying it could never succeed.
//!
//! Location: `<tenant dir>/clickhouse-buffer` (the data dir itself without
//! `--multitenancy`), next to the data dir's lock, so a second process cannot drain it.
//!
//! Record formats are the forwarder's wire formats, so consecutive records concatenate into
//! one insert: metrics (and metric metadata, buffered only when a family's changes) as an
//! uncompressed remote-write `WriteRequest`, spans as a Zipkin
//! proto3 `ListOfSpans` (not OTLP as the agent sends: the OTLP mapping loses Zipkin's
//! `shared` and `debug` flags and endpoint addresses, which the stores keep).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshlens_forward::{Buffer, BufferOptions, ForwardError, Kind};
use meshlens_ingest::remote_write;
use meshlens_model::{
    AppendOutcome, MetricMetadata, MetricWriter, RawSeries, SeriesHistograms, Span, SpanWriter,
    StorageError, TimeSeries,
};
use parking_lot::{Condvar, Mutex};

/// The buffer's directory under a tenant's directory.
pub const BUFFER_DIR: &str = "clickhouse-buffer";

/// The drainer's cursor name in the buffer.
pub const DESTINATION: &str = "clickhouse";

/// Limits and pacing of a tenant's ClickHouse buffer.
#[derive(Clone, Debug)]
pub struct DurableOptions {
    /// Bytes on disk (compressed records) at most; beyond, writes are refused with 503
    /// until the drainer catches up. Default 2 GiB: about an hour of 1M samples/s
    /// (`--storage.clickhouse.buffer-max-size`).
    pub max_size_bytes: u64,
    /// fdatasync before acknowledging; set from `--wal-fsync`.
    pub fsync: bool,
    /// Buffered bytes read per insert, at most (a single larger record goes alone).
    pub max_batch_bytes: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How long shutdown keeps inserting what is buffered; the rest is inserted after the
    /// next start (`--storage.clickhouse.shutdown-drain-timeout`).
    pub drain_timeout: Duration,
}

impl Default for DurableOptions {
    fn default() -> Self {
        DurableOptions {
            max_size_bytes: 2 << 30,
            fsync: true,
            max_batch_bytes: 1 << 20,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// What the buffer holds and how the drainer fares: for `/metrics` and the storage status.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ClickHouseBufferStats {
    pub dir: PathBuf,
    /// Records (write batches) and bytes buffered and not yet in ClickHouse.
    pub pending_records: u64,
    pub pending_bytes: u64,
    /// Age of the oldest record not yet in ClickHouse; 0 when caught up.
    pub oldest_pending_age_seconds: f64,
    /// Bytes of the buffer on disk, and its limit.
    pub buffer_bytes: u64,
    pub max_size_bytes: u64,
    /// Writes refused because the buffer was full.
    pub refused_records: u64,
    /// Whether the latest insert failed (the drainer is backing off).
    pub failing: bool,
    pub last_error: Option<String>,
    pub last_error_unix_ms: Option<i64>,
    /// Inserts that failed and were retried.
    pub retries: u64,
    /// Inserts by kind (`metrics`, `spans`) that succeeded and that failed.
    pub inserts_ok: [u64; 2],
    pub inserts_failed: [u64; 2],
    /// Samples and spans inserted.
    pub inserted_samples: u64,
    pub inserted_spans: u64,
    /// Records skipped because they could not be read or decoded.
    pub dropped_records: u64,
}

#[derive(Default)]
struct Health {
    failing: bool,
    last_error: Option<String>,
    last_error_ms: Option<i64>,
}

#[derive(Default)]
struct Wake {
    /// Bumped by every append, so the drainer never sleeps past a record.
    appended: u64,
    /// Set by shutdown: keep draining until then, at most.
    stop_by: Option<Instant>,
}

/// One tenant's buffer, its writers and its drainer.
pub struct ClickHouseBuffer {
    tenant: String,
    dir: PathBuf,
    buffer: Arc<Buffer>,
    metrics: Arc<dyn MetricWriter>,
    spans: Arc<dyn SpanWriter>,
    opts: DurableOptions,
    wake: Mutex<Wake>,
    woken: Condvar,
    health: Mutex<Health>,
    inserts_ok: [AtomicU64; 2],
    inserts_failed: [AtomicU64; 2],
    inserted_items: [AtomicU64; 2],
    undecodable: AtomicU64,
    started: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Metadata buffered by this process, per family: only changes are buffered again
    /// (every scrape repeats its targets' metadata).
    buffered_metadata: Mutex<HashMap<String, MetricMetadata>>,
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Metrics => 0,
        Kind::Spans => 1,
    }
}

/// Why a buffered batch was not inserted.
enum InsertError {
    /// ClickHouse failed: retried.
    Storage(StorageError),
    /// The payload is not what a writer appended: skipped.
    Undecodable(String),
}

impl ClickHouseBuffer {
    /// Opens (or recovers) the buffer in `dir`; `metrics` and `spans` are the ClickHouse
    /// stores the drainer inserts into. Blocking. The drainer starts with
    /// [`start`](Self::start).
    pub fn open(
        tenant: &str,
        dir: &Path,
        metrics: Arc<dyn MetricWriter>,
        spans: Arc<dyn SpanWriter>,
        opts: DurableOptions,
    ) -> Result<Arc<ClickHouseBuffer>, ForwardError> {
        let buffer = Buffer::open(
            BufferOptions {
                dir: dir.to_path_buf(),
                max_size_bytes: opts.max_size_bytes,
                // Acknowledged data is never aged out: only a full buffer stops writes.
                max_age: Duration::ZERO,
                drop_oldest: false,
                fsync: opts.fsync,
                ..Default::default()
            },
            &[DESTINATION.to_string()],
        )?;
        let pending = buffer
            .stats()
            .destinations
            .first()
            .map_or(0, |d| d.buffered_records);
        if pending > 0 {
            tracing::info!(tenant, records = pending, dir = %dir.display(),
                "clickhouse buffer: inserting what an earlier run acknowledged");
        }
        Ok(Arc::new(ClickHouseBuffer {
            tenant: tenant.to_string(),
            dir: dir.to_path_buf(),
            buffer,
            metrics,
            spans,
            opts,
            wake: Mutex::new(Wake::default()),
            woken: Condvar::new(),
            health: Mutex::new(Health::default()),
            inserts_ok: Default::default(),
            inserts_failed: Default::default(),
            inserted_items: Default::default(),
            undecodable: AtomicU64::new(0),
            started: AtomicBool::new(false),
            thread: Mutex::new(None),
            buffered_metadata: Mutex::new(HashMap::new()),
        }))
    }

    /// Starts the drainer thread (once).
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        if self.started.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name("clickhouse-drain".into())
            .spawn(move || me.drain())?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    /// The writer metric ingest goes through: acknowledges once buffered.
    pub fn metric_writer(self: &Arc<Self>) -> Arc<dyn MetricWriter> {
        Arc::new(DurableMetrics { buf: self.clone() })
    }

    /// The writer span ingest goes through: acknowledges once buffered.
    pub fn span_writer(self: &Arc<Self>) -> Arc<dyn SpanWriter> {
        Arc::new(DurableSpans { buf: self.clone() })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Whether everything acknowledged so far is in ClickHouse.
    pub fn caught_up(&self) -> bool {
        self.buffer.caught_up(DESTINATION)
    }

    pub fn stats(&self) -> ClickHouseBufferStats {
        let b = self.buffer.stats();
        let d = b.destinations.first().cloned().unwrap_or_default();
        let h = self.health.lock();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClickHouseBufferStats {
            dir: self.dir.clone(),
            pending_records: d.buffered_records,
            pending_bytes: d.buffered_bytes,
            oldest_pending_age_seconds: d.lag_seconds,
            buffer_bytes: b.total_bytes,
            max_size_bytes: self.opts.max_size_bytes,
            refused_records: b.refused_records,
            failing: h.failing,
            last_error: h.last_error.clone(),
            last_error_unix_ms: h.last_error_ms,
            retries: self.retries(),
            inserts_ok: [get(&self.inserts_ok[0]), get(&self.inserts_ok[1])],
            inserts_failed: [get(&self.inserts_failed[0]), get(&self.inserts_failed[1])],
            inserted_samples: get(&self.inserted_items[0]),
            inserted_spans: get(&self.inserted_items[1]),
            dropped_records: get(&self.undecodable)
                + d.dropped_corrupt.records
                + d.dropped_full.records
                + d.dropped_max_age.records,
        }
    }

    /// Refuses further writes, keeps inserting for up to `drain_timeout` (stopping at the
    /// first failure: what is left stays buffered for the next start), then stops the
    /// drainer. Blocking.
    pub fn shutdown(&self) {
        self.buffer.close();
        {
            let mut w = self.wake.lock();
            w.stop_by = Some(Instant::now() + self.opts.drain_timeout);
        }
        self.woken.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        let left = self.stats().pending_records;
        if left > 0 {
            tracing::info!(tenant = %self.tenant, records = left,
                "clickhouse buffer: records left for the next start");
        }
    }

    fn append(&self, kind: Kind, items: u64, payload: &[u8]) -> Result<(), StorageError> {
        let items = u32::try_from(items).unwrap_or(u32::MAX);
        self.buffer
            .append(kind, items, payload)
            .map_err(crate::agent::storage_error)?;
        self.wake.lock().appended += 1;
        self.woken.notify_all();
        Ok(())
    }

    /// Every failed insert is retried, so the retries are the failures of both kinds.
    fn retries(&self) -> u64 {
        self.inserts_failed
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    /// After a failure: records it and, unless shutting down, waits out `backoff` and
    /// doubles it. Returns whether the drainer stops.
    fn back_off(&self, error: &str, stopping: bool, backoff: &mut Duration) -> bool {
        self.failed(error);
        if stopping {
            return true;
        }
        self.pause(*backoff);
        *backoff = (*backoff * 2).min(self.opts.max_backoff);
        false
    }

    fn stop_by(&self) -> Option<Instant> {
        self.wake.lock().stop_by
    }

    /// Sleeps up to `d`, or until shutdown is asked for.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut w = self.wake.lock();
        while w.stop_by.is_none() {
            if self.woken.wait_until(&mut w, until).timed_out() {
                break;
            }
        }
    }

    /// Waits for an append after generation `seen` (or shutdown), a second at most.
    fn wait_for_records(&self, seen: u64) {
        let mut w = self.wake.lock();
        if w.appended == seen && w.stop_by.is_none() {
            self.woken.wait_for(&mut w, Duration::from_secs(1));
        }
    }

    fn drain(&self) {
        let mut backoff = self.opts.min_backoff;
        loop {
            let stop_by = self.stop_by();
            if stop_by.is_some_and(|t| Instant::now() >= t) {
                return;
            }
            let seen = self.wake.lock().appended;
            let batch = match self
                .buffer
                .read_batch(DESTINATION, self.opts.max_batch_bytes)
            {
                Ok(Some(b)) => b,
                Ok(None) if stop_by.is_some() => return,
                Ok(None) => {
                    self.wait_for_records(seen);
                    continue;
                }
                Err(e) => {
                    let error = format!("reading the buffer: {e}");
                    if self.back_off(&error, stop_by.is_some(), &mut backoff) {
                        return;
                    }
                    continue;
                }
            };
            let k = kind_index(batch.kind);
            match self.insert(batch.kind, &batch.payload) {
                Ok(()) => {
                    self.inserts_ok[k].fetch_add(1, Ordering::Relaxed);
                    self.inserted_items[k].fetch_add(batch.items, Ordering::Relaxed);
                    self.recovered();
                    backoff = self.opts.min_backoff;
                }
                Err(InsertError::Undecodable(reason)) => {
                    tracing::error!(tenant = %self.tenant, first_seq = batch.first_seq,
                        records = batch.records, reason,
                        "clickhouse buffer: records cannot be decoded; they are skipped");
                    self.undecodable
                        .fetch_add(u64::from(batch.records), Ordering::Relaxed);
                }
                Err(InsertError::Storage(e)) => {
                    self.inserts_failed[k].fetch_add(1, Ordering::Relaxed);
                    if self.back_off(&e.to_string(), stop_by.is_some(), &mut backoff) {
                        return;
                    }
                    continue;
                }
            }
            // Only now is the batch ClickHouse's: a crash before this line inserts it again.
            if let Err(e) = self.buffer.commit(DESTINATION, batch.next_seq) {
                tracing::warn!(tenant = %self.tenant, error = %e,
                    "clickhouse buffer: cannot record the drainer's cursor (retried with the next batch)");
            }
        }
    }

    fn insert(&self, kind: Kind, payload: &[u8]) -> Result<(), InsertError> {
        match kind {
            Kind::Metrics => {
                let req = remote_write::wire::parse(payload)
                    .map_err(|e| InsertError::Undecodable(e.to_string()))?;
                let series: Vec<TimeSeries> =
                    req.iter().map(|s| RawSeries::to_time_series(&s)).collect();
                if !series.is_empty() {
                    self.metrics.append(&series).map_err(InsertError::Storage)?;
                }
                if !req.histograms.is_empty() {
                    // Buffered records were admitted already: nothing here is refused.
                    let (histograms, _) = remote_write::request_histograms(&req);
                    self.metrics
                        .append_histograms(&histograms)
                        .map_err(InsertError::Storage)?;
                }
                if !req.metadata.is_empty() {
                    self.metrics
                        .append_metadata(&req.metadata)
                        .map_err(InsertError::Storage)?;
                }
                Ok(())
            }
            Kind::Spans => {
                let spans = meshlens_ingest::zipkin::decode_proto(payload)
                    .map_err(|e| InsertError::Undecodable(e.to_string()))?;
                if spans.is_empty() {
                    return Ok(());
                }
                self.spans.write(&spans).map_err(InsertError::Storage)
            }
        }
    }

    /// Logs only the change from healthy to failing; later failures just count.
    fn failed(&self, error: &str) {
        let mut h = self.health.lock();
        if !h.failing {
            tracing::warn!(tenant = %self.tenant, error,
                "clickhouse inserts failing; writes stay buffered and are retried with backoff");
        }
        h.failing = true;
        h.last_error = Some(error.to_string());
        h.last_error_ms = Some(meshlens_model::time::now_ms());
    }

    fn recovered(&self) {
        let mut h = self.health.lock();
        if h.failing {
            h.failing = false;
            tracing::info!(tenant = %self.tenant, retries = self.retries(),
                "clickhouse inserts succeed again; draining the buffer");
        }
    }
}

/// The metric writer of a tenant in ClickHouse mode.
struct DurableMetrics {
    buf: Arc<ClickHouseBuffer>,
}

impl MetricWriter for DurableMetrics {
    /// Buffers what the ClickHouse store would store, answering with what it would answer
    /// (`series_created` aside: only ClickHouse knows that).
    fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
        let (kept, outcome) = meshlens_clickhouse::metrics::admit(batch);
        if kept.is_empty() {
            return Ok(outcome);
        }
        let refs: Vec<&TimeSeries> = kept.iter().collect();
        let payload = remote_write::encode_protobuf_stamped(&refs, &[], &[]);
        self.buf.append(Kind::Metrics, outcome.accepted, &payload)?;
        Ok(outcome)
    }

    /// Buffers native histograms as a remote-write record of histogram samples, as the
    /// agent does; the drainer inserts them into ClickHouse's `histograms` table.
    fn append_histograms(&self, batch: &[SeriesHistograms]) -> Result<AppendOutcome, StorageError> {
        let (kept, outcome) = meshlens_clickhouse::metrics::admit(batch);
        if kept.is_empty() {
            return Ok(outcome);
        }
        let refs: Vec<&SeriesHistograms> = kept.iter().collect();
        let mut payload = Vec::new();
        remote_write::encode_histograms_stamped(&mut payload, &refs, &[]);
        self.buf.append(Kind::Metrics, outcome.accepted, &payload)?;
        Ok(outcome)
    }

    /// Buffers the families whose metadata is new or changed, as a remote-write record
    /// without series; the drainer inserts it into ClickHouse's metadata table.
    fn append_metadata(&self, metadata: &[MetricMetadata]) -> Result<(), StorageError> {
        let changed: Vec<MetricMetadata> = {
            let known = self.buf.buffered_metadata.lock();
            metadata
                .iter()
                .filter(|m| known.get(&m.metric_family) != Some(*m))
                .cloned()
                .collect()
        };
        if changed.is_empty() {
            return Ok(());
        }
        let payload = remote_write::encode_protobuf_stamped(&[], &changed, &[]);
        self.buf.append(Kind::Metrics, 0, &payload)?;
        let mut known = self.buf.buffered_metadata.lock();
        if known.len() > 1 << 20 {
            known.clear();
        }
        for m in changed {
            known.insert(m.metric_family.clone(), m);
        }
        Ok(())
    }
}

/// The span writer of a tenant in ClickHouse mode.
struct DurableSpans {
    buf: Arc<ClickHouseBuffer>,
}

impl SpanWriter for DurableSpans {
    fn write(&self, spans: &[Span]) -> Result<(), StorageError> {
        if spans.is_empty() {
            return Ok(());
        }
        let payload = meshlens_ingest::zipkin::encode_proto(spans);
        self.buf.append(Kind::Spans, spans.len() as u64, &payload)
    }
}

/// The buffers' series in the text exposition format, one `tenant` label each.
pub fn render_metrics(buffers: &[(String, ClickHouseBufferStats)], out: &mut String) {
    use std::fmt::Write;
    if buffers.is_empty() {
        return;
    }
    let esc = meshlens_model::escape_label_value;
    let mut family =
        |name: &str, kind: &str, help: &str, v: &dyn Fn(&ClickHouseBufferStats) -> String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (t, s) in buffers {
                let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", esc(t), v(s));
            }
        };
    family(
        "meshlens_clickhouse_buffer_pending_records",
        "gauge",
        "Write batches acknowledged and buffered, not yet inserted into ClickHouse.",
        &|s| s.pending_records.to_string(),
    );
    family(
        "meshlens_clickhouse_buffer_pending_bytes",
        "gauge",
        "Bytes (compressed) acknowledged and buffered, not yet inserted into ClickHouse.",
        &|s| s.pending_bytes.to_string(),
    );
    family(
        "meshlens_clickhouse_buffer_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest write not yet inserted into ClickHouse; 0 when caught up.",
        &|s| s.oldest_pending_age_seconds.to_string(),
    );
    family(
        "meshlens_clickhouse_buffer_bytes",
        "gauge",
        "Bytes of the ClickHouse write buffer on disk.",
        &|s| s.buffer_bytes.to_string(),
    );
    family(
        "meshlens_clickhouse_buffer_refused_records_total",
        "counter",
        "Writes refused (503) because the ClickHouse write buffer was full.",
        &|s| s.refused_records.to_string(),
    );
    family(
        "meshlens_clickhouse_buffer_dropped_records_total",
        "counter",
        "Buffered records skipped because they could not be read back or decoded.",
        &|s| s.dropped_records.to_string(),
    );
    family(
        "meshlens_clickhouse_insert_retries_total",
        "counter",
        "ClickHouse inserts from the buffer that failed and are retried.",
        &|s| s.retries.to_string(),
    );
    let name = "meshlens_clickhouse_inserts_total";
    let _ = writeln!(
        out,
        "# HELP {name} Inserts from the write buffer into ClickHouse, by kind and result.\n# TYPE {name} counter"
    );
    for (t, s) in buffers {
        for (k, kind) in ["metrics", "spans"].iter().enumerate() {
            for (result, n) in [
                ("success", s.inserts_ok[k]),
                ("failure", s.inserts_failed[k]),
            ] {
                let _ = writeln!(
                    out,
                    "{name}{{tenant=\"{}\",kind=\"{kind}\",result=\"{result}\"}} {n}",
                    esc(t)
                );
            }
        }
    }
    let name = "meshlens_clickhouse_inserted_items_total";
    let _ = writeln!(
        out,
        "# HELP {name} Samples (kind=\"metrics\") and spans (kind=\"spans\") inserted into ClickHouse from the write buffer.\n# TYPE {name} counter"
    );
    for (t, s) in buffers {
        for (kind, n) in [("metrics", s.inserted_samples), ("spans", s.inserted_spans)] {
            let _ = writeln!(out, "{name}{{tenant=\"{}\",kind=\"{kind}\"}} {n}", esc(t));
        }
    }
}

/// Opens `tenant`'s buffer in `dir`/[`BUFFER_DIR`] over the ClickHouse stores and starts its
/// drainer: the server's wiring in ClickHouse mode.
pub(crate) async fn open_for(
    opts: &crate::ServerOptions,
    tenant: &str,
    dir: &Path,
    ch: &meshlens_clickhouse::ClickHouseStorage,
) -> Result<Arc<ClickHouseBuffer>, crate::ServerError> {
    let mut o = opts.clickhouse_buffer.clone();
    o.fsync = matches!(opts.tsdb.wal_fsync, meshlens_tsdb::FsyncPolicy::EveryAppend);
    let buffer_dir = dir.join(BUFFER_DIR);
    let (metrics, spans): (Arc<dyn MetricWriter>, Arc<dyn SpanWriter>) =
        (ch.metric_store(), ch.span_store());
    let id = tenant.to_string();
    let at = buffer_dir.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let b =
            ClickHouseBuffer::open(&id, &at, metrics, spans, o).map_err(std::io::Error::other)?;
        b.start()?;
        Ok::<_, std::io::Error>(b)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    opened.map_err(|source| crate::ServerError::DataDir {
        dir: buffer_dir,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_model::{Annotation, Endpoint, Labels, Sample, SpanKind, TraceId};

    /// A store that fails its first `fail` calls, then keeps what it is given.
    #[derive(Default)]
    struct Sink {
        fail: AtomicU64,
        series: Mutex<Vec<TimeSeries>>,
        spans: Mutex<Vec<Span>>,
        metadata: Mutex<Vec<MetricMetadata>>,
    }

    impl Sink {
        fn failing(n: u64) -> Arc<Sink> {
            Arc::new(Sink {
                fail: AtomicU64::new(n),
                ..Default::default()
            })
        }

        fn attempt(&self) -> Result<(), StorageError> {
            let left = self.fail.load(Ordering::Relaxed);
            if left > 0 {
                self.fail.store(left - 1, Ordering::Relaxed);
                return Err(StorageError::Unavailable {
                    reason: "ClickHouse at http://ch:8123/ is unreachable".into(),
                });
            }
            Ok(())
        }
    }

    impl MetricWriter for Sink {
        fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
            self.attempt()?;
            self.series.lock().extend_from_slice(batch);
            Ok(AppendOutcome::default())
        }

        fn append_metadata(&self, metadata: &[MetricMetadata]) -> Result<(), StorageError> {
            self.attempt()?;
            self.metadata.lock().extend_from_slice(metadata);
            Ok(())
        }
    }

    impl SpanWriter for Sink {
        fn write(&self, spans: &[Span]) -> Result<(), StorageError> {
            self.attempt()?;
            self.spans.lock().extend_from_slice(spans);
            Ok(())
        }
    }

    fn opts() -> DurableOptions {
        DurableOptions {
            fsync: false,
            min_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(20),
            drain_timeout: Duration::from_millis(200),
            ..Default::default()
        }
    }

    fn series(i: i64) -> TimeSeries {
        TimeSeries {
            labels: Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]),
            samples: vec![Sample::new(1_700_000_000_000 + i, i as f64)],
        }
    }

    fn span(i: u64) -> Span {
        Span {
            trace_id: TraceId {
                high: 7,
                low: i + 1,
                is_128: true,
            },
            id: i + 1,
            parent_id: (i % 2 == 1).then_some(9),
            name: Some("get /items".into()),
            kind: Some(SpanKind::Server),
            timestamp: Some(1_700_000_000_000_000 + i),
            duration: Some(10),
            local_endpoint: Some(Endpoint {
                service_name: Some("api".into()),
                ipv4: Some("10.0.0.1".into()),
                ipv6: Some("2001:db8::1".into()),
                port: Some(8080),
            }),
            remote_endpoint: Some(Endpoint {
                service_name: None,
                ipv4: Some("10.0.0.2".into()),
                ipv6: None,
                port: None,
            }),
            annotations: vec![Annotation {
                timestamp: 1_700_000_000_000_001,
                value: "ws".into(),
            }],
            tags: [("error".to_string(), String::new())].into(),
            debug: i.is_multiple_of(3),
            shared: i.is_multiple_of(2),
        }
    }

    fn wait_caught_up(b: &ClickHouseBuffer) {
        let until = Instant::now() + Duration::from_secs(20);
        while !b.caught_up() {
            assert!(Instant::now() < until, "not drained: {:?}", b.stats());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn writes_are_acknowledged_while_inserts_fail_and_inserted_in_order_after() {
        let tmp = tempfile::tempdir().unwrap();
        let (m, s) = (Sink::failing(3), Sink::failing(2));
        let b = ClickHouseBuffer::open("t", tmp.path(), m.clone(), s.clone(), opts()).unwrap();
        let (mw, sw) = (b.metric_writer(), b.span_writer());
        b.start().unwrap();
        for i in 0..10 {
            assert_eq!(mw.append(&[series(i)]).unwrap().accepted, 1);
            sw.write(&[span(i as u64)]).unwrap();
        }
        wait_caught_up(&b);
        let want: Vec<TimeSeries> = (0..10).map(series).collect();
        assert_eq!(*m.series.lock(), want);
        let want: Vec<Span> = (0..10).map(span).collect();
        assert_eq!(*s.spans.lock(), want, "spans round-trip unchanged");
        let st = b.stats();
        assert_eq!(st.inserts_failed, [3, 2]);
        assert_eq!(st.retries, 5);
        assert_eq!((st.inserted_samples, st.inserted_spans), (10, 10));
        assert!(!st.failing);
        assert!(st.last_error.unwrap().contains("unreachable"));
        assert_eq!(st.pending_records, 0);
        b.shutdown();
    }

    #[test]
    fn what_is_buffered_is_inserted_after_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let down = Sink::failing(u64::MAX);
        let b =
            ClickHouseBuffer::open("t", tmp.path(), down.clone(), down.clone(), opts()).unwrap();
        b.start().unwrap();
        for i in 0..5 {
            b.metric_writer().append(&[series(i)]).unwrap();
        }
        b.span_writer().write(&[span(1), span(2)]).unwrap();
        b.shutdown();
        assert!(b.stats().pending_records > 0);
        assert!(
            b.metric_writer().append(&[series(9)]).is_err(),
            "closed to writes"
        );
        drop(b);

        let up = Sink::failing(0);
        let b = ClickHouseBuffer::open("t", tmp.path(), up.clone(), up.clone(), opts()).unwrap();
        b.start().unwrap();
        wait_caught_up(&b);
        assert_eq!(*up.series.lock(), (0..5).map(series).collect::<Vec<_>>());
        assert_eq!(*up.spans.lock(), vec![span(1), span(2)]);
        b.shutdown();
    }

    #[test]
    fn metadata_is_buffered_when_it_changes_and_inserted_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = Sink::failing(1);
        let b =
            ClickHouseBuffer::open("t", tmp.path(), sink.clone(), sink.clone(), opts()).unwrap();
        b.start().unwrap();
        let md = |help: &str| MetricMetadata {
            metric_family: "m".into(),
            kind: "gauge".into(),
            help: help.into(),
            unit: String::new(),
        };
        let w = b.metric_writer();
        // A scrape repeats its metadata every interval: only changes are buffered.
        for help in ["first", "first", "second", "second"] {
            w.append_metadata(&[md(help)]).unwrap();
            w.append(&[series(1)]).unwrap();
        }
        wait_caught_up(&b);
        assert_eq!(*sink.metadata.lock(), vec![md("first"), md("second")]);
        assert_eq!(sink.series.lock().len(), 4);
        b.shutdown();
    }

    #[test]
    fn the_outcome_is_the_clickhouse_stores() {
        let tmp = tempfile::tempdir().unwrap();
        let up = Sink::failing(0);
        let b = ClickHouseBuffer::open("t", tmp.path(), up.clone(), up.clone(), opts()).unwrap();
        b.start().unwrap();
        let mut odd = series(1);
        odd.samples.push(Sample::new(-5, 1.0));
        let bad = TimeSeries {
            labels: Labels::from_pairs([("__name__", "m"), ("0bad", "x")]),
            samples: vec![Sample::new(1, 1.0)],
        };
        let o = b.metric_writer().append(&[odd, bad]).unwrap();
        assert_eq!((o.accepted, o.out_of_bounds, o.invalid_labels), (1, 1, 1));
        wait_caught_up(&b);
        assert_eq!(*up.series.lock(), vec![series(1)]);
        b.shutdown();
    }
}
