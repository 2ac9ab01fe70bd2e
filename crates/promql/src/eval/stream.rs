//! Selectors evaluated series by series: storage hands out cursors (`select_lazy`), each
//! series is decoded into a reused buffer, turned into its values at every step of the
//! query in one pass, and handed to a consumer — a list of series, or an aggregation's
//! group accumulators — before the next is decoded, so a query holds one series' samples
//! per thread instead of every sample of every match. Samples count against the query's
//! limit as they are decoded, so an oversized query stops at the series that crosses it.
//!
//! Series are cut into fixed blocks that the cores take in turn; each block fills its own
//! consumer and the blocks are merged in series order, so results do not depend on the
//! number of threads or on which finished first. A query with a single block runs on the
//! calling thread.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::Instant;

use meshlens_model::{is_stale_nan, Sample, SeriesCursor, StorageError};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{MatrixSelector, VectorSelector};

use super::Evaluator;
use crate::error::PromqlError;
use crate::functions::native::{self, HistPoints, WindowValue};
use crate::functions::rollup::{RangeFn, Rollup, Scratch};
use crate::functions::RangeParams;
use crate::value::Series;
use crate::EngineOptions;

/// Series per unit of parallel work: large enough that merging a block's accumulators
/// costs little beside decoding it, small enough to spread a few thousand series.
pub(crate) const BLOCK_SERIES: usize = 256;

/// Threads a query's series are spread over: the cores this process may use.
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A selector's series, not yet decoded, and what each is to be turned into.
pub(crate) struct Source<'s> {
    cursors: Vec<Box<dyn SeriesCursor + 's>>,
    /// Per step: the evaluation time after `@` and `offset` (for a range function, the
    /// window's end).
    times: Vec<i64>,
    what: What,
    /// The range function call this source evaluates and its matrix argument, for the
    /// position of its annotations.
    pub call: Option<(usize, usize)>,
    /// Read for the histograms' count and sum only: counter-reset hints are detected while
    /// reading, as Prometheus's histogram-stats iterator does.
    stats_only: bool,
    /// The samples' start timestamps are read (only where they are used, so other
    /// queries never ask storage for them).
    start_times: bool,
}

/// What an instant selector gives of the sample it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    Value,
    /// The sample's time, seconds (`timestamp`).
    Time,
    /// The sample's start time, seconds, 0 when it has none (`start_timestamp`).
    StartTime,
}

enum What {
    /// An instant selector: at each time, the newest sample within the lookback delta
    /// unless it is a staleness marker; what `read` asks of it.
    Latest { read: Read },
    /// A range function over a matrix selector's windows, staleness markers left out.
    Rollup {
        f: RangeFn,
        range: i64,
        params: RangeParams,
    },
}

impl Source<'_> {
    /// Whether storage handed any series with native-histogram samples.
    pub fn has_histograms(&self) -> bool {
        self.cursors.iter().any(|c| !c.histograms().is_empty())
    }

    /// Whether the values no longer describe the metric, so its name is dropped.
    pub fn drops_name(&self) -> bool {
        match &self.what {
            What::Latest { read } => *read != Read::Value,
            What::Rollup { f, .. } => !f.keeps_name(),
        }
    }
}

/// Whether the selector fixes the metric name, so that dropping the name cannot make two
/// of its series equal.
pub(crate) fn pins_name(vs: &VectorSelector) -> bool {
    vs.name.is_some()
        || vs
            .matchers
            .matchers
            .iter()
            .any(|m| m.name == meshlens_model::METRIC_NAME && m.op == PMatchOp::Equal)
}

/// Where one block's series go; one per block, merged in series order.
pub(crate) trait Partial: Send {
    /// A series with at least one value; `points` has one entry per step. The series'
    /// labels are asked of its cursor, so a consumer that needs only a few of them (a
    /// grouping) does not have the whole set built.
    fn add(&mut self, series: &dyn SeriesCursor, points: &[Option<f64>]);

    /// A series some of whose steps hold native histograms (`hists`, one entry per step).
    /// Only consumers that keep series get these: a folded aggregation is never given a
    /// source with histograms (see [`Source::has_histograms`]).
    fn add_hists(&mut self, series: &dyn SeriesCursor, points: &[Option<f64>], hists: HistPoints) {
        let _ = hists;
        self.add(series, points);
    }
}

/// Series kept as they are, labels without the metric name when `drop_name`, or marked to
/// lose it at the end (`mark`, with delayed name removal).
struct Collect {
    drop_name: bool,
    mark: bool,
    series: Vec<Series>,
}

