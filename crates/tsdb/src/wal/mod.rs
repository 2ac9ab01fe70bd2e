//! The write-ahead log: checksummed records in numbered segment files.
//!
//! Frame: `[len u32 LE][crc32 u32 LE over type+payload][type u8][payload]`. Fsync policy: with
//! `FsyncPolicy::EveryAppend` an append returns only after `fdatasync`; concurrent appenders
//! share one sync (group commit). Replay stops at the first bad frame, truncates the log there
//! and reports how many records it dropped. Byte layout: `docs/format/wal.md`.
//!
//! Record types (the byte after the frame header): 1 series, 2 samples (legacy, raw
//! values), 3 metadata, 4 samples (compact values), 5 exemplars, 6 float histograms. A
//! float-histograms record (type 6) holds native-histogram samples of head series, running
//! to the end of the body; per sample:
//!
//! ```text
//! series id delta   varint (from the previous sample's id; the first from 0)
//! timestamp delta   varint (ms, from the previous sample's; the first from 0)
//! histogram         flags u8 (bits 0-1 counter-reset hint), schema varint,
//!                   zero threshold, spans (count, then offset varint + length uvarint),
//!                   custom values, zero count, count, sum, positive and negative bucket
//!                   counts (count, then absolute values)
//! ```
//!
//! Floats there take the compact value form of type 4 (an integer a varint, two decimals a
//! scaled varint, anything else 8 raw bytes), so integer bucket counts cost a byte or two.
//! The exact layout is in `crate::histogram`. A record that does not decode is a bad frame,
//! handled as any other (the log is truncated there, with the segment and offset logged).

mod record;

pub(crate) use record::{get_value, put_raw_value, put_value, small_code, small_value};
pub use record::{Record, SampleBatch, WalHistogram, WalSample};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use parking_lot::Mutex;

const SEGMENT_MAX_BYTES: u64 = 128 << 20;
/// What the active segment buffers before writing: it never grows past this (a batch that
/// would overflow it writes what is buffered first), so it stays one fixed allocation.
const BUFFER_BYTES: usize = 1 << 20;
const MAX_RECORD_BYTES: u32 = 256 << 20;

struct Active {
    file: File,
    buf: Vec<u8>,
    seq: u32,
    size: u64,
    /// Number of appends written (to the buffer or file) so far.
    written: u64,
}

pub struct Wal {
    dir: PathBuf,
    active: Mutex<Active>,
    /// Highest `written` count known to be on stable storage.
    synced: Mutex<u64>,
    pub(crate) bytes_written: std::sync::atomic::AtomicU64,
    pub(crate) fsyncs: std::sync::atomic::AtomicU64,
    pub(crate) fsync_nanos: std::sync::atomic::AtomicU64,
}

/// What replay found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub records: u64,
    pub dropped_records: u64,
    pub truncated_segment: Option<PathBuf>,
}

fn segment_path(dir: &Path, seq: u32) -> PathBuf {
    dir.join(format!("{seq:08}"))
}

pub fn list_segments(dir: &Path) -> io::Result<Vec<u32>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

