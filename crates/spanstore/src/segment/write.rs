//! Writing a sealed head as a segment file.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::codec::{lower, put_uvarint, zigzag, EpView, SpanView, F_PARENT, F_PARENT_LOCAL};
use crate::head::{Head, IdBuild};
use crate::wal::sync_dir;
use crate::SpanStoreError;

use super::*;

#[derive(Default)]
struct StrStat {
    count: u32,
    structural: bool,
    /// As a tag key: the ids of its values while there are at most `LOW_CARDINALITY`.
    values: KeyValues,
}

#[derive(Default)]
enum KeyValues {
    #[default]
    NotAKey,
    Few(HashSet<u32, IdBuild>),
    Many,
}

type FastMap<K, V> = HashMap<K, V, IdBuild>;

/// Pass 1's statistics: every distinct string gets a local id on first sight. Each span's
/// string occurrences are kept as local ids, in the order pass 2 writes them, so pass 2
/// maps ids to dictionary ids instead of hashing every string again.
struct Builder<'h> {
    ids: FastMap<&'h str, u32>,
    strs: Vec<&'h str>,
    stats: Vec<StrStat>,
    lowered: Vec<String>,
    /// Local ids of every span's strings, span after span (`occ_start` indexes it).
    occ: Vec<u32>,
    occ_start: Vec<u32>,
}

impl<'h> Builder<'h> {
    fn note(&mut self, s: &'h str, structural: bool) -> u32 {
        let id = match self.ids.entry(s) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let id = self.strs.len() as u32;
                e.insert(id);
                self.strs.push(s);
                self.stats.push(StrStat::default());
                id
            }
        };
        let st = &mut self.stats[id as usize];
        st.count += 1;
        st.structural |= structural;
        id
    }

    /// The local id of `s` if the previous span had the same string at the same place,
    /// `ahead` places after the next occurrence (neighbouring spans mostly repeat each
    /// other: comparing beats hashing). The current span began at `span_start` in `occ`,
    /// the previous one at `prev_start`.
    fn repeat(&self, s: &str, prev_start: usize, span_start: usize, ahead: usize) -> Option<u32> {
        let at = prev_start + (self.occ.len() - span_start) + ahead;
        let id = *self.occ.get(at).filter(|_| at < span_start)?;
        (self.strs[id as usize] == s).then_some(id)
    }

    /// Counts one more occurrence of string `id`.
    fn bump(&mut self, id: u32, structural: bool) {
        let st = &mut self.stats[id as usize];
        st.count += 1;
        st.structural |= structural;
    }

    /// Notes one occurrence of `s` in the current span.
    fn occur(&mut self, s: &'h str, structural: bool, prev_start: usize, span_start: usize) {
        let id = match self.repeat(s, prev_start, span_start, 0) {
            Some(id) => {
                self.bump(id, structural);
                id
            }
            None => self.note(s, structural),
        };
        self.occ.push(id);
    }

    fn note_tag(&mut self, k: &'h str, v: &'h str, prev_start: usize, span_start: usize) {
        let repeated = self
            .repeat(k, prev_start, span_start, 0)
            .and_then(|k| Some((k, self.repeat(v, prev_start, span_start, 1)?)));
        let (k, v) = match repeated {
            Some((k, v)) => {
                self.bump(k, true);
                self.bump(v, false);
                (k, v)
            }
            None => (self.note(k, true), self.note(v, false)),
        };
        self.occ.push(k);
        self.occ.push(v);
        let values = &mut self.stats[k as usize].values;
        if let KeyValues::NotAKey = values {
            *values = KeyValues::Few(HashSet::default());
        }
        if let KeyValues::Few(set) = values {
            set.insert(v);
            if set.len() > LOW_CARDINALITY {
                *values = KeyValues::Many;
            }
        }
    }
}

/// Marks a local id without a dictionary entry in `Refs::dict_of`.
const INLINE: u32 = u32::MAX;

/// One span's string occurrences (local ids, in write order) and the map from local ids to
/// dictionary ids.
struct Refs<'a> {
    dict_of: &'a [u32],
    occ: std::slice::Iter<'a, u32>,
}

impl Refs<'_> {
    /// Writes the next string, `s`, as a dictionary reference or inline; returns its
    /// dictionary id if it has one.
    fn put(&mut self, out: &mut Vec<u8>, s: &str) -> Option<u32> {
        let local = self.occ.next().copied();
        debug_assert!(
            local.is_some(),
            "pass 2 writes a string pass 1 did not note"
        );
        match local.map_or(INLINE, |l| self.dict_of[l as usize]) {
            INLINE => {
                put_uvarint(out, ((s.len() as u64) << 1) | 1);
                out.extend_from_slice(s.as_bytes());
                None
            }
            id => {
                put_uvarint(out, u64::from(id) << 1);
                Some(id)
            }
        }
    }
}

/// Dictionary ids of one span's strings as `encode_seg_span` wrote them, so postings need
/// no second lookup: name, local and remote service, tags (key, value), annotations.
#[derive(Default)]
struct SpanIds {
    name: Option<u32>,
    local: Option<u32>,
    remote: Option<u32>,
    tags: Vec<(Option<u32>, Option<u32>)>,
    annotations: Vec<Option<u32>>,
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

