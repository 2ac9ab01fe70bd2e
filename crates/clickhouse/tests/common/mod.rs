//! Shared by the peer tests: one ZooKeeper + 2-shard ClickHouse cluster per test binary,
//! started by the first test that needs it and stopped when the last one holding it ends.
//! Each test works in its own database, so tests running in parallel do not meet.

#![allow(dead_code)]

use std::sync::{Arc, Mutex, Weak};

use meshlens_clickhouse::testing::TestCluster;
use meshlens_clickhouse::{ClickHouseStorage, StorageOptions, StorageUrl};

/// The running cluster, or `None` (after a message) when ClickHouse is not installed and
/// this is not CI. Panics when the cluster cannot start.
pub fn cluster() -> Option<Arc<TestCluster>> {
    static SHARED: Mutex<Weak<TestCluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = shared.upgrade() {
        return Some(c);
    }
    match TestCluster::start() {
        Ok(Some(c)) => {
            let c = Arc::new(c);
            *shared = Arc::downgrade(&c);
            Some(c)
        }
        Ok(None) => None,
        Err(e) => panic!("the ClickHouse test cluster did not start: {e}"),
    }
}

pub fn open(url: &str) -> ClickHouseStorage {
    open_with(url, StorageOptions::default())
}

pub fn open_with(url: &str, opts: StorageOptions) -> ClickHouseStorage {
    let url = StorageUrl::parse(url).unwrap();
    ClickHouseStorage::open(&url, opts).unwrap_or_else(|e| panic!("opening {url}: {e}"))
}

/// Rows of a TabSeparated answer, one `Vec` of fields per line.
pub fn tsv(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}
