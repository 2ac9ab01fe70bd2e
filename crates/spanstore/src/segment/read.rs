//! Reading a segment through mmap: validation on open, trace-id lookup, block decoding,
//! postings.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use meshlens_model::{Span, TraceId};

use crate::codec::{
    kind_from_code, unzigzag, DResult, EpView, Malformed, Reader, SpanView, E_PORT, E_SVC, E_V4,
    E_V6, F_ANN, F_DEBUG, F_DUR, F_KIND_SHIFT, F_LOCAL, F_NAME, F_PARENT, F_PARENT_LOCAL, F_REMOTE,
    F_SHARED, F_TAGS, F_TS,
};
use crate::head::IdBuild;
use crate::SpanStoreError;

use super::*;

/// The sorted string dictionary: one blob, offsets, binary search by content.
pub struct Dict {
    blob: String,
    offs: Vec<u32>,
}

impl Dict {
    pub fn len(&self) -> usize {
        self.offs.len().saturating_sub(1)
    }

    #[inline]
    pub fn get(&self, i: u32) -> Option<&str> {
        let i = i as usize;
        let a = *self.offs.get(i)? as usize;
        let b = *self.offs.get(i + 1)? as usize;
        // Not `blob.get(a..b)`: its char-boundary checks read the string's bytes, a cache
        // miss per lookup in a large dictionary, even when the caller only wants the id.
        // SAFETY: `parse_footer` builds `offs` from 0 as the blob's length after each entry
        // (so ascending and within the blob) and rejects the footer unless every offset is
        // a char boundary; neither changes afterwards.
        Some(unsafe { self.blob.get_unchecked(a..b) })
    }

    /// The ids of the strings starting with `prefix`: a contiguous range, the dictionary
    /// being sorted.
    pub fn prefix_range(&self, prefix: &str) -> (u32, u32) {
        let at = |i: usize| self.get(i as u32).unwrap_or_default();
        let lo = partition(self.len(), |i| at(i) < prefix);
        let hi = partition(self.len(), |i| at(i) < prefix || at(i).starts_with(prefix));
        (lo as u32, hi as u32)
    }

    pub fn find(&self, s: &str) -> Option<u32> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid as u32)?.cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid as u32),
            }
        }
        None
    }
}

