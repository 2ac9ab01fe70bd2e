//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/query_exemplars`, `/api/v1/format_query`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use meshlens_model::{write_value, Labels};
use meshlens_promql::{Engine, QueryResult, Value};
use serde_json::{json, Map, Value as Json};

use crate::params::{now_ms, Params};
use crate::{success, ApiError, PromApiState};

pub(crate) fn labels_json(l: &Labels) -> Json {
    Json::Object(
        l.iter()
            .map(|x| (x.name.clone(), Json::String(x.value.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// A query answer's JSON, written straight into one buffer. Building a `serde_json::Value`
/// tree first (a map and strings per series, an array and a string per sample) cost about as
/// much as evaluating the query. The bytes are those serde_json wrote for that tree: keys in
/// its sorted-map order, strings and timestamps through serde_json's own escaping and float
/// formatting, sample values as Prometheus prints them.
pub(crate) fn encode_response(r: &QueryResult) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(size_hint(r));
    out.extend_from_slice(b"{\"data\":{\"result\":");
    let kind = match &r.value {
        Value::Scalar { t, v } => {
            point(&mut out, *t, *v)?;
            "scalar"
        }
        Value::String { t, v } => {
            out.push(b'[');
            timestamp(&mut out, *t)?;
            out.push(b',');
            serde_json::to_writer(&mut out, v)?;
            out.push(b']');
            "string"
        }
        Value::Vector(v) => {
            out.push(b'[');
            for (i, s) in v.iter().enumerate() {
                match &s.h {
                    Some(h) => {
                        series_head(&mut out, i, &s.labels, b"histogram")?;
                        histogram_point(&mut out, s.t, h)?;
                    }
                    None => {
                        series_head(&mut out, i, &s.labels, b"value")?;
                        point(&mut out, s.t, s.v)?;
                    }
                }
                out.push(b'}');
            }
            out.push(b']');
            "vector"
        }
        Value::Matrix(m) => {
            out.push(b'[');
            for (i, s) in m.iter().enumerate() {
                // A series of histograms only has no "values", as Prometheus writes it.
                let floats = !s.samples.is_empty() || s.histograms.is_empty();
                let key: &[u8] = if floats { b"values" } else { b"histograms" };
                series_head(&mut out, i, &s.labels, key)?;
                if floats {
                    out.push(b'[');
                    for (j, p) in s.samples.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        point(&mut out, p.t, p.v)?;
                    }
                    out.push(b']');
                    if !s.histograms.is_empty() {
                        out.extend_from_slice(b",\"histograms\":");
                    }
                }
                if !s.histograms.is_empty() {
                    out.push(b'[');
                    for (j, p) in s.histograms.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        histogram_point(&mut out, p.t, &p.h)?;
                    }
                    out.push(b']');
                }
                out.push(b'}');
            }
            out.push(b']');
            "matrix"
        }
    };
    out.extend_from_slice(b",\"resultType\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\"}");
    // Annotations go beside `data`, as Prometheus returns them.
    if !r.infos.is_empty() {
        out.extend_from_slice(b",\"infos\":");
        serde_json::to_writer(&mut out, &r.infos)?;
    }
    out.extend_from_slice(b",\"status\":\"success\"");
    if !r.warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":");
        serde_json::to_writer(&mut out, &r.warnings)?;
    }
    out.push(b'}');
    Ok(out)
}

/// Roughly the encoded size, so the buffer grows once or not at all.
fn size_hint(r: &QueryResult) -> usize {
    const POINT: usize = 32;
    let labels = |l: &Labels| {
        l.iter()
            .map(|x| x.name.len() + x.value.len() + 6)
            .sum::<usize>()
    };
    let body = match &r.value {
        Value::Scalar { .. } => POINT,
        Value::String { v, .. } => POINT + v.len(),
        Value::Vector(v) => v.iter().map(|s| 24 + labels(&s.labels) + POINT).sum(),
        Value::Matrix(m) => m
            .iter()
            .map(|s| 24 + labels(&s.labels) + POINT * s.samples.len())
            .sum(),
    };
    let notes: usize = r.warnings.iter().chain(&r.infos).map(|n| n.len() + 3).sum();
    64 + body + notes
}

