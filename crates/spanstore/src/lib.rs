//! meshlens-spanstore: the embedded trace engine — WAL, in-memory head, immutable segments
//! with trace-id and tag indexes, retention.
//!
//! Main type: [`SpanStore`], which implements the model's `SpanWriter` and `SpanReader`.
//!
//! Key design decisions:
//! - A write is encoded once into compact self-contained records; the same bytes go to the
//!   WAL (group-committed: concurrent writers share one fdatasync) and into the head, which
//!   keeps only those bytes plus a few fixed-size fields per span.
//! - When the head reaches its target size it is sealed (a new WAL file starts) and a
//!   background thread writes it as an immutable segment: spans grouped by trace, strings
//!   dictionary-coded, blocks compressed with zstd, a raw sorted trace-id array for binary
//!   search through mmap, and postings per service / span name / tag for searches.
//! - Readers take a consistent snapshot of (head, sealed heads, segments) as `Arc`s, so
//!   writes, flushes and retention never wait for a long query.
//!
//! The byte formats are documented in `docs/format.md`.

pub mod bench;
mod codec;
mod head;
mod query;
mod segment;
mod wal;

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshlens_model::{
    DependencyLink, Span, SpanReader, SpanWriter, StorageError, TraceId, TraceQuery,
};
use parking_lot::{Condvar, Mutex, RwLock};

use codec::{encode_raw, lower, SpanView};
use head::{Head, NONE};
use query::{Criteria, LinkSpan, Links};
use segment::{Segment, TraceSet};
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
}

/// Values kept per tag key for autocomplete when every key is kept.
const MAX_VALUES_ALL_KEYS: usize = 1000;
/// Values kept per configured autocomplete key.
const MAX_VALUES_CONFIGURED: usize = 10_000;
/// Writers wait while this many sealed heads are still being written.
const MAX_SEALED: usize = 3;
/// Head spans decoded per read-lock hold during scans.
const SCAN_CHUNK: usize = 4096;

#[derive(Default)]
struct SvcNames {
    span_names: BTreeSet<String>,
    remotes: BTreeSet<String>,
}

