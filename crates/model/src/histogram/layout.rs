//! Bucket layouts: spans plus counts turned into (index, count) lists and back, and the
//! layout-changing operations on those lists (compaction, merging to a lower schema,
//! adding one side of a histogram to another).

use super::bounds::exponential_bound;
use super::{is_exponential_schema, BucketSpan};

/// A stored bucket: its absolute index and its count.
pub(super) type Entry = (i32, f64);

/// The stored buckets in storage order with their absolute indexes. Stops early when the
/// spans ask for more buckets than there are (only in an invalid histogram).
pub(super) fn decode(spans: &[BucketSpan], buckets: &[f64]) -> Vec<Entry> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut idx: i32 = 0;
    for span in spans {
        idx = idx.wrapping_add(span.offset);
        for _ in 0..span.length {
            match buckets.get(out.len()) {
                Some(&c) => out.push((idx, c)),
                None => return out,
            }
            idx = idx.wrapping_add(1);
        }
    }
    out
}

/// Spans and counts for ascending entries, one span per run of consecutive indexes.
pub(super) fn encode(entries: &[Entry]) -> (Vec<BucketSpan>, Vec<f64>) {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut buckets = Vec::with_capacity(entries.len());
    let mut next: i64 = 0; // Index right after the last span.
    for &(idx, count) in entries {
        match spans.last_mut() {
            Some(last) if idx as i64 == next => last.length += 1,
            _ => spans.push(BucketSpan {
                offset: (idx as i64 - next) as i32,
                length: 1,
            }),
        }
        next = idx as i64 + 1;
        buckets.push(count);
    }
    (spans, buckets)
}

/// Prometheus's `Compact`: empty buckets dropped except runs of at most `max_empty` of them
/// between populated buckets, which stay inside one span; spans as long as possible.
pub(super) fn compact(
    spans: &[BucketSpan],
    buckets: &[f64],
    max_empty: usize,
) -> (Vec<BucketSpan>, Vec<f64>) {
    let populated: Vec<Entry> = decode(spans, buckets)
        .into_iter()
        .filter(|&(_, c)| c != 0.0)
        .collect();
    let mut out_spans: Vec<BucketSpan> = Vec::new();
    let mut out_buckets = Vec::with_capacity(populated.len());
    let mut next: i64 = 0;
    for (idx, count) in populated {
        let gap = idx as i64 - next;
        match out_spans.last_mut() {
            Some(last) if gap >= 0 && (gap as u64) <= max_empty as u64 => {
                last.length += gap as u32 + 1;
                out_buckets.extend(std::iter::repeat_n(0.0, gap as usize));
            }
            _ => out_spans.push(BucketSpan {
                offset: gap as i32,
                length: 1,
            }),
        }
        out_buckets.push(count);
        next = idx as i64 + 1;
    }
    (out_spans, out_buckets)
}

/// The index in `target` schema of the bucket with index `idx` in `origin` schema.
pub(super) fn target_index(idx: i32, origin: i32, target: i32) -> i32 {
    ((idx.wrapping_sub(1)) >> (origin - target)).wrapping_add(1)
}

/// Entries merged into the buckets of the lower-resolution `target` schema.
pub(super) fn reduce(entries: &[Entry], origin: i32, target: i32) -> Vec<Entry> {
    if origin == target {
        return entries.to_vec();
    }
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    for &(idx, count) in entries {
        let t = target_index(idx, origin, target);
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 += count,
            _ => out.push((t, count)),
        }
    }
    out
}

/// `b` added to (or, with `negate`, subtracted from) `a`, both ascending and of `schema`.
/// Buckets of `b` that the zero bucket of width `threshold` covers entirely (their upper
/// bound is at most the threshold; only leading ones, exponential schemas only) are
/// skipped: the caller has counted them into the zero bucket already. Buckets of `a` stay,
/// even with a count of zero, as Prometheus's `addBuckets` keeps them.
pub(super) fn add_entries(
    schema: i32,
    threshold: f64,
    negate: bool,
    a: &[Entry],
    b: &[Entry],
) -> Vec<Entry> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut i = 0;
    let mut below_threshold = true;
    for &(idx, count) in b {
        if below_threshold
            && is_exponential_schema(schema)
            && exponential_bound(idx, schema) <= threshold
        {
            continue;
        }
        below_threshold = false;
        let v = if negate { -count } else { count };
        while i < a.len() && a[i].0 < idx {
            out.push(a[i]);
            i += 1;
        }
        if i < a.len() && a[i].0 == idx {
            out.push((idx, a[i].1 + v));
            i += 1;
        } else {
            out.push((idx, v));
        }
    }
    out.extend_from_slice(&a[i..]);
    out
}
