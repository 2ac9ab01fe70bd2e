//! Moving data out of the head: cuts (a new WAL file starts), segment writes by the
//! background flusher, and retention of old segments.

use std::fs;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::head::Head;
use crate::segment::{self, Segment};
use crate::wal;
use crate::{io_err, now_us, Inner, SpanStoreError};

impl Inner {
    /// Seals the open head (if non-empty) and starts a new WAL file.
    pub(crate) fn cut(&self) -> Result<(), SpanStoreError> {
        self.cut_when(|h| !h.is_empty())
    }

    /// Seals the open head if `cond` still holds once writers are excluded.
    pub(crate) fn cut_when(&self, cond: impl Fn(&Head) -> bool) -> Result<(), SpanStoreError> {
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
    pub(crate) fn flush_sealed(&self) -> Result<(), SpanStoreError> {
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

    pub(crate) fn flush_loop(&self) {
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

    pub(crate) fn enforce_retention(&self) -> Result<usize, SpanStoreError> {
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
}

impl crate::SpanStore {
    /// Holds segment writing while the returned guard lives, as a stalled disk would: the
    /// flusher waits, sealed heads queue up. For backpressure tests.
    #[doc(hidden)]
    pub fn hold_segment_writes(&self) -> impl Sized + '_ {
        self.inner.flush_lock.lock()
    }
}
