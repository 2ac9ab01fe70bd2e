//! Results of range queries kept for their past steps, so a dashboard that repeats a
//! query with a later end evaluates only the steps it has not seen (VictoriaMetrics's
//! rollup result cache, `-search.disableCache` to turn it off; here
//! [`crate::EngineOptions::disable_cache`]).
//!
//! Sound because a range query's value at a step depends only on that step's time and the
//! data at or before it, not on the query's other steps — except through `@ start()` /
//! `@ end()`, and a negative `offset` reads data after the step: queries with either
//! (or any `@`) are never cached. Data may still arrive late, so only steps older than
//! [`SAFETY_OFFSET_MS`] are kept, and older again by one lookback delta when the query has
//! a `smoothed` selector, which reads the first sample after each step ([`lookahead`]); and only steps of the recent past ([`MAX_AGE_MS`]),
//! which is what dashboards look at, while imports and backfills write older data.
//! Entries are per query text, step, step phase and storage; memory is bounded
//! ([`MAX_BYTES`], least recently used entries go first). [`crate::Engine::reset_cache`]
//! empties it, e.g. after data was deleted or backfilled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use meshlens_model::{Sample, SeriesSamples};
use promql_parser::parser::{Expr, Offset, VectorSelector};

use crate::extended_syntax::{extension_of, Extension};

/// Steps newer than this (before the wall clock) are evaluated every time: samples may
/// still arrive for them (VictoriaMetrics's `-search.cacheTimestampOffset` is also 5m).
pub const SAFETY_OFFSET_MS: i64 = 5 * 60 * 1000;

/// Steps older than this are not cached.
pub const MAX_AGE_MS: i64 = 35 * 24 * 3600 * 1000;

/// Most memory all entries may take, estimated from their samples and labels.
pub const MAX_BYTES: usize = 64 << 20;

/// A larger result is not kept: it would push out many dashboards' panels.
const MAX_ENTRY_BYTES: usize = MAX_BYTES / 8;

/// How far after a step (ms) the data that step's value depends on may lie, or `None`
/// when the value depends on the query's other steps (`@`) or reaches a negative offset
/// ahead. Zero for most queries; a `smoothed` selector interpolates towards the first
/// sample after its evaluation time, up to `lookback` ms later (less its offset), so its
/// steps are final only once that much more time has passed. `anchored` looks back only.
pub(crate) fn lookahead(e: &Expr, lookback: i64) -> Option<i64> {
    let shifted = |ahead: i64, o: &Option<Offset>| match o {
        Some(Offset::Neg(_)) => None,
        Some(Offset::Pos(d)) => Some(ahead.saturating_sub(crate::eval::millis(*d)).max(0)),
        None => Some(ahead),
    };
    let selector = |vs: &VectorSelector| {
        let ahead = match extension_of(vs) {
            Some(Extension::Smoothed) => lookback.max(0),
            _ => 0,
        };
        vs.at.is_none().then_some(())?;
        shifted(ahead, &vs.offset)
    };
    match e {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Some(0),
        Expr::Paren(p) => lookahead(&p.expr, lookback),
        Expr::Unary(u) => lookahead(&u.expr, lookback),
        Expr::Binary(b) => Some(lookahead(&b.lhs, lookback)?.max(lookahead(&b.rhs, lookback)?)),
        Expr::Aggregate(a) => {
            let param = match a.param.as_deref() {
                Some(p) => lookahead(p, lookback)?,
                None => 0,
            };
            Some(param.max(lookahead(&a.expr, lookback)?))
        }
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .try_fold(0, |m, a| Some(m.max(lookahead(a, lookback)?))),
        Expr::VectorSelector(vs) => selector(vs),
        Expr::MatrixSelector(ms) => selector(&ms.vs),
        Expr::Subquery(sq) => {
            sq.at.is_none().then_some(())?;
            shifted(lookahead(&sq.expr, lookback)?, &sq.offset)
        }
        Expr::Extension(_) => None,
    }
}

/// What identifies a query's results: its text, its step and where its steps fall on the
/// clock (start modulo step), and the storage it read.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Key {
    pub query: String,
    pub step: i64,
    pub phase: i64,
    pub storage: usize,
}

struct Entry {
    /// First and last step held.
    start: i64,
    end: i64,
    series: Vec<SeriesSamples>,
    warnings: Vec<String>,
    infos: Vec<String>,
    bytes: usize,
    last_used: u64,
}

/// The steps of a query found in the cache.
pub(crate) struct Hit {
    /// Series with their samples from the query's start to the last cached step.
    pub series: Vec<SeriesSamples>,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// The first step still to evaluate.
    pub next: i64,
}

