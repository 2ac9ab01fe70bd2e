//! Per-edge aggregates of Istio's metrics, maintained at ingest, so a graph over any window
//! reads O(edges x buckets) cells instead of re-reading every raw sample through PromQL.
//!
//! Fed with every batch the tenant's TSDB accepted ([`AggregatingWriter`]), the store keeps
//! each Istio series' last value and adds the increase between consecutive samples into
//! time buckets of the edge the graph folds it into: the identity labels (pods merged),
//! plus the response code and mTLS policy for requests, the bound for duration buckets
//! (per bucket, not cumulative) and the direction for TCP bytes. Two resolutions, 15 s and
//! 5 m buckets, each with its own retention. A graph sums the buckets covering its window
//! and hands the same folding and assembly as the PromQL path the result.
//!
//! After a restart the store rebuilds itself from the TSDB ([`EdgeAggregates::rebuild`]);
//! the live feed takes only samples newer than the moment the store was made, the rebuild
//! those up to it, and the increase between the two is bridged at the end. Until then,
//! for a window beyond the retention, or for trace graphs, the PromQL path serves and the
//! answer says why (`computedFrom`, `fallbackReason`).
//!
//! Memory: per edge and resolution, a ring of `retention / step` buckets with a bit each
//! (written or not) and a 4-byte `f32` cell per figure that was ever non-zero, allocated
//! in pages of 32 buckets as they are written; plus about 50 bytes per series for its last
//! value. [`EdgeAggregates::stats`] reports it.

mod keys;
mod rebuild;
mod ring;
mod track;
mod writer;

use std::sync::atomic::{AtomicU32, Ordering};

use std::borrow::Cow;

use meshlens_model::{Labels, RawSeries, Sample, TimeSeries, METRIC_NAME};
use parking_lot::Mutex;

use self::keys::{Dict, FieldKind, Metric, SeriesHashes};
use self::ring::bucket_of;
use self::track::{Edges, Feed, Res, Resolutions, Table};
use super::fold::{fold, Figure, Group};
use super::{EdgeMap, GraphQuery};
use crate::fx::FxMap;

pub use rebuild::RebuildReport;
pub use writer::AggregatingWriter;

/// Width of the fine buckets.
pub const FINE_STEP_MS: i64 = 15_000;
/// Width of the coarse buckets.
pub const COARSE_STEP_MS: i64 = 300_000;
/// Samples further ahead of the clock than this are not aggregated (a wrong clock must
/// not overwrite the ring's oldest buckets); the TSDB still stores them.
const FUTURE_GRACE_MS: i64 = 300_000;
/// A window may start this much before the retention: "the last hour", asked with an end
/// a little in the past, still reads 15 s buckets. The rings hold the extra buckets.
const PAST_GRACE_MS: i64 = 300_000;
/// Independent locks: ingest threads and a graph read contend on 1/SHARDS of the edges.
const SHARDS: usize = 32;
/// The longest retention accepted, as the longest graph window.
const MAX_RETENTION_MS: i64 = crate::params::MAX_WINDOW_MS;

/// How much the aggregates keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AggregatesOptions {
    /// How long 15 s buckets are kept: windows starting within it are served exactly.
    pub fine_retention_ms: i64,
    /// How long 5 m buckets are kept: longer windows are served snapped to 5 minutes.
    pub coarse_retention_ms: i64,
    /// A rebuild reads storage in slices this long (bounds its memory).
    pub rebuild_slice_ms: i64,
}

impl Default for AggregatesOptions {
    fn default() -> Self {
        AggregatesOptions {
            fine_retention_ms: 3_600_000,
            coarse_retention_ms: 24 * 3_600_000,
            rebuild_slice_ms: 15 * 60_000,
        }
    }
}

/// Options the aggregates cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregatesError {
    #[error("{name} must be between {min_ms} ms and {max_ms} ms, not {got_ms} ms")]
    OutOfRange {
        name: &'static str,
        min_ms: i64,
        max_ms: i64,
        got_ms: i64,
    },
}

