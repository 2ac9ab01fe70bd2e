//! Arithmetic and layout operations on [`FloatHistogram`]: addition and subtraction with
//! reconciliation of schemas, zero buckets and custom bounds; compaction; resolution
//! reduction; counter reset detection; and the bucket listing everything else reads.

use super::bounds::{bound, exponential_bound};
use super::layout::{self, Entry};
use super::{
    custom_bounds_match, is_exponential_schema, AddInfo, Bucket, CounterResetHint, FloatHistogram,
    HistogramError,
};

/// The bucket with index `idx` of one side, bounds as Prometheus's iterators give them.
pub(super) fn bucket_at(
    idx: i32,
    count: f64,
    schema: i32,
    positive: bool,
    custom: &[f64],
) -> Bucket {
    let (lower, upper) = if positive {
        (
            bound(idx.wrapping_sub(1), schema, custom),
            bound(idx, schema, custom),
        )
    } else {
        (
            -bound(idx, schema, custom),
            -bound(idx.wrapping_sub(1), schema, custom),
        )
    };
    let (lower_inclusive, upper_inclusive) = if schema == super::CUSTOM_BUCKETS_SCHEMA {
        (idx == 0, true)
    } else {
        (lower < 0.0, upper > 0.0)
    };
    Bucket {
        lower,
        upper,
        lower_inclusive,
        upper_inclusive,
        count,
    }
}

/// Neumaier-compensated addition as Prometheus's `kahansum.Inc`: returns the new sum and
/// the new compensation.
pub(super) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

impl FloatHistogram {
    /// The stored buckets of one side as (index, count).
    fn entries(&self, positive: bool) -> Vec<Entry> {
        if positive {
            layout::decode(&self.positive_spans, &self.positive_buckets)
        } else {
            layout::decode(&self.negative_spans, &self.negative_buckets)
        }
    }

    fn set_entries(&mut self, positive: bool, entries: &[Entry]) {
        let (spans, buckets) = layout::encode(entries);
        if positive {
            self.positive_spans = spans;
            self.positive_buckets = buckets;
        } else {
            self.negative_spans = spans;
            self.negative_buckets = buckets;
        }
    }

    /// The buckets of one side in order of increasing absolute value, merged to `schema`.
    pub(super) fn side_buckets(&self, positive: bool, schema: i32) -> Vec<Bucket> {
        let entries = layout::reduce(&self.entries(positive), self.schema, schema);
        let custom: &[f64] = if positive { &self.custom_values } else { &[] };
        entries
            .into_iter()
            .map(|(idx, c)| bucket_at(idx, c, schema, positive, custom))
            .collect()
    }

    /// All buckets from the lowest to the highest: negative buckets, the zero bucket (when
    /// its count is above zero, as Prometheus's `AllBucketIterator`), positive buckets.
    /// Buckets that reach into the zero bucket have that bound moved to the threshold.
    /// Stored buckets with a count of zero are included.
    pub fn buckets(&self) -> Vec<Bucket> {
        let thr = self.zero_threshold;
        let clamp = |mut b: Bucket| {
            if b.upper < 0.0 && b.upper > -thr {
                b.upper = -thr;
            } else if b.lower > 0.0 && b.lower < thr {
                b.lower = thr;
            }
            b
        };
        let mut out: Vec<Bucket> = self
            .side_buckets(false, self.schema)
            .into_iter()
            .rev()
            .map(clamp)
            .collect();
        if self.zero_count > 0.0 && !self.uses_custom_buckets() {
            out.push(Bucket {
                lower: -thr,
                upper: thr,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
            });
        }
        out.extend(self.side_buckets(true, self.schema).into_iter().map(clamp));
        out
    }

    /// Removes empty buckets, keeping runs of at most `max_empty_buckets` of them between
    /// populated buckets inside a span (Prometheus's `Compact`).
    pub fn compact(&mut self, max_empty_buckets: usize) {
        let (s, b) = layout::compact(
            &self.positive_spans,
            &self.positive_buckets,
            max_empty_buckets,
        );
        self.positive_spans = s;
        self.positive_buckets = b;
        let (s, b) = layout::compact(
            &self.negative_spans,
            &self.negative_buckets,
            max_empty_buckets,
        );
        self.negative_spans = s;
        self.negative_buckets = b;
    }

