//! Projection scans (`SpanReader::parts`): each segment and each head is one part, read
//! column by column into borrowed `SpanRow`s. A segment's records are walked field by field
//! with only the projected strings resolved (tag keys are compared as dictionary ids, other
//! strings skipped); heads decode their raw records into views. Segments also carry the
//! pre-aggregates of `crate::memo`.

use std::sync::Arc;

use meshlens_model::{Memo, Projection, SpanPart, SpanRow, StorageError, TraceId, NO_ID};

use crate::codec::{
    kind_from_code, lower, unzigzag, DResult, Malformed, Reader, SpanView, E_PORT, E_SVC, E_V4,
    E_V6, F_ANN, F_DUR, F_KIND_SHIFT, F_LOCAL, F_NAME, F_PARENT, F_PARENT_LOCAL, F_REMOTE, F_TAGS,
    F_TS,
};
use crate::memo::MemoLru;
use crate::segment::{self, Segment};
use crate::{Inner, SharedHead, SpanStoreError};

/// Head spans decoded per read-lock hold, so writers are never held up for long.
const HEAD_CHUNK: usize = 4096;

impl Inner {
    /// The segments and heads that may hold spans in `[start_us, end_us]`, from one
    /// consistent snapshot.
    pub(crate) fn parts(&self, start_us: u64, end_us: u64) -> Vec<Box<dyn SpanPart + '_>> {
        let p = self.snapshot();
        let mut out: Vec<Box<dyn SpanPart + '_>> = Vec::new();
        for s in &p.segments {
            if s.max_ts >= start_us && s.min_ts <= end_us {
                out.push(Box::new(SegPart {
                    seg: s.clone(),
                    lru: &self.memo,
                }));
            }
        }
        for h in p.heads() {
            out.push(Box::new(HeadPart { head: h.clone() }));
        }
        out
    }
}

struct SegPart<'s> {
    seg: Arc<Segment>,
    lru: &'s MemoLru,
}

impl SpanPart for SegPart<'_> {
    fn time_range(&self) -> Option<(u64, u64)> {
        let s = &self.seg;
        (s.n_spans > 0 && s.max_ts > 0).then_some((s.min_ts, s.max_ts))
    }

    fn scan(
        &self,
        p: &Projection<'_>,
        visit: &mut dyn FnMut(&SpanRow<'_>),
    ) -> Result<(), StorageError> {
        p.validate()?;
        Ok(project_segment(&self.seg, p, visit)?)
    }

    fn memo_get(&self, key: &str) -> Option<Memo> {
        self.lru.get(&self.seg, key)
    }

    fn memo_put(&self, key: &str, value: Memo, bytes: usize) {
        self.lru.put(&self.seg, key, value, bytes);
    }
}

/// A head (open or sealed): mutable or short-lived, so it keeps no memos.
struct HeadPart {
    head: SharedHead,
}

impl SpanPart for HeadPart {
    fn time_range(&self) -> Option<(u64, u64)> {
        None
    }