impl Partial for Collect {
    fn add(&mut self, series: &dyn SeriesCursor, points: &[Option<f64>]) {
        self.add_hists(series, points, Vec::new());
    }

    fn add_hists(&mut self, series: &dyn SeriesCursor, points: &[Option<f64>], hists: HistPoints) {
        let labels = series.labels();
        let labels = if self.drop_name {
            labels.without_metric_name()
        } else {
            labels.clone()
        };
        self.series.push(Series {
            labels,
            points: points.to_vec(),
            hists,
            drop_name: self.mark,
        });
    }
}

/// What the evaluation shares with the threads reading its series.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    opts: &'a EngineOptions,
    deadline: Instant,
    samples: &'a AtomicUsize,
}

impl Ctx<'_> {
    /// Counts decoded samples; fails once the query's total passes its limit.
    fn charge(&self, n: usize) -> Result<(), PromqlError> {
        super::charge(self.samples, self.opts.max_samples, n)
    }

    fn check_deadline(&self) -> Result<(), PromqlError> {
        if Instant::now() > self.deadline {
            return Err(PromqlError::Timeout {
                after: self.opts.timeout,
            });
        }
        Ok(())
    }
}

/// A storage failure as the query reports it: storage's own sample limit is the query's.
pub(crate) fn storage_error(opts: &EngineOptions, e: StorageError) -> PromqlError {
    match e {
        StorageError::TooManySamples { .. } => PromqlError::TooManySamples {
            limit: opts.max_samples,
        },
        other => other.into(),
    }
}

/// Buffers one thread reuses from series to series.
#[derive(Default)]
struct Worker {
    samples: Vec<Sample>,
    /// The samples' start timestamps, when the series has them and they are read.
    sts: Vec<i64>,
    points: Vec<Option<f64>>,
    scratch: Scratch,
}

/// One block's consumer and the metric names it saw that do not look like counters.
struct BlockOut<P> {
    partial: P,
    non_counters: Vec<String>,
    /// Warnings and infos of histogram evaluation.
    notes: native::Notes,
}

impl<'a> Evaluator<'a> {
    /// The series of `vs` with samples in `[mint, maxt]`, as cursors.
    pub(crate) fn cursors(
        &self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Box<dyn SeriesCursor + 'a>>, PromqlError> {
        if !vs.matchers.or_matchers.is_empty() {
            return Err(PromqlError::BadData {
                message: "\"or\" label matchers are not supported".into(),
            });
        }
        let m = super::selector_matchers(vs)?;
        self.storage
            .select_lazy(&m, mint, maxt)
            .map_err(|e| storage_error(self.opts, e))
    }

