//! The schema on a real 2-shard ClickHouse 18.16 cluster and on a current release (one
//! server, through chDB): created on start, idempotent on restart, finished after a start
//! that died half way, refused when newer, single-server mode, retention by partition;
//! metric metadata; a storage connected lazily (started while ClickHouse was down).

#[macro_use]
mod common;

use common::Backend;

use meshlens_clickhouse::{
    ClickHouseError, ClickHouseStorage, DataKind, StorageOptions, StorageUrl,
};
use meshlens_model::{
    LabelMatcher, Labels, MatchOp, MetricMetadata, MetricReader, MetricWriter, Sample, TimeSeries,
};

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
        "histograms",
        "histograms_local",
        "metadata",
        "metadata_local",
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
    assert_eq!(
        s.schema().stored_version(s.client()).unwrap(),
        meshlens_clickhouse::SCHEMA_VERSION
    );
    drop(s);

    // A restart (through the other server, even) finds everything and applies nothing.
    let s = common::open(&c.storage_url(1, "schema_create"));
    assert_eq!(
        s.schema().stored_version(s.client()).unwrap(),
        meshlens_clickhouse::SCHEMA_VERSION
    );
    let rows = c.nodes[0]
        .sql("SELECT count() FROM schema_create.schema_version")
        .unwrap();
    assert_eq!(
        rows.trim(),
        meshlens_clickhouse::SCHEMA_VERSION.to_string(),
        "one row per applied step"
    );
}

