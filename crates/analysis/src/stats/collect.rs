//! The accumulator of a statistics scan: one per part scanned (a segment, a head), fed
//! projected rows, then merged in part order. Strings are interned to dense ids on the hot
//! path and merged by name. Trace ids and durations are kept as sorted runs, so that the
//! partial of a whole segment can be cached, shared (`Arc`) and merged without copying,
//! while distinct traces and nearest-rank percentiles stay exact.

use std::ops::Range;
use std::sync::Arc;

use meshlens_model::{SpanKind, SpanRow, NO_ID};

use super::Totals;
use super::{Count, Distinct, PairCount, ResponseTime, Stats, StatsQuery};
use crate::fx::{FxMap, Interner};

/// The tags a statistic reads, in the order `SpanRow::tags` returns them.
pub(super) const TAG_KEYS: [&str; 13] = [
    // The cluster: Istio's, a plain tag, OTel's (the first non-empty one).
    "istio.cluster_id",
    "cluster",
    "k8s.cluster.name",
    // The URL (the first present one).
    "http.url",
    "url.full",
    "http.target",
    "url.path",
    "http.route",
    // The status code.
    "http.status_code",
    "http.response.status_code",
    // The user agent.
    "user_agent",
    "http.user_agent",
    "user_agent.original",
];
pub(super) const CLUSTER: Range<usize> = 0..3;
pub(super) const URL: Range<usize> = 3..8;
pub(super) const STATUS: Range<usize> = 8..10;
pub(super) const AGENT: Range<usize> = 10..13;

/// A span without kind is a request when it has an HTTP tag (bit 0 of `SpanRow::prefixes`).
pub(super) const PREFIXES: [&str; 1] = ["http."];

/// The spans a query counts.
pub(super) struct Filter<'q> {
    pub cluster: Option<&'q str>,
    pub service: Option<&'q str>,
}

#[derive(Default)]
struct Table {
    names: Interner,
    counts: Vec<u64>,
}

impl Table {
    #[inline]
    fn add(&mut self, s: &str, n: u64) -> u32 {
        let i = self.names.id(s);
        if i as usize == self.counts.len() {
            self.counts.push(0);
        }
        self.counts[i as usize] += n;
        i
    }

    /// `add`, remembering the table id by the string's part-local id (`NO_ID`: none), so
    /// a string seen again in the same part is neither hashed nor compared.
    #[inline]
    fn add_by_id<'s>(
        &mut self,
        seen: &mut Seen,
        id: u32,
        s: impl FnOnce() -> &'s str,
        n: u64,
    ) -> u32 {
        if id == NO_ID {
            return self.add(s(), n);
        }
        let i = match seen.get(id) {
            Some(i) => i,
            None => {
                let i = self.names.id(s());
                seen.set(id, i);
                if i as usize == self.counts.len() {
                    self.counts.push(0);
                }
                i
            }
        };
        self.counts[i as usize] += n;
        i
    }

    /// Ids of `other`'s names in this table, adding its counts.
    fn absorb(&mut self, other: &Table) -> Vec<u32> {
        (0..other.names.len())
            .map(|i| self.add(other.names.name(i as u32), other.counts[i]))
            .collect()
    }

    fn sorted(&self) -> Vec<Count> {
        let mut v: Vec<Count> = (0..self.names.len())
            .filter(|&i| self.counts[i] > 0)
            .map(|i| Count {
                key: self.names.name(i as u32).to_string(),
                count: self.counts[i],
            })
            .collect();
        super::order_counts(&mut v);
        v
    }

    fn distinct(&self) -> Vec<String> {
        let mut v: Vec<String> = (0..self.names.len())
            .map(|i| self.names.name(i as u32).to_string())
            .collect();
        v.sort();
        v
    }

    fn bytes(&self) -> usize {
        (0..self.names.len())
            .map(|i| 2 * self.names.name(i as u32).len() + 56)
            .sum()
    }
}

/// A sorted run of durations (µs) and its sum.
#[derive(Clone)]
struct Run {
    values: Arc<[u64]>,
    sum: u128,
}

/// The durations of one service: sorted runs, plus the values of the scan in progress.
#[derive(Clone, Default)]
struct Durations {
    open: Vec<u64>,
    runs: Vec<Run>,
}

