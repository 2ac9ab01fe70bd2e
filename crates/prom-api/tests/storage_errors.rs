//! A storage failure gets the shared status (`StorageError::http_status`) and the matching
//! Prometheus `errorType` in the error envelope.

use axum::response::IntoResponse;
use http_body_util::BodyExt;
use meshlens_model::StorageError;
use meshlens_prom_api::ApiError;
use meshlens_promql::PromqlError;
use serde_json::Value;

async fn envelope(e: ApiError) -> (u16, Value) {
    let resp = e.into_response();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).expect("json"))
}

#[tokio::test]
async fn storage_invalid_request_is_400_bad_data() {
    let e = || StorageError::InvalidRequest {
        reason: "matcher".into(),
    };
    for err in [
        ApiError::from(e()),
        ApiError::from(PromqlError::Storage(e())),
    ] {
        let (status, body) = envelope(err).await;
        assert_eq!(status, 400);
        assert_eq!(body["status"], "error");
        assert_eq!(body["errorType"], "bad_data");
        assert!(body["error"].as_str().unwrap_or("").contains("matcher"));
    }
}

#[tokio::test]
async fn every_storage_error_keeps_its_shared_status() {
    for e in [
        StorageError::TooManySamples { limit: 5 },
        StorageError::Closed,
        StorageError::Unavailable {
            reason: "down".into(),
        },
        StorageError::io("read", std::io::Error::other("disk")),
    ] {
        let want = e.http_status();
        let (status, _) = envelope(ApiError::from(e)).await;
        assert_eq!(status, want);
    }
}