    /// Merges buckets to the lower resolution of `target_schema`. Refused for custom
    /// buckets, for a target that is not lower, and for spans that do not fit the buckets.
    pub fn reduce_resolution(&mut self, target_schema: i32) -> Result<(), HistogramError> {
        if self.uses_custom_buckets() {
            return Err(HistogramError::ReduceResolution(
                "the histogram has custom buckets".into(),
            ));
        }
        if !is_exponential_schema(target_schema) {
            return Err(HistogramError::ReduceResolution(format!(
                "{target_schema} is not an exponential schema"
            )));
        }
        if target_schema >= self.schema {
            return Err(HistogramError::ReduceResolution(format!(
                "from schema {} to {target_schema}",
                self.schema
            )));
        }
        for (side, spans, buckets) in [
            (
                "positive side",
                &self.positive_spans,
                &self.positive_buckets,
            ),
            (
                "negative side",
                &self.negative_spans,
                &self.negative_buckets,
            ),
        ] {
            if let Some(n) = spans.iter().skip(1).position(|s| s.offset < 0) {
                return Err(HistogramError::NegativeSpanOffset {
                    side,
                    span: n + 2,
                    offset: spans[n + 1].offset,
                });
            }
            let needed: usize = spans.iter().map(|s| s.length as usize).sum();
            if needed != buckets.len() {
                return Err(HistogramError::SpansBucketsMismatch {
                    side,
                    needed,
                    have: buckets.len(),
                });
            }
        }
        self.reduce_unchecked(target_schema);
        Ok(())
    }

    fn reduce_unchecked(&mut self, target_schema: i32) {
        for positive in [true, false] {
            let e = layout::reduce(&self.entries(positive), self.schema, target_schema);
            self.set_entries(positive, &e);
        }
        self.schema = target_schema;
    }

    /// Adds `other` (Prometheus's `Add`): the result has the lower of both schemas and the
    /// wider zero bucket; custom-bucket histograms with different bounds are added on the
    /// bounds both have. Mixing exponential and custom buckets is an error (and leaves
    /// `self` unchanged).
    pub fn add(&mut self, other: &FloatHistogram) -> Result<(), HistogramError> {
        self.add_with_info(other).map(|_| ())
    }

    /// Subtracts `other` as [`FloatHistogram::add`] adds. The counter reset hint is
    /// treated as in addition; the PromQL `-` operator sets it to gauge afterwards.
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<(), HistogramError> {
        self.sub_with_info(other).map(|_| ())
    }

    /// [`FloatHistogram::add`], reporting hint collisions and reconciled custom bounds.
    pub fn add_with_info(&mut self, other: &FloatHistogram) -> Result<AddInfo, HistogramError> {
        self.add_or_sub(other, false)
    }

    /// [`FloatHistogram::sub`], reporting hint collisions and reconciled custom bounds.
    pub fn sub_with_info(&mut self, other: &FloatHistogram) -> Result<AddInfo, HistogramError> {
        self.add_or_sub(other, true)
    }

