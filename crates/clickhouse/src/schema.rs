//! The schema meshlens owns in its database, created and upgraded on start.
//!
//! Layout. With a cluster, every table `x` is a MergeTree table `x_local` on each shard
//! (created `ON CLUSTER`, which 18.16 runs through ZooKeeper's distributed DDL queue) plus a
//! Distributed table `x` over them; reads go through `x`, inserts too (with
//! `insert_distributed_sync=1`, so an acknowledged insert is on its shard, not in a local
//! send queue). Without a cluster, `x` is the MergeTree table itself.
//!
//! Sharding. Metrics are sharded by series fingerprint, so a series' rows in `series` and
//! `samples` share one shard and the reader can join them there (`IN` over `series_local`
//! runs on each shard). Spans are sharded by the low 64 bits of the trace id, so a trace
//! lives on one shard whether it was sent with a 64- or a 128-bit id.
//!
//! Versions. `schema_version` holds one row per applied step. A database written by a newer
//! meshlens is refused with both versions named; older ones are brought up step by step.
//! Every step is idempotent (`IF NOT EXISTS`, and backfills whose repeated rows are folded),
//! so a start that died half way is finished by the next one. Retention drops whole day
//! partitions (see [`Schema::drop_days_before`]).
//!
//! Finding a trace. `spans` is ordered for search by service, so its primary key cannot find
//! a trace id. `trace_index` (step 3) holds each span's trace id and its `spans` key
//! (service, name, timestamp), ordered by trace id: a trace's lookup reads a granule of the
//! index, and then only the `spans` granules holding those keys (18.16 uses a tuple `IN`
//! set over the primary key), where it used to scan every span on every shard. Reordering
//! `spans` by trace id instead would have moved search onto a second table and rewritten
//! every stored span on upgrade; the index costs about 40 bytes a span and is backfilled
//! from `spans` on upgrade.
//!
//! Compatibility: one SQL text for 18.16 and current releases (tested: 18.16 as a 2-shard
//! cluster, 26.9 as one server through chDB). Only features 18.16 has (no Map, no
//! LowCardinality, no skip indexes, no `X-ClickHouse-Exception-Code` header, `Date` literals
//! no later than 2105), and none that current releases dropped or changed:
//! - joins: current releases always run the new analyzer, which refuses an alias defined in
//!   `WHERE` used as a `USING` key and an unaliased joined subquery; the dependency join is
//!   `ON` with the key expression left of `=` (the one form both take);
//! - regexes: named groups go as `(?P<name>…)` (18.16's re2 refuses `(?<name>…)`);
//! - `insert_distributed_sync` is an alias of `distributed_foreground_insert` on current
//!   releases, so the 18.16 name still works;
//! - `MergeTree() PARTITION BY … ORDER BY …` (not the pre-18 `MergeTree(date, key, 8192)`).

use crate::client::{Client, Setting};
use crate::rowbinary::RowReader;
use crate::url::StorageUrl;
use crate::ClickHouseError;

/// The schema version this meshlens writes and reads.
pub const SCHEMA_VERSION: u32 = 4;

const US_PER_DAY: u64 = 86_400_000_000;

/// One table of the schema: its columns, its MergeTree engine clause and its sharding key.
struct TableDef {
    name: &'static str,
    columns: &'static str,
    engine: &'static str,
    shard_key: &'static str,
}

const SCHEMA_VERSION_TABLE: TableDef = TableDef {
    name: "schema_version",
    columns: "version UInt32, written_by String, applied_at DateTime",
    engine: "MergeTree() ORDER BY version",
    shard_key: "version",
};

