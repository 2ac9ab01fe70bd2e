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
mod histograms;
pub mod metrics;
mod ready;
mod rowbinary;
pub mod schema;
pub mod span_aggregates;
pub mod span_calls;
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
pub use ready::Gate;
pub use schema::{DataKind, Schema, SCHEMA_VERSION};
pub use spans::SpanStore;
pub use status::{ShardStatus, StorageStatus};
pub use url::{tenant_database, StorageUrl, DEFAULT_HTTP_PORT};

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
    Ok(strings(&b)?)
}

/// A one-column `String` answer, without the scan guard.
fn read_strings_raw(client: &Client, sql: &str) -> Result<Vec<String>, ClickHouseError> {
    strings(&client.query(sql, &[])?)
}

/// The rows of a one-column `String` RowBinary answer.
fn strings(b: &[u8]) -> Result<Vec<String>, ClickHouseError> {
    let mut r = rowbinary::RowReader::new(b);
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

/// Whether `database` exists on the server `client` talks to: a tenant's database written
/// through another meshlens is opened for reading, and nothing is created to find out.
pub fn database_exists(client: &Client, database: &str) -> Result<bool, ClickHouseError> {
    let sql = format!(
        "SELECT count() FROM system.databases WHERE name = {} FORMAT RowBinary",
        sql::quote(database)
    );
    let b = client.query(&sql, &[])?;
    Ok(rowbinary::RowReader::new(&b).u64()? > 0)
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
    gate: Arc<Gate>,
    metrics: Arc<MetricStore>,
    spans: Arc<SpanStore>,
}

impl ClickHouseStorage {
    /// Connects, then creates or upgrades the schema. Fails with a clear error when the
    /// server is unreachable (naming its address), when the cluster is unknown to it, or
    /// when the database holds a schema from a newer meshlens.
    pub fn open(url: &StorageUrl, opts: StorageOptions) -> Result<Self, ClickHouseError> {
        let client = Arc::new(Client::new(url, opts.client.clone())?);
        let s = Self::connect(client, url, &opts);
        s.ensure_ready()?;
        Ok(s)
    }

    /// The storage of `url`'s database over a shared client (several databases, one
    /// connection pool), without contacting ClickHouse: every store operation first
    /// passes the [`Gate`], which creates the schema on first use. Call
    /// [`ensure_ready`](Self::ensure_ready) to do that now and fail early instead.
    pub fn connect(client: Arc<Client>, url: &StorageUrl, opts: &StorageOptions) -> Self {
        let schema = Schema::new(url);
        let gate = Arc::new(Gate::new(client.clone(), schema.clone()));
        let metrics = Arc::new(MetricStore::new(
            client.clone(),
            schema.clone(),
            opts.max_rows_to_read,
            gate.clone(),
        ));
        let spans = Arc::new(SpanStore::new(
            client.clone(),
            schema.clone(),
            opts.max_rows_to_read,
            gate.clone(),
        ));
        ClickHouseStorage {
            url: url.clone(),
            client,
            schema,
            gate,
            metrics,
            spans,
        }
    }

    /// Pings ClickHouse and creates or upgrades the schema now (see [`open`](Self::open)).
    pub fn ensure_ready(&self) -> Result<(), ClickHouseError> {
        let before = self.gate.ensure()?;
        tracing::info!(
            storage = %self.url,
            server_version = %self.server_version(),
            schema_version = SCHEMA_VERSION,
            found = before,
            "clickhouse storage ready"
        );
        Ok(())
    }

    /// Whether the schema is known to be in place (false until ClickHouse was reached).
    pub fn is_ready(&self) -> bool {
        self.gate.is_open()
    }

    pub fn url(&self) -> &StorageUrl {
        &self.url
    }

    /// The server's version (`SELECT version()`, e.g. `18.16.1` or `26.9.2.1`) as it
    /// answered when first reached; empty until then.
    pub fn server_version(&self) -> &str {
        self.gate.server_version()
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
        self.gate.check()?;
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
