//! [`MetricWriter`] and [`MetricReader`] over the `series`, `samples` and `histograms`
//! tables.
//!
//! Writes. A batch becomes at most two inserts: `series` rows for (series, UTC day) pairs
//! this process has not written yet, then all samples (float samples to `samples`, native
//! histogram samples to `histograms`, keyed and deduplicated alike). Both are RowBinary.
//! `Ok` means ClickHouse acknowledged both (with a cluster: on the series' shard).
//!
//! Idempotence. Inserts are at-least-once: a batch retried after a lost answer is stored
//! twice. Plain MergeTree has no block deduplication (only Replicated tables do), so
//! duplicates are removed on the query side instead: rows are keyed by (fingerprint, t),
//! ReplacingMergeTree folds them when parts merge, and until then the reader keeps one row
//! per key (`GROUP BY fingerprint, t` where rows travel, and again while decoding). A
//! retried sample with a different value at the same timestamp is not detected: one of the
//! two is returned.
//!
//! Reads. Matchers and the time range become SQL on `series` (which series, via the day
//! column) and `samples` (`t BETWEEN`, and the series found, by fingerprint). Each shard
//! groups its samples per series, so a series travels as one row holding its `(t, value)`
//! array, decoded straight into its vector here, where they are deduplicated, sorted, and
//! the series sorted by labels. A limited selection travels as rows instead, so ClickHouse
//! can stop at the limit. `series`, `label_names` and
//! `label_values` read only the `series` table, so their time filter has day granularity
//! (like Prometheus' block granularity): a series with samples on a day in the range
//! counts.

use std::collections::{HashMap, HashSet};

use meshlens_model::{
    AppendOutcome, HistogramSample, LabelMatcher, Labels, MetricMetadata, MetricReader,
    MetricWriter, RejectReason, Sample, SeriesHistograms, SeriesSamples, StorageError, TimeSeries,
    METRIC_NAME,
};
use parking_lot::Mutex;

use crate::client::Client;
use crate::histograms;
use crate::ready::Gate;
use crate::rowbinary::{RowReader, RowWriter};
use crate::schema::Schema;
use crate::sql::{label_expr, matchers_condition, quote};
use crate::time::{clamp_day, date_string, day_of_ms, MAX_DAY, MS_PER_DAY};
use crate::ClickHouseError;

/// How many (series, day) pairs the writer remembers as written before it starts over.
/// Forgetting only costs a repeated `series` row, which merges fold.
const SEEN_CAPACITY: usize = 1 << 20;

/// Series a selection names by fingerprint in its SQL (at most about 21 bytes each, far
/// below ClickHouse's 256 KiB `max_query_size`); more are found again by their matchers.
const MAX_LISTED_SERIES: usize = 4000;

