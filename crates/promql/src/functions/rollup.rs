//! Range-vector functions over one series for every step of a query in one pass: the window
//! `(end - range, end]` of each step is found by two indices that only move forward as the
//! steps advance, and counter resets and value changes are noted as the window's end
//! passes them, so `rate`, `increase`, `resets`, `changes`, `count_over_time`,
//! `last_over_time`, `irate` and `idelta` cost O(1) per step (plus the resets inside the
//! window); the other functions read only their window's samples.
//! Values are the same, bit for bit, as evaluating each window on its own (sums run in
//! the same order).

use meshlens_model::Sample;

use super::quantile;
use crate::eval::aggregate::{mean, variance, Kahan};

/// The functions of a range vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeFn {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Deriv,
    PredictLinear,
    Resets,
    Changes,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    SumOverTime,
    CountOverTime,
    StddevOverTime,
    StdvarOverTime,
    LastOverTime,
    FirstOverTime,
    /// The time (seconds) of the window's first, last, lowest or highest sample; ties go to
    /// the later sample.
    TsOfFirstOverTime,
    TsOfLastOverTime,
    TsOfMinOverTime,
    TsOfMaxOverTime,
    PresentOverTime,
    AbsentOverTime,
    MadOverTime,
    QuantileOverTime,
    /// `double_exponential_smoothing`, formerly `holt_winters`.
    DoubleExponential,
}

impl RangeFn {
    pub fn parse(name: &str) -> Option<RangeFn> {
        Some(match name {
            "rate" => RangeFn::Rate,
            "increase" => RangeFn::Increase,
            "delta" => RangeFn::Delta,
            "irate" => RangeFn::Irate,
            "idelta" => RangeFn::Idelta,
            "deriv" => RangeFn::Deriv,
            "predict_linear" => RangeFn::PredictLinear,
            "resets" => RangeFn::Resets,
            "changes" => RangeFn::Changes,
            "avg_over_time" => RangeFn::AvgOverTime,
            "min_over_time" => RangeFn::MinOverTime,
            "max_over_time" => RangeFn::MaxOverTime,
            "sum_over_time" => RangeFn::SumOverTime,
            "count_over_time" => RangeFn::CountOverTime,
            "stddev_over_time" => RangeFn::StddevOverTime,
            "stdvar_over_time" => RangeFn::StdvarOverTime,
            "last_over_time" => RangeFn::LastOverTime,
            "first_over_time" => RangeFn::FirstOverTime,
            "ts_of_first_over_time" => RangeFn::TsOfFirstOverTime,
            "ts_of_last_over_time" => RangeFn::TsOfLastOverTime,
            "ts_of_min_over_time" => RangeFn::TsOfMinOverTime,
            "ts_of_max_over_time" => RangeFn::TsOfMaxOverTime,
            "present_over_time" => RangeFn::PresentOverTime,
            "absent_over_time" => RangeFn::AbsentOverTime,
            "mad_over_time" => RangeFn::MadOverTime,
            "quantile_over_time" => RangeFn::QuantileOverTime,
            "holt_winters" | "double_exponential_smoothing" => RangeFn::DoubleExponential,
            _ => return None,
        })
    }

    /// The position of the range-vector argument.
    pub fn matrix_arg(self) -> usize {
        usize::from(self == RangeFn::QuantileOverTime)
    }

    /// Whether results keep the metric name (all others drop it).
    pub fn keeps_name(self) -> bool {
        matches!(self, RangeFn::LastOverTime | RangeFn::FirstOverTime)
    }

    /// Functions that expect counters: they note metric names that do not look like one.
    pub fn wants_counter(self) -> bool {
        matches!(self, RangeFn::Rate | RangeFn::Increase | RangeFn::Irate)
    }
}

