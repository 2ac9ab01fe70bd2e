//! OTLP/JSON `ExportMetricsServiceRequest`: lowerCamelCase fields (snake_case accepted),
//! 64-bit integers as strings or numbers, doubles as numbers or the strings `NaN`,
//! `Infinity`, `-Infinity`, enums as integers or names. Errors name the JSON path.

use serde_json::Value;

use super::super::json::{
    field, json_array, json_enum, json_err, json_str, json_u64, kvs_from_json,
};
use super::super::OtlpError;
use super::{
    Data, ExponentialBuckets, ExponentialHistogramPoint, ExportMetrics, HistogramPoint, Metric,
    NumberPoint, ResourceMetrics, ScopeMetrics, SummaryPoint, TextAttrs,
};

type Result<T> = std::result::Result<T, OtlpError>;

const TEMPORALITIES: [&str; 3] = [
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_DELTA",
    "AGGREGATION_TEMPORALITY_CUMULATIVE",
];

fn attrs(v: &Value, camel: &str) -> TextAttrs {
    kvs_from_json(field(v, camel, camel))
        .into_iter()
        .map(|(k, a)| (k.into_owned(), a.to_tag().into_owned()))
        .collect()
}

fn double(v: &Value, camel: &str, snake: &str, path: &str) -> Result<Option<f64>> {
    match field(v, camel, snake) {
        None => Ok(None),
        Some(x) => double_value(x)
            .map(Some)
            .ok_or_else(|| json_err(&format!("{path}.{camel}"), "expected a number")),
    }
}

fn double_value(x: &Value) -> Option<f64> {
    match x {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            s => s.parse().ok(),
        },
        _ => None,
    }
}

