//! The piece of Go's `time` package templates reach: `humanizeTimestamp` prints a
//! `time.Time` (always UTC here) and `toTime` results offer `.Format`, `.Unix` and a few
//! other methods.

use std::fmt;

/// An instant in UTC: seconds since the Unix epoch and nanoseconds within that second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GoTime {
    pub secs: i64,
    pub nanos: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Calendar fields of a [`GoTime`].
struct Civil {
    year: i64,
    month: usize, // 1..=12
    day: i64,
    yday: i64, // 1..=366
    weekday: usize,
    hour: i64,
    min: i64,
    sec: i64,
    nanos: u32,
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

impl GoTime {
    /// Prometheus's `floatToTime`: seconds as a float, truncated to milliseconds (it goes
    /// through `model.Time`), refused when the nanoseconds overflow int64.
    pub fn from_seconds(v: f64) -> Result<GoTime, String> {
        let ts = v * 1e9;
        if ts > i64::MAX as f64 || ts < i64::MIN as f64 {
            return Err(format!(
                "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
                crate::float::format_v(v)
            ));
        }
        let ms = (ts as i64) / 1_000_000;
        let secs = ms.div_euclid(1000);
        let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
        Ok(GoTime { secs, nanos })
    }

    fn civil(&self) -> Civil {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        const CUM: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let month_idx = (month - 1).clamp(0, 11) as usize;
        let leap_extra = i64::from(is_leap(year) && month > 2);
        Civil {
            year,
            month: month_idx + 1,
            day,
            yday: CUM[month_idx] + day + leap_extra,
            weekday: (days + 4).rem_euclid(7) as usize,
            hour: rem / 3600,
            min: rem % 3600 / 60,
            sec: rem % 60,
            nanos: self.nanos,
        }
    }

    pub fn unix_nanos(&self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// Go's `Time.Format` for a UTC time.
    pub fn format(&self, layout: &str) -> String {
        let c = self.civil();
        let mut out = String::new();
        let b = layout.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let rest = &layout[i..];
            let (text, len) = self.chunk(rest, &c);
            if len == 0 {
                let ch = rest.chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            } else {
                out.push_str(&text);
                i += len;
            }
        }
        out
    }

    /// Formats the layout element at the start of `s`; length 0 when it is plain text.
    fn chunk(&self, s: &str, c: &Civil) -> (String, usize) {
        let pad2 = |v: i64| format!("{v:02}");
        let hour12 = if c.hour % 12 == 0 { 12 } else { c.hour % 12 };
        let table: [(&str, String); 33] = [
            ("January", MONTHS[c.month - 1].to_string()),
            ("Jan", MONTHS[c.month - 1][..3].to_string()),
            ("Monday", DAYS[c.weekday].to_string()),
            ("Mon", DAYS[c.weekday][..3].to_string()),
            ("MST", "UTC".to_string()),
            ("2006", format!("{:04}", c.year)),
            ("Z07:00:00", "Z".to_string()),
            ("Z070000", "Z".to_string()),
            ("Z07:00", "Z".to_string()),
            ("Z0700", "Z".to_string()),
            ("Z07", "Z".to_string()),
            ("-07:00:00", "+00:00:00".to_string()),
            ("-070000", "+000000".to_string()),
            ("-07:00", "+00:00".to_string()),
            ("-0700", "+0000".to_string()),
            ("-07", "+00".to_string()),
            ("002", format!("{:03}", c.yday)),
            ("__2", format!("{:>3}", c.yday)),
            ("_2", format!("{:>2}", c.day)),
            ("01", pad2(c.month as i64)),
            ("02", pad2(c.day)),
            ("03", pad2(hour12)),
            ("04", pad2(c.min)),
            ("05", pad2(c.sec)),
            ("06", pad2(c.year.rem_euclid(100))),
            ("15", pad2(c.hour)),
            ("PM", if c.hour >= 12 { "PM" } else { "AM" }.to_string()),
            ("pm", if c.hour >= 12 { "pm" } else { "am" }.to_string()),
            ("1", (c.month).to_string()),
            ("2", c.day.to_string()),
            ("3", hour12.to_string()),
            ("4", c.min.to_string()),
            ("5", c.sec.to_string()),
        ];
        if let Some(frac) = fraction(s, c.nanos) {
            return frac;
        }
        for (pat, text) in table {
            if s.starts_with(pat) {
                return (text, pat.len());
            }
        }
        (String::new(), 0)
    }
}

/// `.000`, `,999`…: fractional seconds, fixed (0) or with trailing zeros dropped (9).
fn fraction(s: &str, nanos: u32) -> Option<(String, usize)> {
    let b = s.as_bytes();
    if b.len() < 2 || !(b[0] == b'.' || b[0] == b',') || !(b[1] == b'0' || b[1] == b'9') {
        return None;
    }
    let ch = b[1];
    let n = b[1..].iter().take_while(|&&x| x == ch).count();
    if b.get(1 + n).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let digits = format!("{nanos:09}");
    let mut part = digits[..n.min(9)].to_string();
    if ch == b'9' {
        while part.ends_with('0') {
            part.pop();
        }
        if part.is_empty() {
            return Some((String::new(), 1 + n));
        }
    }
    Some((format!("{}{part}", b[0] as char), 1 + n))
}

impl fmt::Display for GoTime {
    /// Go's `Time.String()` for a UTC time.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format("2006-01-02 15:04:05.999999999 -0700 MST"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: f64) -> GoTime {
        GoTime::from_seconds(v).unwrap_or(GoTime { secs: 0, nanos: 0 })
    }

    #[test]
    fn strings_like_prometheus() {
        // Expected values from Prometheus's template tests (humanizeTimestamp).
        assert_eq!(t(0.0).to_string(), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(t(-1.0).to_string(), "1969-12-31 23:59:59 +0000 UTC");
        assert_eq!(t(1234567.0).to_string(), "1970-01-15 06:56:07 +0000 UTC");
        assert_eq!(t(9223372036.0).to_string(), "2262-04-11 23:47:16 +0000 UTC");
        assert_eq!(
            t(1435065584.128).to_string(),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(t(1657155181.0).to_string(), "2022-07-07 00:53:01 +0000 UTC");
    }

    #[test]
    fn overflow_is_an_error() {
        let err = GoTime::from_seconds(-9.223372036854776e18).err();
        assert_eq!(
            err.as_deref(),
            Some("-9.223372036854776e+18 cannot be represented as a nanoseconds timestamp since it overflows int64")
        );
    }

    #[test]
    fn layouts() {
        let x = t(1435065584.128);
        assert_eq!(x.format("2006"), "2015");
        assert_eq!(
            x.format("Mon Jan _2 15:04:05.000 MST 2006"),
            "Tue Jun 23 13:19:44.128 UTC 2015"
        );
        assert_eq!(
            x.format("02/01/06 3:4:5PM Z07:00 002"),
            "23/06/15 1:19:44PM Z 174"
        );
        assert_eq!(
            t(951782400.0).format("2006-01-02 Monday"),
            "2000-02-29 Tuesday"
        );
    }
}
