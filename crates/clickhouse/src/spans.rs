//! [`SpanWriter`] and [`SpanReader`] over the `spans` table.
//!
//! Writes. A batch becomes RowBinary inserts into the Distributed `trace_index` and `spans`
//! tables (cut into pieces of at most [`MAX_INSERT_BYTES`] of spans); the Distributed
//! engine routes every row to the shard of its trace id's low 64 bits, so a trace lives on
//! one shard. `Ok` means ClickHouse acknowledged every piece (with a cluster: on its
//! shard, see [`Schema::insert_settings`]).
//!
//! Storage form. Absent values are stored as the column's default and read back as absent:
//! a timestamp or duration of 0 (Zipkin treats 0 as absent too), an empty name, kind or
//! service, port 0. Tags and annotations are parallel arrays. `error`, `status_code`, `url`
//! and `user_agent` are copies of well-known tags, for the aggregations that filter on them.
//!
//! Idempotence. Inserts are at-least-once: a batch retried after a lost answer is stored
//! twice (plain MergeTree has no block deduplication). Readers therefore keep one row per
//! span key (trace id, span id, kind, shared): `LIMIT 1 BY` in SQL where rows are returned,
//! `uniqExact` over the key where they are counted, and again in Rust while decoding. Two
//! different rows with the same key (a span reported twice with different contents, such as
//! a span sent in two halves) are folded to one of them; the embedded store keeps both
//! then. This is the one known difference between the two engines' answers.
//!
//! Reads run where the data is: search finds the matching trace ids with one aggregation
//! over the shards (ordered and limited there), then fetches only those traces' spans,
//! found through `trace_index` (see [`crate::schema`]) as trace by id finds its spans;
//! dependency links are computed on each shard (a trace's spans are all on its shard): the
//! spans of each trace as arrays walked to every server's nearest ancestor with a kind, joined
//! back to the server spans and aggregated into (parent, child) counts. Names are lower-cased
//! as the embedded store does; search compares them case-insensitively.
//!
//! Semantics are the embedded store's (`meshlens-spanstore`), which the tests check answer
//! for answer on the same writes: a search matches a trace with a span in the window whose
//! spans meet every criterion (only the named service's spans count when one is named),
//! picks the newest `limit` by earliest span and orders them by root start; dependencies
//! link whole traces that reach into the window, Zipkin's linker rules for the common
//! shapes (client/server pairs, shared server spans, uninstrumented callees, spans without
//! kind between a server and its caller). Producer/consumer pairs, kind-less spans with a
//! remote service, and client spans under another service's client follow simpler rules
//! here than in Zipkin's linker (see `served_calls` and `leaf_calls`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use meshlens_model::{
    Annotation, CallAggregation, CallGroup, DependencyLink, Endpoint, Span, SpanAggregation,
    SpanGroup, SpanKind, SpanReader, SpanWriter, StorageError, TraceId, TraceQuery,
};

use crate::client::Client;
use crate::rowbinary::{RowReader, RowWriter};
use crate::schema::{Schema, TRACE_INDEX_COLUMNS};
use crate::sql::quote;
use crate::ClickHouseError;

/// The largest RowBinary body one insert carries; bigger batches are sent in pieces so
/// neither side buffers an unbounded request.
pub const MAX_INSERT_BYTES: usize = 16 << 20;

/// Trace ids per span fetch (about 70 bytes of SQL each).
const IDS_PER_QUERY: usize = 1000;

/// Search results when the query asks for none (the Zipkin API's default).
const DEFAULT_LIMIT: usize = 10;

/// Values returned for one tag key by autocomplete, as the embedded store caps them.
const MAX_AUTOCOMPLETE_VALUES: usize = 1000;

/// The columns written and read, in this order, in every insert and select.
pub(crate) const COLUMNS: &str = "trace_id_high, trace_id_low, trace_id_128, span_id, parent_id, \
    has_parent, name, kind, timestamp_us, duration_us, local_service, remote_service, \
    local_ipv4, local_ipv6, local_port, remote_ipv4, remote_ipv6, remote_port, \
    status_code, error, url, user_agent, tag_keys, tag_values, annotation_ts, \
    annotation_values, debug, shared";

/// Rounds of pointer jumping in the dependency walk: a server span's caller is found across
/// up to 2^8 = 256 spans without kind in a row (see `SpanStore::served_calls`).
const ANCESTOR_ROUNDS: u32 = 8;

