//! Shared helpers for end-to-end tests: start the real binary, speak HTTP, poll.
#![allow(dead_code)]

#[path = "../../src/httpc.rs"]
pub mod httpc;
pub mod protobuf;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::TimeSeries;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_meshlens");

pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The OTLP/gRPC listener, when the server printed one.
    pub otlp_grpc: Option<String>,
}

impl Server {
    /// Starts `meshlens server` on an OS-chosen port and waits until it answers /-/ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut args = Vec::new();
        if !extra.iter().any(|a| a.starts_with("--otlp-grpc-listen")) {
            args.extend(["--otlp-grpc-listen", "127.0.0.1:0"]);
        }
        args.extend(extra);
        let (child, printed) = spawn_server(data_dir, &args);
        let s = Server {
            child,
            addr: printed.main,
            otlp_grpc: printed.otlp_grpc,
        };
        wait_ready(&s.url(""), Duration::from_secs(60));
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }

    /// Runs an instant query and returns the JSON answer.
    pub fn query(&self, q: &str, time: Option<f64>) -> serde_json::Value {
        let mut url = self.url(&format!("/api/v1/query?query={}", urlencode(q)));
        if let Some(t) = time {
            url.push_str(&format!("&time={t}"));
        }
        let r = httpc::get(&url).expect("query");
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&r.body)))
    }

    pub fn remote_write(
        &self,
        conn: &mut httpc::Conn,
        series: Vec<TimeSeries>,
    ) -> anyhow::Result<httpc::Response> {
        let body = encode(&WriteRequest {
            timeseries: series,
            ..Default::default()
        });
        conn.request(
            "POST",
            "/api/v1/write",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "snappy"),
            ],
            &body,
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use httpc::urlencode;

/// The listeners a starting `meshlens server` printed, each as host:port.
pub struct Printed {
    pub main: String,
    pub otlp_http: Option<String>,
    pub otlp_grpc: Option<String>,
}

/// Spawns `meshlens server --listen 127.0.0.1:0 --data-dir <data> <extra>` and reads its
/// stdout up to the main listener's address. The rest is drained in the background so the
/// server never blocks on (or fails writing to) a full pipe; waiting for readiness is the
/// caller's choice, since a TLS listener needs a client that speaks it.
pub fn spawn_server(data: &Path, extra: &[&str]) -> (Child, Printed) {
    let mut child = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn meshlens server");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut otlp_http, mut otlp_grpc) = (None, None);
    let main = loop {
        let line = lines
            .next()
            .expect("server exited before printing its address")
            .expect("utf-8");
        let after = |marker: &str| line.split_once(marker).map(|(_, a)| a.trim().to_string());
        if let Some(a) = after("OTLP/gRPC listening on ") {
            otlp_grpc = Some(a);
        } else if let Some(a) = after("OTLP/HTTP listening on http://") {
            otlp_http = Some(a);
        } else if let Some(a) = after("server listening on http://") {
            break a;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let printed = Printed {
        main,
        otlp_http,
        otlp_grpc,
    };
    (child, printed)
}

/// Waits (at most `limit`) until plain-HTTP `base` answers /-/ready with a 200.
pub fn wait_ready(base: &str, limit: Duration) {
    poll(limit, || {
        httpc::get(&format!("{base}/-/ready"))
            .ok()
            .filter(|r| r.status == 200)
    });
}

/// What curl saw: HTTP status (0 when no response), headers and body, and curl's exit code.
pub struct Seen {
    pub status: u16,
    pub head: String,
    pub body: String,
    pub exit: i32,
}

/// Runs `curl -sS --max-time 20` with `args`, keeping the final response's head apart from
/// its body (interim 1xx heads, as for `Expect: 100-continue`, are passed over).
pub fn curl(args: &[&str]) -> Seen {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D", "-", "-o", "/dev/stdout"])
        .args(args)
        .output()
        .expect("run curl");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    let status_of = |head: &str| -> u16 {
        head.lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    loop {
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return Seen {
                status: status_of(&text),
                head: text,
                body: String::new(),
                exit: out.status.code().unwrap_or(-1),
            };
        };
        let status = status_of(head);
        if (100..200).contains(&status) && body.starts_with("HTTP/") {
            text = body.to_string();
            continue;
        }
        return Seen {
            status,
            head: head.to_string(),
            body: body.to_string(),
            exit: out.status.code().unwrap_or(-1),
        };
    }
}

/// Runs schemathesis (`python3 -m schemathesis.cli run`) on `spec` against `url`, seeded and on
/// one worker, with `settings` (phases, checks, example count, report formats) and its reports
/// written to `report`; returns what it printed. Its cache of earlier findings stays beside
/// `report`, in the test's temporary directory, so every run starts from the seed alone.
pub fn run_schemathesis(spec: &Path, url: &str, report: &Path, settings: &[&str]) -> String {
    let out = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(spec)
        .args(["--url", url])
        .args(settings)
        .args(["--workers", "1", "--seed", "1"])
        .args(["--suppress-health-check", "all", "--report-dir"])
        .arg(report)
        .env("NO_COLOR", "1")
        .current_dir(report.parent().unwrap())
        .output()
        .expect("run schemathesis");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The report in `dir` ending in `.ext`; `output` (schemathesis's) explains a missing one.
pub fn schemathesis_report(dir: &Path, ext: &str, output: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap_or_else(|_| panic!("no schemathesis report; its output:\n{output}"))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == ext))
        .unwrap_or_else(|| panic!("no .{ext} report; its output:\n{output}"))
}

/// Runs `tests/ui/<script>` (Playwright driving Debian's headless Chromium) against `base`,
/// with its screenshots in `<target>/tmp/<shots>/` and `args` after those two, and asserts
/// that it passed.
pub fn run_browser_script(script: &str, base: &str, shots: &str, args: &[&str]) {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join(shots);
    let _ = std::fs::remove_dir_all(&shots);
    println!("ui screenshots: {}", shots.display());
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ui")
        .join(script);
    let status = Command::new("python3")
        .arg(&script)
        .arg(base)
        .arg(&shots)
        .args(args)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .expect("run python3");
    assert!(
        status.success(),
        "the browser test failed (see its output above); screenshots in {}",
        shots.display()
    );
}

/// Calls `f` until it returns Some, at most for `limit`.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails under CI, skips loudly elsewhere, when a peer binary is missing.
pub fn require_binary(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    require(found, name, ".ci/run installs it with apt-get")
}

/// The same for Python modules from PyPI (the OpenTelemetry SDK, schemathesis).
pub fn require_python_module(module: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    require(
        found,
        module,
        ".ci/run installs it: pip install -r .ci/pip/traces.txt",
    )
}

fn require(found: bool, what: &str, how: &str) -> bool {
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{what} is not installed; {how}");
        }
        eprintln!("SKIPPING: {what} is not installed; {how}");
    }
    found
}