/// One range function applied over a query's steps.
pub(crate) struct Rollup<'a> {
    pub f: RangeFn,
    /// The window length, ms.
    pub range: i64,
    /// Each step's window end (its evaluation time after `@` and `offset`).
    pub ends: &'a [i64],
    /// Each step's evaluation time (`predict_linear` extrapolates from it).
    pub ts: &'a [i64],
    /// Prometheus 2's closed windows `[end - range, end]` and extrapolation order.
    pub closed: bool,
    /// The function's scalar arguments per step: `quantile_over_time`'s φ,
    /// `predict_linear`'s t, smoothing's factors.
    pub p1: Option<&'a [f64]>,
    pub p2: Option<&'a [f64]>,
}

/// Buffers reused from series to series.
#[derive(Default)]
pub(crate) struct Scratch {
    values: Vec<f64>,
    deviations: Vec<f64>,
    /// Indices `j` where sample `j` resets the counter (or changes the value) relative to
    /// sample `j - 1`, ascending.
    marks: Vec<usize>,
    /// Indices `j` where sample `j`'s start time overlaps sample `j - 1`, ascending.
    overlap_marks: Vec<usize>,
    /// Steps of the last [`Rollup::eval_st`] whose window held such an overlap (`rate` and
    /// `increase` warn of them, as Prometheus).
    pub overlaps: usize,
}

/// Whether sample `curr` starts a new count after sample `prev` by its start time (a
/// start time of 0 is none): Prometheus's rule. A start time at or after the sample's own
/// time says nothing (OTel's unknown start is ST = T); one before the previous sample is a
/// cumulative series' start; one after it is a restart. One exactly at the previous
/// sample is a delta when the previous sample had a valid start time of its own, and a
/// cumulative series of unknown start otherwise.
pub(crate) fn start_time_reset(prev_st: i64, prev_t: i64, curr_st: i64, curr_t: i64) -> bool {
    if curr_st == 0 || curr_st >= curr_t || curr_st < prev_t {
        return false;
    }
    if curr_st > prev_t {
        return true;
    }
    prev_st <= prev_t && prev_st != 0 && prev_st != prev_t
}

/// Whether a sample's start time lies before the previous sample yet is not the previous
/// sample's start (so neither a delta nor the same cumulative count): overlapping data.
pub(crate) fn start_time_overlap(prev_st: i64, prev_t: i64, curr_st: i64) -> bool {
    curr_st != 0 && curr_st < prev_t && curr_st != prev_st
}

/// The extrapolation factor of a counter window whose first sample's start time `st`
/// lies inside the window `(start, end]` and before the sample: the counter is taken as 0
/// at `st`, so the window is measured from there instead of extrapolated to its start
/// (the caller adds the first sample's value back). `None` when `st` does not qualify.
/// `first` and `last` are the window's sample times, `n` its sample count.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_time_factor(
    st: i64,
    first: i64,
    last: i64,
    n: usize,
    start: i64,
    end: i64,
    rate: bool,
    range_s: f64,
) -> Option<f64> {
    if st == 0 || st <= start || st >= first {
        return None;
    }
    let avg_step = if n > 1 {
        (last - first) as f64 / 1000.0 / (n - 1) as f64
    } else {
        0.0
    };
    let mut to_end = (end - last) as f64 / 1000.0;
    if to_end >= avg_step * 1.1 {
        to_end = avg_step / 2.0;
    }
    // `st < first <= last`: never zero.
    let sampled = (last - st) as f64 / 1000.0;
    let mut factor = (sampled + to_end) / sampled;
    if rate {
        factor /= range_s;
    }
    Some(factor)
}

