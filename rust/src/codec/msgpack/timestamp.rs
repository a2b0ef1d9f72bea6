//! The msgpack timestamp extension (type -1) and the calendar arithmetic
//! behind it, kept free of Python so `cargo test` covers it.
//!
//! Width choice matches `msgpack.packb(datetime=True)`: 32-bit when there
//! are no nanoseconds and the seconds fit in `u32`, 64-bit when the seconds
//! are non-negative and fit in 34 bits, 96-bit otherwise.

/// The extension type code of timestamps.
pub const EXT_CODE: i8 = -1;

/// The payload of a timestamp extension for `seconds` since the epoch plus `nanos`.
pub fn encode(seconds: i64, nanos: u32) -> Vec<u8> {
    if seconds >> 34 == 0 {
        let data64 = (u64::from(nanos) << 34) | seconds as u64;
        if data64 & 0xffff_ffff_0000_0000 == 0 {
            return (data64 as u32).to_be_bytes().to_vec();
        }
        return data64.to_be_bytes().to_vec();
    }
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&nanos.to_be_bytes());
    out.extend_from_slice(&seconds.to_be_bytes());
    out
}

/// Seconds and nanoseconds from a timestamp payload, or why it is invalid.
pub fn decode(data: &[u8]) -> Result<(i64, u32), &'static str> {
    let (seconds, nanos) = match data.len() {
        4 => (i64::from(u32::from_be_bytes(data.try_into().unwrap())), 0),
        8 => {
            let v = u64::from_be_bytes(data.try_into().unwrap());
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(data[4..].try_into().unwrap()),
            u32::from_be_bytes(data[..4].try_into().unwrap()),
        ),
        _ => return Err("timestamp extension must carry 4, 8 or 12 bytes"),
    };
    if nanos >= 1_000_000_000 {
        return Err("timestamp nanoseconds out of range");
    }
    Ok((seconds, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01, as (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A UTC civil time split out of epoch seconds.
#[derive(Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

pub fn civil_from_seconds(seconds: i64) -> Civil {
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let rem = seconds.rem_euclid(86_400) as u32;
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_match_the_msgpack_package() {
        assert_eq!(encode(0, 0), [0, 0, 0, 0]);
        assert_eq!(encode(i64::from(u32::MAX), 0).len(), 4);
        assert_eq!(encode(1, 1).len(), 8);
        assert_eq!(encode(1 << 32, 0).len(), 8);
        assert_eq!(encode((1 << 34) - 1, 999_999_999).len(), 8);
        assert_eq!(encode(1 << 34, 0).len(), 12);
        assert_eq!(encode(-1, 0).len(), 12);
        for (s, n) in [(0, 0), (5, 7), (1 << 33, 999_999_999), (-62_135_596_800, 5)] {
            assert_eq!(decode(&encode(s, n)), Ok((s, n)));
        }
        assert!(decode(&[0; 5]).is_err());
        assert!(decode(&encode(1, 0)[..3]).is_err());
    }

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        for days in [-719_162, -1, 0, 59, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(
            civil_from_seconds(-1),
            Civil {
                year: 1969,
                month: 12,
                day: 31,
                hour: 23,
                minute: 59,
                second: 59
            }
        );
    }
}
