//! Query errors and their mapping to Prometheus's `errorType` and HTTP status, in one place.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PromqlError {
    #[error("{message}")]
    Parse { message: String },
    #[error("{message}")]
    BadData { message: String },
    #[error("{message}")]
    Execution { message: String },
    #[error("query processing would load too many samples into memory in query execution (limit {limit})")]
    TooManySamples { limit: usize },
    #[error("query timed out in expression evaluation (after {after:?})")]
    Timeout { after: Duration },
    /// Every `max_concurrency` slot stayed taken until the query's timeout.
    #[error("query timed out in query queue (after {after:?})")]
    QueueTimeout { after: Duration },
    #[error(transparent)]
    Storage(#[from] meshlens_model::StorageError),
}

impl PromqlError {
    /// Prometheus's `errorType`. A storage failure's type follows its status, which comes
    /// from the one mapping every API shares (`StorageError::http_status`).
    pub fn error_type(&self) -> &'static str {
        match self {
            PromqlError::Parse { .. } | PromqlError::BadData { .. } => "bad_data",
            PromqlError::Execution { .. } | PromqlError::TooManySamples { .. } => "execution",
            PromqlError::Timeout { .. } | PromqlError::QueueTimeout { .. } => "timeout",
            PromqlError::Storage(e) => match e.http_status() {
                400 => "bad_data",
                422 => "execution",
                429 | 503 => "unavailable",
                _ => "internal",
            },
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            PromqlError::Storage(e) => e.http_status(),
            PromqlError::Parse { .. } | PromqlError::BadData { .. } => 400,
            PromqlError::Execution { .. } | PromqlError::TooManySamples { .. } => 422,
            PromqlError::Timeout { .. } | PromqlError::QueueTimeout { .. } => 503,
        }
    }

    pub(crate) fn exec(message: impl Into<String>) -> Self {
        PromqlError::Execution {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_model::StorageError;

    #[test]
    fn storage_invalid_request_is_bad_data_400() {
        let e = PromqlError::Storage(StorageError::InvalidRequest {
            reason: "bad matcher".into(),
        });
        assert_eq!(e.http_status(), 400);
        assert_eq!(e.error_type(), "bad_data");
    }

    #[test]
    fn storage_statuses_follow_the_shared_mapping() {
        for (e, ty) in [
            (StorageError::TooManySamples { limit: 1 }, "execution"),
            (StorageError::Closed, "unavailable"),
            (
                StorageError::Corruption {
                    location: "b".into(),
                    reason: "r".into(),
                },
                "internal",
            ),
        ] {
            let status = e.http_status();
            let p = PromqlError::Storage(e);
            assert_eq!(p.http_status(), status);
            assert_eq!(p.error_type(), ty);
        }
    }
}