/// Step 1: metrics and spans.
const STEP_1: &[TableDef] = &[
    // One row per series and UTC day on which it has samples: the label index, and what
    // lets a query find the series of a time range without reading samples. Replacing
    // merges fold the rows a restarted writer sends again.
    TableDef {
        name: "series",
        columns: "day Date, fingerprint UInt64, metric_name String, \
                  label_names Array(String), label_values Array(String)",
        engine: "ReplacingMergeTree() PARTITION BY day ORDER BY (metric_name, fingerprint)",
        shard_key: "fingerprint",
    },
    // Samples keyed by (fingerprint, t): a retried insert's rows are folded by merges and
    // dropped by the reader (`LIMIT 1 BY`) until then.
    TableDef {
        name: "samples",
        columns: "fingerprint UInt64, t Int64, value Float64",
        engine: "ReplacingMergeTree() \
                 PARTITION BY toDate(toDateTime(intDiv(t, 1000), 'UTC')) \
                 ORDER BY (fingerprint, t)",
        shard_key: "fingerprint",
    },
    // Spans with the columns search, dependencies and traffic stats filter and group by;
    // the rest (annotations, other tags) as parallel arrays. Ordered for search by service.
    TableDef {
        name: "spans",
        columns: "trace_id_high UInt64, trace_id_low UInt64, trace_id_128 UInt8, \
                  span_id UInt64, parent_id UInt64, has_parent UInt8, \
                  name String, kind String, timestamp_us UInt64, duration_us UInt64, \
                  local_service String, remote_service String, \
                  local_ipv4 String, local_ipv6 String, local_port UInt16, \
                  remote_ipv4 String, remote_ipv6 String, remote_port UInt16, \
                  status_code String, error UInt8, url String, user_agent String, \
                  tag_keys Array(String), tag_values Array(String), \
                  annotation_ts Array(UInt64), annotation_values Array(String), \
                  debug UInt8, shared UInt8",
        engine: "MergeTree() \
                 PARTITION BY toDate(toDateTime(intDiv(timestamp_us, 1000000), 'UTC')) \
                 ORDER BY (local_service, name, timestamp_us)",
        shard_key: "trace_id_low",
    },
];

/// Step 2: metric metadata (`# TYPE`, `# HELP`, `# UNIT`), one row per family and change;
/// the reader takes each family's latest by `updated_ms`, and replacing merges keep only
/// that. Not partitioned by day: retention never drops what a family is.
const STEP_2: &[TableDef] = &[TableDef {
    name: "metadata",
    columns: "metric_family String, type String, help String, unit String, updated_ms UInt64",
    engine: "ReplacingMergeTree(updated_ms) ORDER BY metric_family",
    shard_key: "cityHash64(metric_family)",
}];

/// Step 3: the trace index (see the module doc). Its rows are keyed by everything they
/// hold, so a retried insert or a repeated backfill is folded by merges, and a repeated row
/// only repeats an element of the reader's `IN` set until then. Written before the spans of
/// a batch, so a stored span always has its index row.
const STEP_3: &[TableDef] = &[TableDef {
    name: "trace_index",
    columns: "trace_id_low UInt64, trace_id_high UInt64, \
              local_service String, name String, timestamp_us UInt64",
    engine: "ReplacingMergeTree() \
             PARTITION BY toDate(toDateTime(intDiv(timestamp_us, 1000000), 'UTC')) \
             ORDER BY (trace_id_low, trace_id_high, local_service, name, timestamp_us)",
    shard_key: "trace_id_low",
}];

/// Step 4: native histogram samples, keyed as `samples` is (a series' labels are in
/// `series`), each histogram's parts as columns so SQL can read them: the counter-reset hint
/// (0 unknown, 1 reset, 2 not a reset, 3 gauge), the bucket layout (schema, spans as
/// parallel offset and length arrays, custom bounds) and the counts.
const STEP_4: &[TableDef] = &[TableDef {
    name: "histograms",
    columns: "fingerprint UInt64, t Int64, reset_hint UInt8, schema Int32, \
              zero_threshold Float64, zero_count Float64, count Float64, sum Float64, \
              positive_offsets Array(Int32), positive_lengths Array(UInt32), \
              positive_buckets Array(Float64), \
              negative_offsets Array(Int32), negative_lengths Array(UInt32), \
              negative_buckets Array(Float64), custom_values Array(Float64)",
    engine: "ReplacingMergeTree() \
             PARTITION BY toDate(toDateTime(intDiv(t, 1000), 'UTC')) \
             ORDER BY (fingerprint, t)",
    shard_key: "fingerprint",
}];

/// The `trace_index` columns, in the order every insert writes them.
pub(crate) const TRACE_INDEX_COLUMNS: &str =
    "trace_id_low, trace_id_high, local_service, name, timestamp_us";

/// Which data a retention pass drops: metrics and spans keep their own retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    Metrics,
    Spans,
}

impl DataKind {
    /// The tables holding this data, all partitioned by UTC day.
    fn tables(self) -> &'static [&'static str] {
        match self {
            DataKind::Metrics => &["series", "samples", "histograms"],
            DataKind::Spans => &["spans", "trace_index"],
        }
    }
}

/// Where meshlens' tables are, and how to name them in SQL.
#[derive(Clone, Debug)]
pub struct Schema {
    pub database: String,
    pub cluster: Option<String>,
}

impl Schema {
    pub fn new(url: &StorageUrl) -> Schema {
        Schema {
            database: url.database.clone(),
            cluster: url.cluster.clone(),
        }
    }

