//! The write path: encode a batch once, append it to the WAL, insert the same bytes into the
//! head, and cut the head when it reaches its target size.

use std::fs;
use std::sync::atomic::Ordering;
use std::time::Duration;

use meshlens_model::{Span, SpanRef};

use crate::codec::{self, encode_raw_ref};
use crate::head::{self, Head, Prepared};
use crate::wal;
use crate::{io_err, Inner, SpanStoreError};

/// Writers wait while this many sealed heads are still being written.
const MAX_SEALED: usize = 3;

impl Inner {
    pub(crate) fn is_full(&self, h: &Head) -> bool {
        h.len() >= self.opts.segment_target_spans.max(1)
            || h.bytes() >= self.opts.segment_target_bytes.clamp(1, 1 << 31)
    }

    pub(crate) fn head_full(&self) -> bool {
        let p = self.parts.read();
        let h = p.head.read();
        self.is_full(&h)
    }

    pub(crate) fn request_flush(&self) {
        let mut c = self.flush_ctl.lock();
        c.requested = true;
        self.flush_cv.notify_all();
    }

    pub(crate) fn wal_bytes(&self) -> u64 {
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

    pub(crate) fn write(&self, spans: &[Span]) -> Result<(), SpanStoreError> {
        let refs: Vec<SpanRef<'_>> = spans.iter().map(SpanRef::from_span).collect();
        self.write_refs(&refs)
    }

    pub(crate) fn write_refs(&self, spans: &[SpanRef<'_>]) -> Result<(), SpanStoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SpanStoreError::Closed);
        }
        if spans.is_empty() {
            return Ok(());
        }
        // Encode once: frame header, count, records. The records are also the head's bytes,
        // and the per-span insertion data comes from the spans themselves, not a re-decode.
        let mut frame = Vec::with_capacity(spans.len() * 320 + 16);
        frame.extend_from_slice(&[0u8; wal::FRAME_HEADER]);
        codec::put_uvarint(&mut frame, spans.len() as u64);
        let rec_start = frame.len();
        let mut prepared = Vec::with_capacity(spans.len());
        for s in spans {
            let off = frame.len();
            encode_raw_ref(s, &mut frame);
            prepared.push(Prepared::of_span(s, off - rec_start, frame.len() - off));
        }
        let payload_len = (frame.len() - wal::FRAME_HEADER) as u32;
        let crc = crc32fast::hash(&frame[wal::FRAME_HEADER..]);
        frame[..4].copy_from_slice(&payload_len.to_le_bytes());
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        let records = &frame[rec_start..];
        debug_assert!(
            head::prepare(records, spans.len()).is_ok_and(|p| p.len() == prepared.len()),
            "span records must decode as encoded"
        );

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
}