/// The first index in `0..n` for which `pred` is false (`pred` true then false).
fn partition(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

pub struct Block {
    pub off: u64,
    pub clen: u32,
    pub raw_len: u32,
    pub crc: u32,
    pub first_trace: u32,
    pub min_ts: u64,
    pub max_ts: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PostKey {
    pub kind: u8,
    pub a: u32,
    pub b: u32,
}

pub struct Segment {
    pub path: PathBuf,
    pub seq: u64,
    pub file_bytes: u64,
    pub wal_max: u64,
    pub min_ts: u64,
    pub max_ts: u64,
    pub n_spans: u64,
    pub n_traces: u32,
    map: Mmap,
    ids_off: usize,
    pub blocks: Vec<Block>,
    is128: Vec<u32>,
    /// Per trace: first span time (0 = none), last span time, longest span duration.
    pub t_min: Vec<u64>,
    pub t_max: Vec<u64>,
    pub t_dur: Vec<u64>,
    pub dict: Dict,
    post_keys: Vec<PostKey>,
    post_offs: Vec<(u32, u32)>,
    post_data: Vec<u8>,
    /// Pre-aggregates computed over this segment (`crate::memo`); they go with it.
    pub memo: crate::memo::SegMemo,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> SpanStoreError {
    SpanStoreError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

thread_local! {
    static DECOMP: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses into `out`'s spare capacity (the caller reserves the block's size).
fn decompress_into(c: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
    DECOMP.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("set above").decompress_to_buffer(c, out)
    })
}

impl Segment {
    /// Opens and validates a segment file (trailer, checksums, footer structure).
    pub fn open(path: &Path) -> Result<Segment, SpanStoreError> {
        let file = OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(io_err("open segment", path))?;
        // SAFETY: segment files are immutable once renamed into place; this process never
        // writes them, and retention only unlinks them (the mapping stays valid).
        let map = unsafe { Mmap::map(&file) }.map_err(io_err("mmap segment", path))?;
        let len = map.len();
        if len < MAGIC.len() + TRAILER || &map[..8] != MAGIC {
            return Err(corrupt(path, "bad header or too short"));
        }
        let t = &map[len - TRAILER..];
        if &t[32..40] != END_MAGIC {
            return Err(corrupt(path, "bad trailer magic"));
        }
        let u64at = |i: usize| u64::from_le_bytes(t[i..i + 8].try_into().unwrap());
        let ids_off = u64at(0) as usize;
        let footer_off = u64at(8) as usize;
        let footer_len = u64at(16) as usize;
        let footer_crc = u32::from_le_bytes(t[24..28].try_into().unwrap());
        let ids_crc = u32::from_le_bytes(t[28..32].try_into().unwrap());
        if ids_off < 8
            || ids_off > footer_off
            || footer_off.checked_add(footer_len) != Some(len - TRAILER)
        {
            return Err(corrupt(path, "bad trailer offsets"));
        }
        let fc = &map[footer_off..footer_off + footer_len];
        if crc32fast::hash(fc) != footer_crc {
            return Err(corrupt(path, "footer checksum mismatch"));
        }
        let ids_len = footer_off - ids_off;
        if crc32fast::hash(&map[ids_off..footer_off]) != ids_crc || !ids_len.is_multiple_of(16) {
            return Err(corrupt(path, "trace id checksum mismatch"));
        }
        let footer = zstd::stream::decode_all(fc).map_err(|e| corrupt(path, e.to_string()))?;
        let mut seg = Self::parse_footer(path, map, ids_off, footer)
            .map_err(|_| corrupt(path, "malformed footer"))?;
        if seg.n_traces as usize * 16 != ids_len {
            return Err(corrupt(path, "trace count mismatch"));
        }
        for b in &seg.blocks {
            if b.off as usize + b.clen as usize > ids_off {
                return Err(corrupt(path, "block out of range"));
            }
        }
        seg.file_bytes = len as u64;
        Ok(seg)
    }

    fn parse_footer(path: &Path, map: Mmap, ids_off: usize, footer: Vec<u8>) -> DResult<Segment> {
        let mut r = Reader::new(&footer);
        if r.uvarint()? != VERSION {
            return Err(Malformed);
        }
        let seq = r.uvarint()?;
        let _wal_min = r.uvarint()?;
        let wal_max = r.uvarint()?;
        let min_ts = r.uvarint()?;
        let max_ts = r.uvarint()?;
        let n_spans = r.uvarint()?;
        let n_traces = u32::try_from(r.uvarint()?).map_err(|_| Malformed)?;
        let n_blocks = r.uvarint()? as usize;
        if n_blocks > footer.len() {
            return Err(Malformed);
        }
        let mut blocks = Vec::with_capacity(n_blocks);
        let u32v = |r: &mut Reader<'_>| u32::try_from(r.uvarint()?).map_err(|_| Malformed);
        for _ in 0..n_blocks {
            blocks.push(Block {
                off: r.uvarint()?,
                clen: u32v(&mut r)?,
                raw_len: u32v(&mut r)?,
                crc: u32v(&mut r)?,
                first_trace: u32v(&mut r)?,
                min_ts: {
                    let _n_spans = r.uvarint()?;
                    r.uvarint()?
                },
                max_ts: r.uvarint()?,
            });
        }
        let n128 = r.uvarint()? as usize;
        if n128 > n_traces as usize {
            return Err(Malformed);
        }
        let mut is128 = Vec::with_capacity(n128);
        let mut prev = 0u32;
        for _ in 0..n128 {
            prev = prev.checked_add(u32v(&mut r)?).ok_or(Malformed)?;
            is128.push(prev);
        }
        if n_traces as usize > footer.len() {
            return Err(Malformed);
        }
        let n = n_traces as usize;
        let (mut t_min, mut t_max, mut t_dur) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for _ in 0..n {
            let m = r.uvarint()?;
            let span = r.uvarint()?;
            let d = r.uvarint()?;
            let m = m.saturating_sub(1);
            t_min.push(m);
            t_max.push(m.saturating_add(span));
            t_dur.push(d);
        }
        let nd = r.uvarint()? as usize;
        if nd > footer.len() {
            return Err(Malformed);
        }
        let mut blob = Vec::new();
        let mut offs = Vec::with_capacity(nd + 1);
        offs.push(0u32);
        let mut prev_start = 0usize;
        for _ in 0..nd {
            let shared = r.uvarint()? as usize;
            let sl = r.uvarint()? as usize;
            let suffix = r.bytes(sl)?;
            let start = blob.len();
            let prev_len = start - prev_start;
            if shared > prev_len {
                return Err(Malformed);
            }
            blob.extend_from_within(prev_start..prev_start + shared);
            blob.extend_from_slice(suffix);
            prev_start = start;
            offs.push(u32::try_from(blob.len()).map_err(|_| Malformed)?);
        }
        let blob = String::from_utf8(blob).map_err(|_| Malformed)?;
        // Every entry must fall on char boundaries for `get` to succeed.
        if offs.iter().any(|&o| !blob.is_char_boundary(o as usize)) {
            return Err(Malformed);
        }
        let nk = r.uvarint()? as usize;
        if nk > footer.len() {
            return Err(Malformed);
        }
        let mut post_keys = Vec::with_capacity(nk);
        let mut post_offs = Vec::with_capacity(nk);
        for _ in 0..nk {
            let kind = r.u8()?;
            let a = u32v(&mut r)?;
            let b = u32v(&mut r)?;
            let cnt = u32v(&mut r)?;
            let start = r.pos as u32;
            for _ in 0..cnt {
                r.uvarint()?;
            }
            post_keys.push(PostKey { kind, a, b });
            post_offs.push((start, cnt));
        }
        if post_keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Malformed);
        }
        Ok(Segment {
            path: path.to_path_buf(),
            seq,
            file_bytes: 0,
            wal_max,
            min_ts,
            max_ts,
            n_spans,
            n_traces,
            map,
            ids_off,
            blocks,
            is128,
            t_min,
            t_max,
            t_dur,
            dict: Dict { blob, offs },
            post_keys,
            post_offs,
            post_data: footer,
            memo: Default::default(),
        })
    }

    #[inline]
    pub fn trace_id(&self, ord: u32) -> TraceId {
        let o = self.ids_off + ord as usize * 16;
        let b = &self.map[o..o + 16];
        TraceId {
            high: u64::from_be_bytes(b[..8].try_into().unwrap()),
            low: u64::from_be_bytes(b[8..].try_into().unwrap()),
            is_128: self.is128.binary_search(&ord).is_ok(),
        }
    }

    pub fn find_trace(&self, id: &TraceId) -> Option<u32> {
        let key = (id.high, id.low);
        let (mut lo, mut hi) = (0u32, self.n_traces);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let o = self.ids_off + mid as usize * 16;
            let b = &self.map[o..o + 16];
            let k = (
                u64::from_be_bytes(b[..8].try_into().unwrap()),
                u64::from_be_bytes(b[8..].try_into().unwrap()),
            );
            if k < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        // At most two entries share (high, low): the 64-bit and the 128-bit id.
        (lo..self.n_traces.min(lo + 2)).find(|&o| self.trace_id(o) == *id)
    }

    pub fn block_of(&self, ord: u32) -> usize {
        self.blocks.partition_point(|b| b.first_trace <= ord) - 1
    }

    pub fn load_block(&self, bi: usize) -> Result<Vec<u8>, SpanStoreError> {
        let mut raw = Vec::new();
        self.load_block_into(bi, &mut raw)?;
        Ok(raw)
    }

    /// Decompresses block `bi` into `raw`, reusing its allocation (scans read many blocks).
    pub fn load_block_into(&self, bi: usize, raw: &mut Vec<u8>) -> Result<(), SpanStoreError> {
        let b = &self.blocks[bi];
        let c = &self.map[b.off as usize..b.off as usize + b.clen as usize];
        if crc32fast::hash(c) != b.crc {
            return Err(corrupt(&self.path, format!("block {bi} checksum mismatch")));
        }
        raw.clear();
        raw.reserve(b.raw_len as usize);
        decompress_into(c, raw).map_err(|e| corrupt(&self.path, format!("block {bi}: {e}")))?;
        if raw.len() != b.raw_len as usize {
            return Err(corrupt(&self.path, format!("block {bi} length mismatch")));
        }
        Ok(())
    }

    /// Postings for a key: trace ordinals, ascending.
    pub fn postings(&self, kind: u8, a: u32, b: u32) -> Option<PostingIter<'_>> {
        let i = self.post_keys.binary_search(&PostKey { kind, a, b }).ok()?;
        let (start, n) = self.post_offs[i];
        Some(PostingIter {
            r: Reader::at(&self.post_data, start as usize),
            left: n,
            cur: 0,
            first: true,
        })
    }

    /// All postings keys of one kind (used to rebuild the name indexes).
    pub fn keys_of(&self, kind: u8) -> impl Iterator<Item = PostKey> + '_ {
        let s = self.post_keys.partition_point(|k| k.kind < kind);
        self.post_keys[s..]
            .iter()
            .take_while(move |k| k.kind == kind)
            .copied()
    }

    /// Skips `k` groups from `pos` in a block buffer.
    pub fn skip_groups(buf: &[u8], mut pos: usize, k: u32) -> DResult<usize> {
        for _ in 0..k {
            let mut r = Reader::at(buf, pos);
            let len = r.uvarint()? as usize;
            pos = r.pos.checked_add(len).ok_or(Malformed)?;
            if pos > buf.len() {
                return Err(Malformed);
            }
        }
        Ok(pos)
    }

    /// Decodes the trace group at `pos` into `out[..n]`, returning `(n, next_pos)`.
    pub fn decode_group<'a>(
        &'a self,
        buf: &'a [u8],
        pos: usize,
        trace_id: TraceId,
        out: &mut Vec<SpanView<'a>>,
    ) -> DResult<(usize, usize)> {
        let mut r = Reader::at(buf, pos);
        let len = r.uvarint()? as usize;
        let end = r.pos.checked_add(len).ok_or(Malformed)?;
        if end > buf.len() {
            return Err(Malformed);
        }
        let mut r = Reader::at(&buf[..end], r.pos);
        let n = r.uvarint()? as usize;
        let base = r.uvarint()?;
        if n > len / 8 {
            return Err(Malformed);
        }
        let ids = r.bytes(n * 8)?;
        while out.len() < n {
            out.push(SpanView::default());
        }
        for k in 0..n {
            let v = &mut out[k];
            v.trace_id = trace_id;
            v.id = u64::from_be_bytes(ids[k * 8..k * 8 + 8].try_into().unwrap());
            self.decode_span(&mut r, ids, base, v)?;
        }
        if !r.is_empty() {
            return Err(Malformed);
        }
        Ok((n, end))
    }

    #[inline]
    fn sref<'a>(&'a self, r: &mut Reader<'a>) -> DResult<&'a str> {
        let v = r.uvarint()?;
        if v & 1 == 0 {
            self.dict
                .get(u32::try_from(v >> 1).map_err(|_| Malformed)?)
                .ok_or(Malformed)
        } else {
            let b = r.bytes((v >> 1) as usize)?;
            std::str::from_utf8(b).map_err(|_| Malformed)
        }
    }

    fn seg_ep<'a>(&'a self, r: &mut Reader<'a>) -> DResult<EpView<'a>> {
        let f = r.u8()?;
        let mut e = EpView::default();
        if f & E_SVC != 0 {
            e.service = Some(self.sref(r)?);
        }
        if f & E_V4 != 0 {
            e.ipv4 = Some(self.sref(r)?);
        }
        if f & E_V6 != 0 {
            e.ipv6 = Some(self.sref(r)?);
        }
        if f & E_PORT != 0 {
            e.port = Some(u16::try_from(r.uvarint()?).map_err(|_| Malformed)?);
        }
        Ok(e)
    }

    fn decode_span<'a>(
        &'a self,
        r: &mut Reader<'a>,
        ids: &[u8],
        base: u64,
        v: &mut SpanView<'a>,
    ) -> DResult<()> {
        let f = u32::try_from(r.uvarint()?).map_err(|_| Malformed)?;
        v.parent_id = if f & F_PARENT_LOCAL != 0 {
            let p = r.uvarint()? as usize;
            let b = ids.get(p * 8..p * 8 + 8).ok_or(Malformed)?;
            Some(u64::from_be_bytes(b.try_into().unwrap()))
        } else if f & F_PARENT != 0 {
            Some(r.u64_be()?)
        } else {
            None
        };
        v.name = if f & F_NAME != 0 {
            Some(self.sref(r)?)
        } else {
            None
        };
        v.kind = kind_from_code((f >> F_KIND_SHIFT) & 7)?;
        v.timestamp = if f & F_TS != 0 {
            Some(base.wrapping_add(unzigzag(r.uvarint()?) as u64))
        } else {
            None
        };
        v.duration = if f & F_DUR != 0 {
            Some(r.uvarint()?)
        } else {
            None
        };
        v.local = if f & F_LOCAL != 0 {
            Some(self.seg_ep(r)?)
        } else {
            None
        };
        v.remote = if f & F_REMOTE != 0 {
            Some(self.seg_ep(r)?)
        } else {
            None
        };
        v.annotations.clear();
        if f & F_ANN != 0 {
            let n = r.uvarint()?;
            for _ in 0..n {
                let t = base.wrapping_add(unzigzag(r.uvarint()?) as u64);
                v.annotations.push((t, self.sref(r)?));
            }
        }
        v.tags.clear();
        if f & F_TAGS != 0 {
            let n = r.uvarint()?;
            for _ in 0..n {
                let k = self.sref(r)?;
                v.tags.push((k, self.sref(r)?));
            }
        }
        v.debug = f & F_DEBUG != 0;
        v.shared = f & F_SHARED != 0;
        Ok(())
    }

    /// Spans of the trace at ordinal `ord`, decoded from `block` (already loaded).
    pub fn trace_in_block<'a>(
        &'a self,
        block: &'a [u8],
        bi: usize,
        ord: u32,
        out: &mut Vec<SpanView<'a>>,
    ) -> Result<usize, SpanStoreError> {
        let first = self.blocks[bi].first_trace;
        let pos = Self::skip_groups(block, 0, ord - first)
            .map_err(|_| corrupt(&self.path, format!("block {bi} malformed")))?;
        let (n, _) = self
            .decode_group(block, pos, self.trace_id(ord), out)
            .map_err(|_| corrupt(&self.path, format!("block {bi} malformed")))?;
        Ok(n)
    }

    pub fn trace(&self, id: &TraceId, out: &mut Vec<Span>) -> Result<(), SpanStoreError> {
        let Some(ord) = self.find_trace(id) else {
            return Ok(());
        };
        let bi = self.block_of(ord);
        let block = self.load_block(bi)?;
        let mut views = Vec::new();
        let n = self.trace_in_block(&block, bi, ord, &mut views)?;
        out.extend(views[..n].iter().map(SpanView::to_span));
        Ok(())
    }

    /// Visits every trace group of the blocks overlapping `[lo, hi]`.
    pub fn for_each_group(
        &self,
        lo: u64,
        hi: u64,
        f: &mut dyn FnMut(u32, &[SpanView<'_>]),
    ) -> Result<(), SpanStoreError> {
        for (bi, b) in self.blocks.iter().enumerate() {
            if b.max_ts < lo || b.min_ts > hi {
                continue;
            }
            let block = self.load_block(bi)?;
            let mut views = Vec::new();
            let mut pos = 0;
            let mut ord = b.first_trace;
            while pos < block.len() {
                if ord >= self.n_traces {
                    return Err(corrupt(&self.path, format!("block {bi} has extra groups")));
                }
                let tmin = self.t_min[ord as usize];
                let tmax = self.t_max[ord as usize];
                if tmin != 0 && tmax >= lo && tmin <= hi {
                    let (n, next) = self
                        .decode_group(&block, pos, self.trace_id(ord), &mut views)
                        .map_err(|_| corrupt(&self.path, format!("block {bi} malformed")))?;
                    f(ord, &views[..n]);
                    pos = next;
                } else {
                    pos = Self::skip_groups(&block, pos, 1)
                        .map_err(|_| corrupt(&self.path, format!("block {bi} malformed")))?;
                }
                ord += 1;
            }
        }
        Ok(())
    }
}

pub struct PostingIter<'a> {
    r: Reader<'a>,
    left: u32,
    cur: u32,
    first: bool,
}

impl Iterator for PostingIter<'_> {
    type Item = u32;
    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated when the footer was parsed.
        let d = self.r.uvarint().ok()? as u32;
        self.cur = if self.first {
            d
        } else {
            self.cur.wrapping_add(d)
        };
        self.first = false;
        Some(self.cur)
    }
}

/// A trace id hash set type used by queries.
pub type TraceSet = std::collections::HashSet<TraceId, IdBuild>;