impl Rollup<'_> {
    /// The function's value at every step for one series' samples (sorted by time, without
    /// staleness markers); `out` gets one entry per step.
    pub fn eval(&self, s: &[Sample], scratch: &mut Scratch, out: &mut Vec<Option<f64>>) {
        self.eval_st(s, None, scratch, out)
    }

    /// [`Rollup::eval`] with the samples' start timestamps (`sts`, one per sample), which
    /// `rate`, `increase`, `irate` and `resets` read; the other functions ignore them.
    pub fn eval_st(
        &self,
        s: &[Sample],
        sts: Option<&[i64]>,
        scratch: &mut Scratch,
        out: &mut Vec<Option<f64>>,
    ) {
        out.clear();
        out.resize(self.ends.len(), None);
        scratch.overlaps = 0;
        if s.is_empty() {
            return;
        }
        // Start times must pair with samples; any other length is ignored.
        let sts = sts.filter(|st| st.len() == s.len());
        scratch.marks.clear();
        scratch.overlap_marks.clear();
        // What makes sample `j` a mark, given sample `j - 1`: a plain value rather than a
        // function pointer, so the per-sample test is inlined instead of an indirect call.
        let mark = match self.f {
            RangeFn::Rate | RangeFn::Increase | RangeFn::Resets => Some(Mark::Reset),
            RangeFn::Changes => Some(Mark::Change),
            _ => None,
        };
        let range_s = self.range as f64 / 1000.0;
        let mut shape = Shape::default();
        if let Some(m) = mark {
            match (m, sts) {
                (Mark::Reset, Some(sts)) => {
                    find_start_time_marks(s, sts, &mut scratch.marks, &mut scratch.overlap_marks)
                }
                _ => find_marks(s, m, &mut scratch.marks),
            }
        }
        let (mut lo, mut hi, mut mark_lo, mut mark_hi) = (0usize, 0usize, 0usize, 0usize);
        let mut prev_end = i64::MIN;
        for (i, &end) in self.ends.iter().enumerate() {
            if end < prev_end {
                // Ends only fall if times were not ascending; start over for this step.
                (lo, hi, mark_lo, mark_hi) = (0, 0, 0, 0);
            }
            prev_end = end;
            let start = end - self.range;
            while lo < s.len() && (s[lo].t < start || (!self.closed && s[lo].t == start)) {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < s.len() && s[hi].t <= end {
                hi += 1;
            }
            if lo == hi {
                continue;
            }
            let marks = &scratch.marks;
            while mark_lo < marks.len() && marks[mark_lo] <= lo {
                mark_lo += 1;
            }
            mark_hi = mark_hi.max(mark_lo);
            while mark_hi < marks.len() && marks[mark_hi] < hi {
                mark_hi += 1;
            }
            let w = &s[lo..hi];
            let in_window = &scratch.marks[mark_lo..mark_hi];
            out[i] = match self.f {
                RangeFn::Rate | RangeFn::Increase => {
                    let mut result = w[w.len() - 1].v - w[0].v;
                    for &j in in_window {
                        result += s[j - 1].v;
                    }
                    let rate = self.f == RangeFn::Rate;
                    let how = Extrapolation {
                        counter: true,
                        rate,
                        range_s,
                        prom2: self.closed,
                    };
                    match sts {
                        None => shape.extrapolate(result, w, start, end, how),
                        Some(sts) => {
                            let o = &scratch.overlap_marks;
                            let first_after = o.partition_point(|&j| j <= lo);
                            if o.get(first_after).is_some_and(|&j| j < hi) {
                                scratch.overlaps += 1;
                            }
                            let (first, last) = (w[0], w[w.len() - 1]);
                            let n = w.len();
                            match start_time_factor(
                                sts[lo], first.t, last.t, n, start, end, rate, range_s,
                            ) {
                                Some(factor) => Some((result + first.v) * factor),
                                None => shape.extrapolate(result, w, start, end, how),
                            }
                        }
                    }
                }
                RangeFn::Delta => {
                    let result = w[w.len() - 1].v - w[0].v;
                    let how = Extrapolation {
                        counter: false,
                        rate: false,
                        range_s,
                        prom2: self.closed,
                    };
                    shape.extrapolate(result, w, start, end, how)
                }
                RangeFn::Irate => match sts {
                    Some(sts) if w.len() >= 2 => {
                        let k = hi - 1;
                        let reset = start_time_reset(sts[k - 1], s[k - 1].t, sts[k], s[k].t);
                        instant_delta_reset(w, reset)
                    }
                    _ => instant_delta(w, true),
                },
                RangeFn::Idelta => instant_delta(w, false),
                RangeFn::Deriv => (w.len() >= 2).then(|| linear_regression(w, w[0].t).0),
                RangeFn::PredictLinear => (w.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(w, self.ts[i]);
                    intercept + slope * self.p1.map_or(0.0, |p| p[i])
                }),
                RangeFn::Resets | RangeFn::Changes => Some(in_window.len() as f64),
                RangeFn::AvgOverTime => {
                    let values = window_values(&mut scratch.values, w);
                    Some(mean(values))
                }
                RangeFn::SumOverTime => {
                    let mut k = Kahan::default();
                    w.iter().for_each(|x| k.add(x.v));
                    Some(k.value())
                }
                RangeFn::MinOverTime => Some(w.iter().map(|x| x.v).fold(f64::NAN, |m, v| {
                    if m > v || m.is_nan() {
                        v
                    } else {
                        m
                    }
                })),
                RangeFn::MaxOverTime => Some(w.iter().map(|x| x.v).fold(f64::NAN, |m, v| {
                    if m < v || m.is_nan() {
                        v
                    } else {
                        m
                    }
                })),
                RangeFn::CountOverTime => Some(w.len() as f64),
                RangeFn::LastOverTime => Some(w[w.len() - 1].v),
                RangeFn::FirstOverTime => Some(w[0].v),
                RangeFn::TsOfFirstOverTime => Some(seconds(w[0].t)),
                RangeFn::TsOfLastOverTime => Some(seconds(w[w.len() - 1].t)),
                RangeFn::TsOfMinOverTime => Some(ts_of_extreme(w, |v, m| v <= m)),
                RangeFn::TsOfMaxOverTime => Some(ts_of_extreme(w, |v, m| v >= m)),
                RangeFn::PresentOverTime => Some(1.0),
                RangeFn::AbsentOverTime => None,
                RangeFn::StddevOverTime => {
                    Some(variance(window_values(&mut scratch.values, w)).sqrt())
                }
                RangeFn::StdvarOverTime => Some(variance(window_values(&mut scratch.values, w))),
                RangeFn::QuantileOverTime => {
                    let values = window_values(&mut scratch.values, w);
                    Some(quantile(self.p1.map_or(f64::NAN, |p| p[i]), values))
                }
                RangeFn::MadOverTime if w.iter().any(|x| x.v.is_nan()) => Some(f64::NAN),
                RangeFn::MadOverTime => {
                    let values = window_values(&mut scratch.values, w);
                    let median = quantile(0.5, values);
                    scratch.deviations.clear();
                    scratch
                        .deviations
                        .extend(values.iter().map(|v| (v - median).abs()));
                    Some(quantile(0.5, &mut scratch.deviations))
                }
                RangeFn::DoubleExponential => double_exponential(
                    w,
                    self.p1.map_or(0.5, |p| p[i]),
                    self.p2.map_or(0.5, |p| p[i]),
                ),
            };
        }
    }
}

