//! The demo's services themselves: small HTTP servers that answer, fail now and then, and
//! call the next service through their outbound sidecar, passing the trace context on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::topology::Behaviour;

/// Headers a service copies from its request onto its outbound call, as Istio asks
/// applications to do so that traces join up.
const PROPAGATED: &[&str] = &[
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "traceparent",
    "tracestate",
    "user-agent",
    "x-canary",
];

pub type HttpClient = crate::httpc::AsyncClient;

/// The pooled keep-alive client the apps and the load generator share.
pub fn client() -> anyhow::Result<HttpClient> {
    crate::httpc::async_client()
}

struct App {
    name: String,
    behaviour: Behaviour,
    /// The outbound sidecar this app calls through, if it calls anything.
    sidecar: Option<SocketAddr>,
    client: HttpClient,
    counter: AtomicU64,
}

/// Serves one app on `listener` until the runtime stops.
pub fn spawn(
    listener: TcpListener,
    name: String,
    behaviour: Behaviour,
    sidecar: Option<SocketAddr>,
    client: HttpClient,
) {
    let app = Arc::new(App {
        name,
        behaviour,
        sidecar,
        client,
        counter: AtomicU64::new(0),
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let app = app.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(handle(&app, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("static response")
}

async fn handle(app: &App, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let n = app.counter.fetch_add(1, Ordering::Relaxed);
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers = req.headers().clone();
    let _ = req.into_body().collect().await;
    // Every n-th request fails: deterministic, so the demo's error rates are steady.
    let fails = |per_mille: u32| per_mille > 0 && (n * 7919 % 1000) < per_mille as u64;
    match app.behaviour {
        Behaviour::AccessControl => {
            let agent = headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if agent.contains("BadBot") {
                return reply(StatusCode::FORBIDDEN, "denied by access control\n".into());
            }
            call(app, "http-lb", &path, &headers).await
        }
        Behaviour::LoadBalancer { error_per_mille } => {
            if fails(error_per_mille) {
                return reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{} failed\n", app.name),
                );
            }
            call(app, "clover-server", &path, &headers).await
        }
        Behaviour::Server { error_per_mille } => {
            if fails(error_per_mille) {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{} overloaded\n", app.name),
                );
            }
            if path.starts_with("/api/search") {
                tokio::time::sleep(Duration::from_millis(20 + n % 30)).await;
            }
            if path.starts_with("/missing") {
                return reply(StatusCode::NOT_FOUND, "no such page\n".into());
            }
            reply(StatusCode::OK, format!("{} served {path}\n", app.name))
        }
        Behaviour::Ids => reply(StatusCode::OK, "inspected\n".into()),
    }
}

/// Calls `host` through the sidecar, passing the trace context on; answers with its status.
async fn call(app: &App, host: &str, path: &str, incoming: &HeaderMap) -> Response<Full<Bytes>> {
    let Some(sidecar) = app.sidecar else {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, "no sidecar\n".into());
    };
    let mut req = Request::builder()
        .uri(format!("http://{sidecar}{path}"))
        .header("host", host);
    for name in PROPAGATED {
        if let Some(v) = incoming.get(*name) {
            req = req.header(*name, v);
        }
    }
    let req = req.body(Full::new(Bytes::new())).expect("valid request");
    match tokio::time::timeout(Duration::from_secs(10), app.client.request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut text = format!("{} -> ", app.name);
            text.push_str(&String::from_utf8_lossy(&body));
            reply(status, text)
        }
        Ok(Err(e)) => reply(StatusCode::BAD_GATEWAY, format!("{}: {e}\n", app.name)),
        Err(_) => reply(
            StatusCode::GATEWAY_TIMEOUT,
            format!("{}: timed out\n", app.name),
        ),
    }
}
