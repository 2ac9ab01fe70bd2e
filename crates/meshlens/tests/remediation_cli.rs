//! End to end through the command line: a server (in process) whose alert rule fires and
//! whose remediation drains a canary; `meshlens remediation list` shows the action, the
//! action's event is at /api/v1/events, and `meshlens remediation undo ID --server URL`
//! restores the mesh file byte for byte; errors exit non-zero with the server's message.

use std::process::{Command, Output};
use std::time::Duration;

use meshlens_server::{start, ServerOptions};

const BIN: &str = env!("CARGO_BIN_EXE_meshlens");

const MESH: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: lb, namespace: default}\nspec:\n  host: lb\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\n# canary at 20 %\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: lb, namespace: default}\nspec:\n  hosts: [lb]\n  http:\n  - route:\n    - {destination: {host: lb, subset: v1}, weight: 80}\n    - {destination: {host: lb, subset: v2}, weight: 20}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: lb, namespace: default}\nspec: {hosts: [lb], location: MESH_INTERNAL, resolution: STATIC, ports: [{number: 80, name: http, protocol: HTTP}], endpoints: [{address: 127.0.0.1, labels: {version: v1}}, {address: 127.0.0.2, labels: {version: v2}}]}\n";

async fn cli(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_acts_and_the_cli_lists_and_undoes_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("mesh")).unwrap();
    std::fs::write(root.join("mesh/lb.yaml"), MESH).unwrap();
    std::fs::write(
        root.join("rules.yml"),
        "groups:\n  - name: canary\n    interval: 1s\n    rules:\n      - alert: CanaryErrors\n        expr: vector(1)\n        labels: {service: lb}\n",
    )
    .unwrap();
    std::fs::write(root.join("prometheus.yml"), "rule_files: [rules.yml]\n").unwrap();
    std::fs::write(
        root.join("remediations.yml"),
        "remediations:\n  - name: drain-v2\n    match: {alertname: CanaryErrors}\n    action: {type: shift-traffic, away_from: v2}\n    cooldown: 10m\n",
    )
    .unwrap();
    let server = start(ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: root.join("data"),
        config_file: Some(root.join("prometheus.yml")),
        mesh_config: vec![root.join("mesh")],
        mesh_write: true,
        remediation_file: Some(root.join("remediations.yml")),
        anomaly_interval: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.addr());

    let mut listed = None;
    for _ in 0..600 {
        let o = cli(&["remediation", "list", "--server", &url, "--output", "json"]).await;
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        if v["actions"].as_array().is_some_and(|a| !a.is_empty()) {
            listed = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = listed.expect("no remediation action within 120 s");
    let a = &listed["actions"][0];
    assert_eq!(a["status"], "applied", "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    let edited = std::fs::read_to_string(root.join("mesh/lb.yaml")).unwrap();
    assert_ne!(edited, MESH);
    assert!(edited.contains("weight: 0"), "{edited}");

    let o = cli(&["remediation", "list", "--server", &url]).await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&id) && out.contains("shift-traffic") && out.contains("applied"),
        "{out}"
    );

    // The event is on the timeline with the id as its undo handle.
    let ev = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            let addr = url.trim_start_matches("http://").to_string();
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            use std::io::{Read, Write};
            s.write_all(b"GET /api/v1/events?kind=remediation HTTP/1.0\r\nHost: t\r\n\r\n")
                .unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).unwrap();
            buf
        }
    })
    .await
    .unwrap();
    assert!(ev.contains(&format!("\"undo\":\"{id}\"")), "{ev}");

    let o = cli(&["remediation", "undo", &id, "--server", &url]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("undid {id}")),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("mesh/lb.yaml")).unwrap(),
        MESH,
        "undo restores the file byte for byte"
    );
    // Again: a conflict, reported with the server's message and a failing exit.
    let o = cli(&["remediation", "undo", &id, "--server", &url]).await;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("409") && text(&o).contains("already undone"),
        "{}",
        text(&o)
    );
    let o = cli(&["remediation", "undo", "rem-404", "--server", &url]).await;
    assert!(!o.status.success());
    assert!(text(&o).contains("404"), "{}", text(&o));
    server.shutdown().await;

    // Server gone: the address that could not be reached is named.
    let o = cli(&["remediation", "list", "--server", &url]).await;
    assert!(!o.status.success());
    assert!(text(&o).contains(&url), "{}", text(&o));
}
