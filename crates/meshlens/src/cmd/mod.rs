//! One module per subcommand.

pub mod agent;
pub mod bench;
pub mod ca;
pub mod demo;
pub mod features;
pub mod graph;
pub mod import;
pub mod proxy;
pub mod query;
pub mod remediation;
pub mod rollout;
pub mod rules;
pub mod server;
pub mod slo;
pub mod stats;
pub mod traces;
pub mod validate;
pub mod verify;

/// A `--storage` value (`embedded` or `clickhouse://HOST:PORT/DATABASE[?cluster=CLUSTER]`),
/// parsed the same way for every command that takes it.
pub fn parse_storage(value: &str) -> anyhow::Result<meshlens_server::MetricStorage> {
    use anyhow::Context;
    if value == "embedded" {
        return Ok(meshlens_server::MetricStorage::Embedded);
    }
    if !value.starts_with("clickhouse:") {
        anyhow::bail!(
            "--storage: {value:?} is neither embedded nor clickhouse://HOST:PORT/DATABASE[?cluster=CLUSTER]"
        );
    }
    let url = meshlens_clickhouse::StorageUrl::parse(value).context("--storage")?;
    Ok(meshlens_server::MetricStorage::ClickHouse(url))
}
