//! UTC days, as the schema partitions by them.

/// Milliseconds per day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// The last day meshlens stores, 2105-12-31: ClickHouse 18.16 reads later `Date` literals
/// as 0000-00-00 (its date tables end in 2105, though the type would hold until 2149), and
/// the `DateTime` that partitions samples ends in February 2106.
pub const MAX_DAY: i64 = 49_672;

/// The UTC day of a millisecond timestamp, when meshlens can store it (1970-01-01 to
/// 2105-12-31).
pub fn day_of_ms(t: i64) -> Option<u16> {
    let day = t.div_euclid(MS_PER_DAY);
    if (0..=MAX_DAY).contains(&day) {
        Some(day as u16)
    } else {
        None
    }
}

/// The day clamped into what a `Date` holds, for range bounds.
pub fn clamp_day(t: i64) -> u16 {
    t.div_euclid(MS_PER_DAY).clamp(0, MAX_DAY) as u16
}

/// (year, month, day) of a day number since 1970-01-01 (proleptic Gregorian), by the
/// era-based civil calendar arithmetic.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A day as a `Date` literal's text, `YYYY-MM-DD` (time-zone free, unlike a number cast).
pub fn date_string(day: u16) -> String {
    let (y, m, d) = civil(i64::from(day));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A day as ClickHouse names a `Date` partition, `YYYYMMDD`.
pub fn partition_id(day: i64) -> String {
    let (y, m, d) = civil(day);
    format!("{y:04}{m:02}{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates() {
        assert_eq!(date_string(0), "1970-01-01");
        assert_eq!(day_of_ms(1_764_806_400_123), Some(20426));
        assert_eq!(date_string(20426), "2025-12-04");
        assert_eq!(partition_id(20426), "20251204");
        assert_eq!(date_string(u16::MAX), "2149-06-06");
        assert_eq!(date_string(MAX_DAY as u16), "2105-12-31");
        assert_eq!(day_of_ms((MAX_DAY + 1) * MS_PER_DAY), None);
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(day_of_ms(-1), None);
        assert_eq!(day_of_ms(i64::MAX), None);
        assert_eq!(
            (clamp_day(i64::MIN), clamp_day(i64::MAX)),
            (0, MAX_DAY as u16)
        );
    }
}
