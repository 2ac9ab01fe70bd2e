//! Query semantics borrowed from the Zipkin server: `QueryRequest.test` for searches and
//! `DependencyLinker` for the service graph. Both work on borrowed `SpanView`s so the
//! storage layers can run them without building `Span`s.

use std::collections::HashMap;

use meshlens_model::{SpanKind, TraceQuery};

use crate::codec::{lower, SpanView};

/// A search, normalised: names lower-cased, window in microseconds.
#[derive(Clone, Debug)]
pub struct Criteria {
    pub service: Option<String>,
    pub remote: Option<String>,
    pub span_name: Option<String>,
    /// `(key, None)`: tag key or annotation value present; `(key, Some(v))`: tag equal.
    pub terms: Vec<(String, Option<String>)>,
    pub min_dur: Option<u64>,
    pub max_dur: Option<u64>,
    pub lo: u64,
    pub hi: u64,
}

/// `[end_ts - lookback, end_ts]` in microseconds; a non-positive lookback means "all time
/// up to end_ts".
pub fn window_us(end_ts: i64, lookback: i64) -> (u64, u64) {
    let end = end_ts.max(0) as u64;
    let hi = end.saturating_mul(1000).saturating_add(999);
    let lo = if lookback <= 0 {
        0
    } else {
        (end.saturating_sub(lookback as u64)).saturating_mul(1000)
    };
    (lo, hi)
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .filter(|s| !s.is_empty() && *s != "all")
        .map(|s| lower(s).into_owned())
}

impl Criteria {
    pub fn from_query(q: &TraceQuery) -> Criteria {
        let (lo, hi) = window_us(q.end_ts, q.lookback);
        Criteria {
            service: non_empty(&q.service_name),
            remote: non_empty(&q.remote_service_name),
            span_name: non_empty(&q.span_name),
            terms: q
                .annotation_query
                .iter()
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.clone(), v.clone().filter(|v| !v.is_empty())))
                .collect(),
            min_dur: q.min_duration,
            max_dur: q.max_duration,
            lo,
            hi,
        }
    }

    pub fn has_duration(&self) -> bool {
        self.min_dur.is_some() || self.max_dur.is_some()
    }

    pub fn duration_ok(&self, d: Option<u64>) -> bool {
        let Some(d) = d else {
            return !self.has_duration();
        };
        self.min_dur.is_none_or(|m| d >= m) && self.max_dur.is_none_or(|m| d <= m)
    }

    fn eq_lower(want: &str, got: Option<&str>) -> bool {
        got.is_some_and(|g| g.len() == want.len() && lower(g) == want)
    }

    /// Zipkin's `QueryRequest.test`, except that the time check asks for any span in the
    /// window (a trace arriving in pieces is found by any of its pieces).
    pub fn test(&self, spans: &[SpanView<'_>]) -> bool {
        let in_window = spans
            .iter()
            .any(|s| s.timestamp.is_some_and(|t| t >= self.lo && t <= self.hi));
        in_window && self.test_criteria(spans)
    }

    pub fn test_criteria(&self, spans: &[SpanView<'_>]) -> bool {
        let mut service_ok = self.service.is_none();
        let mut remote_ok = self.remote.is_none();
        let mut name_ok = self.span_name.is_none();
        let mut dur_ok = !self.has_duration();
        let mut remaining: Vec<bool> = vec![false; self.terms.len()];
        for s in spans {
            if let Some(svc) = &self.service {
                if !Self::eq_lower(svc, s.local_service()) {
                    continue;
                }
                service_ok = true;
            }
            for (i, (k, v)) in self.terms.iter().enumerate() {
                if remaining[i] {
                    continue;
                }
                remaining[i] = match v {
                    None => {
                        s.annotations.iter().any(|(_, a)| a == k)
                            || s.tags.iter().any(|(tk, _)| tk == k)
                    }
                    Some(v) => s.tags.iter().any(|(tk, tv)| tk == k && tv == v),
                };
            }
            if !remote_ok {
                remote_ok =
                    Self::eq_lower(self.remote.as_deref().unwrap_or(""), s.remote_service());
            }
            if !name_ok {
                name_ok = Self::eq_lower(self.span_name.as_deref().unwrap_or(""), s.name);
            }
            if !dur_ok {
                dur_ok = self.duration_ok(s.duration);
            }
        }
        service_ok && remote_ok && name_ok && dur_ok && remaining.iter().all(|b| *b)
    }
}

/// The fields of a span the dependency linker needs.
#[derive(Clone, Copy, Debug)]
pub struct LinkSpan<'a> {
    pub id: u64,
    pub parent: Option<u64>,
    pub kind: Option<SpanKind>,
    pub local: Option<&'a str>,
    pub remote: Option<&'a str>,
    pub error: bool,
    pub shared: bool,
}

