//! Epoch-float date-times (tag 1 holding a float): which Python value holds
//! one exactly. Pure Rust; `tags` builds the value.
//!
//! A float of seconds is what `datetime.timestamp()` writes (microseconds)
//! and what a `Timestamp` with nanoseconds becomes on the wire. Rounded to
//! a datetime's microseconds, the second kind lost its nanoseconds and came
//! back as different bytes; it now decodes to a `Timestamp` when that holds
//! it and a datetime does not.

/// Seconds beyond which (2^53 microseconds, about 285 years from 1970) the
/// encoder's microsecond division has an inexact operand and a double's
/// spacing is over a microsecond: there the float stays a datetime.
const EXACT_SPAN: f64 = 9_007_199_254.0;

/// The `(seconds, nanoseconds)` of the epoch float `secs` when a datetime
/// cannot hold it exactly but a `Timestamp` can: the float the encoder
/// writes for neither the datetime `datetime.fromtimestamp` makes of it
/// (microseconds, rounded half to even) is `secs`, and the one it writes for
/// the nearest nanosecond is. None otherwise (a datetime then, as before).
pub fn sub_microsecond(secs: f64) -> Option<(i64, u32)> {
    if secs.is_nan() || secs.abs() >= EXACT_SPAN {
        return None;
    }
    // As CPython splits it: the integer part, then the fraction in microseconds.
    let int = secs.trunc();
    let micros = int as i64 * 1_000_000 + ((secs - int) * 1e6).round_ties_even() as i64;
    // The encoder writes a datetime as its total microseconds / 10^6.
    // Compared as bits: the same float, not merely an equal one.
    if (micros as f64 / 1e6).to_bits() == secs.to_bits() {
        return None;
    }
    let floor = secs.floor();
    let mut whole = floor as i64;
    let mut nanos = ((secs - floor) * 1e9).round_ties_even() as i64;
    if nanos >= 1_000_000_000 {
        whole += 1;
        nanos -= 1_000_000_000;
    }
    // The encoder writes a Timestamp as seconds + nanoseconds / 10^9.
    let nanos = u32::try_from(nanos).ok()?;
    ((whole as f64 + f64::from(nanos) / 1e9).to_bits() == secs.to_bits()).then_some((whole, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(whole: i64, nanos: u32) -> f64 {
        whole as f64 + f64::from(nanos) / 1e9
    }

    #[test]
    fn microsecond_floats_stay_datetimes() {
        for secs in [
            0.0,
            1.0,
            1.5,
            -1.25,
            1_514_862_245.678_901,
            1_733_312_345.123,
            -0.000_001,
        ] {
            assert_eq!(sub_microsecond(secs), None, "{secs}");
        }
    }

    #[test]
    fn nanosecond_timestamps_come_back_exactly() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let whole = (state % 8_000_000_000) as i64 - 1_000_000_000;
            let nanos = (state >> 33) as u32 % 1_000_000_000;
            let secs = written(whole, nanos);
            // Whatever it decodes to is written back as the same float.
            let back = if let Some((w, n)) = sub_microsecond(secs) {
                written(w, n)
            } else {
                let int = secs.trunc();
                let micros = int as i64 * 1_000_000 + ((secs - int) * 1e6).round_ties_even() as i64;
                micros as f64 / 1e6
            };
            assert_eq!(back.to_bits(), secs.to_bits(), "{whole} {nanos}");
        }
        // Today a double is coarser than a nanosecond (238 ns apart): the
        // Timestamp that comes back is the float's, written as the same bytes.
        let sent = written(1_514_862_245, 678_901_234);
        assert_eq!(sub_microsecond(sent), Some((1_514_862_245, 678_901_196)));
        assert_eq!(
            written(1_514_862_245, 678_901_196).to_bits(),
            sent.to_bits()
        );
        // Near the epoch it is finer: the nanoseconds come back as they were.
        assert_eq!(
            sub_microsecond(written(-5, 999_999_999)),
            Some((-5, 999_999_999))
        );
        assert_eq!(sub_microsecond(written(86_400, 5)), Some((86_400, 5)));
    }

    #[test]
    fn far_and_odd_floats_stay_datetimes() {
        for secs in [1e10, -1e10, 253_402_300_799.5, f64::NAN, f64::INFINITY] {
            assert_eq!(sub_microsecond(secs), None, "{secs}");
        }
        // Near the epoch a double is finer than a nanosecond: one that no
        // nanosecond instant writes is left to the datetime (rounded).
        assert_eq!(sub_microsecond(1.000_000_005_1), None);
    }
}
