//! Immutable segment files: trace-grouped, dictionary-coded span blocks compressed with
//! zstd, a raw sorted trace-id array read through mmap (binary search without loading it),
//! and a compressed footer with the block index, per-trace time/duration table, string
//! dictionary and postings. See `docs/format.md` for the byte layout.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use meshlens_model::{Span, TraceId};

use crate::codec::{
    kind_from_code, lower, put_uvarint, unzigzag, zigzag, DResult, EpView, Malformed, Reader,
    SpanView, E_PORT, E_SVC, E_V4, E_V6, F_ANN, F_DEBUG, F_DUR, F_KIND_SHIFT, F_LOCAL, F_NAME,
    F_PARENT, F_PARENT_LOCAL, F_REMOTE, F_SHARED, F_TAGS, F_TS,
};
use crate::head::{Head, IdBuild};
use crate::wal::sync_dir;
use crate::SpanStoreError;

pub const MAGIC: &[u8; 8] = b"MLSPSEG1";
pub const END_MAGIC: &[u8; 8] = b"MLSPEND1";
pub const TRAILER: usize = 8 + 8 + 8 + 4 + 4 + 8;
pub const VERSION: u64 = 1;
/// Uncompressed bytes per block: big enough for zstd to find repeats across traces, small
/// enough that a trace-by-id lookup decompresses little.
pub const BLOCK_TARGET: usize = 128 << 10;
/// A tag value or IP goes into the dictionary when it occurs at least this often; rarer
/// ones are stored inline where zstd still compresses their repeats within a block.
pub const DICT_MIN_COUNT: u32 = 4;
/// Every value of a tag key with at most this many distinct values goes into the
/// dictionary, so low-cardinality keys are fully indexed (exact `key=value` postings and
/// autocomplete after restart).
pub const LOW_CARDINALITY: usize = 1000;
const ZSTD_LEVEL: i32 = 3;

// Postings kinds.
pub const P_SVC: u8 = 0;
pub const P_SVC_NAME: u8 = 1;
pub const P_SVC_REMOTE: u8 = 2;
pub const P_NAME: u8 = 3;
pub const P_REMOTE: u8 = 4;
pub const P_TAG_KEY: u8 = 5;
pub const P_TAG_KV: u8 = 6;
pub const P_ANN: u8 = 7;

pub fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

pub fn parse_seg_name(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")?.parse().ok()
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpanStoreError + 'a {
    move |source| SpanStoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// Writing

#[derive(Default)]
struct StrStat {
    count: u32,
    structural: bool,
}

type FastMap<K, V> = HashMap<K, V, IdBuild>;

struct Builder<'h> {
    stats: FastMap<&'h str, StrStat>,
    lowered: Vec<String>,
}

impl<'h> Builder<'h> {
    fn note(&mut self, s: &'h str, structural: bool) {
        let e = self.stats.entry(s).or_default();
        e.count += 1;
        e.structural |= structural;
    }
}