    fn add_or_sub(
        &mut self,
        other: &FloatHistogram,
        negate: bool,
    ) -> Result<AddInfo, HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramError::IncompatibleSchemas);
        }
        let mut info = AddInfo {
            counter_reset_collision: self.adjust_counter_reset(other),
            custom_bounds_reconciled: false,
        };
        if !self.uses_custom_buckets() {
            let other_zero = self.reconcile_zero_buckets(other);
            if negate {
                self.zero_count -= other_zero;
            } else {
                self.zero_count += other_zero;
            }
        }
        if negate {
            self.count -= other.count;
            self.sum -= other.sum;
        } else {
            self.count += other.count;
            self.sum += other.sum;
        }

        if self.uses_custom_buckets() {
            let a = self.entries(true);
            let b = other.entries(true);
            if custom_bounds_match(&self.custom_values, &other.custom_values) {
                let sum = layout::add_entries(self.schema, self.zero_threshold, negate, &a, &b);
                self.set_entries(true, &sum);
            } else {
                info.custom_bounds_reconciled = true;
                let common = intersect_bounds(&self.custom_values, &other.custom_values);
                let sum = add_on_common_bounds(
                    negate,
                    &a,
                    &self.custom_values,
                    &b,
                    &other.custom_values,
                    &common,
                );
                self.set_entries(true, &sum);
                self.custom_values = common;
            }
            return Ok(info);
        }

        let mut other_schema = other.schema;
        if other.schema < self.schema {
            self.reduce_unchecked(other.schema);
        } else {
            other_schema = self.schema;
        }
        for positive in [true, false] {
            let a = self.entries(positive);
            let b = layout::reduce(&other.entries(positive), other.schema, other_schema);
            let sum = layout::add_entries(self.schema, self.zero_threshold, negate, &a, &b);
            self.set_entries(positive, &sum);
        }
        Ok(info)
    }

    /// Prometheus's `adjustCounterReset`: returns whether one side said counter reset and
    /// the other not.
    fn adjust_counter_reset(&mut self, other: &FloatHistogram) -> bool {
        use CounterResetHint::*;
        let (mine, theirs) = (self.counter_reset_hint, other.counter_reset_hint);
        if mine == theirs || mine == Gauge {
            return false;
        }
        if theirs == Gauge {
            self.counter_reset_hint = Gauge;
            return false;
        }
        if mine == Unknown {
            return false;
        }
        self.counter_reset_hint = Unknown;
        // A collision is one side saying counter reset and the other saying none.
        theirs != Unknown
    }

    /// Widens the zero bucket of `self` until it covers the zero bucket of `other` and
    /// sits at a bucket boundary in both; returns the zero count `other` would have with
    /// that threshold (without changing `other`).
    fn reconcile_zero_buckets(&mut self, other: &FloatHistogram) -> f64 {
        let mut other_zero = other.zero_count;
        let mut other_thr = other.zero_threshold;
        while other_thr != self.zero_threshold {
            if self.zero_threshold > other_thr {
                (other_zero, other_thr) =
                    other.zero_count_for_larger_threshold(self.zero_threshold);
            }
            if other_thr > self.zero_threshold {
                (self.zero_count, self.zero_threshold) =
                    self.zero_count_for_larger_threshold(other_thr);
                self.trim_buckets_in_zero_bucket();
            }
            if other_thr.is_nan() || self.zero_threshold.is_nan() {
                break; // Cannot converge; only for nonsensical thresholds.
            }
        }
        other_zero
    }

    /// The zero count with a zero threshold of `larger` (at least the current one), and the
    /// threshold actually needed: if `larger` falls inside a populated bucket, the
    /// threshold grows to that bucket's outer bound and the bucket is counted in.
    fn zero_count_for_larger_threshold(&self, mut larger: f64) -> (f64, f64) {
        if larger == self.zero_threshold {
            return (self.zero_count, larger);
        }
        let pos = self.side_buckets(true, self.schema);
        let neg = self.side_buckets(false, self.schema);
        'outer: loop {
            let mut zero = self.zero_count;
            for b in &pos {
                if b.lower >= larger {
                    break;
                }
                zero += b.count;
                if b.upper > larger {
                    if b.count != 0.0 {
                        larger = b.upper;
                    }
                    break;
                }
            }
            for b in &neg {
                if b.upper <= -larger {
                    break;
                }
                zero += b.count;
                if b.lower < -larger {
                    if b.count != 0.0 {
                        larger = -b.lower;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (zero, larger);
        }
    }

    /// Empties the buckets inside the zero bucket (their counts are already in the zero
    /// count), then compacts.
    fn trim_buckets_in_zero_bucket(&mut self) {
        let thr = self.zero_threshold;
        for (i, b) in self.side_buckets(true, self.schema).iter().enumerate() {
            if b.lower >= thr {
                break;
            }
            self.positive_buckets[i] = 0.0;
        }
        for (i, b) in self.side_buckets(false, self.schema).iter().enumerate() {
            if b.upper <= -thr {
                break;
            }
            self.negative_buckets[i] = 0.0;
        }
        self.compact(0);
    }

    /// Whether this histogram, following `previous`, shows a counter reset (Prometheus's
    /// `DetectReset`): decided by the hint when it says reset or not; otherwise any count
    /// (total, zero bucket, any bucket, but not the sum) that went down, a populated bucket
    /// that disappeared, a higher resolution or a smaller zero threshold is a reset. A
    /// lower resolution or a wider zero bucket is compared after adapting `previous`.
    pub fn detect_reset(&self, previous: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::CounterReset => return true,
            CounterResetHint::NotCounterReset => return false,
            _ => {}
        }
        if self.count < previous.count {
            return true;
        }
        if self.uses_custom_buckets() {
            if !previous.uses_custom_buckets() {
                return true;
            }
            if !custom_bounds_match(&self.custom_values, &previous.custom_values) {
                return self.reset_with_other_custom_bounds(previous);
            }
        }
        if self.schema > previous.schema {
            return true;
        }
        if self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let (prev_zero, thr) = previous.zero_count_for_larger_threshold(self.zero_threshold);
        if thr != self.zero_threshold {
            return true;
        }
        if self.zero_count < prev_zero {
            return true;
        }
        for positive in [true, false] {
            let cur = self.entries_above(positive, self.zero_threshold, self.schema);
            let prev = previous.entries_above(positive, self.zero_threshold, self.schema);
            if side_reset(&cur, &prev) {
                return true;
            }
        }
        false
    }

    /// One side's buckets merged to `schema`, leaving out those (exponential schemas only)
    /// whose absolute upper bound is at most `start`.
    fn entries_above(&self, positive: bool, start: f64, schema: i32) -> Vec<Entry> {
        let entries = layout::reduce(&self.entries(positive), self.schema, schema);
        if start == 0.0 || !is_exponential_schema(schema) {
            return entries;
        }
        let skip = entries
            .iter()
            .take_while(|(idx, _)| exponential_bound(*idx, schema) <= start)
            .count();
        entries[skip..].to_vec()
    }

    /// Counter reset detection between custom-bucket histograms with different bounds: the
    /// cumulative counts up to each bound both share must not go down.
    fn reset_with_other_custom_bounds(&self, previous: &FloatHistogram) -> bool {
        let cur = self.side_buckets(true, self.schema);
        let prev = previous.side_buckets(true, previous.schema);
        let cur_bounds = &self.custom_values;
        let prev_bounds = &previous.custom_values;
        let mut cur_pos = Rollup::new(&cur);
        let mut prev_pos = Rollup::new(&prev);
        let (mut i, mut j) = (0usize, 0usize);
        while i <= cur_bounds.len() && j <= prev_bounds.len() {
            let cb = cur_bounds.get(i).copied().unwrap_or(f64::INFINITY);
            let pb = prev_bounds.get(j).copied().unwrap_or(f64::INFINITY);
            if cb == pb {
                if cur_pos.sum_up_to(cb) < prev_pos.sum_up_to(cb) {
                    return true;
                }
                i += 1;
                j += 1;
            } else if cb < pb {
                i += 1;
            } else {
                j += 1;
            }
        }
        false
    }
}

