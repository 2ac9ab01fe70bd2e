//! meshlens-spanstore: the embedded trace engine — WAL, in-memory head, immutable segments
//! with trace-id and tag indexes, retention.
//!
//! Main type: [`SpanStore`], which implements the model's `SpanWriter` and `SpanReader`.
//!
//! Key design decisions:
//! - A write is encoded once into compact self-contained records; the same bytes go to the
//!   WAL (group-committed: concurrent writers share one fdatasync) and into the head, which
//!   keeps only those bytes plus a few fixed-size fields per span. Ingest writes spans
//!   borrowed from the request body (`SpanWriter::write_refs`), so no owned `Span` is built.
//! - When the head reaches its target size it is sealed (a new WAL file starts) and a
//!   background thread writes it as an immutable segment; writers wait only when three
//!   sealed heads are queued (backpressure, never loss): spans grouped by trace, strings
//!   dictionary-coded, blocks compressed with zstd, a raw sorted trace-id array for binary
//!   search through mmap, and postings per service / span name / tag for searches.
//! - Readers take a consistent snapshot of (head, sealed heads, segments) as `Arc`s, so
//!   writes, flushes and retention never wait for a long query.
//! - Analyses read through projection scans (`SpanReader::parts`, `project.rs`): one part
//!   per segment or head, only the projected columns decoded, tag keys compared as
//!   dictionary ids. A segment keeps the partial results an analysis computed over all of
//!   it (`memo.rs`), bounded per store by `preaggregate_bytes` and dropped with the segment.
//!
//! The byte formats are documented in `docs/format.md`.

mod codec;
mod flush;
mod head;
mod memo;
mod names;
mod open;
mod project;
mod query;
mod read;
mod segment;
mod wal;
mod write;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use meshlens_model::{
    DependencyLink, Span, SpanPart, SpanReader, SpanWriter, StorageError, TraceId, TraceQuery,
};
use parking_lot::{Condvar, Mutex, RwLock};

use codec::lower;
use head::Head;
use names::Names;
use segment::Segment;
use wal::Wal;

/// Errors of the span store; the trait impls convert them to `StorageError`.
#[derive(Debug, thiserror::Error)]
pub enum SpanStoreError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("span store is closed")]
    Closed,
}

