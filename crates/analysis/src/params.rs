//! Request parameters shared by the HTTP API and callers: windows (`5m`, `1h`), end times
//! (Unix seconds or RFC 3339), the error that names the parameter at fault, and the
//! query-string form of a graph or statistics request.

use std::collections::HashMap;

use crate::graph::{GraphQuery, GraphSource, GraphType};
use crate::stats::StatsQuery;

/// A bad request parameter; the message names it, so a 400 says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameter {name:?}: {reason}")]
pub struct ParamError {
    pub name: String,
    pub reason: String,
}

impl ParamError {
    pub fn new(name: &str, reason: impl Into<String>) -> Self {
        ParamError {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

/// The longest window accepted: a graph or statistic over more than 30 days is a mistake.
pub const MAX_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

/// A window such as `5m`, `1h30m` or `300` (seconds), in milliseconds; positive and at most
/// [`MAX_WINDOW_MS`].
pub fn parse_window(name: &str, s: &str) -> Result<i64, ParamError> {
    let ms = meshlens_promql::parse_duration(s.trim())
        .map_err(|_| ParamError::new(name, format!("{s:?} is not a duration like 5m or 1h")))?;
    if ms <= 0 {
        return Err(ParamError::new(name, "must be positive"));
    }
    if ms > MAX_WINDOW_MS {
        return Err(ParamError::new(name, "must be at most 30d"));
    }
    Ok(ms)
}

/// An end time: Unix seconds (may be fractional) or RFC 3339; milliseconds.
pub fn parse_end(name: &str, s: &str) -> Result<i64, ParamError> {
    match meshlens_model::time::parse_time(s.trim()) {
        Some(ms) if ms > 0 && ms < 1 << 52 => Ok(ms),
        _ => Err(ParamError::new(
            name,
            format!("{s:?} is not a Unix time in seconds or an RFC 3339 time"),
        )),
    }
}

/// Query-string parameters with the checks every endpoint shares.
pub struct Params<'a> {
    map: &'a HashMap<String, String>,
}

impl<'a> Params<'a> {
    /// Refuses parameters the endpoint does not know, so a misspelt `namepsace` is not
    /// silently ignored.
    pub fn new(map: &'a HashMap<String, String>, known: &[&str]) -> Result<Self, ParamError> {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        if let Some(k) = keys.into_iter().find(|k| !known.contains(&k.as_str())) {
            return Err(ParamError::new(
                k,
                format!("unknown parameter; known: {}", known.join(", ")),
            ));
        }
        Ok(Params { map })
    }

    /// A non-empty value, or `None` when absent or empty.
    pub fn opt(&self, name: &str) -> Option<&'a str> {
        self.map
            .get(name)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    pub fn window(&self, name: &str, default_ms: i64) -> Result<i64, ParamError> {
        self.opt(name)
            .map_or(Ok(default_ms), |s| parse_window(name, s))
    }

    pub fn end(&self, name: &str, now_ms: i64) -> Result<i64, ParamError> {
        self.opt(name).map_or(Ok(now_ms), |s| parse_end(name, s))
    }
}

/// Default windows: Kiali's graph default (5 minutes) and an hour for statistics.
const GRAPH_WINDOW_MS: i64 = 5 * 60_000;
const STATS_WINDOW_MS: i64 = 3_600_000;

/// A graph request from its query string; unknown parameters are refused.
pub fn graph_query(p: &HashMap<String, String>, now_ms: i64) -> Result<GraphQuery, ParamError> {
    let known = [
        "type",
        "window",
        "end",
        "cluster",
        "namespace",
        "focus",
        "source",
    ];
    let p = Params::new(p, &known)?;
    let graph_type = match p.opt("type") {
        None => GraphType::Workload,
        Some(t) => GraphType::parse(t).ok_or_else(|| {
            ParamError::new(
                "type",
                format!("{t:?}: use workload, app, versionedApp or service"),
            )
        })?,
    };
    let source = match p.opt("source") {
        None => GraphSource::Metrics,
        Some(s) => GraphSource::parse(s).ok_or_else(|| {
            ParamError::new("source", format!("{s:?}: use metrics, traces or both"))
        })?,
    };
    Ok(GraphQuery {
        graph_type,
        window_ms: p.window("window", GRAPH_WINDOW_MS)?,
        end_ms: p.end("end", now_ms)?,
        cluster: p.opt("cluster").map(str::to_string),
        namespace: p.opt("namespace").map(str::to_string),
        focus: p.opt("focus").map(str::to_string),
        source,
    })
}

/// A statistics request from its query string; unknown parameters are refused.
pub fn stats_query(p: &HashMap<String, String>, now_ms: i64) -> Result<StatsQuery, ParamError> {
    let p = Params::new(p, &["window", "end", "cluster", "service"])?;
    Ok(StatsQuery {
        window_ms: p.window("window", STATS_WINDOW_MS)?,
        end_ms: p.end("end", now_ms)?,
        cluster: p.opt("cluster").map(str::to_string),
        service: p.opt("service").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_ends() {
        assert_eq!(parse_window("window", "5m"), Ok(300_000));
        assert_eq!(parse_window("window", "1h"), Ok(3_600_000));
        assert_eq!(parse_window("window", "90"), Ok(90_000));
        assert_eq!(parse_window("window", "0s").unwrap_err().name, "window");
        assert!(parse_window("window", "five").is_err());
        assert!(parse_window("window", "-5").is_err());
        assert!(parse_window("window", "400d").is_err());
        assert_eq!(parse_end("end", "1700000000"), Ok(1_700_000_000_000));
        assert!(parse_end("end", "yesterday").is_err());
        assert!(parse_end("end", "NaN").is_err());
    }
}