/// The series' key in ClickHouse, and its shard: the label set's stable FNV-1a hash,
/// finalised with a 64-bit mixer. FNV's low bits depend on few input bits, and the
/// Distributed engine picks the shard from `fingerprint % shards`, so the mix spreads
/// series evenly over any shard count.
pub fn fingerprint(labels: &Labels) -> u64 {
    let mut h = labels.stable_hash();
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A series as [`admit`] judges it: float samples or native histogram samples.
pub trait Admissible: Sized {
    type Sample: Clone;
    fn labels(&self) -> &Labels;
    fn samples(&self) -> &[Self::Sample];
    fn time(s: &Self::Sample) -> i64;
    fn with_samples(&self, samples: Vec<Self::Sample>) -> Self;
}

impl Admissible for TimeSeries {
    type Sample = Sample;
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn samples(&self) -> &[Sample] {
        &self.samples
    }
    fn time(s: &Sample) -> i64 {
        s.t
    }
    fn with_samples(&self, samples: Vec<Sample>) -> Self {
        TimeSeries {
            labels: self.labels.clone(),
            samples,
        }
    }
}

impl Admissible for SeriesHistograms {
    type Sample = HistogramSample;
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn samples(&self) -> &[HistogramSample] {
        &self.samples
    }
    fn time(s: &HistogramSample) -> i64 {
        s.t
    }
    fn with_samples(&self, samples: Vec<HistogramSample>) -> Self {
        SeriesHistograms {
            labels: self.labels.clone(),
            samples,
        }
    }
}

/// The part of `batch` that [`MetricStore::append`] (or `append_histograms`) would store,
/// and the outcome it would report (without `series_created`, which only the store knows).
/// A writer that acknowledges before inserting (the server's durable buffer) answers with
/// this outcome and buffers only what ClickHouse can hold, so a later insert never refuses
/// what was acknowledged.
pub fn admit<S: Admissible>(batch: &[S]) -> (Vec<S>, AppendOutcome) {
    let mut out = AppendOutcome::default();
    let mut kept = Vec::with_capacity(batch.len());
    for ts in batch {
        let samples = ts.samples();
        if samples.is_empty() {
            continue;
        }
        if ts.labels().is_empty() || ts.labels().validate().is_err() {
            out.add_rejected(RejectReason::InvalidLabels, samples.len() as u64);
            continue;
        }
        let storable: Vec<S::Sample> = samples
            .iter()
            .filter(|s| day_of_ms(S::time(s)).is_some())
            .cloned()
            .collect();
        out.accepted += storable.len() as u64;
        out.add_rejected(
            RejectReason::OutOfBounds,
            (samples.len() - storable.len()) as u64,
        );
        if !storable.is_empty() {
            kept.push(ts.with_samples(storable));
        }
    }
    (kept, out)
}

/// What this process has written, so a series row is sent once per day, not per batch.
#[derive(Default)]
struct Seen {
    /// (fingerprint, day) pairs whose `series` row is known written.
    pairs: HashSet<(u64, u16)>,
    /// Fingerprints written at all: what `series_created` counts against.
    series: HashSet<u64>,
}

/// Metrics over ClickHouse.
pub struct MetricStore {
    client: std::sync::Arc<Client>,
    schema: Schema,
    seen: Mutex<Seen>,
    /// ClickHouse's `max_rows_to_read` for every select (0: none): a scan guard that fails a
    /// query with [`StorageError::TooManySamples`] naming this limit.
    max_rows_to_read: u64,
    /// Every read and insert waits for the schema (see [`Gate`]).
    gate: std::sync::Arc<Gate>,
    /// Metadata inserted by this process, per family: only changes are inserted again
    /// (scrapes send the same metadata every interval).
    written_metadata: Mutex<HashMap<String, MetricMetadata>>,
}

impl MetricStore {
    pub fn new(
        client: std::sync::Arc<Client>,
        schema: Schema,
        max_rows_to_read: u64,
        gate: std::sync::Arc<Gate>,
    ) -> Self {
        MetricStore {
            client,
            schema,
            seen: Mutex::new(Seen::default()),
            max_rows_to_read,
            gate,
            written_metadata: Mutex::new(HashMap::new()),
        }
    }

    fn read(&self, sql: &str) -> Result<bytes::Bytes, StorageError> {
        self.gate.check()?;
        crate::read(&self.client, self.max_rows_to_read, sql)
    }

    /// `WHERE` for the series table: matchers plus the days of `[mint, maxt]`.
    fn series_where(&self, matchers: &[LabelMatcher], mint: i64, maxt: i64) -> String {
        format!(
            "day >= toDate({}) AND day <= toDate({}) AND {}",
            quote(&date_string(clamp_day(mint))),
            quote(&date_string(clamp_day(maxt))),
            matchers_condition(matchers)
        )
    }

    /// Matching series: fingerprint and labels.
    fn matching_series(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<HashMap<u64, Labels>, StorageError> {
        let sql = format!(
            "SELECT fingerprint, any(label_names), any(label_values) FROM {} WHERE {} \
             GROUP BY fingerprint FORMAT RowBinary",
            self.schema.table("series"),
            self.series_where(matchers, mint, maxt)
        );
        let b = self.read(&sql)?;
        let mut r = RowReader::new(&b);
        let mut out = HashMap::new();
        while !r.is_done() {
            let fp = r.u64()?;
            let names = r.strings()?;
            let values = r.strings()?;
            if names.len() != values.len() {
                return Err(ClickHouseError::Decode {
                    reason: format!(
                        "series {fp:016x} has {} label names but {} values",
                        names.len(),
                        values.len()
                    ),
                }
                .into());
            }
            out.insert(fp, Labels::from_pairs(names.into_iter().zip(values)));
        }
        Ok(out)
    }

    /// The selection, with at most `limit` samples when given (`TooManySamples` beyond).
    fn select_inner(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        limit: Option<usize>,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        if mint > maxt {
            return Ok(Vec::new());
        }
        let mut series = self.matching_series(matchers, mint, maxt)?;
        if series.is_empty() {
            return Ok(Vec::new());
        }
        // Stored times lie within the days `append` accepts; clamping to them keeps the
        // SQL's literals small and the same for every unbounded query.
        let lo = mint.clamp(-1, (MAX_DAY + 1) * MS_PER_DAY);
        let hi = maxt.clamp(-1, (MAX_DAY + 1) * MS_PER_DAY);
        // The series just found, named in the SQL when they are few enough to keep it
        // short; else the matchers again, as a subquery naming the shard-local series
        // table: inside a distributed query it runs on each shard, which holds the series
        // of its own samples.
        let fingerprints = if series.len() <= MAX_LISTED_SERIES {
            let mut list = String::with_capacity(series.len() * 21);
            for (i, fp) in series.keys().enumerate() {
                if i > 0 {
                    list.push_str(", ");
                }
                list.push_str(&fp.to_string());
            }
            list
        } else {
            format!(
                "SELECT fingerprint FROM {} WHERE {}",
                self.schema.local("series"),
                self.series_where(matchers, mint, maxt)
            )
        };
        let filter = format!("t >= {lo} AND t <= {hi} AND fingerprint IN ({fingerprints})");
        let mut grouped = match limit {
            Some(n) => self.sample_rows(&filter, n)?,
            None => self.sample_arrays(&filter)?,
        };
        let floats: usize = grouped.values().map(Vec::len).sum();
        let mut histograms =
            self.histogram_rows(&filter, limit.map(|n| n.saturating_sub(floats)))?;
        if let Some(limit) = limit {
            if floats + histograms.values().map(Vec::len).sum::<usize>() > limit {
                return Err(StorageError::TooManySamples { limit });
            }
        }
        for fp in histograms.keys() {
            grouped.entry(*fp).or_default();
        }
        let mut out: Vec<SeriesSamples> = grouped
            .into_iter()
            .filter_map(|(fp, mut samples)| {
                // Sorting makes the contract independent of the SQL (arrays come in the
                // order the shard read them, which is sorted within a part, so this is
                // cheap). Equal timestamps are a retried insert: keep the first.
                samples.sort_by_key(|s| s.t);
                samples.dedup_by_key(|s| s.t);
                let mut histograms = histograms.remove(&fp).unwrap_or_default();
                histograms.sort_by_key(|h| h.t);
                histograms.dedup_by_key(|h| h.t);
                Some(SeriesSamples {
                    labels: series.remove(&fp)?,
                    samples,
                    histograms,
                })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// The samples of `filter`, one row per series with its `(t, value)` pairs as one
    /// array: 16 bytes a sample on the wire, decoded straight into the series' vector.
    /// Grouped on the shards without a merge on the one asked (`distributed_group_by_no_merge`):
    /// a series' samples all live on its shard. Should one series ever come from two
    /// shards, its arrays are joined here.
    fn sample_arrays(&self, filter: &str) -> Result<HashMap<u64, Vec<Sample>>, StorageError> {
        let sql = format!(
            "SELECT fingerprint, groupArray((t, value)) FROM {} WHERE {filter} \
             GROUP BY fingerprint FORMAT RowBinary",
            self.schema.table("samples"),
        );
        let settings = [("distributed_group_by_no_merge", "1".to_string())];
        let b = crate::read_with(&self.client, self.max_rows_to_read, &sql, &settings)?;
        let mut r = RowReader::new(&b);
        let mut grouped: HashMap<u64, Vec<Sample>> = HashMap::new();
        while !r.is_done() {
            let fp = r.u64()?;
            let n = r.fixed_len(16)?;
            let samples = grouped.entry(fp).or_default();
            samples.reserve(n);
            for _ in 0..n {
                let t = r.i64()?;
                let v = r.f64()?;
                samples.push(Sample { t, v });
            }
        }
        Ok(grouped)
    }

    /// The samples of `filter` as rows, deduplicated and cut at `limit + 1` by ClickHouse,
    /// so an oversized selection is refused without its samples crossing the network.
    fn sample_rows(
        &self,
        filter: &str,
        limit: usize,
    ) -> Result<HashMap<u64, Vec<Sample>>, StorageError> {
        // Deduplicated by GROUP BY, which a distributed query merges before its LIMIT: with
        // `LIMIT 1 BY`, shards cut at the LIMIT before dropping a retried insert's repeats,
        // and a selection over the limit came back short instead of refused.
        let sql = format!(
            "SELECT fingerprint, t, any(value) FROM {} WHERE {filter} \
             GROUP BY fingerprint, t LIMIT {} FORMAT RowBinary",
            self.schema.table("samples"),
            limit.saturating_add(1)
        );
        let b = self.read(&sql)?;
        if b.len() % 24 != 0 {
            return Err(ClickHouseError::Decode {
                reason: format!("samples answer of {} bytes is not whole rows", b.len()),
            }
            .into());
        }
        let rows = b.len() / 24;
        if rows > limit {
            return Err(StorageError::TooManySamples { limit });
        }
        let mut r = RowReader::new(&b);
        let mut grouped: HashMap<u64, Vec<Sample>> = HashMap::new();
        for _ in 0..rows {
            let fp = r.u64()?;
            let t = r.i64()?;
            let v = r.f64()?;
            grouped.entry(fp).or_default().push(Sample { t, v });
        }
        Ok(grouped)
    }

    /// The native histogram samples of `filter`, deduplicated by ClickHouse, at most
    /// `limit + 1` of them (what the float samples left of a selection's limit, and one
    /// more to tell it was passed) so an oversized selection stops in ClickHouse.
    fn histogram_rows(
        &self,
        filter: &str,
        limit: Option<usize>,
    ) -> Result<HashMap<u64, Vec<HistogramSample>>, StorageError> {
        let cut = limit.map_or(String::new(), |n| format!(" LIMIT {}", n.saturating_add(1)));
        // One whole row per key (a tuple, so a retried insert's repeats are never mixed),
        // deduplicated as `sample_rows` explains.
        let sql = format!(
            "SELECT fingerprint, t, any(tuple({})) FROM {} WHERE {filter} \
             GROUP BY fingerprint, t{cut} FORMAT RowBinary",
            histograms::VALUE_COLUMNS,
            self.schema.table("histograms"),
        );
        let b = self.read(&sql)?;
        let mut r = RowReader::new(&b);
        let mut grouped: HashMap<u64, Vec<HistogramSample>> = HashMap::new();
        while !r.is_done() {
            let (fp, h) = histograms::get(&mut r)?;
            grouped.entry(fp).or_default().push(h);
        }
        Ok(grouped)
    }

    /// Inserts one batch's rows of `table` (`columns` in `rows`' order), each sample `put`
    /// there, after the `series` rows of every (series, UTC day) it touches that this process
    /// has not written yet: a reader that sees a sample can then always find its labels.
    fn append_rows<'b, S: 'b>(
        &self,
        batch: impl Iterator<Item = (&'b Labels, &'b [S])>,
        time: impl Fn(&S) -> i64,
        put: impl Fn(&mut RowWriter, u64, &S),
        (table, columns): (&str, &str),
    ) -> Result<AppendOutcome, StorageError> {
        let mut out = AppendOutcome::default();
        let mut series_rows = RowWriter::new();
        let mut rows = RowWriter::new();
        let mut new_pairs: HashSet<(u64, u16)> = HashSet::new();
        let mut new_series: HashSet<u64> = HashSet::new();
        {
            let seen = self.seen.lock();
            for (labels, samples) in batch {
                if samples.is_empty() {
                    continue;
                }
                if labels.is_empty() || labels.validate().is_err() {
                    out.add_rejected(RejectReason::InvalidLabels, samples.len() as u64);
                    continue;
                }
                let fp = fingerprint(labels);
                let mut days: Vec<u16> = Vec::new();
                for s in samples {
                    // Days are stored as `Date` (1970-01-01 to 2105-12-31 on 18.16); other times cannot be
                    // partitioned or indexed, so they are refused, not wrapped.
                    let Some(day) = day_of_ms(time(s)) else {
                        out.add_rejected(RejectReason::OutOfBounds, 1);
                        continue;
                    };
                    put(&mut rows, fp, s);
                    out.accepted += 1;
                    if days.last() != Some(&day) && !days.contains(&day) {
                        days.push(day);
                    }
                }
                for day in days {
                    if seen.pairs.contains(&(fp, day)) || !new_pairs.insert((fp, day)) {
                        continue;
                    }
                    series_rows.u16(day);
                    series_rows.u64(fp);
                    series_rows.string(labels.metric_name().unwrap_or(""));
                    series_rows.strings(labels.iter().map(|l| l.name.as_str()));
                    series_rows.strings(labels.iter().map(|l| l.value.as_str()));
                    if !seen.series.contains(&fp) {
                        new_series.insert(fp);
                    }
                }
            }
        }
        if !series_rows.is_empty() || !rows.is_empty() {
            self.gate.check()?;
        }
        let settings = self.schema.insert_settings();
        if !series_rows.is_empty() {
            self.client.insert(
                &format!(
                    "INSERT INTO {} (day, fingerprint, metric_name, label_names, label_values) FORMAT RowBinary",
                    self.schema.table("series")
                ),
                series_rows.into_bytes(),
                &settings,
            )?;
        }
        if !rows.is_empty() {
            self.client.insert(
                &format!(
                    "INSERT INTO {} ({columns}) FORMAT RowBinary",
                    self.schema.table(table)
                ),
                rows.into_bytes(),
                &settings,
            )?;
        }
        // `series_created` counts series new to this process (ClickHouse is not asked:
        // that would cost a query per batch).
        out.series_created = new_series.len() as u64;
        let mut seen = self.seen.lock();
        if seen.pairs.len() + new_pairs.len() > SEEN_CAPACITY {
            seen.pairs.clear();
        }
        if seen.series.len() + new_series.len() > SEEN_CAPACITY {
            seen.series.clear();
        }
        seen.pairs.extend(new_pairs);
        seen.series.extend(new_series);
        Ok(out)
    }

    fn strings_query(&self, sql: &str) -> Result<Vec<String>, StorageError> {
        self.gate.check()?;
        crate::read_strings(&self.client, self.max_rows_to_read, sql)
    }
}

impl MetricWriter for MetricStore {
    fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
        self.append_rows(
            batch.iter().map(|ts| (&ts.labels, &ts.samples[..])),
            |s| s.t,
            |w, fp, s| {
                w.u64(fp);
                w.i64(s.t);
                w.f64(s.v);
            },
            ("samples", "fingerprint, t, value"),
        )
    }

    fn append_histograms(&self, batch: &[SeriesHistograms]) -> Result<AppendOutcome, StorageError> {
        self.append_rows(
            batch.iter().map(|sh| (&sh.labels, &sh.samples[..])),
            |h| h.t,
            histograms::put,
            (
                "histograms",
                &format!("fingerprint, t, {}", histograms::VALUE_COLUMNS),
            ),
        )
    }

    /// Inserts the families whose metadata changed since this process last inserted them,
    /// stamped with the time, so the reader takes each family's latest (as the embedded
    /// TSDB keeps only the latest).
    fn append_metadata(&self, metadata: &[MetricMetadata]) -> Result<(), StorageError> {
        let changed: Vec<&MetricMetadata> = {
            let written = self.written_metadata.lock();
            let mut seen = HashSet::new();
            metadata
                .iter()
                .filter(|m| !m.metric_family.is_empty())
                .filter(|m| written.get(&m.metric_family) != Some(*m))
                // The last of a family repeated in one batch wins, as it would in the TSDB.
                .rev()
                .filter(|m| seen.insert(m.metric_family.as_str()))
                .collect()
        };
        if changed.is_empty() {
            return Ok(());
        }
        self.gate.check()?;
        let now = meshlens_model::time::now_ms();
        let mut rows = RowWriter::new();
        for m in &changed {
            rows.string(&m.metric_family);
            rows.string(&m.kind);
            rows.string(&m.help);
            rows.string(&m.unit);
            rows.u64(u64::try_from(now).unwrap_or(0));
        }
        self.client.insert(
            &format!(
                "INSERT INTO {} (metric_family, type, help, unit, updated_ms) FORMAT RowBinary",
                self.schema.table("metadata")
            ),
            rows.into_bytes(),
            &self.schema.insert_settings(),
        )?;
        let mut written = self.written_metadata.lock();
        if written.len() + changed.len() > SEEN_CAPACITY {
            written.clear();
        }
        for m in changed {
            written.insert(m.metric_family.clone(), m.clone());
        }
        Ok(())
    }
}

impl MetricReader for MetricStore {
    fn select(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        self.select_inner(matchers, mint, maxt, None)
    }

    /// Stops ClickHouse at `max_samples + 1` rows (`LIMIT`, after deduplication), so an
    /// oversized selection is refused without its samples crossing the network.
    fn select_limited(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        max_samples: usize,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        self.select_inner(matchers, mint, maxt, Some(max_samples))
    }

    fn series(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        if mint > maxt {
            return Ok(Vec::new());
        }
        let mut labels: Vec<Labels> = self
            .matching_series(matchers, mint, maxt)?
            .into_values()
            .collect();
        labels.sort();
        labels.dedup();
        Ok(labels)
    }

    fn label_names(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        if mint > maxt {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT arrayJoin(label_names) AS n FROM {} WHERE {} ORDER BY n FORMAT RowBinary",
            self.schema.table("series"),
            self.series_where(matchers, mint, maxt)
        );
        self.strings_query(&sql)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        if mint > maxt {
            return Ok(Vec::new());
        }
        let present = if name == METRIC_NAME {
            "metric_name != ''".to_string()
        } else {
            format!("has(label_names, {})", quote(name))
        };
        let sql = format!(
            "SELECT DISTINCT {} AS v FROM {} WHERE {present} AND {} ORDER BY v FORMAT RowBinary",
            label_expr(name),
            self.schema.table("series"),
            self.series_where(matchers, mint, maxt)
        );
        self.strings_query(&sql)
    }

    /// Each family's latest metadata (by insert time), sorted by family.
    fn metadata(&self, metric: Option<&str>) -> Result<Vec<MetricMetadata>, StorageError> {
        let filter = match metric {
            Some(m) => format!("WHERE metric_family = {}", quote(m)),
            None => String::new(),
        };
        let sql = format!(
            "SELECT metric_family, argMax(type, updated_ms), argMax(help, updated_ms), \
             argMax(unit, updated_ms) FROM {} {filter} GROUP BY metric_family \
             ORDER BY metric_family FORMAT RowBinary",
            self.schema.table("metadata")
        );
        let b = self.read(&sql)?;
        let mut r = RowReader::new(&b);
        let mut out = Vec::new();
        while !r.is_done() {
            out.push(MetricMetadata {
                metric_family: r.string()?,
                kind: r.string()?,
                help: r.string()?,
                unit: r.string()?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_spread_over_two_shards() {
        let mut per_shard = [0u32; 2];
        for i in 0..1000 {
            let l = Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]);
            per_shard[(fingerprint(&l) % 2) as usize] += 1;
        }
        assert!(per_shard.iter().all(|&n| n > 400), "{per_shard:?}");
    }
}