/// The `i`th series of a result up to its samples: `,{"metric":{...},"KEY":`.
fn series_head(out: &mut Vec<u8>, i: usize, l: &Labels, key: &[u8]) -> Result<(), EncodeError> {
    if i > 0 {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"metric\":");
    labels(out, l)?;
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
    Ok(())
}

/// `{"name":"value",...}`; [`Labels`] are sorted by name and unique, as a JSON map's keys
/// were.
fn labels(out: &mut Vec<u8>, l: &Labels) -> Result<(), EncodeError> {
    out.push(b'{');
    for (i, x) in l.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, x.name.as_str())?;
        out.push(b':');
        serde_json::to_writer(&mut *out, x.value.as_str())?;
    }
    out.push(b'}');
    Ok(())
}

/// `[seconds,"value"]`.
fn point(out: &mut Vec<u8>, t: i64, v: f64) -> Result<(), EncodeError> {
    out.push(b'[');
    timestamp(out, t)?;
    out.extend_from_slice(b",\"");
    // The value needs no escaping: digits, '.', '-', or NaN / +Inf / -Inf.
    write_value(&mut Utf8Sink(out), v)?;
    out.extend_from_slice(b"\"]");
    Ok(())
}

/// `[seconds,{"count":"…","sum":"…","buckets":[…]}]`, Prometheus's histogram sample.
fn histogram_point(
    out: &mut Vec<u8>,
    t: i64,
    h: &meshlens_model::FloatHistogram,
) -> Result<(), EncodeError> {
    out.push(b'[');
    timestamp(out, t)?;
    out.push(b',');
    let mut json = String::new();
    h.write_json(&mut json);
    out.extend_from_slice(json.as_bytes());
    out.push(b']');
    Ok(())
}

/// Milliseconds as the seconds float serde_json writes.
fn timestamp(out: &mut Vec<u8>, t: i64) -> Result<(), EncodeError> {
    Ok(serde_json::to_writer(out, &(t as f64 / 1000.0))?)
}

/// Writing into memory does not fail in practice; these carry it if it ever does.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("formatting a sample value: {0}")]
    Fmt(#[from] std::fmt::Error),
}

/// `fmt::Write` onto the byte buffer, so values are formatted in place.
struct Utf8Sink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The engine to use: the shared one, or a copy with the request's shorter `timeout` that
/// shares its concurrency limit.
fn engine_for(state: &PromApiState, p: &Params) -> Result<Option<Engine>, ApiError> {
    match p.duration("timeout")? {
        Some(ms) if ms > 0 && (ms as u128) < state.engine.options().timeout.as_millis() => Ok(
            Some(state.engine.with_timeout(Duration::from_millis(ms as u64))),
        ),
        _ => Ok(None),
    }
}

