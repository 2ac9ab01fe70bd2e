//! The write-ahead buffer: segment files of checksummed records, group-committed fsync, one
//! persisted cursor per destination, bounded by size and age.
//!
//! Appenders write under one lock (a single `writev` each) and then share `fdatasync`s: the
//! first to find its record not yet durable syncs for everyone written so far while the
//! others wait on a condition variable. Readers see only durable records, so nothing a hub
//! has acknowledged can vanish in a crash and have its sequence numbers reused.

mod cursor;
mod segment;
mod types;

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use cursor::CursorFile;
use segment::{encode_header, write_record, Header, Meta, Segment, HEADER_LEN, MAX_PAYLOAD};
pub use types::{
    AppendError, Batch, BufferOptions, BufferStats, DestinationStats, Dropped, ForwardError, Kind,
};

pub(crate) fn io_err(path: &Path, source: io::Error) -> ForwardError {
    ForwardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes a directory's entries (a created or renamed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ForwardError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const FULL: usize = 0;
const MAX_AGE: usize = 1;
const CORRUPT: usize = 2;

struct Dest {
    name: String,
    /// In memory, ahead of the file until `persist_cursor`.
    cursor: u64,
    file: Arc<Mutex<Option<CursorFile>>>,
    dropped: [Dropped; 3],
}

struct Inner {
    /// Never empty: the last is the one appended to.
    segments: VecDeque<Segment>,
    next_seq: u64,
    total_bytes: u64,
    /// A failed write may have left part of a record at the active segment's end.
    broken: bool,
    dests: Vec<Dest>,
}

impl Inner {
    fn dest(&self, name: &str) -> Option<usize> {
        self.dests.iter().position(|d| d.name == name)
    }

    fn min_cursor(&self) -> Option<u64> {
        self.dests.iter().map(|d| d.cursor).min()
    }

    fn oldest(&self) -> u64 {
        self.segments.front().map_or(self.next_seq, |s| s.first)
    }

    /// The segment holding `seq`, with the record's index in it.
    fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        let si = self
            .segments
            .partition_point(|s| s.first <= seq)
            .checked_sub(1)?;
        let s = &self.segments[si];
        (seq < s.end()).then(|| (si, (seq - s.first) as usize))
    }
}

struct SyncState {
    durable: u64,
    syncing: bool,
}

pub struct Buffer {
    opts: BufferOptions,
    seg_dir: PathBuf,
    cursor_dir: PathBuf,
    inner: Mutex<Inner>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    /// Records below this sequence number are durable and may be read.
    durable: AtomicU64,
    durable_tx: watch::Sender<u64>,
    closed: AtomicBool,
    appended: [AtomicU64; 2],
    /// Samples and spans acknowledged (the `items` of appended records), per kind.
    appended_items: [AtomicU64; 2],
    refused: AtomicU64,
    fsyncs: AtomicU64,
}