fn int_value(x: &Value) -> Option<i64> {
    match x {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// An `int32`/`sint32` field, a number or a string; 0 when absent.
fn i32_field(v: &Value, camel: &str, snake: &str, path: &str) -> Result<i32> {
    match field(v, camel, snake) {
        None => Ok(0),
        Some(x) => int_value(x)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| json_err(&format!("{path}.{camel}"), "expected a 32-bit integer")),
    }
}

/// A repeated `uint64` field (numbers or strings).
fn u64_array(v: &Value, camel: &str, snake: &str, path: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for (i, c) in json_array(v, camel, snake, path)?.iter().enumerate() {
        let n = int_value(c)
            .and_then(|n| u64::try_from(n).ok())
            .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
            .or_else(|| c.as_u64())
            .ok_or_else(|| {
                json_err(
                    &format!("{path}.{camel}[{i}]"),
                    "expected an unsigned integer",
                )
            })?;
        out.push(n);
    }
    Ok(out)
}

fn u32_field(v: &Value, camel: &str, path: &str) -> Result<u32> {
    let n = json_u64(v, camel, camel, path)?;
    u32::try_from(n).map_err(|_| json_err(&format!("{path}.{camel}"), "out of range"))
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn decode_json(body: &[u8]) -> Result<ExportMetrics> {
    let root: Value = serde_json::from_slice(body).map_err(|e| OtlpError::Json(e.to_string()))?;
    if !root.is_object() {
        return Err(json_err("$", "expected an object"));
    }
    let mut out = ExportMetrics::default();
    for (ri, r) in json_array(&root, "resourceMetrics", "resource_metrics", "$")?
        .iter()
        .enumerate()
    {
        let rpath = format!("$.resourceMetrics[{ri}]");
        let mut rm = ResourceMetrics::default();
        if let Some(res) = field(r, "resource", "resource") {
            rm.attributes = attrs(res, "attributes");
        }
        for (si, s) in json_array(r, "scopeMetrics", "scope_metrics", &rpath)?
            .iter()
            .enumerate()
        {
            let spath = format!("{rpath}.scopeMetrics[{si}]");
            let mut sm = ScopeMetrics::default();
            if let Some(scope) = field(s, "scope", "scope") {
                sm.name = json_str(scope, "name", "name").to_string();
                sm.version = json_str(scope, "version", "version").to_string();
            }
            for (mi, m) in json_array(s, "metrics", "metrics", &spath)?
                .iter()
                .enumerate()
            {
                sm.metrics
                    .push(metric(m, &format!("{spath}.metrics[{mi}]"))?);
            }
            rm.scopes.push(sm);
        }
        out.resources.push(rm);
    }
    Ok(out)
}

fn metric(m: &Value, path: &str) -> Result<Metric> {
    let mut out = Metric {
        name: json_str(m, "name", "name").to_string(),
        description: json_str(m, "description", "description").to_string(),
        unit: json_str(m, "unit", "unit").to_string(),
        data: Data::Missing,
    };
    let temporality = |d: &Value| json_enum(d, "aggregationTemporality", &TEMPORALITIES);
    if let Some(g) = field(m, "gauge", "gauge") {
        out.data = Data::Gauge(number_points(g, &format!("{path}.gauge"))?);
    } else if let Some(s) = field(m, "sum", "sum") {
        out.data = Data::Sum {
            points: number_points(s, &format!("{path}.sum"))?,
            temporality: temporality(s),
            monotonic: field(s, "isMonotonic", "is_monotonic")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
    } else if let Some(h) = field(m, "histogram", "histogram") {
        let hpath = format!("{path}.histogram");
        let mut points = Vec::new();
        for (pi, p) in json_array(h, "dataPoints", "data_points", &hpath)?
            .iter()
            .enumerate()
        {
            points.push(histogram_point(p, &format!("{hpath}.dataPoints[{pi}]"))?);
        }
        out.data = Data::Histogram {
            points,
            temporality: temporality(h),
        };
    } else if let Some(h) = field(m, "exponentialHistogram", "exponential_histogram") {
        let hpath = format!("{path}.exponentialHistogram");
        let mut points = Vec::new();
        for (pi, p) in json_array(h, "dataPoints", "data_points", &hpath)?
            .iter()
            .enumerate()
        {
            points.push(exponential_point(p, &format!("{hpath}.dataPoints[{pi}]"))?);
        }
        out.data = Data::ExponentialHistogram {
            points,
            temporality: temporality(h),
        };
    } else if let Some(s) = field(m, "summary", "summary") {
        let spath = format!("{path}.summary");
        let mut points = Vec::new();
        for (pi, p) in json_array(s, "dataPoints", "data_points", &spath)?
            .iter()
            .enumerate()
        {
            points.push(summary_point(p, &format!("{spath}.dataPoints[{pi}]"))?);
        }
        out.data = Data::Summary(points);
    }
    Ok(out)
}

fn number_points(d: &Value, path: &str) -> Result<Vec<NumberPoint>> {
    let mut out = Vec::new();
    for (pi, p) in json_array(d, "dataPoints", "data_points", path)?
        .iter()
        .enumerate()
    {
        let ppath = format!("{path}.dataPoints[{pi}]");
        let value = if let Some(x) = field(p, "asDouble", "as_double") {
            double_value(x)
                .ok_or_else(|| json_err(&format!("{ppath}.asDouble"), "expected a number"))?
        } else if let Some(x) = field(p, "asInt", "as_int") {
            int_value(x)
                .ok_or_else(|| json_err(&format!("{ppath}.asInt"), "expected an integer"))?
                as f64
        } else {
            0.0
        };
        out.push(NumberPoint {
            attributes: attrs(p, "attributes"),
            start_ns: json_u64(p, "startTimeUnixNano", "start_time_unix_nano", &ppath)?,
            time_ns: json_u64(p, "timeUnixNano", "time_unix_nano", &ppath)?,
            value,
            flags: u32_field(p, "flags", &ppath)?,
        });
    }
    Ok(out)
}

fn histogram_point(p: &Value, path: &str) -> Result<HistogramPoint> {
    let counts = u64_array(p, "bucketCounts", "bucket_counts", path)?;
    let mut bounds = Vec::new();
    for (i, b) in json_array(p, "explicitBounds", "explicit_bounds", path)?
        .iter()
        .enumerate()
    {
        bounds.push(double_value(b).ok_or_else(|| {
            json_err(&format!("{path}.explicitBounds[{i}]"), "expected a number")
        })?);
    }
    Ok(HistogramPoint {
        attributes: attrs(p, "attributes"),
        start_ns: json_u64(p, "startTimeUnixNano", "start_time_unix_nano", path)?,
        time_ns: json_u64(p, "timeUnixNano", "time_unix_nano", path)?,
        count: json_u64(p, "count", "count", path)?,
        sum: double(p, "sum", "sum", path)?,
        bucket_counts: counts,
        bounds,
        flags: u32_field(p, "flags", path)?,
    })
}

fn exponential_point(p: &Value, path: &str) -> Result<ExponentialHistogramPoint> {
    let side = |camel: &str| -> Result<ExponentialBuckets> {
        let Some(b) = field(p, camel, camel) else {
            return Ok(ExponentialBuckets::default());
        };
        let bpath = format!("{path}.{camel}");
        if !b.is_object() {
            return Err(json_err(&bpath, "expected an object"));
        }
        Ok(ExponentialBuckets {
            offset: i32_field(b, "offset", "offset", &bpath)?,
            bucket_counts: u64_array(b, "bucketCounts", "bucket_counts", &bpath)?,
        })
    };
    Ok(ExponentialHistogramPoint {
        attributes: attrs(p, "attributes"),
        start_ns: json_u64(p, "startTimeUnixNano", "start_time_unix_nano", path)?,
        time_ns: json_u64(p, "timeUnixNano", "time_unix_nano", path)?,
        count: json_u64(p, "count", "count", path)?,
        sum: double(p, "sum", "sum", path)?,
        scale: i32_field(p, "scale", "scale", path)?,
        zero_count: json_u64(p, "zeroCount", "zero_count", path)?,
        zero_threshold: double(p, "zeroThreshold", "zero_threshold", path)?.unwrap_or(0.0),
        positive: side("positive")?,
        negative: side("negative")?,
        flags: u32_field(p, "flags", path)?,
    })
}

fn summary_point(p: &Value, path: &str) -> Result<SummaryPoint> {
    let mut quantiles = Vec::new();
    for (i, q) in json_array(p, "quantileValues", "quantile_values", path)?
        .iter()
        .enumerate()
    {
        let qpath = format!("{path}.quantileValues[{i}]");
        quantiles.push((
            double(q, "quantile", "quantile", &qpath)?.unwrap_or(0.0),
            double(q, "value", "value", &qpath)?.unwrap_or(0.0),
        ));
    }
    Ok(SummaryPoint {
        attributes: attrs(p, "attributes"),
        start_ns: json_u64(p, "startTimeUnixNano", "start_time_unix_nano", path)?,
        time_ns: json_u64(p, "timeUnixNano", "time_unix_nano", path)?,
        count: json_u64(p, "count", "count", path)?,
        sum: double(p, "sum", "sum", path)?.unwrap_or(0.0),
        quantiles,
        flags: u32_field(p, "flags", path)?,
    })
}
