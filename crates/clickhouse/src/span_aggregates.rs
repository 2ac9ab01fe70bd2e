//! Span aggregations (`SpanReader::aggregate`) as SQL over the shards: the traffic
//! statistics' counts, distinct traces and response times are computed where the spans
//! are, and only grouped rows travel (what replaces Clover's Spark + Cassandra + Redis).
//!
//! What runs where. One `SELECT … GROUP BY` over the Distributed `spans` table: each shard
//! filters its rows by window and filter, evaluates the group keys from its columns and tag
//! arrays, and builds partial aggregate states; the initiator merges the states per group
//! and evaluates the final expressions. Counts, distinct traces, min and max merge as small
//! states. Exact nearest-rank percentiles cannot be merged from summaries, so their state is
//! the group's set of (span key, duration): the durations of a group do travel, 8 bytes
//! plus the key each, never whole rows; the initiator sorts them and picks rank
//! `ceil(q * n)`, in `Float64` as the model defines it. Per-shard `quantileExact` would be
//! cheaper but picks rank `floor(q * n) + 1`, a different answer.
//!
//! Duplicates. A retried insert may store a span twice (see [`crate::spans`]); every
//! measure counts a span key once: `uniqExact` over the key for spans, a set of (key,
//! duration) for durations. Both copies share a shard (the trace's), so the states stay
//! exact however the shards' answers merge.
//!
//! SQL is ClickHouse 18.16's: `multiIf`, `indexOf`, `arrayExists` with a lambda,
//! `groupUniqArrayIf` over tuples, `arraySort`, `arrayMap`, `tupleElement`.

use meshlens_model::{
    DurationSummary, MeasureValue, SpanAggregation, SpanDimension, SpanField, SpanFilter,
    SpanGroup, SpanKind, SpanMeasure, StorageError,
};

use crate::client::Client;
use crate::rowbinary::RowReader;
use crate::schema::Schema;
use crate::spans::SPAN_KEY;
use crate::sql::quote;

/// A field as SQL: (is present, value when present).
pub(crate) fn field_sql(f: &SpanField) -> (String, String) {
    match f {
        SpanField::LocalService => ("local_service != ''".into(), "local_service".into()),
        SpanField::Name => ("name != ''".into(), "name".into()),
        SpanField::RemoteService => ("remote_service != ''".into(), "remote_service".into()),
        SpanField::Tag { keys, non_empty } => {
            if keys.is_empty() {
                return ("0".into(), "''".into());
            }
            let mut conds = Vec::new();
            let mut branches = Vec::new();
            for k in keys {
                let k = quote(k);
                // Index 0 (key absent) reads the empty string.
                let value = format!("tag_values[indexOf(tag_keys, {k})]");
                let cond = if *non_empty {
                    format!("{value} != ''")
                } else {
                    format!("has(tag_keys, {k})")
                };
                branches.push(format!("{cond}, {value}"));
                conds.push(cond);
            }
            (
                format!("({})", conds.join(" OR ")),
                format!("multiIf({}, '')", branches.join(", ")),
            )
        }
    }
}

/// A dimension as SQL: (is present, value); with a stand-in for absent values it is
/// always present.
pub(crate) fn dimension_sql(d: &SpanDimension) -> (String, String) {
    let (present, value) = field_sql(&d.field);
    match &d.absent {
        Some(a) => ("1".into(), format!("if({present}, {value}, {})", quote(a))),
        None => (present, value),
    }
}

pub(crate) fn filter_sql(f: &SpanFilter) -> String {
    let join = |v: &[SpanFilter], op: &str, empty: &str| {
        if v.is_empty() {
            empty.to_string()
        } else {
            let parts: Vec<String> = v.iter().map(filter_sql).collect();
            format!("({})", parts.join(op))
        }
    };
    match f {
        SpanFilter::All(v) => join(v, " AND ", "1"),
        SpanFilter::Any(v) => join(v, " OR ", "0"),
        SpanFilter::Kind(k) => format!("kind = {}", quote(k.map_or("", SpanKind::as_str))),
        SpanFilter::TagKeyPrefix(p) if p.is_empty() => "notEmpty(tag_keys)".into(),
        // `substring` counts bytes, as `str::starts_with` compares them.
        SpanFilter::TagKeyPrefix(p) => format!(
            "arrayExists(k -> substring(k, 1, {}) = {}, tag_keys)",
            p.len(),
            quote(p)
        ),
        SpanFilter::HasTag(k) => format!("has(tag_keys, {})", quote(k)),
        SpanFilter::Equals(d, v) => {
            let (present, value) = dimension_sql(d);
            format!("({present} AND {value} = {})", quote(v))
        }
    }
}