    /// An instant selector, to be read series by series.
    pub(crate) fn latest_source(
        &self,
        vs: &VectorSelector,
        timestamp: bool,
    ) -> Result<Source<'a>, PromqlError> {
        let times = self.effective_times(&vs.at, &vs.offset);
        let cursors = match (times.iter().min(), times.iter().max()) {
            (Some(&min), Some(&max)) => {
                let lookback = self.opts.lookback_delta_ms;
                self.cursors(vs, self.window_min(min, lookback), max)?
            }
            _ => Vec::new(),
        };
        let read = if timestamp { Read::Time } else { Read::Value };
        Ok(Source {
            call: None,
            cursors,
            times,
            what: What::Latest { read },
            stats_only: self.positions.stats_only(vs),
            start_times: false,
        })
    }

    /// `start_timestamp` of an instant selector: each step's sample's start time.
    pub(crate) fn start_time_source(&self, vs: &VectorSelector) -> Result<Source<'a>, PromqlError> {
        let mut source = self.latest_source(vs, true)?;
        source.what = What::Latest {
            read: Read::StartTime,
        };
        source.start_times = true;
        Ok(source)
    }

    /// A range function over a matrix selector, to be read series by series.
    pub(crate) fn rollup_source(
        &self,
        ms: &MatrixSelector,
        f: RangeFn,
        params: RangeParams,
    ) -> Result<Source<'a>, PromqlError> {
        let range = super::millis(ms.range);
        let times = self.effective_times(&ms.vs.at, &ms.vs.offset);
        let cursors = match (times.iter().min(), times.iter().max()) {
            (Some(&min), Some(&max)) => self.cursors(&ms.vs, self.window_min(min, range), max)?,
            _ => Vec::new(),
        };
        Ok(Source {
            call: None,
            cursors,
            times,
            what: What::Rollup { f, range, params },
            stats_only: self.positions.stats_only(&ms.vs),
            start_times: self.start_times
                && matches!(
                    f,
                    RangeFn::Rate | RangeFn::Increase | RangeFn::Irate | RangeFn::Resets
                ),
        })
    }

    /// Every series of `source` with at least one value, in storage order.
    pub(crate) fn collect(&self, source: Source<'_>) -> Result<Vec<Series>, PromqlError> {
        let drops = source.drops_name();
        let (drop_name, mark) = (drops && !self.delayed_names, drops && self.delayed_names);
        let mut out = Vec::new();
        self.stream(
            &source,
            || Collect {
                drop_name,
                mark,
                series: Vec::new(),
            },
            |block| out.extend(block.series),
        )?;
        Ok(out)
    }

    /// Runs `source` series by series into consumers made by `new_partial` (one per
    /// block), handing each filled one to `merge` in series order.
    pub(crate) fn stream<P: Partial>(
        &self,
        source: &Source<'_>,
        new_partial: impl Fn() -> P + Sync,
        mut merge: impl FnMut(P),
    ) -> Result<(), PromqlError> {
        let ctx = Ctx {
            opts: self.opts,
            deadline: self.deadline,
            samples: &self.samples,
        };
        let mut noted: Vec<String> = Vec::new();
        // Start-time overlaps by metric name, summed over all blocks, warned of at the end.
        let mut overlaps: Vec<(String, usize)> = Vec::new();
        let mut take = |mut out: BlockOut<P>| {
            for (metric, n) in std::mem::take(&mut out.notes.overlaps) {
                native::add_overlaps(&mut overlaps, metric, n);
            }
            // Positioned at the range function's matrix argument, as evaluating the call
            // whole would; a selector's notes carry no position.
            let note = |arg: Option<usize>| {
                let warn = |m: String| match arg {
                    Some(a) => self.warn_at(m, a),
                    None => self.warn(m),
                };
                let info = |m: String| match arg {
                    Some(a) => self.info_at(m, a),
                    None => self.info(m),
                };
                for name in out.non_counters {
                    if !noted.contains(&name) {
                        info(format!("metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"));
                        noted.push(name);
                    }
                }
                out.notes.warnings.into_iter().for_each(warn);
                out.notes.infos.into_iter().for_each(info);
            };
            match source.call {
                Some((call, arg)) => self.in_call(call, || note(Some(arg))),
                None => note(None),
            }
            merge(out.partial);
        };
        let ts = &self.ts[..];
        let blocks: Vec<&[Box<dyn SeriesCursor + '_>]> =
            source.cursors.chunks(BLOCK_SERIES).collect();
        let work =
            |i: usize, w: &mut Worker| run_block(&ctx, source, ts, blocks[i], new_partial(), w);
        let threads = threads().min(blocks.len());
        if threads <= 1 {
            let mut w = Worker::default();
            for i in 0..blocks.len() {
                take(work(i, &mut w)?);
            }
        } else {
            parallel(blocks.len(), threads, &work, &mut take)?;
        }
        for (metric, n) in overlaps {
            let m = native::overlap_warning(&metric, n);
            match source.call {
                Some((call, arg)) => self.in_call(call, || self.warn_at(m, arg)),
                None => self.warn(m),
            }
        }
        Ok(())
    }
}

