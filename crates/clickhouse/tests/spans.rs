//! The span store on a real 2-shard ClickHouse 18.16 cluster and on a current release (one
//! server, through chDB), judged against the same
//! answers computed in memory over the spans written (a differential, no fixed numbers).

#[macro_use]
mod common;

use common::Backend;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use meshlens_clickhouse::{testing, Client, ClientOptions, Schema, StorageUrl, SCHEMA_VERSION};
use meshlens_model::{
    Annotation, DependencyLink, Endpoint, Span, SpanKind, SpanReader, SpanWriter, TraceId,
    TraceQuery,
};

/// 2025-12-04 00:00 UTC in microseconds; traces start a minute apart from here.
const BASE_US: u64 = 1_764_806_400_000_000;
const MINUTE_US: u64 = 60_000_000;
const TRACES: u64 = 24;

/// A small deterministic generator (64-bit LCG), so the data set is the same every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 16
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn ep(service: &str) -> Option<Endpoint> {
    Some(Endpoint {
        service_name: Some(service.to_string()),
        ipv4: Some("10.1.2.3".into()),
        ipv6: None,
        port: Some(8080),
    })
}

struct Gen {
    rng: Lcg,
    spans: Vec<Span>,
    next_id: u64,
}

impl Gen {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        // Spread ids over the whole range; never 0 (which means "no parent" in Zipkin).
        self.next_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        trace: TraceId,
        id: u64,
        parent: Option<u64>,
        kind: Option<SpanKind>,
        local: &str,
        remote: Option<&str>,
        name: &str,
        ts: u64,
        shared: bool,
    ) {
        let mut tags = BTreeMap::new();
        tags.insert("http.url".to_string(), format!("/{name}"));
        let status = ["200", "200", "404", "500"][self.rng.below(4) as usize];
        tags.insert("http.status_code".to_string(), status.to_string());
        if status == "500" {
            tags.insert("error".to_string(), "server error".to_string());
        }
        if self.rng.below(3) == 0 {
            tags.insert(
                "env".to_string(),
                ["prod", "canary"][self.rng.below(2) as usize].into(),
            );
        }
        let mut annotations = Vec::new();
        if self.rng.below(4) == 0 {
            annotations.push(Annotation {
                timestamp: ts + 1,
                value: "retry".into(),
            });
        }
        self.spans.push(Span {
            trace_id: trace,
            id,
            parent_id: parent,
            name: Some(name.to_string()),
            kind,
            timestamp: Some(ts),
            duration: Some(1 + self.rng.below(900_000)),
            local_endpoint: ep(local),
            remote_endpoint: remote.and_then(ep),
            annotations,
            tags,
            debug: self.rng.below(10) == 0,
            shared,
        });
    }

    /// `caller` (whose span is `parent`) calls `callee`: a client span, and unless the
    /// callee is uninstrumented, its server span (shared with the client's id sometimes).
    /// Returns the server span's id, the callee's parent for deeper calls.
    fn call(
        &mut self,
        trace: TraceId,
        parent: u64,
        caller: &str,
        callee: &str,
        ts: u64,
        instrumented: bool,
    ) -> u64 {
        let client = self.id();
        let name = format!("{caller}->{callee}");
        self.span(
            trace,
            client,
            Some(parent),
            Some(SpanKind::Client),
            caller,
            Some(callee),
            &name,
            ts,
            false,
        );
        if !instrumented {
            return client;
        }
        if self.rng.below(4) == 0 {
            // B3 single-host style: the server reports under the client's id.
            self.span(
                trace,
                client,
                Some(parent),
                Some(SpanKind::Server),
                callee,
                Some(caller),
                &name,
                ts + 10,
                true,
            );
            client
        } else {
            let server = self.id();
            self.span(
                trace,
                server,
                Some(client),
                Some(SpanKind::Server),
                callee,
                Some(caller),
                &name,
                ts + 10,
                false,
            );
            server
        }
    }
}

