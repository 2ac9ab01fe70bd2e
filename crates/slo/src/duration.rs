//! Prometheus duration strings (`30d`, `1h30m`, `300ms`): parsed for the SLO file by
//! meshlens-model, and printed back for rule names, range selectors and `for` clauses.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {0:?}: expected numbers with units ms, s, m, h, d, w, y, largest first (e.g. 30d, 1h30m, 300ms)")]
    Syntax(String),
    #[error("duration {0:?} is too long")]
    Overflow(String),
}

/// Parses Prometheus's duration syntax (surrounding blanks ignored): each unit at most once,
/// largest first; `0` alone is zero. No fractions, as in Prometheus.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    meshlens_model::parse_duration(s).map_err(|e| match e {
        meshlens_model::DurationError::Empty => DurationError::Empty,
        meshlens_model::DurationError::Invalid(_) => DurationError::Syntax(s.to_string()),
        meshlens_model::DurationError::OutOfRange => DurationError::Overflow(s.to_string()),
    })
}

/// Prints a duration with days as the largest unit (`30d`, not Prometheus's `4w2d`), so
/// rule names read like the SRE workbook's windows. Sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    meshlens_model::format_duration_days(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_syntax() {
        let ms = |v| Duration::from_millis(v);
        assert_eq!(parse_duration("30d").unwrap(), ms(30 * 86_400_000));
        assert_eq!(parse_duration(" 1h30m ").unwrap(), ms(5_400_000));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn refuses_bad_syntax() {
        assert_eq!(parse_duration(" "), Err(DurationError::Empty));
        for bad in [
            "d", "30", "30x", "1m1h", "1h1h", "1.5h", "-1h", "1 h", "5mm",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError::Syntax(bad.into())),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("999999999999y"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formats_with_days_as_largest_unit() {
        let f = |s| format_duration(parse_duration(s).unwrap());
        assert_eq!(f("30d"), "30d");
        assert_eq!(f("4w"), "28d");
        assert_eq!(f("90m"), "1h30m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(180_000)), "2d2h");
    }
}