impl Buffer {
    /// Opens (or creates) the buffer in `opts.dir` with a cursor for each destination; a
    /// cursor for a destination not seen before starts at the oldest record kept.
    pub fn open(opts: BufferOptions, destinations: &[String]) -> Result<Arc<Buffer>, ForwardError> {
        let mut opts = opts;
        opts.segment_bytes = opts.segment_bytes.clamp(1, segment::MAX_SEGMENT_BYTES);
        if opts.max_size_bytes > 0 && opts.segment_bytes > opts.max_size_bytes / 2 {
            opts.segment_bytes = (opts.max_size_bytes / 4).max(1);
        }
        let seg_dir = opts.dir.join("segments");
        let cursor_dir = opts.dir.join("cursors");
        for d in [&seg_dir, &cursor_dir] {
            std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
        }

        let mut segments: VecDeque<Segment> = VecDeque::new();
        for (first, path) in segment::list(&seg_dir)? {
            let seg = Segment::recover(path, first)?;
            if let Some(prev) = segments.back_mut() {
                if prev.end() > first {
                    // Only damage or a foreign file can make two segments claim one number.
                    let cut = prev.offset_of(first);
                    tracing::warn!(segment = %prev.path.display(), next = %seg.path.display(),
                        "forwarding buffer: segments overlap; the earlier one is cut where the later begins");
                    prev.file.set_len(cut).map_err(|e| io_err(&prev.path, e))?;
                    prev.metas.truncate((first - prev.first) as usize);
                    prev.size = cut;
                }
            }
            segments.push_back(seg);
        }
        let mut next_seq = segments.back().map_or(0, |s| s.end());
        let oldest = segments.front().map_or(next_seq, |s| s.first);

        let mut dests: Vec<Dest> = Vec::new();
        for name in destinations {
            if dests.iter().any(|d| &d.name == name) {
                continue;
            }
            let file = match CursorFile::load(&cursor_dir, name)? {
                Some(f) => f,
                None => CursorFile::create(&cursor_dir, name, oldest)?,
            };
            dests.push(Dest {
                name: name.clone(),
                cursor: file.stored,
                file: Arc::new(Mutex::new(Some(file))),
                dropped: Default::default(),
            });
        }
        if let Some(max) = dests.iter().map(|d| d.cursor).max() {
            if max > next_seq {
                tracing::warn!(
                    buffer_end = next_seq,
                    cursor = max,
                    "forwarding buffer: a cursor is past the last record on disk (written without fsync before a crash?); numbering continues after it"
                );
                next_seq = max;
            }
        }
        for d in &mut dests {
            if d.cursor < oldest {
                tracing::info!(destination = %d.name, cursor = d.cursor, oldest,
                    "forwarding buffer: records this destination had not been sent were dropped earlier; it resumes at the oldest kept");
                d.cursor = oldest;
            }
        }

        let reuse = segments
            .back()
            .is_some_and(|s| s.end() == next_seq && s.size < opts.segment_bytes);
        if reuse {
            if opts.fsync {
                // Written before a crash of the process alone: durable before being sent.
                let s = segments.back().expect("checked above");
                s.file.sync_data().map_err(|e| io_err(&s.path, e))?;
            }
        } else {
            segments.push_back(Segment::create(&seg_dir, next_seq)?);
            sync_dir(&seg_dir)?;
        }
        let total_bytes = segments.iter().map(|s| s.size).sum();
        let (durable_tx, _) = watch::channel(next_seq);
        Ok(Arc::new(Buffer {
            seg_dir,
            cursor_dir,
            inner: Mutex::new(Inner {
                segments,
                next_seq,
                total_bytes,
                broken: false,
                dests,
            }),
            sync: Mutex::new(SyncState {
                durable: next_seq,
                syncing: false,
            }),
            synced: Condvar::new(),
            durable: AtomicU64::new(next_seq),
            durable_tx,
            closed: AtomicBool::new(false),
            appended: Default::default(),
            appended_items: Default::default(),
            refused: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            opts,
        }))
    }

