//! Request parameters as Prometheus reads them: the URL query, plus the form body of a POST,
//! with repeated keys (`match[]`) kept.

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};

use crate::ApiError;

pub struct Params(Vec<(String, String)>);

/// Largest form body read for a query request.
const MAX_FORM_BYTES: usize = 16 << 20;

impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|e| ApiError::bad_data(format!("reading the request body: {e}")))?;
        Ok(Params::from_request(&parts.uri, &parts.headers, &body))
    }
}

impl Params {
    pub fn from_request(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Params {
        let mut v: Vec<(String, String)> = uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            v.extend(form_urlencoded::parse(body).into_owned());
        }
        Params(v)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::param(name, "missing"))
    }

    /// A time parameter: Unix seconds (float) or RFC 3339; milliseconds.
    pub fn time(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => parse_time(v).ok_or_else(|| {
                ApiError::param(name, format!("cannot parse {v:?} to a valid timestamp"))
            }),
        }
    }

    /// A time parameter that must be given.
    pub fn required_time(&self, name: &str) -> Result<i64, ApiError> {
        let v = self.required(name)?;
        parse_time(v).ok_or_else(|| {
            ApiError::param(name, format!("cannot parse {v:?} to a valid timestamp"))
        })
    }

    pub fn duration(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => meshlens_promql::parse_duration(v).map(Some).map_err(|_| {
                ApiError::param(name, format!("cannot parse {v:?} to a valid duration"))
            }),
        }
    }

    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit").filter(|v| !v.is_empty()) {
            None => Ok(0),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(|n| n as usize)
                .ok_or_else(|| ApiError::param("limit", "limit must be non-negative")),
        }
    }
}

pub use meshlens_model::time::{now_ms, parse_time};

/// Prometheus's min and max API times (years 1 and 9999), used when start or end is absent.
pub const MIN_TIME: i64 = -62_135_596_800_000;
pub const MAX_TIME: i64 = 253_402_300_799_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1435781451.781"), Some(1_435_781_451_781));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Some(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51+02:00"),
            Some(1_435_781_451_000)
        );
        assert_eq!(parse_time("nope"), None);
    }
}
