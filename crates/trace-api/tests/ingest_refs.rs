//! Ingest hands the store and the observers spans borrowed from the request body: what they
//! receive must be what the owned decoders read from the same body, for every transport,
//! and a refused write must not reach the observers.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Request, StatusCode};
use meshlens_ingest::{otlp, zipkin};
use meshlens_model::{
    DependencyLink, Span, SpanReader, SpanRef, SpanWriter, StorageError, TraceId, TraceQuery,
};
use meshlens_testdata::generate_spans_at;
use meshlens_trace_api::{router, TraceApiState};
use tower::ServiceExt;

/// Keeps what it is given; `write_refs` is overridden, as the span store does.
#[derive(Default)]
struct Recording {
    stored: Mutex<Vec<Span>>,
    refuse: bool,
}

impl SpanWriter for Recording {
    fn write(&self, spans: &[Span]) -> Result<(), StorageError> {
        self.stored.lock().unwrap().extend_from_slice(spans);
        Ok(())
    }

    fn write_refs(&self, spans: &[SpanRef<'_>]) -> Result<(), StorageError> {
        if self.refuse {
            return Err(StorageError::Unavailable {
                reason: "full".into(),
            });
        }
        let owned: Vec<Span> = spans.iter().map(SpanRef::to_span).collect();
        self.stored.lock().unwrap().extend(owned);
        Ok(())
    }
}

impl SpanReader for Recording {
    fn trace(&self, _: &TraceId) -> Result<Vec<Span>, StorageError> {
        Ok(Vec::new())
    }
    fn find_traces(&self, _: &TraceQuery) -> Result<Vec<Vec<Span>>, StorageError> {
        Ok(Vec::new())
    }
    fn service_names(&self) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn remote_service_names(&self, _: &str) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn span_names(&self, _: &str) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn dependencies(&self, _: i64, _: i64) -> Result<Vec<DependencyLink>, StorageError> {
        Ok(Vec::new())
    }
    fn scan(&self, _: u64, _: u64, _: &mut dyn FnMut(&Span)) -> Result<(), StorageError> {
        Ok(())
    }
}

struct Setup {
    app: axum::Router,
    store: Arc<Recording>,
    observed: Arc<Mutex<Vec<Span>>>,
}

fn setup(refuse: bool) -> Setup {
    let store = Arc::new(Recording {
        refuse,
        ..Default::default()
    });
    let observed = Arc::new(Mutex::new(Vec::new()));
    let mut state = TraceApiState::new(store.clone(), store.clone());
    let seen = observed.clone();
    state.observers.push(Arc::new(move |batch: &[SpanRef<'_>]| {
        seen.lock()
            .unwrap()
            .extend(batch.iter().map(SpanRef::to_span));
    }));
    Setup {
        app: router(Arc::new(state)),
        store,
        observed,
    }
}

async fn post(app: &axum::Router, path: &str, content_type: &str, body: Vec<u8>) -> StatusCode {
    let req = Request::post(path)
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("request");
    app.clone().oneshot(req).await.expect("response").status()
}

fn spans() -> Vec<Span> {
    let mut spans = generate_spans_at(40, 3, 1_700_000_000_000_000, 1_700_000_060_000_000);
    // Upper case and escapes take the copying paths of the decoders.
    spans[0].name = Some("GET /Cart".into());
    spans[1]
        .tags
        .insert("quote".into(), "a \"b\"\n\u{e9}".into());
    spans
}

#[tokio::test]
async fn every_transport_stores_and_observes_what_the_owned_decoder_reads() {
    let sent = spans();
    let bodies: [(&str, &str, Vec<u8>); 3] = [
        (
            "/api/v2/spans",
            "application/json",
            zipkin::encode_json(&sent).into_bytes(),
        ),
        (
            "/api/v2/spans",
            "application/x-protobuf",
            zipkin::encode_proto(&sent),
        ),
        (
            "/v1/traces",
            "application/x-protobuf",
            otlp::encode_request(&sent),
        ),
    ];
    for (path, ct, body) in bodies {
        let want = if path == "/v1/traces" {
            otlp::decode_proto(&body).unwrap().spans
        } else if ct == "application/json" {
            zipkin::decode_json(&body).unwrap()
        } else {
            zipkin::decode_proto(&body).unwrap()
        };
        assert_eq!(want.len(), sent.len());
        let s = setup(false);
        let status = post(&s.app, path, ct, body).await;
        assert!(status.is_success(), "{path} {ct}: {status}");
        assert_eq!(*s.store.stored.lock().unwrap(), want, "{path} {ct}");
        assert_eq!(*s.observed.lock().unwrap(), want, "{path} {ct}");
    }
}

#[tokio::test]
async fn a_refused_write_is_not_observed() {
    let s = setup(true);
    let body = zipkin::encode_json(&spans()).into_bytes();
    let status = post(&s.app, "/api/v2/spans", "application/json", body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(s.observed.lock().unwrap().is_empty());
    let status = post(&s.app, "/api/v2/spans", "application/json", b"[{".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