impl Durations {
    fn seal(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let mut v = std::mem::take(&mut self.open);
        v.sort_unstable();
        let sum = v.iter().map(|&x| u128::from(x)).sum();
        self.runs.push(Run {
            values: v.into(),
            sum,
        });
    }
}

#[derive(Default)]
pub(super) struct Partial {
    spans: u64,
    requests: u64,
    clusters: Table,
    services: Table,
    urls: Table,
    statuses: Table,
    agents: Table,
    ops: Table,
    service_url: FxMap<(u32, u32), u64>,
    url_status: FxMap<(u32, u32), u64>,
    /// Trace ids (high << 64 | low) of counted spans: sorted, deduplicated runs...
    trace_runs: Vec<Arc<[u128]>>,
    /// ...and those of the scan in progress.
    traces: Vec<u128>,
    /// Per service id.
    durations: Vec<Durations>,
}

/// The path of a URL, without scheme, host, query or fragment.
pub(super) fn path_of(u: &str) -> &str {
    let rest = match u.find("://") {
        Some(i) => {
            let r = &u[i + 3..];
            r.find('/').map_or("/", |j| &r[j..])
        }
        None => u,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// The first projected tag of `keys` that is present (`ok`), with its part-local id.
#[inline]
fn first<'a>(
    r: &SpanRow<'a>,
    keys: Range<usize>,
    ok: impl Fn(&str) -> bool,
) -> Option<(&'a str, u32)> {
    keys.into_iter()
        .find_map(|i| r.tags[i].filter(|v| ok(v)).map(|v| (v, r.tag_id(i))))
}

/// Table ids by part-local string id (ids are dense: a segment's dictionary ranks).
#[derive(Default)]
struct Seen(Vec<u32>);

impl Seen {
    #[inline]
    fn get(&self, id: u32) -> Option<u32> {
        self.0.get(id as usize).copied().filter(|&i| i != NO_ID)
    }

    fn set(&mut self, id: u32, table_id: u32) {
        let at = id as usize;
        if at >= self.0.len() {
            self.0.resize(at + 1, NO_ID);
        }
        self.0[at] = table_id;
    }
}

/// What a scan remembers per table: valid for the one part it reads.
#[derive(Default)]
struct SeenIds {
    clusters: Seen,
    services: Seen,
    urls: Seen,
    statuses: Seen,
    agents: Seen,
    ops: Seen,
}

/// The scan of one part: its partial and what it remembers by string id.
pub(super) struct PartScan<'f> {
    filter: &'f Filter<'f>,
    acc: Partial,
    seen: SeenIds,
}

impl<'f> PartScan<'f> {
    pub(super) fn new(filter: &'f Filter<'f>) -> Self {
        PartScan {
            filter,
            acc: Partial::default(),
            seen: SeenIds::default(),
        }
    }

    #[inline]
    pub(super) fn visit(&mut self, r: &SpanRow<'_>) {
        let (f, a, seen) = (self.filter, &mut self.acc, &mut self.seen);
        let (cluster, cluster_id) =
            first(r, CLUSTER, |v| !v.is_empty()).unwrap_or(("unknown", NO_ID));
        if f.cluster.is_some_and(|c| c != cluster) {
            return;
        }
        let service = r.local_service.unwrap_or("unknown");
        if f.service.is_some_and(|x| x != service) {
            return;
        }
        a.spans += 1;
        let id = u128::from(r.trace_id.high) << 64 | u128::from(r.trace_id.low);
        // Segments give a trace's spans together: most repeats never reach the sort.
        if a.traces.last() != Some(&id) {
            a.traces.push(id);
        }
        if let Some(n) = r.name {
            a.ops.add_by_id(&mut seen.ops, r.name_id, || n, 0);
        }
        let is_request = match r.kind {
            Some(SpanKind::Server) => true,
            None => r.prefixes & 1 != 0,
            _ => false,
        };
        if !is_request {
            return;
        }
        a.requests += 1;
        a.clusters
            .add_by_id(&mut seen.clusters, cluster_id, || cluster, 1);
        let service_id = r.local_service.map_or(NO_ID, |_| r.local_service_id);
        let svc = a
            .services
            .add_by_id(&mut seen.services, service_id, || service, 1);
        if svc as usize == a.durations.len() {
            a.durations.push(Durations::default());
        }
        if let Some(d) = r.duration {
            a.durations[svc as usize].open.push(d);
        }
        let url = first(r, URL, |_| true)
            .map(|(u, id)| a.urls.add_by_id(&mut seen.urls, id, || path_of(u), 1));
        let status = first(r, STATUS, |_| true)
            .map(|(c, id)| a.statuses.add_by_id(&mut seen.statuses, id, || c, 1));
        if let Some((ua, id)) = first(r, AGENT, |_| true) {
            a.agents.add_by_id(&mut seen.agents, id, || ua, 1);
        }
        if let Some(u) = url {
            *a.service_url.entry((svc, u)).or_default() += 1;
            if let Some(st) = status {
                *a.url_status.entry((u, st)).or_default() += 1;
            }
        }
    }

