//! Timestamps as Unix nanoseconds, and the ISO-8601 / RFC 3339 parsing and
//! formatting the Telemetry API and the runtimes' log formats need.
//!
//! Lambda writes times like `2025-03-04T10:15:30.123Z`; runtimes add their own
//! variants (microseconds from Ruby, seconds only from Python's JSON logger,
//! offsets instead of `Z`). Parsing is hand-written and allocation-free so the
//! hot path (one call per log line) stays cheap and no date crate is pulled in.

/// Nanoseconds since the Unix epoch (UTC).
pub type UnixNanos = u64;

/// Parses an RFC 3339 / ISO-8601 timestamp: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM|±HHMM)`.
/// A space is accepted instead of `T`, and a missing zone is taken as UTC (the
/// runtimes log in UTC). Returns `None` for anything else, including
/// out-of-range fields, so callers can fall back to another time.
pub fn parse_rfc3339(s: &str) -> Option<UnixNanos> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let year = digits(b, 0, 4)? as i64;
    if b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b't' && b[10] != b' ') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if i < b.len() && (b[i] == b'.' || b[i] == b',') {
        i += 1;
        let start = i;
        let mut scale: u64 = 100_000_000;
        while i < b.len() && b[i].is_ascii_digit() {
            nanos += u64::from(b[i] - b'0') * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_secs: i64 = if i == b.len() {
        0
    } else {
        match b[i] {
            b'Z' | b'z' if i + 1 == b.len() => 0,
            sign @ (b'+' | b'-') => {
                let rest = &b[i + 1..];
                let (oh, om) = match rest.len() {
                    5 if rest[2] == b':' => (digits(rest, 0, 2)?, digits(rest, 3, 2)?),
                    4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
                    2 => (digits(rest, 0, 2)?, 0),
                    _ => return None,
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                let off = i64::from(oh * 3600 + om * 60);
                if sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return None,
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    if secs < 0 {
        return None;
    }
    (secs as u64).checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Formats Unix nanoseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (milliseconds, UTC).
pub fn format_rfc3339_millis(t: UnixNanos) -> String {
    let secs = (t / 1_000_000_000) as i64;
    let millis = (t / 1_000_000) % 1000;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// The current wall-clock time. Only the edges of the system call this (the
/// receiver stamps observed times); mapping itself never reads the clock.
pub fn now() -> UnixNanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Milliseconds (as the Telemetry API's `durationMs` doubles) to nanoseconds,
/// rounded; negative and non-finite values become 0.
pub fn millis_f64_to_nanos(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        (ms * 1_000_000.0).round() as u64
    } else {
        0
    }
}

/// An HTTP date (RFC 9110 §5.6.7) as Unix seconds: the IMF-fixdate
/// `Sun, 06 Nov 1994 08:49:37 GMT`, and the obsolete RFC 850
/// `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994`
/// forms, which recipients must accept.
pub fn parse_http_date(s: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = |m: &str| {
        MONTHS
            .iter()
            .position(|x| x.eq_ignore_ascii_case(m))
            .map(|i| i as u32 + 1)
    };
    let hms = |t: &str| -> Option<(u32, u32, u32)> {
        let mut it = t.split(':').map(|p| p.parse::<u32>().ok());
        let (h, m, s) = (it.next()??, it.next()??, it.next()??);
        (h < 24 && m < 60 && s < 61 && it.next().is_none()).then_some((h, m, s))
    };
    let f: Vec<&str> = s.split_whitespace().collect();
    let (year, mon, day, (h, m, sec)) = match f.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, mo, y, t, "GMT"] if wd.ends_with(',') => {
            (y.parse::<i64>().ok()?, month(mo)?, d.parse().ok()?, hms(t)?)
        }
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [wd, dmy, t, "GMT"] if wd.ends_with(',') => {
            let mut p = dmy.split('-');
            let (d, mo, y) = (p.next()?, p.next()?, p.next()?);
            let y: i64 = y.parse().ok()?;
            // Two-digit years: 00-69 are 2000-2069, 70-99 are 1970-1999.
            let y = if y < 100 {
                if y < 70 {
                    2000 + y
                } else {
                    1900 + y
                }
            } else {
                y
            };
            (y, month(mo)?, d.parse().ok()?, hms(t)?)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [_, mo, d, t, y] => (y.parse().ok()?, month(mo)?, d.parse().ok()?, hms(t)?),
        _ => return None,
    };
    if !(1970..=9999).contains(&year) || !(1..=days_in_month(year, mon)).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, mon, day);
    u64::try_from(days * 86_400 + i64::from(h * 3600 + m * 60 + sec)).ok()
}

fn digits(b: &[u8], start: usize, len: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(start..start + len)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

// Howard Hinnant's days-from-civil algorithm (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lambda_times() {
        // 2025-03-04T10:15:30Z = 1741083330 (checked with `date -u -d @1741083330`).
        assert_eq!(
            parse_rfc3339("2025-03-04T10:15:30.123Z"),
            Some(1_741_083_330_123_000_000)
        );
        assert_eq!(
            parse_rfc3339("2025-03-04T10:15:30Z"),
            Some(1_741_083_330_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2025-03-04T10:15:30.689856"),
            Some(1_741_083_330_689_856_000)
        );
        assert_eq!(
            parse_rfc3339("2025-03-04T12:15:30.5+02:00"),
            Some(1_741_083_330_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2025-03-04 10:15:30,250-0100"),
            Some(1_741_086_930_250_000_000)
        );
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "",
            "2022-08-02T12:01:23:521Z",
            "2025-13-01T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "2025-03-04T24:00:00Z",
            "2025-03-04T10:15:30.Z",
            "2025-03-04T10:15:30Zjunk",
            "not a time at all",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_dates() {
        // 1994-11-06T08:49:37Z in each form RFC 9110 names.
        for d in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(d), Some(784_111_777), "{d}");
        }
        for bad in [
            "",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:00:00 GMT",
            "tomorrow",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_round_trip() {
        let t = 1_741_083_330_123_000_000;
        assert_eq!(format_rfc3339_millis(t), "2025-03-04T10:15:30.123Z");
        assert_eq!(parse_rfc3339(&format_rfc3339_millis(t)), Some(t));
        assert_eq!(
            format_rfc3339_millis(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn duration_conversion() {
        assert_eq!(millis_f64_to_nanos(548.311), 548_311_000);
        assert_eq!(millis_f64_to_nanos(-1.0), 0);
        assert_eq!(millis_f64_to_nanos(f64::NAN), 0);
    }
}
