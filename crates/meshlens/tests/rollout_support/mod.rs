//! Helpers for the rollout test: loopback backends answering their version, a control server
//! playing the meshlens server (a judge the test answers, the event log) and the webhooks,
//! and `meshlens proxy` processes with their admin endpoint.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub const BIN: &str = env!("CARGO_BIN_EXE_meshlens");

type Resp = http::Response<Full<Bytes>>;

fn reply(status: u16, body: impl Into<Bytes>) -> Resp {
    let mut r = http::Response::new(Full::new(body.into()));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r
}

/// Serves `f` on 127.0.0.1:0 until the runtime ends.
async fn serve<F, Fut>(f: F) -> SocketAddr
where
    F: Fn(http::request::Parts, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let f = f.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let f = f.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, Infallible>(f(parts, body).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A backend answering its version as the body; 500 while `failing` is set.
pub struct Backend {
    pub addr: SocketAddr,
    pub failing: Arc<AtomicBool>,
}

impl Backend {
    pub async fn start(version: &str) -> Backend {
        let failing = Arc::new(AtomicBool::new(false));
        let (v, f) = (version.to_string(), failing.clone());
        let addr = serve(move |_, _| {
            let (v, f) = (v.clone(), f.clone());
            async move {
                let status = if f.load(Ordering::SeqCst) { 500 } else { 200 };
                reply(status, v)
            }
        })
        .await;
        Backend { addr, failing }
    }
}

/// A judge call waiting for the test's verdict.
pub struct JudgeCall {
    pub query: String,
    pub answer: oneshot::Sender<&'static str>,
}

/// The meshlens server's part (verify, events) and the webhooks, recorded in order.
pub struct Control {
    pub addr: SocketAddr,
    /// `hook NAME TYPE` and `judge` entries in arrival order.
    pub log: Arc<Mutex<Vec<String>>>,
    pub hook_bodies: Arc<Mutex<Vec<Value>>>,
    pub events: Arc<Mutex<Vec<Value>>>,
    pub judge_calls: mpsc::UnboundedReceiver<JudgeCall>,
}

impl Control {
    /// `hook_status`: webhook name -> status it answers (default 200).
    pub async fn start(hook_status: HashMap<String, u16>) -> Control {
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let hook_bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let (l, h, e) = (log.clone(), hook_bodies.clone(), events.clone());
        let statuses = Arc::new(hook_status);
        let addr = serve(move |parts, body| {
            let (log, hooks, events, tx, statuses) = (
                l.clone(),
                h.clone(),
                e.clone(),
                tx.clone(),
                statuses.clone(),
            );
            async move {
                let path = parts.uri.path().to_string();
                let json = || serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
                if path == "/api/v1/verify" {
                    log.lock().unwrap().push("judge".into());
                    let (answer, rx) = oneshot::channel();
                    let query = parts.uri.query().unwrap_or("").to_string();
                    if tx.send(JudgeCall { query, answer }).is_err() {
                        return reply(503, "test gone");
                    }
                    let verdict = rx.await.unwrap_or("inconclusive");
                    let body = serde_json::json!({
                        "verdict": verdict, "score": if verdict == "pass" {100} else {0},
                        "reason": "decided by the test from the traffic it measured",
                    });
                    return reply(200, body.to_string());
                }
                if path == "/api/v1/events" {
                    events.lock().unwrap().push(json());
                    return reply(200, r#"{"status":"success","data":{}}"#);
                }
                if let Some(name) = path.strip_prefix("/hook/") {
                    let b = json();
                    let ty = b["type"].as_str().unwrap_or("?").to_string();
                    log.lock().unwrap().push(format!("hook {name} {ty}"));
                    hooks.lock().unwrap().push(b);
                    return reply(*statuses.get(name).unwrap_or(&200), "");
                }
                reply(404, "not found")
            }
        })
        .await;
        Control {
            addr,
            log,
            hook_bodies,
            events,
            judge_calls: rx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next judge call, within a generous limit.
    pub async fn next_judge(&mut self) -> JudgeCall {
        tokio::time::timeout(Duration::from_secs(90), self.judge_calls.recv())
            .await
            .expect("the rollout asked the judge within 90 s")
            .expect("control server running")
    }
}

/// The mesh: `svc` with endpoints v1 and v2, subsets v1 and v2, all traffic to v1.
pub fn write_mesh(dir: &Path, v1: &Backend, v2: &Backend) -> String {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: svc, namespace: default}}\nspec:\n  hosts: [svc]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{app: svc, version: v1}}}}\n  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{app: svc, version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc, namespace: default}}\nspec:\n  host: svc\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc, namespace: default}}\nspec:\n  hosts: [svc]\n  http:\n  - route:\n    - {{destination: {{host: svc, subset: v1}}, weight: 100}}\n    - {{destination: {{host: svc, subset: v2}}, weight: 0}}\n",
        v1.addr.port(),
        v2.addr.port()
    );
    std::fs::write(dir.join("mesh.yaml"), &yaml).unwrap();
    yaml
}