/// Name indexes behind the service / span name / autocomplete endpoints.
#[derive(Default)]
struct Names {
    services: BTreeMap<String, SvcNames>,
    tag_keys: BTreeSet<String>,
    tag_values: HashMap<String, BTreeSet<String>>,
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

fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, SpanStoreError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let e = e.map_err(io_err("list", dir))?;
        if let Some(name) = e.file_name().to_str() {
            out.push((name.to_string(), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

impl SpanStore {
    /// Opens (or creates) a store in `dir`: quarantines corrupt segments, replays the WAL
    /// (truncating a torn tail), applies retention and starts the segment writer thread.
    pub fn open(dir: &Path, opts: SpanStoreOptions) -> Result<SpanStore, SpanStoreError> {
        let wal_dir = dir.join("wal");
        let seg_dir = dir.join("segments");
        let corrupt_dir = dir.join("corrupted");
        for d in [dir, &wal_dir, &seg_dir] {
            fs::create_dir_all(d).map_err(io_err("create dir", d))?;
        }
        let counters = Counters::default();

        // Segments.
        let mut segments = Vec::new();
        let mut max_seq = 0u64;
        for (name, path) in list_dir(&seg_dir)? {
            if name.ends_with(".seg.tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(seq) = segment::parse_seg_name(&name) else {
                continue;
            };
            max_seq = max_seq.max(seq);
            match Segment::open(&path) {
                Ok(s) => segments.push(Arc::new(s)),
                Err(SpanStoreError::Corrupt { reason, .. }) => {
                    fs::create_dir_all(&corrupt_dir).map_err(io_err("create dir", &corrupt_dir))?;
                    let to = corrupt_dir.join(&name);
                    tracing::error!(path = %path.display(), %reason, to = %to.display(),
                        "corrupt span segment moved aside");
                    fs::rename(&path, &to).map_err(io_err("quarantine segment", &path))?;
                    counters.corrupt_segments.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        segments.sort_by_key(|s| s.seq);
        let covered = segments.iter().map(|s| s.wal_max).max().unwrap_or(0);

        // WAL replay.
        let mut replay: Vec<(u64, PathBuf)> = Vec::new();
        for (name, path) in list_dir(&wal_dir)? {
            let Some(seq) = wal::parse_wal_name(&name) else {
                continue;
            };
            max_seq = max_seq.max(seq);
            if seq <= covered {
                // Already written as a segment before a crash removed it.
                let _ = fs::remove_file(&path);
            } else {
                replay.push((seq, path));
            }
        }
        let seq = max_seq + 1;
        let mut head = Head::new(seq);
        if let Some((first, _)) = replay.first() {
            head.wal_min = *first;
        }
        for (_, path) in &replay {
            let r = wal::read_wal(path).map_err(io_err("read wal", path))?;
            let mut valid = 0u64;
            let mut bad = false;
            for p in &r.payloads {
                let ok = wal::split_payload(p)
                    .and_then(|(n, recs)| head::prepare(recs, n).ok().map(|prep| (recs, prep)));
                match ok {
                    Some((recs, prep)) => {
                        head.insert(recs, &prep);
                        valid += (wal::FRAME_HEADER + p.len()) as u64;
                    }
                    None => {
                        bad = true;
                        break;
                    }
                }
            }
            if bad || valid < r.file_len {
                tracing::warn!(path = %path.display(), valid, len = r.file_len,
                    "span WAL has a torn or corrupt tail; truncating");
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err("open wal", path))?;
                f.set_len(valid).map_err(io_err("truncate wal", path))?;
                f.sync_all().map_err(io_err("sync wal", path))?;
                counters.wal_torn_tails.fetch_add(1, Ordering::Relaxed);
                counters
                    .wal_truncated_bytes
                    .fetch_add(r.file_len - valid, Ordering::Relaxed);
            }
        }
        let wal = Wal::create(&wal_dir, seq, opts.fsync).map_err(io_err("create wal", &wal_dir))?;

        let inner = Arc::new(Inner {
            wal_dir,
            seg_dir,
            opts,
            wal,
            cut_lock: RwLock::new(()),
            parts: RwLock::new(Parts {
                head: Arc::new(RwLock::new(head)),
                sealed: Vec::new(),
                segments,
            }),
            names: RwLock::new(Names::default()),
            next_seq: AtomicU64::new(seq + 1),
            closed: AtomicBool::new(false),
            flush_ctl: Mutex::new(FlushCtl::default()),
            flush_cv: Condvar::new(),
            flush_lock: Mutex::new(()),
            sealed_cv: Condvar::new(),
            sealed_mx: Mutex::new(()),
            counters,
        });
        inner.enforce_retention()?;
        inner.rebuild_names();
        if inner.head_full() {
            inner.request_flush();
        }
        let worker = inner.clone();
        let handle = std::thread::Builder::new()
            .name("spanstore-flush".into())
            .spawn(move || worker.flush_loop())
            .map_err(io_err("spawn flusher", Path::new("")))?;
        Ok(SpanStore {
            inner,
            flusher: Mutex::new(Some(handle)),
        })
    }

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

impl Inner {
    fn is_full(&self, h: &Head) -> bool {
        h.len() >= self.opts.segment_target_spans.max(1)
            || h.bytes() >= self.opts.segment_target_bytes.clamp(1, 1 << 31)
    }

    fn head_full(&self) -> bool {
        let p = self.parts.read();
        let h = p.head.read();
        self.is_full(&h)
    }

    fn request_flush(&self) {
        let mut c = self.flush_ctl.lock();
        c.requested = true;
        self.flush_cv.notify_all();
    }

    fn wal_bytes(&self) -> u64 {
        let mut n = 0;
        if let Ok(rd) = fs::read_dir(&self.wal_dir) {
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    n += m.len();
                }
            }
        }
        n
    }

    fn write(&self, spans: &[Span]) -> Result<(), SpanStoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SpanStoreError::Closed);
        }
        if spans.is_empty() {
            return Ok(());
        }
        // Encode once: frame header, count, records. The records are also the head's bytes.
        let mut frame = Vec::with_capacity(spans.len() * 320 + 16);
        frame.extend_from_slice(&[0u8; wal::FRAME_HEADER]);
        codec::put_uvarint(&mut frame, spans.len() as u64);
        let rec_start = frame.len();
        for s in spans {
            encode_raw(s, &mut frame);
        }
        let payload_len = (frame.len() - wal::FRAME_HEADER) as u32;
        let crc = crc32fast::hash(&frame[wal::FRAME_HEADER..]);
        frame[..4].copy_from_slice(&payload_len.to_le_bytes());
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        let records = &frame[rec_start..];
        let prepared =
            head::prepare(records, spans.len()).map_err(|_| SpanStoreError::Corrupt {
                path: self.wal_dir.clone(),
                reason: "span record failed to round-trip".into(),
            })?;

        // Backpressure: do not let sealed heads pile up faster than they are written.
        if self.parts.read().sealed.len() >= MAX_SEALED {
            let mut g = self.sealed_mx.lock();
            while self.parts.read().sealed.len() >= MAX_SEALED
                && !self.closed.load(Ordering::Acquire)
            {
                self.sealed_cv.wait_for(&mut g, Duration::from_millis(50));
            }
        }

        let full = {
            let _cut = self.cut_lock.read();
            if self.closed.load(Ordering::Acquire) {
                // close() cuts the last head under the exclusive lock; refuse rather than
                // write into a head nobody will flush.
                return Err(SpanStoreError::Closed);
            }
            self.wal
                .append(&frame)
                .map_err(io_err("append wal", &self.wal_dir))?;
            let head = self.parts.read().head.clone();
            let mut h = head.write();
            h.insert(records, &prepared);
            self.is_full(&h)
        };
        self.note_names(spans, &prepared);
        if full {
            // Cut here rather than in the flusher: the flusher may be busy writing the
            // previous segment, and the head must not keep growing meanwhile.
            self.cut_when(|h| self.is_full(h))?;
            self.request_flush();
        }
        Ok(())
    }

    fn autocomplete_cap(&self, key: &str) -> Option<usize> {
        if self.opts.autocomplete_keys.is_empty() {
            Some(MAX_VALUES_ALL_KEYS)
        } else if self.opts.autocomplete_keys.iter().any(|k| k == key) {
            Some(MAX_VALUES_CONFIGURED)
        } else {
            None
        }
    }

    /// Adds this batch's names to the indexes, taking the write lock only if one is new.
    fn note_names(&self, spans: &[Span], prepared: &[head::Prepared]) {
        let mut svc: HashSet<(&str, Option<&str>, Option<&str>), head::IdBuild> =
            HashSet::default();
        for p in prepared {
            if let Some(s) = &p.svc {
                svc.insert((s, p.name.as_deref(), p.remote.as_deref()));
            }
        }
        let mut tags: HashSet<(&str, &str), head::IdBuild> = HashSet::default();
        for s in spans {
            for (k, v) in &s.tags {
                tags.insert((k, v));
            }
        }
        let is_new = {
            let n = self.names.read();
            svc.iter()
                .any(|(s, name, remote)| match n.services.get(*s) {
                    None => true,
                    Some(e) => {
                        name.is_some_and(|x| !e.span_names.contains(x))
                            || remote.is_some_and(|x| !e.remotes.contains(x))
                    }
                })
                || tags.iter().any(|(k, v)| {
                    !n.tag_keys.contains(*k)
                        || self.autocomplete_cap(k).is_some_and(|cap| {
                            n.tag_values
                                .get(*k)
                                .is_none_or(|vs| vs.len() < cap && !vs.contains(*v))
                        })
                })
        };
        if !is_new {
            return;
        }
        let mut n = self.names.write();
        for (s, name, remote) in svc {
            self.add_service_names(&mut n, s, name, remote);
        }
        for (k, v) in tags {
            self.add_tag(&mut n, k, Some(v));
        }
    }

    fn add_service_names(&self, n: &mut Names, s: &str, name: Option<&str>, remote: Option<&str>) {
        if !n.services.contains_key(s) {
            n.services.insert(s.to_string(), SvcNames::default());
        }
        let e = n.services.get_mut(s).expect("inserted above");
        if let Some(x) = name {
            if !e.span_names.contains(x) {
                e.span_names.insert(x.to_string());
            }
        }
        if let Some(x) = remote {
            if !e.remotes.contains(x) {
                e.remotes.insert(x.to_string());
            }
        }
    }

    fn add_tag(&self, n: &mut Names, k: &str, v: Option<&str>) {
        if !n.tag_keys.contains(k) {
            n.tag_keys.insert(k.to_string());
        }
        let (Some(cap), Some(v)) = (self.autocomplete_cap(k), v) else {
            return;
        };
        let vs = n.tag_values.entry(k.to_string()).or_default();
        if vs.len() < cap && !vs.contains(v) {
            vs.insert(v.to_string());
        }
    }

    /// Recomputes the name indexes from what is stored (after open and retention).
    fn rebuild_names(&self) {
        let p = self.parts.read().clone();
        let mut n = Names::default();
        for s in &p.segments {
            let d = &s.dict;
            for k in s.keys_of(segment::P_SVC) {
                if let Some(svc) = d.get(k.a) {
                    self.add_service_names(&mut n, svc, None, None);
                }
            }
            for k in s.keys_of(segment::P_SVC_NAME) {
                if let (Some(svc), Some(x)) = (d.get(k.a), d.get(k.b)) {
                    self.add_service_names(&mut n, svc, Some(x), None);
                }
            }
            for k in s.keys_of(segment::P_SVC_REMOTE) {
                if let (Some(svc), Some(x)) = (d.get(k.a), d.get(k.b)) {
                    self.add_service_names(&mut n, svc, None, Some(x));
                }
            }
            for k in s.keys_of(segment::P_TAG_KEY) {
                if let Some(key) = d.get(k.a) {
                    self.add_tag(&mut n, key, None);
                }
            }
            for k in s.keys_of(segment::P_TAG_KV) {
                if let (Some(key), Some(v)) = (d.get(k.a), d.get(k.b)) {
                    self.add_tag(&mut n, key, Some(v));
                }
            }
        }
        for h in p.heads() {
            let h = h.read();
            let s = |i: u32| (i != NONE).then(|| &*h.names.strings[i as usize]);
            let mut v = SpanView::default();
            for i in 0..h.spans.len() as u32 {
                let hs = h.spans[i as usize];
                if let Some(svc) = s(hs.svc) {
                    self.add_service_names(&mut n, svc, s(hs.name), s(hs.remote));
                }
                h.view(i, &mut v);
                for (k, val) in &v.tags {
                    self.add_tag(&mut n, k, Some(val));
                }
            }
        }
        *self.names.write() = n;
    }

    /// Seals the open head (if non-empty) and starts a new WAL file.
    fn cut(&self) -> Result<(), SpanStoreError> {
        self.cut_when(|h| !h.is_empty())
    }

    /// Seals the open head if `cond` still holds once writers are excluded.
    fn cut_when(&self, cond: impl Fn(&Head) -> bool) -> Result<(), SpanStoreError> {
        let _g = self.cut_lock.write();
        let mut p = self.parts.write();
        if !cond(&p.head.read()) {
            return Ok(());
        }
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        self.wal
            .rotate(seq)
            .map_err(io_err("rotate wal", &self.wal_dir))?;
        let old = std::mem::replace(&mut p.head, Arc::new(RwLock::new(Head::new(seq))));
        p.sealed.push(old);
        Ok(())
    }

    /// Writes every sealed head as a segment, oldest first.
    fn flush_sealed(&self) -> Result<(), SpanStoreError> {
        let _g = self.flush_lock.lock();
        loop {
            let Some(h) = self.parts.read().sealed.first().cloned() else {
                return Ok(());
            };
            let (path, wal_min, wal_max) = {
                let head = h.read();
                let path =
                    segment::write_segment(&self.seg_dir, head.wal_max, &head, self.opts.fsync)?;
                (path, head.wal_min, head.wal_max)
            };
            let seg = Arc::new(Segment::open(&path)?);
            {
                let mut p = self.parts.write();
                p.sealed.retain(|x| !Arc::ptr_eq(x, &h));
                p.segments.push(seg);
                p.segments.sort_by_key(|s| s.seq);
            }
            for seq in wal_min..=wal_max {
                let wp = wal::wal_path(&self.wal_dir, seq);
                if wp.exists() {
                    fs::remove_file(&wp).map_err(io_err("remove wal", &wp))?;
                }
            }
            let _m = self.sealed_mx.lock();
            self.sealed_cv.notify_all();
        }
    }

    fn flush_loop(&self) {
        loop {
            {
                let mut c = self.flush_ctl.lock();
                while !c.requested && !c.shutdown {
                    self.flush_cv.wait_for(&mut c, Duration::from_secs(5));
                    if !self.parts.read().sealed.is_empty() {
                        break;
                    }
                }
                if c.shutdown {
                    return;
                }
                c.requested = false;
            }
            let res = (|| {
                if self.head_full() {
                    self.cut()?;
                }
                self.flush_sealed()
            })();
            if let Err(e) = res {
                self.counters.flush_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "writing span segment failed; will retry");
                let mut c = self.flush_ctl.lock();
                if !c.shutdown {
                    self.flush_cv.wait_for(&mut c, Duration::from_secs(1));
                }
            }
        }
    }

    fn enforce_retention(&self) -> Result<usize, SpanStoreError> {
        let cutoff = now_us().saturating_sub((self.opts.retention_ms.max(0) as u64) * 1000);
        let dropped: Vec<Arc<Segment>> = {
            let mut p = self.parts.write();
            let mut dropped = Vec::new();
            p.segments.retain(|s| {
                let keep = s.max_ts >= cutoff;
                if !keep {
                    dropped.push(s.clone());
                }
                keep
            });
            if let Some(limit) = self.opts.retention_bytes {
                let wal = self.wal_bytes();
                let mut total: u64 = wal + p.segments.iter().map(|s| s.file_bytes).sum::<u64>();
                while total > limit && !p.segments.is_empty() {
                    let s = p.segments.remove(0);
                    total -= s.file_bytes;
                    dropped.push(s);
                }
            }
            dropped
        };
        for s in &dropped {
            tracing::info!(path = %s.path.display(), max_ts = s.max_ts, "retention drops span segment");
            match fs::remove_file(&s.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove segment", &s.path)(e)),
            }
        }
        self.counters
            .retention_dropped
            .fetch_add(dropped.len() as u64, Ordering::Relaxed);
        Ok(dropped.len())
    }

    fn snapshot(&self) -> Parts {
        self.parts.read().clone()
    }

    /// Every stored span of one trace, exact duplicates removed, in time order.
    fn collect_trace(&self, p: &Parts, id: &TraceId) -> Result<Vec<Span>, SpanStoreError> {
        let mut out = Vec::new();
        for s in &p.segments {
            s.trace(id, &mut out)?;
        }
        for h in p.heads() {
            h.read().trace(id, &mut out);
        }
        Ok(dedupe(out))
    }

    fn find_traces(&self, q: &TraceQuery) -> Result<Vec<Vec<Span>>, SpanStoreError> {
        let c = Criteria::from_query(q);
        let limit = if q.limit == 0 { 10 } else { q.limit };
        let p = self.snapshot();
        let mut cands: Vec<(u64, TraceId)> = Vec::new();
        for s in &p.segments {
            if s.max_ts >= c.lo && s.min_ts <= c.hi {
                seg_candidates(s, &c, &mut cands)?;
            }
        }
        for h in p.heads() {
            head_candidates(&h.read(), &c, &mut cands);
        }
        let mut heap = BinaryHeap::from(cands);
        let mut seen = TraceSet::default();
        let mut results: Vec<(u64, Vec<Span>)> = Vec::new();
        while let Some((_, id)) = heap.pop() {
            if !seen.insert(id) {
                continue;
            }
            let spans = self.collect_trace(&p, &id)?;
            let views: Vec<SpanView<'_>> = spans.iter().map(SpanView::from_span).collect();
            if c.test(&views) {
                results.push((trace_start(&spans), spans));
                if results.len() >= limit {
                    break;
                }
            }
        }
        results.sort_by_key(|r| std::cmp::Reverse(r.0));
        Ok(results.into_iter().map(|(_, s)| s).collect())
    }

    fn dependencies(
        &self,
        end_ts: i64,
        lookback: i64,
    ) -> Result<Vec<DependencyLink>, SpanStoreError> {
        let (lo, hi) = query::window_us(end_ts, lookback);
        let p = self.snapshot();
        let mut links = Links::new();
        for s in &p.segments {
            if s.max_ts < lo || s.min_ts > hi {
                continue;
            }
            s.for_each_group(lo, hi, &mut |_, views| {
                let mut ls: Vec<LinkSpan<'_>> = views.iter().map(LinkSpan::from_view).collect();
                query::link_trace(&mut ls, &mut links);
            })?;
        }
        for h in p.heads() {
            let h = h.read();
            let mut views: Vec<SpanView<'_>> = Vec::new();
            let mut ls: Vec<LinkSpan<'_>> = Vec::new();
            for (t, tr) in h.traces.iter().enumerate() {
                if tr.min_ts == u64::MAX || tr.max_ts < lo || tr.min_ts > hi {
                    continue;
                }
                let idx: Vec<u32> = h.trace_spans(t as u32).collect();
                while views.len() < idx.len() {
                    views.push(SpanView::default());
                }
                for (k, &i) in idx.iter().enumerate() {
                    h.view(i, &mut views[k]);
                }
                ls.clear();
                ls.extend(views[..idx.len()].iter().map(LinkSpan::from_view));
                query::link_trace(&mut ls, &mut links);
            }
        }
        let mut out: Vec<DependencyLink> = links
            .into_iter()
            .map(|((parent, child), (calls, errors))| DependencyLink {
                parent,
                child,
                call_count: calls,
                error_count: errors,
            })
            .collect();
        out.sort_by(|a, b| (&a.parent, &a.child).cmp(&(&b.parent, &b.child)));
        Ok(out)
    }

    fn scan(
        &self,
        start_us: u64,
        end_us: u64,
        visit: &mut dyn FnMut(&Span),
    ) -> Result<(), SpanStoreError> {
        let p = self.snapshot();
        for s in &p.segments {
            if s.max_ts < start_us || s.min_ts > end_us {
                continue;
            }
            let mut reuse: Option<Span> = None;
            s.for_each_group(start_us, end_us, &mut |_, views| {
                for v in views {
                    if v.timestamp.is_some_and(|t| t >= start_us && t <= end_us) {
                        match reuse.as_mut() {
                            Some(sp) => v.to_span_into(sp),
                            None => reuse = Some(v.to_span()),
                        }
                        visit(reuse.as_ref().expect("set above"));
                    }
                }
            })?;
        }
        let mut buf: Vec<Span> = Vec::new();
        for h in p.heads() {
            let mut i = 0usize;
            loop {
                {
                    let h = h.read();
                    if i >= h.spans.len() {
                        break;
                    }
                    let end = (i + SCAN_CHUNK).min(h.spans.len());
                    let mut v = SpanView::default();
                    for k in i..end {
                        let hs = &h.spans[k];
                        if hs.ts >= start_us && hs.ts <= end_us && hs.ts != 0 {
                            h.view(k as u32, &mut v);
                            if v.timestamp.is_some() {
                                buf.push(v.to_span());
                            }
                        }
                    }
                    i = end;
                }
                for s in buf.drain(..) {
                    visit(&s);
                }
            }
        }
        Ok(())
    }
}

/// Root span's timestamp, else the earliest one (Zipkin's notion of trace start).
fn trace_start(spans: &[Span]) -> u64 {
    spans
        .iter()
        .find(|s| s.parent_id.is_none() && s.timestamp.is_some())
        .and_then(|s| s.timestamp)
        .or_else(|| spans.iter().filter_map(|s| s.timestamp).min())
        .unwrap_or(0)
}

/// Sorts by time and removes exact duplicates (the same span written twice).
fn dedupe(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(|s| (s.timestamp.unwrap_or(0), s.id, s.shared));
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    let mut run_start = 0;
    for s in spans {
        if let Some(last) = out.last() {
            if (last.timestamp, last.id, last.shared) != (s.timestamp, s.id, s.shared) {
                run_start = out.len();
            }
        }
        if !out[run_start..].contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Sorted intersection of ascending lists.
fn intersect(lists: &mut [Vec<u32>]) -> Vec<u32> {
    lists.sort_by_key(Vec::len);
    let mut acc = lists.first().cloned().unwrap_or_default();
    for l in lists.iter().skip(1) {
        let mut j = 0;
        acc.retain(|x| {
            while j < l.len() && l[j] < *x {
                j += 1;
            }
            j < l.len() && l[j] == *x
        });
    }
    acc
}

/// Candidate traces of one segment: postings intersected for every criterion the segment
/// can answer, then filtered by the per-trace time range and longest duration.
fn seg_candidates(
    s: &Segment,
    c: &Criteria,
    out: &mut Vec<(u64, TraceId)>,
) -> Result<(), SpanStoreError> {
    let d = &s.dict;
    let mut lists: Vec<Vec<u32>> = Vec::new();
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(x) => x,
                None => return Ok(()),
            }
        };
    }
    let list = |kind, a, b| -> Option<Vec<u32>> { Some(s.postings(kind, a, b)?.collect()) };
    let svc = match &c.service {
        Some(svc) => {
            let id = need!(d.find(svc));
            lists.push(need!(list(segment::P_SVC, id, 0)));
            Some(id)
        }
        None => None,
    };
    if let Some(n) = &c.span_name {
        let nid = need!(d.find(n));
        lists.push(need!(match svc {
            Some(sid) => list(segment::P_SVC_NAME, sid, nid),
            None => list(segment::P_NAME, nid, 0),
        }));
    }
    if let Some(r) = &c.remote {
        let rid = need!(d.find(r));
        lists.push(need!(match svc {
            Some(sid) => list(segment::P_SVC_REMOTE, sid, rid),
            None => list(segment::P_REMOTE, rid, 0),
        }));
    }
    for (k, v) in &c.terms {
        let kid = need!(d.find(k));
        match v {
            Some(v) => match d.find(v) {
                // A value in the dictionary is indexed exactly; an inline (rare) value is
                // only reachable through its key.
                Some(vid) => lists.push(list(segment::P_TAG_KV, kid, vid).unwrap_or_default()),
                None => lists.push(need!(list(segment::P_TAG_KEY, kid, 0))),
            },
            None => {
                let mut u: Vec<u32> = list(segment::P_TAG_KEY, kid, 0).unwrap_or_default();
                u.extend(list(segment::P_ANN, kid, 0).unwrap_or_default());
                u.sort_unstable();
                u.dedup();
                lists.push(u);
            }
        }
    }
    let mut push = |ord: u32| {
        let (tmin, tmax) = (s.t_min[ord as usize], s.t_max[ord as usize]);
        if tmin == 0 || tmax < c.lo || tmin > c.hi {
            return;
        }
        if c.min_dur.is_some_and(|m| s.t_dur[ord as usize] < m) {
            return;
        }
        out.push((tmin, s.trace_id(ord)));
    };
    if lists.is_empty() {
        for ord in 0..s.n_traces {
            push(ord);
        }
    } else {
        for ord in intersect(&mut lists) {
            push(ord);
        }
    }
    Ok(())
}

