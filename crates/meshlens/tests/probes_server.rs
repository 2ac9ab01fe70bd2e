//! Probes named in the server's config (and in `--probes FILE`) write blackbox_exporter's
//! series into the server's storage, where PromQL and rules see them.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{poll, Server};

#[test]
fn configured_probes_write_probe_series() {
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_addr = open.local_addr().unwrap().to_string();
    let closed_addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    std::thread::spawn(move || for _ in open.incoming() {});
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("probes:\n  - name: tcp-open\n    module: tcp\n    targets: [\"{open_addr}\"]\n    interval: 1s\n"),
    )
    .unwrap();
    let extra = tmp.path().join("probes.yml");
    std::fs::write(
        &extra,
        format!("probes:\n  - name: tcp-closed\n    module: tcp\n    targets: [\"{closed_addr}\"]\n    interval: 1s\n    timeout: 500ms\n"),
    )
    .unwrap();
    let s = Server::start(
        &tmp.path().join("data"),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--probes",
            extra.to_str().unwrap(),
        ],
    );
    let value = |job: &str| {
        let v = s.query(&format!("probe_success{{job=\"{job}\"}}"), None);
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string)
    };
    poll(Duration::from_secs(30), || {
        value("tcp-open").filter(|v| v == "1")
    });
    poll(Duration::from_secs(30), || {
        value("tcp-closed").filter(|v| v == "0")
    });
    let v = s.query(
        &format!("probe_duration_seconds{{job=\"tcp-open\",instance=\"{open_addr}\"}}"),
        None,
    );
    assert_eq!(v["data"]["result"].as_array().map(Vec::len), Some(1), "{v}");
}