/// The columns a read returns, in this order: [`COLUMNS`] without the copies of tags
/// (`status_code`, `error`, `url`, `user_agent`), which only the aggregations use; the tags
/// carry them back, so a read neither reads them from disk nor ships them.
const READ_COLUMNS: &str = "trace_id_high, trace_id_low, trace_id_128, span_id, parent_id, \
    has_parent, name, kind, timestamp_us, duration_us, local_service, remote_service, \
    local_ipv4, local_ipv6, local_port, remote_ipv4, remote_ipv6, remote_port, \
    tag_keys, tag_values, annotation_ts, annotation_values, debug, shared";

/// The key a stored span is deduplicated by (see the module doc).
pub(crate) const SPAN_KEY: &str = "trace_id_high, trace_id_low, span_id, kind, shared";

/// Tags copied into their own columns: the first present of each list wins.
const STATUS_TAGS: &[&str] = &["http.status_code", "http.response.status_code"];
const URL_TAGS: &[&str] = &["http.url", "url.full", "http.path", "url.path"];
const USER_AGENT_TAGS: &[&str] = &["http.user_agent", "user_agent.original", "user_agent"];

/// Spans over ClickHouse.
pub struct SpanStore {
    client: Arc<Client>,
    schema: Schema,
    /// ClickHouse's `max_rows_to_read` for every select (0: none).
    max_rows_to_read: u64,
    /// Every read and insert waits for the schema (see [`crate::Gate`]).
    gate: Arc<crate::Gate>,
}

/// A span's identity for deduplication.
type SpanKey = (u64, u64, u64, Option<SpanKind>, bool);

fn key_of(s: &Span) -> SpanKey {
    (s.trace_id.high, s.trace_id.low, s.id, s.kind, s.shared)
}

/// `[end_ts - lookback, end_ts]` (milliseconds) in microseconds, inclusive; a non-positive
/// lookback means everything up to `end_ts`: the embedded store's window.
fn window_us(end_ts: i64, lookback: i64) -> (u64, u64) {
    let end = end_ts.max(0) as u64;
    let hi = end.saturating_mul(1000).saturating_add(999);
    let lo = if lookback <= 0 {
        0
    } else {
        end.saturating_sub(lookback as u64).saturating_mul(1000)
    };
    (lo, hi)
}

/// A name filter as the Zipkin API means it: absent, empty and `all` match everything.
fn name_filter(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .filter(|s| !s.is_empty() && *s != "all")
        .map(str::to_lowercase)
}

fn tag_of<'a>(s: &'a Span, keys: &[&str]) -> &'a str {
    keys.iter()
        .find_map(|k| s.tags.get(*k))
        .map(String::as_str)
        .unwrap_or("")
}

fn endpoint(service: String, ipv4: String, ipv6: String, port: u16) -> Option<Endpoint> {
    let some = |s: String| Some(s).filter(|s| !s.is_empty());
    let e = Endpoint {
        service_name: some(service),
        ipv4: some(ipv4),
        ipv6: some(ipv6),
        port: Some(port).filter(|&p| p != 0),
    };
    (e != Endpoint::default()).then_some(e)
}

/// The span's row, in [`COLUMNS`] order.
fn encode(w: &mut RowWriter, s: &Span) {
    encode_fields(w, s, true);
}

/// The span's fields, in [`COLUMNS`] order with the tag copies, else [`READ_COLUMNS`].
fn encode_fields(w: &mut RowWriter, s: &Span, with_tag_copies: bool) {
    let empty = Endpoint::default();
    let local = s.local_endpoint.as_ref().unwrap_or(&empty);
    let remote = s.remote_endpoint.as_ref().unwrap_or(&empty);
    let opt = |o: &Option<String>| o.as_deref().unwrap_or("").to_string();
    w.u64(s.trace_id.high);
    w.u64(s.trace_id.low);
    w.u8(u8::from(s.trace_id.is_128));
    w.u64(s.id);
    w.u64(s.parent_id.unwrap_or(0));
    w.u8(u8::from(s.parent_id.is_some()));
    w.string(s.name.as_deref().unwrap_or(""));
    w.string(s.kind.map(SpanKind::as_str).unwrap_or(""));
    w.u64(s.timestamp.unwrap_or(0));
    w.u64(s.duration.unwrap_or(0));
    w.string(&opt(&local.service_name));
    w.string(&opt(&remote.service_name));
    w.string(&opt(&local.ipv4));
    w.string(&opt(&local.ipv6));
    w.u16(local.port.unwrap_or(0));
    w.string(&opt(&remote.ipv4));
    w.string(&opt(&remote.ipv6));
    w.u16(remote.port.unwrap_or(0));
    if with_tag_copies {
        w.string(tag_of(s, STATUS_TAGS));
        w.u8(u8::from(s.tags.contains_key("error")));
        w.string(tag_of(s, URL_TAGS));
        w.string(tag_of(s, USER_AGENT_TAGS));
    }
    w.strings(s.tags.keys().map(String::as_str));
    w.strings(s.tags.values().map(String::as_str));
    w.u64s(s.annotations.iter().map(|a| a.timestamp));
    w.strings(s.annotations.iter().map(|a| a.value.as_str()));
    w.u8(u8::from(s.debug));
    w.u8(u8::from(s.shared));
}

