//! What the storage holds, shard by shard: rows and bytes of meshlens' tables from
//! ClickHouse's own `system` tables, for the server's storage status.
//!
//! Why per shard rather than one query over the cluster: `cluster()` and Distributed reads
//! on 18.16 cannot say which shard a row came from (`_shard_num` and `shardNum()` are newer),
//! so each shard listed in `system.clusters` is asked through `remote('host:port', system,
//! parts)`. A shard that cannot be asked (down, or refusing ClickHouse's default user, which
//! `remote()` connects as: the storage address's password is never put into SQL, where
//! ClickHouse's query log would keep it) gets its error in its row instead of failing the
//! whole answer.

use crate::rowbinary::RowReader;
use crate::sql::quote;
use crate::{ClickHouseError, ClickHouseStorage};

/// The tables whose rows and bytes are counted, by their schema name.
const TABLES: [&str; 3] = ["series", "samples", "spans"];

/// One shard replica's share of meshlens' tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStatus {
    /// The shard's number in `system.clusters`, from 1 (1 for a single server).
    pub shard: u32,
    /// The replica's number within its shard, from 1.
    pub replica_num: u32,
    /// `host:port` as the cluster lists it (its native TCP port), or the storage address's
    /// host and HTTP port for a single server.
    pub replica: String,
    pub series_rows: u64,
    pub sample_rows: u64,
    pub span_rows: u64,
    /// Active parts of the three tables on this replica.
    pub bytes_on_disk: u64,
    /// Why the figures could not be read; the counts are 0 then.
    pub error: Option<String>,
}

/// The storage as a status page shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageStatus {
    /// The schema version recorded in the database (not the one this binary knows); None
    /// when the shard holding that record cannot be reached.
    pub schema_version: Option<u32>,
    pub shards: Vec<ShardStatus>,
}

impl StorageStatus {
    /// Sums over the first replica of each shard (replicas hold copies, not more data), and
    /// over shards whose figures were read.
    pub fn totals(&self) -> ShardStatus {
        let mut t = ShardStatus::default();
        for s in self
            .shards
            .iter()
            .filter(|s| s.replica_num <= 1 && s.error.is_none())
        {
            t.series_rows += s.series_rows;
            t.sample_rows += s.sample_rows;
            t.span_rows += s.span_rows;
            t.bytes_on_disk += s.bytes_on_disk;
        }
        t
    }
}

impl ClickHouseStorage {
    /// Reads the schema version and each shard's figures. Fails only when the server the
    /// address names cannot answer; a shard that cannot be read carries its error.
    pub fn storage_status(&self) -> Result<StorageStatus, ClickHouseError> {
        let client = self.client();
        let schema = self.schema();
        let schema_version = self.recorded_version()?;
        let shards = match &schema.cluster {
            None => {
                let url = self.url();
                let mut s = ShardStatus {
                    shard: 1,
                    replica_num: 1,
                    replica: format!("{}:{}", url.host, url.port),
                    ..Default::default()
                };
                self.fill(&mut s, "system.parts");
                vec![s]
            }
            Some(cluster) => {
                let sql = format!(
                    "SELECT toUInt32(shard_num), toUInt32(replica_num), host_name, toUInt16(port) \
                     FROM system.clusters WHERE cluster = {} \
                     ORDER BY shard_num, replica_num FORMAT RowBinary",
                    quote(cluster)
                );
                let b = client.query(&sql, &[])?;
                let mut r = RowReader::new(&b);
                let mut shards = Vec::new();
                while !r.is_done() {
                    let shard = r.u32()?;
                    let replica_num = r.u32()?;
                    let host = r.string()?;
                    let port = r.u16()?;
                    let addr = host_port(&host, port);
                    let mut s = ShardStatus {
                        shard,
                        replica_num,
                        replica: addr.clone(),
                        ..Default::default()
                    };
                    self.fill(&mut s, &format!("remote({}, system, parts)", quote(&addr)));
                    shards.push(s);
                }
                shards
            }
        };
        Ok(StorageStatus {
            schema_version,
            shards,
        })
    }

    /// The highest version in `schema_version`, skipping shards that are down (the record
    /// lives on one shard; the others' figures are still worth showing without it).
    fn recorded_version(&self) -> Result<Option<u32>, ClickHouseError> {
        let v = self
            .schema()
            .stored_version_with(self.client(), &[("skip_unavailable_shards", "1".into())])?;
        Ok((v > 0).then_some(v))
    }

    /// Rows and bytes of the shard-local tables as `parts` (a `system.parts` source) has them.
    fn fill(&self, s: &mut ShardStatus, parts: &str) {
        if let Err(e) = self.read_parts(s, parts) {
            s.error = Some(e.to_string());
        }
    }

    fn read_parts(&self, s: &mut ShardStatus, parts: &str) -> Result<(), ClickHouseError> {
        let schema = self.schema();
        let locals: Vec<String> = TABLES.iter().map(|t| schema.local_name(t)).collect();
        let list: Vec<String> = locals.iter().map(|t| quote(t)).collect();
        let sql = format!(
            "SELECT table, toUInt64(sum(rows)), toUInt64(sum(bytes_on_disk)) FROM {parts} \
             WHERE database = {} AND table IN ({}) AND active \
             GROUP BY table FORMAT RowBinary",
            quote(&schema.database),
            list.join(", ")
        );
        let b = self.client().query(&sql, &[])?;
        let mut r = RowReader::new(&b);
        while !r.is_done() {
            let table = r.string()?;
            let rows = r.u64()?;
            let bytes = r.u64()?;
            s.bytes_on_disk += bytes;
            match locals.iter().position(|t| *t == table) {
                Some(0) => s.series_rows = rows,
                Some(1) => s.sample_rows = rows,
                Some(2) => s.span_rows = rows,
                _ => {}
            }
        }
        Ok(())
    }
}

/// `host:port`, an IPv6 address in brackets as `remote()` wants it.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_first_replicas_that_answered() {
        let shard = |shard, replica_num, rows, error: Option<&str>| ShardStatus {
            shard,
            replica_num,
            replica: format!("h{shard}:{replica_num}"),
            series_rows: rows,
            sample_rows: rows * 10,
            span_rows: rows,
            bytes_on_disk: rows * 100,
            error: error.map(str::to_string),
        };
        let st = StorageStatus {
            schema_version: Some(1),
            shards: vec![
                shard(1, 1, 2, None),
                shard(1, 2, 2, None),
                shard(2, 1, 3, None),
                shard(3, 1, 0, Some("down")),
            ],
        };
        let t = st.totals();
        assert_eq!(
            (t.series_rows, t.sample_rows, t.span_rows, t.bytes_on_disk),
            (5, 50, 5, 500)
        );
    }

    #[test]
    fn addresses_for_remote() {
        assert_eq!(host_port("127.0.0.1", 9000), "127.0.0.1:9000");
        assert_eq!(host_port("::1", 9000), "[::1]:9000");
        let clustered = crate::Schema {
            database: "db".into(),
            cluster: Some("c".into()),
        };
        assert_eq!(clustered.local_name("samples"), "samples_local");
    }
}