    fn scan(
        &self,
        p: &Projection<'_>,
        visit: &mut dyn FnMut(&SpanRow<'_>),
    ) -> Result<(), StorageError> {
        p.validate()?;
        let (lo, hi) = (p.start_us, p.end_us);
        let mut i = 0usize;
        loop {
            let h = self.head.read();
            if i >= h.spans.len() {
                return Ok(());
            }
            let end = (i + HEAD_CHUNK).min(h.spans.len());
            let mut v = SpanView::default();
            let mut tags = vec![None; p.tags.len()];
            for k in i..end {
                let ts = h.spans[k].ts;
                if ts == 0 || ts < lo || ts > hi {
                    continue;
                }
                h.view(k as u32, &mut v);
                let Some(timestamp) = v.timestamp else {
                    continue;
                };
                tags.iter_mut().for_each(|t| *t = None);
                let mut prefixes = 0u64;
                for (key, val) in &v.tags {
                    for (slot, want) in tags.iter_mut().zip(p.tags) {
                        if key == want {
                            *slot = Some(*val);
                        }
                    }
                    for (b, pre) in p.tag_prefixes.iter().enumerate() {
                        if key.starts_with(pre) {
                            prefixes |= 1 << b;
                        }
                    }
                }
                visit(&SpanRow {
                    trace_id: v.trace_id,
                    kind: v.kind,
                    timestamp,
                    duration: v.duration,
                    name: v.name,
                    local_service: v.local_service(),
                    remote_service: v.remote_service(),
                    tags: &tags,
                    prefixes,
                    name_id: NO_ID,
                    local_service_id: NO_ID,
                    remote_service_id: NO_ID,
                    tag_ids: &[],
                });
            }
            i = end;
        }
    }
}

/// A projection resolved against one segment's dictionary.
struct Plan {
    /// (dictionary id of a projected tag key, its index in `Projection::tags`).
    keys: Vec<(u32, usize)>,
    /// Dictionary id range of the keys starting with each projected prefix.
    prefixes: Vec<(u32, u32)>,
    dict_len: u32,
}

impl Plan {
    fn new(seg: &Segment, p: &Projection<'_>) -> Plan {
        let d = &seg.dict;
        let keys = p
            .tags
            .iter()
            .enumerate()
            .filter_map(|(i, k)| Some((d.find(k)?, i)))
            .collect();
        let prefixes = p
            .tag_prefixes
            .iter()
            .map(|pre| d.prefix_range(pre))
            .collect();
        Plan {
            keys,
            prefixes,
            dict_len: d.len() as u32,
        }
    }
}

fn corrupt(seg: &Segment, bi: usize) -> SpanStoreError {
    SpanStoreError::Corrupt {
        path: seg.path.clone(),
        reason: format!("block {bi} malformed"),
    }
}

/// Visits the rows of one segment in the projection's window: blocks and trace groups
/// outside it are skipped unread, and with a service hint only the traces in that
/// service's postings are decoded.
fn project_segment(
    seg: &Segment,
    p: &Projection<'_>,
    visit: &mut dyn FnMut(&SpanRow<'_>),
) -> Result<(), SpanStoreError> {
    let (lo, hi) = (p.start_us, p.end_us);
    if seg.max_ts < lo || seg.min_ts > hi {
        return Ok(());
    }
    // Trace ordinals with a span of the hinted service (postings are lower-cased).
    let only: Option<Vec<u32>> = match p.service {
        None => None,
        Some(s) => match seg.dict.find(&lower(s)) {
            None => return Ok(()),
            Some(id) => Some(
                seg.postings(segment::P_SVC, id, 0)
                    .map(Iterator::collect)
                    .unwrap_or_default(),
            ),
        },
    };
    let plan = Plan::new(seg, p);
    let mut buf = Vec::new();
    let mut cursor = 0usize;
    for (bi, b) in seg.blocks.iter().enumerate() {
        if b.max_ts < lo || b.min_ts > hi {
            continue;
        }
        let next_first = seg
            .blocks
            .get(bi + 1)
            .map_or(seg.n_traces, |n| n.first_trace);
        if let Some(only) = &only {
            cursor += only[cursor..].partition_point(|&o| o < b.first_trace);
            if only.get(cursor).is_none_or(|&o| o >= next_first) {
                continue;
            }
        }
        seg.load_block_into(bi, &mut buf)?;
        let block: &[u8] = &buf;
        let mut cols = Cols {
            tags: vec![None; p.tags.len()],
            ids: vec![NO_ID; p.tags.len()],
        };
        let mut pos = 0;
        let mut ord = b.first_trace;
        while pos < block.len() {
            if ord >= seg.n_traces {
                return Err(corrupt(seg, bi));
            }
            let (tmin, tmax) = (seg.t_min[ord as usize], seg.t_max[ord as usize]);
            let wanted = only.as_ref().is_none_or(|o| o.binary_search(&ord).is_ok());
            pos = if wanted && tmin != 0 && tmax >= lo && tmin <= hi {
                let g = Group {
                    trace_id: seg.trace_id(ord),
                    block,
                    pos,
                };
                group_rows(seg, &plan, p, g, &mut cols, visit).map_err(|_| corrupt(seg, bi))?
            } else {
                Segment::skip_groups(block, pos, 1).map_err(|_| corrupt(seg, bi))?
            };
            ord += 1;
        }
    }
    Ok(())
}

/// A varint, as `Reader::uvarint` reads it, without a bounds check per byte when ten
/// bytes remain (timestamps and durations take three or four).
#[inline(always)]
fn uv(r: &mut Reader<'_>) -> DResult<u64> {
    let Some(b) = r.buf.get(r.pos..r.pos + 10) else {
        return r.uvarint();
    };
    if b[0] < 0x80 {
        r.pos += 1;
        return Ok(u64::from(b[0]));
    }
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return Err(Malformed);
            }
            r.pos += i + 1;
            return Ok(v);
        }
    }
    Err(Malformed)
}