/// The span's `trace_index` row, in [`TRACE_INDEX_COLUMNS`] order: the same values
/// [`encode`] writes to those columns of `spans`, so the reader's key set matches.
fn encode_index(w: &mut RowWriter, s: &Span) {
    let service = s
        .local_endpoint
        .as_ref()
        .and_then(|e| e.service_name.as_deref());
    w.u64(s.trace_id.low);
    w.u64(s.trace_id.high);
    w.string(service.unwrap_or(""));
    w.string(s.name.as_deref().unwrap_or(""));
    w.u64(s.timestamp.unwrap_or(0));
}

/// Spans as rows of a schema before step 3 (the `spans` table alone, no index rows): what tests use to
/// stage a database written by an older meshlens.
#[cfg(feature = "testing")]
pub(crate) fn encode_rows(spans: &[Span]) -> bytes::Bytes {
    let mut w = RowWriter::new();
    for s in spans {
        encode(&mut w, s);
    }
    w.into_bytes()
}

/// One row in [`READ_COLUMNS`] order. Malformed rows are errors, never panics.
fn decode(r: &mut RowReader<'_>) -> Result<Span, ClickHouseError> {
    let high = r.u64()?;
    let low = r.u64()?;
    let is_128 = r.u8()? != 0;
    let id = r.u64()?;
    let parent = r.u64()?;
    let has_parent = r.u8()? != 0;
    let name = r.string()?;
    let kind = r.string()?;
    let timestamp = r.u64()?;
    let duration = r.u64()?;
    let local_service = r.string()?;
    let remote_service = r.string()?;
    let local_ipv4 = r.string()?;
    let local_ipv6 = r.string()?;
    let local_port = r.u16()?;
    let remote_ipv4 = r.string()?;
    let remote_ipv6 = r.string()?;
    let remote_port = r.u16()?;
    let tag_keys = r.strings()?;
    let tag_values = r.strings()?;
    let annotation_ts = r.u64s()?;
    let annotation_values = r.strings()?;
    let debug = r.u8()? != 0;
    let shared = r.u8()? != 0;
    if tag_keys.len() != tag_values.len() || annotation_ts.len() != annotation_values.len() {
        return Err(ClickHouseError::Decode {
            reason: format!(
                "span {id:016x} has {} tag keys for {} values and {} annotation times for {} values",
                tag_keys.len(),
                tag_values.len(),
                annotation_ts.len(),
                annotation_values.len()
            ),
        });
    }
    let kind = match kind.as_str() {
        "" => None,
        k => Some(SpanKind::parse(k).ok_or_else(|| ClickHouseError::Decode {
            reason: format!("span {id:016x} has unknown kind {k:?}"),
        })?),
    };
    Ok(Span {
        trace_id: TraceId { high, low, is_128 },
        id,
        parent_id: has_parent.then_some(parent),
        name: Some(name).filter(|n| !n.is_empty()),
        kind,
        timestamp: Some(timestamp).filter(|&t| t != 0),
        duration: Some(duration).filter(|&d| d != 0),
        local_endpoint: endpoint(local_service, local_ipv4, local_ipv6, local_port),
        remote_endpoint: endpoint(remote_service, remote_ipv4, remote_ipv6, remote_port),
        annotations: annotation_ts
            .into_iter()
            .zip(annotation_values)
            .map(|(timestamp, value)| Annotation { timestamp, value })
            .collect(),
        tags: tag_keys
            .into_iter()
            .zip(tag_values)
            .collect::<BTreeMap<_, _>>(),
        debug,
        shared,
    })
}

