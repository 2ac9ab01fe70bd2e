//! HTTP dates for `Last-Modified`, in the three forms Go's `http.ParseTime` accepts:
//! IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`)
//! and asctime (`Sun Nov  6 08:49:37 1994`).

use meshlens_model::time::days_from_civil;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Unix seconds, or `None` when the value is in none of the three forms.
pub(crate) fn parse_http_date(s: &str) -> Option<i64> {
    let (weekday, rest) = s.split_once(' ')?;
    if let Some(day_name) = weekday.strip_suffix(',') {
        if !day_name.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        let parts: Vec<&str> = rest.split(' ').collect();
        return match parts.as_slice() {
            // IMF-fixdate
            [day, mon, year, time, "GMT"] if day.len() == 2 && year.len() == 4 => {
                build(year.parse().ok()?, month(mon)?, num(day)?, time)
            }
            // RFC 850
            [date, time, "GMT"] => {
                let mut d = date.split('-');
                let (day, mon, yy) = (d.next()?, d.next()?, d.next()?);
                if d.next().is_some() || day.len() != 2 || yy.len() != 2 {
                    return None;
                }
                let yy: i64 = yy.parse().ok()?;
                let year = if yy >= 69 { 1900 + yy } else { 2000 + yy };
                build(year, month(mon)?, num(day)?, time)
            }
            _ => None,
        };
    }
    // asctime: the day is space-padded, so split on runs of spaces.
    let parts: Vec<&str> = rest.split(' ').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [mon, day, time, year] if year.len() == 4 && day.len() <= 2 => {
            build(year.parse().ok()?, month(mon)?, num(day)?, time)
        }
        _ => None,
    }
}

fn month(m: &str) -> Option<u32> {
    MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1)
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn build(year: i64, month: u32, day: u32, time: &str) -> Option<i64> {
    let mut t = time.split(':');
    let (h, m, s) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some() || h.len() != 2 || m.len() != 2 || s.len() != 2 {
        return None;
    }
    let (h, m, s) = (num(h)?, num(m)?, num(s)?);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + i64::from(h * 3600 + m * 60 + s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_forms_agree() {
        let want = Some(784_111_777);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), want);
    }

    #[test]
    fn refuses_others() {
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "1994-11-06T08:49:37Z",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }
}