impl AggregatesOptions {
    pub fn validate(&self) -> Result<(), AggregatesError> {
        let check = |name, got_ms, min_ms, max_ms| {
            if (min_ms..=max_ms).contains(&got_ms) {
                Ok(())
            } else {
                Err(AggregatesError::OutOfRange {
                    name,
                    min_ms,
                    max_ms,
                    got_ms,
                })
            }
        };
        check(
            "fine retention",
            self.fine_retention_ms,
            FINE_STEP_MS,
            MAX_RETENTION_MS,
        )?;
        check(
            "coarse retention",
            self.coarse_retention_ms,
            COARSE_STEP_MS,
            MAX_RETENTION_MS,
        )?;
        check(
            "rebuild slice",
            self.rebuild_slice_ms,
            FINE_STEP_MS,
            MAX_RETENTION_MS,
        )
    }

    fn resolutions(&self) -> Resolutions {
        let res = |step: i64, retention: i64| Res {
            step,
            retention,
            // The retention and its grace, the buckets a skewed clock may write ahead, and
            // the two partial buckets at the ends of a window.
            cap: ((retention + PAST_GRACE_MS + FUTURE_GRACE_MS) / step + 2) as usize,
        };
        Resolutions {
            fine: res(FINE_STEP_MS, self.fine_retention_ms),
            coarse: res(COARSE_STEP_MS, self.coarse_retention_ms),
        }
    }
}

/// Whether the aggregates can serve a graph yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Reading the retention back from storage; `percent` done.
    Rebuilding { percent: u32 },
    /// Every accepted sample after `since_ms` is counted (`i64::MIN`: since the store
    /// began, nothing was there before).
    Ready { since_ms: i64 },
    /// The rebuild failed; graphs keep using PromQL.
    Failed { reason: String },
}

/// Size of the aggregates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggregatesStats {
    pub edges: usize,
    pub series: usize,
    /// Figures over all edges (codes, bounds, TCP directions).
    pub figures: usize,
    /// Figures holding a row of cells, per resolution.
    pub rows_fine: usize,
    pub rows_coarse: usize,
    /// Estimated heap bytes in all.
    pub bytes: usize,
}

/// One shard: its edges, the live per-series state, and the bridge to a pending rebuild.
#[derive(Default)]
struct Shard {
    edges: Edges,
    live: Table,
    /// While a rebuild is pending, samples up to the store's creation are the rebuild's.
    pending: bool,
    /// The first live sample of each series seen while the rebuild is pending.
    firsts: FxMap<u64, (i64, f64)>,
}

/// The per-edge aggregates of one tenant. Send + Sync; ingest and reads lock one shard at
/// a time.
pub struct EdgeAggregates {
    opts: AggregatesOptions,
    res: Resolutions,
    dict: Dict,
    shards: Box<[Mutex<Shard>]>,
    /// Samples at or before this time are the rebuild's (creation time).
    cut_ms: i64,
    readiness: Mutex<Readiness>,
    progress: AtomicU32,
}

/// Which buckets serve a window, and the window they cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    fine: bool,
    /// Buckets `(lo, hi]`.
    lo: u32,
    hi: u32,
    pub start_ms: i64,
    pub end_ms: i64,
    pub resolution_ms: i64,
}

impl EdgeAggregates {
    /// A store for a TSDB that may already hold data: it counts live samples newer than
    /// now, and serves graphs once [`rebuild`](Self::rebuild) has read the rest back.
    pub fn new(opts: AggregatesOptions) -> Result<EdgeAggregates, AggregatesError> {
        Self::make(opts, true, meshlens_model::time::now_ms())
    }

    /// A store for data that starts empty (a new TSDB, a test, a benchmark): every sample
    /// it will see is fed to it, so it is ready at once.
    pub fn empty(opts: AggregatesOptions) -> Result<EdgeAggregates, AggregatesError> {
        Self::make(opts, false, i64::MIN)
    }