impl<'a> LinkSpan<'a> {
    pub fn from_view(v: &SpanView<'a>) -> LinkSpan<'a> {
        LinkSpan {
            id: v.id,
            parent: v.parent_id,
            kind: v.kind,
            local: v.local_service(),
            remote: v.remote_service(),
            error: v.tags.iter().any(|(k, _)| *k == "error"),
            shared: v.shared,
        }
    }
}

/// Accumulated links: (parent, child) -> (calls, errors).
pub type Links = HashMap<(String, String), (u64, u64)>;

fn add_link(links: &mut Links, parent: &str, child: &str, error: bool) {
    let e = links
        .entry((lower(parent).into_owned(), lower(child).into_owned()))
        .or_insert((0, 0));
    e.0 += 1;
    if error {
        e.1 += 1;
    }
}

/// Zipkin's `DependencyLinker.putTrace` over one trace's spans.
pub fn link_trace(spans: &mut Vec<LinkSpan<'_>>, links: &mut Links) {
    // Exact duplicates (the same span stored twice) must not count twice.
    spans.sort_by_key(|s| (s.id, s.shared, s.kind.map(|k| k as u8), s.local));
    spans.dedup_by(|a, b| {
        a.id == b.id && a.shared == b.shared && a.kind == b.kind && a.local == b.local
    });
    let n = spans.len();
    // Parent node of each span: a shared (server) span hangs under the span with its id;
    // other spans hang under their parent id, preferring the shared server side.
    let mut by_id: HashMap<(u64, bool), usize> = HashMap::with_capacity(n);
    for (i, s) in spans.iter().enumerate() {
        by_id.entry((s.id, s.shared)).or_insert(i);
    }
    let parent_of: Vec<Option<usize>> = spans
        .iter()
        .map(|s| {
            if s.shared {
                if let Some(&p) = by_id.get(&(s.id, false)) {
                    return Some(p);
                }
            }
            let pid = s.parent?;
            by_id
                .get(&(pid, true))
                .or_else(|| by_id.get(&(pid, false)))
                .copied()
                .filter(|&p| spans[p].id != s.id || spans[p].shared != s.shared)
        })
        .collect();
    let mut has_children = vec![false; n];
    for p in parent_of.iter().flatten() {
        has_children[*p] = true;
    }
    for (i, s) in spans.iter().enumerate() {
        let mut kind = s.kind;
        if kind == Some(SpanKind::Client) && has_children[i] {
            continue;
        }
        if kind.is_none() {
            if s.local.is_some() && s.remote.is_some() {
                kind = Some(SpanKind::Client);
            } else {
                continue;
            }
        }
        let kind = kind.expect("set above");
        let (mut parent, child) = match kind {
            SpanKind::Server | SpanKind::Consumer => (s.remote, s.local),
            SpanKind::Client | SpanKind::Producer => (s.local, s.remote),
        };
        let mut error = s.error;
        if matches!(kind, SpanKind::Producer | SpanKind::Consumer) {
            if let (Some(p), Some(c)) = (parent, child) {
                add_link(links, p, c, error);
            }
            continue;
        }
        // First ancestor with a kind (local spans may sit in between).
        let mut anc = parent_of[i];
        let mut steps = 0;
        while let Some(a) = anc {
            if spans[a].kind.is_some() || steps > n {
                break;
            }
            anc = parent_of[a];
            steps += 1;
        }
        if let Some(a) = anc.filter(|&a| spans[a].kind.is_some()) {
            let ra = &spans[a];
            if let Some(ra_name) = ra.local {
                if kind == SpanKind::Client {
                    if let Some(svc) = s.local {
                        if !ra_name.eq_ignore_ascii_case(svc) {
                            add_link(links, ra_name, svc, false);
                        }
                    }
                }
                if kind == SpanKind::Server || parent.is_none() {
                    parent = Some(ra_name);
                }
                if !error && ra.kind == Some(SpanKind::Client) && s.parent == Some(ra.id) {
                    error = ra.error;
                }
            }
        }
        if let (Some(p), Some(c)) = (parent, child) {
            add_link(links, p, c, error);
        }
    }
}