/// Runs `work` over blocks `0..blocks` on `threads` threads, which take blocks in order,
/// and hands the results to `take` in block order. The first failure (of the lowest block)
/// is returned, and stops the other threads before their next block.
fn parallel<T: Send>(
    blocks: usize,
    threads: usize,
    work: &(dyn Fn(usize, &mut Worker) -> Result<T, PromqlError> + Sync),
    mut take: impl FnMut(T),
) -> Result<(), PromqlError> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<T, PromqlError>)>();
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || {
                let mut w = Worker::default();
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= blocks {
                        break;
                    }
                    let r = work(i, &mut w);
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if tx.send((i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending: BTreeMap<usize, T> = BTreeMap::new();
        let mut want = 0usize;
        let mut failed: Option<(usize, PromqlError)> = None;
        for (i, r) in rx {
            match r {
                Ok(t) if failed.is_none() => {
                    pending.insert(i, t);
                    while let Some(t) = pending.remove(&want) {
                        take(t);
                        want += 1;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                        failed = Some((i, e));
                    }
                    pending.clear();
                }
            }
        }
        match failed {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    })
}

fn run_block<P: Partial>(
    ctx: &Ctx<'_>,
    source: &Source<'_>,
    ts: &[i64],
    block: &[Box<dyn SeriesCursor + '_>],
    mut partial: P,
    w: &mut Worker,
) -> Result<BlockOut<P>, PromqlError> {
    let mut non_counters: Vec<String> = Vec::new();
    let mut notes = native::Notes::default();
    let per = match &source.what {
        What::Rollup { f, range, params } => Per::Rollup(Rollup {
            f: *f,
            range: *range,
            ends: &source.times,
            ts,
            closed: ctx.opts.closed_ranges,
            p1: params.p1.as_deref(),
            p2: params.p2.as_deref(),
        }),
        What::Latest { read } => Per::Latest(*read),
    };
    for cursor in block {
        ctx.check_deadline()?;
        w.samples.clear();
        let n = cursor
            .decode_into(&mut w.samples)
            .map_err(|e| storage_error(ctx.opts, e))?;
        ctx.charge(n)?;
        w.sts.clear();
        let (has_sts, hsts) = match source.start_times {
            false => (false, &[][..]),
            true => start_times(cursor.as_ref(), n, &mut w.sts, ctx.opts)?,
        };
        let hists = cursor.histograms();
        if !hsts.is_empty() && hsts.len() != hists.len() {
            return Err(mismatched_start_times(ctx.opts));
        }
        let detected = match &source.what {
            _ if !source.stats_only || hists.is_empty() => None,
            What::Rollup { range, .. } => {
                super::selector::detect_reset_hints(hists, &source.times, *range)
            }
            What::Latest { .. } => super::selector::detect_reset_hints(
                hists,
                &source.times,
                ctx.opts.lookback_delta_ms,
            ),
        };
        let hists = detected.as_deref().unwrap_or(hists);
        if !hists.is_empty() {
            ctx.charge(hists.len())?;
            let hp = match &per {
                Per::Rollup(r) => {
                    drop_stale(&mut w.samples, &mut w.sts, has_sts);
                    let metric = cursor
                        .label_value(meshlens_model::METRIC_NAME)
                        .unwrap_or("");
                    let sts = has_sts.then_some(&w.sts[..]);
                    r.eval_st(&w.samples, sts, &mut w.scratch, &mut w.points);
                    if w.scratch.overlaps > 0 {
                        notes.overlap(metric, w.scratch.overlaps);
                    }
                    let st = native::StartTimes {
                        floats: sts.unwrap_or(&[]),
                        hists: hsts,
                    };
                    hist_rollup(r, &w.samples, hists, st, metric, &mut w.points, &mut notes)
                }
                Per::Latest(read) => {
                    let (lookback, closed) = (ctx.opts.lookback_delta_ms, ctx.opts.closed_ranges);
                    let st = native::StartTimes {
                        floats: &w.sts,
                        hists: hsts,
                    };
                    native::latest(
                        &w.samples,
                        hists,
                        &source.times,
                        |t| super::window_min(t, lookback, closed),
                        *read,
                        st,
                        &mut w.points,
                    )
                }
            };
            if w.points.iter().any(Option::is_some) || hp.iter().any(Option::is_some) {
                partial.add_hists(cursor.as_ref(), &w.points, hp);
            }
            continue;
        }
        match &per {
            Per::Rollup(r) => {
                drop_stale(&mut w.samples, &mut w.sts, has_sts);
                if r.f.wants_counter() && !w.samples.is_empty() {
                    note_non_counter(cursor.as_ref(), &mut non_counters);
                }
                let sts = has_sts.then_some(&w.sts[..]);
                r.eval_st(&w.samples, sts, &mut w.scratch, &mut w.points);
                if w.scratch.overlaps > 0 {
                    let metric = cursor
                        .label_value(meshlens_model::METRIC_NAME)
                        .unwrap_or("");
                    notes.overlap(metric, w.scratch.overlaps);
                }
            }
            Per::Latest(read) => {
                latest(ctx, &w.samples, &source.times, *read, &w.sts, &mut w.points)
            }
        }
        if w.points.iter().any(Option::is_some) {
            partial.add(cursor.as_ref(), &w.points);
        }
    }
    Ok(BlockOut {
        partial,
        non_counters,
        notes,
    })
}

/// Reads a series' start timestamps into `buf` (float samples: `n` decoded) when it has
/// them: whether the floats have them, and the histograms' (empty when none).
fn start_times<'c>(
    cursor: &'c dyn SeriesCursor,
    n: usize,
    buf: &mut Vec<i64>,
    opts: &EngineOptions,
) -> Result<(bool, &'c [i64]), PromqlError> {
    let got = cursor
        .decode_start_times_into(buf)
        .map_err(|e| storage_error(opts, e))?;
    if got != 0 && got != n {
        return Err(mismatched_start_times(opts));
    }
    Ok((got != 0, cursor.histogram_start_times()))
}

/// Storage gave a series' start timestamps not one per sample: a fault of the reader,
/// reported rather than guessed around.
fn mismatched_start_times(opts: &EngineOptions) -> PromqlError {
    storage_error(
        opts,
        StorageError::Corruption {
            location: "series start timestamps".into(),
            reason: "not one start timestamp per sample".into(),
        },
    )
}

/// Drops staleness markers, and their start timestamps with them (`with_sts`).
fn drop_stale(samples: &mut Vec<Sample>, sts: &mut Vec<i64>, with_sts: bool) {
    if !with_sts {
        samples.retain(|x| !is_stale_nan(x.v));
        return;
    }
    let mut k = 0;
    for j in 0..samples.len().min(sts.len()) {
        if !is_stale_nan(samples[j].v) {
            samples[k] = samples[j];
            sts[k] = sts[j];
            k += 1;
        }
    }
    samples.truncate(k);
    sts.truncate(k);
}

/// A range function over a series with histogram samples: each step whose window holds
/// histograms gets the histogram computation; steps with floats only keep the float
/// results already in `points`. `st` holds the samples' start timestamps, if read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn hist_rollup(
    r: &Rollup<'_>,
    floats: &[Sample],
    hists: &[meshlens_model::HistogramSample],
    st: native::StartTimes<'_>,
    metric: &str,
    points: &mut [Option<f64>],
    notes: &mut native::Notes,
) -> HistPoints {
    let mut out: HistPoints = vec![None; r.ends.len()];
    for (i, &end) in r.ends.iter().enumerate() {
        let start = end - r.range;
        let lo_of = |t: i64| if r.closed { t < start } else { t <= start };
        let hlo = hists.partition_point(|x| lo_of(x.t));
        let hhi = hists.partition_point(|x| x.t <= end);
        if hlo >= hhi {
            continue;
        }
        let flo = floats.partition_point(|x| lo_of(x.t));
        let fhi = floats.partition_point(|x| x.t <= end).max(flo);
        let float_value = points[i].take();
        let window_st = native::StartTimes {
            floats: st.floats.get(flo..fhi).unwrap_or(&[]),
            hists: st.hists.get(hlo..hhi).unwrap_or(&[]),
        };
        match native::rollup_window(
            r.f,
            &floats[flo..fhi],
            &hists[hlo..hhi],
            window_st,
            start,
            end,
            r.range,
            r.closed,
            metric,
            notes,
        ) {
            WindowValue::Float(v) => points[i] = Some(v),
            WindowValue::Hist(h) => out[i] = Some(std::sync::Arc::new(h)),
            WindowValue::Keep => points[i] = float_value,
            WindowValue::None => {}
        }
    }
    out
}

