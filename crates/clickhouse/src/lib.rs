//! The metric and span storage traits over a ClickHouse server or cluster: the schema meshlens
//! owns there, SQL pushdown of selections, and batched RowBinary inserts.
//!
//! Main types: [`StorageUrl`] (the `clickhouse://HOST:PORT/DATABASE?cluster=CLUSTER`
//! address), [`Client`] (a blocking client for ClickHouse's HTTP interface), [`Schema`]
//! (tables, versions, retention) and [`ClickHouseStorage`], whose
//! [`metrics`](ClickHouseStorage::metrics) implement `MetricWriter` and `MetricReader` and
//! whose [`spans`](ClickHouseStorage::spans) implement `SpanWriter` and `SpanReader`.
//!
//! Key design decision: data is sharded by series fingerprint (metrics) and trace id
//! (spans), so everything one query needs about one series or one trace is on one shard;
//! selections run as SQL on the shards and only matching rows travel, decoded here; the
//! traffic statistics' counts, distinct traces and response times are aggregated on the
//! shards too, and only grouped rows travel (see [`span_aggregates`]). Inserts are
//! at-least-once and deduplicated on the query side (see [`metrics`] and [`spans`]): the
//! server acknowledges writes once they are in its local write-ahead buffer and inserts them
//! from there, again after a crash or a failed insert, so any batch may arrive twice, whole
//! or (when one shard refused it) in part.
//!
//! Supported ClickHouse versions: 18.16 and later. The tests run on Debian's 18.16 as a
//! 2-shard cluster and on 26.9 (the engine of the pinned `chdb-core`) as one server; the SQL
//! is one text for both, avoiding everything newer than 18.16 and everything current
//! releases dropped (see [`schema`] for the list). The server's version is read at open
//! and logged.

pub mod client;
mod error;
pub mod metrics;
mod rowbinary;
pub mod schema;
pub mod span_aggregates;
pub mod spans;
mod sql;
pub mod status;
mod time;
mod url;

#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

pub use client::{Client, ClientOptions};
pub use error::{code, ClickHouseError};
pub use metrics::MetricStore;
pub use schema::{DataKind, Schema, SCHEMA_VERSION};
pub use spans::SpanStore;
pub use status::{ShardStatus, StorageStatus};
pub use url::{StorageUrl, DEFAULT_HTTP_PORT};

/// A read under the scan guard every store query carries: ClickHouse's `max_rows_to_read`
/// (0: none), a read that would scan more failing with `TooManySamples` (422) naming it.
pub(crate) fn read(
    client: &Client,
    max_rows_to_read: u64,
    sql: &str,
) -> Result<bytes::Bytes, meshlens_model::StorageError> {
    let settings = match max_rows_to_read {
        0 => Vec::new(),
        n => vec![("max_rows_to_read", n.to_string())],
    };
    client.query(sql, &settings).map_err(|e| match e.code() {
        Some(code::TOO_MANY_ROWS) => meshlens_model::StorageError::TooManySamples {
            limit: usize::try_from(max_rows_to_read).unwrap_or(usize::MAX),
        },
        _ => e.into(),
    })
}

/// [`read`] of a one-column `String` answer.
pub(crate) fn read_strings(
    client: &Client,
    max_rows_to_read: u64,
    sql: &str,
) -> Result<Vec<String>, meshlens_model::StorageError> {
    let b = read(client, max_rows_to_read, sql)?;
    let mut r = rowbinary::RowReader::new(&b);
    let mut out = Vec::new();
    while !r.is_done() {
        out.push(r.string()?);
    }
    Ok(out)
}

/// A one-column `String` answer, without the scan guard.
fn read_strings_raw(client: &Client, sql: &str) -> Result<Vec<String>, ClickHouseError> {
    let b = client.query(sql, &[])?;
    let mut r = rowbinary::RowReader::new(&b);
    let mut out = Vec::new();
    while !r.is_done() {
        out.push(r.string()?);
    }
    Ok(out)
}

/// Whether a `version()` answer is 18.16 or later (the tested range starts there); an
/// answer that does not parse is taken as supported rather than warned about.
fn is_supported(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= (18, 16),
        _ => true,
    }
}

