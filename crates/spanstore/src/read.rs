//! The read paths, each over one consistent snapshot of (segments, sealed heads, head):
//! trace by id, trace search, dependency links and time-range scans.

use std::collections::BinaryHeap;

use meshlens_model::{DependencyLink, Span, TraceId, TraceQuery};

use crate::codec::SpanView;
use crate::head::Head;
use crate::query::{self, Criteria, LinkSpan, Links};
use crate::segment::{self, Segment, TraceSet};
use crate::{Inner, Parts, SpanStoreError};

/// Head spans decoded per read-lock hold during scans.
const SCAN_CHUNK: usize = 4096;

impl Inner {
    pub(crate) fn snapshot(&self) -> Parts {
        self.parts.read().clone()
    }

    /// Every stored span of one trace, exact duplicates removed, in time order.
    pub(crate) fn collect_trace(
        &self,
        p: &Parts,
        id: &TraceId,
    ) -> Result<Vec<Span>, SpanStoreError> {
        let mut out = Vec::new();
        for s in &p.segments {
            s.trace(id, &mut out)?;
        }
        for h in p.heads() {
            h.read().trace(id, &mut out);
        }
        Ok(dedupe(out))
    }

    pub(crate) fn find_traces(&self, q: &TraceQuery) -> Result<Vec<Vec<Span>>, SpanStoreError> {
        let c = Criteria::from_query(q);
        let limit = if q.limit == 0 { 10 } else { q.limit };
        let p = self.snapshot();
        let mut cands: Vec<(u64, TraceId)> = Vec::new();
        for s in &p.segments {
            if s.max_ts >= c.lo && s.min_ts <= c.hi {
                seg_candidates(s, &c, &mut cands)?;
            }
        }
        for h in p.heads() {
            head_candidates(&h.read(), &c, &mut cands);
        }
        let mut heap = BinaryHeap::from(cands);
        let mut seen = TraceSet::default();
        let mut results: Vec<(u64, Vec<Span>)> = Vec::new();
        while let Some((_, id)) = heap.pop() {
            if !seen.insert(id) {
                continue;
            }
            let spans = self.collect_trace(&p, &id)?;
            let views: Vec<SpanView<'_>> = spans.iter().map(SpanView::from_span).collect();
            if c.test(&views) {
                results.push((meshlens_model::trace::trace_start(&spans), spans));
                if results.len() >= limit {
                    break;
                }
            }
        }
        results.sort_by_key(|r| std::cmp::Reverse(r.0));
        Ok(results.into_iter().map(|(_, s)| s).collect())
    }

    pub(crate) fn dependencies(
        &self,
        end_ts: i64,
        lookback: i64,
    ) -> Result<Vec<DependencyLink>, SpanStoreError> {
        let (lo, hi) = query::window_us(end_ts, lookback);
        let p = self.snapshot();
        let mut links = Links::new();
        for s in &p.segments {
            if s.max_ts < lo || s.min_ts > hi {
                continue;
            }
            s.for_each_group(lo, hi, &mut |_, views| {
                let mut ls: Vec<LinkSpan<'_>> = views.iter().map(LinkSpan::from_view).collect();
                query::link_trace(&mut ls, &mut links);
            })?;
        }
        for h in p.heads() {
            let h = h.read();
            let mut views: Vec<SpanView<'_>> = Vec::new();
            let mut ls: Vec<LinkSpan<'_>> = Vec::new();
            for (t, tr) in h.traces.iter().enumerate() {
                if tr.min_ts == u64::MAX || tr.max_ts < lo || tr.min_ts > hi {
                    continue;
                }
                let idx: Vec<u32> = h.trace_spans(t as u32).collect();
                while views.len() < idx.len() {
                    views.push(SpanView::default());
                }
                for (k, &i) in idx.iter().enumerate() {
                    h.view(i, &mut views[k]);
                }
                ls.clear();
                ls.extend(views[..idx.len()].iter().map(LinkSpan::from_view));
                query::link_trace(&mut ls, &mut links);
            }
        }
        let mut out: Vec<DependencyLink> = links
            .into_iter()
            .map(|((parent, child), (calls, errors))| DependencyLink {
                parent,
                child,
                call_count: calls,
                error_count: errors,
            })
            .collect();
        out.sort_by(|a, b| (&a.parent, &a.child).cmp(&(&b.parent, &b.child)));
        Ok(out)
    }

    pub(crate) fn scan(
        &self,
        start_us: u64,
        end_us: u64,
        visit: &mut dyn FnMut(&Span),
    ) -> Result<(), SpanStoreError> {
        let p = self.snapshot();
        for s in &p.segments {
            if s.max_ts < start_us || s.min_ts > end_us {
                continue;
            }
            let mut reuse: Option<Span> = None;
            s.for_each_group(start_us, end_us, &mut |_, views| {
                for v in views {
                    if v.timestamp.is_some_and(|t| t >= start_us && t <= end_us) {
                        match reuse.as_mut() {
                            Some(sp) => v.to_span_into(sp),
                            None => reuse = Some(v.to_span()),
                        }
                        visit(reuse.as_ref().expect("set above"));
                    }
                }
            })?;
        }
        let mut buf: Vec<Span> = Vec::new();
        for h in p.heads() {
            let mut i = 0usize;
            loop {
                {
                    let h = h.read();
                    if i >= h.spans.len() {
                        break;
                    }
                    let end = (i + SCAN_CHUNK).min(h.spans.len());
                    let mut v = SpanView::default();
                    for k in i..end {
                        let hs = &h.spans[k];
                        if hs.ts >= start_us && hs.ts <= end_us && hs.ts != 0 {
                            h.view(k as u32, &mut v);
                            if v.timestamp.is_some() {
                                buf.push(v.to_span());
                            }
                        }
                    }
                    i = end;
                }
                for s in buf.drain(..) {
                    visit(&s);
                }
            }
        }
        Ok(())
    }
}