/// Twenty-four traces over five services (names in mixed case), half with 128-bit ids, one
/// 64-bit id equal to a 128-bit id's low half; calls to an uninstrumented service, local
/// spans, tags, annotations and errors.
fn dataset() -> Vec<Span> {
    let mut g = Gen {
        rng: Lcg(42),
        spans: Vec::new(),
        next_id: 0,
    };
    let services = ["Frontend", "api", "db", "cache", "auth"];
    for t in 0..TRACES {
        let trace = if t == TRACES - 1 {
            // Same low half as trace 0 (128-bit): the high half tells them apart.
            TraceId {
                high: 0,
                low: 0x1000 + 7,
                is_128: false,
            }
        } else if t % 2 == 0 {
            TraceId {
                high: 0xabc0_0000_0000_0000 + t,
                low: 0x1000 + t * 7,
                is_128: true,
            }
        } else {
            TraceId {
                high: 0,
                low: 0x2000_0000_0000_0000 + t * 977,
                is_128: false,
            }
        };
        let start = BASE_US + t * MINUTE_US;
        let root = g.id();
        let root_svc = services[(t % 2) as usize];
        g.span(
            trace,
            root,
            None,
            Some(SpanKind::Server),
            root_svc,
            None,
            "get /",
            start,
            false,
        );
        let mut ts = start + 100;
        let calls = 4 + g.rng.below(5);
        let mut frontier = vec![(root, root_svc.to_string())];
        for _ in 0..calls {
            let (parent, caller) = frontier[g.rng.below(frontier.len() as u64) as usize].clone();
            let callee = services[g.rng.below(services.len() as u64) as usize];
            if callee.eq_ignore_ascii_case(&caller) {
                // A local span instead of a self call.
                let id = g.id();
                g.span(
                    trace,
                    id,
                    Some(parent),
                    None,
                    &caller,
                    None,
                    "compute",
                    ts,
                    false,
                );
            } else {
                let instrumented = g.rng.below(5) != 0;
                let callee = if instrumented { callee } else { "ext-payments" };
                let child = g.call(trace, parent, &caller, callee, ts, instrumented);
                if instrumented {
                    frontier.push((child, callee.to_string()));
                }
            }
            ts += 1000;
        }
    }
    uninstrumented_clients(&mut g);
    g.spans
}

/// A trace whose servers sit under spans without kind: `search` (an uninstrumented client
/// library of `Frontend`) calls `catalog`; two kind-less levels lead to `db`; a failed
/// client span leads through a kind-less one to `auth`. Zipkin's linker names the nearest
/// ancestor with a kind as the caller, and a client's error passes only to a direct child.
fn uninstrumented_clients(g: &mut Gen) {
    let trace = TraceId {
        high: 0,
        low: 0x3000_0000_0000_0001,
        is_128: false,
    };
    let ts = BASE_US + 2 * MINUTE_US + 500;
    let ids: Vec<u64> = (0..8).map(|_| g.id()).collect();
    let shape: [(usize, Option<usize>, Option<SpanKind>, &str); 8] = [
        (0, None, Some(SpanKind::Server), "Frontend"),
        (1, Some(0), None, "search"),
        (2, Some(1), Some(SpanKind::Server), "catalog"),
        (3, Some(2), None, "catalog"),
        (4, Some(3), None, "lib"),
        (5, Some(4), Some(SpanKind::Server), "db"),
        (6, Some(2), Some(SpanKind::Client), "catalog"),
        (7, Some(6), None, "catalog"),
    ];
    for (i, parent, kind, svc) in shape {
        g.span(
            trace,
            ids[i],
            parent.map(|p| ids[p]),
            kind,
            svc,
            None,
            "op",
            ts + i as u64,
            false,
        );
    }
    let auth = g.id();
    g.span(
        trace,
        auth,
        Some(ids[7]),
        Some(SpanKind::Server),
        "auth",
        None,
        "op",
        ts + 9,
        false,
    );
    // The client's error must not reach `auth` through the kind-less span.
    let client = g.spans.iter_mut().find(|s| s.id == ids[6]).unwrap();
    client
        .tags
        .insert("error".to_string(), "timeout".to_string());
}

type Key = (u64, u64, u64, Option<SpanKind>, bool);

fn key(s: &Span) -> Key {
    (s.trace_id.high, s.trace_id.low, s.id, s.kind, s.shared)
}

/// Spans as sets, comparable regardless of order.
fn sorted(mut v: Vec<Span>) -> Vec<Span> {
    v.sort_by_key(|s| {
        let (h, l, id, kind, shared) = key(s);
        (h, l, id, kind.map(SpanKind::as_str), shared, s.timestamp)
    });
    v
}

fn by_trace(data: &[Span]) -> BTreeMap<(u64, u64), Vec<Span>> {
    let mut seen = HashSet::new();
    let mut out: BTreeMap<(u64, u64), Vec<Span>> = BTreeMap::new();
    for s in data {
        if seen.insert(key(s)) {
            out.entry((s.trace_id.high, s.trace_id.low))
                .or_default()
                .push(s.clone());
        }
    }
    out
}

fn lower_opt(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .filter(|s| !s.is_empty() && *s != "all")
        .map(str::to_lowercase)
}

