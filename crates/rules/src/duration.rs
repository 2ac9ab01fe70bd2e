//! Rule-file durations (`for`, `interval`, `keep_firing_for`): meshlens-model's Prometheus
//! notation, with Prometheus's messages as text for the rule-file errors.

use std::time::Duration;

pub use meshlens_model::format_duration;

/// Parses a rule-file duration; the error is Prometheus's message.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    meshlens_model::parse_duration(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_prometheus() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(""), Err("empty duration string".into()));
        assert_eq!(
            parse_duration("1.5m"),
            Err("not a valid duration string: \"1.5m\"".into())
        );
        assert_eq!(
            parse_duration("99999999999999999y"),
            Err("duration out of range".into())
        );
    }
}
