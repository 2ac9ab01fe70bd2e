//! Calls between services (`SpanReader::aggregate_calls`, the trace graph's pairing) as SQL
//! over the shards: servers are joined to their callers where the trace lies, grouped by
//! what the analysis reads from each side, and only the groups travel.
//!
//! What runs where. Two `SELECT … GROUP BY` over the Distributed `spans` table; every
//! subquery names the shard-local table, so it runs on each shard over that shard's traces
//! (a trace lives on one shard, so its client and server spans meet there):
//! - *Served*: each server span in the window, `ANY LEFT JOIN`ed to its caller, the one row
//!   per (trace, span id) of the window's clients and kind-less spans (a client preferred,
//!   `argMax` over "has a kind"). The join key is the span's own id when it is shared and a
//!   client with that id exists (an `IN` over the shard's clients), else its parent id; the
//!   role follows from what the join found (see `meshlens_model::calls`).
//! - *Unanswered*: each client in the window that no server took as caller (`NOT IN` the
//!   shard's servers' caller keys, computed by the same rule).
//!
//! Figures. Each call is counted once per span key (a retried insert stores a span twice on
//! the same shard): the group's state is the set of (span key, duration), which the
//! initiator merges and turns into the sorted durations, one per call. Durations travel
//! because the graph's percentiles are exact nearest-rank ones over all the calls of an edge,
//! and an edge can fold several groups (see `meshlens_analysis::graph`).
//!
//! SQL is ClickHouse 18.16's: `ANY LEFT JOIN … USING`, tuple `IN` subqueries, `argMax`,
//! `groupUniqArray` over tuples, `arraySort`, `arrayMap`, `tupleElement`, `multiIf`.

use meshlens_model::{CallAggregation, CallGroup, CallRole, SpanDimension, StorageError};

use crate::client::Client;
use crate::rowbinary::RowReader;
use crate::schema::Schema;
use crate::span_aggregates::{dimension_sql, filter_sql};
use crate::spans::SPAN_KEY;
use crate::ClickHouseError;

/// The select items reading `dims` from the row's own span: `{prefix}p{i}` (present) and
/// `{prefix}k{i}` (the value, empty when absent).
fn own_values(dims: &[SpanDimension], prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, d) in dims.iter().enumerate() {
        let (present, value) = dimension_sql(d);
        out.push(format!("toUInt8({present}) AS {prefix}p{i}"));
        out.push(format!("if({prefix}p{i}, {value}, '') AS {prefix}k{i}"));
    }
    out
}

/// The select items evaluating the callee's flags on the row's own span, `f{i}`.
fn flag_values(a: &CallAggregation) -> Vec<String> {
    a.callee_flags
        .iter()
        .enumerate()
        .map(|(i, f)| format!("toUInt8({}) AS f{i}", filter_sql(f)))
        .collect()
}

/// The aliases a query groups by, in the order its rows carry them.
fn group_keys(a: &CallAggregation) -> Vec<String> {
    let mut keys = vec!["role".to_string()];
    for (prefix, n) in [("r", a.caller.len()), ("e", a.callee.len())] {
        for i in 0..n {
            keys.push(format!("{prefix}p{i}"));
            keys.push(format!("{prefix}k{i}"));
        }
    }
    keys.extend((0..a.callee_flags.len()).map(|i| format!("f{i}")));
    keys
}

/// The calls' sorted durations, one per span key.
fn durations() -> String {
    format!(
        "arraySort(arrayMap(x -> tupleElement(x, 6), \
         groupUniqArray(({SPAN_KEY}, duration_us)))) AS d"
    )
}

