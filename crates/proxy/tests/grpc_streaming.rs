//! Client-streaming and bidirectional gRPC through an outbound proxy (h2c), with Python's
//! `grpcio` as the real client and server (tests/testdata/grpc_echo.py). Skipped, with a
//! message, when `grpcio` is missing, unless `CI=true` (then it must be there: .ci/pip/grpc.txt).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/grpc_echo.py")
}

/// Whether the peer is available; panics under CI when it is not.
fn grpcio_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import grpc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 with grpcio is required under CI (python3 -m pip install -r .ci/pip/grpc.txt)"
        );
        eprintln!("skipping: python3 cannot import grpc (python3 -m pip install grpcio)");
    }
    ok
}

/// The Python server; killed (by its own handle) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> (Server, u16) {
    let mut child = Command::new("python3")
        .arg(script())
        .arg("server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let stdout = child.stdout.take().expect("piped");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("server prints its port");
    let port = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected server output {line:?}"));
    (server, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_and_bidi_grpc_through_the_proxy() {
    if !grpcio_available() {
        return;
    }
    let (server, port) = tokio::task::spawn_blocking(start_server).await.unwrap();
    let mesh = format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {{name: grpc-echo, namespace: default}}\nspec:\n  hosts: [grpc-echo]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 9090, name: grpc, protocol: GRPC}}\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{grpc: {port}}}\n    labels: {{app: grpc-echo, version: v1}}\n"
    );
    let h = start(&mesh).await;
    let addr = h.proxy.addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script())
            .args(["client", &addr, "grpc-echo:9090"])
            .output()
            .expect("python3 runs")
    });
    // The client's calls have 20 s deadlines; this only bounds a hung interpreter.
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("client finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(v["sum"], "a+bb+ccc+xxx", "client streaming: {v}");
    assert_eq!(v["sum_len"], 70009, "client streaming: {v}");
    assert_eq!(
        v["chat"],
        serde_json::json!(["echo:m0", "echo:m1", "echo:m2", "echo:m3", "echo:m4"]),
        "bidirectional, in lock-step: {v}"
    );
    assert_eq!(v["fail"], "NOT_FOUND");

    let grpc = |status: &'static str| {
        let h = &h;
        async move {
            let lbl = format!("grpc_response_status=\"{status}\"");
            metric_value(
                &h.metrics().await,
                "istio_requests_total",
                &[
                    "request_protocol=\"grpc\"",
                    "destination_service=\"grpc-echo.default.svc.cluster.local\"",
                    "response_code=\"200\"",
                    &lbl,
                ],
            )
        }
    };
    assert!(
        eventually(|| async { grpc("0").await == 2.0 && grpc("5").await == 1.0 }).await,
        "{}",
        h.metrics().await
    );
    // The Sum call's request messages (4 framed messages, 70,026 bytes with their 5-byte
    // prefixes) are counted as they streamed through.
    let m = h.metrics().await;
    let bytes = metric_value(
        &m,
        "istio_request_bytes_sum",
        &["request_protocol=\"grpc\"", "grpc_response_status=\"0\""],
    );
    assert!(bytes >= 70_026.0, "request bytes {bytes}\n{m}");
    h.proxy.shutdown().await;
    drop(server);
}
