//! The crate's errors, and the one place they become [`StorageError`]s.

use std::time::Duration;

use meshlens_model::StorageError;

/// ClickHouse's error codes that meshlens reacts to (they are stable across releases).
pub mod code {
    /// `UNKNOWN_TABLE`.
    pub const UNKNOWN_TABLE: u32 = 60;
    /// `UNKNOWN_DATABASE`.
    pub const UNKNOWN_DATABASE: u32 = 81;
    /// `TOO_MANY_ROWS`: a `max_rows_to_read` limit was hit.
    pub const TOO_MANY_ROWS: u32 = 158;
    /// `TOO_MANY_ROWS_OR_BYTES`: a `max_result_rows` limit was hit.
    pub const TOO_MANY_ROWS_OR_BYTES: u32 = 396;
    /// `CANNOT_COMPILE_REGEXP`: re2 refused a matcher's regex.
    pub const CANNOT_COMPILE_REGEXP: u32 = 427;
}

#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error("invalid storage address {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// No connection could be made (refused, DNS, reset before an answer).
    #[error("ClickHouse at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("ClickHouse at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// ClickHouse ran the request and refused it; `message` is its own text.
    #[error("ClickHouse at {url} answered error {code}: {message}")]
    Server {
        url: String,
        code: u32,
        message: String,
    },
    /// A non-200 answer without ClickHouse's error format (a proxy in between, say).
    #[error("ClickHouse at {url} answered HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("malformed answer from ClickHouse: {reason}")]
    Decode { reason: String },
    #[error(
        "the meshlens schema in database {database} is version {stored}, newer than the \
         version {supported} this meshlens knows; upgrade meshlens (or use another database)"
    )]
    SchemaTooNew {
        database: String,
        stored: u32,
        supported: u32,
    },
    #[error("cluster {cluster:?} is not in the remote_servers of ClickHouse at {url}")]
    UnknownCluster { url: String, cluster: String },
    /// The server started without ClickHouse and its schema is not in place yet; `reason`
    /// is why the latest attempt failed (naming the address).
    #[error("{reason} (meshlens keeps trying; writes are buffered)")]
    NotReady { reason: String },
    #[error("the ClickHouse client's runtime could not start: {0}")]
    Runtime(#[source] std::io::Error),
}

impl ClickHouseError {
    /// ClickHouse's error code, for server-side errors.
    pub fn code(&self) -> Option<u32> {
        match self {
            ClickHouseError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<ClickHouseError> for StorageError {
    fn from(e: ClickHouseError) -> StorageError {
        match e {
            ClickHouseError::Server {
                code: code::CANNOT_COMPILE_REGEXP,
                message,
                ..
            } => StorageError::InvalidRequest { reason: message },
            ClickHouseError::Decode { reason } => StorageError::Corruption {
                location: "ClickHouse answer".into(),
                reason,
            },
            ClickHouseError::InvalidUrl { .. } => StorageError::InvalidRequest {
                reason: e.to_string(),
            },
            other => StorageError::Unavailable {
                reason: other.to_string(),
            },
        }
    }
}

/// Splits ClickHouse's error text into code and message. 18.16 answers
/// `Code: 60, e.displayText() = DB::Exception: Table x doesn't exist., e.what() = DB::Exception`;
/// current releases `Code: 60. DB::Exception: Table x doesn't exist. (UNKNOWN_TABLE) (version …)`.
pub(crate) fn parse_server_error(body: &str) -> Option<(u32, String)> {
    let at = body.find("Code: ")?;
    let rest = &body[at + 6..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let code: u32 = rest[..digits].parse().ok()?;
    let mut msg = rest[digits..].trim_start_matches([',', '.', ' ']);
    msg = msg.strip_prefix("e.displayText() = ").unwrap_or(msg);
    if let Some(end) = msg.find(", e.what() = ") {
        msg = &msg[..end];
    }
    Some((code, msg.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_old_and_new_error_texts() {
        let old = "Code: 60, e.displayText() = DB::Exception: Table default.nosuch doesn't exist., e.what() = DB::Exception\n";
        assert_eq!(
            parse_server_error(old),
            Some((
                60,
                "DB::Exception: Table default.nosuch doesn't exist.".into()
            ))
        );
        let new = "Code: 60. DB::Exception: Table default.nosuch does not exist. (UNKNOWN_TABLE) (version 23.8.1.1)\n";
        let (c, m) = parse_server_error(new).unwrap();
        assert_eq!(c, 60);
        assert!(m.starts_with("DB::Exception: Table default.nosuch"), "{m}");
        assert_eq!(parse_server_error("502 Bad Gateway"), None);
        assert_eq!(parse_server_error("Code: x"), None);
    }

    #[test]
    fn storage_errors_keep_the_text() {
        let e = ClickHouseError::Unreachable {
            url: "http://h:1/".into(),
            reason: "connection refused".into(),
        };
        let s: StorageError = e.into();
        assert_eq!(s.http_status(), 503);
        assert!(s.to_string().contains("http://h:1/"));
    }
}
