//! Storage failures reach clients with the one status mapping (`StorageError::http_status`)
//! on every trace endpoint: ingest, the Zipkin query API and the Jaeger query API.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use meshlens_model::{
    DependencyLink, Span, SpanReader, SpanWriter, StorageError, TraceId, TraceQuery,
};
use meshlens_trace_api::{router, TraceApiState};
use tower::ServiceExt;

/// A store that refuses every call with one error, as a backend rejecting the request would.
struct Refusing(fn() -> StorageError);

impl SpanWriter for Refusing {
    fn write(&self, _: &[Span]) -> Result<(), StorageError> {
        Err((self.0)())
    }
}

impl SpanReader for Refusing {
    fn trace(&self, _: &TraceId) -> Result<Vec<Span>, StorageError> {
        Err((self.0)())
    }
    fn find_traces(&self, _: &TraceQuery) -> Result<Vec<Vec<Span>>, StorageError> {
        Err((self.0)())
    }
    fn service_names(&self) -> Result<Vec<String>, StorageError> {
        Err((self.0)())
    }
    fn remote_service_names(&self, _: &str) -> Result<Vec<String>, StorageError> {
        Err((self.0)())
    }
    fn span_names(&self, _: &str) -> Result<Vec<String>, StorageError> {
        Err((self.0)())
    }
    fn dependencies(&self, _: i64, _: i64) -> Result<Vec<DependencyLink>, StorageError> {
        Err((self.0)())
    }
    fn scan(&self, _: u64, _: u64, _: &mut dyn FnMut(&Span)) -> Result<(), StorageError> {
        Err((self.0)())
    }
}

fn app(err: fn() -> StorageError) -> axum::Router {
    let store = Arc::new(Refusing(err));
    router(Arc::new(TraceApiState::new(store.clone(), store)))
}

async fn status(app: &axum::Router, req: Request<Body>) -> StatusCode {
    app.clone().oneshot(req).await.expect("response").status()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

const ONE_SPAN: &str = r#"[{"traceId":"0000000000000001","id":"0000000000000002",
    "name":"get","timestamp":1700000000000000,"duration":10,
    "localEndpoint":{"serviceName":"a"}}]"#;

fn invalid() -> StorageError {
    StorageError::InvalidRequest {
        reason: "bad".into(),
    }
}

#[tokio::test]
async fn invalid_request_from_storage_is_400_on_every_trace_endpoint() {
    let app = app(invalid);
    let post = Request::post("/api/v2/spans")
        .header("content-type", "application/json")
        .body(Body::from(ONE_SPAN))
        .expect("request");
    assert_eq!(
        status(&app, post).await,
        StatusCode::BAD_REQUEST,
        "zipkin ingest"
    );
    for uri in [
        "/api/v2/services",
        "/api/v2/traces",
        "/api/v2/trace/0000000000000001",
        "/api/v2/dependencies?endTs=1700000000000",
        "/api/services",
        "/api/traces?service=a",
        "/api/v3/services",
    ] {
        assert_eq!(
            status(&app, get(uri)).await,
            StatusCode::BAD_REQUEST,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn closed_storage_is_503_not_500() {
    let app = app(|| StorageError::Closed);
    assert_eq!(
        status(&app, get("/api/v2/services")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status(&app, get("/api/services")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