impl Wal {
    /// Replays every record through `apply`, repairing a corrupt tail, then opens a fresh
    /// segment for appends.
    pub fn open(dir: &Path, mut apply: impl FnMut(Record)) -> io::Result<(Wal, ReplayReport)> {
        fs::create_dir_all(dir)?;
        let segs = list_segments(dir)?;
        let mut report = ReplayReport::default();
        for (i, &seq) in segs.iter().enumerate() {
            let path = segment_path(dir, seq);
            let mut data = Vec::new();
            File::open(&path)?.read_to_end(&mut data)?;
            let (good_end, n) = replay_segment(&data, &mut apply);
            report.records += n;
            if good_end < data.len() {
                let dropped = 1 + count_frames_after(&data[good_end..]);
                report.dropped_records += dropped;
                tracing::warn!(
                    segment = %path.display(),
                    offset = good_end,
                    dropped_records = dropped,
                    "wal: corrupt or torn record; truncating the log there"
                );
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(good_end as u64)?;
                f.sync_all()?;
                report.truncated_segment = Some(path);
                // Later segments follow a hole: they cannot be trusted to be in order.
                for &later in &segs[i + 1..] {
                    let p = segment_path(dir, later);
                    let mut d = Vec::new();
                    File::open(&p)?.read_to_end(&mut d)?;
                    report.dropped_records += count_frames_after(&d);
                    fs::remove_file(p)?;
                }
                break;
            }
        }
        let seq = segs.last().map_or(1, |s| s + 1);
        let file = create_segment(dir, seq)?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            active: Mutex::new(Active {
                file,
                buf: Vec::with_capacity(BUFFER_BYTES),
                seq,
                size: 0,
                written: 0,
            }),
            synced: Mutex::new(0),
            bytes_written: Default::default(),
            fsyncs: Default::default(),
            fsync_nanos: Default::default(),
        };
        Ok((wal, report))
    }

    /// Appends records; returns a ticket to pass to `sync`.
    pub fn append(&self, records: &[Record]) -> io::Result<u64> {
        let mut frames = Vec::new();
        for r in records {
            encode_frame(&mut frames, r);
        }
        self.append_frames(&frames)
    }

    /// Appends a batch of samples as one record; returns a ticket to pass to `sync`. The
    /// frame is sealed (length, checksum) before the log's lock is taken, so concurrent
    /// appenders serialise only on one copy.
    pub fn append_batch(&self, batch: &mut SampleBatch) -> io::Result<u64> {
        seal_frame(&mut batch.buf, 0);
        self.append_frames(&batch.buf)
    }

    /// Appends whole encoded frames.
    fn append_frames(&self, frames: &[u8]) -> io::Result<u64> {
        let mut a = self.active.lock();
        if a.buf.len() + frames.len() > BUFFER_BYTES {
            flush_active(&mut a)?;
        }
        if frames.len() > BUFFER_BYTES {
            // Larger than the buffer: written as the buffer would be, without copying.
            a.file.seek(SeekFrom::End(0))?;
            a.file.write_all(frames)?;
        } else {
            a.buf.extend_from_slice(frames);
        }
        let n = frames.len() as u64;
        a.size += n;
        a.written += 1;
        self.bytes_written
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if a.size >= SEGMENT_MAX_BYTES {
            flush_active(&mut a)?;
            a.file.sync_data()?;
            let seq = a.seq + 1;
            a.file = create_segment(&self.dir, seq)?;
            a.seq = seq;
            a.size = 0;
        }
        Ok(a.written)
    }

    /// Makes everything up to `ticket` durable; concurrent callers share one fsync.
    pub fn sync(&self, ticket: u64) -> io::Result<()> {
        let mut synced = self.synced.lock();
        if *synced >= ticket {
            return Ok(());
        }
        let (file, upto) = {
            let mut a = self.active.lock();
            flush_active(&mut a)?;
            (a.file.try_clone()?, a.written)
        };
        let t0 = Instant::now();
        file.sync_data()?;
        self.fsyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.fsync_nanos.fetch_add(
            t0.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        *synced = upto;
        Ok(())
    }

    /// Replaces the whole log with `records` (a checkpoint of what the head still holds):
    /// written to a new segment and synced before the older segments are removed, so a crash
    /// at any point leaves a log that replays to the same head.
    pub fn checkpoint(&self, records: impl IntoIterator<Item = Record>) -> io::Result<()> {
        let mut a = self.active.lock();
        flush_active(&mut a)?;
        a.file.sync_data()?;
        let seq = a.seq + 1;
        let tmp = self.dir.join(format!("{seq:08}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            let mut buf = Vec::new();
            for r in records {
                encode_frame(&mut buf, &r);
                if buf.len() > 1 << 20 {
                    f.write_all(&buf)?;
                    buf.clear();
                }
            }
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, segment_path(&self.dir, seq))?;
        for old in list_segments(&self.dir)? {
            if old < seq {
                fs::remove_file(segment_path(&self.dir, old))?;
            }
        }
        let next = seq + 1;
        a.file = create_segment(&self.dir, next)?;
        a.seq = next;
        a.size = 0;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    pub fn size_on_disk(&self) -> u64 {
        list_segments(&self.dir)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| fs::metadata(segment_path(&self.dir, s)).ok())
            .map(|m| m.len())
            .sum()
    }
}

fn create_segment(dir: &Path, seq: u32) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, seq))?;
    File::open(dir)?.sync_all()?;
    Ok(f)
}

fn flush_active(a: &mut Active) -> io::Result<()> {
    if !a.buf.is_empty() {
        a.file.seek(SeekFrom::End(0))?;
        a.file.write_all(&a.buf)?;
        a.buf.clear();
    }
    Ok(())
}

fn encode_frame(out: &mut Vec<u8>, r: &Record) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    r.encode(out);
    seal_frame(out, start);
}

/// Fills in the header of the frame at `start`, whose body runs to the end of `out`.
fn seal_frame(out: &mut [u8], start: usize) {
    let body = &out[start + 8..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes one frame at the start of `data`: the record and the frame's length.
fn decode_frame(data: &[u8]) -> Option<(Record, usize)> {
    let len = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(data.get(4..8)?.try_into().ok()?);
    if len == 0 || len > MAX_RECORD_BYTES {
        return None;
    }
    let body = data.get(8..8 + len as usize)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    Some((Record::decode(body)?, 8 + len as usize))
}

/// Applies every good frame; returns the offset after the last good one and the count.
fn replay_segment(data: &[u8], apply: &mut impl FnMut(Record)) -> (usize, u64) {
    let mut pos = 0;
    let mut n = 0;
    while pos < data.len() {
        match decode_frame(&data[pos..]) {
            Some((rec, len)) => {
                apply(rec);
                pos += len;
                n += 1;
            }
            None => break,
        }
    }
    (pos, n)
}

/// After a bad frame, how many plausible frames follow (reported as dropped).
fn count_frames_after(data: &[u8]) -> u64 {
    let mut n = 0;
    let mut pos = 0;
    // Skip the bad frame by its declared length when that is plausible.
    if let Some(len) = data
        .get(0..4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    {
        if len > 0 && len <= MAX_RECORD_BYTES {
            pos = 8 + len as usize;
        } else {
            return 0;
        }
    }
    while pos < data.len() {
        match decode_frame(&data[pos..]) {
            Some((_, len)) => {
                pos += len;
                n += 1;
            }
            None => break,
        }
    }
    n
}

#[cfg(test)]
mod tests;
