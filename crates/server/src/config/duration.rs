//! Config durations (`1h30m`, `15s`, `100ms`, `1d`, `1w`, `1y`): meshlens-model's
//! Prometheus notation, with surrounding blanks ignored and errors as text for the config
//! error's detail.

use std::time::Duration;

/// Prints like Prometheus: `1m30s`, `15s`, `90d` (years and weeks only when exact).
pub use meshlens_model::format_duration;

/// Parses a config or flag duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    meshlens_model::parse_duration(s).map_err(|e| match e {
        meshlens_model::DurationError::Empty => "empty duration".into(),
        meshlens_model::DurationError::Invalid(_) => format!("invalid duration {s:?}"),
        meshlens_model::DurationError::OutOfRange => format!("duration {s:?} too large"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("1m1h").is_err());
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_duration(Duration::from_secs(8 * 86_400)), "8d");
    }
}