fn a_newer_schema_is_refused_naming_both_versions(b: &Backend) {
    let url = b.url(0, "schema_newer");
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
                supported: meshlens_clickhouse::SCHEMA_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("version 7")
            && text.contains(&format!("version {}", meshlens_clickhouse::SCHEMA_VERSION)),
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
            "histograms",
            "metadata",
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

/// A current release as one server: plain tables with the engines the schema names, and a
/// restart that finds them applies nothing.
#[test]
fn a_current_release_gets_the_schema_once_even_after_a_start_that_died() {
    let Some(c) = common::current() else { return };
    let s = common::open(&c.storage_url("schema_current"));
    let out = c
        .sql("SELECT name, engine FROM system.tables WHERE database = 'schema_current' ORDER BY name")
        .unwrap();
    assert_eq!(
        common::tsv(&out),
        [
            ["histograms", "ReplacingMergeTree"],
            ["metadata", "ReplacingMergeTree"],
            ["samples", "ReplacingMergeTree"],
            ["schema_version", "MergeTree"],
            ["series", "ReplacingMergeTree"],
            ["spans", "MergeTree"],
            ["trace_index", "ReplacingMergeTree"],
        ],
        "on ClickHouse {}",
        c.version
    );
    // Day partitions, as retention expects (TabSeparated escapes the quotes).
    let keys = c
        .sql("SELECT name, partition_key FROM system.tables WHERE database = 'schema_current' AND name IN ('samples', 'spans') ORDER BY name")
        .unwrap();
    assert!(
        keys.contains(r"toDate(toDateTime(intDiv(t, 1000), \'UTC\'))"),
        "{keys}"
    );
    assert!(
        keys.contains(r"toDate(toDateTime(intDiv(timestamp_us, 1000000), \'UTC\'))"),
        "{keys}"
    );
    assert_eq!(
        s.schema().stored_version(s.client()).unwrap(),
        meshlens_clickhouse::SCHEMA_VERSION
    );
    assert_eq!(s.server_version(), c.version);
    // The storage status reads the one server's parts.
    let st = s.storage_status().unwrap();
    assert_eq!(st.schema_version, Some(meshlens_clickhouse::SCHEMA_VERSION));
    assert_eq!(st.shards.len(), 1);
    assert_eq!(st.shards[0].error, None, "{st:?}");
    drop(s);
    let s = common::open(&c.storage_url("schema_current"));
    assert_eq!(
        s.schema().stored_version(s.client()).unwrap(),
        meshlens_clickhouse::SCHEMA_VERSION
    );
    let rows = c
        .sql("SELECT count() FROM schema_current.schema_version")
        .unwrap();
    assert_eq!(
        rows.trim(),
        meshlens_clickhouse::SCHEMA_VERSION.to_string(),
        "one row per applied step"
    );

    // A start that died half way through step 1 (one table made, the step not recorded):
    // the next start finishes it.
    for sql in [
        "CREATE DATABASE schema_half",
        "CREATE TABLE schema_half.schema_version (version UInt32, written_by String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version",
        "CREATE TABLE schema_half.series (day Date, fingerprint UInt64, metric_name String, label_names Array(String), label_values Array(String)) ENGINE = ReplacingMergeTree() PARTITION BY day ORDER BY (metric_name, fingerprint)",
    ] {
        c.sql(sql).unwrap();
    }
    let s = common::open(&c.storage_url("schema_half"));
    assert_eq!(
        s.schema().stored_version(s.client()).unwrap(),
        meshlens_clickhouse::SCHEMA_VERSION
    );
    let out = c
        .sql("SELECT name FROM system.tables WHERE database = 'schema_half' ORDER BY name")
        .unwrap();
    assert_eq!(
        out,
        "histograms\nmetadata\nsamples\nschema_version\nseries\nspans\ntrace_index\n"
    );
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

fn retention_drops_old_days_on_every_shard(b: &Backend) {
    let s = common::open(&b.url(0, "schema_retention"));
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
    for node in 0..b.nodes() {
        let days = b.sql(
            node,
            &format!(
                "SELECT DISTINCT toDate(toDateTime(intDiv(t, 1000), 'UTC')) FROM schema_retention.{}",
                b.local("samples")
            ),
        );
        assert_eq!(days.trim(), "2024-10-05", "on node {node}");
    }
}

on_both!(
    a_newer_schema_is_refused_naming_both_versions,
    retention_drops_old_days_on_every_shard,
);

#[test]
fn metadata_keeps_each_familys_latest_on_the_cluster() {
    let Some(c) = common::cluster() else { return };
    let s = common::open(&c.storage_url(0, "schema_metadata"));
    let md = |family: &str, kind: &str, help: &str| MetricMetadata {
        metric_family: family.into(),
        kind: kind.into(),
        help: help.into(),
        unit: String::new(),
    };
    s.metrics()
        .append_metadata(&[md("a_total", "counter", "old"), md("b", "gauge", "B's")])
        .unwrap();
    // Later metadata in a later millisecond replaces the family's; unchanged is not resent.
    std::thread::sleep(std::time::Duration::from_millis(5));
    s.metrics()
        .append_metadata(&[md("a_total", "counter", "new"), md("b", "gauge", "B's")])
        .unwrap();
    // Through the other node, a new process: the same answer.
    let s2 = common::open(&c.storage_url(1, "schema_metadata"));
    let all = s2.metrics().metadata(None).unwrap();
    assert_eq!(
        all,
        vec![md("a_total", "counter", "new"), md("b", "gauge", "B's")]
    );
    assert_eq!(
        s2.metrics().metadata(Some("b")).unwrap(),
        vec![md("b", "gauge", "B's")]
    );
    assert!(s2.metrics().metadata(Some("nope")).unwrap().is_empty());
    let rows = c.nodes[0]
        .sql("SELECT count() FROM schema_metadata.metadata")
        .unwrap();
    assert_eq!(rows.trim(), "3", "the unchanged family was inserted once");
}

#[test]
fn a_storage_connected_lazily_creates_its_schema_on_first_use() {
    let Some(c) = common::cluster() else { return };
    let url = StorageUrl::parse(&c.storage_url(1, "schema_lazy")).unwrap();
    let client =
        std::sync::Arc::new(meshlens_clickhouse::Client::new(&url, Default::default()).unwrap());
    assert!(!meshlens_clickhouse::database_exists(&client, "schema_lazy").unwrap());
    let s = ClickHouseStorage::connect(client.clone(), &url, &StorageOptions::default());
    assert!(!s.is_ready());
    let batch = vec![TimeSeries {
        labels: Labels::from_pairs([("__name__", "lazy"), ("i", "1")]),
        samples: vec![Sample::new(1_700_000_000_000, 1.0)],
    }];
    s.metrics().append(&batch).unwrap();
    assert!(s.is_ready());
    assert!(meshlens_clickhouse::database_exists(&client, "schema_lazy").unwrap());
    let got = s
        .metrics()
        .select(
            &[LabelMatcher::new(MatchOp::Equal, "__name__", "lazy").unwrap()],
            1_699_999_999_000,
            1_700_000_001_000,
        )
        .unwrap();
    assert_eq!(got.len(), 1);

    // A server that does not answer: a clear, retried error naming it, nothing panics.
    let port = meshlens_clickhouse::testing::free_ports(1).unwrap()[0];
    let down = StorageUrl::parse(&format!("clickhouse://127.0.0.1:{port}/db")).unwrap();
    let client =
        std::sync::Arc::new(meshlens_clickhouse::Client::new(&down, Default::default()).unwrap());
    let s = ClickHouseStorage::connect(client, &down, &StorageOptions::default());
    for _ in 0..2 {
        let e = s.metrics().append(&batch).unwrap_err();
        assert_eq!(e.http_status(), 503, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("unreachable") && text.contains(&format!("127.0.0.1:{port}")),
            "{text}"
        );
    }
}