/// Options of a ClickHouse-backed storage.
#[derive(Clone, Debug, Default)]
pub struct StorageOptions {
    pub client: ClientOptions,
    /// ClickHouse's `max_rows_to_read` for every metric and span query; 0 means no limit. A query
    /// that would scan more fails with `TooManySamples` naming this limit (HTTP 422).
    pub max_rows_to_read: u64,
}

/// Storage on ClickHouse: opened once at start, shared by writers and readers.
pub struct ClickHouseStorage {
    url: StorageUrl,
    /// `SELECT version()` at open, e.g. `18.16.1` or `26.9.2.1`.
    server_version: String,
    client: Arc<Client>,
    schema: Schema,
    metrics: Arc<MetricStore>,
    spans: Arc<SpanStore>,
}

impl ClickHouseStorage {
    /// Connects, then creates or upgrades the schema. Fails with a clear error when the
    /// server is unreachable (naming its address), when the cluster is unknown to it, or
    /// when the database holds a schema from a newer meshlens.
    pub fn open(url: &StorageUrl, opts: StorageOptions) -> Result<Self, ClickHouseError> {
        let client = Arc::new(Client::new(url, opts.client.clone())?);
        client.ping()?;
        let server_version = read_strings_raw(&client, "SELECT version() FORMAT RowBinary")?
            .into_iter()
            .next()
            .unwrap_or_default();
        if !is_supported(&server_version) {
            tracing::warn!(
                storage = %url,
                server_version = %server_version,
                "this ClickHouse is older than 18.16, the oldest release meshlens is tested on"
            );
        }
        let schema = Schema::new(url);
        let before = schema.ensure(&client)?;
        tracing::info!(
            storage = %url,
            server_version = %server_version,
            schema_version = SCHEMA_VERSION,
            found = before,
            "clickhouse storage ready"
        );
        let metrics = Arc::new(MetricStore::new(
            client.clone(),
            schema.clone(),
            opts.max_rows_to_read,
        ));
        let spans = Arc::new(SpanStore::new(
            client.clone(),
            schema.clone(),
            opts.max_rows_to_read,
        ));
        Ok(ClickHouseStorage {
            url: url.clone(),
            server_version,
            client,
            schema,
            metrics,
            spans,
        })
    }

    pub fn url(&self) -> &StorageUrl {
        &self.url
    }

    /// The server's version as it answered at open (`SELECT version()`).
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The metrics store (`MetricWriter` + `MetricReader`).
    pub fn metrics(&self) -> &MetricStore {
        &self.metrics
    }

    /// The metrics store, shared: what a server hands to its readers and writers.
    pub fn metric_store(&self) -> Arc<MetricStore> {
        self.metrics.clone()
    }

    /// The span store (`SpanWriter` + `SpanReader`).
    pub fn spans(&self) -> &SpanStore {
        &self.spans
    }

    /// The span store, shared: what a server hands to its readers and writers.
    pub fn span_store(&self) -> Arc<SpanStore> {
        self.spans.clone()
    }

    /// Retention: drops the day partitions of `kind` before `day` (days since the epoch,
    /// UTC).
    pub fn drop_days_before(
        &self,
        kind: DataKind,
        day: i64,
    ) -> Result<Vec<(String, String)>, ClickHouseError> {
        self.schema.drop_days_before(&self.client, kind, day)
    }

    /// Retention by age: drops the `kind` days that lie wholly before `now_ms - keep_ms`.
    pub fn enforce_retention(
        &self,
        kind: DataKind,
        now_ms: i64,
        keep_ms: i64,
    ) -> Result<Vec<(String, String)>, ClickHouseError> {
        let cutoff = now_ms.saturating_sub(keep_ms).div_euclid(time::MS_PER_DAY);
        self.drop_days_before(kind, cutoff)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_from_18_16_are_supported() {
        for v in ["18.16.1", "26.9.2.1", "19.1", "garbage", ""] {
            assert!(super::is_supported(v), "{v}");
        }
        for v in ["18.14.18", "1.1.54390"] {
            assert!(!super::is_supported(v), "{v}");
        }
    }
}
