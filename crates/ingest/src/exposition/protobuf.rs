//! The protobuf exposition format (`application/vnd.google.protobuf;
//! proto=io.prometheus.client.MetricFamily;encoding=delimited`): a sequence of
//! `MetricFamily` messages, each preceded by its length as a varint. It is the only
//! exposition format that carries native histograms, which is why Prometheus asks for it
//! first when native histograms are on.
//!
//! A histogram is native when it has bucket spans or a zero bucket (client libraries send an
//! empty span for a native histogram without observations); its classic buckets, if it also
//! has them, become `_bucket`/`_sum`/`_count` series only when asked
//! (`scrape_classic_histograms`), or always for a histogram that is not native. Errors name
//! the family (its index and name) and what is wrong; as with the text formats the whole
//! scrape fails on the first one.

use std::sync::Arc;

use meshlens_model::histogram::{CounterResetHint, FloatHistogram};
use meshlens_model::{format_value, Labels, MetricMetadata, METRIC_NAME};

use super::{
    ParseError, ParseOptions, ParsedScrape, ScrapedExemplar, ScrapedHistogram, ScrapedSample,
};
use crate::remote_write::histogram::{check, repeated_doubles, repeated_varints, span, undelta};
use crate::remote_write::wire::{parse_label, Cursor, WireError, FIXED64, LEN, VARINT};

const COUNTER: u64 = 0;
const GAUGE: u64 = 1;
const SUMMARY: u64 = 2;
const UNTYPED: u64 = 3;
const HISTOGRAM: u64 = 4;
const GAUGE_HISTOGRAM: u64 = 5;

/// One family's fields as read; metrics are parsed once the name and type are known
/// (protobuf allows any field order).
#[derive(Default)]
struct Family<'a> {
    name: &'a str,
    help: &'a str,
    unit: &'a str,
    kind: u64,
    metrics: Vec<(&'a [u8], usize)>,
}

/// Parses a whole protobuf scrape body.
pub fn parse(body: &[u8], opts: ParseOptions) -> Result<ParsedScrape, ParseError> {
    let mut out = ParsedScrape::default();
    let mut c = Cursor::new(body, 0);
    let mut index = 0usize;
    while !c.done() {
        index += 1;
        let fail = |name: &str, why: String| ParseError {
            line: 0,
            reason: if name.is_empty() {
                format!("metric family {index}: {why}")
            } else {
                format!("metric family {index} ({name}): {why}")
            },
        };
        let (msg, at) = length_prefixed(&mut c).map_err(|e| fail("", e.to_string()))?;
        let family = read_family(msg, at).map_err(|e| fail("", e.to_string()))?;
        let name = family.name;
        if !meshlens_model::labels::is_valid_metric_name(name) {
            return Err(fail(name, format!("invalid metric name {name:?}")));
        }
        out.metadata.push(MetricMetadata {
            metric_family: name.to_string(),
            kind: kind_name(family.kind).to_string(),
            help: family.help.to_string(),
            unit: family.unit.to_string(),
        });
        for (m, at) in &family.metrics {
            metric(&family, m, *at, opts, &mut out).map_err(|why| fail(name, why))?;
        }
    }
    Ok(out)
}

fn kind_name(kind: u64) -> &'static str {
    match kind {
        COUNTER => "counter",
        GAUGE => "gauge",
        SUMMARY => "summary",
        HISTOGRAM => "histogram",
        GAUGE_HISTOGRAM => "gaugehistogram",
        _ => "unknown",
    }
}

/// A varint length and the message after it.
fn length_prefixed<'a>(c: &mut Cursor<'a>) -> Result<(&'a [u8], usize), WireError> {
    c.bytes()
}

fn read_family(buf: &[u8], base: usize) -> Result<Family<'_>, WireError> {
    let mut f = Family {
        kind: UNTYPED,
        ..Family::default()
    };
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, LEN, "family name is not length-delimited")?;
                f.name = c.string()?;
            }
            2 => {
                c.expect(wt, LEN, "family help is not length-delimited")?;
                f.help = c.string()?;
            }
            3 => {
                c.expect(wt, VARINT, "family type is not a varint")?;
                f.kind = c.varint()?;
            }
            4 => {
                c.expect(wt, LEN, "metric is not length-delimited")?;
                f.metrics.push(c.bytes()?);
            }
            5 => {
                c.expect(wt, LEN, "family unit is not length-delimited")?;
                f.unit = c.string()?;
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(f)
}