/// A trace's spans in time order, one per span key.
fn tidy(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(|s| (s.timestamp.unwrap_or(0), s.id, s.shared));
    let mut seen = HashSet::new();
    spans.retain(|s| seen.insert(key_of(s)));
    spans
}

impl SpanStore {
    pub fn new(
        client: Arc<Client>,
        schema: Schema,
        max_rows_to_read: u64,
        gate: Arc<crate::Gate>,
    ) -> Self {
        SpanStore {
            client,
            schema,
            max_rows_to_read,
            gate,
        }
    }

    fn query(&self, sql: &str) -> Result<bytes::Bytes, StorageError> {
        self.gate.check()?;
        crate::read(&self.client, self.max_rows_to_read, sql)
    }

    fn strings_query(&self, sql: &str) -> Result<Vec<String>, StorageError> {
        self.gate.check()?;
        crate::read_strings(&self.client, self.max_rows_to_read, sql)
    }

    /// Spans matching `condition`, one per span key, with `visit` called on each.
    fn spans_where(
        &self,
        condition: &str,
        visit: &mut dyn FnMut(Span),
    ) -> Result<(), StorageError> {
        let sql = format!(
            "SELECT {READ_COLUMNS} FROM {} WHERE {condition} LIMIT 1 BY {SPAN_KEY} FORMAT RowBinary",
            self.schema.table("spans")
        );
        let b = self.query(&sql)?;
        let mut r = RowReader::new(&b);
        while !r.is_done() {
            visit(decode(&mut r)?);
        }
        Ok(())
    }

