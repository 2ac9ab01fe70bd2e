//! The append path: series resolution, per-sample checks, WAL commit and outcome counts.

use std::sync::atomic::Ordering;

use meshlens_model::{
    AppendOutcome, Labels, MetricMetadata, MetricWriter, RawSeries, RejectReason, Sample,
    SeriesHistograms, StorageError, TimeSeries,
};

use super::{FsyncPolicy, SeriesHandle, Tsdb, TsdbError};
use crate::head::{Appended, MemSeries, SeriesRef};
use crate::wal::{Record, SampleBatch, WalHistogram};

/// What one append call gathers before committing it: accepted samples go straight into
/// their WAL record.
struct Accumulator {
    out: AppendOutcome,
    wal: SampleBatch,
    min_t: i64,
    max_t: i64,
}

impl Accumulator {
    fn with_capacity(n: usize) -> Self {
        Accumulator {
            out: AppendOutcome::default(),
            wal: SampleBatch::with_capacity(n),
            min_t: i64::MAX,
            max_t: i64::MIN,
        }
    }
}

/// How many series ahead `append_handles` prefetches: enough to cover a memory access
/// with the work of appending to the series in between.
const PREFETCH_AHEAD: usize = 6;

fn reason_index(r: RejectReason) -> usize {
    match r {
        RejectReason::OutOfOrder => 0,
        RejectReason::OutOfBounds => 1,
        RejectReason::Duplicate => 2,
        RejectReason::InvalidLabels => 3,
    }
}

impl Tsdb {
    pub(super) fn io_err(&self, source: std::io::Error) -> TsdbError {
        TsdbError::Io {
            op: "append to wal in",
            path: self.dir.clone(),
            source,
        }
    }

    /// The series for `labels`, created (and logged to the WAL) when new.
    fn resolve(&self, labels: &Labels) -> Result<(u32, SeriesRef, bool), TsdbError> {
        let mut wal_err = None;
        let (id, series, created) = self.head.get_or_create(labels, |id, labels| {
            if let Err(e) = self.wal.append(&[Record::Series {
                id: u64::from(id),
                labels: labels.clone(),
            }]) {
                wal_err = Some(e);
            }
        });
        match wal_err {
            Some(e) => Err(self.io_err(e)),
            None => Ok((id, series, created)),
        }
    }

    /// A handle for appending to one series without looking its labels up again (what a
    /// scrape loop or a benchmark keeps per series, as Prometheus's appender refs).
    pub fn series_handle(&self, labels: &Labels) -> Result<SeriesHandle, TsdbError> {
        labels
            .validate()
            .map_err(|reason| TsdbError::InvalidLabels { reason })?;
        let (id, series, _) = self.resolve(labels)?;
        Ok(SeriesHandle { id, series })
    }

    /// Whether the head holds the series `raw` names: [`Tsdb::contains_series`] for a
    /// series as a request carried it (what the per-tenant series limit asks).
    pub fn contains_raw(&self, raw: &RawSeries<'_>) -> bool {
        if raw.is_normalised() {
            self.head.lookup_pairs(raw.labels).is_some()
        } else {
            self.head.lookup(&raw.to_labels()).is_some()
        }
    }

    fn min_valid_time(&self) -> i64 {
        match self.opts.retention_time_ms {
            Some(r) => self.newest_time().saturating_sub(r),
            None => i64::MIN,
        }
    }

    /// Appends one series' samples, recording accepted ones for the WAL; a sample older
    /// than the series' newest is taken only within `ooo_window` ms of it.
    fn append_to(
        &self,
        id: u32,
        s: &mut MemSeries,
        samples: &[Sample],
        min_valid: i64,
        ooo_window: i64,
        acc: &mut Accumulator,
    ) {
        for smp in samples {
            if smp.t < min_valid {
                acc.out.add_rejected(RejectReason::OutOfBounds, 1);
                continue;
            }
            match s.append(smp.t, smp.v, ooo_window, self.opts.block_duration_ms) {
                Ok(Appended::New) => {
                    acc.out.accepted += 1;
                    acc.wal.push(u64::from(id), smp.t, smp.v);
                    acc.min_t = acc.min_t.min(smp.t);
                    acc.max_t = acc.max_t.max(smp.t);
                }
                Ok(Appended::Unchanged) => acc.out.accepted += 1,
                Err(r) => acc.out.add_rejected(r, 1),
            }
        }
    }