/// A `Metric`'s parts that matter here.
#[derive(Default)]
struct Metric<'a> {
    labels: Vec<(&'a str, &'a str)>,
    timestamp_ms: Option<i64>,
    /// Gauge, counter or untyped value, and a counter's exemplar.
    value: Option<f64>,
    exemplar: Option<ScrapedExemplar>,
    /// A counter's created timestamp.
    created_ms: Option<i64>,
    summary: Option<(&'a [u8], usize)>,
    histogram: Option<(&'a [u8], usize)>,
}

fn metric(
    family: &Family<'_>,
    buf: &[u8],
    base: usize,
    opts: ParseOptions,
    out: &mut ParsedScrape,
) -> Result<(), String> {
    let m = read_metric(buf, base).map_err(|e| e.to_string())?;
    let name = family.name;
    let labels = |suffix: &str, extra: Option<(&str, String)>| -> Result<Labels, String> {
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(m.labels.len() + 2);
        for (n, v) in &m.labels {
            if !meshlens_model::labels::is_valid_label_name(n) || *n == METRIC_NAME {
                return Err(format!("invalid label name {n:?}"));
            }
            if pairs.iter().any(|(p, _)| p == n) {
                return Err(format!("label {n:?} given twice"));
            }
            pairs.push((n.to_string(), v.to_string()));
        }
        pairs.push((METRIC_NAME.to_string(), format!("{name}{suffix}")));
        if let Some((n, v)) = extra {
            pairs.push((n.to_string(), v));
        }
        Ok(Labels::from_pairs(pairs))
    };
    let t = m.timestamp_ms;
    // Every series of a metric shares its created timestamp (a summary's quantiles and a
    // classic histogram's buckets too), as in Prometheus.
    let mut push = |labels: Labels, value: f64, exemplar: Option<ScrapedExemplar>, ct| {
        out.samples.push(ScrapedSample {
            labels,
            timestamp_ms: t,
            value,
            exemplar,
            created_ms: ct,
        });
    };
    // 0 (unset) or a time before 1970 is no created timestamp.
    let keep = |ct: Option<i64>| ct.filter(|&t| opts.created_timestamps && t > 0);
    match family.kind {
        COUNTER | GAUGE | UNTYPED => {
            let v = m.value.unwrap_or(f64::NAN);
            let ct = keep(m.created_ms.filter(|_| family.kind == COUNTER));
            push(labels("", None)?, v, m.exemplar.clone(), ct);
        }
        SUMMARY => {
            let (b, at) = m.summary.unwrap_or((&[], base));
            let s = read_summary(b, at).map_err(|e| e.to_string())?;
            let created_ms = keep(s.created_ms);
            for (q, v) in &s.quantiles {
                let l = labels("", Some(("quantile", format_value(*q))))?;
                push(l, *v, None, created_ms);
            }
            push(labels("_sum", None)?, s.sum, None, created_ms);
            push(labels("_count", None)?, s.count, None, created_ms);
        }
        HISTOGRAM | GAUGE_HISTOGRAM => {
            let (b, at) = m.histogram.unwrap_or((&[], base));
            let h = read_histogram(b, at).map_err(|e| e.to_string())?;
            let created_ms = keep(h.created_ms);
            if h.native {
                let mut native = h.native_histogram();
                if family.kind == GAUGE_HISTOGRAM {
                    native.counter_reset_hint = CounterResetHint::Gauge;
                }
                check(&native).map_err(|why| format!("native histogram: {why}"))?;
                let mut exemplars = h.exemplars.clone();
                exemplars.extend(h.buckets.iter().filter_map(|b| b.exemplar.clone()));
                out.histograms.push(ScrapedHistogram {
                    labels: labels("", None)?,
                    timestamp_ms: t,
                    h: Arc::new(native),
                    exemplars,
                    created_ms,
                });
            }
            if !h.native || (opts.classic_histograms && !h.buckets.is_empty()) {
                let mut saw_inf = false;
                for b in &h.buckets {
                    saw_inf |= b.upper == f64::INFINITY;
                    push(
                        labels("_bucket", Some(("le", format_value(b.upper))))?,
                        b.count,
                        b.exemplar.clone(),
                        created_ms,
                    );
                }
                if !saw_inf {
                    push(
                        labels("_bucket", Some(("le", "+Inf".to_string())))?,
                        h.count,
                        None,
                        created_ms,
                    );
                }
                push(labels("_sum", None)?, h.sum, None, created_ms);
                push(labels("_count", None)?, h.count, None, created_ms);
            }
        }
        other => return Err(format!("unknown metric type {other}")),
    }
    Ok(())
}

fn read_metric(buf: &[u8], base: usize) -> Result<Metric<'_>, WireError> {
    let mut m = Metric::default();
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, LEN, "label pair is not length-delimited")?;
                let (b, at) = c.bytes()?;
                m.labels.push(parse_label(b, at)?);
            }
            2 | 5 => {
                c.expect(wt, LEN, "gauge or untyped value is not length-delimited")?;
                let (b, at) = c.bytes()?;
                m.value = Some(single_value(b, at)?.0);
            }
            3 => {
                c.expect(wt, LEN, "counter is not length-delimited")?;
                let (b, at) = c.bytes()?;
                let (v, ex, ct) = single_value(b, at)?;
                m.value = Some(v);
                m.exemplar = ex;
                m.created_ms = ct;
            }
            4 => {
                c.expect(wt, LEN, "summary is not length-delimited")?;
                m.summary = Some(c.bytes()?);
            }
            6 => {
                c.expect(wt, VARINT, "metric timestamp is not a varint")?;
                m.timestamp_ms = Some(c.varint()? as i64);
            }
            7 => {
                c.expect(wt, LEN, "histogram is not length-delimited")?;
                m.histogram = Some(c.bytes()?);
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(m)
}

