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
//! Supported ClickHouse versions: 18.16 (Debian's, what the tests run) and later; the SQL
//! avoids everything newer than 18.16 (see [`schema`]).

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
    read_with(client, max_rows_to_read, sql, &[])
}

/// [`read`] with more settings.
pub(crate) fn read_with(
    client: &Client,
    max_rows_to_read: u64,
    sql: &str,
    extra: &[client::Setting<'_>],
) -> Result<bytes::Bytes, meshlens_model::StorageError> {
    let mut settings = extra.to_vec();
    if max_rows_to_read > 0 {
        settings.push(("max_rows_to_read", max_rows_to_read.to_string()));
    }
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
        let schema = Schema::new(url);
        let before = schema.ensure(&client)?;
        tracing::info!(
            storage = %url,
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
            client,
            schema,
            metrics,
            spans,
        })
    }

    pub fn url(&self) -> &StorageUrl {
        &self.url
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