    /// The spans of several traces, grouped by trace, each trace's spans tidied. Ids go
    /// into the SQL text, so they are sent [`IDS_PER_QUERY`] at a time to stay far below
    /// ClickHouse's `max_query_size` (256 KiB by default) whatever limit a search asks for.
    ///
    /// Each shard first finds the traces' `spans` keys in its `trace_index` (ordered by
    /// trace id), then reads only the `spans` granules holding those keys: the subquery
    /// names the shard-local index, which holds the index rows of that shard's spans.
    fn traces(&self, ids: &[(u64, u64)]) -> Result<HashMap<(u64, u64), Vec<Span>>, StorageError> {
        let mut out: HashMap<(u64, u64), Vec<Span>> = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let list: Vec<String> = chunk.iter().map(|(h, l)| format!("({h}, {l})")).collect();
            let lows: Vec<String> = chunk.iter().map(|(_, l)| l.to_string()).collect();
            // The low half alone is the sharding key and cheap to compare; the pair decides.
            let of_traces = format!(
                "trace_id_low IN ({}) AND (trace_id_high, trace_id_low) IN ({})",
                lows.join(", "),
                list.join(", ")
            );
            let condition = format!(
                "(local_service, name, timestamp_us) IN \
                 (SELECT local_service, name, timestamp_us FROM {} WHERE {of_traces}) \
                 AND {of_traces}",
                self.schema.local("trace_index")
            );
            self.spans_where(&condition, &mut |s| {
                out.entry((s.trace_id.high, s.trace_id.low))
                    .or_default()
                    .push(s)
            })?;
        }
        Ok(out.into_iter().map(|(k, v)| (k, tidy(v))).collect())
    }

    /// The `HAVING` conditions of a search: every criterion met by some span of the trace,
    /// counting only the spans of the searched service when one is named (the embedded
    /// store's and Zipkin's rule).
    fn search_having(q: &TraceQuery) -> String {
        let service = name_filter(&q.service_name);
        let of_service = match &service {
            Some(s) => format!("lowerUTF8(local_service) = {}", quote(s)),
            None => "1".to_string(),
        };
        let mut conds = vec![format!("countIf({of_service}) > 0")];
        if let Some(r) = name_filter(&q.remote_service_name) {
            conds.push(format!(
                "countIf({of_service} AND lowerUTF8(remote_service) = {}) > 0",
                quote(&r)
            ));
        }
        if let Some(n) = name_filter(&q.span_name) {
            conds.push(format!(
                "countIf({of_service} AND lowerUTF8(name) = {}) > 0",
                quote(&n)
            ));
        }
        if q.min_duration.is_some() || q.max_duration.is_some() {
            let min = q.min_duration.unwrap_or(0);
            let max = q
                .max_duration
                .map(|m| format!(" AND duration_us <= {m}"))
                .unwrap_or_default();
            conds.push(format!(
                "countIf({of_service} AND duration_us != 0 AND duration_us >= {min}{max}) > 0"
            ));
        }
        for (k, v) in &q.annotation_query {
            if k.is_empty() {
                continue;
            }
            let term = match v.as_deref().filter(|v| !v.is_empty()) {
                None => format!(
                    "(has(tag_keys, {k}) OR has(annotation_values, {k}))",
                    k = quote(k)
                ),
                Some(v) => format!(
                    "(has(tag_keys, {k}) AND tag_values[indexOf(tag_keys, {k})] = {})",
                    quote(v),
                    k = quote(k)
                ),
            };
            conds.push(format!("countIf({of_service} AND {term}) > 0"));
        }
        conds.join(" AND ")
    }

    /// Client and producer spans whose callee sent no span: their links come from the
    /// caller's side alone. Runs as one distributed query; the `NOT IN` subquery names the
    /// shard-local table, so each shard checks its own traces.
    fn leaf_calls(&self, lo: u64, hi: u64) -> Result<Vec<DependencyLink>, StorageError> {
        let sql = format!(
            "SELECT lowerUTF8(local_service) AS p, lowerUTF8(remote_service) AS c, \
             uniqExact({SPAN_KEY}), uniqExactIf({SPAN_KEY}, error = 1) \
             FROM {} \
             WHERE kind IN ('CLIENT', 'PRODUCER') AND local_service != '' \
             AND remote_service != '' AND {} \
             AND (trace_id_high, trace_id_low, span_id) NOT IN \
             (SELECT trace_id_high, trace_id_low, if(shared = 1, span_id, parent_id) \
              FROM {} WHERE shared = 1 OR has_parent = 1) \
             GROUP BY p, c FORMAT RowBinary",
            self.schema.table("spans"),
            self.traces_in_window(lo, hi),
            self.schema.local("spans"),
        );
        self.links(&sql)
    }

    /// The condition "the span's trace has a span in `[lo, hi]`": dependencies link whole
    /// traces, as Zipkin and the embedded store do, so a call just before the window
    /// still counts when its trace reaches into it. Inside a distributed query the subquery
    /// reads the shard-local table, which holds the whole trace.
    fn traces_in_window(&self, lo: u64, hi: u64) -> String {
        format!(
            "(trace_id_high, trace_id_low) IN (SELECT trace_id_high, trace_id_low FROM {} \
             WHERE timestamp_us != 0 AND timestamp_us >= {lo} AND timestamp_us <= {hi})",
            self.schema.local("spans")
        )
    }

    /// Server and consumer spans, each joined to its caller's service; the caller's service
    /// is the link's parent, or the span's remote service when there is none.
    ///
    /// A server's caller is found as Zipkin's linker (and the embedded store) finds it: its
    /// nearest ancestor *with a kind*, so spans without kind in between (an uninstrumented
    /// client library, local work) are passed over. The parent of a span is the non-shared
    /// span with its id when it is shared, else the span with its parent id (the shared one
    /// first). The call is an error when the span is, or when that ancestor is the client span
    /// that called it directly (its parent) and is one. A consumer keeps the simpler rule:
    /// the non-shared span with its id (shared) or parent id is the caller, and passes its
    /// error on when it is a client.
    ///
    /// How: on each shard (the subquery names the shard-local table), the spans of every
    /// trace reaching into the window become parallel arrays; each span's parent index is
    /// found with `indexOf` over (id, shared) pairs, and the walk up to the first ancestor
    /// with a kind is pointer jumping: `step[x]` is `x` for a span with a kind, else its
    /// parent; each of [`ANCESTOR_ROUNDS`] rounds composes `step` with itself, so the walk
    /// passes up to 2^rounds kind-less spans in a row in as many `arrayMap`s. A longer run
    /// (or a cycle of kind-less spans) reads as no ancestor, and the remote service names the
    /// caller. The arrays are then `ARRAY JOIN`ed back to one row per server or consumer span
    /// and joined to the Distributed table's rows of those spans.
    fn served_calls(&self, lo: u64, hi: u64) -> Result<Vec<DependencyLink>, StorageError> {
        let mut steps =
            vec!["arrayMap((k, p, j) -> if(k != '', j, p), kinds, par, js) AS g0".to_string()];
        for r in 1..=ANCESTOR_ROUNDS {
            steps.push(format!("arrayMap(y -> g{p}[y], g{p}) AS g{r}", p = r - 1));
        }
        let callers = format!(
            "SELECT trace_id_high, trace_id_low, span_id, shared, kind, caller_service, \
                    caller_error FROM \
             (SELECT trace_id_high, trace_id_low, ids, sh, kinds, \
                     ignore(hp, pids, svcs, errs) AS keep, \
                     arrayEnumerate(ids) AS js, \
                     arrayMap((i, s) -> (i, s), ids, sh) AS keys, \
                     arrayMap((i, s, h, p) -> multiIf(\
                        s = 1 AND indexOf(keys, (i, toUInt8(0))) != 0, \
                        indexOf(keys, (i, toUInt8(0))), \
                        h = 0, 0, \
                        indexOf(keys, (p, toUInt8(1))) != 0, indexOf(keys, (p, toUInt8(1))), \
                        indexOf(keys, (p, toUInt8(0)))), ids, sh, hp, pids) AS p0, \
                     arrayMap((x, i, s) -> if(keys[x] = (i, s), 0, x), p0, ids, sh) AS par, \
                     arrayMap((i, s, h, p) -> if(s = 1, indexOf(keys, (i, toUInt8(0))), \
                        if(h = 1, indexOf(keys, (p, toUInt8(0))), 0)), ids, sh, hp, pids) AS direct, \
                     {steps}, \
                     arrayMap(p -> g{ANCESTOR_ROUNDS}[p], par) AS anc, \
                     arrayMap((a, d, k) -> if(k = 'SERVER', if(kinds[a] != '', svcs[a], ''), \
                        svcs[d]), anc, direct, kinds) AS caller_services, \
                     arrayMap((a, d, k, s, h, p) -> toUInt8(if(k = 'SERVER', \
                        kinds[a] = 'CLIENT' AND h = 1 AND p = ids[a] AND errs[a] = 1, \
                        s = 0 AND kinds[d] = 'CLIENT' AND errs[d] = 1)), \
                        anc, direct, kinds, sh, hp, pids) AS caller_errors \
              FROM \
              (SELECT trace_id_high, trace_id_low, groupArray(span_id) AS ids, \
                      groupArray(shared) AS sh, groupArray(has_parent) AS hp, \
                      groupArray(parent_id) AS pids, groupArray(kind) AS kinds, \
                      groupArray(lowerUTF8(local_service)) AS svcs, groupArray(error) AS errs \
               FROM {} WHERE {} GROUP BY trace_id_high, trace_id_low)) \
             ARRAY JOIN ids AS span_id, sh AS shared, kinds AS kind, \
                        caller_services AS caller_service, caller_errors AS caller_error \
             WHERE kind IN ('SERVER', 'CONSUMER') AND keep = 0",
            self.schema.local("spans"),
            self.traces_in_window(lo, hi),
            steps = steps.join(", "),
        );
        let sql = format!(
            "SELECT if(caller_service != '', caller_service, lowerUTF8(remote_service)) AS p, \
             lowerUTF8(local_service) AS c, \
             uniqExact({SPAN_KEY}), uniqExactIf({SPAN_KEY}, error = 1 OR caller_error = 1) \
             FROM {} \
             ANY LEFT JOIN ({callers}) AS caller USING (trace_id_high, trace_id_low, span_id, kind, shared) \
             WHERE kind IN ('SERVER', 'CONSUMER') AND local_service != '' \
             AND {} AND p != '' \
             GROUP BY p, c FORMAT RowBinary",
            self.schema.table("spans"),
            self.traces_in_window(lo, hi),
        );
        self.links(&sql)
    }

    fn links(&self, sql: &str) -> Result<Vec<DependencyLink>, StorageError> {
        let b = self.query(sql)?;
        let mut r = RowReader::new(&b);
        let mut out = Vec::new();
        while !r.is_done() {
            out.push(DependencyLink {
                parent: r.string()?,
                child: r.string()?,
                call_count: r.u64()?,
                error_count: r.u64()?,
            });
        }
        Ok(out)
    }
}