fn seconds(t: i64) -> f64 {
    t as f64 / 1000.0
}

/// The time of the last sample that `wins` over the extreme so far (a NaN extreme always
/// loses), starting from the first sample.
fn ts_of_extreme(w: &[Sample], wins: impl Fn(f64, f64) -> bool) -> f64 {
    let (mut extreme, mut at) = (w[0].v, w[0].t);
    for x in w {
        if wins(x.v, extreme) || extreme.is_nan() {
            (extreme, at) = (x.v, x.t);
        }
    }
    seconds(at)
}

/// What the window's marks are.
#[derive(Clone, Copy)]
enum Mark {
    /// A counter reset: the value fell.
    Reset,
    /// A change of value (NaN to NaN is none).
    Change,
}

impl Mark {
    #[inline]
    fn is_mark(self, a: f64, b: f64) -> bool {
        match self {
            Mark::Reset => b < a,
            // `|` and `&`, not `||` and `&&`: no branch to mispredict.
            Mark::Change => !((a == b) | (a.is_nan() & b.is_nan())),
        }
    }
}

/// Every `j` where sample `j` is a mark relative to sample `j - 1`, ascending, into
/// `marks`. Without a branch on the test: where values wander (a gauge read as a counter)
/// half the samples are resets, and a branch on each would be mispredicted half the time.
fn find_marks(s: &[Sample], m: Mark, marks: &mut Vec<usize>) {
    marks.clear();
    marks.resize(s.len(), 0);
    let mut k = 0usize;
    for (j, pair) in (1..).zip(s.windows(2)) {
        marks[k] = j;
        k += usize::from(m.is_mark(pair[0].v, pair[1].v));
    }
    marks.truncate(k);
}