/// GETs `url` and parses the JSON answer, asserting a 200.
/// Posts an OTLP/HTTP metrics request in JSON to the server at `addr` (host:port).
pub fn post_otlp_metrics_json(addr: &str, body: &str) -> httpc::Response {
    httpc::Conn::open(addr)
        .unwrap()
        .request(
            "POST",
            "/v1/metrics",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap()
}

pub fn get_json(url: &str) -> Value {
    let r = httpc::get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(
        r.status,
        200,
        "GET {url}: {}",
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("GET {url}: not JSON: {}", String::from_utf8_lossy(&r.body)))
}

/// Starts `meshlens demo` on OS-chosen ports with its data in `data_dir`; returns the
/// process guard and the server's base URL. The demo's output is drained in the background
/// so it never blocks on a full pipe.
pub fn start_demo(data_dir: &Path, rate: &str) -> (KillOnDrop, String) {
    start_demo_with(data_dir, &["--rate", rate])
}

/// `start_demo` with more arguments (e.g. `["--clusters", "3"]`).
pub fn start_demo_with(data_dir: &Path, args: &[&str]) -> (KillOnDrop, String) {
    let (guard, banner) = start_demo_banner(data_dir, args);
    let base = banner
        .iter()
        .find_map(|l| l.strip_prefix("meshlens server listening on "))
        .expect("demo printed its address")
        .trim()
        .to_string();
    (guard, base)
}

/// Starts `meshlens demo` with `args` on OS-chosen ports; returns the guard and the banner's
/// lines (up to "Stop with Ctrl-C"), and drains the rest of its output in the background.
pub fn start_demo_banner(data_dir: &Path, args: &[&str]) -> (KillOnDrop, Vec<String>) {
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--ingress",
            "127.0.0.1:0",
        ])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start meshlens demo");
    let stdout = child.stdout.take().expect("stdout");
    let guard = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("demo printed its banner")
            .expect("utf-8");
        let done = line.starts_with("Stop with Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (guard, banner)
}

/// A peer process that is killed when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Debian's `prometheus` with `config` on a free port and its storage in `data`, and
/// waits until it is ready; returns the process guard and its base URL.
pub fn start_prometheus(config: &str, data: &Path) -> (KillOnDrop, String) {
    start_prometheus_on(free_port(), config, data)
}

/// The same on a given port, for a `config` that must name Prometheus' own address.
pub fn start_prometheus_on(port: u16, config: &str, data: &Path) -> (KillOnDrop, String) {
    start_prometheus_with(port, config, data, &[])
}

/// The same with more flags (`--web.enable-remote-write-receiver`, rule flags).
pub fn start_prometheus_with(
    port: u16,
    config: &str,
    data: &Path,
    extra: &[&str],
) -> (KillOnDrop, String) {
    let cfg = data.with_extension("yml");
    std::fs::write(&cfg, config).unwrap();
    let child = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url, Duration::from_secs(120));
    (child, url)
}

/// Starts Debian's `prometheus-alertmanager` (no clustering, a receiver that sends nowhere)
/// with its storage in `dir`, and waits until it is ready; returns the guard and base URL.
pub fn start_alertmanager(dir: &Path) -> (KillOnDrop, String) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: nowhere\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: nowhere\n",
    )
    .unwrap();
    let port = free_port();
    let child = KillOnDrop(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-alertmanager"),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url, Duration::from_secs(60));
    (child, url)
}

