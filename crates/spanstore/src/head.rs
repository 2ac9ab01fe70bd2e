//! The in-memory open segment. It keeps the raw encoded records (the same bytes the WAL
//! holds) plus a few fixed-size fields per span, never `Span` structs, so a head of a few
//! hundred thousand spans costs roughly its encoded size.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use meshlens_model::{Span, SpanRef, TraceId};

use crate::codec::{decode_raw, lower, Reader, SpanView};

/// A fast hasher for keys that are already random (trace ids) or small.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

pub type IdBuild = BuildHasherDefault<IdHasher>;

pub const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
pub struct HeadSpan {
    pub off: u32,
    pub len: u32,
    pub next: u32,
    /// Interned lower-case local service, span name and remote service (`NONE` if absent).
    pub svc: u32,
    pub name: u32,
    pub remote: u32,
    pub ts: u64,
    pub dur: u64,
}

#[derive(Clone, Copy)]
pub struct HeadTrace {
    pub id: TraceId,
    pub first: u32,
    pub last: u32,
    pub min_ts: u64,
    pub max_ts: u64,
}

/// Per-span fields computed outside the head lock, before insertion. Names are lower-cased,
/// borrowed when they already were.
pub struct Prepared<'a> {
    pub trace_id: TraceId,
    pub off: u32,
    pub len: u32,
    pub ts: u64,
    pub dur: u64,
    pub svc: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    pub remote: Option<Cow<'a, str>>,
}

impl<'a> Prepared<'a> {
    /// Insertion data of `s`, whose record is `len` bytes at `off` of the batch's records.
    pub fn of_span(s: &'a SpanRef<'_>, off: usize, len: usize) -> Prepared<'a> {
        Prepared {
            trace_id: s.trace_id,
            off: off as u32,
            len: len as u32,
            ts: s.timestamp.unwrap_or(0),
            dur: s.duration.unwrap_or(0),
            svc: s.local_service().map(lower),
            name: s.name.as_deref().map(lower),
            remote: s.remote_service().map(lower),
        }
    }
}

/// Decodes a run of raw records (read back from the WAL) into per-span insertion data,
/// validating every field and string on the way.
pub fn prepare(records: &[u8], n: usize) -> Result<Vec<Prepared<'_>>, crate::codec::Malformed> {
    let mut out = Vec::with_capacity(n);
    let mut r = Reader::new(records);
    let mut v = SpanView::default();
    for _ in 0..n {
        let start = r.pos;
        decode_raw(&mut r, &mut v)?;
        out.push(Prepared {
            trace_id: v.trace_id,
            off: start as u32,
            len: (r.pos - start) as u32,
            ts: v.timestamp.unwrap_or(0),
            dur: v.duration.unwrap_or(0),
            svc: v.local_service().map(lower),
            name: v.name.map(lower),
            remote: v.remote_service().map(lower),
        });
    }
    if !r.is_empty() {
        return Err(crate::codec::Malformed);
    }
    Ok(out)
}

#[derive(Default)]
pub struct Interner {
    map: HashMap<Box<str>, u32, IdBuild>,
    pub strings: Vec<Box<str>>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.map.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.into());
        self.map.insert(s.into(), id);
        id
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        self.map.get(s).copied()
    }
}

#[derive(Default)]
pub struct Head {
    pub data: Vec<u8>,
    pub spans: Vec<HeadSpan>,
    pub traces: Vec<HeadTrace>,
    pub trace_map: HashMap<TraceId, u32, IdBuild>,
    pub names: Interner,
    pub min_ts: u64,
    pub max_ts: u64,
    /// WAL files (sequence numbers) whose frames live in this head.
    pub wal_min: u64,
    pub wal_max: u64,
}

impl Head {
    pub fn new(wal_seq: u64) -> Head {
        Head {
            min_ts: u64::MAX,
            wal_min: wal_seq,
            wal_max: wal_seq,
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    fn opt(&mut self, s: &Option<Cow<'_, str>>) -> u32 {
        match s {
            Some(s) => self.names.intern(s),
            None => NONE,
        }
    }

    /// Appends records already durable in the WAL.
    pub fn insert(&mut self, records: &[u8], prepared: &[Prepared]) {
        let base = self.data.len() as u32;
        self.data.extend_from_slice(records);
        self.spans.reserve(prepared.len());
        for p in prepared {
            let idx = self.spans.len() as u32;
            let ti = match self.trace_map.get(&p.trace_id) {
                Some(&t) => {
                    let tr = &mut self.traces[t as usize];
                    let last = tr.last;
                    tr.last = idx;
                    self.spans[last as usize].next = idx;
                    t
                }
                None => {
                    let t = self.traces.len() as u32;
                    self.traces.push(HeadTrace {
                        id: p.trace_id,
                        first: idx,
                        last: idx,
                        min_ts: u64::MAX,
                        max_ts: 0,
                    });
                    self.trace_map.insert(p.trace_id, t);
                    t
                }
            };
            if p.ts != 0 {
                let tr = &mut self.traces[ti as usize];
                tr.min_ts = tr.min_ts.min(p.ts);
                tr.max_ts = tr.max_ts.max(p.ts);
                self.min_ts = self.min_ts.min(p.ts);
                self.max_ts = self.max_ts.max(p.ts);
            }
            let svc = self.opt(&p.svc);
            let name = self.opt(&p.name);
            let remote = self.opt(&p.remote);
            self.spans.push(HeadSpan {
                off: base + p.off,
                len: p.len,
                next: NONE,
                svc,
                name,
                remote,
                ts: p.ts,
                dur: p.dur,
            });
        }
    }

    pub fn record(&self, i: u32) -> &[u8] {
        let s = &self.spans[i as usize];
        &self.data[s.off as usize..(s.off + s.len) as usize]
    }

    /// Decodes span `i` into `v`. Records were validated on insertion.
    pub fn view<'a>(&'a self, i: u32, v: &mut SpanView<'a>) {
        let mut r = Reader::new(self.record(i));
        // Records were encoded from `&str`s or validated on replay, and the buffer is
        // append-only, so strings need no second validation.
        r.trusted = true;
        let _ = decode_raw(&mut r, v);
    }

    /// Span indices of trace `t`, in arrival order.
    pub fn trace_spans(&self, t: u32) -> impl Iterator<Item = u32> + '_ {
        let mut cur = self.traces[t as usize].first;
        std::iter::from_fn(move || {
            if cur == NONE {
                return None;
            }
            let c = cur;
            cur = self.spans[c as usize].next;
            Some(c)
        })
    }

    pub fn trace(&self, id: &TraceId, out: &mut Vec<Span>) {
        if let Some(&t) = self.trace_map.get(id) {
            let mut v = SpanView::default();
            for i in self.trace_spans(t) {
                self.view(i, &mut v);
                out.push(v.to_span());
            }
        }
    }
}
