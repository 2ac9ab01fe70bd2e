//! Query results as the HTTP API returns them, and the columnar values used inside.

use meshlens_model::{Labels, Sample, SeriesSamples};

#[derive(Clone, Debug, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
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

/// One series of an instant-vector expression: a value (or none) per evaluation step.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub labels: Labels,
    pub points: Vec<Option<f64>>,
}

impl Series {
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
}

#[derive(Clone, Debug)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
    Str(String),
}