    fn append_inner(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, TsdbError> {
        let _gate = self.append_gate.read();
        if self.closed.load(Ordering::Acquire) {
            return Err(TsdbError::Closed);
        }
        let mut acc = Accumulator::with_capacity(batch.iter().map(|t| t.samples.len()).sum());
        let min_valid = self.min_valid_time();
        for ts in batch {
            if ts.samples.is_empty() {
                continue;
            }
            let Some(series) = self.series_for(&ts.labels, ts.samples.len(), &mut acc)? else {
                continue;
            };
            self.append_to(
                series.id(),
                &mut series.lock(),
                &ts.samples,
                min_valid,
                self.opts.out_of_order_window_ms,
                &mut acc,
            );
        }
        self.commit(acc)
    }

    /// The series to append `labels`' samples to, created when new; None (the samples
    /// counted as refused) when the labels are invalid. Labels are checked once, when a
    /// series is first seen: a stored series is valid.
    fn series_for(
        &self,
        labels: &Labels,
        samples: usize,
        acc: &mut Accumulator,
    ) -> Result<Option<SeriesRef>, TsdbError> {
        if let Some((_, series)) = self.head.lookup(labels) {
            return Ok(Some(series));
        }
        if labels.is_empty() || labels.validate().is_err() {
            acc.out
                .add_rejected(RejectReason::InvalidLabels, samples as u64);
            return Ok(None);
        }
        let (_, series, created) = self.resolve(labels)?;
        acc.out.series_created += u64::from(created);
        Ok(Some(series))
    }

    /// [`Self::append_inner`] for series borrowed from a request: a series the head holds
    /// is found from the pairs as sent when they are already normalised, without building
    /// `Labels`; only new or unsorted series take the owned path.
    fn append_raw_inner(&self, batch: &[RawSeries<'_>]) -> Result<AppendOutcome, TsdbError> {
        let _gate = self.append_gate.read();
        if self.closed.load(Ordering::Acquire) {
            return Err(TsdbError::Closed);
        }
        let mut acc = Accumulator::with_capacity(batch.iter().map(|t| t.samples.len()).sum());
        let min_valid = self.min_valid_time();
        let wanted: Vec<Option<&[(&str, &str)]>> = batch
            .iter()
            .map(|rs| (!rs.samples.is_empty() && rs.is_normalised()).then_some(rs.labels))
            .collect();
        let mut found = self.head.lookup_many(&wanted);
        for s in found.iter().take(PREFETCH_AHEAD).flatten() {
            s.prefetch();
        }
        for (i, rs) in batch.iter().enumerate() {
            if let Some(Some(ahead)) = found.get(i + PREFETCH_AHEAD) {
                ahead.prefetch();
            }
            if rs.samples.is_empty() {
                continue;
            }
            let series = match found[i].take() {
                Some(s) => s,
                None => match self.series_for(&rs.to_labels(), rs.samples.len(), &mut acc)? {
                    Some(s) => s,
                    None => continue,
                },
            };
            self.append_to(
                series.id(),
                &mut series.lock(),
                rs.samples,
                min_valid,
                self.opts.out_of_order_window_ms,
                &mut acc,
            );
        }
        self.commit(acc)
    }

    /// Appends samples to series by handle; durability and outcome as `MetricWriter::append`.
    pub fn append_handles(
        &self,
        samples: &[(&SeriesHandle, Sample)],
    ) -> Result<AppendOutcome, TsdbError> {
        let _gate = self.append_gate.read();
        if self.closed.load(Ordering::Acquire) {
            return Err(TsdbError::Closed);
        }
        let mut acc = Accumulator::with_capacity(samples.len());
        let min_valid = self.min_valid_time();
        // Two steps ahead: a series' lines at twice the distance, the end of its open
        // chunk (whose address is in those lines) at the distance.
        for (h, _) in samples.iter().take(2 * PREFETCH_AHEAD) {
            h.series.prefetch();
        }
        for (h, _) in samples.iter().take(PREFETCH_AHEAD) {
            h.series.prefetch_tail();
        }
        for (i, (h, smp)) in samples.iter().enumerate() {
            if let Some((ahead, _)) = samples.get(i + 2 * PREFETCH_AHEAD) {
                ahead.series.prefetch();
            }
            if let Some((ahead, _)) = samples.get(i + PREFETCH_AHEAD) {
                ahead.series.prefetch_tail();
            }
            let mut g = h.series.lock();
            if g.removed {
                // Collected since the handle was made: append to the live series instead.
                let labels = h.series.labels();
                drop(g);
                let (id, series, _) = self.resolve(&labels)?;
                self.append_to(
                    id,
                    &mut series.lock(),
                    std::slice::from_ref(smp),
                    min_valid,
                    self.opts.out_of_order_window_ms,
                    &mut acc,
                );
                continue;
            }
            let window = self.opts.out_of_order_window_ms;
            self.append_to(
                h.id,
                &mut g,
                std::slice::from_ref(smp),
                min_valid,
                window,
                &mut acc,
            );
            h.series.note_tail(&g);
        }
        self.commit(acc)
    }

    /// Appends native-histogram samples: series resolved and created as float appends do
    /// (same validation, ids and WAL series records), each sample checked by the rules of
    /// `MemSeries::append_histogram`, the accepted ones logged as one float-histograms
    /// record, durable per the fsync policy before this returns.
    fn append_histograms_inner(
        &self,
        batch: &[SeriesHistograms],
    ) -> Result<AppendOutcome, TsdbError> {
        let _gate = self.append_gate.read();
        if self.closed.load(Ordering::Acquire) {
            return Err(TsdbError::Closed);
        }
        let out = self.append_histograms_within(batch, self.opts.out_of_order_window_ms)?;
        self.count_outcome(&out);
        Ok(out)
    }

    /// The body of [`Self::append_histograms_inner`] with the out-of-order window given,
    /// without counting the outcome; the caller holds the append gate.
    fn append_histograms_within(
        &self,
        batch: &[SeriesHistograms],
        ooo_window: i64,
    ) -> Result<AppendOutcome, TsdbError> {
        // Before any histogram is in the head, so no read can miss it.
        self.holds_histograms.store(true, Ordering::Relaxed);
        let mut acc = Accumulator::with_capacity(0);
        let mut logged: Vec<WalHistogram> = Vec::new();
        let min_valid = self.min_valid_time();
        for sh in batch {
            if sh.samples.is_empty() {
                continue;
            }
            let Some(series) = self.series_for(&sh.labels, sh.samples.len(), &mut acc)? else {
                continue;
            };
            let id = u64::from(series.id());
            let mut g = series.lock();
            for hs in &sh.samples {
                if hs.t < min_valid {
                    acc.out.add_rejected(RejectReason::OutOfBounds, 1);
                    continue;
                }
                match g.append_histogram(hs.t, &hs.h, ooo_window) {
                    Ok(Appended::New) => {
                        acc.out.accepted += 1;
                        logged.push(WalHistogram {
                            series: id,
                            t: hs.t,
                            h: hs.h.clone(),
                        });
                        acc.min_t = acc.min_t.min(hs.t);
                        acc.max_t = acc.max_t.max(hs.t);
                    }
                    Ok(Appended::Unchanged) => acc.out.accepted += 1,
                    Err(r) => acc.out.add_rejected(r, 1),
                }
            }
        }
        self.head.note_times(acc.min_t, acc.max_t);
        if !logged.is_empty() || acc.out.series_created > 0 {
            let records: &[Record] = if logged.is_empty() {
                &[]
            } else {
                &[Record::Histograms(logged)]
            };
            let ticket = self.wal.append(records).map_err(|e| self.io_err(e))?;
            if self.opts.wal_fsync == FsyncPolicy::EveryAppend {
                self.wal.sync(ticket).map_err(|e| self.io_err(e))?;
            }
        }
        Ok(acc.out)
    }

    /// `MetricWriter::append_created_zeros`: the zeros go through the ordinary append
    /// checks with no out-of-order window, so one at or before a series' newest sample is
    /// refused (an equal zero at the same time is "unchanged", as a repeated sample is).
    /// Only what was stored is counted in the engine's counters: a skipped zero is the
    /// normal case for a long-lived counter, not an out-of-order write.
    fn append_created_zeros_inner(
        &self,
        floats: &[RawSeries<'_>],
        histograms: &[SeriesHistograms],
    ) -> Result<AppendOutcome, TsdbError> {
        let _gate = self.append_gate.read();
        if self.closed.load(Ordering::Acquire) {
            return Err(TsdbError::Closed);
        }
        let mut out = AppendOutcome::default();
        if !floats.is_empty() {
            let mut acc = Accumulator::with_capacity(floats.len());
            let min_valid = self.min_valid_time();
            for rs in floats {
                if rs.samples.is_empty() {
                    continue;
                }
                let found = if rs.is_normalised() {
                    self.head.lookup_pairs(rs.labels)
                } else {
                    None
                };
                let series = match found {
                    Some(s) => s,
                    None => match self.series_for(&rs.to_labels(), rs.samples.len(), &mut acc)? {
                        Some(s) => s,
                        None => continue,
                    },
                };
                self.append_to(
                    series.id(),
                    &mut series.lock(),
                    rs.samples,
                    min_valid,
                    0,
                    &mut acc,
                );
            }
            out.merge(&acc.out);
            // Committed with the stored zeros counted, the skipped ones not.
            acc.out = AppendOutcome {
                accepted: acc.out.accepted,
                series_created: acc.out.series_created,
                ..Default::default()
            };
            self.commit(acc)?;
        }
        if !histograms.is_empty() {
            let h = self.append_histograms_within(histograms, 0)?;
            self.count_outcome(&AppendOutcome {
                accepted: h.accepted,
                ..Default::default()
            });
            out.merge(&h);
        }
        Ok(out)
    }

    fn count_outcome(&self, out: &AppendOutcome) {
        self.counters
            .appended
            .fetch_add(out.accepted, Ordering::Relaxed);
        for r in RejectReason::ALL {
            self.counters.rejected[reason_index(r)].fetch_add(out.count(r), Ordering::Relaxed);
        }
    }

    /// Writes the accepted samples to the WAL (synced per policy) and counts the outcome.
    fn commit(&self, acc: Accumulator) -> Result<AppendOutcome, TsdbError> {
        let Accumulator {
            out,
            mut wal,
            min_t,
            max_t,
        } = acc;
        self.head.note_times(min_t, max_t);
        // A batch that only created series still takes a ticket, so their records are synced.
        if !wal.is_empty() || out.series_created > 0 {
            let ticket = self
                .wal
                .append_batch(&mut wal)
                .map_err(|e| self.io_err(e))?;
            if self.opts.wal_fsync == FsyncPolicy::EveryAppend {
                self.wal.sync(ticket).map_err(|e| self.io_err(e))?;
            }
        }
        self.counters
            .appended
            .fetch_add(out.accepted, Ordering::Relaxed);
        for r in RejectReason::ALL {
            self.counters.rejected[reason_index(r)].fetch_add(out.count(r), Ordering::Relaxed);
        }
        Ok(out)
    }
}

impl MetricWriter for Tsdb {
    fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
        Ok(self.append_inner(batch)?)
    }

    fn append_raw(&self, batch: &[RawSeries<'_>]) -> Result<AppendOutcome, StorageError> {
        Ok(self.append_raw_inner(batch)?)
    }

    fn append_histograms(&self, batch: &[SeriesHistograms]) -> Result<AppendOutcome, StorageError> {
        Ok(self.append_histograms_inner(batch)?)
    }

    fn append_created_zeros(
        &self,
        floats: &[RawSeries<'_>],
        histograms: &[SeriesHistograms],
    ) -> Result<AppendOutcome, StorageError> {
        Ok(self.append_created_zeros_inner(floats, histograms)?)
    }

    fn append_metadata(&self, metadata: &[MetricMetadata]) -> Result<(), StorageError> {
        let mut changed = Vec::new();
        {
            let mut m = self.metadata.write();
            for md in metadata {
                if m.get(&md.metric_family) != Some(md) {
                    m.insert(md.metric_family.clone(), md.clone());
                    changed.push(md.clone());
                }
            }
        }
        if !changed.is_empty() {
            self.wal
                .append(&[Record::Metadata(changed)])
                .map_err(|e| StorageError::io("append metadata to wal", e))?;
        }
        Ok(())
    }

    fn append_exemplars(
        &self,
        batch: &[meshlens_model::SeriesExemplars],
    ) -> Result<meshlens_model::ExemplarOutcome, StorageError> {
        Ok(self.append_exemplars_inner(batch)?)
    }
}