/// The embedded store's search rule, in memory: some span in the window; every criterion
/// met by some span of the named service (any span when none is named).
fn matches(q: &TraceQuery, spans: &[Span]) -> bool {
    let end = q.end_ts.max(0) as u64;
    let hi = end * 1000 + 999;
    let lo = if q.lookback <= 0 {
        0
    } else {
        end.saturating_sub(q.lookback as u64) * 1000
    };
    if !spans
        .iter()
        .any(|s| s.timestamp.is_some_and(|t| t >= lo && t <= hi))
    {
        return false;
    }
    let svc = lower_opt(&q.service_name);
    let of_svc: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            svc.as_ref()
                .is_none_or(|v| s.local_service().map(str::to_lowercase).as_ref() == Some(v))
        })
        .collect();
    if of_svc.is_empty() {
        return false;
    }
    let lc = |o: Option<&str>| o.map(str::to_lowercase);
    if let Some(r) = lower_opt(&q.remote_service_name) {
        if !of_svc
            .iter()
            .any(|s| lc(s.remote_service()) == Some(r.clone()))
        {
            return false;
        }
    }
    if let Some(n) = lower_opt(&q.span_name) {
        if !of_svc
            .iter()
            .any(|s| lc(s.name.as_deref()) == Some(n.clone()))
        {
            return false;
        }
    }
    if q.min_duration.is_some() || q.max_duration.is_some() {
        let ok = of_svc.iter().any(|s| {
            s.duration.is_some_and(|d| {
                q.min_duration.is_none_or(|m| d >= m) && q.max_duration.is_none_or(|m| d <= m)
            })
        });
        if !ok {
            return false;
        }
    }
    q.annotation_query.iter().all(|(k, v)| {
        of_svc.iter().any(|s| match v {
            None => s.tags.contains_key(k) || s.annotations.iter().any(|a| &a.value == k),
            Some(v) => s.tags.get(k) == Some(v),
        })
    })
}

/// Trace ids the search should answer, in order.
fn expected_search(data: &[Span], q: &TraceQuery) -> Vec<(u64, u64)> {
    let limit = if q.limit == 0 { 10 } else { q.limit };
    let mut hits: Vec<(u64, (u64, u64), u64)> = by_trace(data)
        .into_iter()
        .filter(|(_, spans)| matches(q, spans))
        .map(|(id, spans)| {
            let first = spans.iter().filter_map(|s| s.timestamp).min().unwrap_or(0);
            (first, id, meshlens_model::trace::trace_start(&spans))
        })
        .collect();
    hits.sort_by_key(|h| std::cmp::Reverse((h.0, h.1)));
    hits.truncate(limit);
    hits.sort_by_key(|h| std::cmp::Reverse(h.2));
    hits.into_iter().map(|h| h.1).collect()
}

/// The documented dependency rule (see `SpanStore::served_calls` and `leaf_calls`), in
/// memory.
fn expected_links(data: &[Span], lo: u64, hi: u64) -> Vec<DependencyLink> {
    let mut acc: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let lc = |o: Option<&str>| o.unwrap_or("").to_lowercase();
    for spans in by_trace(data).values() {
        let in_window = |s: &Span| s.timestamp.is_some_and(|t| t >= lo && t <= hi);
        let caller_of = |id: u64| spans.iter().find(|p| p.id == id && !p.shared);
        // The span a span hangs under, as Zipkin's linker finds it: the client of a shared
        // span, else the span with its parent id (the shared one first), never itself.
        let parent_of = |s: &Span| -> Option<&Span> {
            if s.shared {
                if let Some(c) = caller_of(s.id) {
                    return Some(c);
                }
            }
            let pid = s.parent_id?;
            spans
                .iter()
                .find(|p| p.id == pid && p.shared)
                .or_else(|| caller_of(pid))
                .filter(|p| p.id != s.id || p.shared != s.shared)
        };
        // Whole traces with a span in the window are linked.
        if !spans.iter().any(in_window) {
            continue;
        }
        for s in spans {
            let local = lc(s.local_service());
            let remote = lc(s.remote_service());
            match s.kind {
                Some(SpanKind::Server) if !local.is_empty() => {
                    // The nearest ancestor with a kind (Zipkin's linker).
                    let mut anc = parent_of(s);
                    for _ in 0..spans.len() {
                        match anc {
                            Some(a) if a.kind.is_none() => anc = parent_of(a),
                            _ => break,
                        }
                    }
                    let caller = anc.filter(|a| a.kind.is_some());
                    let caller_svc = caller.map(|c| lc(c.local_service())).unwrap_or_default();
                    let parent = if caller_svc.is_empty() {
                        remote
                    } else {
                        caller_svc
                    };
                    if parent.is_empty() {
                        continue;
                    }
                    let error = s.tags.contains_key("error")
                        || caller.is_some_and(|c| {
                            c.kind == Some(SpanKind::Client)
                                && s.parent_id == Some(c.id)
                                && c.tags.contains_key("error")
                        });
                    let e = acc.entry((parent, local)).or_default();
                    e.0 += 1;
                    e.1 += u64::from(error);
                }
                Some(SpanKind::Consumer) if !local.is_empty() => {
                    let caller_id = if s.shared { Some(s.id) } else { s.parent_id };
                    let caller = caller_id.and_then(caller_of);
                    let caller_svc = caller.map(|c| lc(c.local_service())).unwrap_or_default();
                    let parent = if caller_svc.is_empty() {
                        remote
                    } else {
                        caller_svc
                    };
                    if parent.is_empty() {
                        continue;
                    }
                    let error = s.tags.contains_key("error")
                        || !s.shared
                            && caller.is_some_and(|c| {
                                c.kind == Some(SpanKind::Client) && c.tags.contains_key("error")
                            });
                    let e = acc.entry((parent, local)).or_default();
                    e.0 += 1;
                    e.1 += u64::from(error);
                }
                Some(SpanKind::Client | SpanKind::Producer)
                    if !local.is_empty() && !remote.is_empty() =>
                {
                    let answered = spans.iter().any(|c| {
                        (c.shared && c.id == s.id) || (!c.shared && c.parent_id == Some(s.id))
                    });
                    if answered {
                        continue;
                    }
                    let e = acc.entry((local, remote)).or_default();
                    e.0 += 1;
                    e.1 += u64::from(s.tags.contains_key("error"));
                }
                _ => {}
            }
        }
    }
    acc.into_iter()
        .map(
            |((parent, child), (call_count, error_count))| DependencyLink {
                parent,
                child,
                call_count,
                error_count,
            },
        )
        .collect()
}

