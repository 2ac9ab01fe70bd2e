//! Starts the tests' 2-shard ClickHouse cluster (ZooKeeper + two `clickhouse-server` on
//! loopback) for scripts such as `bench/clickhouse-vs-embedded`, which have no Rust test
//! harness to own it. Prints one `key=value` line per fact (the `--storage` URL, each
//! shard's HTTP base and data directory), then keeps the cluster up until its parent process
//! exits or its standard input is closed; the cluster's processes and files go with it.
//!
//!   cargo run --release -p meshlens-clickhouse --features testing --example test_cluster -- DB

use std::io::Read;
use std::time::Duration;

use meshlens_clickhouse::testing::TestCluster;

fn main() {
    let db = std::env::args().nth(1).unwrap_or_else(|| "meshlens".into());
    let cluster = match TestCluster::start() {
        Ok(Some(c)) => c,
        Ok(None) => std::process::exit(2),
        Err(e) => {
            eprintln!("test_cluster: {e}");
            std::process::exit(1);
        }
    };
    println!("storage={}", cluster.storage_url(0, &db));
    for (i, n) in cluster.nodes.iter().enumerate() {
        println!("shard{}={}", i + 1, n.http_base());
        println!("shard{}_dir={}", i + 1, n.dir.display());
    }
    println!("ready=1");
    let parent = std::os::unix::process::parent_id();
    // Standard input closing (EOF) is the stop signal; a thread watches it so the parent's
    // death is noticed too when stdin stays open.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = tx.send(());
    });
    loop {
        if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
            break;
        }
        if std::os::unix::process::parent_id() != parent {
            break;
        }
    }
    drop(cluster);
}