/// A string reference (even = dictionary id, odd = inline bytes), with its dictionary id
/// (`NO_ID` when inline).
#[inline]
fn sref<'a>(seg: &'a Segment, r: &mut Reader<'a>) -> DResult<(&'a str, u32)> {
    let v = uv(r)?;
    if v & 1 == 0 {
        let id = u32::try_from(v >> 1).map_err(|_| Malformed)?;
        Ok((seg.dict.get(id).ok_or(Malformed)?, id))
    } else {
        let s = std::str::from_utf8(r.bytes((v >> 1) as usize)?).map_err(|_| Malformed)?;
        Ok((s, NO_ID))
    }
}

#[inline]
fn skip_sref(r: &mut Reader<'_>) -> DResult<()> {
    let v = uv(r)?;
    if v & 1 == 1 {
        r.bytes((v >> 1) as usize)?;
    }
    Ok(())
}

/// An endpoint's service name and its id; addresses and port are skipped.
#[inline]
fn ep_service<'a>(seg: &'a Segment, r: &mut Reader<'a>) -> DResult<Option<(&'a str, u32)>> {
    let f = r.u8()?;
    let svc = if f & E_SVC != 0 {
        Some(sref(seg, r)?)
    } else {
        None
    };
    if f & E_V4 != 0 {
        skip_sref(r)?;
    }
    if f & E_V6 != 0 {
        skip_sref(r)?;
    }
    if f & E_PORT != 0 {
        uv(r)?;
    }
    Ok(svc)
}

/// The projected tags of the span being decoded (values and dictionary ids), reused.
struct Cols<'a> {
    tags: Vec<Option<&'a str>>,
    ids: Vec<u32>,
}

/// Where a trace group starts, and its trace id (from the segment's id array).
struct Group<'a> {
    trace_id: TraceId,
    block: &'a [u8],
    pos: usize,
}