    fn make(
        opts: AggregatesOptions,
        pending: bool,
        cut_ms: i64,
    ) -> Result<EdgeAggregates, AggregatesError> {
        opts.validate()?;
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    pending,
                    ..Shard::default()
                })
            })
            .collect();
        Ok(EdgeAggregates {
            res: opts.resolutions(),
            opts,
            dict: Dict::default(),
            shards,
            cut_ms,
            readiness: Mutex::new(if pending {
                Readiness::Rebuilding { percent: 0 }
            } else {
                Readiness::Ready { since_ms: i64::MIN }
            }),
            progress: AtomicU32::new(0),
        })
    }

    pub fn options(&self) -> &AggregatesOptions {
        &self.opts
    }

    pub fn readiness(&self) -> Readiness {
        match &*self.readiness.lock() {
            Readiness::Rebuilding { .. } => Readiness::Rebuilding {
                percent: self.progress.load(Ordering::Relaxed),
            },
            r => r.clone(),
        }
    }

    fn shard_of(&self, h: &SeriesHashes) -> usize {
        (h.edge % self.shards.len() as u64) as usize
    }

    /// Takes a batch the TSDB accepted: only Istio's request, duration and TCP series are
    /// read; the rest is skipped after one label lookup.
    pub fn observe(&self, batch: &[TimeSeries]) {
        self.observe_series(batch)
    }

    /// As [`Self::observe`], for series as remote write sent them: labels are built only
    /// for a series the aggregates have not seen yet.
    pub fn observe_raw(&self, batch: &[RawSeries<'_>]) {
        self.observe_series(batch)
    }

    fn observe_series<S: Observed>(&self, batch: &[S]) {
        let max_t = meshlens_model::time::now_ms().saturating_add(FUTURE_GRACE_MS);
        let mut work: Vec<(usize, usize, SeriesHashes, Metric)> = batch
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.samples().is_empty())
            .filter_map(|(i, s)| {
                let (m, h) = s.key()?;
                Some((self.shard_of(&h), i, h, m))
            })
            .collect();
        if work.is_empty() {
            return;
        }
        // One lock per shard per batch; bucket series in bound order within a pod's
        // histogram, so telescoping rarely has to owe.
        work.sort_by_key(|w| (w.0, w.1));
        for run in work.chunk_by(|a, b| a.0 == b.0) {
            let mut guard = self.shards[run[0].0].lock();
            let Shard {
                edges,
                live,
                pending,
                firsts,
            } = &mut *guard;
            let mut feed = Feed {
                res: &self.res,
                edges,
                min_t: if *pending { self.cut_ms } else { i64::MIN },
                max_t,
                firsts: if *pending { Some(firsts) } else { None },
            };
            // Every series of the run has state before any sample is taken: a bucket's
            // increase must see the next bound's series even when both are new.
            let usable: Vec<bool> = run
                .iter()
                .map(|(_, i, h, m)| {
                    live.ensure(&mut feed, h, *m, || batch[*i].labels(), &self.dict)
                })
                .collect();
            let items: Vec<(u64, &[meshlens_model::Sample])> = run
                .iter()
                .zip(usable)
                .filter(|(_, ok)| *ok)
                .map(|((_, i, h, _), _)| (h.series, batch[*i].samples()))
                .collect();
            live.push_batch(&mut feed, &items);
        }
    }

    /// Sizes and an estimate of the heap held.
    pub fn stats(&self) -> AggregatesStats {
        let mut st = AggregatesStats {
            bytes: std::mem::size_of::<Self>(),
            ..AggregatesStats::default()
        };
        for shard in self.shards.iter() {
            let s = shard.lock();
            st.edges += s.edges.list.len();
            st.series += s.live.series.len();
            for e in &s.edges.list {
                st.figures += e.fields.len();
                st.rows_fine += e.fine.allocated_rows();
                st.rows_coarse += e.coarse.allocated_rows();
            }
            st.bytes += s.edges.bytes() + s.live.bytes() + s.firsts.capacity() * 25;
        }
        st
    }

    /// The buckets that serve the window `(end - window, end]` at `now`, or why none can.
    pub(crate) fn plan(&self, q: &GraphQuery, now_ms: i64) -> Result<Plan, String> {
        let since = match self.readiness() {
            Readiness::Ready { since_ms } => since_ms,
            Readiness::Rebuilding { percent } => {
                return Err(format!(
                    "the graph aggregates are being rebuilt from storage ({percent}% done)"
                ))
            }
            Readiness::Failed { reason } => {
                return Err(format!("rebuilding the graph aggregates failed: {reason}"))
            }
        };
        let start = q.end_ms.saturating_sub(q.window_ms);
        let mut why = None;
        for (fine, r) in [(true, self.res.fine), (false, self.res.coarse)] {
            let (Some(lo), Some(hi)) = (bucket_of(start, r.step), bucket_of(q.end_ms, r.step))
            else {
                continue;
            };
            let eff_start = i64::from(lo) * r.step;
            let eff_end = (i64::from(hi) * r.step).min(q.end_ms.max(now_ms));
            if hi <= lo {
                why.get_or_insert(format!(
                    "the window is shorter than the aggregates' {} s buckets",
                    r.step / 1000
                ));
                continue;
            }
            if eff_start < now_ms - r.retention - PAST_GRACE_MS {
                why = Some(format!(
                    "the window starts before the graph aggregates' retention ({} of 15 s \
                     buckets, {} of 5 m buckets)",
                    human(self.res.fine.retention),
                    human(self.res.coarse.retention)
                ));
                continue;
            }
            if eff_start < since {
                why = Some(
                    "the window starts before the graph aggregates were first fed".to_string(),
                );
                continue;
            }
            return Ok(Plan {
                fine,
                lo,
                hi,
                start_ms: eff_start,
                end_ms: eff_end.max(eff_start + 1),
                resolution_ms: r.step,
            });
        }
        Err(why.unwrap_or_else(|| "the window is outside the graph aggregates".to_string()))
    }

    /// The edges over a planned window, folded for the graph type as the PromQL path does.
    pub(crate) fn edges(&self, plan: &Plan, gt: super::GraphType) -> EdgeMap {
        let sums = self.sums(plan);
        let dict = self.dict.snapshot();
        let mut groups = Vec::with_capacity(sums.len());
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for e in &sums {
            let mut figures = Vec::with_capacity(e.fields.len());
            buckets.clear();
            for (f, v) in e.fields.iter().zip(&e.sums) {
                match f.kind() {
                    FieldKind::Requests { code, mtls } => {
                        let code = dict.codes.get(code as usize).map_or("0", |c| &**c);
                        figures.push((Figure::Requests { code, mtls }, *v));
                    }
                    FieldKind::Bucket { le } => {
                        if let Some(le) = dict.les.get(le as usize) {
                            buckets.push((*le, *v));
                        }
                    }
                    FieldKind::TcpSent => figures.push((Figure::TcpSent, *v)),
                    FieldKind::TcpReceived => figures.push((Figure::TcpReceived, *v)),
                }
            }
            // Per-bucket counts back to Prometheus's cumulative form.
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut running = 0.0;
            for (le, v) in &buckets {
                running += v;
                figures.push((Figure::Bucket { le: *le }, running));
            }
            groups.push(Group {
                labels: &e.identity,
                figures,
            });
        }
        fold(&groups, gt)
    }

    /// Each edge with data in the window: its figures' sums. Shards are summed in
    /// parallel, each under its own lock.
    fn sums(&self, plan: &Plan) -> Vec<EdgeSums> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let per = self.shards.len().div_ceil(threads);
        let parts: Vec<Vec<EdgeSums>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .shards
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for shard in chunk {
                            let sh = shard.lock();
                            for e in &sh.edges.list {
                                let ring = if plan.fine { &e.fine } else { &e.coarse };
                                let mut sums = vec![0.0; e.fields.len()];
                                if ring.sum(plan.lo, plan.hi, &mut sums) {
                                    out.push(EdgeSums {
                                        identity: e.identity.clone(),
                                        fields: e.fields.clone(),
                                        sums,
                                    });
                                }
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        parts.into_iter().flatten().collect()
    }
}