/// Series labels (as text) with their (timestamp, value) points.
pub type Points = Vec<(String, Vec<(i64, String)>)>;

/// A comparable form of a query answer: the result type and sorted series.
pub fn normalise(v: &Value) -> Result<(String, Points), String> {
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    let kind = v["data"]["resultType"].as_str().unwrap_or("").to_string();
    let result = &v["data"]["result"];
    let pt = |p: &Value| {
        (
            (p[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64,
            p[1].as_str().unwrap_or("").to_string(),
        )
    };
    let mut series = Vec::new();
    match kind.as_str() {
        "scalar" | "string" => series.push((String::new(), vec![pt(result)])),
        _ => {
            for s in result.as_array().cloned().unwrap_or_default() {
                let mut labels: Vec<(String, String)> = s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                labels.sort();
                let points = match s.get("values") {
                    Some(vs) => vs.as_array().unwrap().iter().map(pt).collect(),
                    None => vec![pt(&s["value"])],
                };
                series.push((format!("{labels:?}"), points));
            }
        }
    }
    series.sort();
    Ok((kind, series))
}

/// Now, in milliseconds since the epoch.
/// Serves `body` with `content_type` to every request on a port of 127.0.0.1.
pub fn serve_scrape_target(content_type: &'static str, body: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = vec![0u8; 8192];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut s, head.as_bytes())
                .and_then(|_| std::io::Write::write_all(&mut s, &body));
        }
    });
    addr
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `istio_requests_total` of `frontend` calling `app` (workload `workload`, and `version`
/// when given) as the destination proxy reports it: 200s, a sample every 15 s over the last
/// 5 minutes, so the graph and the overview show both ends.
pub fn frontend_calls(app: &str, workload: &str, version: Option<&str>) -> TimeSeries {
    let now = now_ms();
    let service = format!("{app}.default.svc.cluster.local");
    let mut pairs = vec![
        ("__name__", "istio_requests_total"),
        ("reporter", "destination"),
        ("source_workload", "frontend"),
        ("source_workload_namespace", "default"),
        ("source_app", "frontend"),
        ("destination_workload", workload),
        ("destination_workload_namespace", "default"),
        ("destination_app", app),
        ("destination_service_name", app),
        ("destination_service", &service),
        ("destination_service_namespace", "default"),
        ("request_protocol", "http"),
        ("response_code", "200"),
    ];
    if let Some(v) = version {
        pairs.push(("destination_version", v));
    }
    TimeSeries {
        labels: meshlens_model::Labels::from_pairs(pairs),
        samples: (0..20)
            .map(|i| meshlens_model::Sample {
                t: now - (20 - i) * 15_000,
                v: (i * 30) as f64,
            })
            .collect(),
    }
}

/// The trace a SIGKILL test's numbered span batch `step` belongs to.
pub fn step_trace_id(step: u64) -> meshlens_model::TraceId {
    meshlens_model::TraceId {
        high: 7,
        low: step + 1,
        is_128: true,
    }
}

/// A SIGKILL test's numbered span batch: `n` spans of one trace (`step_trace_id(step)`), a
/// root and its children, tagged with the step so each can be found again.
pub fn step_spans(step: u64, n: u64) -> Vec<meshlens_model::Span> {
    let now_us = meshlens_model::time::now_ms() as u64 * 1000;
    (0..n)
        .map(|i| meshlens_model::Span {
            trace_id: step_trace_id(step),
            id: i + 1,
            parent_id: (i > 0).then_some(1),
            name: Some(format!("op-{i}")),
            kind: None,
            timestamp: Some(now_us),
            duration: Some(100 + i),
            local_endpoint: Some(meshlens_model::Endpoint {
                service_name: Some(format!("svc-{}", i % 4)),
                ..Default::default()
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags: [("step".to_string(), step.to_string())].into(),
            debug: false,
            shared: false,
        })
        .collect()
}

/// Starts `meshlens agent` for cluster `east` forwarding to `hub`, on an OS-chosen port with
/// its buffer in `data_dir` and `extra` flags; waits until it is ready. Returns it, its URL
/// and its OTLP/gRPC address when it printed one (`--otlp-grpc-listen`).
pub fn start_agent(
    data_dir: &Path,
    hub: &str,
    extra: &[&std::ffi::OsStr],
) -> (KillOnDrop, String, Option<String>) {
    let mut child = Command::new(BIN)
        .args([
            "agent",
            "--cluster",
            "east",
            "--hub",
            hub,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn meshlens agent");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut grpc = None;
    let url = loop {
        let line = lines
            .next()
            .expect("the agent exited before printing its address")
            .expect("utf-8");
        if let Some((_, a)) = line.split_once("agent OTLP/gRPC listening on ") {
            grpc = Some(a.trim().to_string());
        }
        if let Some((_, a)) = line.split_once("agent listening on ") {
            break a.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    wait_ready(&url, Duration::from_secs(60));
    (KillOnDrop(child), url, grpc)
}
