//! Prometheus's duration syntax (`1h30m`, `15s`, `500ms`), so probe intervals read like the
//! scrape intervals next to them in the same config; parsed by meshlens-model.

use std::time::Duration;

/// Parses a probe interval or timeout; the error is text for the config error's detail.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    meshlens_model::parse_duration(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_prometheus_forms_only() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "15", "1.5s", "30s1m", "99999999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
