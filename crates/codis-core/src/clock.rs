//! Wall-clock formatting without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current UTC time as Go prints `time.Time` (`2006-01-02 15:04:05.999999999 +0000 UTC`),
/// the format Codis uses for `start_time`.
pub fn now_string() -> String {
    format_unix(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn format_unix(d: std::time::Duration) -> String {
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}.{:09} +0000 UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_like_go() {
        assert_eq!(format_unix(Duration::from_secs(0)), "1970-01-01 00:00:00.000000000 +0000 UTC");
        assert_eq!(format_unix(Duration::new(1_795_000_000, 5)), "2026-11-18 11:06:40.000000005 +0000 UTC");
        assert_eq!(format_unix(Duration::from_secs(951_782_400)), "2000-02-29 00:00:00.000000000 +0000 UTC");
    }
}