    /// Appends one record holding `items` samples (float and native histogram samples
    /// alike) or spans; returns once it is durable.
    /// Blocking: call it off the async runtime.
    pub fn append(&self, kind: Kind, items: u32, payload: &[u8]) -> Result<(), AppendError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(AppendError::Closed);
        }
        // Records are kept snappy-compressed: a remote-write payload repeats each series'
        // labels per sample, so this cuts what is written and fsynced about tenfold.
        let compressed = snap::raw::Encoder::new()
            .compress_vec(payload)
            .map_err(|e| {
                io_err(
                    &self.opts.dir,
                    io::Error::new(io::ErrorKind::InvalidInput, e),
                )
            })?;
        let payload = &compressed[..];
        let rec = (HEADER_LEN + payload.len()) as u64;
        let limit = self.opts.max_size_bytes;
        if payload.len() > MAX_PAYLOAD || (limit > 0 && rec > limit) {
            return Err(AppendError::Io(io_err(
                &self.opts.dir,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a record of {rec} bytes cannot be buffered (the largest is {} bytes)",
                        if limit > 0 {
                            limit.min(MAX_PAYLOAD as u64)
                        } else {
                            MAX_PAYLOAD as u64
                        }
                    ),
                ),
            )));
        }
        let at = now_ms();
        let header = encode_header(kind, items, at, payload);
        let seq = {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            self.make_room(inner, rec)?;
            let rotate = inner.broken
                || inner
                    .segments
                    .back()
                    .is_some_and(|a| a.size > 0 && a.size + rec > self.opts.segment_bytes);
            if rotate {
                self.rotate(inner)?;
            }
            let seg = inner
                .segments
                .back_mut()
                .expect("the active segment always exists");
            let offset = seg.size;
            if let Err(e) = write_record(&seg.file, &header, payload) {
                // Cut whatever part of the record got written, so the next one starts clean.
                if seg.file.set_len(offset).is_err() {
                    inner.broken = true;
                }
                return Err(io_err(&seg.path, e).into());
            }
            seg.metas.push(Meta::new(offset, items, at, kind));
            seg.size += rec;
            inner.total_bytes += rec;
            let seq = inner.next_seq;
            inner.next_seq += 1;
            if !self.opts.fsync {
                self.publish(inner.next_seq);
            }
            seq
        };
        if self.opts.fsync {
            self.wait_durable(seq)?;
        }
        self.appended[kind as usize].fetch_add(1, Ordering::Relaxed);
        self.appended_items[kind as usize].fetch_add(u64::from(items), Ordering::Relaxed);
        Ok(())
    }

    /// Group commit: returns once record `seq` is durable, syncing for every waiter when
    /// no one else is.
    fn wait_durable(&self, seq: u64) -> Result<(), ForwardError> {
        let mut s = self.sync.lock();
        loop {
            if s.durable > seq {
                return Ok(());
            }
            if s.syncing {
                self.synced.wait(&mut s);
                continue;
            }
            s.syncing = true;
            drop(s);
            // Earlier segments were synced when they stopped being the active one.
            let (file, path, target) = {
                let inner = self.inner.lock();
                let a = inner
                    .segments
                    .back()
                    .expect("the active segment always exists");
                (a.file.clone(), a.path.clone(), inner.next_seq)
            };
            let r = file.sync_data();
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            s = self.sync.lock();
            s.syncing = false;
            self.synced.notify_all();
            match r {
                Ok(()) => {
                    if target > s.durable {
                        s.durable = target;
                        self.publish(target);
                    }
                }
                Err(e) => return Err(io_err(&path, e)),
            }
        }
    }

    fn publish(&self, end: u64) {
        if self.durable.fetch_max(end, Ordering::AcqRel) < end {
            self.durable_tx.send_if_modified(|v| {
                let newer = end > *v;
                if newer {
                    *v = end;
                }
                newer
            });
        }
    }

    /// Starts a new active segment, the old one synced first (so the group commit need
    /// only ever sync the active one).
    fn rotate(&self, inner: &mut Inner) -> Result<(), ForwardError> {
        if let Some(a) = inner.segments.back() {
            if a.size == 0 && a.first == inner.next_seq {
                a.file.set_len(0).map_err(|e| io_err(&a.path, e))?;
                inner.broken = false;
                return Ok(());
            }
            if self.opts.fsync {
                a.file.sync_data().map_err(|e| io_err(&a.path, e))?;
            }
        }
        let seg = Segment::create(&self.seg_dir, inner.next_seq)?;
        if self.opts.fsync {
            sync_dir(&self.seg_dir)?;
        }
        inner.segments.push_back(seg);
        inner.broken = false;
        Ok(())
    }

    /// Frees room for `rec` more bytes: segments every destination has passed go first,
    /// then, with `drop_oldest`, the oldest unsent ones (counted per destination).
    fn make_room(&self, inner: &mut Inner, rec: u64) -> Result<(), AppendError> {
        let limit = self.opts.max_size_bytes;
        if limit == 0 {
            return Ok(());
        }
        while inner.total_bytes + rec > limit {
            let front = inner
                .segments
                .front()
                .expect("the active segment always exists");
            let (first, end, size) = (front.first, front.end(), front.size);
            let passed = inner.min_cursor().is_some_and(|m| end <= m);
            if size == 0 && inner.segments.len() == 1 {
                break;
            }
            if !passed && !self.opts.drop_oldest {
                break;
            }
            if inner.segments.len() == 1 {
                self.rotate(inner)?;
            }
            let seg = inner.segments.pop_front().expect("two segments at least");
            inner.total_bytes -= seg.size;
            if !passed {
                for d in &mut inner.dests {
                    if d.cursor >= end {
                        continue;
                    }
                    let from = d.cursor.max(first);
                    let items: u64 = seg.metas[(from - first) as usize..]
                        .iter()
                        .map(|m| m.items as u64)
                        .sum();
                    let dropped = &mut d.dropped[FULL];
                    dropped.records += end - from;
                    dropped.items += items;
                    tracing::warn!(
                        destination = %d.name,
                        records = end - from,
                        items,
                        "forwarding buffer full: dropping the oldest records not yet sent"
                    );
                    d.cursor = end;
                }
            }
            remove_segment(&seg);
        }
        if inner.total_bytes + rec > limit {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::Full {
                size: inner.total_bytes,
                limit,
            });
        }
        Ok(())
    }

    /// Up to `max_bytes` of payload (at least one record) from `dest`'s cursor: consecutive
    /// durable records of one kind in one segment. None when `dest` has everything.
    /// Records older than `max_age` are skipped (counted) first. Blocking (one `pread`).
    pub fn read_batch(&self, dest: &str, max_bytes: usize) -> Result<Option<Batch>, ForwardError> {
        loop {
            let (file, path, kind, first_seq, records, start, end, oldest_ms) = {
                let mut guard = self.inner.lock();
                let inner = &mut *guard;
                let di = inner.dest(dest).ok_or_else(|| self.unknown(dest))?;
                let durable = self.durable.load(Ordering::Acquire);
                self.settle(inner, di, durable);
                let c = inner.dests[di].cursor;
                if c >= durable {
                    return Ok(None);
                }
                let Some((si, mi)) = inner.locate(c) else {
                    return Ok(None);
                };
                let seg = &inner.segments[si];
                let first = seg.metas[mi];
                let kind = first.kind();
                let start = first.offset as u64;
                let stop = durable.min(seg.end());
                let mut next = c;
                while next < stop {
                    let m = seg.metas[(next - seg.first) as usize];
                    if m.kind() != kind
                        || (next > c && seg.offset_of(next + 1) - start > max_bytes as u64)
                    {
                        break;
                    }
                    next += 1;
                }
                let end = seg.offset_of(next);
                let p = seg.path.clone();
                (
                    seg.file.clone(),
                    p,
                    kind,
                    c,
                    next - c,
                    start,
                    end,
                    first.at_ms(),
                )
            };
            let mut buf = vec![0u8; (end - start) as usize];
            file.read_exact_at(&mut buf, start)
                .map_err(|e| io_err(&path, e))?;
            // Check each record and decompress its payload onto the batch's.
            let mut out = Vec::with_capacity(buf.len() * 4);
            let mut decoder = snap::raw::Decoder::new();
            let (mut r, mut good, mut items) = (0usize, 0u64, 0u64);
            while r < buf.len() {
                let Some(h) = Header::parse(&buf[r..]) else {
                    break;
                };
                let pend = r + HEADER_LEN + h.len as usize;
                if pend > buf.len()
                    || h.kind != kind
                    || !h.verify(&buf[r..r + HEADER_LEN], &buf[r + HEADER_LEN..pend])
                {
                    break;
                }
                let stored = &buf[r + HEADER_LEN..pend];
                let Ok(n) = snap::raw::decompress_len(stored) else {
                    break;
                };
                let at = out.len();
                out.resize(at + n, 0);
                if decoder.decompress(stored, &mut out[at..]).is_err() {
                    out.truncate(at);
                    break;
                }
                r = pend;
                good += 1;
                items += h.items as u64;
            }
            if good < records {
                tracing::error!(
                    segment = %path.display(),
                    seq = first_seq + good,
                    "forwarding buffer: a record read back does not match its checksum; it is skipped"
                );
            }
            if good > 0 {
                return Ok(Some(Batch {
                    kind,
                    first_seq,
                    next_seq: first_seq + good,
                    records: good as u32,
                    items,
                    oldest_ms,
                    payload: out,
                }));
            }
            self.skip_corrupt(dest, first_seq);
        }
    }

    fn skip_corrupt(&self, dest: &str, seq: u64) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let items = inner
            .locate(seq)
            .map_or(0, |(si, mi)| inner.segments[si].metas[mi].items as u64);
        if let Some(d) = inner.dests.iter_mut().find(|d| d.name == dest) {
            if d.cursor == seq {
                d.cursor += 1;
                d.dropped[CORRUPT].records += 1;
                d.dropped[CORRUPT].items += items;
            }
        }
    }

    /// Moves a cursor onto a record that exists (past dropped segments and numbering gaps)
    /// and past records older than `max_age`, counting those.
    fn settle(&self, inner: &mut Inner, di: usize, durable: u64) {
        let cutoff =
            (!self.opts.max_age.is_zero()).then(|| now_ms() - self.opts.max_age.as_millis() as i64);
        let Inner {
            segments, dests, ..
        } = inner;
        let d = &mut dests[di];
        let mut aged = Dropped::default();
        while d.cursor < durable {
            let c = d.cursor;
            let si = segments.partition_point(|s| s.first <= c);
            if si == 0 {
                d.cursor = segments[0].first;
                continue;
            }
            let seg = &segments[si - 1];
            if c >= seg.end() {
                match segments.get(si) {
                    Some(next) => {
                        d.cursor = next.first;
                        continue;
                    }
                    None => break,
                }
            }
            let m = seg.metas[(c - seg.first) as usize];
            if cutoff.is_some_and(|cut| m.at_ms() < cut) {
                aged.records += 1;
                aged.items += m.items as u64;
                d.cursor += 1;
                continue;
            }
            break;
        }
        if aged.records > 0 {
            d.dropped[MAX_AGE].records += aged.records;
            d.dropped[MAX_AGE].items += aged.items;
            tracing::warn!(
                destination = %d.name,
                records = aged.records,
                items = aged.items,
                max_age = ?self.opts.max_age,
                "forwarding buffer: dropping records older than max_age that were not sent"
            );
        }
    }

    /// Records that `dest` has everything before `next_seq` (in memory; see
    /// [`persist_cursor`](Self::persist_cursor)). Never moves a cursor back.
    pub fn advance(&self, dest: &str, next_seq: u64) -> Result<(), ForwardError> {
        let mut inner = self.inner.lock();
        let di = inner.dest(dest).ok_or_else(|| self.unknown(dest))?;
        let durable = self.durable.load(Ordering::Acquire);
        let d = &mut inner.dests[di];
        d.cursor = d.cursor.max(next_seq.min(durable));
        Ok(())
    }

    /// Writes `dest`'s cursor to disk (if it moved), then deletes the segments every
    /// destination has passed. Blocking (one `fdatasync`).
    pub fn persist_cursor(&self, dest: &str) -> Result<(), ForwardError> {
        let (seq, file) = {
            let inner = self.inner.lock();
            let di = inner.dest(dest).ok_or_else(|| self.unknown(dest))?;
            let d = &inner.dests[di];
            (d.cursor, d.file.clone())
        };
        {
            let mut f = file.lock();
            match &mut *f {
                Some(cf) if cf.stored == seq => {}
                Some(cf) => cf.store(seq)?,
                None => *f = Some(CursorFile::create(&self.cursor_dir, dest, seq)?),
            }
        }
        self.reclaim();
        Ok(())
    }

    /// [`advance`](Self::advance) and [`persist_cursor`](Self::persist_cursor): the
    /// destination has acknowledged everything before `next_seq`.
    pub fn commit(&self, dest: &str, next_seq: u64) -> Result<(), ForwardError> {
        self.advance(dest, next_seq)?;
        self.persist_cursor(dest)
    }

    /// Deletes the segments (but the active one) that every destination has passed.
    fn reclaim(&self) {
        let mut gone = Vec::new();
        {
            let mut inner = self.inner.lock();
            let Some(min) = inner.min_cursor() else {
                return;
            };
            while inner.segments.len() > 1 && inner.segments[0].end() <= min {
                let seg = inner.segments.pop_front().expect("checked above");
                inner.total_bytes -= seg.size;
                gone.push(seg);
            }
        }
        for seg in &gone {
            remove_segment(seg);
        }
    }

    /// Adds a destination (a no-op for a known one); a new one starts at its cursor file's
    /// position if it has one, else at the oldest record kept. It is added even when its
    /// cursor file cannot be written (the error says why; it is retried on commit).
    pub fn ensure_destination(&self, name: &str) -> Result<(), ForwardError> {
        if self.inner.lock().dest(name).is_some() {
            return Ok(());
        }
        let oldest = self.inner.lock().oldest();
        let loaded = CursorFile::load(&self.cursor_dir, name).and_then(|f| match f {
            Some(f) => Ok(f),
            None => CursorFile::create(&self.cursor_dir, name, oldest),
        });
        let mut inner = self.inner.lock();
        if inner.dest(name).is_some() {
            return Ok(());
        }
        let oldest = inner.oldest();
        let (cursor, file, result) = match loaded {
            Ok(f) => (f.stored.max(oldest), Some(f), Ok(())),
            Err(e) => (oldest, None, Err(e)),
        };
        inner.dests.push(Dest {
            name: name.to_string(),
            cursor,
            file: Arc::new(Mutex::new(file)),
            dropped: Default::default(),
        });
        result
    }

    /// The destinations, in the order they were added.
    pub fn destinations(&self) -> Vec<String> {
        self.inner
            .lock()
            .dests
            .iter()
            .map(|d| d.name.clone())
            .collect()
    }

    /// Records below this are durable (and readable).
    pub fn durable_end(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// `dest`'s next sequence number to send, if it is a destination.
    pub fn cursor(&self, dest: &str) -> Option<u64> {
        let inner = self.inner.lock();
        inner.dest(dest).map(|i| inner.dests[i].cursor)
    }

    /// Whether `dest` has every durable record (unknown destinations have nothing to get).
    pub fn caught_up(&self, dest: &str) -> bool {
        self.cursor(dest).is_none_or(|c| c >= self.durable_end())
    }

    /// Waits until a record numbered `seq` or later is durable.
    pub async fn wait_beyond(&self, seq: u64) {
        let mut rx = self.durable_tx.subscribe();
        let _ = rx.wait_for(|d| *d > seq).await;
    }

    /// Records buffered before this Unix ms time are past `max_age`; None without a limit.
    pub fn max_age_cutoff_ms(&self) -> Option<i64> {
        (!self.opts.max_age.is_zero()).then(|| now_ms() - self.opts.max_age.as_millis() as i64)
    }

    /// Refuses further appends ([`AppendError::Closed`]); reading goes on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn options(&self) -> &BufferOptions {
        &self.opts
    }

    pub fn stats(&self) -> BufferStats {
        let now = now_ms();
        let inner = self.inner.lock();
        let destinations = inner
            .dests
            .iter()
            .map(|d| {
                let c = d.cursor.max(inner.oldest());
                let mut buffered_bytes = 0;
                let mut buffered_records = 0;
                for s in inner.segments.iter().filter(|s| s.end() > c) {
                    let from = c.max(s.first);
                    buffered_bytes += s.size - s.offset_of(from);
                    buffered_records += s.end() - from;
                }
                let oldest_unsent = inner
                    .segments
                    .iter()
                    .find(|s| s.end() > c)
                    .map(|s| s.metas[(c.max(s.first) - s.first) as usize].at_ms());
                DestinationStats {
                    name: d.name.clone(),
                    next_seq: d.cursor,
                    buffered_records,
                    buffered_bytes,
                    lag_seconds: oldest_unsent.map_or(0.0, |at| (now - at).max(0) as f64 / 1e3),
                    dropped_full: d.dropped[FULL],
                    dropped_max_age: d.dropped[MAX_AGE],
                    dropped_corrupt: d.dropped[CORRUPT],
                }
            })
            .collect();
        let metrics = self.appended[Kind::Metrics as usize].load(Ordering::Relaxed);
        let spans = self.appended[Kind::Spans as usize].load(Ordering::Relaxed);
        BufferStats {
            total_bytes: inner.total_bytes,
            segments: inner.segments.len(),
            next_seq: inner.next_seq,
            appended_records: metrics + spans,
            appended_metrics_records: metrics,
            appended_spans_records: spans,
            appended_metrics_items: self.appended_items[Kind::Metrics as usize]
                .load(Ordering::Relaxed),
            appended_spans_items: self.appended_items[Kind::Spans as usize].load(Ordering::Relaxed),
            refused_records: self.refused.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            destinations,
        }
    }

    fn unknown(&self, dest: &str) -> ForwardError {
        io_err(
            &self.cursor_dir.join(cursor::file_name(dest)),
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{dest:?} is not a destination of this buffer"),
            ),
        )
    }
}

fn remove_segment(seg: &Segment) {
    if let Err(e) = std::fs::remove_file(&seg.path) {
        tracing::warn!(segment = %seg.path.display(), error = %e, "forwarding buffer: cannot delete a segment");
    }
}