/// `Gauge`, `Untyped` or `Counter`: field 1 the value, field 2 a counter's exemplar,
/// field 3 its created timestamp.
fn single_value(
    buf: &[u8],
    base: usize,
) -> Result<(f64, Option<ScrapedExemplar>, Option<i64>), WireError> {
    let (mut v, mut ex, mut ct) = (0.0, None, None);
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, FIXED64, "value is not a double")?;
                v = f64::from_bits(c.fixed64()?);
            }
            2 => {
                c.expect(wt, LEN, "exemplar is not length-delimited")?;
                let (b, at) = c.bytes()?;
                ex = Some(exemplar(b, at)?);
            }
            3 => ct = created(&mut c, wt)?,
            _ => c.skip(wt)?,
        }
    }
    Ok((v, ex, ct))
}

/// A `created_timestamp` field (a `google.protobuf.Timestamp`) in ms. A malformed one
/// reads as none rather than failing the scrape: these fields were skipped before they were
/// read, and a created timestamp only adds a zero sample. Only a truncated message (which
/// skipping the field fails on too) is an error.
fn created(c: &mut Cursor<'_>, wt: u8) -> Result<Option<i64>, WireError> {
    if wt != LEN {
        c.skip(wt)?;
        return Ok(None);
    }
    let (b, at) = c.bytes()?;
    Ok(timestamp(b, at).ok())
}

fn exemplar(buf: &[u8], base: usize) -> Result<ScrapedExemplar, WireError> {
    let mut labels = Vec::new();
    let (mut value, mut timestamp_ms) = (0.0, None);
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, LEN, "exemplar label is not length-delimited")?;
                let (b, at) = c.bytes()?;
                labels.push(parse_label(b, at)?);
            }
            2 => {
                c.expect(wt, FIXED64, "exemplar value is not a double")?;
                value = f64::from_bits(c.fixed64()?);
            }
            3 => {
                c.expect(wt, LEN, "exemplar timestamp is not length-delimited")?;
                let (b, at) = c.bytes()?;
                timestamp_ms = Some(timestamp(b, at)?);
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(ScrapedExemplar {
        labels: Labels::from_pairs(labels),
        value,
        timestamp_ms,
    })
}

/// A `google.protobuf.Timestamp` in milliseconds.
fn timestamp(buf: &[u8], base: usize) -> Result<i64, WireError> {
    let (mut secs, mut nanos) = (0i64, 0i64);
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, VARINT, "timestamp seconds is not a varint")?;
                secs = c.varint()? as i64;
            }
            2 => {
                c.expect(wt, VARINT, "timestamp nanos is not a varint")?;
                nanos = c.varint()? as i64;
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(secs.saturating_mul(1000).saturating_add(nanos / 1_000_000))
}

