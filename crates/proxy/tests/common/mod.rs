//! Test harness: real backends (small hyper servers on 127.0.0.1:0), a proxy started
//! in-process on a temp config directory, and clients for HTTP/1.1 and h2c.
#![allow(dead_code)]

pub mod pki;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshlens_proxy::{Proxy, ProxyOptions, RunningProxy};
use parking_lot::Mutex;
use tokio::net::TcpListener;

/// A request as a backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub host: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

/// What a backend answers.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Option<Duration>,
    /// Wait for this before answering (tests release it).
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Self {
        Reply {
            status: 200,
            body: body.into(),
            delay: None,
            gate: None,
            headers: Vec::new(),
        }
    }
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            ..Reply::ok("")
        }
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

pub struct Backend {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Signalled (one permit per request) when a request arrives.
    pub arrived: Arc<tokio::sync::Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// A backend answering 200 with its name as the body.
    pub async fn named(name: &str) -> Backend {
        let n = name.to_string();
        Backend::start(move |_| Reply::ok(n.clone())).await
    }

    pub async fn start(f: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Backend {
        let handler: Handler = Arc::new(f);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let arrived = Arc::new(tokio::sync::Semaphore::new(0));
        let (s2, a2) = (seen.clone(), arrived.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, arrived, handler) = (s2.clone(), a2.clone(), handler.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (seen, arrived, handler) =
                            (seen.clone(), arrived.clone(), handler.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let host = parts
                                .uri
                                .authority()
                                .map(|a| a.to_string())
                                .or_else(|| {
                                    parts
                                        .headers
                                        .get("host")
                                        .map(|h| h.to_str().unwrap().to_string())
                                })
                                .unwrap_or_default();
                            let s = Seen {
                                method: parts.method.to_string(),
                                path: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                host,
                                headers: parts.headers.clone(),
                                body,
                                version: parts.version,
                            };
                            let reply = handler(&s);
                            seen.lock().push(s);
                            arrived.add_permits(1);
                            if let Some(g) = &reply.gate {
                                let _ = g.acquire().await.map(|p| p.forget());
                            }
                            if let Some(d) = reply.delay {
                                tokio::time::sleep(d).await;
                            }
                            let mut r = Response::new(Full::new(Bytes::from(reply.body)));
                            *r.status_mut() = http::StatusCode::from_u16(reply.status).unwrap();
                            for (k, v) in reply.headers {
                                r.headers_mut().insert(k, v.parse().unwrap());
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            addr,
            seen,
            arrived,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .last()
            .cloned()
            .expect("backend saw a request")
    }

    /// Stops accepting (already open connections keep working until closed).
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// A ServiceEntry for `host` (namespace default, port 9080 `http`) whose endpoints are the
/// given backends with their `version` labels.
pub fn service_entry(host: &str, endpoints: &[(&Backend, &str)]) -> String {
    let mut s = format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata:\n  name: {host}\n  namespace: default\nspec:\n  hosts: [{host}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 9080, name: http, protocol: HTTP}}\n  endpoints:\n"
    );
    for (b, v) in endpoints {
        s.push_str(&format!(
            "  - address: 127.0.0.1\n    ports: {{http: {}}}\n    labels: {{app: {host}, version: {v}}}\n",
            b.port()
        ));
    }
    s.push_str("---\n");
    s
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub proxy: RunningProxy,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

pub async fn start(yaml: &str) -> Harness {
    start_with(yaml, |_| {}).await
}

pub async fn start_with(yaml: &str, tweak: impl FnOnce(&mut ProxyOptions)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), yaml).unwrap();
    let mut opts = ProxyOptions::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    opts.admin = Some("127.0.0.1:0".parse().unwrap());
    opts.workload = "productpage-v1".into();
    opts.app = "productpage".into();
    opts.version = "v1".into();
    opts.reload_interval = Duration::from_millis(100);
    tweak(&mut opts);
    let proxy = Proxy::start(opts).await.expect("proxy starts");
    let client = Client::builder(TokioExecutor::new()).build_http();
    Harness { dir, proxy, client }
}

pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Harness {
    pub async fn get(&self, host: &str, path: &str) -> Answer {
        self.send("GET", host, path, &[], "").await
    }

    pub async fn send(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.proxy.addr()))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(20), self.client.request(req))
            .await
            .expect("proxy answers in time")
            .expect("proxy answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// The admin `/metrics` text.
    pub async fn metrics(&self) -> String {
        let admin = self.proxy.admin_addr().unwrap();
        let req = Request::get(format!("http://{admin}/metrics"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = self.client.request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> String {
        let admin = self.proxy.admin_addr().unwrap();
        let req = Request::get(format!("http://{admin}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = self.client.request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// Replaces the config and waits until the proxy has looked at it.
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.dir.path().join("mesh.yaml"), yaml).unwrap();
    }
}

/// Value of the metric line that has all of `labels` (`k="v"` fragments), summed.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `f` every 20ms, up to 10s.
pub async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Counts of backend bodies over `n` GETs.
pub async fn tally(h: &Harness, host: &str, path: &str, n: usize) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        let a = h.get(host, path).await;
        *m.entry(format!("{}:{}", a.status, a.body)).or_default() += 1;
    }
    m
}