impl SpanWriter for SpanStore {
    /// Each piece's `trace_index` rows go first, then its spans: a span a reader can see
    /// always has its index row (see [`crate::schema`]).
    fn write(&self, spans: &[Span]) -> Result<(), StorageError> {
        let insert = format!(
            "INSERT INTO {} ({COLUMNS}) FORMAT RowBinary",
            self.schema.table("spans")
        );
        if spans.is_empty() {
            return Ok(());
        }
        self.gate.check()?;
        let insert_index = format!(
            "INSERT INTO {} ({TRACE_INDEX_COLUMNS}) FORMAT RowBinary",
            self.schema.table("trace_index")
        );
        let settings = self.schema.insert_settings();
        let send = |rows: RowWriter, index: RowWriter| -> Result<(), StorageError> {
            self.client
                .insert(&insert_index, index.into_bytes(), &settings)?;
            self.client.insert(&insert, rows.into_bytes(), &settings)?;
            Ok(())
        };
        let mut rows = RowWriter::new();
        let mut index = RowWriter::new();
        for s in spans {
            encode(&mut rows, s);
            encode_index(&mut index, s);
            if rows.len() >= MAX_INSERT_BYTES {
                send(std::mem::take(&mut rows), std::mem::take(&mut index))?;
            }
        }
        if !rows.is_empty() {
            send(rows, index)?;
        }
        Ok(())
    }
}

