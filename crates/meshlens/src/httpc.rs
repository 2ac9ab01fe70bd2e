//! HTTP for the command line, the benchmarks and the demo: hyper's pooled client (HTTP/1.1,
//! keep-alive, `https://` through rustls with the system's roots), with a blocking facade
//! for commands that are not async.
//!
//! The facade drives the same client on a current-thread runtime of its own, so a
//! [`Client`] (or [`Conn`]) used for several requests reuses one connection.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use meshlens_verify::http::error_chain;
/// Percent-encodes a query-string value (the verify crate's, shared with its clients).
pub use meshlens_verify::http::urlencode;

/// The async client, for callers that already run on tokio (the demo's load generator).
pub type AsyncClient =
    hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Longest a blocking request may take, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A pooled client speaking `http://` and `https://` (HTTP/1.1, connections kept alive).
pub fn async_client() -> anyhow::Result<AsyncClient> {
    async_client_trusting(None)
}

/// The same, also trusting the CA certificates (PEM) in `ca_file`, as curl's `--cacert`.
pub fn async_client_trusting(ca_file: Option<&std::path::Path>) -> anyhow::Result<AsyncClient> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    // Without system roots plain http still works and https fails its handshake clearly.
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(f) = ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(f)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("reading CA certificates from {}", f.display()))?;
        if certs.is_empty() {
            bail!("{}: no PEM certificates in it", f.display());
        }
        roots.add_parsable_certificates(certs);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(https),
    )
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The blocking facade: one current-thread runtime and one connection pool.
pub struct Client {
    rt: tokio::runtime::Runtime,
    inner: AsyncClient,
}

impl Client {
    pub fn new() -> anyhow::Result<Client> {
        Self::trusting(None)
    }

    /// A client that also trusts the CA certificates in `ca_file`.
    pub fn trusting(ca_file: Option<&std::path::Path>) -> anyhow::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP client's runtime")?;
        // The connector's pool timer and executor need the runtime's context.
        let inner = {
            let _guard = rt.enter();
            async_client_trusting(ca_file)?
        };
        Ok(Client { rt, inner })
    }

    /// Sends one request; `headers` are added as given (e.g. Authorization, X-Scope-OrgID).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        if tokio::runtime::Handle::try_current().is_ok() {
            bail!("the blocking HTTP client cannot run inside an async runtime; use async_client");
        }
        let method = http::Method::from_bytes(method.as_bytes())
            .map_err(|_| anyhow!("invalid HTTP method {method:?}"))?;
        let mut req = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .with_context(|| format!("{method} {url}: invalid request"))?;
        let work = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| anyhow!("{method} {url}: {}", error_chain(&e)))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| anyhow!("{method} {url}: reading the answer: {e}"))?
                .to_bytes()
                .to_vec();
            Ok(Response { status, body })
        };
        self.rt.block_on(async {
            tokio::time::timeout(REQUEST_TIMEOUT, work)
                .await
                .map_err(|_| anyhow!("{method} {url}: no answer within {REQUEST_TIMEOUT:?}"))?
        })
    }

    pub fn get(&self, url: &str) -> anyhow::Result<Response> {
        self.request("GET", url, &[], &[])
    }
}

/// Requests to one origin (`host:port`, `http://host:port` or `https://…`) over a kept-alive
/// connection.
pub struct Conn {
    origin: String,
    client: Client,
}

impl Conn {
    pub fn open(origin: &str) -> anyhow::Result<Conn> {
        Self::open_trusting(origin, None)
    }

    /// A connection that also trusts the CA certificates in `ca_file`.
    pub fn open_trusting(origin: &str, ca_file: Option<&std::path::Path>) -> anyhow::Result<Conn> {
        let origin = origin.trim_end_matches('/');
        let origin = if origin.contains("://") {
            origin.to_string()
        } else {
            format!("http://{origin}")
        };
        Ok(Conn {
            origin,
            client: Client::trusting(ca_file)?,
        })
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let url = format!("{}{path}", self.origin);
        self.client.request(method, &url, headers, body)
    }
}

/// Splits `http://host:port/path?q` into ("http://host:port", "/path?q"); https alike.
pub fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let scheme_end = ["http://", "https://"]
        .iter()
        .find(|s| url.starts_with(**s))
        .map(|s| s.len())
        .ok_or_else(|| anyhow!("only http:// and https:// URLs are supported: {url}"))?;
    let (origin, path) = match url[scheme_end..].find('/') {
        Some(i) => url.split_at(scheme_end + i),
        None => (url, "/"),
    };
    Ok((origin.to_string(), path.to_string()))
}

/// One GET with a client of its own.
pub fn get(url: &str) -> anyhow::Result<Response> {
    Client::new()?.get(url)
}

/// GETs one of the server's JSON APIs: `url` plus the optional parameters that are set.
/// A non-200 answer is an error naming `what` and the server's own message.
pub fn get_api_json(
    what: &str,
    mut url: String,
    optional: &[(&str, &Option<String>)],
) -> anyhow::Result<serde_json::Value> {
    for (k, v) in optional {
        if let Some(v) = v {
            url.push_str(&format!("&{k}={}", urlencode(v)));
        }
    }
    let r = get(&url)?;
    let body: serde_json::Value = serde_json::from_slice(&r.body)
        .map_err(|e| anyhow!("{what}: the server's answer is not JSON: {e}"))?;
    if r.status != 200 {
        bail!(
            "{what}: {} {}",
            r.status,
            body["error"].as_str().unwrap_or("error")
        );
    }
    Ok(body)
}