/// [`find_marks`] for counter resets of samples with start times: a fall in value or a
/// reset by start time ([`start_time_reset`]); `overlaps` gets the samples whose start time
/// overlaps the previous sample ([`start_time_overlap`]).
fn find_start_time_marks(
    s: &[Sample],
    sts: &[i64],
    marks: &mut Vec<usize>,
    overlaps: &mut Vec<usize>,
) {
    marks.clear();
    overlaps.clear();
    for j in 1..s.len().min(sts.len()) {
        let (prev, curr) = (s[j - 1], s[j]);
        if curr.v < prev.v || start_time_reset(sts[j - 1], prev.t, sts[j], curr.t) {
            marks.push(j);
        }
        if start_time_overlap(sts[j - 1], prev.t, sts[j]) {
            overlaps.push(j);
        }
    }
}

fn window_values<'b>(buf: &'b mut Vec<f64>, w: &[Sample]) -> &'b mut [f64] {
    buf.clear();
    buf.extend(w.iter().map(|x| x.v));
    buf
}

/// How `rate`, `increase` and `delta` extrapolate.
#[derive(Clone, Copy)]
pub(crate) struct Extrapolation {
    /// The window's start may be moved to the counter's zero point.
    pub counter: bool,
    /// Divide by the range in seconds.
    pub rate: bool,
    pub range_s: f64,
    /// Prometheus 2's order of the two caps on the gap to the start.
    pub prom2: bool,
}

/// The last window shape `extrapolate` saw, with its factor. With samples at a steady
/// interval every step's window has the same gaps to its edges and the same sample count,
/// so the divisions are done once per shape instead of once per step; the factor comes
/// from the same operations on the same numbers, so the result is the same to the bit.
#[derive(Default)]
struct Shape {
    /// (first sample - window start, window end - last sample, last - first, samples).
    key: Option<(i64, i64, i64, usize)>,
    sampled: f64,
    /// The gap to the start that the counter's zero point is compared with.
    zero_cmp: f64,
    /// The factor when the zero point does not shorten that gap.
    factor: f64,
}

impl Shape {
    fn extrapolate(
        &mut self,
        result: f64,
        w: &[Sample],
        start: i64,
        end: i64,
        how: Extrapolation,
    ) -> Option<f64> {
        if w.len() < 2 {
            return None;
        }
        let (first, last) = (w[0], w[w.len() - 1]);
        let key = (first.t - start, end - last.t, last.t - first.t, w.len());
        if self.key != Some(key) {
            self.reshape(key, how);
        }
        if how.counter
            && result > 0.0
            && first.v >= 0.0
            && !self.zero_point_too_far(first.v, result)
        {
            return extrapolate(result, w, start, end, how);
        }
        Some(result * self.factor)
    }