/// Evaluates on the blocking pool with the request's engine and answers in the API shape.
async fn evaluate(
    s: Arc<PromApiState>,
    p: &Params,
    run: impl FnOnce(
            &Engine,
            &dyn meshlens_model::MetricReader,
        ) -> Result<QueryResult, meshlens_promql::PromqlError>
        + Send
        + 'static,
) -> Result<Response, ApiError> {
    let local = engine_for(&s, p)?;
    let r = crate::blocking(move || {
        let engine = local.as_ref().unwrap_or(&s.engine);
        Ok(run(engine, s.storage.as_ref())?)
    })
    .await?;
    let body = encode_response(&r).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error_type: "internal",
        message: format!("encoding the result: {e}"),
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

pub async fn instant(State(s): State<Arc<PromApiState>>, p: Params) -> Result<Response, ApiError> {
    let q = p.required("query")?.to_string();
    let t = p.time("time", now_ms())?;
    evaluate(s, &p, move |e, st| e.instant_query(st, &q, t)).await
}

pub async fn range(State(s): State<Arc<PromApiState>>, p: Params) -> Result<Response, ApiError> {
    let q = p.required("query")?.to_string();
    let start = p.required_time("start")?;
    let end = p.required_time("end")?;
    if end < start {
        return Err(ApiError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = p
        .duration("step")?
        .ok_or_else(|| ApiError::param("step", "missing"))?;
    if step <= 0 {
        return Err(ApiError::param("step", "zero or negative query resolution step widths are not accepted. Try a positive integer"));
    }
    // Saturating: any float is a valid time, so the two may be at the ends of i64.
    if end.saturating_sub(start) / step > 11_000 {
        return Err(ApiError::bad_data("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"));
    }
    evaluate(s, &p, move |e, st| e.range_query(st, &q, start, end, step)).await
}

/// The exemplars of the series each selector of the query matches, in `[start, end]`
/// (defaults: all time), in Prometheus's shape: per series its labels and exemplars, each
/// with its labels, value as a string and timestamp in float seconds. A query without
/// selectors (`1+1`) answers `null`, as Prometheus does.
pub async fn exemplars(
    State(s): State<Arc<PromApiState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let start = p.time("start", crate::params::MIN_TIME)?;
    let end = p.time("end", crate::params::MAX_TIME)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let q = p.required("query")?;
    let selectors = meshlens_promql::query_selectors(q)?;
    if selectors.is_empty() {
        return Ok(success(Json::Null));
    }
    let Some(reader) = s.exemplars.clone() else {
        return Ok(success(json!([])));
    };
    let found =
        crate::blocking(move || Ok(reader.select_exemplars(&selectors, start, end)?)).await?;
    let out: Vec<Json> = found
        .iter()
        .map(|s| {
            json!({
                "seriesLabels": labels_json(&s.series),
                "exemplars": s.exemplars.iter().map(|e| json!({
                    "labels": labels_json(&e.labels),
                    "value": meshlens_model::format_value(e.value),
                    "timestamp": e.t as f64 / 1000.0,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(success(Json::Array(out)))
}

pub async fn format(p: Params) -> Result<Response, ApiError> {
    let q = p.required("query")?;
    Ok(success(Json::String(meshlens_promql::format_query(q)?)))
}

#[cfg(test)]
mod tests {
    use meshlens_model::{format_value, Sample, SeriesSamples};
    use meshlens_promql::VectorSample;

    use super::*;

    /// The encoder this module had before: a `serde_json::Value` tree, serialised as
    /// `axum::Json` does. Kept as the oracle the direct writer must match byte for byte.
    fn oracle(r: &QueryResult) -> Vec<u8> {
        fn point(t: i64, v: f64) -> Json {
            json!([t as f64 / 1000.0, format_value(v)])
        }
        let (kind, result) = match &r.value {
            Value::Scalar { t, v } => ("scalar", point(*t, *v)),
            Value::String { t, v } => ("string", json!([*t as f64 / 1000.0, v])),
            Value::Vector(v) => ("vector", Json::Array(v.iter().map(|s| json!({"metric": labels_json(&s.labels), "value": point(s.t, s.v)})).collect())),
            Value::Matrix(m) => (
                "matrix",
                Json::Array(
                    m.iter()
                        .map(|s| json!({"metric": labels_json(&s.labels), "values": s.samples.iter().map(|p| point(p.t, p.v)).collect::<Vec<_>>()}))
                        .collect(),
                ),
            ),
        };
        let mut body =
            json!({"status": "success", "data": json!({"resultType": kind, "result": result})});
        if !r.warnings.is_empty() {
            body["warnings"] = json!(r.warnings);
        }
        if !r.infos.is_empty() {
            body["infos"] = json!(r.infos);
        }
        serde_json::to_vec(&body).unwrap()
    }

    fn assert_same(r: &QueryResult) {
        let new = encode_response(r).unwrap();
        let old = oracle(r);
        assert!(
            new == old,
            "encodings differ for {r:?}\n new: {}\n old: {}",
            String::from_utf8_lossy(&new),
            String::from_utf8_lossy(&old)
        );
        // And it is JSON that reads back as the same document.
        let parsed: Json = serde_json::from_slice(&new).unwrap();
        assert_eq!(parsed, serde_json::from_slice::<Json>(&old).unwrap());
    }

    fn result(value: Value, warnings: &[&str], infos: &[&str]) -> QueryResult {
        QueryResult {
            value,
            warnings: warnings.iter().map(|s| s.to_string()).collect(),
            infos: infos.iter().map(|s| s.to_string()).collect(),
        }
    }

    const ODD_STRINGS: &[&str] = &[
        "",
        "plain",
        "quote\"inside",
        "back\\slash",
        "new\nline\r\ttab",
        "\u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}",
        "\u{7f}del",
        "é中文😀",
        "\u{2028}\u{2029}",
        "</script>",
        "a/b",
    ];

    const ODD_VALUES: &[f64] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        0.30000000000000004,
        2.0 / 3.0,
        1e-7,
        1.5e-300,
        5e-324,
        f64::MIN_POSITIVE,
        1e15,
        1e16,
        1e21,
        123456789012345680000.0,
        f64::MAX,
        f64::MIN,
        f64::NAN,
        meshlens_model::STALE_NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];

    const ODD_TIMES: &[i64] = &[
        0,
        1,
        -1,
        999,
        1000,
        -1500,
        1_700_000_000_000,
        1_700_000_000_123,
        1_700_000_000_100,
        9_007_199_254_740_993,
        i64::MAX,
        i64::MIN,
    ];

    #[test]
    fn scalars_and_strings_match_the_value_tree() {
        for &t in ODD_TIMES {
            for &v in ODD_VALUES {
                assert_same(&result(Value::Scalar { t, v }, &[], &[]));
            }
            for s in ODD_STRINGS {
                assert_same(&result(
                    Value::String {
                        t,
                        v: s.to_string(),
                    },
                    &[],
                    &[],
                ));
            }
        }
    }

    #[test]
    fn empty_results_and_annotations_match_the_value_tree() {
        let notes: &[&[&str]] = &[&[], &["one"], &["a \"quoted\"\nnote", "é", ""]];
        for value in [
            Value::Vector(Vec::new()),
            Value::Matrix(Vec::new()),
            Value::Matrix(vec![SeriesSamples {
                labels: Labels::empty(),
                samples: Vec::new(),
                histograms: Vec::new(),
            }]),
            Value::Vector(vec![VectorSample {
                labels: Labels::empty(),
                t: 0,
                v: f64::NAN,
                h: None,
            }]),
        ] {
            for w in notes {
                for i in notes {
                    assert_same(&result(value.clone(), w, i));
                }
            }
        }
    }

    #[test]
    fn odd_labels_match_the_value_tree() {
        let labels: Vec<Labels> = ODD_STRINGS
            .iter()
            .map(|s| {
                Labels::from_pairs([
                    ("__name__", "metric"),
                    ("odd", s),
                    (s, "as name"),
                    ("zz", "last"),
                ])
            })
            .collect();
        let vector = labels
            .iter()
            .zip(ODD_VALUES.iter().cycle())
            .map(|(l, &v)| VectorSample {
                labels: l.clone(),
                t: 1_700_000_000_123,
                v,
                h: None,
            })
            .collect();
        assert_same(&result(Value::Vector(vector), &["w"], &[]));
        let matrix = labels
            .iter()
            .map(|l| SeriesSamples {
                labels: l.clone(),
                samples: ODD_TIMES
                    .iter()
                    .zip(ODD_VALUES)
                    .map(|(&t, &v)| Sample::new(t, v))
                    .collect(),
                histograms: Vec::new(),
            })
            .collect();
        assert_same(&result(Value::Matrix(matrix), &[], &["i"]));
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn string(&mut self) -> String {
            const PIECES: &[&str] = &[
                "a", "Z", "_", "0", "9", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{0}", "\u{1f}",
                "\u{7f}", "é", "ß", "中", "😀", "\u{2028}", "\u{ffff}",
            ];
            (0..self.below(12))
                .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
                .collect()
        }

        fn value(&mut self) -> f64 {
            match self.below(4) {
                // Any bit pattern: NaNs, infinities, subnormals, huge and tiny values.
                0 => f64::from_bits(self.next()),
                1 => ODD_VALUES[self.below(ODD_VALUES.len() as u64) as usize],
                2 => self.below(1_000_000) as f64 / 1000.0,
                _ => (self.next() >> 11) as f64 / (1u64 << 20) as f64,
            }
        }

        fn time(&mut self) -> i64 {
            match self.below(3) {
                0 => self.next() as i64,
                1 => 1_700_000_000_000 + self.below(86_400_000) as i64,
                _ => ODD_TIMES[self.below(ODD_TIMES.len() as u64) as usize],
            }
        }

        fn labels(&mut self) -> Labels {
            let n = self.below(6);
            Labels::from_pairs((0..n).map(|_| (self.string(), self.string())))
        }

        fn notes(&mut self) -> Vec<String> {
            (0..self.below(3)).map(|_| self.string()).collect()
        }
    }

    #[test]
    fn random_results_match_the_value_tree() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2_000 {
            let value = match rng.below(4) {
                0 => Value::Scalar {
                    t: rng.time(),
                    v: rng.value(),
                },
                1 => Value::String {
                    t: rng.time(),
                    v: rng.string(),
                },
                2 => Value::Vector(
                    (0..rng.below(5))
                        .map(|_| VectorSample {
                            labels: rng.labels(),
                            t: rng.time(),
                            v: rng.value(),
                            h: None,
                        })
                        .collect(),
                ),
                _ => Value::Matrix(
                    (0..rng.below(5))
                        .map(|_| SeriesSamples {
                            labels: rng.labels(),
                            samples: (0..rng.below(8))
                                .map(|_| Sample::new(rng.time(), rng.value()))
                                .collect(),
                            histograms: Vec::new(),
                        })
                        .collect(),
                ),
            };
            assert_same(&QueryResult {
                value,
                warnings: rng.notes(),
                infos: rng.notes(),
            });
        }
    }

    #[test]
    fn native_histograms_are_written_as_prometheus_does() {
        use meshlens_model::{FloatHistogram, HistogramSample};
        let h = std::sync::Arc::new(
            FloatHistogram::parse_notation("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}").unwrap(),
        );
        let labels = Labels::from_pairs([("__name__", "lat")]);
        let vector = QueryResult {
            value: Value::Vector(vec![VectorSample {
                labels: labels.clone(),
                t: 1_500,
                v: 0.0,
                h: Some(h.clone()),
            }]),
            warnings: Vec::new(),
            infos: Vec::new(),
        };
        let got: Json = serde_json::from_slice(&encode_response(&vector).unwrap()).unwrap();
        assert_eq!(
            got["data"]["result"][0],
            json!({"metric": {"__name__": "lat"}, "histogram": [1.5, {
                "count": "4", "sum": "5",
                "buckets": [[0, "0.5", "1", "1"], [0, "1", "2", "2"], [0, "2", "4", "1"]]
            }]})
        );
        // A series of histograms only has "histograms" and no "values"; a mixed one both.
        let matrix = QueryResult {
            value: Value::Matrix(vec![
                SeriesSamples {
                    labels: labels.clone(),
                    samples: Vec::new(),
                    histograms: vec![HistogramSample {
                        t: 1_000,
                        h: h.clone(),
                    }],
                },
                SeriesSamples {
                    labels: Labels::from_pairs([("__name__", "mixed")]),
                    samples: vec![Sample::new(1_000, 2.0)],
                    histograms: vec![HistogramSample { t: 2_000, h }],
                },
            ]),
            warnings: Vec::new(),
            infos: Vec::new(),
        };
        let got: Json = serde_json::from_slice(&encode_response(&matrix).unwrap()).unwrap();
        let first = &got["data"]["result"][0];
        assert!(first.get("values").is_none(), "{first}");
        assert_eq!(first["histograms"][0][1]["count"], "4");
        let second = &got["data"]["result"][1];
        assert_eq!(second["values"], json!([[1.0, "2"]]));
        assert_eq!(second["histograms"][0][0], json!(2.0));
    }
}
