//! Writing a sealed head as a segment file.

use std::collections::HashMap;
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