impl SpanReader for SpanStore {
    /// Matches the id's two halves as stored: a 64-bit id has a zero high half.
    fn trace(&self, id: &TraceId) -> Result<Vec<Span>, StorageError> {
        Ok(self
            .traces(&[(id.high, id.low)])?
            .into_values()
            .next()
            .unwrap_or_default())
    }

    fn find_traces(&self, q: &TraceQuery) -> Result<Vec<Vec<Span>>, StorageError> {
        let limit = if q.limit == 0 { DEFAULT_LIMIT } else { q.limit };
        let (lo, hi) = window_us(q.end_ts, q.lookback);
        // Traces with a span in the window (the subquery, per shard), then the criteria
        // over all their spans; newest first by their earliest span, as the embedded store
        // picks them.
        // A named service narrows the traces to group before any criterion: every one of
        // them counts only that service's spans, so a trace without one never matches.
        let of_service = match name_filter(&q.service_name) {
            Some(service) => format!(
                " AND (trace_id_high, trace_id_low) IN \
                 (SELECT trace_id_high, trace_id_low FROM {} WHERE lowerUTF8(local_service) = {})",
                self.schema.local("spans"),
                quote(&service)
            ),
            None => String::new(),
        };
        let sql = format!(
            "SELECT trace_id_high, trace_id_low, minIf(timestamp_us, timestamp_us != 0) AS t \
             FROM {} \
             WHERE (trace_id_high, trace_id_low) IN \
             (SELECT trace_id_high, trace_id_low FROM {} \
              WHERE timestamp_us != 0 AND timestamp_us >= {lo} AND timestamp_us <= {hi}){of_service} \
             GROUP BY trace_id_high, trace_id_low \
             HAVING {} \
             ORDER BY t DESC, trace_id_high DESC, trace_id_low DESC LIMIT {limit} \
             FORMAT RowBinary",
            self.schema.table("spans"),
            self.schema.local("spans"),
            Self::search_having(q),
        );
        let b = self.query(&sql)?;
        let mut r = RowReader::new(&b);
        let mut ids = Vec::new();
        while !r.is_done() {
            let high = r.u64()?;
            let low = r.u64()?;
            let _t = r.u64()?;
            ids.push((high, low));
        }
        let mut by_id = self.traces(&ids)?;
        let mut out: Vec<Vec<Span>> = ids.iter().filter_map(|k| by_id.remove(k)).collect();
        // Stable: equal starts keep the order ClickHouse chose.
        out.sort_by_key(|t| std::cmp::Reverse(meshlens_model::trace::trace_start(t)));
        Ok(out)
    }

    fn service_names(&self) -> Result<Vec<String>, StorageError> {
        self.strings_query(&format!(
            "SELECT DISTINCT lowerUTF8(local_service) AS s FROM {} WHERE s != '' \
             ORDER BY s FORMAT RowBinary",
            self.schema.table("spans")
        ))
    }

    fn remote_service_names(&self, service: &str) -> Result<Vec<String>, StorageError> {
        self.strings_query(&format!(
            "SELECT DISTINCT lowerUTF8(remote_service) AS s FROM {} \
             WHERE lowerUTF8(local_service) = {} AND s != '' ORDER BY s FORMAT RowBinary",
            self.schema.table("spans"),
            quote(&service.to_lowercase())
        ))
    }

    fn span_names(&self, service: &str) -> Result<Vec<String>, StorageError> {
        self.strings_query(&format!(
            "SELECT DISTINCT lowerUTF8(name) AS s FROM {} \
             WHERE lowerUTF8(local_service) = {} AND s != '' ORDER BY s FORMAT RowBinary",
            self.schema.table("spans"),
            quote(&service.to_lowercase())
        ))
    }

