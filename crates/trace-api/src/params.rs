//! Query-string parameters with errors that name the parameter.

use axum::http::Uri;

/// Default for `TraceApiState::max_search_window_ms`: one week.
pub const DEFAULT_MAX_SEARCH_WINDOW_MS: i64 = 7 * 86_400_000;
/// Default for `TraceApiState::max_search_limit`.
pub const DEFAULT_MAX_SEARCH_LIMIT: usize = 10_000;

impl crate::TraceApiState {
    pub(crate) fn search_bounds(&self) -> SearchBounds {
        SearchBounds {
            max_window_ms: self.max_search_window_ms,
            max_limit: self.max_search_limit,
        }
    }
}

/// How far one search may reach. Zipkin and Jaeger set no maximum, so requests past these
/// bounds are clamped rather than refused: clients that ask for a wide range or a large
/// limit keep working and get the newest traces.
#[derive(Clone, Copy, Debug)]
pub struct SearchBounds {
    pub max_window_ms: i64,
    pub max_limit: usize,
}

impl SearchBounds {
    /// A lookback (ms, positive) narrowed to the widest allowed window.
    pub fn lookback(&self, lookback_ms: i64) -> i64 {
        lookback_ms.clamp(1, self.max_window_ms.max(1))
    }

    /// A limit (positive) lowered to the largest allowed.
    pub fn limit(&self, limit: i64) -> usize {
        usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .clamp(1, self.max_limit.max(1))
    }
}

pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn from_uri(uri: &Uri) -> Query {
        Query(
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last non-empty value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("parameter {name} is required"))
    }

    /// A parameter that must be given, though it may be empty.
    pub fn present(&self, name: &str) -> Result<&str, String> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("parameter {name} is required"))
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, String> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("parameter {name}: {v:?} is not an integer"))
            })
            .transpose()
    }

    /// A non-negative integer, or absent.
    pub fn non_negative(&self, name: &str) -> Result<Option<i64>, String> {
        match self.int(name)? {
            Some(v) if v < 0 => Err(format!("parameter {name} must not be negative, not {v}")),
            v => Ok(v),
        }
    }

    /// A positive integer, or absent.
    pub fn positive(&self, name: &str) -> Result<Option<i64>, String> {
        match self.int(name)? {
            Some(v) if v <= 0 => Err(format!(
                "parameter {name} must be greater than zero, not {v}"
            )),
            v => Ok(v),
        }
    }
}

/// Parses a Go-style duration (`1.5s`, `100ms`, `2h45m`, `300us`) into microseconds.
pub fn go_duration_us(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(v) = s.parse::<u64>() {
        // A bare number is taken as microseconds, as Jaeger's UI sends.
        return Some(v);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 0.001,
            "us" | "µs" | "μs" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            "m" => 60e6,
            "h" => 3600e6,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    Some(total.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_clamp_window_and_limit() {
        let b = SearchBounds {
            max_window_ms: 1000,
            max_limit: 5,
        };
        assert_eq!(b.lookback(10), 10);
        assert_eq!(b.lookback(i64::MAX), 1000);
        assert_eq!(b.lookback(0), 1);
        assert_eq!(b.limit(3), 3);
        assert_eq!(b.limit(i64::MAX), 5);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_us("1.5s"), Some(1_500_000));
        assert_eq!(go_duration_us("100ms"), Some(100_000));
        assert_eq!(go_duration_us("2h45m"), Some(9_900_000_000));
        assert_eq!(go_duration_us("300us"), Some(300));
        assert_eq!(go_duration_us("12"), Some(12));
        assert_eq!(go_duration_us("1x"), None);
        assert_eq!(go_duration_us("ms"), None);
    }
}
