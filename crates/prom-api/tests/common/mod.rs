//! Shared by the router tests: a throwaway TSDB, and one request through the router.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbOptions};
use serde_json::Value;
use tower::ServiceExt;

/// An empty TSDB in a temporary directory that lives as long as the returned guard.
pub fn open_tsdb() -> (tempfile::TempDir, Arc<Tsdb>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = TsdbOptions {
        wal_fsync: FsyncPolicy::Never,
        retention_time_ms: None,
        ..Default::default()
    };
    let db = Arc::new(Tsdb::open(dir.path(), opts).unwrap());
    (dir, db)
}

/// The status and JSON answer of `req`; a body that is not JSON comes back as a string.
pub async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}
