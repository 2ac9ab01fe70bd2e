//! A small client for ClickHouse's HTTP interface: queries and inserts, with settings.
//!
//! The storage traits are synchronous, so the client is a blocking facade: requests run on a
//! runtime the client owns (one worker thread) and the caller waits on a channel. This works
//! from plain threads and from inside another tokio runtime alike (it never calls
//! `block_on` on the caller's thread, which would panic there).
//!
//! Queries are sent with `wait_end_of_query=1`, so ClickHouse buffers the whole answer and an
//! error half way through a result arrives as an HTTP error instead of text appended to
//! binary rows.

use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use crate::error::parse_server_error;
use crate::{ClickHouseError, StorageUrl};

/// One ClickHouse setting sent with a request (`name=value` in the query string).
pub type Setting<'a> = (&'a str, String);

/// Connection options.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Upper bound for one query or DDL statement, answer included.
    pub timeout: Duration,
    /// Upper bound for one insert, answer included (with a cluster, until every shard
    /// has its rows).
    pub insert_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(60),
            insert_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A blocking client for one ClickHouse server's HTTP interface.
pub struct Client {
    base: String,
    auth: Option<String>,
    opts: ClientOptions,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    /// `Option` only so `Drop` can shut it down without blocking (see there).
    rt: Option<tokio::runtime::Runtime>,
}

impl Client {
    pub fn new(url: &StorageUrl, opts: ClientOptions) -> Result<Client, ClickHouseError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("clickhouse-client")
            .enable_all()
            .build()
            .map_err(ClickHouseError::Runtime)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(opts.connect_timeout));
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(2))
            .build(connector);
        let auth = url.user.as_ref().map(|u| {
            let pair = format!("{u}:{}", url.password.as_deref().unwrap_or(""));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Ok(Client {
            base: url.http_base(),
            auth,
            opts,
            http,
            rt: Some(rt),
        })
    }

    /// The longest a request may take.
    pub fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    /// The server's HTTP address, for messages.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Runs a statement that returns nothing (DDL, `ALTER`).
    pub fn execute(&self, sql: &str, settings: &[Setting<'_>]) -> Result<(), ClickHouseError> {
        let url = self.url(settings, None);
        self.request(url, sql, Bytes::from(sql.to_string()), self.opts.timeout)
            .map(drop)
    }

    /// Runs a query and returns its whole answer, in the format the SQL names
    /// (`FORMAT RowBinary`, …). Requests name no default database: meshlens qualifies every
    /// table, and the first ones run before its database exists.
    pub fn query(&self, sql: &str, settings: &[Setting<'_>]) -> Result<Bytes, ClickHouseError> {
        let mut all = vec![("wait_end_of_query", "1".to_string())];
        all.extend(settings.iter().cloned());
        let url = self.url(&all, None);
        self.request(url, sql, Bytes::from(sql.to_string()), self.opts.timeout)
    }

    /// Runs `INSERT INTO … FORMAT …` with `data` as the rows.
    pub fn insert(
        &self,
        insert_sql: &str,
        data: Bytes,
        settings: &[Setting<'_>],
    ) -> Result<(), ClickHouseError> {
        let url = self.url(settings, Some(insert_sql));
        self.request(url, insert_sql, data, self.opts.insert_timeout)
            .map(drop)
    }

    /// `GET /ping`: whether the server answers at all.
    pub fn ping(&self) -> Result<(), ClickHouseError> {
        let url = format!("{}ping", self.base);
        let fut = self.send(http::Method::GET, url, Bytes::new(), self.opts.timeout);
        self.block(fut).map(drop)
    }

    fn url(&self, settings: &[Setting<'_>], query: Option<&str>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in settings {
            q.append_pair(k, v);
        }
        if let Some(sql) = query {
            q.append_pair("query", sql);
        }
        format!("{}?{}", self.base, q.finish())
    }

    fn request(
        &self,
        url: String,
        sql: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, ClickHouseError> {
        tracing::debug!(sql = %truncate(sql, 200), "clickhouse request");
        let fut = self.send(http::Method::POST, url, body, timeout);
        self.block(fut)
    }

    /// The request as a future that owns everything it needs, so it can run on the
    /// client's runtime.
    fn send(
        &self,
        method: http::Method,
        url: String,
        body: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = Result<Bytes, ClickHouseError>> + Send + 'static {
        let http = self.http.clone();
        let auth = self.auth.clone();
        let base = self.base.clone();
        async move {
            let mut req = http::Request::builder().method(method).uri(&url);
            if let Some(a) = auth {
                req = req.header(http::header::AUTHORIZATION, a);
            }
            let req = req
                .body(Full::new(body))
                .map_err(|e| ClickHouseError::InvalidUrl {
                    url: base.clone(),
                    reason: e.to_string(),
                })?;
            let exchange = async {
                let resp = http.request(req).await.map_err(|e| {
                    let mut reason = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        reason = format!("{reason}: {s}");
                        src = s.source();
                    }
                    ClickHouseError::Unreachable {
                        url: base.clone(),
                        reason,
                    }
                })?;
                let status = resp.status();
                let exception_code = resp
                    .headers()
                    .get("x-clickhouse-exception-code")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u32>().ok());
                // Frames are appended to one buffer as they arrive: collecting them first
                // and joining them after held a large answer (a scan's spans) twice.
                let mut body = resp.into_body();
                let mut buf = Vec::new();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| ClickHouseError::Unreachable {
                        url: base.clone(),
                        reason: format!("answer cut short: {e}"),
                    })?;
                    if let Some(data) = frame.data_ref() {
                        buf.extend_from_slice(data);
                    }
                }
                let body = Bytes::from(buf);
                if status.is_success() {
                    return Ok(body);
                }
                let text = String::from_utf8_lossy(&body).into_owned();
                Err(match parse_server_error(&text) {
                    Some((code, message)) => ClickHouseError::Server {
                        url: base.clone(),
                        code: exception_code.unwrap_or(code),
                        message,
                    },
                    None => ClickHouseError::Http {
                        url: base.clone(),
                        status: status.as_u16(),
                        body: truncate(text.trim(), 500).to_string(),
                    },
                })
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err(ClickHouseError::Timeout { url: base, timeout }),
            }
        }
    }

    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, ClickHouseError>> + Send + 'static,
    ) -> Result<T, ClickHouseError> {
        let Some(rt) = &self.rt else {
            return Err(self.gone());
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| Err(self.gone()))
    }

    fn gone(&self) -> ClickHouseError {
        ClickHouseError::Unreachable {
            url: self.base.clone(),
            reason: "client runtime stopped".into(),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime's async context;
        // shutting down in the background never does.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_server_is_named() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let url = StorageUrl::parse("clickhouse://127.0.0.1:1/db").unwrap();
        let c = Client::new(&url, ClientOptions::default()).unwrap();
        let e = c.query("SELECT 1", &[]).unwrap_err();
        assert!(matches!(e, ClickHouseError::Unreachable { .. }), "{e:?}");
        assert!(e.to_string().contains("http://127.0.0.1:1/"), "{e}");
    }

    #[test]
    fn works_from_inside_another_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = StorageUrl::parse("clickhouse://127.0.0.1:1/db").unwrap();
        rt.block_on(async {
            let c = Client::new(&url, ClientOptions::default()).unwrap();
            assert!(c.ping().is_err());
            drop(c);
        });
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