    /// `extrapolate`'s steps up to the factor, for a window without a zero point.
    fn reshape(&mut self, key: (i64, i64, i64, usize), how: Extrapolation) {
        let (to_first, from_last, span, n) = key;
        let mut to_start = to_first as f64 / 1000.0;
        let mut to_end = from_last as f64 / 1000.0;
        let sampled = span as f64 / 1000.0;
        let avg_step = sampled / (n - 1) as f64;
        let threshold = avg_step * 1.1;
        if !how.prom2 && to_start >= threshold {
            to_start = avg_step / 2.0;
        }
        let zero_cmp = to_start;
        if how.prom2 && to_start >= threshold {
            to_start = avg_step / 2.0;
        }
        if to_end >= threshold {
            to_end = avg_step / 2.0;
        }
        let mut factor = (sampled + to_start + to_end) / sampled;
        if how.rate {
            factor /= how.range_s;
        }
        *self = Shape {
            key: Some(key),
            sampled,
            zero_cmp,
            factor,
        };
    }

    /// Whether the counter's zero point, `sampled * (first / result)`, is surely not
    /// below the gap to the start (so it changes nothing), told without the division:
    /// `first * sampled >= gap * result` with a margin far wider than the rounding of
    /// either side. When unsure, `extrapolate` decides exactly.
    #[inline]
    fn zero_point_too_far(&self, first: f64, result: f64) -> bool {
        if self.zero_cmp <= 0.0 {
            return true;
        }
        let a = first * self.sampled;
        let b = self.zero_cmp * result;
        a.is_normal() && b.is_normal() && a >= b * (1.0 + 1.0 / (1u64 << 40) as f64)
    }
}