struct EdgeSums {
    identity: std::sync::Arc<meshlens_model::Labels>,
    fields: Vec<keys::FieldId>,
    sums: Vec<f64>,
}

/// `1h`, `24h`, `90m`, `45s`: a retention as the flags spell it.
fn human(ms: i64) -> String {
    if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// A series as the aggregates take it: its metric and hashes first, its labels only when
/// the aggregates meet the series for the first time.
trait Observed {
    fn key(&self) -> Option<(Metric, SeriesHashes)>;
    fn labels(&self) -> Cow<'_, Labels>;
    fn samples(&self) -> &[Sample];
}

impl Observed for TimeSeries {
    fn key(&self) -> Option<(Metric, SeriesHashes)> {
        Some((Metric::of(&self.labels)?, SeriesHashes::of(&self.labels)))
    }

    fn labels(&self) -> Cow<'_, Labels> {
        Cow::Borrowed(&self.labels)
    }

    fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

impl Observed for RawSeries<'_> {
    /// Senders' labels are sorted, so the pairs are hashed as they came; a series in
    /// another order is normalised first, as `Labels` would hold it.
    fn key(&self) -> Option<(Metric, SeriesHashes)> {
        // The name as `Labels` would keep it: the last one sent.
        let name = self.labels.iter().rev().find(|(n, _)| *n == METRIC_NAME)?.1;
        let metric = Metric::named(name)?;
        if self.is_normalised() {
            Some((metric, SeriesHashes::of_pairs(self.labels.iter().copied())))
        } else {
            let labels = self.to_labels();
            Some((Metric::of(&labels)?, SeriesHashes::of(&labels)))
        }
    }

    fn labels(&self) -> Cow<'_, Labels> {
        Cow::Owned(self.to_labels())
    }

    fn samples(&self) -> &[Sample] {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use meshlens_model::{Labels, MetricWriter, Sample, TimeSeries};

    use super::*;
    use crate::graph::{GraphSource, GraphType};

    const STEP: i64 = 15_000;

    fn series(name: &str, pod: &str, extra: &[(&str, &str)]) -> Labels {
        let mut l = vec![
            ("__name__", name),
            ("reporter", "destination"),
            ("destination_app", "reviews"),
            ("source_app", "productpage"),
            ("pod", pod),
        ];
        l.extend_from_slice(extra);
        Labels::from_pairs(l)
    }

    /// Istio series for one edge: requests on two pods (one restarts, one appears late, one
    /// goes away), a histogram of three bounds per pod.
    fn batches(start: i64, scrapes: i64) -> Vec<Vec<TimeSeries>> {
        let mut out = Vec::new();
        for i in 0..scrapes {
            let t = start + i * STEP;
            let x = i as f64;
            let mut b = Vec::new();
            let mut push = |l: Labels, v: f64| {
                b.push(TimeSeries {
                    labels: l,
                    samples: vec![Sample::new(t, v)],
                })
            };
            let req = "istio_requests_total";
            let bkt = "istio_request_duration_milliseconds_bucket";
            // Pod a: restarts at scrape 30.
            let a = if i < 30 { 10.0 * x } else { 10.0 * (x - 29.0) };
            push(series(req, "a", &[("response_code", "200")]), a);
            for (le, share) in [("10", 0.5), ("50", 0.9), ("+Inf", 1.0)] {
                push(series(bkt, "a", &[("le", le)]), a * share);
            }
            // Pod b: only in the first 25 scrapes; pod c: from scrape 35 on.
            if i < 25 {
                push(series(req, "b", &[("response_code", "503")]), 2.0 * x);
            }
            if i >= 35 {
                let c = 3.0 * (x - 35.0) + 7.0;
                push(series(req, "c", &[("response_code", "200")]), c);
                for (le, share) in [("10", 0.2), ("50", 0.6), ("+Inf", 1.0)] {
                    push(series(bkt, "c", &[("le", le)]), c * share);
                }
            }
            out.push(b);
        }
        out
    }

    /// Every (edge, figure) sum over the window.
    fn totals(a: &EdgeAggregates, q: &GraphQuery) -> BTreeMap<(String, String), f64> {
        let plan = a.plan(q, meshlens_model::time::now_ms()).expect("covered");
        let mut m = BTreeMap::new();
        for e in a.sums(&plan) {
            for (f, v) in e.fields.iter().zip(&e.sums) {
                m.insert((e.identity.to_string(), format!("{:?}", f.kind())), *v);
            }
        }
        m
    }

    fn query(end: i64, window_ms: i64) -> GraphQuery {
        GraphQuery {
            graph_type: GraphType::Workload,
            window_ms,
            end_ms: end,
            cluster: None,
            namespace: None,
            focus: None,
            source: GraphSource::Metrics,
        }
    }

    /// A restart in the middle: samples up to the store's creation come back from the
    /// TSDB, newer ones live, and the increase across the cut is bridged. The result is the
    /// store that saw everything live.
    #[test]
    fn rebuild_and_live_feed_meet_at_the_cut() {
        let now = meshlens_model::time::now_ms();
        let end = now - now % STEP;
        let scrapes = 60;
        let start = end - (scrapes - 1) * STEP;
        let cut = start + 32 * STEP + 5_000;
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Arc::new(
            meshlens_tsdb::Tsdb::open(
                dir.path(),
                meshlens_tsdb::TsdbOptions {
                    wal_fsync: meshlens_tsdb::FsyncPolicy::Never,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let opts = AggregatesOptions::default();
        let whole = EdgeAggregates::empty(opts).unwrap();
        let restarted = Arc::new(EdgeAggregates::make(opts, true, cut).unwrap());
        let writer = AggregatingWriter::new(tsdb.clone(), restarted.clone());
        for b in batches(start, scrapes) {
            whole.observe(&b);
            if b[0].samples[0].t <= cut {
                tsdb.append(&b).unwrap();
            } else {
                writer.append(&b).unwrap();
            }
        }
        // Samples at or before the cut are the rebuild's: the live feed left them alone.
        let pending = restarted
            .shards
            .iter()
            .map(|s| s.lock().firsts.len())
            .sum::<usize>();
        assert_eq!(
            pending,
            1 + 3 + 1 + 3,
            "a's and c's series, one first sample each"
        );
        assert!(restarted.plan(&query(end, 300_000), now).is_err());
        let report = restarted.rebuild(&*tsdb).unwrap();
        assert_eq!(report.series, 1 + 3 + 1, "a and b, read back");
        assert_eq!(
            restarted.readiness(),
            Readiness::Ready {
                since_ms: report.since_ms
            }
        );
        for window in [5 * 60_000, 14 * 60_000] {
            let (w, r) = (
                totals(&whole, &query(end, window)),
                totals(&restarted, &query(end, window)),
            );
            assert_eq!(w, r, "window {window}");
            assert!(w.values().any(|v| *v > 0.0));
        }
        // A late sample from before the cut, arriving now, changes nothing.
        let before = totals(&restarted, &query(end, 14 * 60_000));
        restarted.observe(&batches(start, 3)[2]);
        assert_eq!(totals(&restarted, &query(end, 14 * 60_000)), before);
        let st = restarted.stats();
        assert_eq!((st.edges, st.series), (1, 1 + 3 + 1 + 1 + 3));
        assert!(st.rows_fine >= 2 && st.bytes > 0, "{st:?}");
    }
}
