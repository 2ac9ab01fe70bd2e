//! The per-thread accumulator of a statistics scan: strings interned to dense ids on the
//! hot path, merged by name at the end.

use meshlens_model::{Span, SpanKind};

use super::Totals;
use super::{span_cluster, Count, Distinct, PairCount, ResponseTime, Share, Stats, StatsQuery};
use crate::fx::{FxMap, FxSet, Interner};

#[derive(Default)]
struct Table {
    names: Interner,
    counts: Vec<u64>,
}

impl Table {
    fn add(&mut self, s: &str, n: u64) -> u32 {
        let i = self.names.id(s);
        if i as usize == self.counts.len() {
            self.counts.push(0);
        }
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
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        v
    }

    fn distinct(&self) -> Vec<String> {
        let mut v: Vec<String> = (0..self.names.len())
            .map(|i| self.names.name(i as u32).to_string())
            .collect();
        v.sort();
        v
    }
}

pub(super) struct Partial<'q> {
    cluster: Option<&'q str>,
    service: Option<&'q str>,
    traces: FxSet<(u64, u64)>,
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
    /// Durations in microseconds, per service id.
    durations: Vec<Vec<u64>>,
}

/// The path of a URL, without scheme, host, query or fragment.
fn path_of(u: &str) -> &str {
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

fn url(s: &Span) -> Option<&str> {
    [
        "http.url",
        "url.full",
        "http.target",
        "url.path",
        "http.route",
    ]
    .iter()
    .find_map(|k| s.tags.get(*k))
    .map(|u| path_of(u))
}

fn is_request(s: &Span) -> bool {
    match s.kind {
        Some(SpanKind::Server) => true,
        None => s.tags.keys().any(|k| k.starts_with("http.")),
        _ => false,
    }
}

impl<'q> Partial<'q> {
    pub(super) fn new(q: &'q StatsQuery) -> Self {
        Partial {
            cluster: q.cluster.as_deref(),
            service: q.service.as_deref(),
            traces: FxSet::default(),
            spans: 0,
            requests: 0,
            clusters: Table::default(),
            services: Table::default(),
            urls: Table::default(),
            statuses: Table::default(),
            agents: Table::default(),
            ops: Table::default(),
            service_url: FxMap::default(),
            url_status: FxMap::default(),
            durations: Vec::new(),
        }
    }

    pub(super) fn visit(&mut self, s: &Span) {
        let cluster = span_cluster(s);
        if self.cluster.is_some_and(|c| c != cluster) {
            return;
        }
        let service = s.local_service().unwrap_or("unknown");
        if self.service.is_some_and(|x| x != service) {
            return;
        }
        self.spans += 1;
        self.traces.insert((s.trace_id.high, s.trace_id.low));
        if let Some(n) = &s.name {
            self.ops.add(n, 0);
        }
        if !is_request(s) {
            return;
        }
        self.requests += 1;
        self.clusters.add(cluster, 1);
        let svc = self.services.add(service, 1);
        if svc as usize == self.durations.len() {
            self.durations.push(Vec::new());
        }
        if let Some(d) = s.duration {
            self.durations[svc as usize].push(d);
        }
        let url = url(s).map(|u| self.urls.add(u, 1));
        let status = s
            .tags
            .get("http.status_code")
            .or_else(|| s.tags.get("http.response.status_code"))
            .map(|c| self.statuses.add(c, 1));
        if let Some(ua) = s
            .tags
            .get("user_agent")
            .or_else(|| s.tags.get("http.user_agent"))
            .or_else(|| s.tags.get("user_agent.original"))
        {
            self.agents.add(ua, 1);
        }
        if let Some(u) = url {
            *self.service_url.entry((svc, u)).or_default() += 1;
            if let Some(st) = status {
                *self.url_status.entry((u, st)).or_default() += 1;
            }
        }
    }

    pub(super) fn merge(&mut self, o: Partial<'_>) {
        self.spans += o.spans;
        self.requests += o.requests;
        self.traces.extend(o.traces);
        self.clusters.absorb(&o.clusters);
        self.agents.absorb(&o.agents);
        self.ops.absorb(&o.ops);
        let svc = self.services.absorb(&o.services);
        let url = self.urls.absorb(&o.urls);
        let st = self.statuses.absorb(&o.statuses);
        for ((a, b), n) in o.service_url {
            *self
                .service_url
                .entry((svc[a as usize], url[b as usize]))
                .or_default() += n;
        }
        for ((a, b), n) in o.url_status {
            *self
                .url_status
                .entry((url[a as usize], st[b as usize]))
                .or_default() += n;
        }
        for (i, d) in o.durations.into_iter().enumerate() {
            let to = svc[i] as usize;
            if to >= self.durations.len() {
                self.durations.resize_with(to + 1, Vec::new);
            }
            self.durations[to].extend(d);
        }
    }

    pub(super) fn finish(mut self, q: &StatsQuery) -> Stats {
        let pairs = |m: &FxMap<(u32, u32), u64>, a: &Table, b: &Table| {
            let mut v: Vec<PairCount> = m
                .iter()
                .map(|(&(x, y), &count)| PairCount {
                    key: a.names.name(x).to_string(),
                    sub: b.names.name(y).to_string(),
                    count,
                })
                .collect();
            v.sort_by(|p, r| {
                r.count
                    .cmp(&p.count)
                    .then_with(|| (&p.key, &p.sub).cmp(&(&r.key, &r.sub)))
            });
            v
        };
        let requests = self.requests;
        let user_agents = self
            .agents
            .sorted()
            .into_iter()
            .map(|c| Share {
                share: c.count as f64 / requests.max(1) as f64,
                key: c.key,
                count: c.count,
            })
            .collect();
        let mut response_times: Vec<ResponseTime> = Vec::new();
        for (i, d) in self.durations.iter_mut().enumerate() {
            if let Some(rt) = response_time(self.services.names.name(i as u32), d) {
                response_times.push(rt);
            }
        }
        response_times.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.service.cmp(&b.service))
        });
        Stats {
            start_ms: q.end_ms - q.window_ms,
            end_ms: q.end_ms,
            cluster: q.cluster.clone(),
            service: q.service.clone(),
            totals: Totals {
                traces: self.traces.len() as u64,
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

/// Min, mean, max and nearest-rank percentiles, in milliseconds.
fn response_time(service: &str, d: &mut [u64]) -> Option<ResponseTime> {
    if d.is_empty() {
        return None;
    }
    let n = d.len();
    let ms = |us: u64| us as f64 / 1000.0;
    let mut pick = |q: f64| {
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        *d.select_nth_unstable(rank).1
    };
    let (p50, p90, p99) = (pick(0.50), pick(0.90), pick(0.99));
    let (min, max) = (pick(0.0), pick(1.0));
    let sum: u128 = d.iter().map(|&x| x as u128).sum();
    Some(ResponseTime {
        service: service.to_string(),
        count: n as u64,
        min_ms: ms(min),
        avg_ms: sum as f64 / n as f64 / 1000.0,
        max_ms: ms(max),
        p50_ms: ms(p50),
        p90_ms: ms(p90),
        p99_ms: ms(p99),
    })
}