/// Decodes the projected columns of the trace group at `pos`, visiting each span in the
/// window; returns where the next group starts.
fn group_rows<'a>(
    seg: &'a Segment,
    plan: &Plan,
    p: &Projection<'_>,
    g: Group<'a>,
    cols: &mut Cols<'a>,
    visit: &mut dyn FnMut(&SpanRow<'_>),
) -> DResult<usize> {
    let block = g.block;
    let mut r = Reader::at(block, g.pos);
    let len = uv(&mut r)? as usize;
    let end = r.pos.checked_add(len).ok_or(Malformed)?;
    if end > block.len() {
        return Err(Malformed);
    }
    let mut r = Reader::at(&block[..end], r.pos);
    let n = uv(&mut r)? as usize;
    let base = uv(&mut r)?;
    if n > len / 8 {
        return Err(Malformed);
    }
    r.bytes(n * 8)?;
    for _ in 0..n {
        let f = u32::try_from(uv(&mut r)?).map_err(|_| Malformed)?;
        if f & F_PARENT_LOCAL != 0 {
            uv(&mut r)?;
        } else if f & F_PARENT != 0 {
            r.bytes(8)?;
        }
        let name = if f & F_NAME != 0 {
            Some(sref(seg, &mut r)?)
        } else {
            None
        };
        let kind = kind_from_code((f >> F_KIND_SHIFT) & 7)?;
        let ts = if f & F_TS != 0 {
            Some(base.wrapping_add(unzigzag(uv(&mut r)?) as u64))
        } else {
            None
        };
        let duration = if f & F_DUR != 0 {
            Some(uv(&mut r)?)
        } else {
            None
        };
        let local = if f & F_LOCAL != 0 {
            ep_service(seg, &mut r)?
        } else {
            None
        };
        let remote = if f & F_REMOTE != 0 {
            ep_service(seg, &mut r)?
        } else {
            None
        };
        if f & F_ANN != 0 {
            for _ in 0..uv(&mut r)? {
                uv(&mut r)?;
                skip_sref(&mut r)?;
            }
        }
        cols.tags.iter_mut().for_each(|t| *t = None);
        cols.ids.iter_mut().for_each(|t| *t = NO_ID);
        let mut prefixes = 0u64;
        if f & F_TAGS != 0 {
            for _ in 0..uv(&mut r)? {
                let k = uv(&mut r)?;
                // The value, resolved only when some projected key matches (a key
                // projected twice gets it in both slots).
                let mut val: Option<(&'a str, u32)> = None;
                let mut take = |r: &mut Reader<'a>, cols: &mut Cols<'a>, i: usize| -> DResult<()> {
                    let (v, id) = match val {
                        Some(v) => v,
                        None => *val.insert(sref(seg, r)?),
                    };
                    cols.tags[i] = Some(v);
                    cols.ids[i] = id;
                    Ok(())
                };
                if k & 1 == 0 {
                    let id = u32::try_from(k >> 1).map_err(|_| Malformed)?;
                    if id >= plan.dict_len {
                        return Err(Malformed);
                    }
                    for &(kid, i) in &plan.keys {
                        if kid == id {
                            take(&mut r, cols, i)?;
                        }
                    }
                    for (b, &(a, z)) in plan.prefixes.iter().enumerate() {
                        if id >= a && id < z {
                            prefixes |= 1 << b;
                        }
                    }
                } else {
                    // A key stored inline (the writer puts every key in the dictionary, but
                    // the format allows it): compared as a string.
                    let key =
                        std::str::from_utf8(r.bytes((k >> 1) as usize)?).map_err(|_| Malformed)?;
                    for (i, w) in p.tags.iter().enumerate() {
                        if *w == key {
                            take(&mut r, cols, i)?;
                        }
                    }
                    for (b, pre) in p.tag_prefixes.iter().enumerate() {
                        if key.starts_with(pre) {
                            prefixes |= 1 << b;
                        }
                    }
                }
                if val.is_none() {
                    skip_sref(&mut r)?;
                }
            }
        }
        let Some(ts) = ts.filter(|&t| t >= p.start_us && t <= p.end_us) else {
            continue;
        };
        visit(&SpanRow {
            trace_id: g.trace_id,
            kind,
            timestamp: ts,
            duration,
            name: name.map(|n| n.0),
            local_service: local.map(|s| s.0),
            remote_service: remote.map(|s| s.0),
            tags: &cols.tags,
            prefixes,
            name_id: name.map_or(NO_ID, |n| n.1),
            local_service_id: local.map_or(NO_ID, |s| s.1),
            remote_service_id: remote.map_or(NO_ID, |s| s.1),
            tag_ids: &cols.ids,
        });
    }
    if !r.is_empty() {
        return Err(Malformed);
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::put_uvarint;

    /// The fast varint reads what `Reader::uvarint` reads, and fails where it fails, with
    /// and without ten bytes left.
    #[test]
    fn fast_varint_agrees_with_the_codec() {
        let mut cases: Vec<Vec<u8>> = [0u64, 1, 127, 128, 300, 1 << 21, u32::MAX as u64, u64::MAX]
            .iter()
            .map(|&v| {
                let mut b = Vec::new();
                put_uvarint(&mut b, v);
                b
            })
            .collect();
        cases.push(vec![0x80; 11]);
        cases.push([vec![0xff; 9], vec![0x02]].concat());
        cases.push(vec![0x80, 0x80]);
        for case in cases {
            for pad in [0usize, 12] {
                let mut buf = case.clone();
                buf.extend(std::iter::repeat_n(0x05, pad));
                let (mut a, mut b) = (Reader::new(&buf), Reader::new(&buf));
                let (x, y) = (uv(&mut a), b.uvarint());
                assert_eq!(x, y, "{case:?} + {pad}");
                if x.is_ok() {
                    assert_eq!(a.pos, b.pos);
                }
            }
        }
    }
}