/// The canary (v2) weight the mesh file holds now, read by a line scan of its own (the weight
/// after `subset: v2`, flow or block style) rather than by the code under test.
pub fn file_canary_weight(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("mesh.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains("subset: v2"))
        .expect("a v2 destination");
    for l in &lines[i..(i + 3).min(lines.len())] {
        if let Some(rest) = l.split("weight:").nth(1) {
            let n: String = rest
                .trim()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            return n.parse().expect("a weight number");
        }
    }
    panic!("no weight after subset v2 in:\n{text}");
}

/// A `meshlens proxy` process.
pub struct ProxyProc {
    child: Child,
    pub addr: String,
    pub admin: String,
}

impl ProxyProc {
    pub fn start(mesh: &Path) -> ProxyProc {
        let mut child = Command::new(BIN)
            .args(["proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--threads", "1", "--workload", "client", "--mesh"])
            .arg(mesh)
            .env("MESHLENS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn meshlens proxy");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (addr, admin) = loop {
            let line = lines
                .next()
                .expect("proxy exited before printing its address")
                .expect("utf-8");
            if let Some(rest) = line.split("meshlens proxy listening on ").nth(1) {
                let (a, b) = rest.split_once(", admin on ").expect("admin address");
                break (a.trim().to_string(), b.trim().to_string());
            }
        };
        std::thread::spawn(move || for _ in lines {});
        ProxyProc { child, addr, admin }
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn get(
    c: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    host: Option<&str>,
) -> (u16, String) {
    let mut req = http::Request::get(url);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), c.request(req))
        .await
        .expect("answer within 20 s")
        .expect("an answer");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

impl ProxyProc {
    /// The proxy's config generation (loads accepted so far).
    pub async fn generation(&self, c: &Client<HttpConnector, Full<Bytes>>) -> u64 {
        let (_, body) = get(c, &format!("http://{}/config", self.admin), None).await;
        let v: Value = serde_json::from_str(&body).expect("config JSON");
        v["generation"].as_u64().expect("generation")
    }

    /// Waits (at most 60 s) until the proxy has loaded `n` configs.
    pub async fn wait_generation(&self, c: &Client<HttpConnector, Full<Bytes>>, n: u64) {
        let start = Instant::now();
        loop {
            let g = self.generation(c).await;
            if g >= n {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "proxy {} still at config generation {g}, waiting for {n}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `n` requests for `svc` through the proxy: (answers from v2, v2 answers that
    /// were 5xx).
    pub async fn split(&self, c: &Client<HttpConnector, Full<Bytes>>, n: usize) -> (usize, usize) {
        let (mut v2, mut v2_errors) = (0, 0);
        for _ in 0..n {
            let (status, body) = get(c, &format!("http://{}/", self.addr), Some("svc")).await;
            assert!(
                body == "v1" || body == "v2",
                "unexpected answer {status} {body:?}"
            );
            if body == "v2" {
                v2 += 1;
                if status >= 500 {
                    v2_errors += 1;
                }
            }
        }
        (v2, v2_errors)
    }
}

/// The `meshlens rollout` process; its stdout collected.
pub struct RolloutProc {
    child: Child,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

impl Drop for RolloutProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RolloutProc {
    pub fn start(args: &[String]) -> RolloutProc {
        let mut child = Command::new(BIN)
            .arg("rollout")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn meshlens rollout");
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut so, &mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut se, &mut s);
            s
        });
        RolloutProc {
            child,
            out: Some(out),
            err: Some(err),
        }
    }

    /// Waits (at most 120 s) for the exit; returns (code, stdout, stderr).
    pub async fn finish(&mut self) -> (i32, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(120) {
                let _ = self.child.kill();
                panic!("meshlens rollout did not end within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let out = self.out.take().unwrap().join().unwrap();
        let err = self.err.take().unwrap().join().unwrap();
        (status.code().unwrap_or(-1), out, err)
    }
}