    /// The part's partial, sealed.
    pub(super) fn finish(mut self) -> Partial {
        self.acc.seal();
        self.acc
    }
}

impl Partial {
    /// Ends the scan: the open trace ids and durations become sorted runs.
    pub(super) fn seal(&mut self) {
        if !self.traces.is_empty() {
            let mut t = std::mem::take(&mut self.traces);
            t.sort_unstable();
            t.dedup();
            self.trace_runs.push(t.into());
        }
        self.durations.iter_mut().for_each(Durations::seal);
    }

    /// Roughly the heap bytes held, for the pre-aggregate cache's budget.
    pub(super) fn bytes(&self) -> usize {
        let tables = [
            &self.clusters,
            &self.services,
            &self.urls,
            &self.statuses,
            &self.agents,
            &self.ops,
        ];
        let runs: usize = self.trace_runs.iter().map(|r| r.len() * 16).sum();
        let durations: usize = self
            .durations
            .iter()
            .flat_map(|d| &d.runs)
            .map(|r| r.values.len() * 8 + 48)
            .sum();
        let pairs = (self.service_url.len() + self.url_status.len()) * 24;
        tables.iter().map(|t| t.bytes()).sum::<usize>() + runs + durations + pairs + 512
    }

    /// Adds a sealed partial (shared runs are not copied).
    pub(super) fn merge(&mut self, o: &Partial) {
        self.spans += o.spans;
        self.requests += o.requests;
        self.trace_runs.extend(o.trace_runs.iter().cloned());
        self.traces.extend_from_slice(&o.traces);
        self.clusters.absorb(&o.clusters);
        self.agents.absorb(&o.agents);
        self.ops.absorb(&o.ops);
        let svc = self.services.absorb(&o.services);
        let url = self.urls.absorb(&o.urls);
        let st = self.statuses.absorb(&o.statuses);
        for (&(a, b), &n) in &o.service_url {
            *self
                .service_url
                .entry((svc[a as usize], url[b as usize]))
                .or_default() += n;
        }
        for (&(a, b), &n) in &o.url_status {
            *self
                .url_status
                .entry((url[a as usize], st[b as usize]))
                .or_default() += n;
        }
        for (i, d) in o.durations.iter().enumerate() {
            let to = svc[i] as usize;
            if to >= self.durations.len() {
                self.durations.resize_with(to + 1, Durations::default);
            }
            let mine = &mut self.durations[to];
            mine.runs.extend(d.runs.iter().cloned());
            mine.open.extend_from_slice(&d.open);
        }
    }

    /// Distinct trace ids over all runs (sealed).
    fn distinct_traces(&self) -> u64 {
        match self.trace_runs.as_slice() {
            [] => 0,
            [one] => one.len() as u64,
            runs => {
                let mut all: Vec<u128> = Vec::with_capacity(runs.iter().map(|r| r.len()).sum());
                for r in runs {
                    all.extend_from_slice(r);
                }
                // A stable sort merges the sorted runs it finds.
                all.sort();
                all.dedup();
                all.len() as u64
            }
        }
    }

