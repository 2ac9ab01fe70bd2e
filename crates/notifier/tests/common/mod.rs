//! Helpers of the notifier's tests: alerts, metric reading, bounded polling, a scriptable
//! fake Alertmanager (to hold requests and see headers) and the real one as a process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use meshlens_model::Labels;
use meshlens_notifier::{Alert, Notifier};

pub fn alert(name: &str, extra: &[(&str, &str)]) -> Alert {
    let mut pairs = vec![("alertname", name)];
    pairs.extend_from_slice(extra);
    Alert {
        labels: Labels::from_pairs(pairs),
        annotations: Labels::from_pairs([("summary", format!("{name} is broken"))]),
        starts_at_ms: meshlens_model::time::now_ms() - 60_000,
        ends_at_ms: None,
        generator_url: "http://meshlens.example/graph?g0.expr=up".into(),
    }
}

/// A sample's value in the notifier's exposition, by series (`name{labels}` as rendered).
pub fn metric(n: &Notifier, series: &str) -> Option<f64> {
    let mut out = String::new();
    n.render_metrics(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `f` every 50 ms until it holds; panics with `what` after 30 s.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A port nobody listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn alerts(&self) -> Vec<serde_json::Value> {
        serde_json::from_slice(&self.body).expect("body is a JSON array")
    }
}

/// An HTTP/1.1 server that records every request and answers `status` once released:
/// with `hold` set, each request waits (like a hung Alertmanager) until `release`.
pub struct FakeAm {
    pub addr: String,
    pub requests: mpsc::Receiver<Request>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    status: Arc<AtomicU16>,
    closed: Arc<AtomicBool>,
}

impl FakeAm {
    pub fn start(status: u16, hold: bool) -> FakeAm {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (tx, rx) = mpsc::channel();
        let gate = Arc::new((Mutex::new(hold), Condvar::new()));
        let status = Arc::new(AtomicU16::new(status));
        let closed = Arc::new(AtomicBool::new(false));
        let (g, s, c) = (gate.clone(), status.clone(), closed.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if c.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (tx, g, s, c) = (tx.clone(), g.clone(), s.clone(), c.clone());
                std::thread::spawn(move || serve(conn, tx, g, s, c));
            }
        });
        FakeAm {
            addr,
            requests: rx,
            gate,
            status,
            closed,
        }
    }

    pub fn release(&self) {
        let (m, cv) = &*self.gate;
        *m.lock().expect("gate") = false;
        cv.notify_all();
    }

    pub fn hold(&self) {
        *self.gate.0.lock().expect("gate") = true;
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// The next request, waiting at most 30 s.
    pub fn next(&self) -> Request {
        self.requests
            .recv_timeout(Duration::from_secs(30))
            .expect("a request reached the fake Alertmanager")
    }
}

impl Drop for FakeAm {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        self.release();
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(
    conn: TcpStream,
    tx: mpsc::Sender<Request>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    status: Arc<AtomicU16>,
    closed: Arc<AtomicBool>,
) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0usize);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let _ = tx.send(Request {
            method,
            path,
            headers,
            body,
        });
        let (m, cv) = &*gate;
        let mut held = m.lock().expect("gate");
        // Bounded: a held request is answered after at most five minutes.
        for _ in 0..3000 {
            if !*held || closed.load(Ordering::SeqCst) {
                break;
            }
            held = cv
                .wait_timeout(held, Duration::from_millis(100))
                .expect("gate")
                .0;
        }
        drop(held);
        let code = status.load(Ordering::SeqCst);
        let resp = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// Fails under CI, skips loudly elsewhere, when the real Alertmanager is not installed.
pub fn alertmanager_bin() -> Option<PathBuf> {
    let bin = PathBuf::from("/usr/bin/prometheus-alertmanager");
    require(bin.exists(), "prometheus-alertmanager").then_some(bin)
}

/// The same for curl, the TLS test's reader.
pub fn curl_available() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    require(found, "curl")
}

fn require(found: bool, package: &str) -> bool {
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(
            !ci,
            "{package} is not installed; .ci/run installs it (.ci/apt/alerting.txt)"
        );
        eprintln!("SKIPPING: {package} is not installed; apt-get install {package}");
    }
    found
}

/// A running Debian Alertmanager with a route to a receiver that notifies nobody.
pub struct Alertmanager {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts it on a free loopback port (retrying if another process took the port) and
    /// waits for `ready` to hold.
    pub fn start(
        bin: &Path,
        web_config: Option<&str>,
        ready: impl Fn(u16) -> bool,
    ) -> Alertmanager {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(
            &cfg,
            "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n",
        )
        .expect("write config");
        for attempt in 0..5 {
            let port = closed_port();
            let log = std::fs::File::create(dir.path().join(format!("am-{attempt}.log")))
                .expect("log file");
            let mut cmd = Command::new(bin);
            cmd.arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.path={}", dir.path().display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdout(Stdio::null())
                .stderr(log);
            if let Some(w) = web_config {
                let p = dir.path().join("web.yml");
                std::fs::write(&p, w).expect("write web config");
                cmd.arg(format!("--web.config.file={}", p.display()));
            }
            let mut child = cmd.spawn().expect("start prometheus-alertmanager");
            for _ in 0..300 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if ready(port) {
                    return Alertmanager { child, port, dir };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join(format!("am-{attempt}.log")))
                .unwrap_or_default();
            eprintln!("alertmanager attempt {attempt} on port {port} failed:\n{log}");
        }
        panic!("prometheus-alertmanager did not become ready");
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain-HTTP GET on loopback (HTTP/1.0, so the answer is neither chunked nor kept
/// alive); `None` if the port does not answer.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