/// Prometheus's extrapolation of `result` (the window's increase or delta) to the window
/// from `start` to `end`: `rate` divides by the range in seconds.
pub(crate) fn extrapolate(
    result: f64,
    w: &[Sample],
    start: i64,
    end: i64,
    how: Extrapolation,
) -> Option<f64> {
    let Extrapolation {
        counter,
        rate,
        range_s,
        prom2,
    } = how;
    if w.len() < 2 {
        return None;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut to_start = (first.t - start) as f64 / 1000.0;
    let mut to_end = (end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (w.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    // Prometheus 3 caps the gap at the threshold first and then at the counter's zero
    // point; Prometheus 2 took the zero point first, so a zero point just under the
    // threshold is extrapolated to rather than half a step.
    if !prom2 && to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if prom2 && to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if rate {
        factor /= range_s;
    }
    Some(result * factor)
}

fn instant_delta(w: &[Sample], rate: bool) -> Option<f64> {
    if rate {
        return instant_delta_reset(w, false);
    }
    match w {
        [.., prev, last] if last.t != prev.t => Some(last.v - prev.v),
        _ => None,
    }
}

/// `irate` over the window's two newest samples, a reset told by the caller (the value
/// fell, or a start time says so): then the newest value is the increase.
fn instant_delta_reset(w: &[Sample], start_time_reset: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (prev, last) = (w[w.len() - 2], w[w.len() - 1]);
    let dt = (last.t - prev.t) as f64 / 1000.0;
    if dt == 0.0 {
        return None;
    }
    let diff = if last.v < prev.v || start_time_reset {
        last.v
    } else {
        last.v - prev.v
    };
    Some(diff / dt)
}

/// Least-squares slope and the intercept at `intercept_t`.
fn linear_regression(w: &[Sample], intercept_t: i64) -> (f64, f64) {
    let init = w[0].v;
    if w.iter().all(|s| s.v == init) {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (mut sx, mut sy, mut sxy, mut sx2) = (
        Kahan::default(),
        Kahan::default(),
        Kahan::default(),
        Kahan::default(),
    );
    let n = w.len() as f64;
    for s in w {
        let x = (s.t - intercept_t) as f64 / 1000.0;
        sx.add(x);
        sy.add(s.v);
        sxy.add(x * s.v);
        sx2.add(x * x);
    }
    let (sx, sy, sxy, sx2) = (sx.value(), sy.value(), sxy.value(), sx2.value());
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn double_exponential(w: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, w[0].v);
    let mut b = w[1].v - w[0].v;
    for (i, s) in w.iter().enumerate().skip(1) {
        let x = sf * s.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each window cut out on its own with binary searches, as evaluation did before.
    fn window(s: &[Sample], end: i64, range: i64, closed: bool) -> &[Sample] {
        let start = end - range;
        let lo = if closed {
            s.partition_point(|x| x.t < start)
        } else {
            s.partition_point(|x| x.t <= start)
        };
        let hi = s.partition_point(|x| x.t <= end);
        &s[lo..hi.max(lo)]
    }

    fn series(seed: u64, n: usize) -> Vec<Sample> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut t, mut v) = (0i64, 0.0f64);
        (0..n)
            .map(|_| {
                t += 1 + (next() % 20_000) as i64;
                v = match next() % 10 {
                    0 => (next() % 50) as f64,
                    1 => v,
                    _ => v + (next() % 1000) as f64 / 7.0,
                };
                Sample::new(t, v)
            })
            .collect()
    }

    const ALL: [RangeFn; 26] = [
        RangeFn::Rate,
        RangeFn::Increase,
        RangeFn::Delta,
        RangeFn::Irate,
        RangeFn::Idelta,
        RangeFn::Deriv,
        RangeFn::PredictLinear,
        RangeFn::Resets,
        RangeFn::Changes,
        RangeFn::AvgOverTime,
        RangeFn::MinOverTime,
        RangeFn::MaxOverTime,
        RangeFn::SumOverTime,
        RangeFn::CountOverTime,
        RangeFn::StddevOverTime,
        RangeFn::StdvarOverTime,
        RangeFn::LastOverTime,
        RangeFn::FirstOverTime,
        RangeFn::TsOfFirstOverTime,
        RangeFn::TsOfLastOverTime,
        RangeFn::TsOfMinOverTime,
        RangeFn::TsOfMaxOverTime,
        RangeFn::PresentOverTime,
        RangeFn::MadOverTime,
        RangeFn::QuantileOverTime,
        RangeFn::DoubleExponential,
    ];

    #[test]
    fn one_pass_equals_each_window_evaluated_alone() {
        let s = series(7, 400);
        let last = s[s.len() - 1].t;
        // Steps finer and coarser than the samples, windows shorter and longer than steps,
        // and ends that fall back (an `@`-free query never has them, but they must work).
        let mut cases: Vec<(Vec<i64>, i64)> = Vec::new();
        for (first, step, range) in [
            (-10_000, 5_000, 60_000),
            (-10_000, 60_000, 30_000),
            (-10_000, 7_000, 0),
            (s[100].t, 1, 5_000),
        ] {
            let ends: Vec<i64> = (0..200).map(|i| first + i * step).collect();
            cases.push((ends, range));
        }
        cases.push((vec![last, 10_000, last / 2, last / 2, 0], 300_000));
        for (ends, range) in &cases {
            let p1: Vec<f64> = ends.iter().map(|e| (e % 10) as f64 / 10.0 + 0.05).collect();
            for f in ALL {
                for closed in [false, true] {
                    let r = Rollup {
                        f,
                        range: *range,
                        ends,
                        ts: ends,
                        closed,
                        p1: Some(&p1),
                        p2: Some(&p1),
                    };
                    let mut got = Vec::new();
                    r.eval(&s, &mut Scratch::default(), &mut got);
                    for (i, &end) in ends.iter().enumerate() {
                        let w = window(&s, end, *range, closed);
                        let single = Rollup {
                            ends: &ends[i..=i],
                            ts: &ends[i..=i],
                            p1: Some(&p1[i..=i]),
                            p2: Some(&p1[i..=i]),
                            ..r
                        };
                        let mut want = Vec::new();
                        single.eval(w, &mut Scratch::default(), &mut want);
                        let same = match (got[i], want[0]) {
                            (Some(a), Some(b)) => {
                                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
                            }
                            (a, b) => a == b,
                        };
                        assert!(
                            same,
                            "{f:?} closed={closed} step {i} (end {end}): {:?} vs {:?}",
                            got[i], want[0]
                        );
                    }
                }
            }
        }
    }

    /// The shape cache gives `extrapolate`'s bits, including windows whose counter zero
    /// point sits a few ulps either side of the gap to the start, where the cheap test must
    /// hand over to the exact one.
    #[test]
    fn cached_shapes_extrapolate_as_each_window_alone() {
        let mut cases: Vec<(Vec<Sample>, i64, i64, f64)> = Vec::new();
        // Steady 15 s samples, windows sliding by 60 s: the cache hits.
        let steady: Vec<Sample> = (0..200)
            .map(|k| Sample::new(k * 15_000 + 3_000, 1_000.0 + (k * 7 % 40) as f64))
            .collect();
        for e in 0..40 {
            let end = 300_000 + e * 60_000;
            let start = end - 300_000;
            let lo = steady.partition_point(|x| x.t <= start);
            let hi = steady.partition_point(|x| x.t <= end);
            let w = steady[lo..hi].to_vec();
            let result = w[w.len() - 1].v - w[0].v;
            cases.push((w, start, end, result));
        }
        // Irregular windows from the generator.
        let s = series(11, 300);
        for k in 0..250 {
            let w = s[k..k + 2 + k % 30].to_vec();
            let (start, end) = (w[0].t - (k as i64 * 37) % 20_000, w[w.len() - 1].t + 1_000);
            let result = w[w.len() - 1].v - w[0].v + (k % 3) as f64 * 17.5;
            cases.push((w, start, end, result));
        }
        // Zero points within a few ulps of the gap to the start (7.5 s).
        for k in -4i32..=4 {
            for result in [3.0f64, 1e-3, 12345.678, 1e300] {
                let sampled = 285.0f64;
                let mut first = result * 7.5 / sampled;
                for _ in 0..k.unsigned_abs() {
                    first = if k < 0 {
                        first.next_down()
                    } else {
                        first.next_up()
                    };
                }
                let w: Vec<Sample> = (0..20)
                    .map(|i| Sample::new(7_500 + i * 15_000, first + i as f64))
                    .collect();
                cases.push((w, 0, 300_000, result));
            }
        }
        for counter in [true, false] {
            for rate in [true, false] {
                for prom2 in [true, false] {
                    let how = Extrapolation {
                        counter,
                        rate,
                        range_s: 300.0,
                        prom2,
                    };
                    let mut shape = Shape::default();
                    for (w, start, end, result) in &cases {
                        let want = extrapolate(*result, w, *start, *end, how);
                        let got = shape.extrapolate(*result, w, *start, *end, how);
                        assert_eq!(
                            got.map(f64::to_bits),
                            want.map(f64::to_bits),
                            "counter={counter} rate={rate} prom2={prom2} start={start} end={end}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rate_adds_counter_resets_inside_the_window_only() {
        let s: Vec<Sample> = [(10, 5.0), (20, 8.0), (30, 2.0), (40, 4.0), (50, 1.0)]
            .iter()
            .map(|&(t, v)| Sample::new(t * 1000, v))
            .collect();
        let ends = [40_000, 50_000];
        let r = Rollup {
            f: RangeFn::Increase,
            range: 25_000,
            ends: &ends,
            ts: &ends,
            closed: false,
            p1: None,
            p2: None,
        };
        let mut out = Vec::new();
        r.eval(&s, &mut Scratch::default(), &mut out);
        // (15, 40]: 8 → 2 (reset, +8) → 4 is 4 - 8 + 8 = 4 over 20 s, extrapolated to 25 s.
        assert_eq!(out[0], Some(4.0 * 25.0 / 20.0));
        // (25, 50]: 2 → 4 → 1 (reset, +4) is 1 - 2 + 4 = 3 over 20 s.
        assert_eq!(out[1], Some(3.0 * 25.0 / 20.0));
        let resets = Rollup {
            f: RangeFn::Resets,
            ..r
        };
        resets.eval(&s, &mut Scratch::default(), &mut out);
        assert_eq!(out, vec![Some(1.0), Some(1.0)]);
    }
}
