//! STUB (replaced by branch `hist`): native histogram types.
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    #[default]
    Unknown,
    CounterReset,
    NotCounterReset,
    Gauge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketSpan {
    pub offset: i32,
    pub length: u32,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<BucketSpan>,
    pub negative_spans: Vec<BucketSpan>,
    pub positive_buckets: Vec<f64>,
    pub negative_buckets: Vec<f64>,
    pub custom_values: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSample {
    pub t: i64,
    pub h: Arc<FloatHistogram>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesHistograms {
    pub labels: crate::Labels,
    pub samples: Vec<HistogramSample>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
}

#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum HistogramError {
    #[error("{0}")]
    Invalid(String),
}

impl FloatHistogram {
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == -53
    }
    pub fn add(&mut self, o: &FloatHistogram) -> Result<(), HistogramError> {
        self.count += o.count;
        self.sum += o.sum;
        Ok(())
    }
    pub fn sub(&mut self, o: &FloatHistogram) -> Result<(), HistogramError> {
        self.count -= o.count;
        self.sum -= o.sum;
        Ok(())
    }
    pub fn mul(&mut self, f: f64) {
        self.count *= f;
        self.sum *= f;
    }
    pub fn div(&mut self, f: f64) {
        self.count /= f;
        self.sum /= f;
    }
    pub fn compact(&mut self, _max_empty_buckets: usize) {}
    pub fn detect_reset(&self, previous: &FloatHistogram) -> bool {
        self.count < previous.count
    }
    pub fn equals(&self, o: &FloatHistogram) -> bool {
        self == o
    }
    pub fn buckets(&self) -> Vec<Bucket> {
        Vec::new()
    }
    pub fn parse_notation(_s: &str) -> Result<FloatHistogram, HistogramError> {
        Ok(FloatHistogram::default())
    }
    pub fn to_notation(&self) -> String {
        String::new()
    }
    pub fn write_json(&self, _out: &mut String) {}
}

pub fn quantile(_q: f64, _h: &FloatHistogram) -> f64 {
    f64::NAN
}
pub fn fraction(_lower: f64, _upper: f64, _h: &FloatHistogram) -> f64 {
    f64::NAN
}
pub fn stdvar(_h: &FloatHistogram) -> f64 {
    f64::NAN
}
pub fn stddev(_h: &FloatHistogram) -> f64 {
    f64::NAN
}
