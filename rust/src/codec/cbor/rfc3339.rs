//! RFC 3339 date-time strings (CBOR tag 0) and full dates (tag 1004), pure Rust.

/// The fields of an RFC 3339 date-time; `offset` is seconds east of UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub microsecond: u32,
    pub offset: i32,
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |acc, &d| acc * 10 + u32::from(d - b'0')))
}

/// `YYYY-MM-DD`; ranges are checked by whoever builds the date.
pub fn parse_date(s: &str) -> Option<(i32, u8, u8)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    Some((
        digits(&b[0..4])? as i32,
        digits(&b[5..7])? as u8,
        digits(&b[8..10])? as u8,
    ))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`; `T` may be a space and
/// fractions past microseconds are truncated (as cbor2 does).
pub fn parse_datetime(s: &str) -> Option<DateTime> {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = parse_date(s.get(..10)?)?;
    let hour = digits(&b[11..13])? as u8;
    let minute = digits(&b[14..16])? as u8;
    let second = digits(&b[17..19])? as u8;
    let mut rest = &b[19..];
    let mut microsecond = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let kept = &frac[..n.min(6)];
        microsecond = digits(kept)? * 10u32.pow(6 - kept.len() as u32);
        rest = &frac[n..];
    }
    let offset = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])? as i32;
            let m = digits(&[*m1, *m2])? as i32;
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    Some(DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        microsecond,
        offset,
    })
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse() {
        let dt = parse_datetime("2013-03-21T20:04:00Z").unwrap();
        assert_eq!(
            (dt.year, dt.month, dt.day, dt.hour, dt.offset),
            (2013, 3, 21, 20, 0)
        );
        let dt = parse_datetime("2013-03-21 20:04:00.1234567+02:00").unwrap();
        assert_eq!((dt.microsecond, dt.offset), (123_456, 7200));
        let dt = parse_datetime("2013-03-21T20:04:00.5-01:30").unwrap();
        assert_eq!((dt.microsecond, dt.offset), (500_000, -5400));
        for bad in [
            "2013-03-21T20:04:00",
            "2013-03-21t20:04:00z",
            "2013-03-21T20:04:00.Z",
            "2013-03-21T20:04:00+2:00",
            "2013-03-21T20:04:00+24:00",
            "2013-3-21T20:04:00Z",
            "",
        ] {
            assert!(parse_datetime(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dates_parse() {
        assert_eq!(parse_date("2020-01-02"), Some((2020, 1, 2)));
        assert_eq!(parse_date("2020-1-02"), None);
        assert_eq!(parse_date("２０２０-01-02"), None);
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2020, 1, 2), 18263);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
    }
}