/// Writes the data set in three batches, the second one twice (a retry after a lost
/// answer), through server 0.
fn write_all(store: &dyn SpanWriter, data: &[Span]) {
    let third = data.len() / 3;
    store.write(&data[..third]).unwrap();
    store.write(&data[third..2 * third]).unwrap();
    store.write(&data[third..2 * third]).unwrap();
    store.write(&data[2 * third..]).unwrap();
}

fn q() -> TraceQuery {
    TraceQuery {
        end_ts: ((BASE_US + TRACES * MINUTE_US) / 1000) as i64,
        lookback: 3_600_000,
        limit: 100,
        ..TraceQuery::default()
    }
}

fn cases() -> Vec<(&'static str, TraceQuery)> {
    let s = |v: &str| Some(v.to_string());
    vec![
        ("everything", q()),
        ("default limit", TraceQuery { limit: 0, ..q() }),
        ("limit 3", TraceQuery { limit: 3, ..q() }),
        (
            "service",
            TraceQuery {
                service_name: s("db"),
                ..q()
            },
        ),
        (
            "service, case-insensitive",
            TraceQuery {
                service_name: s("FRONTEND"),
                ..q()
            },
        ),
        (
            "service all",
            TraceQuery {
                service_name: s("all"),
                ..q()
            },
        ),
        (
            "service and remote",
            TraceQuery {
                service_name: s("api"),
                remote_service_name: s("ext-payments"),
                ..q()
            },
        ),
        (
            "remote alone",
            TraceQuery {
                remote_service_name: s("auth"),
                ..q()
            },
        ),
        (
            "span name",
            TraceQuery {
                span_name: s("compute"),
                ..q()
            },
        ),
        (
            "service and span name",
            TraceQuery {
                service_name: s("cache"),
                span_name: s("api->cache"),
                ..q()
            },
        ),
        (
            "tag key",
            TraceQuery {
                annotation_query: vec![("env".into(), None)],
                ..q()
            },
        ),
        (
            "annotation value",
            TraceQuery {
                annotation_query: vec![("retry".into(), None)],
                ..q()
            },
        ),
        (
            "tag key=value and service",
            TraceQuery {
                service_name: s("auth"),
                annotation_query: vec![("env".into(), s("canary"))],
                ..q()
            },
        ),
        (
            "two terms",
            TraceQuery {
                annotation_query: vec![
                    ("error".into(), None),
                    ("http.status_code".into(), s("404")),
                ],
                ..q()
            },
        ),
        (
            "min duration",
            TraceQuery {
                min_duration: Some(850_000),
                ..q()
            },
        ),
        (
            "duration range with service",
            TraceQuery {
                service_name: s("db"),
                min_duration: Some(100_000),
                max_duration: Some(300_000),
                ..q()
            },
        ),
        (
            "time window",
            TraceQuery {
                end_ts: ((BASE_US + 6 * MINUTE_US) / 1000) as i64,
                lookback: 3 * 60_000,
                ..q()
            },
        ),
        (
            "no match",
            TraceQuery {
                service_name: s("nope"),
                ..q()
            },
        ),
        (
            "quote in value",
            TraceQuery {
                annotation_query: vec![("env".into(), s("x'y\\"))],
                ..q()
            },
        ),
    ]
}

