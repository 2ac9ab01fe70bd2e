//! Opening a store: corrupt segments are quarantined, the WAL is replayed (a torn tail is
//! truncated), retention runs and the segment writer thread starts.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::head::{self, Head};
use crate::names::Names;
use crate::segment::{self, Segment};
use crate::wal::{self, Wal};
use crate::{
    io_err, Counters, FlushCtl, Inner, Parts, SpanStore, SpanStoreError, SpanStoreOptions,
};

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

        let memo = crate::memo::MemoLru::new(opts.preaggregate_bytes);
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
            memo,
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
}