#[derive(Default)]
struct Summary {
    count: f64,
    sum: f64,
    quantiles: Vec<(f64, f64)>,
    created_ms: Option<i64>,
}

fn read_summary(buf: &[u8], base: usize) -> Result<Summary, WireError> {
    let mut s = Summary::default();
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, VARINT, "summary count is not a varint")?;
                s.count = c.varint()? as f64;
            }
            2 => {
                c.expect(wt, FIXED64, "summary sum is not a double")?;
                s.sum = f64::from_bits(c.fixed64()?);
            }
            3 => {
                c.expect(wt, LEN, "quantile is not length-delimited")?;
                let (b, at) = c.bytes()?;
                let (mut q, mut v) = (0.0, 0.0);
                let mut qc = Cursor::new(b, at);
                while !qc.done() {
                    let (f, w) = qc.key()?;
                    match f {
                        1 | 2 => {
                            qc.expect(w, FIXED64, "quantile field is not a double")?;
                            let x = f64::from_bits(qc.fixed64()?);
                            if f == 1 {
                                q = x;
                            } else {
                                v = x;
                            }
                        }
                        _ => qc.skip(w)?,
                    }
                }
                s.quantiles.push((q, v));
            }
            4 => s.created_ms = created(&mut c, wt)?,
            _ => c.skip(wt)?,
        }
    }
    Ok(s)
}

/// A classic bucket: its upper bound, cumulative count and exemplar.
struct ClassicBucket {
    upper: f64,
    count: f64,
    exemplar: Option<ScrapedExemplar>,
}

/// A `Histogram` message: classic and native parts.
#[derive(Default)]
struct Histogram {
    native: bool,
    count: f64,
    sum: f64,
    buckets: Vec<ClassicBucket>,
    schema: i32,
    zero_threshold: f64,
    zero_count: f64,
    negative_spans: Vec<meshlens_model::histogram::BucketSpan>,
    positive_spans: Vec<meshlens_model::histogram::BucketSpan>,
    negative_deltas: Vec<u64>,
    positive_deltas: Vec<u64>,
    negative_counts: Vec<f64>,
    positive_counts: Vec<f64>,
    exemplars: Vec<ScrapedExemplar>,
    created_ms: Option<i64>,
}

impl Histogram {
    fn native_histogram(&self) -> FloatHistogram {
        let (positive, negative) =
            if self.positive_deltas.is_empty() && self.negative_deltas.is_empty() {
                (self.positive_counts.clone(), self.negative_counts.clone())
            } else {
                (
                    undelta(&self.positive_deltas),
                    undelta(&self.negative_deltas),
                )
            };
        FloatHistogram {
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count,
            count: self.count,
            sum: self.sum,
            positive_spans: self
                .positive_spans
                .iter()
                .filter(|s| s.length > 0 || s.offset != 0)
                .copied()
                .collect(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: positive,
            negative_buckets: negative,
            ..FloatHistogram::default()
        }
    }
}

fn read_histogram(buf: &[u8], base: usize) -> Result<Histogram, WireError> {
    let mut h = Histogram::default();
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 | 7 => {
                c.expect(wt, VARINT, "histogram count is not a varint")?;
                let v = c.varint()? as f64;
                if field == 1 {
                    h.count = v;
                } else {
                    h.zero_count = v;
                }
            }
            2 | 4 | 6 | 8 => {
                c.expect(wt, FIXED64, "histogram field is not a double")?;
                let v = f64::from_bits(c.fixed64()?);
                match field {
                    2 => h.sum = v,
                    4 => h.count = v,
                    6 => h.zero_threshold = v,
                    _ => h.zero_count = v,
                }
            }
            3 => {
                c.expect(wt, LEN, "bucket is not length-delimited")?;
                let (b, at) = c.bytes()?;
                h.buckets.push(classic_bucket(b, at)?);
            }
            5 => {
                c.expect(wt, VARINT, "histogram schema is not a varint")?;
                h.schema = crate::remote_write::histogram::zigzag(c.varint()?) as i32;
            }
            9 | 12 => {
                c.expect(wt, LEN, "bucket span is not length-delimited")?;
                let (b, at) = c.bytes()?;
                let s = span(b, at)?;
                if field == 9 {
                    h.negative_spans.push(s);
                } else {
                    h.positive_spans.push(s);
                }
            }
            10 => repeated_varints(&mut c, wt, &mut h.negative_deltas)?,
            13 => repeated_varints(&mut c, wt, &mut h.positive_deltas)?,
            11 => repeated_doubles(&mut c, wt, &mut h.negative_counts)?,
            14 => repeated_doubles(&mut c, wt, &mut h.positive_counts)?,
            16 => {
                c.expect(wt, LEN, "exemplar is not length-delimited")?;
                let (b, at) = c.bytes()?;
                h.exemplars.push(exemplar(b, at)?);
            }
            15 => h.created_ms = created(&mut c, wt)?,
            _ => c.skip(wt)?,
        }
    }
    h.native = !h.positive_spans.is_empty()
        || !h.negative_spans.is_empty()
        || h.zero_threshold > 0.0
        || h.zero_count > 0.0;
    Ok(h)
}

