//! Wall-clock times as pidcap prints them everywhere (the CLI's lines,
//! `lib`, the UI's packet list and library): the C library's local zone (so
//! `TZ` is respected) read in one place, and dates computed from it with no
//! further calls into libc.

/// Seconds east of UTC in the local zone at the instant `secs` (since the
/// epoch); 0 when the C library cannot say.
pub fn utc_offset(secs: u64) -> i64 {
    let t = libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX);
    // SAFETY: `tm` is plain data that localtime_r fills; both pointers are
    // valid for the call, and localtime_r (unlike localtime) keeps no
    // pointer to them.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    }
}

/// `unix_ns` shifted by `offset` seconds: a wall clock, still counted from the epoch.
pub fn shifted_ns(unix_ns: u64, offset: i64) -> u64 {
    (i128::from(unix_ns) + i128::from(offset) * 1_000_000_000).clamp(0, i128::from(u64::MAX)) as u64
}

/// `unix_ns` on the local wall clock (still counted from the epoch).
pub fn local_wall_ns(unix_ns: u64) -> u64 {
    shifted_ns(unix_ns, utc_offset(unix_ns / 1_000_000_000))
}

/// `HH:MM:SS.micros` of a wall clock.
pub fn clock(wall_ns: u64) -> String {
    let secs = wall_ns / 1_000_000_000;
    let micros = (wall_ns % 1_000_000_000) / 1_000;
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}.{:06}", day / 3600, day % 3600 / 60, day % 60, micros)
}

/// The civil date (year, month, day) of a wall clock's day.
pub fn civil_date(wall_ns: u64) -> (i64, i64, i64) {
    // Days to a civil date (Howard Hinnant's days_from_civil, inverted).
    let days = (wall_ns / 1_000_000_000 / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `YYYY-MM-DD HH:MM:SS.micros` of a wall clock.
pub fn date_time(wall_ns: u64) -> String {
    let (y, m, d) = civil_date(wall_ns);
    format!("{y:04}-{m:02}-{d:02} {}", clock(wall_ns))
}

/// `YYYY-MM-DD HH:MM:SS` of a wall clock (whole seconds).
pub fn date_time_secs(wall_ns: u64) -> String {
    let mut s = date_time(wall_ns);
    s.truncate(s.len() - 7);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_clocks_of_a_wall_clock() {
        // 2024-02-29 23:59:59.123456 UTC, a leap day.
        let ns = 1_709_251_199_123_456_000;
        assert_eq!(date_time(ns), "2024-02-29 23:59:59.123456");
        assert_eq!(date_time_secs(ns), "2024-02-29 23:59:59");
        assert_eq!(clock(shifted_ns(ns, 3600)), "00:59:59.123456");
        assert_eq!(civil_date(shifted_ns(ns, 3600)), (2024, 3, 1));
        assert_eq!(date_time(0), "1970-01-01 00:00:00.000000");
        assert_eq!(shifted_ns(5, -10), 0);
    }
}