impl From<SpanStoreError> for StorageError {
    fn from(e: SpanStoreError) -> StorageError {
        match e {
            SpanStoreError::Io { op, path, source } => {
                StorageError::io(format!("{op} {}", path.display()), source)
            }
            SpanStoreError::Corrupt { path, reason } => StorageError::Corruption {
                location: path.display().to_string(),
                reason,
            },
            SpanStoreError::Closed => StorageError::Closed,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SpanStoreOptions {
    /// Segments whose newest span is older than now - retention_ms are dropped.
    pub retention_ms: i64,
    /// Oldest segments are dropped while segments + WAL exceed this many bytes.
    pub retention_bytes: Option<u64>,
    /// fdatasync the WAL before a write returns (group committed).
    pub fsync: bool,
    /// The head is cut into a segment at this many spans...
    pub segment_target_spans: usize,
    /// ...or at this many encoded bytes, whichever comes first.
    pub segment_target_bytes: usize,
    /// Tag keys whose values are kept for autocomplete; empty = all keys, values capped.
    pub autocomplete_keys: Vec<String>,
    /// Bytes of pre-aggregates (analyses' partial results over whole segments) kept in
    /// memory, least recently used evicted first; 0 turns them off.
    pub preaggregate_bytes: u64,
}

impl Default for SpanStoreOptions {
    fn default() -> Self {
        SpanStoreOptions {
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: None,
            fsync: true,
            segment_target_spans: 250_000,
            segment_target_bytes: 96 << 20,
            autocomplete_keys: Vec::new(),
            preaggregate_bytes: 256 << 20,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpanStoreStats {
    /// Stored spans (exact duplicates included).
    pub spans: u64,
    /// Trace ids summed per part: a trace split across parts counts more than once.
    pub traces: u64,
    pub segments: usize,
    pub segment_bytes: u64,
    pub wal_bytes: u64,
    /// segment_bytes + wal_bytes.
    pub disk_bytes: u64,
    /// Spans in the open head plus heads waiting to be written as segments.
    pub head_spans: u64,
    pub head_bytes: u64,
    pub sealed_heads: usize,
    /// WAL files whose tail was torn or corrupt on open (and was truncated).
    pub wal_torn_tails: u64,
    pub wal_truncated_bytes: u64,
    /// Segments moved to `corrupted/`.
    pub corrupt_segments: u64,
    /// Segments dropped by retention since open.
    pub retention_dropped_segments: u64,
    /// Segment writes that failed (retried later; the data stays in memory and WAL).
    pub flush_errors: u64,
    /// Pre-aggregates kept for live segments, and their approximate bytes.
    pub preaggregates: u64,
    pub preaggregate_bytes: u64,
}

type SharedHead = Arc<RwLock<Head>>;

#[derive(Clone)]
struct Parts {
    head: SharedHead,
    /// Heads cut but not yet written as segments, oldest first.
    sealed: Vec<SharedHead>,
    /// Segments, oldest (lowest sequence) first.
    segments: Vec<Arc<Segment>>,
}

impl Parts {
    fn heads(&self) -> impl Iterator<Item = &SharedHead> {
        self.sealed.iter().chain(std::iter::once(&self.head))
    }
}

#[derive(Default)]
struct Counters {
    wal_torn_tails: AtomicU64,
    wal_truncated_bytes: AtomicU64,
    corrupt_segments: AtomicU64,
    retention_dropped: AtomicU64,
    flush_errors: AtomicU64,
}

#[derive(Default)]
struct FlushCtl {
    requested: bool,
    shutdown: bool,
}

struct Inner {
    wal_dir: PathBuf,
    seg_dir: PathBuf,
    opts: SpanStoreOptions,
    wal: Wal,
    /// Writers hold it shared across WAL append + head insert; a cut holds it exclusively,
    /// so a sealed head and its WAL files always contain exactly the same spans.
    cut_lock: RwLock<()>,
    parts: RwLock<Parts>,
    names: RwLock<Names>,
    next_seq: AtomicU64,
    closed: AtomicBool,
    flush_ctl: Mutex<FlushCtl>,
    flush_cv: Condvar,
    /// Serialises segment writes (flusher thread and close).
    flush_lock: Mutex<()>,
    sealed_cv: Condvar,
    sealed_mx: Mutex<()>,
    counters: Counters,
    /// Accounting and eviction of the segments' pre-aggregates.
    memo: memo::MemoLru,
}

/// The embedded span store. `Send + Sync`; share it as `Arc<SpanStore>`.
pub struct SpanStore {
    inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpanStoreError + 'a {
    move |source| SpanStoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl SpanStore {
    /// Writes a batch; returns once it is durable in the WAL.
    pub fn write_spans(&self, spans: &[Span]) -> Result<(), SpanStoreError> {
        self.inner.write(spans)
    }

    /// Flushes the WAL, writes the open head as a segment and stops the background thread.
    /// Later writes fail with `Closed`; reads keep working. Idempotent.
    pub fn close(&self) -> Result<(), SpanStoreError> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        {
            let mut c = self.inner.flush_ctl.lock();
            c.shutdown = true;
            self.inner.flush_cv.notify_all();
        }
        if let Some(h) = self.flusher.lock().take() {
            let _ = h.join();
        }
        self.inner
            .wal
            .flush()
            .map_err(io_err("sync wal", &self.inner.wal_dir))?;
        self.inner.cut()?;
        self.inner.flush_sealed()
    }

    /// Stops like a crash would: no WAL flush, no segment cut; for restart tests.
    #[doc(hidden)]
    pub fn simulate_crash(self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        {
            let mut c = self.inner.flush_ctl.lock();
            c.shutdown = true;
            self.inner.flush_cv.notify_all();
        }
        if let Some(h) = self.flusher.lock().take() {
            let _ = h.join();
        }
    }

    /// Drops segments past the time and size limits; the server calls it periodically.
    /// Returns how many segments were dropped.
    pub fn enforce_retention(&self) -> Result<usize, SpanStoreError> {
        let n = self.inner.enforce_retention()?;
        if n > 0 {
            self.inner.rebuild_names();
        }
        Ok(n)
    }

    /// Seals the open head and writes it (and any other sealed head) as segments now.
    pub fn flush(&self) -> Result<(), SpanStoreError> {
        self.inner.cut()?;
        self.inner.flush_sealed()
    }

    pub fn stats(&self) -> SpanStoreStats {
        let p = self.inner.parts.read().clone();
        let c = &self.inner.counters;
        let mut st = SpanStoreStats {
            segments: p.segments.len(),
            sealed_heads: p.sealed.len(),
            wal_torn_tails: c.wal_torn_tails.load(Ordering::Relaxed),
            wal_truncated_bytes: c.wal_truncated_bytes.load(Ordering::Relaxed),
            corrupt_segments: c.corrupt_segments.load(Ordering::Relaxed),
            retention_dropped_segments: c.retention_dropped.load(Ordering::Relaxed),
            flush_errors: c.flush_errors.load(Ordering::Relaxed),
            ..Default::default()
        };
        for s in &p.segments {
            st.spans += s.n_spans;
            st.traces += u64::from(s.n_traces);
            st.segment_bytes += s.file_bytes;
        }
        for h in p.heads() {
            let h = h.read();
            st.spans += h.len() as u64;
            st.head_spans += h.len() as u64;
            st.traces += h.traces.len() as u64;
            st.head_bytes += h.bytes() as u64;
        }
        let memo = self.inner.memo.usage();
        st.preaggregates = memo.entries;
        st.preaggregate_bytes = memo.bytes;
        st.wal_bytes = self.inner.wal_bytes();
        st.disk_bytes = st.segment_bytes + st.wal_bytes;
        st
    }
}

impl Drop for SpanStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing span store");
        }
    }
}

impl SpanWriter for SpanStore {
    fn write(&self, spans: &[Span]) -> Result<(), StorageError> {
        Ok(self.inner.write(spans)?)
    }

    fn write_refs(&self, spans: &[meshlens_model::SpanRef<'_>]) -> Result<(), StorageError> {
        Ok(self.inner.write_refs(spans)?)
    }
}

impl SpanReader for SpanStore {
    fn trace(&self, id: &TraceId) -> Result<Vec<Span>, StorageError> {
        let p = self.inner.snapshot();
        Ok(self.inner.collect_trace(&p, id)?)
    }

    fn find_traces(&self, q: &TraceQuery) -> Result<Vec<Vec<Span>>, StorageError> {
        Ok(self.inner.find_traces(q)?)
    }

    fn service_names(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.inner.names.read().services.keys().cloned().collect())
    }

    fn remote_service_names(&self, service: &str) -> Result<Vec<String>, StorageError> {
        let n = self.inner.names.read();
        Ok(n.services
            .get(&*lower(service))
            .map(|e| e.remotes.iter().cloned().collect())
            .unwrap_or_default())
    }

    fn span_names(&self, service: &str) -> Result<Vec<String>, StorageError> {
        let n = self.inner.names.read();
        Ok(n.services
            .get(&*lower(service))
            .map(|e| e.span_names.iter().cloned().collect())
            .unwrap_or_default())
    }

    fn dependencies(
        &self,
        end_ts: i64,
        lookback: i64,
    ) -> Result<Vec<DependencyLink>, StorageError> {
        Ok(self.inner.dependencies(end_ts, lookback)?)
    }

    fn scan(
        &self,
        start_us: u64,
        end_us: u64,
        visit: &mut dyn FnMut(&Span),
    ) -> Result<(), StorageError> {
        Ok(self.inner.scan(start_us, end_us, visit)?)
    }

    fn parts(
        &self,
        start_us: u64,
        end_us: u64,
    ) -> Result<Vec<Box<dyn SpanPart + '_>>, StorageError> {
        Ok(self.inner.parts(start_us, end_us))
    }

    fn autocomplete_keys(&self) -> Result<Vec<String>, StorageError> {
        if !self.inner.opts.autocomplete_keys.is_empty() {
            let mut k = self.inner.opts.autocomplete_keys.clone();
            k.sort();
            k.dedup();
            return Ok(k);
        }
        Ok(self.inner.names.read().tag_keys.iter().cloned().collect())
    }

    fn autocomplete_values(&self, key: &str) -> Result<Vec<String>, StorageError> {
        let n = self.inner.names.read();
        Ok(n.tag_values
            .get(key)
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default())
    }
}