/// The cache's counters, for tests and the server's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Range queries that reused cached steps.
    pub hits: u64,
    /// Cacheable range queries that found nothing to reuse.
    pub misses: u64,
    pub entries: usize,
    pub bytes: usize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    bytes: usize,
    clock: u64,
}

#[derive(Default)]
pub(crate) struct ResultCache {
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ResultCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Entries are replaced whole, so a panic while the lock was held leaves none
        // half-written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached steps of `[start, end]` when the entry for `key` begins at or before
    /// `start` and reaches it.
    pub fn lookup(&self, key: &Key, start: i64, end: i64) -> Option<Hit> {
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        let hit = inner
            .entries
            .get_mut(key)
            .filter(|e| e.start <= start && start <= e.end)
            .map(|e| {
                e.last_used = clock;
                let last = e.end.min(end);
                let series = e
                    .series
                    .iter()
                    .filter_map(|s| {
                        let lo = s.samples.partition_point(|x| x.t < start);
                        let hi = s.samples.partition_point(|x| x.t <= last);
                        (lo < hi).then(|| SeriesSamples {
                            labels: s.labels.clone(),
                            samples: s.samples[lo..hi].to_vec(),
                            histograms: Vec::new(),
                        })
                    })
                    .collect();
                Hit {
                    series,
                    warnings: e.warnings.clone(),
                    infos: e.infos.clone(),
                    next: e.end.saturating_add(key.step),
                }
            });
        drop(inner);
        match hit {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        hit
    }

    /// Keeps the steps `[start, last]` of a query's result (`series` sorted by labels),
    /// unless the entry already held reaches further or the result is too large.
    pub fn store(
        &self,
        key: Key,
        start: i64,
        last: i64,
        series: &[SeriesSamples],
        warnings: &[String],
        infos: &[String],
    ) {
        // Results with native histograms are not kept: the cache slices float samples.
        if last < start || series.iter().any(|s| !s.histograms.is_empty()) {
            return;
        }
        let kept: Vec<SeriesSamples> = series
            .iter()
            .filter_map(|s| {
                let hi = s.samples.partition_point(|x| x.t <= last);
                (hi > 0).then(|| SeriesSamples {
                    labels: s.labels.clone(),
                    samples: s.samples[..hi].to_vec(),
                    histograms: Vec::new(),
                })
            })
            .collect();
        let bytes = 256 + key.query.len() + kept.iter().map(series_bytes).sum::<usize>();
        if bytes > MAX_ENTRY_BYTES {
            return;
        }
        let mut inner = self.lock();
        if inner.entries.get(&key).is_some_and(|e| e.end > last) {
            return;
        }
        inner.clock += 1;
        let entry = Entry {
            start,
            end: last,
            series: kept,
            warnings: warnings.to_vec(),
            infos: infos.to_vec(),
            bytes,
            last_used: inner.clock,
        };
        if let Some(old) = inner.entries.insert(key, entry) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        while inner.bytes > MAX_BYTES {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.bytes;
            }
        }
    }

    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.bytes = 0;
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: inner.entries.len(),
            bytes: inner.bytes,
        }
    }
}

fn series_bytes(s: &SeriesSamples) -> usize {
    let labels: usize = s
        .labels
        .iter()
        .map(|l| l.name.len() + l.value.len() + 48)
        .sum();
    64 + labels + s.samples.len() * std::mem::size_of::<Sample>()
}

/// Cached steps followed by newly evaluated ones: series joined by labels (both lists
/// sorted by labels, every cached sample before every new one).
pub(crate) fn join(cached: Vec<SeriesSamples>, fresh: Vec<SeriesSamples>) -> Vec<SeriesSamples> {
    let mut out = Vec::with_capacity(cached.len().max(fresh.len()));
    let mut fresh = fresh.into_iter().peekable();
    for mut c in cached {
        while let Some(f) = fresh.next_if(|f| f.labels < c.labels) {
            out.push(f);
        }
        if let Some(f) = fresh.next_if(|f| f.labels == c.labels) {
            c.samples.extend(f.samples);
        }
        out.push(c);
    }
    out.extend(fresh);
    out
}

/// `a` followed by the messages of `b` it lacks.
pub(crate) fn union(mut a: Vec<String>, b: Vec<String>) -> Vec<String> {
    for m in b {
        if !a.contains(&m) {
            a.push(m);
        }
    }
    a
}