/// Candidate traces of a head: service / name / remote / duration checked on the
/// fixed-size span fields; tag terms on the decoded spans of the trace.
fn head_candidates(h: &Head, c: &Criteria, out: &mut Vec<(u64, TraceId)>) {
    let id_of = |s: &Option<String>| -> Option<Option<u32>> {
        match s {
            None => Some(None),
            Some(s) => h.names.get(s).map(Some),
        }
    };
    let (Some(svc), Some(name), Some(remote)) =
        (id_of(&c.service), id_of(&c.span_name), id_of(&c.remote))
    else {
        return;
    };
    let mut views: Vec<SpanView<'_>> = Vec::new();
    for (t, tr) in h.traces.iter().enumerate() {
        if tr.min_ts == u64::MAX || tr.max_ts < c.lo || tr.min_ts > c.hi {
            continue;
        }
        let (mut svc_ok, mut name_ok, mut remote_ok) =
            (svc.is_none(), name.is_none(), remote.is_none());
        let mut dur_ok = !c.has_duration();
        let mut in_window = false;
        for i in h.trace_spans(t as u32) {
            let hs = &h.spans[i as usize];
            in_window |= hs.ts != 0 && hs.ts >= c.lo && hs.ts <= c.hi;
            if svc.is_some_and(|s| s != hs.svc) {
                continue;
            }
            svc_ok = true;
            name_ok |= name == Some(hs.name);
            remote_ok |= remote == Some(hs.remote);
            dur_ok |= c.duration_ok(Some(hs.dur));
        }
        if !(in_window && svc_ok && name_ok && remote_ok && dur_ok) {
            continue;
        }
        if !c.terms.is_empty() {
            let idx: Vec<u32> = h.trace_spans(t as u32).collect();
            while views.len() < idx.len() {
                views.push(SpanView::default());
            }
            for (k, &i) in idx.iter().enumerate() {
                h.view(i, &mut views[k]);
            }
            if !c.test_criteria(&views[..idx.len()]) {
                continue;
            }
        }
        out.push((tr.min_ts, tr.id));
    }
}

impl SpanWriter for SpanStore {
    fn write(&self, spans: &[Span]) -> Result<(), StorageError> {
        Ok(self.inner.write(spans)?)
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
