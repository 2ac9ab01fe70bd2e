//! A shard that dies: writes and reads fail as "unavailable" (503) instead of silently
//! losing or hiding data, the SIGKILLed server keeps what it acknowledged, and the retried
//! batch (partly stored by the failed attempt) is not duplicated. Its own cluster, since it
//! kills a server.

use meshlens_clickhouse::testing::TestCluster;
use meshlens_clickhouse::{ClickHouseStorage, StorageOptions, StorageUrl};
use meshlens_model::{LabelMatcher, Labels, MetricReader, MetricWriter, Sample, TimeSeries};

const BASE: i64 = 1_764_806_400_000;

fn batch(name: &str, n: usize) -> Vec<TimeSeries> {
    (0..n)
        .map(|i| TimeSeries {
            labels: Labels::from_pairs([("__name__", name), ("i", &i.to_string())]),
            samples: (0..5)
                .map(|k| Sample::new(BASE + k * 15_000, (i * 10 + k as usize) as f64))
                .collect(),
        })
        .collect()
}

#[test]
fn a_killed_shard_fails_loudly_keeps_its_data_and_the_retry_does_not_duplicate() {
    let mut c = match TestCluster::start() {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => panic!("the ClickHouse test cluster did not start: {e}"),
    };
    let url = StorageUrl::parse(&c.storage_url(0, "restart")).unwrap();
    let s = ClickHouseStorage::open(&url, StorageOptions::default()).unwrap();
    let a = batch("a", 60);
    s.metrics().append(&a).unwrap();

    c.nodes[1].kill();
    let b = batch("b", 60);
    let err = s.metrics().append(&b).unwrap_err();
    eprintln!("append while shard 2 is down: {err}");
    assert_eq!(err.http_status(), 503, "{err}");
    let all = [LabelMatcher::new(meshlens_model::MatchOp::RegexMatch, "__name__", "a|b").unwrap()];
    let err = s.metrics().select(&all, i64::MIN, i64::MAX).unwrap_err();
    eprintln!("select while shard 2 is down: {err}");
    assert_eq!(
        err.http_status(),
        503,
        "a read must not hide a missing shard: {err}"
    );

    c.nodes[1].restart().unwrap();
    // The sender retries the batch that failed; part of it is already on shard 1.
    s.metrics().append(&b).unwrap();
    let got = s.metrics().select(&all, i64::MIN, i64::MAX).unwrap();
    let mut want: Vec<(Labels, Vec<Sample>)> = a
        .iter()
        .chain(&b)
        .map(|ts| (ts.labels.clone(), ts.samples.clone()))
        .collect();
    want.sort_by(|x, y| x.0.cmp(&y.0));
    let got: Vec<(Labels, Vec<Sample>)> = got.into_iter().map(|s| (s.labels, s.samples)).collect();
    assert_eq!(got.len(), 120);
    assert!(
        got == want,
        "the selection after the restart differs from what was written"
    );
    // The killed server kept the rows it had acknowledged before the kill.
    let on_1 = c.nodes[1]
        .sql("SELECT count() FROM restart.samples_local WHERE fingerprint IN (SELECT fingerprint FROM restart.series_local WHERE metric_name = 'a')")
        .unwrap();
    assert!(
        on_1.trim().parse::<u64>().unwrap() > 0,
        "shard 2 lost batch a"
    );
}