fn classic_bucket(buf: &[u8], base: usize) -> Result<ClassicBucket, WireError> {
    let mut b = ClassicBucket {
        upper: 0.0,
        count: 0.0,
        exemplar: None,
    };
    let mut c = Cursor::new(buf, base);
    while !c.done() {
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.expect(wt, VARINT, "bucket count is not a varint")?;
                b.count = c.varint()? as f64;
            }
            2 | 4 => {
                c.expect(wt, FIXED64, "bucket field is not a double")?;
                let v = f64::from_bits(c.fixed64()?);
                if field == 2 {
                    b.upper = v;
                } else {
                    b.count = v;
                }
            }
            3 => {
                c.expect(wt, LEN, "bucket exemplar is not length-delimited")?;
                let (e, at) = c.bytes()?;
                b.exemplar = Some(exemplar(e, at)?);
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    struct PbFamily {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(string, tag = "2")]
        help: String,
        #[prost(int32, optional, tag = "3")]
        r#type: Option<i32>,
        #[prost(message, repeated, tag = "4")]
        metric: Vec<PbMetric>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbMetric {
        #[prost(message, repeated, tag = "1")]
        label: Vec<PbLabel>,
        #[prost(message, optional, tag = "2")]
        gauge: Option<PbValue>,
        #[prost(message, optional, tag = "3")]
        counter: Option<PbCounter>,
        #[prost(message, optional, tag = "4")]
        summary: Option<PbSummary>,
        #[prost(int64, optional, tag = "6")]
        timestamp_ms: Option<i64>,
        #[prost(message, optional, tag = "7")]
        histogram: Option<PbHistogram>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbLabel {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(string, tag = "2")]
        value: String,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbValue {
        #[prost(double, tag = "1")]
        value: f64,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbCounter {
        #[prost(double, tag = "1")]
        value: f64,
        #[prost(message, optional, tag = "2")]
        exemplar: Option<PbExemplar>,
        #[prost(message, optional, tag = "3")]
        created_timestamp: Option<PbTimestamp>,
    }

    /// A counter whose created timestamp has the wrong wire type.
    #[derive(Clone, PartialEq, Message)]
    struct PbBadCounter {
        #[prost(double, tag = "1")]
        value: f64,
        #[prost(uint64, tag = "3")]
        created_timestamp: u64,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbBadMetric {
        #[prost(message, optional, tag = "3")]
        counter: Option<PbBadCounter>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbBadFamily {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(int32, optional, tag = "3")]
        r#type: Option<i32>,
        #[prost(message, repeated, tag = "4")]
        metric: Vec<PbBadMetric>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbExemplar {
        #[prost(message, repeated, tag = "1")]
        label: Vec<PbLabel>,
        #[prost(double, tag = "2")]
        value: f64,
        #[prost(message, optional, tag = "3")]
        timestamp: Option<PbTimestamp>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbTimestamp {
        #[prost(int64, tag = "1")]
        seconds: i64,
        #[prost(int32, tag = "2")]
        nanos: i32,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbSummary {
        #[prost(uint64, tag = "1")]
        sample_count: u64,
        #[prost(double, tag = "2")]
        sample_sum: f64,
        #[prost(message, repeated, tag = "3")]
        quantile: Vec<PbQuantile>,
        #[prost(message, optional, tag = "4")]
        created_timestamp: Option<PbTimestamp>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbQuantile {
        #[prost(double, tag = "1")]
        quantile: f64,
        #[prost(double, tag = "2")]
        value: f64,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbHistogram {
        #[prost(uint64, tag = "1")]
        sample_count: u64,
        #[prost(double, tag = "2")]
        sample_sum: f64,
        #[prost(message, repeated, tag = "3")]
        bucket: Vec<PbBucket>,
        #[prost(sint32, tag = "5")]
        schema: i32,
        #[prost(double, tag = "6")]
        zero_threshold: f64,
        #[prost(uint64, tag = "7")]
        zero_count: u64,
        #[prost(message, repeated, tag = "12")]
        positive_span: Vec<PbSpan>,
        #[prost(sint64, repeated, tag = "13")]
        positive_delta: Vec<i64>,
        #[prost(message, optional, tag = "15")]
        created_timestamp: Option<PbTimestamp>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbBucket {
        #[prost(uint64, tag = "1")]
        cumulative_count: u64,
        #[prost(double, tag = "2")]
        upper_bound: f64,
        #[prost(message, optional, tag = "3")]
        exemplar: Option<PbExemplar>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PbSpan {
        #[prost(sint32, tag = "1")]
        offset: i32,
        #[prost(uint32, tag = "2")]
        length: u32,
    }

    fn label(name: &str, value: &str) -> PbLabel {
        PbLabel {
            name: name.into(),
            value: value.into(),
        }
    }

    fn body(families: &[PbFamily]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in families {
            f.encode_length_delimited(&mut out).unwrap();
        }
        out
    }

    fn trace_exemplar(v: f64) -> PbExemplar {
        PbExemplar {
            label: vec![label("trace_id", "abc")],
            value: v,
            timestamp: Some(PbTimestamp {
                seconds: 1_700_000_000,
                nanos: 250_000_000,
            }),
        }
    }

    /// Latency with classic buckets (0.1, 1) and native buckets at schema 3.
    fn latency(classic: bool) -> PbHistogram {
        PbHistogram {
            sample_count: 5,
            sample_sum: 1.5,
            bucket: if classic {
                vec![
                    PbBucket {
                        cumulative_count: 2,
                        upper_bound: 0.1,
                        exemplar: Some(trace_exemplar(0.07)),
                    },
                    PbBucket {
                        cumulative_count: 4,
                        upper_bound: 1.0,
                        exemplar: None,
                    },
                ]
            } else {
                Vec::new()
            },
            schema: 3,
            zero_threshold: 1e-128,
            zero_count: 1,
            positive_span: vec![PbSpan {
                offset: -25,
                length: 2,
            }],
            positive_delta: vec![2, 0],
            created_timestamp: None,
        }
    }

    fn scrape() -> Vec<u8> {
        body(&[
            PbFamily {
                name: "requests_total".into(),
                help: "Requests.".into(),
                r#type: Some(0),
                metric: vec![PbMetric {
                    label: vec![label("code", "200")],
                    counter: Some(PbCounter {
                        value: 42.0,
                        exemplar: Some(trace_exemplar(1.0)),
                        created_timestamp: None,
                    }),
                    ..Default::default()
                }],
            },
            PbFamily {
                name: "temperature".into(),
                r#type: Some(1),
                metric: vec![PbMetric {
                    gauge: Some(PbValue { value: -3.5 }),
                    timestamp_ms: Some(1_234),
                    ..Default::default()
                }],
                ..Default::default()
            },
            PbFamily {
                name: "rpc_seconds".into(),
                r#type: Some(2),
                metric: vec![PbMetric {
                    summary: Some(PbSummary {
                        sample_count: 3,
                        sample_sum: 0.6,
                        quantile: vec![PbQuantile {
                            quantile: 0.5,
                            value: 0.2,
                        }],
                        created_timestamp: None,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
            PbFamily {
                name: "latency_seconds".into(),
                r#type: Some(4),
                metric: vec![PbMetric {
                    histogram: Some(latency(true)),
                    ..Default::default()
                }],
                ..Default::default()
            },
            PbFamily {
                name: "queue_seconds".into(),
                r#type: Some(5),
                metric: vec![PbMetric {
                    // A native histogram without observations: the no-op span.
                    histogram: Some(PbHistogram {
                        positive_span: vec![PbSpan {
                            offset: 0,
                            length: 0,
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ])
    }

    fn names(p: &ParsedScrape) -> Vec<String> {
        p.samples.iter().map(|s| s.labels.to_string()).collect()
    }

    #[test]
    fn every_metric_type_is_read() {
        let p = parse(&scrape(), ParseOptions::default()).unwrap();
        assert_eq!(
            names(&p),
            [
                r#"requests_total{code="200"}"#,
                r#"temperature{}"#,
                r#"rpc_seconds{quantile="0.5"}"#,
                r#"rpc_seconds_sum{}"#,
                r#"rpc_seconds_count{}"#,
            ]
        );
        assert_eq!(p.samples[0].value, 42.0);
        let ex = p.samples[0].exemplar.as_ref().unwrap();
        assert_eq!(ex.labels.get("trace_id"), Some("abc"));
        assert_eq!(ex.timestamp_ms, Some(1_700_000_000_250));
        assert_eq!(p.samples[1].timestamp_ms, Some(1_234));
        assert_eq!(p.samples[4].value, 3.0);
        assert_eq!(p.metadata[2].kind, "summary");
        assert_eq!(p.metadata[4].kind, "gaugehistogram");
        assert_eq!(p.metadata[0].help, "Requests.");

        assert_eq!(p.histograms.len(), 2);
        let h = &p.histograms[0];
        assert_eq!(h.labels.to_string(), r#"latency_seconds{}"#);
        assert_eq!(
            (h.h.schema, h.h.count, h.h.sum, h.h.zero_count),
            (3, 5.0, 1.5, 1.0)
        );
        assert_eq!(h.h.positive_buckets, vec![2.0, 2.0], "deltas made absolute");
        assert_eq!(h.h.positive_spans[0].offset, -25);
        assert_eq!(h.exemplars.len(), 1, "the bucket's exemplar goes with it");
        let empty = &p.histograms[1];
        assert_eq!(empty.h.counter_reset_hint, CounterResetHint::Gauge);
        assert!(
            empty.h.positive_spans.is_empty(),
            "the no-op span is dropped"
        );
    }

    #[test]
    fn classic_buckets_of_native_histograms_only_when_asked() {
        let opts = ParseOptions {
            classic_histograms: true,
            ..ParseOptions::default()
        };
        let p = parse(&scrape(), opts).unwrap();
        let classic: Vec<String> = names(&p)
            .into_iter()
            .filter(|n| n.contains("latency"))
            .collect();
        assert_eq!(
            classic,
            [
                r#"latency_seconds_bucket{le="0.1"}"#,
                r#"latency_seconds_bucket{le="1"}"#,
                r#"latency_seconds_bucket{le="+Inf"}"#,
                r#"latency_seconds_sum{}"#,
                r#"latency_seconds_count{}"#,
            ]
        );
        assert_eq!(p.histograms.len(), 2, "the native histogram stays too");
        // A histogram with classic buckets only is classic without being asked.
        let mut only_classic = latency(true);
        only_classic.positive_span.clear();
        only_classic.positive_delta.clear();
        only_classic.zero_threshold = 0.0;
        only_classic.zero_count = 0;
        let p = parse(
            &body(&[PbFamily {
                name: "old_seconds".into(),
                r#type: Some(4),
                metric: vec![PbMetric {
                    histogram: Some(only_classic),
                    ..Default::default()
                }],
                ..Default::default()
            }]),
            ParseOptions::default(),
        )
        .unwrap();
        assert!(p.histograms.is_empty());
        assert_eq!(p.samples.len(), 5);
    }

    #[test]
    fn bad_input_names_the_family() {
        let mut bytes = scrape();
        bytes.truncate(bytes.len() - 3);
        let e = parse(&bytes, ParseOptions::default()).unwrap_err();
        assert!(e.to_string().starts_with("metric family 5"), "{e}");
        let bad_name = body(&[PbFamily {
            name: "1bad".into(),
            ..Default::default()
        }]);
        let e = parse(&bad_name, ParseOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "metric family 1 (1bad): invalid metric name \"1bad\""
        );
        let mut h = latency(false);
        h.positive_delta = vec![2];
        let inconsistent = body(&[PbFamily {
            name: "x".into(),
            r#type: Some(4),
            metric: vec![PbMetric {
                histogram: Some(h),
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let e = parse(&inconsistent, ParseOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("native histogram: positive spans cover 2 buckets but 1 counts"),
            "{e}"
        );
        // Every prefix of a valid body fails cleanly or parses: never a panic.
        let full = scrape();
        for cut in 0..full.len() {
            let _ = parse(&full[..cut], ParseOptions::default());
        }
    }

    fn ts(ms: i64) -> Option<PbTimestamp> {
        Some(PbTimestamp {
            seconds: ms / 1000,
            nanos: (ms % 1000) as i32 * 1_000_000,
        })
    }

    /// [`scrape`] (its counter family's type given explicitly as 0, as client libraries
    /// send it) with created timestamps on the counter (1000), the summary (2000), the
    /// histogram (3000) and a gauge histogram left without one.
    fn scrape_with_created() -> Vec<u8> {
        let mut families: Vec<PbFamily> = Vec::new();
        let rest = scrape();
        let mut buf = rest.as_slice();
        while !buf.is_empty() {
            families.push(PbFamily::decode_length_delimited(&mut buf).unwrap());
        }
        families[0].metric[0]
            .counter
            .as_mut()
            .unwrap()
            .created_timestamp = ts(1_000);
        families[2].metric[0]
            .summary
            .as_mut()
            .unwrap()
            .created_timestamp = ts(2_000);
        families[3].metric[0]
            .histogram
            .as_mut()
            .unwrap()
            .created_timestamp = ts(3_000);
        body(&families)
    }

    #[test]
    fn created_timestamps_are_read_only_when_asked() {
        let opts = ParseOptions {
            classic_histograms: true,
            created_timestamps: true,
            ..ParseOptions::default()
        };
        let p = parse(&scrape_with_created(), opts).unwrap();
        let got: Vec<(String, Option<i64>)> = p
            .samples
            .iter()
            .map(|s| (s.labels.to_string(), s.created_ms))
            .collect();
        let want: Vec<(String, Option<i64>)> = [
            (r#"requests_total{code="200"}"#, Some(1_000)),
            (r#"temperature{}"#, None),
            (r#"rpc_seconds{quantile="0.5"}"#, Some(2_000)),
            (r#"rpc_seconds_sum{}"#, Some(2_000)),
            (r#"rpc_seconds_count{}"#, Some(2_000)),
            (r#"latency_seconds_bucket{le="0.1"}"#, Some(3_000)),
            (r#"latency_seconds_bucket{le="1"}"#, Some(3_000)),
            (r#"latency_seconds_bucket{le="+Inf"}"#, Some(3_000)),
            (r#"latency_seconds_sum{}"#, Some(3_000)),
            (r#"latency_seconds_count{}"#, Some(3_000)),
        ]
        .into_iter()
        .map(|(l, ct)| (l.to_string(), ct))
        .collect();
        assert_eq!(got, want);
        assert_eq!(p.histograms[0].created_ms, Some(3_000));
        assert_eq!(p.histograms[1].created_ms, None);

        // Without the option the body parses exactly as without created timestamps.
        let off = ParseOptions {
            classic_histograms: true,
            ..ParseOptions::default()
        };
        let without = parse(&scrape(), off).unwrap();
        assert_eq!(parse(&scrape_with_created(), off).unwrap(), without);
        // Every prefix fails cleanly or parses: never a panic.
        let full = scrape_with_created();
        for cut in 0..full.len() {
            let _ = parse(&full[..cut], opts);
        }
    }

    #[test]
    fn a_malformed_created_timestamp_is_none_not_an_error() {
        let mut bytes = Vec::new();
        PbBadFamily {
            name: "c_total".into(),
            r#type: Some(0),
            metric: vec![PbBadMetric {
                counter: Some(PbBadCounter {
                    value: 5.0,
                    created_timestamp: 1_000,
                }),
            }],
        }
        .encode_length_delimited(&mut bytes)
        .unwrap();
        let opts = ParseOptions {
            created_timestamps: true,
            ..ParseOptions::default()
        };
        let p = parse(&bytes, opts).unwrap();
        assert_eq!(p.metadata[0].kind, "counter");
        assert_eq!((p.samples[0].value, p.samples[0].created_ms), (5.0, None));
    }

    #[test]
    fn the_content_type_picks_the_protobuf_parser() {
        use super::super::{format_from_content_type, Format};
        assert_eq!(
            format_from_content_type(Some(
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            )),
            Format::Protobuf
        );
        assert_eq!(
            format_from_content_type(Some("application/vnd.google.protobuf")),
            Format::PrometheusText
        );
    }
}