    pub(super) fn finish(mut self, q: &StatsQuery) -> Stats {
        self.seal();
        let traces = self.distinct_traces();
        let pairs = |m: &FxMap<(u32, u32), u64>, a: &Table, b: &Table| {
            let mut v: Vec<PairCount> = m
                .iter()
                .map(|(&(x, y), &count)| PairCount {
                    key: a.names.name(x).to_string(),
                    sub: b.names.name(y).to_string(),
                    count,
                })
                .collect();
            super::order_pairs(&mut v);
            v
        };
        let requests = self.requests;
        let user_agents = super::shares(self.agents.sorted(), requests);
        let mut response_times: Vec<ResponseTime> = Vec::new();
        for (i, d) in self.durations.iter().enumerate() {
            if let Some(rt) = response_time(self.services.names.name(i as u32), &d.runs) {
                response_times.push(rt);
            }
        }
        super::order_response_times(&mut response_times);
        Stats {
            start_ms: q.end_ms.saturating_sub(q.window_ms),
            end_ms: q.end_ms,
            cluster: q.cluster.clone(),
            service: q.service.clone(),
            totals: Totals {
                traces,
                spans: self.spans,
                requests,
            },
            per_cluster: self.clusters.sorted(),
            per_service: self.services.sorted(),
            per_url: self.urls.sorted(),
            per_service_url: pairs(&self.service_url, &self.services, &self.urls),
            per_status: self.statuses.sorted(),
            per_url_status: pairs(&self.url_status, &self.urls, &self.statuses),
            user_agents,
            response_times,
            distinct: Distinct {
                urls: self.urls.distinct(),
                user_agents: self.agents.distinct(),
                status_codes: self.statuses.distinct(),
                operations: self.ops.distinct(),
            },
        }
    }
}

/// The `k`-th smallest (from 0) value of the union of sorted runs: the smallest value with
/// more than `k` values at or below it, found by bisecting the value range.
fn kth(runs: &[Run], k: usize) -> u64 {
    if let [one] = runs {
        return one.values[k];
    }
    let ends = runs
        .iter()
        .filter_map(|r| Some((*r.values.first()?, *r.values.last()?)));
    let (mut lo, mut hi) = ends.fold((u64::MAX, 0), |(a, b), (x, y)| (a.min(x), b.max(y)));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at_or_below: usize = runs
            .iter()
            .map(|r| r.values.partition_point(|&x| x <= mid))
            .sum();
        if at_or_below > k {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Min, mean, max and nearest-rank percentiles, in milliseconds.
fn response_time(service: &str, runs: &[Run]) -> Option<ResponseTime> {
    let n: usize = runs.iter().map(|r| r.values.len()).sum();
    if n == 0 {
        return None;
    }
    let pick = |q: f64| {
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        kth(runs, rank)
    };
    let sum: u128 = runs.iter().map(|r| r.sum).sum();
    Some(ResponseTime::from_micros(
        service,
        n as u64,
        pick(0.0),
        sum,
        pick(1.0),
        [pick(0.50), pick(0.90), pick(0.99)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut v: Vec<u64>) -> Run {
        v.sort_unstable();
        Run {
            sum: v.iter().map(|&x| u128::from(x)).sum(),
            values: v.into(),
        }
    }

    #[test]
    fn kth_over_runs_equals_kth_of_the_union() {
        let parts = vec![
            vec![5, 1, 9, 9, 3],
            vec![2, 9, 4],
            vec![],
            vec![7, 7, 7, 0, 100],
        ];
        let mut all: Vec<u64> = parts.iter().flatten().copied().collect();
        all.sort_unstable();
        let runs: Vec<Run> = parts.into_iter().map(run).collect();
        for (k, want) in all.iter().enumerate() {
            assert_eq!(kth(&runs, k), *want, "k = {k}");
        }
    }

    #[test]
    fn response_time_over_runs() {
        let runs = vec![
            run((1..=50).map(|x| x * 1000).collect()),
            run((51..=100).map(|x| x * 1000).collect()),
        ];
        let rt = response_time("s", &runs).unwrap();
        assert_eq!(
            (rt.count, rt.min_ms, rt.max_ms, rt.avg_ms),
            (100, 1.0, 100.0, 50.5)
        );
        assert_eq!((rt.p50_ms, rt.p90_ms, rt.p99_ms), (50.0, 90.0, 99.0));
        assert!(response_time("s", &[run(vec![])]).is_none());
    }

    #[test]
    fn path_of_strips_scheme_host_query_and_fragment() {
        assert_eq!(path_of("http://h:80/a/b?x=1#f"), "/a/b");
        assert_eq!(path_of("https://h"), "/");
        assert_eq!(path_of("/p?q"), "/p");
    }
}