/// A source's computation, borrowed for one block.
enum Per<'r> {
    Latest(Read),
    Rollup(Rollup<'r>),
}

fn note_non_counter(series: &dyn SeriesCursor, seen: &mut Vec<String>) {
    if let Some(metric) = series.label_value(meshlens_model::METRIC_NAME) {
        let counter = ["_total", "_sum", "_count", "_bucket"]
            .iter()
            .any(|sfx| metric.ends_with(sfx));
        if !counter && !seen.iter().any(|s| s == metric) {
            seen.push(metric.to_string());
        }
    }
}

/// The newest sample at or before each time, if within the lookback delta and not a
/// staleness marker; one index moves forward as the (ascending) times do. `sts` are the
/// samples' start times (empty when the series has none, read as 0).
fn latest(
    ctx: &Ctx<'_>,
    s: &[Sample],
    times: &[i64],
    read: Read,
    sts: &[i64],
    out: &mut Vec<Option<f64>>,
) {
    out.clear();
    out.resize(times.len(), None);
    let lookback = ctx.opts.lookback_delta_ms;
    let (mut hi, mut prev) = (0usize, i64::MIN);
    for (i, &t) in times.iter().enumerate() {
        if t < prev {
            hi = 0;
        }
        prev = t;
        while hi < s.len() && s[hi].t <= t {
            hi += 1;
        }
        let Some(j) = hi.checked_sub(1) else {
            continue;
        };
        let last = s[j];
        let seen = last.t >= super::window_min(t, lookback, ctx.opts.closed_ranges);
        if seen && !is_stale_nan(last.v) {
            out[i] = Some(match read {
                Read::Value => last.v,
                Read::Time => last.t as f64 / 1000.0,
                Read::StartTime => sts.get(j).copied().unwrap_or(0) as f64 / 1000.0,
            });
        }
    }
}
