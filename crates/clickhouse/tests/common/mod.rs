//! Shared by the peer tests: one ZooKeeper + 2-shard ClickHouse cluster per test binary,
//! and one current-release server (chDB), each started by the first test that needs it and
//! stopped when the last one holding it ends. Each test works in its own database, so tests
//! running in parallel do not meet.
//!
//! The checks that hold on any ClickHouse take a [`Backend`] and run on both: [`on_both!`]
//! writes the two `#[test]`s (`on_cluster::NAME` and `on_current::NAME`).

#![allow(dead_code)]

use std::sync::{Arc, Mutex, Weak};

use meshlens_clickhouse::testing::{CurrentServer, TestCluster};
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

/// The running current-release server, or `None` (after a message) when python3 or
/// chdb-core is missing and this is not CI. Panics when it cannot start.
pub fn current() -> Option<Arc<CurrentServer>> {
    static SHARED: Mutex<Weak<CurrentServer>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = shared.upgrade() {
        return Some(c);
    }
    match CurrentServer::start() {
        Ok(Some(c)) => {
            eprintln!("current-release ClickHouse (chDB) {}", c.version);
            let c = Arc::new(c);
            *shared = Arc::downgrade(&c);
            Some(c)
        }
        Ok(None) => None,
        Err(e) => panic!("the current-release ClickHouse (chDB) did not start: {e}"),
    }
}

/// Where a check runs: Debian's 18.16 as a 2-shard cluster, or a current release as one
/// server.
pub enum Backend {
    Cluster(Arc<TestCluster>),
    Current(Arc<CurrentServer>),
}

impl Backend {
    pub fn cluster() -> Option<Backend> {
        cluster().map(Backend::Cluster)
    }

    pub fn current() -> Option<Backend> {
        current().map(Backend::Current)
    }

    /// The `--storage` address through server `node` (the cluster's node; the one
    /// current-release server whatever `node` is).
    pub fn url(&self, node: usize, database: &str) -> String {
        match self {
            Backend::Cluster(c) => c.storage_url(node, database),
            Backend::Current(s) => s.storage_url(database),
        }
    }

    /// Runs SQL on server `node` directly, answer as TabSeparated text.
    pub fn sql(&self, node: usize, sql: &str) -> String {
        let r = match self {
            Backend::Cluster(c) => c.nodes[node].sql(sql),
            Backend::Current(s) => s.sql(sql),
        };
        r.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The servers' count: what runs a statement on every shard loops over.
    pub fn nodes(&self) -> usize {
        match self {
            Backend::Cluster(c) => c.nodes.len(),
            Backend::Current(_) => 1,
        }
    }

    /// A table as it is on one shard: `x_local` on the cluster, `x` on one server.
    pub fn local(&self, table: &str) -> String {
        match self {
            Backend::Cluster(_) => format!("{table}_local"),
            Backend::Current(_) => table.to_string(),
        }
    }
}

/// Writes, for each check `fn NAME(b: &Backend)` of the test file, `on_cluster::NAME` and
/// `on_current::NAME`, each skipping (with a message) when its backend is not installed
/// outside CI. (`#[macro_use] mod common;` brings it in.)
#[allow(unused_macros)]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_cluster {
            $(
                #[test]
                fn $name() {
                    if let Some(b) = crate::common::Backend::cluster() {
                        super::$name(&b);
                    }
                }
            )*
        }
        mod on_current {
            $(
                #[test]
                fn $name() {
                    if let Some(b) = crate::common::Backend::current() {
                        super::$name(&b);
                    }
                }
            )*
        }
    };
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