/// Sorts by time and removes exact duplicates (the same span written twice).
fn dedupe(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(|s| (s.timestamp.unwrap_or(0), s.id, s.shared));
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    let mut run_start = 0;
    for s in spans {
        if let Some(last) = out.last() {
            if (last.timestamp, last.id, last.shared) != (s.timestamp, s.id, s.shared) {
                run_start = out.len();
            }
        }
        if !out[run_start..].contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Sorted intersection of ascending lists.
fn intersect(lists: &mut [Vec<u32>]) -> Vec<u32> {
    lists.sort_by_key(Vec::len);
    let mut acc = lists.first().cloned().unwrap_or_default();
    for l in lists.iter().skip(1) {
        let mut j = 0;
        acc.retain(|x| {
            while j < l.len() && l[j] < *x {
                j += 1;
            }
            j < l.len() && l[j] == *x
        });
    }
    acc
}

/// Candidate traces of one segment: postings intersected for every criterion the segment
/// can answer, then filtered by the per-trace time range and longest duration.
fn seg_candidates(
    s: &Segment,
    c: &Criteria,
    out: &mut Vec<(u64, TraceId)>,
) -> Result<(), SpanStoreError> {
    let d = &s.dict;
    let mut lists: Vec<Vec<u32>> = Vec::new();
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(x) => x,
                None => return Ok(()),
            }
        };
    }
    let list = |kind, a, b| -> Option<Vec<u32>> { Some(s.postings(kind, a, b)?.collect()) };
    let svc = match &c.service {
        Some(svc) => {
            let id = need!(d.find(svc));
            lists.push(need!(list(segment::P_SVC, id, 0)));
            Some(id)
        }
        None => None,
    };
    if let Some(n) = &c.span_name {
        let nid = need!(d.find(n));
        lists.push(need!(match svc {
            Some(sid) => list(segment::P_SVC_NAME, sid, nid),
            None => list(segment::P_NAME, nid, 0),
        }));
    }
    if let Some(r) = &c.remote {
        let rid = need!(d.find(r));
        lists.push(need!(match svc {
            Some(sid) => list(segment::P_SVC_REMOTE, sid, rid),
            None => list(segment::P_REMOTE, rid, 0),
        }));
    }
    for (k, v) in &c.terms {
        let kid = need!(d.find(k));
        match v {
            Some(v) => match d.find(v) {
                // A value in the dictionary is indexed exactly; an inline (rare) value is
                // only reachable through its key.
                Some(vid) => lists.push(list(segment::P_TAG_KV, kid, vid).unwrap_or_default()),
                None => lists.push(need!(list(segment::P_TAG_KEY, kid, 0))),
            },
            None => {
                let mut u: Vec<u32> = list(segment::P_TAG_KEY, kid, 0).unwrap_or_default();
                u.extend(list(segment::P_ANN, kid, 0).unwrap_or_default());
                u.sort_unstable();
                u.dedup();
                lists.push(u);
            }
        }
    }
    let mut push = |ord: u32| {
        let (tmin, tmax) = (s.t_min[ord as usize], s.t_max[ord as usize]);
        if tmin == 0 || tmax < c.lo || tmin > c.hi {
            return;
        }
        if c.min_dur.is_some_and(|m| s.t_dur[ord as usize] < m) {
            return;
        }
        out.push((tmin, s.trace_id(ord)));
    };
    if lists.is_empty() {
        for ord in 0..s.n_traces {
            push(ord);
        }
    } else {
        for ord in intersect(&mut lists) {
            push(ord);
        }
    }
    Ok(())
}

/// Candidate traces of a head: service / name / remote / duration checked on the
/// fixed-size span fields; tag terms on the decoded spans of the trace.
fn head_candidates(h: &Head, c: &Criteria, out: &mut Vec<(u64, TraceId)>) {
    let id_of = |s: &Option<String>| -> Option<Option<u32>> {
        match s {
            None => Some(None),
            Some(s) => h.names.get(s).map(Some),
        }
    };
    let (Some(svc), Some(name), Some(remote)) =
        (id_of(&c.service), id_of(&c.span_name), id_of(&c.remote))
    else {
        return;
    };
    let mut views: Vec<SpanView<'_>> = Vec::new();
    for (t, tr) in h.traces.iter().enumerate() {
        if tr.min_ts == u64::MAX || tr.max_ts < c.lo || tr.min_ts > c.hi {
            continue;
        }
        let (mut svc_ok, mut name_ok, mut remote_ok) =
            (svc.is_none(), name.is_none(), remote.is_none());
        let mut dur_ok = !c.has_duration();
        let mut in_window = false;
        for i in h.trace_spans(t as u32) {
            let hs = &h.spans[i as usize];
            in_window |= hs.ts != 0 && hs.ts >= c.lo && hs.ts <= c.hi;
            if svc.is_some_and(|s| s != hs.svc) {
                continue;
            }
            svc_ok = true;
            name_ok |= name == Some(hs.name);
            remote_ok |= remote == Some(hs.remote);
            dur_ok |= c.duration_ok(Some(hs.dur));
        }
        if !(in_window && svc_ok && name_ok && remote_ok && dur_ok) {
            continue;
        }
        if !c.terms.is_empty() {
            let idx: Vec<u32> = h.trace_spans(t as u32).collect();
            while views.len() < idx.len() {
                views.push(SpanView::default());
            }
            for (k, &i) in idx.iter().enumerate() {
                h.view(i, &mut views[k]);
            }
            if !c.test_criteria(&views[..idx.len()]) {
                continue;
            }
        }
        out.push((tr.min_ts, tr.id));
    }
}