/// The select list of one measure (`i` names its aliases).
fn measure_sql(m: &SpanMeasure, i: usize) -> Result<String, StorageError> {
    Ok(match m {
        SpanMeasure::Spans => format!("uniqExact({SPAN_KEY})"),
        SpanMeasure::Traces => "uniqExact(trace_id_high, trace_id_low)".into(),
        SpanMeasure::Durations { quantiles } => {
            // The sorted durations, one per span key; an empty array reads 0 at any index.
            let d = format!("d{i}");
            let n = format!("length({d})");
            let mut cols = vec![
                format!(
                    "toUInt64(length(arraySort(arrayMap(x -> tupleElement(x, 6), \
                     groupUniqArrayIf(({SPAN_KEY}, duration_us), duration_us != 0))) AS {d}))"
                ),
                format!("toUInt64(arraySum({d}))"),
                format!("{d}[1]"),
                format!("{d}[{n}]"),
            ];
            for q in quantiles {
                if !(0.0..=1.0).contains(q) {
                    return Err(StorageError::InvalidRequest {
                        reason: format!("quantile {q} is not in [0, 1]"),
                    });
                }
                // `{:?}` writes the shortest text that reads back as the same f64.
                // 18.16's `least` refuses to mix UInt64 and Float64: clamp as integers.
                cols.push(format!(
                    "{d}[greatest(toUInt64(1), least({n}, toUInt64(ceil({q:?} * {n}))))]"
                ));
            }
            cols.join(", ")
        }
    })
}

/// Runs `a` over `spans` (the Distributed table with a cluster) under the store's read
/// guard.
pub(crate) fn aggregate(
    client: &Client,
    schema: &Schema,
    max_rows_to_read: u64,
    a: &SpanAggregation,
) -> Result<Vec<SpanGroup>, StorageError> {
    if a.start_us > a.end_us {
        // No span can match; an ungrouped aggregation still has its one (empty) group.
        return Ok(empty(a));
    }
    let mut select = Vec::new();
    let mut group_by = Vec::new();
    for (i, d) in a.group_by.iter().enumerate() {
        let (present, value) = dimension_sql(d);
        select.push(format!("toUInt8({present}) AS p{i}"));
        select.push(format!("if(p{i}, {value}, '') AS k{i}"));
        group_by.push(format!("p{i}, k{i}"));
    }
    for (i, m) in a.measures.iter().enumerate() {
        select.push(measure_sql(m, i)?);
    }
    if select.is_empty() {
        select.push("count()".into());
    }
    let sql = format!(
        "SELECT {} FROM {} \
         WHERE timestamp_us != 0 AND timestamp_us >= {} AND timestamp_us <= {} AND {}{} \
         FORMAT RowBinary",
        select.join(", "),
        schema.table("spans"),
        a.start_us,
        a.end_us,
        filter_sql(&a.filter),
        if group_by.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", group_by.join(", "))
        },
    );
    let b = crate::read(client, max_rows_to_read, &sql)?;
    let mut r = RowReader::new(&b);
    let mut out = Vec::new();
    while !r.is_done() {
        let mut key = Vec::with_capacity(a.group_by.len());
        for _ in &a.group_by {
            let present = r.u8()? != 0;
            let value = r.string()?;
            key.push(present.then_some(value));
        }
        let mut values = Vec::with_capacity(a.measures.len());
        for m in &a.measures {
            values.push(match m {
                SpanMeasure::Spans | SpanMeasure::Traces => MeasureValue::Count(r.u64()?),
                SpanMeasure::Durations { quantiles } => {
                    let count = r.u64()?;
                    let sum = u128::from(r.u64()?);
                    let min = r.u64()?;
                    let max = r.u64()?;
                    let quantiles = quantiles
                        .iter()
                        .map(|_| r.u64())
                        .collect::<Result<_, _>>()?;
                    MeasureValue::Durations(DurationSummary {
                        count,
                        sum,
                        min,
                        max,
                        quantiles,
                    })
                }
            });
        }
        if a.measures.is_empty() && a.group_by.is_empty() {
            r.u64()?;
        }
        out.push(SpanGroup { key, values });
    }
    Ok(out)
}

/// The answer over no spans.
fn empty(a: &SpanAggregation) -> Vec<SpanGroup> {
    if !a.group_by.is_empty() {
        return Vec::new();
    }
    meshlens_model::aggregate::evaluate(a, std::iter::empty())
}