/// A storage's identity for cache keys: the address of the reader.
pub(crate) fn storage_id(storage: &dyn meshlens_model::MetricReader) -> usize {
    storage as *const dyn meshlens_model::MetricReader as *const () as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_model::Labels;

    fn series(name: &str, ts: &[i64]) -> SeriesSamples {
        SeriesSamples {
            labels: Labels::from_pairs([("x", name)]),
            samples: ts.iter().map(|&t| Sample::new(t, t as f64)).collect(),
            histograms: Vec::new(),
        }
    }

    fn key(q: &str) -> Key {
        Key {
            query: q.into(),
            step: 10,
            phase: 0,
            storage: 1,
        }
    }

    #[test]
    fn at_and_negative_offsets_are_not_cacheable() {
        let ok = |q: &str| lookahead(&crate::parse(q).expect(q), 300_000).is_some();
        assert!(ok("sum(rate(x[5m] offset 1h)) / 2"));
        assert!(ok("max_over_time(sum(rate(x[1m]))[1h:1m] offset 5m)"));
        assert!(!ok("rate(x[5m] @ end())"));
        assert!(!ok("x @ 100"));
        assert!(!ok("sum(x offset -5m)"));
        assert!(!ok("max_over_time(x[1h:1m] @ start())"));
        assert!(!ok("max_over_time(rate(x[5m])[1h:1m] offset -1m)"));
        assert!(!ok("rate(x[5m] smoothed offset -1m)"));
    }

    #[test]
    fn smoothed_selectors_look_one_lookback_ahead() {
        let ahead = |q: &str| lookahead(&crate::parse(q).expect(q), 300_000);
        assert_eq!(ahead("sum(rate(x[5m] offset 1h)) / 2"), Some(0));
        assert_eq!(ahead("rate(x[5m] anchored)"), Some(0));
        assert_eq!(ahead("x smoothed"), Some(300_000));
        assert_eq!(ahead("1 + sum(rate(x[5m] smoothed))"), Some(300_000));
        assert_eq!(ahead("increase(x[5m] offset 2m smoothed)"), Some(180_000));
        assert_eq!(ahead("x offset 1h smoothed"), Some(0));
        assert_eq!(
            ahead("max_over_time(rate(x[5m] smoothed)[1h:1m] offset 1m)"),
            Some(240_000)
        );
        assert_eq!(ahead("x @ 100 smoothed"), None);
    }

    #[test]
    fn lookup_returns_the_overlap_and_the_next_step() {
        let c = ResultCache::default();
        let k = key("q");
        c.store(
            k.clone(),
            0,
            40,
            &[series("a", &[0, 10, 20, 30, 40, 50]), series("b", &[50])],
            &[],
            &[],
        );
        assert!(c.lookup(&k, -10, 100).is_none(), "starts before the entry");
        assert!(c.lookup(&k, 50, 100).is_none(), "starts after it");
        let hit = c.lookup(&k, 10, 100).expect("hit");
        assert_eq!(hit.next, 50);
        assert_eq!(hit.series, vec![series("a", &[10, 20, 30, 40])]);
        let hit = c.lookup(&k, 10, 20).expect("hit");
        assert_eq!(hit.series, vec![series("a", &[10, 20])]);
        assert_eq!(c.stats().hits, 2);
        assert_eq!(c.stats().misses, 2);
        // A shorter result does not replace a longer one.
        c.store(k.clone(), 10, 20, &[series("a", &[10, 20])], &[], &[]);
        assert_eq!(c.lookup(&k, 10, 100).expect("hit").next, 50);
        c.clear();
        assert!(c.lookup(&k, 10, 100).is_none());
    }

    #[test]
    fn memory_is_bounded_and_least_recently_used_entries_go() {
        let c = ResultCache::default();
        let big: Vec<i64> = (0..(MAX_ENTRY_BYTES / 20) as i64).collect();
        let n = MAX_BYTES / (big.len() * 16) + 2;
        for i in 0..n {
            c.store(
                key(&i.to_string()),
                0,
                i64::MAX,
                &[series("a", &big)],
                &[],
                &[],
            );
            // The first entry stays in use.
            assert!(c.lookup(&key("0"), 0, 10).is_some());
        }
        let s = c.stats();
        assert!(s.bytes <= MAX_BYTES, "{s:?}");
        assert!(s.entries < n);
        assert!(c.lookup(&key("0"), 0, 10).is_some());
        assert!(c.lookup(&key("1"), 0, 10).is_none());
        // Too large for one entry: not kept at all.
        let huge: Vec<i64> = (0..(MAX_ENTRY_BYTES / 8) as i64).collect();
        c.store(key("huge"), 0, i64::MAX, &[series("a", &huge)], &[], &[]);
        assert!(c.lookup(&key("huge"), 0, 10).is_none());
    }

    #[test]
    fn join_merges_series_by_labels() {
        let cached = vec![series("a", &[1, 2]), series("c", &[1])];
        let fresh = vec![series("a", &[3]), series("b", &[3]), series("d", &[3])];
        let got = join(cached, fresh);
        assert_eq!(
            got,
            vec![
                series("a", &[1, 2, 3]),
                series("b", &[3]),
                series("c", &[1]),
                series("d", &[3]),
            ]
        );
    }
}
