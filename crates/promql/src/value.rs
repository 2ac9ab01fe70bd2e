//! Query results as the HTTP API returns them, and the columnar values used inside.

use std::sync::Arc;

use meshlens_model::{FloatHistogram, HistogramSample, Labels, Sample, SeriesSamples};

/// One element of an instant vector: a float `v`, or a native histogram `h` (then `v` is 0).
#[derive(Clone, Debug, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
    pub h: Option<Arc<FloatHistogram>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, v: String },
    Vector(Vec<VectorSample>),
    Matrix(Vec<SeriesSamples>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

/// One series of an instant-vector expression: a value (or none) per evaluation step. A
/// step holds a float in `points` or a native histogram in `hists`; `hists` stays empty
/// for a series without histograms, so float-only evaluation never touches it.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub labels: Labels,
    pub points: Vec<Option<f64>>,
    pub hists: Vec<Option<Arc<FloatHistogram>>>,
    /// The metric name (and type and unit) go when the query's result is complete
    /// (Prometheus's `DropName`, with [`crate::EngineOptions::delayed_name_removal`]; always
    /// false without it, the name then going at once).
    pub drop_name: bool,
}

/// The index in `out` of the series with `labels`, added without values (`steps` empty
/// steps) when there is none yet: how results gather values step by step.
pub(crate) fn series_slot(
    out: &mut Vec<Series>,
    index: &mut std::collections::HashMap<Labels, usize>,
    labels: Labels,
    steps: usize,
) -> usize {
    *index.entry(labels.clone()).or_insert_with(|| {
        out.push(Series::floats(labels, vec![None; steps]));
        out.len() - 1
    })
}

/// The labels of a series an operation drops the metric name of, and whether the name is
/// still to go: dropped at once, or kept and marked with delayed name removal (`delayed`).
pub(crate) fn name_dropped(labels: Labels, delayed: bool) -> (Labels, bool) {
    if delayed {
        (labels, true)
    } else {
        (labels.without_metric_name(), false)
    }
}

impl Series {
    /// A series of floats only.
    pub fn floats(labels: Labels, points: Vec<Option<f64>>) -> Self {
        Series {
            labels,
            points,
            hists: Vec::new(),
            drop_name: false,
        }
    }

    /// The histogram at step `i`, if the step holds one.
    pub fn hist(&self, i: usize) -> Option<&Arc<FloatHistogram>> {
        self.hists.get(i).and_then(Option::as_ref)
    }

    /// Whether any step holds a histogram.
    pub fn has_hists(&self) -> bool {
        self.hists.iter().any(Option::is_some)
    }

    /// The histogram points, as samples at the evaluation timestamps `ts`.
    pub fn histogram_samples(&self, ts: &[i64]) -> Vec<HistogramSample> {
        ts.iter()
            .zip(&self.hists)
            .filter_map(|(t, h)| {
                h.as_ref().map(|h| HistogramSample {
                    t: *t,
                    h: h.clone(),
                })
            })
            .collect()
    }

    /// The points that have values, as samples at the evaluation timestamps `ts`.
    pub fn samples(&self, ts: &[i64]) -> Vec<Sample> {
        ts.iter()
            .zip(&self.points)
            .filter_map(|(t, p)| p.map(|v| Sample::new(*t, v)))
            .collect()
    }
}

/// A range-vector expression's series: every sample needed by any step's window.
#[derive(Clone, Debug)]
pub(crate) struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub hists: Vec<HistogramSample>,
    /// A subquery's series whose name is to go ([`Series::drop_name`]).
    pub drop_name: bool,
}

/// A range vector: series plus, per step, the window `(end - range, end]`, or
/// `[end - range, end]` when `closed` (Prometheus 2).
#[derive(Clone, Debug)]
pub(crate) struct Matrix {
    pub series: Vec<RangeSeries>,
    pub range: i64,
    pub ends: Vec<i64>,
    /// A sample exactly at a window's start belongs to it ([`crate::EngineOptions::closed_ranges`]).
    pub closed: bool,
}

impl Matrix {
    /// The samples of one series inside step `i`'s window.
    pub fn window<'a>(&self, s: &'a RangeSeries, i: usize) -> &'a [Sample] {
        let end = self.ends[i];
        let start = end - self.range;
        let lo = if self.closed {
            s.samples.partition_point(|x| x.t < start)
        } else {
            s.samples.partition_point(|x| x.t <= start)
        };
        let hi = s.samples.partition_point(|x| x.t <= end);
        &s.samples[lo..hi.max(lo)]
    }

    /// The histogram samples of one series inside step `i`'s window.
    pub fn hist_window<'a>(&self, s: &'a RangeSeries, i: usize) -> &'a [HistogramSample] {
        let end = self.ends[i];
        let start = end - self.range;
        let lo = if self.closed {
            s.hists.partition_point(|x| x.t < start)
        } else {
            s.hists.partition_point(|x| x.t <= start)
        };
        let hi = s.hists.partition_point(|x| x.t <= end);
        &s.hists[lo..hi.max(lo)]
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
    Str(String),
}