    /// The table queries and inserts go through (Distributed with a cluster).
    pub fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.database)
    }

    /// The shard-local table (the same table without a cluster): what a subquery inside a
    /// distributed query names, so it runs on each shard over that shard's rows.
    pub fn local(&self, name: &str) -> String {
        match self.cluster {
            Some(_) => format!("{}.{name}_local", self.database),
            None => self.table(name),
        }
    }

    /// The shard-local table's own name, without the database, as `system.parts` names it.
    pub fn local_name(&self, name: &str) -> String {
        match self.cluster {
            Some(_) => format!("{name}_local"),
            None => name.to_string(),
        }
    }

    fn on_cluster(&self) -> String {
        match &self.cluster {
            Some(c) => format!(" ON CLUSTER {c}"),
            None => String::new(),
        }
    }

    /// Settings of DDL: with a cluster, ClickHouse waits for every host to run an `ON
    /// CLUSTER` statement for `distributed_ddl_task_timeout` (180 s by default); keeping it
    /// under the client's timeout makes a down shard an error from ClickHouse that names
    /// the hosts, rather than a bare client timeout.
    fn ddl_settings(&self, client: &Client) -> Vec<Setting<'static>> {
        match self.cluster {
            Some(_) => {
                let secs = client.timeout().as_secs().saturating_sub(5).max(1);
                vec![("distributed_ddl_task_timeout", secs.to_string())]
            }
            None => Vec::new(),
        }
    }

    /// Settings every insert carries: with a cluster, wait until the rows are on their
    /// shard (18.16's default queues them locally and acknowledges at once).
    pub fn insert_settings(&self) -> Vec<Setting<'static>> {
        match self.cluster {
            Some(_) => vec![("insert_distributed_sync", "1".into())],
            None => Vec::new(),
        }
    }

    /// Creates what is missing and applies pending steps; refuses a newer schema.
    /// Returns the version found before (0 for a new database).
    pub fn ensure(&self, client: &Client) -> Result<u32, ClickHouseError> {
        self.ensure_up_to(client, SCHEMA_VERSION)
    }

    /// [`ensure`](Self::ensure) stopping at `target`: what tests use to stage a database
    /// written by an older meshlens. A database beyond `target` (or beyond
    /// [`SCHEMA_VERSION`]) is refused.
    pub fn ensure_up_to(&self, client: &Client, target: u32) -> Result<u32, ClickHouseError> {
        let target = target.min(SCHEMA_VERSION);
        if let Some(cluster) = &self.cluster {
            let sql = format!(
                "SELECT count() FROM system.clusters WHERE cluster = {} FORMAT RowBinary",
                crate::sql::quote(cluster)
            );
            let b = client.query(&sql, &[])?;
            if RowReader::new(&b).u64()? == 0 {
                return Err(ClickHouseError::UnknownCluster {
                    url: client.base_url().to_string(),
                    cluster: cluster.clone(),
                });
            }
        }
        client.execute(
            &format!(
                "CREATE DATABASE IF NOT EXISTS {}{}",
                self.database,
                self.on_cluster()
            ),
            &self.ddl_settings(client),
        )?;
        self.create(client, &SCHEMA_VERSION_TABLE)?;
        let stored = self.stored_version(client)?;
        if stored > target {
            return Err(ClickHouseError::SchemaTooNew {
                database: self.database.clone(),
                stored,
                supported: target,
            });
        }
        for version in stored + 1..=target {
            tracing::info!(database = %self.database, version, "applying clickhouse schema step");
            self.apply_step(client, version)?;
            self.record_version(client, version)?;
        }
        Ok(stored)
    }

    /// Runs step `version` without recording it: idempotent, so running it again (a start
    /// that died before recording it) only finishes it. Public so tests can stage that.
    pub fn apply_step(&self, client: &Client, version: u32) -> Result<(), ClickHouseError> {
        for t in step(version) {
            self.create(client, t)?;
        }
        if version == 3 {
            self.backfill_trace_index(client)?;
        }
        Ok(())
    }

    /// Index rows for the spans an older meshlens (schema 1 or 2) wrote, one UTC day per statement so
    /// no single statement copies the whole table. Spans written meanwhile by a new
    /// meshlens get a second copy of their rows, which merges fold.
    fn backfill_trace_index(&self, client: &Client) -> Result<(), ClickHouseError> {
        let spans = self.table("spans");
        let days = client.query(
            &format!(
                "SELECT DISTINCT toUInt32(intDiv(timestamp_us, {US_PER_DAY})) AS d FROM {spans} \
                 ORDER BY d FORMAT RowBinary"
            ),
            &[],
        )?;
        let mut r = RowReader::new(&days);
        while !r.is_done() {
            let day = u64::from(r.u32()?);
            tracing::info!(database = %self.database, day, "backfilling the trace index");
            client.query(
                &format!(
                    "INSERT INTO {} ({TRACE_INDEX_COLUMNS}) SELECT {TRACE_INDEX_COLUMNS} \
                     FROM {spans} WHERE timestamp_us >= {} AND timestamp_us < {}",
                    self.table("trace_index"),
                    day * US_PER_DAY,
                    (day + 1) * US_PER_DAY
                ),
                &self.insert_settings(),
            )?;
        }
        Ok(())
    }

    /// The highest applied step, 0 when none.
    pub fn stored_version(&self, client: &Client) -> Result<u32, ClickHouseError> {
        self.stored_version_with(client, &[])
    }

    /// [`stored_version`](Self::stored_version) with query settings (a status page skips
    /// shards that are down).
    pub fn stored_version_with(
        &self,
        client: &Client,
        settings: &[Setting<'_>],
    ) -> Result<u32, ClickHouseError> {
        let sql = format!(
            "SELECT toUInt32(max(version)) FROM {} FORMAT RowBinary",
            self.table("schema_version")
        );
        let b = client.query(&sql, settings)?;
        let mut r = RowReader::new(&b);
        // An empty table gives 0 (max over no rows is the type's default).
        if r.is_done() {
            Ok(0)
        } else {
            r.u32()
        }
    }

    /// Records a step as applied. Public so tests can stage a database "from the future".
    pub fn record_version(&self, client: &Client, version: u32) -> Result<(), ClickHouseError> {
        let sql = format!(
            "INSERT INTO {} (version, written_by, applied_at) VALUES ({version}, {}, now())",
            self.table("schema_version"),
            crate::sql::quote(concat!("meshlens ", env!("CARGO_PKG_VERSION")))
        );
        client.query(&sql, &self.insert_settings()).map(drop)
    }

    fn create(&self, client: &Client, t: &TableDef) -> Result<(), ClickHouseError> {
        let on = self.on_cluster();
        client.execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {}{on} ({}) ENGINE = {}",
                self.local(t.name),
                t.columns,
                t.engine
            ),
            &self.ddl_settings(client),
        )?;
        if let Some(cluster) = &self.cluster {
            client.execute(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {}{on} AS {} ENGINE = Distributed({cluster}, {}, {}_local, {})",
                    self.table(t.name),
                    self.local(t.name),
                    self.database,
                    t.name,
                    t.shard_key
                ),
                &self.ddl_settings(client),
            )?;
        }
        Ok(())
    }

    /// Retention: drops every day partition (UTC) older than `day` (days since the epoch)
    /// from the tables of `kind`, on every shard. Dropping a partition is a metadata
    /// operation, far cheaper than deleting rows. Returns the partitions dropped (table,
    /// `YYYYMMDD`).
    pub fn drop_days_before(
        &self,
        client: &Client,
        kind: DataKind,
        day: i64,
    ) -> Result<Vec<(String, String)>, ClickHouseError> {
        let cutoff = crate::time::partition_id(day);
        let parts_source = match &self.cluster {
            Some(c) => format!("cluster({}, system, parts)", crate::sql::quote(c)),
            None => "system.parts".to_string(),
        };
        let mut dropped = Vec::new();
        for name in kind.tables() {
            let local = self.local(name);
            let local_name = self.local_name(name);
            let sql = format!(
                "SELECT DISTINCT partition_id FROM {parts_source} \
                 WHERE database = {} AND table = {} AND active AND partition_id < {} \
                 ORDER BY partition_id FORMAT RowBinary",
                crate::sql::quote(&self.database),
                crate::sql::quote(&local_name),
                crate::sql::quote(&cutoff)
            );
            let b = client.query(&sql, &[])?;
            let mut r = RowReader::new(&b);
            while !r.is_done() {
                let id = r.string()?;
                client.execute(
                    &format!(
                        "ALTER TABLE {local}{} DROP PARTITION ID {}",
                        self.on_cluster(),
                        crate::sql::quote(&id)
                    ),
                    &self.ddl_settings(client),
                )?;
                dropped.push((name.to_string(), id));
            }
        }
        Ok(dropped)
    }
}

fn step(version: u32) -> &'static [TableDef] {
    match version {
        1 => STEP_1,
        2 => STEP_2,
        3 => STEP_3,
        4 => STEP_4,
        _ => &[],
    }
}