fn ids(traces: &[Vec<Span>]) -> Vec<(u64, u64)> {
    traces
        .iter()
        .map(|t| (t[0].trace_id.high, t[0].trace_id.low))
        .collect()
}

fn reads_equal_the_in_memory_answers(b: &Backend) {
    let data = dataset();
    assert!(data.len() > 250, "{} spans", data.len());
    let w = common::open(&b.url(0, "spans_read"));
    write_all(w.spans(), &data);
    // Read through the other server: the data is the cluster's, not the writer node's.
    let r = common::open(&b.url(1, "spans_read"));
    let store = r.spans();
    let traces = by_trace(&data);

    assert_traces_and_searches_equal(store, &data);

    // Names, lower-cased.
    let uniq: Vec<&Span> = traces.values().flatten().collect();
    let lc = |o: Option<&str>| o.map(str::to_lowercase);
    let services: BTreeSet<String> = uniq.iter().filter_map(|s| lc(s.local_service())).collect();
    assert_eq!(
        store.service_names().unwrap(),
        services.iter().cloned().collect::<Vec<_>>()
    );
    for svc in services.iter().chain([&"nope".to_string()]) {
        let of = |s: &&&Span| lc(s.local_service()).as_ref() == Some(svc);
        let remotes: BTreeSet<String> = uniq
            .iter()
            .filter(of)
            .filter_map(|s| lc(s.remote_service()))
            .collect();
        let names: BTreeSet<String> = uniq
            .iter()
            .filter(of)
            .filter_map(|s| lc(s.name.as_deref()))
            .collect();
        assert_eq!(
            store.remote_service_names(&svc.to_uppercase()).unwrap(),
            remotes.into_iter().collect::<Vec<_>>(),
            "remotes of {svc}"
        );
        assert_eq!(
            store.span_names(svc).unwrap(),
            names.into_iter().collect::<Vec<_>>(),
            "span names of {svc}"
        );
    }

    // Autocomplete.
    let keys: BTreeSet<String> = uniq.iter().flat_map(|s| s.tags.keys().cloned()).collect();
    assert_eq!(
        store.autocomplete_keys().unwrap(),
        keys.into_iter().collect::<Vec<_>>()
    );
    let envs: BTreeSet<String> = uniq
        .iter()
        .filter_map(|s| s.tags.get("env").cloned())
        .collect();
    assert_eq!(
        store.autocomplete_values("env").unwrap(),
        envs.into_iter().collect::<Vec<_>>()
    );
    assert!(store.autocomplete_values("it's").unwrap().is_empty());

    // Scan: each stored span once, inside the window only.
    // The window holds the retried middle batch's spans.
    let (lo, hi) = (BASE_US + 3 * MINUTE_US, BASE_US + 11 * MINUTE_US);
    let mut got: Vec<Span> = Vec::new();
    store.scan(lo, hi, &mut |s| got.push(s.clone())).unwrap();
    let want: Vec<Span> = uniq
        .iter()
        .filter(|s| s.timestamp.is_some_and(|t| t >= lo && t <= hi))
        .map(|s| (*s).clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(sorted(got), sorted(want));
}

/// Trace by id (every trace, and one never written) and every search case equal the
/// in-memory answers over `data`.
fn assert_traces_and_searches_equal(store: &dyn SpanReader, data: &[Span]) {
    let traces = by_trace(data);
    // Trace by id, both widths, duplicates gone, every field as written.
    for ((high, low), want) in &traces {
        let id = TraceId {
            high: *high,
            low: *low,
            is_128: *high != 0,
        };
        let got = store.trace(&id).unwrap();
        assert_eq!(sorted(got), sorted(want.clone()), "trace {id}");
    }
    assert!(store
        .trace(&TraceId {
            high: 1,
            low: 2,
            is_128: true
        })
        .unwrap()
        .is_empty());

    // Search, each filter kind.
    for (name, query) in cases() {
        let want = expected_search(data, &query);
        eprintln!("search {name:?}: {} traces", want.len());
        // The data set is built so every filter selects some traces but not all; the
        // cases that must find nothing say so in their name.
        let empty_expected = name == "no match" || name == "quote in value";
        assert_eq!(want.is_empty(), empty_expected, "case {name:?} is vacuous");
        let got = store.find_traces(&query).unwrap();
        assert_eq!(ids(&got), want, "search {name:?}");
        for t in &got {
            let k = (t[0].trace_id.high, t[0].trace_id.low);
            assert_eq!(
                sorted(t.clone()),
                sorted(traces[&k].clone()),
                "search {name:?}: {k:?}"
            );
        }
    }
}

fn a_database_without_the_trace_index_is_upgraded_and_reads_the_same(b: &Backend) {
    let data = dataset();
    let address = b.url(0, "spans_upgrade");
    let url = StorageUrl::parse(&address).unwrap();
    let client = Client::new(&url, ClientOptions::default()).unwrap();
    let schema = Schema::new(&url);
    // A version-2 database, as the previous meshlens created and wrote it: spans unindexed.
    assert_eq!(schema.ensure_up_to(&client, 2).unwrap(), 0);
    let third = data.len() / 3;
    for batch in [&data[..third], &data[third..2 * third], &data[2 * third..]] {
        testing::write_spans_unindexed(&client, &schema, batch).unwrap();
    }
    assert_eq!(schema.stored_version(&client).unwrap(), 2);
    let index_table = format!("spans_upgrade.{}", b.local("trace_index"));
    assert_eq!(
        b.sql(0, &format!("EXISTS TABLE {index_table}")).trim(),
        "0",
        "a version-2 database has no trace index"
    );
    // A start that died inside step 3 (after its backfill, before recording it), then a
    // start that finishes it: the backfill runs twice, and reads are still exact.
    schema.apply_step(&client, 3).unwrap();
    assert_eq!(schema.stored_version(&client).unwrap(), 2);
    let s = common::open(&address);
    assert_eq!(
        s.schema().stored_version(s.client()).unwrap(),
        SCHEMA_VERSION
    );
    let indexed: u64 = b
        .sql(0, "SELECT count() FROM spans_upgrade.trace_index")
        .trim()
        .parse()
        .unwrap();
    assert!(indexed >= data.len() as u64, "{indexed} index rows");
    assert_traces_and_searches_equal(s.spans(), &data);
    // Spans written after the upgrade are found alongside the old ones.
    let mut late = data[..40].to_vec();
    for sp in &mut late {
        sp.trace_id.low ^= 0x5555;
    }
    s.spans().write(&late).unwrap();
    let all: Vec<Span> = data.iter().chain(&late).cloned().collect();
    assert_traces_and_searches_equal(s.spans(), &all);
}

fn dependencies_equal_the_in_memory_links(b: &Backend) {
    let data = dataset();
    let s = common::open(&b.url(1, "spans_deps"));
    write_all(s.spans(), &data);
    let end_ms = ((BASE_US + TRACES * MINUTE_US) / 1000) as i64;
    let windows = [
        (end_ms, 0),
        (end_ms, 3_600_000),
        (((BASE_US + 5 * MINUTE_US) / 1000) as i64, 3 * 60_000),
        (((BASE_US - MINUTE_US) / 1000) as i64, 60_000),
    ];
    for (end_ts, lookback) in windows {
        let lo = if lookback <= 0 {
            0
        } else {
            (end_ts - lookback) as u64 * 1000
        };
        let hi = end_ts as u64 * 1000 + 999;
        let want = expected_links(&data, lo, hi);
        let got = s.spans().dependencies(end_ts, lookback).unwrap();
        eprintln!("links ending {end_ts} back {lookback}: {want:?}");
        assert_eq!(got, want, "window ending {end_ts} back {lookback}");
        if lookback == 0 {
            // The data set has errors, shared spans and uninstrumented callees: the whole
            // window shows all of them.
            assert!(want.iter().any(|l| l.error_count > 0), "{want:?}");
            assert!(want.iter().any(|l| l.child == "ext-payments"), "{want:?}");
            // Servers under spans without kind: the caller is the nearest ancestor with one.
            let link = |p: &str, c: &str| want.iter().find(|l| l.parent == p && l.child == c);
            assert!(link("frontend", "catalog").is_some(), "{want:?}");
            assert!(link("catalog", "db").is_some(), "{want:?}");
            assert!(link("search", "catalog").is_none(), "{want:?}");
            assert!(link("lib", "db").is_none(), "{want:?}");
            assert!(link("catalog", "auth").is_some(), "{want:?}");
        }
    }
}

/// The durable write path inserts at-least-once: a drainer that crashed before moving its
/// cursor sends a whole batch again, and a batch that reached one shard but not the other
/// is retried whole. Every read must still see each span once.
fn a_retried_span_batch_does_not_duplicate_results(b: &Backend) {
    let data = dataset();
    let s = common::open(&b.url(0, "spans_retry"));
    s.spans().write(&data).unwrap();
    // The same batch again from a fresh process, and half of it a third time.
    let s2 = common::open(&b.url(1, "spans_retry"));
    s2.spans().write(&data).unwrap();
    s2.spans().write(&data[..data.len() / 2]).unwrap();
    let stored = b.sql(0, "SELECT count() FROM spans_retry.spans");
    assert!(stored.trim().parse::<usize>().unwrap() >= 2 * data.len());

    let store = s.spans();
    let traces = by_trace(&data);
    for ((high, low), want) in &traces {
        let id = TraceId {
            high: *high,
            low: *low,
            is_128: *high != 0,
        };
        assert_eq!(
            sorted(store.trace(&id).unwrap()),
            sorted(want.clone()),
            "trace {id}"
        );
    }
    for (name, query) in cases() {
        let got = store.find_traces(&query).unwrap();
        assert_eq!(ids(&got), expected_search(&data, &query), "search {name:?}");
        for t in &got {
            let k = (t[0].trace_id.high, t[0].trace_id.low);
            assert_eq!(sorted(t.clone()), sorted(traces[&k].clone()), "{name:?}");
        }
    }
    let end_ms = ((BASE_US + TRACES * MINUTE_US) / 1000) as i64;
    for (end_ts, lookback) in [
        (end_ms, 0),
        (((BASE_US + 5 * MINUTE_US) / 1000) as i64, 180_000),
    ] {
        let lo = if lookback <= 0 {
            0
        } else {
            (end_ts - lookback) as u64 * 1000
        };
        let hi = end_ts as u64 * 1000 + 999;
        assert_eq!(
            store.dependencies(end_ts, lookback).unwrap(),
            expected_links(&data, lo, hi),
            "links ending {end_ts} back {lookback}"
        );
    }
    // Scans and the parts built on them (statistics) count each span once.
    let uniq: Vec<Span> = traces.values().flatten().cloned().collect();
    let mut scanned = Vec::new();
    store
        .scan(0, u64::MAX, &mut |s| scanned.push(s.clone()))
        .unwrap();
    let with_time: Vec<Span> = uniq
        .iter()
        .filter(|s| s.timestamp.is_some())
        .cloned()
        .collect();
    assert_eq!(sorted(scanned), sorted(with_time.clone()));
    let mut in_parts = 0usize;
    let p = meshlens_model::projection::Projection {
        start_us: 0,
        end_us: u64::MAX,
        tags: &[],
        tag_prefixes: &[],
        service: None,
    };
    for part in store.parts(0, u64::MAX).unwrap() {
        part.scan(&p, &mut |_| in_parts += 1).unwrap();
    }
    assert_eq!(in_parts, with_time.len());
}

#[test]
fn rows_are_on_both_shards_and_no_trace_is_split() {
    let Some(c) = common::cluster() else { return };
    let data = dataset();
    let s = common::open(&c.storage_url(0, "spans_shards"));
    s.spans().write(&data).unwrap();
    let mut per_node: Vec<BTreeSet<(u64, u64)>> = Vec::new();
    let mut rows = 0usize;
    for node in &c.nodes {
        let out = node
            .sql("SELECT trace_id_high, trace_id_low FROM spans_shards.spans_local")
            .unwrap();
        let lines = common::tsv(&out);
        rows += lines.len();
        per_node.push(
            lines
                .iter()
                .map(|f| (f[0].parse().unwrap(), f[1].parse().unwrap()))
                .collect(),
        );
    }
    assert_eq!(rows, data.len(), "every span stored once");
    assert!(per_node.iter().all(|n| !n.is_empty()), "{per_node:?}");
    assert!(
        per_node[0].is_disjoint(&per_node[1]),
        "a trace is on both shards"
    );
    let all: BTreeSet<(u64, u64)> = by_trace(&data).into_keys().collect();
    let union: BTreeSet<(u64, u64)> = per_node[0].union(&per_node[1]).copied().collect();
    assert_eq!(union, all);
    // Each trace is where its low half sends it (Distributed: key modulo shard count).
    let counts: HashMap<usize, usize> = per_node.iter().map(BTreeSet::len).enumerate().collect();
    assert_eq!(counts.values().sum::<usize>(), all.len());
}

/// The embedded store, holding the same writes: the answers must be the same.
fn embedded(data: &[Span]) -> (tempfile::TempDir, meshlens_spanstore::SpanStore) {
    let dir = tempfile::tempdir().unwrap();
    let opts = meshlens_spanstore::SpanStoreOptions {
        // The data lies in the past; keep it whatever today's date is.
        retention_ms: 100 * 366 * 24 * 3600 * 1000,
        fsync: false,
        ..Default::default()
    };
    let store = meshlens_spanstore::SpanStore::open(dir.path(), opts).unwrap();
    write_all(&store, data);
    (dir, store)
}

fn answers_equal_the_embedded_store(b: &Backend) {
    let data = dataset();
    let ch = common::open(&b.url(0, "spans_vs_embedded"));
    write_all(ch.spans(), &data);
    let (_dir, emb) = embedded(&data);
    let ch = ch.spans();
    for id in by_trace(&data).keys() {
        let id = TraceId {
            high: id.0,
            low: id.1,
            is_128: id.0 != 0,
        };
        assert_eq!(
            ch.trace(&id).unwrap(),
            emb.trace(&id).unwrap(),
            "trace {id}"
        );
    }
    for (name, query) in cases() {
        let want = emb.find_traces(&query).unwrap();
        let got = ch.find_traces(&query).unwrap();
        assert_eq!(ids(&got), ids(&want), "search {name:?}");
        assert_eq!(got, want, "search {name:?}");
    }
    let services = emb.service_names().unwrap();
    assert_eq!(ch.service_names().unwrap(), services);
    for svc in &services {
        assert_eq!(
            ch.remote_service_names(svc).unwrap(),
            emb.remote_service_names(svc).unwrap(),
            "remotes of {svc}"
        );
        assert_eq!(
            ch.span_names(svc).unwrap(),
            emb.span_names(svc).unwrap(),
            "span names of {svc}"
        );
    }
    assert_eq!(
        ch.autocomplete_keys().unwrap(),
        emb.autocomplete_keys().unwrap()
    );
    for k in ["env", "http.status_code", "nope"] {
        assert_eq!(
            ch.autocomplete_values(k).unwrap(),
            emb.autocomplete_values(k).unwrap(),
            "values of {k}"
        );
    }
    let end_ms = ((BASE_US + TRACES * MINUTE_US) / 1000) as i64;
    for (end_ts, lookback) in [
        (end_ms, 0),
        (((BASE_US + 5 * MINUTE_US) / 1000) as i64, 180_000),
    ] {
        assert_eq!(
            ch.dependencies(end_ts, lookback).unwrap(),
            emb.dependencies(end_ts, lookback).unwrap(),
            "links ending {end_ts} back {lookback}"
        );
    }
}

fn hostile_queries_are_answered_not_failed(b: &Backend) {
    let data = dataset();
    let s = common::open(&b.url(1, "spans_hostile"));
    s.spans().write(&data[..50]).unwrap();
    s.spans().write(&[]).unwrap();
    let store = s.spans();
    let odd = "x'\\\n\t\"; DROP TABLE spans --ü";
    let queries = [
        TraceQuery {
            limit: usize::MAX,
            ..q()
        },
        TraceQuery {
            end_ts: i64::MIN,
            lookback: i64::MAX,
            ..q()
        },
        TraceQuery {
            end_ts: i64::MAX,
            lookback: i64::MIN,
            ..q()
        },
        TraceQuery {
            min_duration: Some(u64::MAX),
            max_duration: Some(0),
            ..q()
        },
        TraceQuery {
            service_name: Some(odd.into()),
            remote_service_name: Some(odd.into()),
            span_name: Some(odd.into()),
            annotation_query: vec![(odd.into(), Some(odd.into())), (odd.into(), None)],
            ..q()
        },
    ];
    for query in queries {
        let got = store.find_traces(&query).unwrap();
        if query.limit == usize::MAX {
            assert_eq!(got.len(), by_trace(&data[..50]).len());
        }
    }
    assert!(store.remote_service_names(odd).unwrap().is_empty());
    assert!(store.span_names(odd).unwrap().is_empty());
    assert!(store.autocomplete_values(odd).unwrap().is_empty());
    assert!(store.dependencies(i64::MIN, i64::MAX).unwrap().is_empty());
    store.dependencies(i64::MAX, i64::MIN).unwrap();
    let mut n = 0;
    store.scan(u64::MAX, 0, &mut |_| n += 1).unwrap();
    store.scan(0, u64::MAX, &mut |_| n += 1).unwrap();
    assert_eq!(n, 50);
    // The odd strings were data, not SQL: the table is still there.
    assert!(!store.trace(&data[0].trace_id).unwrap().is_empty());
}

fn span_queries_obey_the_row_limit(b: &Backend) {
    let data = dataset();
    let url = b.url(0, "spans_limit");
    common::open(&url).spans().write(&data).unwrap();
    let opts = meshlens_clickhouse::StorageOptions {
        max_rows_to_read: 10,
        ..Default::default()
    };
    let s = common::open_with(&url, opts);
    let e = s.spans().find_traces(&q()).unwrap_err();
    assert!(
        matches!(
            e,
            meshlens_model::StorageError::TooManySamples { limit: 10 }
        ),
        "{e:?}"
    );
    let e = s.spans().dependencies(i64::MAX, 0).unwrap_err();
    assert!(
        matches!(
            e,
            meshlens_model::StorageError::TooManySamples { limit: 10 }
        ),
        "{e:?}"
    );
}

on_both!(
    reads_equal_the_in_memory_answers,
    dependencies_equal_the_in_memory_links,
    a_database_without_the_trace_index_is_upgraded_and_reads_the_same,
    a_retried_span_batch_does_not_duplicate_results,
    answers_equal_the_embedded_store,
    hostile_queries_are_answered_not_failed,
    span_queries_obey_the_row_limit,
);