    // Pass 1: string statistics, noting each span's strings in the order pass 2 writes
    // them (`encode_seg_span`).
    let mut b = Builder {
        ids: FastMap::default(),
        strs: Vec::new(),
        stats: Vec::new(),
        lowered: Vec::new(),
        occ: Vec::new(),
        occ_start: Vec::with_capacity(head.spans.len() + 1),
    };
    let mut v = SpanView::default();
    let mut prev = 0usize;
    for i in 0..head.spans.len() as u32 {
        head.view(i, &mut v);
        let start = b.occ.len();
        b.occ_start.push(start as u32);
        for s in [v.name, v.local_service(), v.remote_service()]
            .into_iter()
            .flatten()
        {
            if let std::borrow::Cow::Owned(l) = lower(s) {
                b.lowered.push(l);
            }
        }
        if let Some(n) = v.name {
            b.occur(n, true, prev, start);
        }
        for e in [v.local, v.remote].into_iter().flatten() {
            if let Some(s) = e.service {
                b.occur(s, true, prev, start);
            }
            for s in [e.ipv4, e.ipv6].into_iter().flatten() {
                b.occur(s, false, prev, start);
            }
        }
        for (_, a) in &v.annotations {
            b.occur(a, true, prev, start);
        }
        for (k, val) in &v.tags {
            b.note_tag(k, val, prev, start);
        }
        prev = start;
    }
    b.occ_start.push(b.occ.len() as u32);
    let lowered = std::mem::take(&mut b.lowered);
    for l in &lowered {
        b.note(l, true);
    }
    // Values of low-cardinality keys are always dictionary entries.
    let few: Vec<u32> = b
        .stats
        .iter()
        .filter_map(|st| match &st.values {
            KeyValues::Few(set) => Some(set.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    for val in few {
        b.stats[val as usize].structural = true;
    }
    let mut dict_strs: Vec<&str> = b
        .strs
        .iter()
        .zip(&b.stats)
        .filter(|(_, st)| st.structural || st.count >= DICT_MIN_COUNT)
        .map(|(s, _)| *s)
        .collect();
    dict_strs.sort_unstable();
    let dict: FastMap<&str, u32> = dict_strs
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u32))
        .collect();
    let dict_of: Vec<u32> = b
        .strs
        .iter()
        .map(|s| dict.get(s).copied().unwrap_or(INLINE))
        .collect();
    let (occ, occ_start) = (std::mem::take(&mut b.occ), std::mem::take(&mut b.occ_start));
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
    let mut sids = SpanIds::default();
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
        for (v, &i) in vs.iter().zip(&span_idx) {
            let mut refs = Refs {
                dict_of: &dict_of,
                occ: occ[occ_start[i as usize] as usize..occ_start[i as usize + 1] as usize].iter(),
            };
            encode_seg_span(v, vs, tmin, &mut refs, &mut group, &mut sids);
            debug_assert!(
                refs.occ.next().is_none(),
                "pass 1 noted a string not written"
            );
            // Postings, on lower-cased names (the written id serves when already lower).
            let lowered = |s: Option<&str>, written: Option<u32>| {
                s.map(|s| match lower(s) {
                    std::borrow::Cow::Borrowed(_) => written.unwrap_or_else(|| dict_id(s)),
                    std::borrow::Cow::Owned(l) => dict_id(&l),
                })
            };
            let svc = lowered(v.local_service(), sids.local);
            let name = lowered(v.name, sids.name);
            let remote = lowered(v.remote_service(), sids.remote);
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
            for &(k, val) in &sids.tags {
                let Some(k) = k else { continue };
                add_post((P_TAG_KEY, k, 0), ord);
                if let Some(vid) = val {
                    add_post((P_TAG_KV, k, vid), ord);
                }
            }
            for a in sids.annotations.iter().flatten() {
                add_post((P_ANN, *a, 0), ord);
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

/// Writes an endpoint; returns the service's dictionary id.
fn put_seg_ep(out: &mut Vec<u8>, refs: &mut Refs<'_>, e: &EpView<'_>) -> Option<u32> {
    out.push(e.flags());
    let service = e.service.and_then(|s| refs.put(out, s));
    for s in [e.ipv4, e.ipv6].into_iter().flatten() {
        refs.put(out, s);
    }
    if let Some(p) = e.port {
        put_uvarint(out, u64::from(p));
    }
    service
}

fn encode_seg_span(
    v: &SpanView<'_>,
    group: &[SpanView<'_>],
    base: u64,
    refs: &mut Refs<'_>,
    out: &mut Vec<u8>,
    ids: &mut SpanIds,
) {
    ids.tags.clear();
    ids.annotations.clear();
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
    ids.name = v.name.and_then(|n| refs.put(out, n));
    if let Some(t) = v.timestamp {
        put_uvarint(out, zigzag(t.wrapping_sub(base) as i64));
    }
    if let Some(d) = v.duration {
        put_uvarint(out, d);
    }
    ids.local = v.local.as_ref().and_then(|e| put_seg_ep(out, refs, e));
    ids.remote = v.remote.as_ref().and_then(|e| put_seg_ep(out, refs, e));
    if !v.annotations.is_empty() {
        put_uvarint(out, v.annotations.len() as u64);
        for (t, a) in &v.annotations {
            put_uvarint(out, zigzag(t.wrapping_sub(base) as i64));
            ids.annotations.push(refs.put(out, a));
        }
    }
    if !v.tags.is_empty() {
        put_uvarint(out, v.tags.len() as u64);
        for (k, val) in &v.tags {
            let k = refs.put(out, k);
            ids.tags.push((k, refs.put(out, val)));
        }
    }
}