    /// Two aggregations over the shards: calls answered by an instrumented server or
    /// consumer (joined to their caller), and calls whose callee sent nothing. Links are
    /// (parent, child) with call and error counts, sorted; spans stored twice count once.
    fn dependencies(
        &self,
        end_ts: i64,
        lookback: i64,
    ) -> Result<Vec<DependencyLink>, StorageError> {
        let (lo, hi) = window_us(end_ts, lookback);
        let mut acc: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for l in self
            .served_calls(lo, hi)?
            .into_iter()
            .chain(self.leaf_calls(lo, hi)?)
        {
            let e = acc.entry((l.parent, l.child)).or_default();
            e.0 += l.call_count;
            e.1 += l.error_count;
        }
        Ok(acc
            .into_iter()
            .map(
                |((parent, child), (call_count, error_count))| DependencyLink {
                    parent,
                    child,
                    call_count,
                    error_count,
                },
            )
            .collect())
    }

    fn scan(
        &self,
        start_us: u64,
        end_us: u64,
        visit: &mut dyn FnMut(&Span),
    ) -> Result<(), StorageError> {
        if start_us > end_us {
            return Ok(());
        }
        self.spans_where(
            &format!(
                "timestamp_us != 0 AND timestamp_us >= {start_us} AND timestamp_us <= {end_us}"
            ),
            &mut |s| visit(&s),
        )
    }

    /// SQL over the shards: see [`crate::span_aggregates`].
    fn aggregate(&self, a: &SpanAggregation) -> Result<Option<Vec<SpanGroup>>, StorageError> {
        self.gate.check()?;
        crate::span_aggregates::aggregate(&self.client, &self.schema, self.max_rows_to_read, a)
            .map(Some)
    }

    /// SQL over the shards: see [`crate::span_calls`].
    fn aggregate_calls(&self, a: &CallAggregation) -> Result<Option<Vec<CallGroup>>, StorageError> {
        crate::span_calls::aggregate_calls(&self.client, &self.schema, self.max_rows_to_read, a)
            .map(Some)
    }

    fn autocomplete_keys(&self) -> Result<Vec<String>, StorageError> {
        self.strings_query(&format!(
            "SELECT DISTINCT arrayJoin(tag_keys) AS k FROM {} ORDER BY k FORMAT RowBinary",
            self.schema.table("spans")
        ))
    }

    fn autocomplete_values(&self, key: &str) -> Result<Vec<String>, StorageError> {
        self.strings_query(&format!(
            "SELECT DISTINCT tag_values[indexOf(tag_keys, {k})] AS v FROM {} \
             WHERE has(tag_keys, {k}) ORDER BY v LIMIT {MAX_AUTOCOMPLETE_VALUES} \
             FORMAT RowBinary",
            self.schema.table("spans"),
            k = quote(key)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span() -> Span {
        Span {
            trace_id: TraceId {
                high: 7,
                low: 9,
                is_128: true,
            },
            id: 3,
            parent_id: Some(0),
            name: Some("get /ü".into()),
            kind: Some(SpanKind::Server),
            timestamp: Some(1_700_000_000_000_000),
            duration: Some(5),
            local_endpoint: Some(Endpoint {
                service_name: Some("api".into()),
                ipv4: Some("10.0.0.1".into()),
                ipv6: None,
                port: Some(8080),
            }),
            remote_endpoint: None,
            annotations: vec![Annotation {
                timestamp: 1,
                value: "ws".into(),
            }],
            tags: [("error".to_string(), "".to_string())]
                .into_iter()
                .collect(),
            debug: true,
            shared: false,
        }
    }

    #[test]
    fn rows_round_trip() {
        let s = span();
        let mut w = RowWriter::new();
        encode_fields(&mut w, &s, false);
        let b = w.into_bytes();
        let mut r = RowReader::new(&b);
        assert_eq!(decode(&mut r).unwrap(), s);
        assert!(r.is_done());
        for cut in 0..b.len() {
            assert!(
                decode(&mut RowReader::new(&b[..cut])).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn window_matches_the_embedded_store() {
        assert_eq!(window_us(10, 0), (0, 10_999));
        assert_eq!(window_us(10, 4), (6_000, 10_999));
        assert_eq!(window_us(-5, 100), (0, 999));
    }
}