/// The SQL of both queries: (served, unanswered).
fn sql(schema: &Schema, a: &CallAggregation) -> (String, String) {
    let spans = schema.table("spans");
    let local = schema.local("spans");
    let window = format!(
        "timestamp_us != 0 AND timestamp_us >= {} AND timestamp_us <= {}",
        a.start_us, a.end_us
    );
    let seen = format!("local_service != '' AND {window}");
    // A shared server span whose client (same id) the shard holds in the window.
    let via_own = format!(
        "(shared = 1 AND (trace_id_high, trace_id_low, span_id) IN \
         (SELECT trace_id_high, trace_id_low, span_id FROM {local} \
          WHERE kind IN ('CLIENT', 'PRODUCER') AND {seen}))"
    );
    let keys = group_keys(a).join(", ");
    let flags = flag_values(a);

    // Served: the caller's values come from the join, blank unless a caller was found.
    let mut caller_sub = Vec::new();
    let mut select = vec![format!(
        "multiIf({via_own}, {answered}, has_parent = 0, {root}, found = 0, 255, \
         caller_client = 1, {answered}, {other}) AS role",
        answered = CallRole::Answered.code(),
        root = CallRole::Root.code(),
        other = CallRole::UnderOther.code(),
    )];
    let called = format!(
        "role IN ({}, {})",
        CallRole::Answered.code(),
        CallRole::UnderOther.code()
    );
    for (i, d) in a.caller.iter().enumerate() {
        let (present, value) = dimension_sql(d);
        caller_sub.push(format!("argMax(toUInt8({present}), kind != '') AS cp{i}"));
        caller_sub.push(format!(
            "argMax(if({present}, {value}, ''), kind != '') AS ck{i}"
        ));
        select.push(format!("if({called}, cp{i}, 0) AS rp{i}"));
        select.push(format!("if({called}, ck{i}, '') AS rk{i}"));
    }
    select.extend(own_values(&a.callee, "e"));
    select.extend(flags.iter().cloned());
    select.push(durations());
    let caller_cols = if caller_sub.is_empty() {
        String::new()
    } else {
        format!(", {}", caller_sub.join(", "))
    };
    let served = format!(
        "SELECT {} FROM {spans} \
         ANY LEFT JOIN \
         (SELECT trace_id_high AS caller_trace_high, trace_id_low AS caller_trace_low, \
                 span_id AS caller_id, toUInt8(1) AS found, \
                 max(kind IN ('CLIENT', 'PRODUCER')) AS caller_client{caller_cols} \
          FROM {local} WHERE kind IN ('CLIENT', 'PRODUCER', '') AND {seen} \
          GROUP BY trace_id_high, trace_id_low, span_id) AS caller \
         ON trace_id_high = caller_trace_high AND trace_id_low = caller_trace_low \
         AND if({via_own}, span_id, parent_id) = caller_id \
         WHERE kind IN ('SERVER', 'CONSUMER') AND {seen} \
         AND role != 255 \
         GROUP BY {keys} FORMAT RowBinary",
        select.join(", "),
    );

    // Unanswered: both sides' values are the client's own.
    let mut select = vec![format!("toUInt8({}) AS role", CallRole::Unanswered.code())];
    select.extend(own_values(&a.caller, "r"));
    select.extend(own_values(&a.callee, "e"));
    select.extend(flags);
    select.push(durations());
    let unanswered = format!(
        "SELECT {} FROM {spans} \
         WHERE kind IN ('CLIENT', 'PRODUCER') AND {seen} \
         AND (trace_id_high, trace_id_low, span_id) NOT IN \
         (SELECT trace_id_high, trace_id_low, if({via_own} AS via_own, span_id, parent_id) \
          FROM {local} WHERE kind IN ('SERVER', 'CONSUMER') AND {seen} \
          AND (has_parent = 1 OR via_own)) \
         GROUP BY {keys} FORMAT RowBinary",
        select.join(", "),
    );
    (served, unanswered)
}

fn decode(b: &[u8], a: &CallAggregation) -> Result<Vec<CallGroup>, StorageError> {
    let mut r = RowReader::new(b);
    let mut out = Vec::new();
    let values = |r: &mut RowReader<'_>, n: usize| -> Result<Vec<Option<String>>, StorageError> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let present = r.u8()? != 0;
            let value = r.string()?;
            v.push(present.then_some(value));
        }
        Ok(v)
    };
    while !r.is_done() {
        let code = r.u8()?;
        let role = CallRole::from_code(code).ok_or_else(|| ClickHouseError::Decode {
            reason: format!("unknown call role {code}"),
        })?;
        let caller = values(&mut r, a.caller.len())?;
        let callee = values(&mut r, a.callee.len())?;
        let mut flags = Vec::with_capacity(a.callee_flags.len());
        for _ in &a.callee_flags {
            flags.push(r.u8()? != 0);
        }
        out.push(CallGroup {
            role,
            caller,
            callee,
            flags,
            durations_us: r.u64s()?,
        });
    }
    Ok(out)
}

/// Runs the pairing over the shards (both queries at once) under the store's read guard.
pub(crate) fn aggregate_calls(
    client: &Client,
    schema: &Schema,
    max_rows_to_read: u64,
    a: &CallAggregation,
) -> Result<Vec<CallGroup>, StorageError> {
    if a.start_us > a.end_us {
        return Ok(Vec::new());
    }
    let (served, unanswered) = sql(schema, a);
    let (served, unanswered) = std::thread::scope(|s| {
        let other = s.spawn(|| crate::read(client, max_rows_to_read, &unanswered));
        let served = crate::read(client, max_rows_to_read, &served);
        let unanswered = other.join().unwrap_or_else(|_| {
            Err(StorageError::Unavailable {
                reason: "the unanswered-calls query panicked".into(),
            })
        });
        (served, unanswered)
    });
    let mut out = decode(&served?, a)?;
    out.extend(decode(&unanswered?, a)?);
    Ok(out)
}