fn put_ref(out: &mut Vec<u8>, dict: &FastMap<&str, u32>, s: &str) {
    match dict.get(s) {
        Some(&id) => put_uvarint(out, u64::from(id) << 1),
        None => {
            put_uvarint(out, ((s.len() as u64) << 1) | 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

struct BlockInfo {
    off: u64,
    clen: u32,
    raw_len: u32,
    crc: u32,
    first_trace: u32,
    n_spans: u32,
    min_ts: u64,
    max_ts: u64,
}

/// Writes `head` as segment `seq` (to a temp name, synced, then renamed) and returns its path.
pub fn write_segment(
    dir: &Path,
    seq: u64,
    head: &Head,
    fsync: bool,
) -> Result<PathBuf, SpanStoreError> {
    let final_path = seg_path(dir, seq);
    let tmp_path = dir.join(format!("{seq:020}.seg.tmp"));
    let file = File::create(&tmp_path).map_err(io_err("create segment", &tmp_path))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    build(head, seq, &mut w).map_err(io_err("write segment", &tmp_path))?;
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(io_err("write segment", &tmp_path))?;
    if fsync {
        file.sync_all().map_err(io_err("sync segment", &tmp_path))?;
    }
    drop(file);
    fs::rename(&tmp_path, &final_path).map_err(io_err("rename segment", &final_path))?;
    if fsync {
        sync_dir(dir).map_err(io_err("sync dir", dir))?;
    }
    Ok(final_path)
}

fn build<W: Write>(head: &Head, seq: u64, w: &mut W) -> io::Result<()> {
    // Traces in id order.
    let mut order: Vec<u32> = (0..head.traces.len() as u32).collect();
    order.sort_unstable_by_key(|&t| head.traces[t as usize].id);

    // Pass 1: string statistics.
    let mut b = Builder {
        stats: FastMap::default(),
        lowered: Vec::new(),
    };
    let mut per_key: FastMap<&str, Option<std::collections::HashSet<&str, IdBuild>>> =
        FastMap::default();
    let mut v = SpanView::default();
    for i in 0..head.spans.len() as u32 {
        head.view(i, &mut v);
        for s in [v.name, v.local_service(), v.remote_service()]
            .into_iter()
            .flatten()
        {
            b.note(s, true);
            let l = lower(s);
            if let std::borrow::Cow::Owned(l) = l {
                b.lowered.push(l);
            }
        }
        for e in [v.local, v.remote].into_iter().flatten() {
            for s in [e.ipv4, e.ipv6].into_iter().flatten() {
                b.note(s, false);
            }
        }
        for (_, a) in &v.annotations {
            b.note(a, true);
        }
        for (k, val) in &v.tags {
            b.note(k, true);
            b.note(val, false);
            let e = per_key.entry(k).or_insert_with(|| Some(Default::default()));
            if let Some(set) = e {
                set.insert(val);
                if set.len() > LOW_CARDINALITY {
                    *e = None;
                }
            }
        }
    }
    let lowered = std::mem::take(&mut b.lowered);
    for l in &lowered {
        b.note(l, true);
    }
    // Values of low-cardinality keys are always dictionary entries.
    for set in per_key.into_values().flatten() {
        for val in set {
            b.stats.entry(val).or_default().structural = true;
        }
    }
    let mut dict_strs: Vec<&str> = b
        .stats
        .iter()
        .filter(|(_, st)| st.structural || st.count >= DICT_MIN_COUNT)
        .map(|(s, _)| *s)
        .collect();
    dict_strs.sort_unstable();
    let dict: FastMap<&str, u32> = dict_strs
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u32))
        .collect();
    drop(b);

    // Pass 2: blocks, trace table and postings.
    let mut off: u64 = 0;
    w.write_all(MAGIC)?;
    off += MAGIC.len() as u64;
    let mut comp = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
    let mut blocks: Vec<BlockInfo> = Vec::new();
    let mut raw: Vec<u8> = Vec::with_capacity(BLOCK_TARGET * 2);
    let mut cur = BlockInfo {
        off,
        clen: 0,
        raw_len: 0,
        crc: 0,
        first_trace: 0,
        n_spans: 0,
        min_ts: u64::MAX,
        max_ts: 0,
    };
    let mut postings: FastMap<(u8, u32, u32), Vec<u32>> = FastMap::default();
    let mut add_post = |k: (u8, u32, u32), ord: u32| {
        let p = postings.entry(k).or_default();
        if p.last() != Some(&ord) {
            p.push(ord);
        }
    };
    let mut trace_table: Vec<u8> = Vec::new();
    let mut is128: Vec<u32> = Vec::new();
    let mut ids: Vec<u8> = Vec::with_capacity(order.len() * 16);
    let mut seg_min = u64::MAX;
    let mut seg_max = 0u64;
    let mut group: Vec<u8> = Vec::new();
    let mut views: Vec<SpanView<'_>> = Vec::new();
    let mut span_idx: Vec<u32> = Vec::new();
    let dict_id = |s: &str| -> u32 { dict[s] };
    for (ord, &t) in order.iter().enumerate() {
        let ord = ord as u32;
        let tr = &head.traces[t as usize];
        ids.extend_from_slice(&tr.id.high.to_be_bytes());
        ids.extend_from_slice(&tr.id.low.to_be_bytes());
        if tr.id.is_128 {
            is128.push(ord);
        }
        span_idx.clear();
        span_idx.extend(head.trace_spans(t));
        // Stable order by timestamp: readers see spans in time order.
        span_idx.sort_by_key(|&i| head.spans[i as usize].ts);
        while views.len() < span_idx.len() {
            views.push(SpanView::default());
        }
        for (k, &i) in span_idx.iter().enumerate() {
            head.view(i, &mut views[k]);
        }
        let vs = &views[..span_idx.len()];
        let (tmin, tmax) = if tr.min_ts == u64::MAX {
            (0, 0)
        } else {
            (tr.min_ts, tr.max_ts)
        };
        let max_dur = vs.iter().filter_map(|v| v.duration).max().unwrap_or(0);
        if tmin != 0 {
            seg_min = seg_min.min(tmin);
            seg_max = seg_max.max(tmax);
            cur.min_ts = cur.min_ts.min(tmin);
            cur.max_ts = cur.max_ts.max(tmax);
        }
        // Trace table entry: min (0 = none, else +1), span of time, longest span.
        put_uvarint(&mut trace_table, if tmin == 0 { 0 } else { tmin + 1 });
        put_uvarint(&mut trace_table, tmax - tmin);
        put_uvarint(&mut trace_table, max_dur);

        group.clear();
        put_uvarint(&mut group, vs.len() as u64);
        put_uvarint(&mut group, tmin);
        for v in vs {
            group.extend_from_slice(&v.id.to_be_bytes());
        }
        for v in vs {
            encode_seg_span(v, vs, tmin, &dict, &mut group);
            // Postings.
            let svc = v.local_service().map(|s| dict_id(&lower(s)));
            let name = v.name.map(|s| dict_id(&lower(s)));
            let remote = v.remote_service().map(|s| dict_id(&lower(s)));
            if let Some(s) = svc {
                add_post((P_SVC, s, 0), ord);
                if let Some(n) = name {
                    add_post((P_SVC_NAME, s, n), ord);
                }
                if let Some(r) = remote {
                    add_post((P_SVC_REMOTE, s, r), ord);
                }
            }
            if let Some(n) = name {
                add_post((P_NAME, n, 0), ord);
            }
            if let Some(r) = remote {
                add_post((P_REMOTE, r, 0), ord);
            }
            for (key, val) in &v.tags {
                let k = dict_id(key);
                add_post((P_TAG_KEY, k, 0), ord);
                if let Some(&vid) = dict.get(val) {
                    add_post((P_TAG_KV, k, vid), ord);
                }
            }
            for (_, a) in &v.annotations {
                add_post((P_ANN, dict_id(a), 0), ord);
            }
        }
        if raw.is_empty() {
            cur.first_trace = ord;
        }
        put_uvarint(&mut raw, group.len() as u64);
        raw.extend_from_slice(&group);
        cur.n_spans += vs.len() as u32;
        if raw.len() >= BLOCK_TARGET {
            flush_block(&mut comp, &mut raw, &mut cur, &mut blocks, &mut off, w)?;
        }
    }
    if !raw.is_empty() {
        flush_block(&mut comp, &mut raw, &mut cur, &mut blocks, &mut off, w)?;
    }
    let ids_off = off;
    w.write_all(&ids)?;
    off += ids.len() as u64;
    let ids_crc = crc32fast::hash(&ids);
    if seg_min == u64::MAX {
        seg_min = 0;
    }

    // Footer.
    let mut f: Vec<u8> = Vec::new();
    for x in [
        VERSION,
        seq,
        head.wal_min,
        head.wal_max,
        seg_min,
        seg_max,
        head.spans.len() as u64,
        order.len() as u64,
        blocks.len() as u64,
    ] {
        put_uvarint(&mut f, x);
    }
    for bl in &blocks {
        for x in [
            bl.off,
            u64::from(bl.clen),
            u64::from(bl.raw_len),
            u64::from(bl.crc),
            u64::from(bl.first_trace),
            u64::from(bl.n_spans),
            bl.min_ts,
            bl.max_ts,
        ] {
            put_uvarint(&mut f, x);
        }
    }
    put_uvarint(&mut f, is128.len() as u64);
    let mut prev = 0u32;
    for &o in &is128 {
        put_uvarint(&mut f, u64::from(o - prev));
        prev = o;
    }
    f.extend_from_slice(&trace_table);
    // Dictionary, front-coded.
    put_uvarint(&mut f, dict_strs.len() as u64);
    let mut prev: &[u8] = b"";
    for s in &dict_strs {
        let s = s.as_bytes();
        let shared = prev.iter().zip(s).take_while(|(a, b)| a == b).count();
        put_uvarint(&mut f, shared as u64);
        put_uvarint(&mut f, (s.len() - shared) as u64);
        f.extend_from_slice(&s[shared..]);
        prev = s;
    }
    // Postings, sorted by key; ordinals delta coded.
    let mut keys: Vec<_> = postings.into_iter().collect();
    keys.sort_unstable_by_key(|(k, _)| *k);
    put_uvarint(&mut f, keys.len() as u64);
    for ((kind, a, b2), ords) in &keys {
        f.push(*kind);
        put_uvarint(&mut f, u64::from(*a));
        put_uvarint(&mut f, u64::from(*b2));
        put_uvarint(&mut f, ords.len() as u64);
        let mut prev = 0u32;
        for (i, &o) in ords.iter().enumerate() {
            put_uvarint(&mut f, u64::from(if i == 0 { o } else { o - prev }));
            prev = o;
        }
    }
    let fc = comp.compress(&f)?;
    let footer_off = off;
    w.write_all(&fc)?;
    let mut t = Vec::with_capacity(TRAILER);
    t.extend_from_slice(&ids_off.to_le_bytes());
    t.extend_from_slice(&footer_off.to_le_bytes());
    t.extend_from_slice(&(fc.len() as u64).to_le_bytes());
    t.extend_from_slice(&crc32fast::hash(&fc).to_le_bytes());
    t.extend_from_slice(&ids_crc.to_le_bytes());
    t.extend_from_slice(END_MAGIC);
    w.write_all(&t)?;
    w.flush()
}

fn flush_block<W: Write>(
    comp: &mut zstd::bulk::Compressor<'_>,
    raw: &mut Vec<u8>,
    cur: &mut BlockInfo,
    blocks: &mut Vec<BlockInfo>,
    off: &mut u64,
    w: &mut W,
) -> io::Result<()> {
    let c = comp.compress(raw)?;
    w.write_all(&c)?;
    let next_first = 0;
    let done = std::mem::replace(
        cur,
        BlockInfo {
            off: *off + c.len() as u64,
            clen: 0,
            raw_len: 0,
            crc: 0,
            first_trace: next_first,
            n_spans: 0,
            min_ts: u64::MAX,
            max_ts: 0,
        },
    );
    blocks.push(BlockInfo {
        clen: c.len() as u32,
        raw_len: raw.len() as u32,
        crc: crc32fast::hash(&c),
        min_ts: if done.min_ts == u64::MAX {
            0
        } else {
            done.min_ts
        },
        ..done
    });
    *off += c.len() as u64;
    raw.clear();
    Ok(())
}

fn put_seg_ep(out: &mut Vec<u8>, dict: &FastMap<&str, u32>, e: &EpView<'_>) {
    out.push(e.flags());
    for s in [e.service, e.ipv4, e.ipv6].into_iter().flatten() {
        put_ref(out, dict, s);
    }
    if let Some(p) = e.port {
        put_uvarint(out, u64::from(p));
    }
}

fn encode_seg_span(
    v: &SpanView<'_>,
    group: &[SpanView<'_>],
    base: u64,
    dict: &FastMap<&str, u32>,
    out: &mut Vec<u8>,
) {
    let mut f = v.base_flags() & !crate::codec::F_128;
    let local_parent = v
        .parent_id
        .and_then(|p| group.iter().position(|g| g.id == p));
    match (v.parent_id, local_parent) {
        (Some(_), Some(_)) => f |= F_PARENT_LOCAL,
        (Some(_), None) => f |= F_PARENT,
        _ => {}
    }
    put_uvarint(out, u64::from(f));
    if let Some(pos) = local_parent {
        put_uvarint(out, pos as u64);
    } else if let Some(p) = v.parent_id {
        out.extend_from_slice(&p.to_be_bytes());
    }
    if let Some(n) = v.name {
        put_ref(out, dict, n);
    }
    if let Some(t) = v.timestamp {
        put_uvarint(out, zigzag(t.wrapping_sub(base) as i64));
    }
    if let Some(d) = v.duration {
        put_uvarint(out, d);
    }
    for e in [v.local, v.remote].iter().flatten() {
        put_seg_ep(out, dict, e);
    }
    if !v.annotations.is_empty() {
        put_uvarint(out, v.annotations.len() as u64);
        for (t, a) in &v.annotations {
            put_uvarint(out, zigzag(t.wrapping_sub(base) as i64));
            put_ref(out, dict, a);
        }
    }
    if !v.tags.is_empty() {
        put_uvarint(out, v.tags.len() as u64);
        for (k, val) in &v.tags {
            put_ref(out, dict, k);
            put_ref(out, dict, val);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading

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
        self.blob.get(a..b)
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

fn decompress(c: &[u8], cap: usize) -> io::Result<Vec<u8>> {
    DECOMP.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("set above").decompress(c, cap)
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
        let b = &self.blocks[bi];
        let c = &self.map[b.off as usize..b.off as usize + b.clen as usize];
        if crc32fast::hash(c) != b.crc {
            return Err(corrupt(&self.path, format!("block {bi} checksum mismatch")));
        }
        let raw = decompress(c, b.raw_len as usize)
            .map_err(|e| corrupt(&self.path, format!("block {bi}: {e}")))?;
        if raw.len() != b.raw_len as usize {
            return Err(corrupt(&self.path, format!("block {bi} length mismatch")));
        }
        Ok(raw)
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
