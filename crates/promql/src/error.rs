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
    #[error(transparent)]
    Storage(#[from] meshlens_model::StorageError),
}

impl PromqlError {
    pub fn error_type(&self) -> &'static str {
        match self {
            PromqlError::Parse { .. } | PromqlError::BadData { .. } => "bad_data",
            PromqlError::Execution { .. } | PromqlError::TooManySamples { .. } => "execution",
            PromqlError::Timeout { .. } => "timeout",
            PromqlError::Storage(
                meshlens_model::StorageError::Closed
                | meshlens_model::StorageError::Unavailable { .. },
            ) => "unavailable",
            PromqlError::Storage(_) => "internal",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self.error_type() {
            "bad_data" => 400,
            "execution" => 422,
            "timeout" | "unavailable" => 503,
            _ => 500,
        }
    }

    pub(crate) fn exec(message: impl Into<String>) -> Self {
        PromqlError::Execution {
            message: message.into(),
        }
    }
}