/// Walks buckets in order, summing those not yet summed whose upper bound is at most a
/// given bound.
struct Rollup<'a> {
    buckets: &'a [Bucket],
    next: usize,
}

impl<'a> Rollup<'a> {
    fn new(buckets: &'a [Bucket]) -> Self {
        Rollup { buckets, next: 0 }
    }

    fn sum_up_to(&mut self, bound: f64) -> f64 {
        let mut sum = 0.0;
        while let Some(b) = self.buckets.get(self.next) {
            if b.upper > bound {
                break;
            }
            sum += b.count;
            self.next += 1;
        }
        sum
    }
}

/// Whether `cur` lacks a populated bucket of `prev` or has a smaller count in one.
fn side_reset(cur: &[Entry], prev: &[Entry]) -> bool {
    let mut i = 0;
    for &(idx, prev_count) in prev {
        while i < cur.len() && cur[i].0 < idx {
            i += 1;
        }
        match cur.get(i) {
            Some(&(cidx, ccount)) if cidx == idx => {
                if ccount < prev_count {
                    return true;
                }
            }
            _ => {
                if prev_count != 0.0 {
                    return true;
                }
            }
        }
    }
    false
}

/// The bounds present in both ascending lists.
fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Custom buckets of `a` plus (or minus) those of `b`, each mapped onto the `common`
/// bounds: a bucket goes to the first common bucket whose bound is at least its own upper
/// bound. Buckets that end up empty are left out.
fn add_on_common_bounds(
    negate: bool,
    a: &[Entry],
    a_bounds: &[f64],
    b: &[Entry],
    b_bounds: &[f64],
    common: &[f64],
) -> Vec<Entry> {
    let n = common.len() + 1;
    let mut sums = vec![0.0; n];
    let mut comps = vec![0.0; n];
    let mut map = |entries: &[Entry], bounds: &[f64], negate: bool| {
        let mut k = 0usize;
        for &(idx, value) in entries {
            let mut target = n - 1;
            if idx >= 0 && (idx as usize) < bounds.len() {
                let upper = bounds[idx as usize];
                while k < common.len() {
                    if common[k] >= upper {
                        target = k;
                        break;
                    }
                    k += 1;
                }
            }
            let inc = if negate { -value } else { value };
            (sums[target], comps[target]) = kahan_inc(inc, sums[target], comps[target]);
        }
    };
    map(a, a_bounds, false);
    map(b, b_bounds, negate);
    (0..n)
        .filter(|&i| sums[i] != 0.0 || comps[i] != 0.0)
        .map(|i| (i as i32, sums[i]))
        .collect()
}
