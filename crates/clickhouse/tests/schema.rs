//! The schema on a real 2-shard ClickHouse 18.16 cluster: created on start, idempotent on
//! restart, refused when newer, single-server mode, retention by partition.

mod common;

use meshlens_clickhouse::{
    ClickHouseError, ClickHouseStorage, DataKind, StorageOptions, StorageUrl,
};
use meshlens_model::{Labels, MetricWriter, Sample, TimeSeries};

fn tables(node: &meshlens_clickhouse::testing::ClickHouseNode, db: &str) -> Vec<String> {
    let out = node
        .sql(&format!(
            "SELECT name FROM system.tables WHERE database = '{db}' ORDER BY name"
        ))
        .unwrap();
    out.lines().map(str::to_string).collect()
}

#[test]
fn schema_is_created_on_every_shard_and_restart_is_idempotent() {
    let Some(c) = common::cluster() else { return };
    let url = c.storage_url(0, "schema_create");
    let s = common::open(&url);
    let want = [
        "samples",
        "samples_local",
        "schema_version",
        "schema_version_local",
        "series",
        "series_local",
        "spans",
        "spans_local",
        "trace_index",
        "trace_index_local",
    ];
    for node in &c.nodes {
        assert_eq!(
            tables(node, "schema_create"),
            want,
            "on {}",
            node.http_base()
        );
    }
    // Distributed tables are sharded as documented.
    let ddl = c.nodes[1]
        .sql("SELECT engine_full FROM system.tables WHERE database = 'schema_create' AND name IN ('samples', 'spans') ORDER BY name")
        .unwrap();
    assert!(
        ddl.contains("Distributed(meshlens_test, schema_create, samples_local, fingerprint)"),
        "{ddl}"
    );
    assert!(
        ddl.contains("Distributed(meshlens_test, schema_create, spans_local, trace_id_low)"),
        "{ddl}"
    );
    assert_eq!(s.schema().stored_version(s.client()).unwrap(), 2);
    drop(s);

    // A restart (through the other server, even) finds everything and applies nothing.
    let s = common::open(&c.storage_url(1, "schema_create"));
    assert_eq!(s.schema().stored_version(s.client()).unwrap(), 2);
    let rows = c.nodes[0]
        .sql("SELECT count() FROM schema_create.schema_version")
        .unwrap();
    assert_eq!(rows.trim(), "2", "one row per applied step");
}

#[test]
fn a_newer_schema_is_refused_naming_both_versions() {
    let Some(c) = common::cluster() else { return };
    let url = c.storage_url(0, "schema_newer");
    let s = common::open(&url);
    s.schema().record_version(s.client(), 7).unwrap();
    drop(s);
    let err = ClickHouseStorage::open(&StorageUrl::parse(&url).unwrap(), StorageOptions::default())
        .err()
        .expect("a schema from the future must be refused");
    assert!(
        matches!(
            err,
            ClickHouseError::SchemaTooNew {
                stored: 7,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("version 7") && text.contains("version 2"),
        "{text}"
    );
}

#[test]
fn one_server_without_cluster_has_plain_tables_there_only() {
    let Some(c) = common::cluster() else { return };
    let _s = common::open(&c.single_url(1, "schema_single"));
    assert_eq!(
        tables(&c.nodes[1], "schema_single"),
        [
            "samples",
            "schema_version",
            "series",
            "spans",
            "trace_index"
        ]
    );
    assert!(tables(&c.nodes[0], "schema_single").is_empty());
    let engine = c.nodes[1]
        .sql("SELECT engine FROM system.tables WHERE database = 'schema_single' AND name = 'samples'")
        .unwrap();
    assert_eq!(engine.trim(), "ReplacingMergeTree");
}

#[test]
fn unknown_cluster_and_unreachable_server_are_named() {
    let Some(c) = common::cluster() else { return };
    let url = format!(
        "clickhouse://127.0.0.1:{}/schema_x?cluster=no_such_cluster",
        c.nodes[0].http_port
    );
    let err = ClickHouseStorage::open(&StorageUrl::parse(&url).unwrap(), StorageOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, ClickHouseError::UnknownCluster { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no_such_cluster"), "{err}");

    let port = meshlens_clickhouse::testing::free_ports(1).unwrap()[0];
    let url = format!("clickhouse://127.0.0.1:{port}/db");
    let err = ClickHouseStorage::open(&StorageUrl::parse(&url).unwrap(), StorageOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, ClickHouseError::Unreachable { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn retention_drops_old_days_on_every_shard() {
    let Some(c) = common::cluster() else { return };
    let s = common::open(&c.storage_url(0, "schema_retention"));
    const DAY: i64 = 86_400_000;
    let day0 = 20_000i64; // 2024-10-04
    let batch: Vec<TimeSeries> = (0..40)
        .map(|i| TimeSeries {
            labels: Labels::from_pairs([("__name__", "r"), ("i", &i.to_string())]),
            samples: vec![
                Sample::new(day0 * DAY + 1000, 1.0),
                Sample::new((day0 + 1) * DAY + 1000, 2.0),
            ],
        })
        .collect();
    s.metrics().append(&batch).unwrap();
    // Spans keep their own retention: a metrics pass leaves them, and a spans pass over no
    // spans drops nothing.
    assert!(s
        .drop_days_before(DataKind::Spans, day0 + 1)
        .unwrap()
        .is_empty());
    // Keeping 12 hours at 12:00 of day0 + 1: day0 is wholly out, day0 + 1 stays.
    let dropped = s
        .enforce_retention(DataKind::Metrics, (day0 + 1) * DAY + DAY / 2, DAY / 2)
        .unwrap();
    assert!(
        dropped.contains(&("samples".into(), "20241004".into())),
        "{dropped:?}"
    );
    assert!(
        dropped.contains(&("series".into(), "20241004".into())),
        "{dropped:?}"
    );
    for node in &c.nodes {
        let days = node
            .sql("SELECT DISTINCT toDate(toDateTime(intDiv(t, 1000), 'UTC')) FROM schema_retention.samples_local")
            .unwrap();
        assert_eq!(days.trim(), "2024-10-05", "on {}", node.http_base());
    }
}
