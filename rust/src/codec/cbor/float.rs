//! IEEE 754 half / single / double conversions for CBOR floats.
//!
//! Pure Rust, no PyO3: the encoder asks for the shortest width that keeps a
//! value exactly (RFC 8949 section 4.2.1), the decoder widens halves.

/// A float as it goes on the wire: the initial byte and its big-endian payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Half(u16),
    Single(u32),
    Double(u64),
}

/// NaN and the infinities always go out as halves: every NaN as the quiet
/// NaN `0x7e00`, which is what cbor2 writes in both of its modes.
pub fn special(x: f64) -> Option<Wire> {
    if x.is_nan() {
        Some(Wire::Half(0x7e00))
    } else if x.is_infinite() {
        Some(Wire::Half(if x > 0.0 { 0x7c00 } else { 0xfc00 }))
    } else {
        None
    }
}

/// The shortest of half, single and double that holds `x` exactly.
pub fn shortest(x: f64) -> Wire {
    if let Some(w) = special(x) {
        return w;
    }
    let single = x as f32;
    if f64::from(single).to_bits() != x.to_bits() {
        return Wire::Double(x.to_bits());
    }
    match f32_to_f16_exact(single) {
        Some(h) => Wire::Half(h),
        None => Wire::Single(single.to_bits()),
    }
}

/// `f` as a half float, if a half holds it exactly (finite values only).
fn f32_to_f16_exact(f: f32) -> Option<u16> {
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if f == 0.0 {
        return Some(sign);
    }
    let exp = ((bits >> 23) & 0xff) as i32 - 127;
    let mant = bits & 0x007f_ffff;
    if exp > 15 {
        return None;
    }
    if exp >= -14 {
        // Normal half: 10 mantissa bits, the low 13 of the single must be zero.
        if mant & 0x1fff != 0 {
            return None;
        }
        return Some(sign | (((exp + 15) as u16) << 10) | (mant >> 13) as u16);
    }
    if exp >= -24 {
        // Subnormal half: value = k * 2^-24 with k < 1024.
        let full = mant | 0x0080_0000;
        let shift = (-exp - 1) as u32;
        if full & ((1 << shift) - 1) != 0 {
            return None;
        }
        return Some(sign | (full >> shift) as u16);
    }
    None
}

/// Widens a half float to a double (exact: every half is a double).
pub fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let mant = f64::from(h & 0x3ff);
    match exp {
        0 => sign * mant * 2f64.powi(-24),
        31 if mant == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + mant / 1024.0) * 2f64.powi(exp - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_width_keeps_the_value() {
        assert_eq!(shortest(0.0), Wire::Half(0x0000));
        assert_eq!(shortest(-0.0), Wire::Half(0x8000));
        assert_eq!(shortest(1.5), Wire::Half(0x3e00));
        assert_eq!(shortest(65504.0), Wire::Half(0x7bff));
        assert_eq!(shortest(5.960_464_477_539_063e-8), Wire::Half(0x0001));
        assert_eq!(shortest(0.000_061_035_156_25), Wire::Half(0x0400));
        assert_eq!(shortest(100_000.0), Wire::Single(0x47c3_5000));
        assert_eq!(
            shortest(3.402_823_466_385_288_6e38),
            Wire::Single(0x7f7f_ffff)
        );
        assert_eq!(shortest(1.1), Wire::Double(1.1f64.to_bits()));
        assert_eq!(shortest(1.0e300), Wire::Double(0x7e37_e43c_8800_759c));
        assert_eq!(shortest(f64::NAN), Wire::Half(0x7e00));
        assert_eq!(shortest(f64::NEG_INFINITY), Wire::Half(0xfc00));
        // 2^-25 is a single but below the smallest half subnormal.
        assert_eq!(shortest(2f64.powi(-25)), Wire::Single(0x3300_0000));
    }

    #[test]
    fn halves_widen_exactly() {
        assert!((half_to_f64(0x3c00) - 1.0).abs() < f64::EPSILON);
        assert!((half_to_f64(0x7bff) - 65504.0).abs() < f64::EPSILON);
        assert!((half_to_f64(0x0001) - 5.960_464_477_539_063e-8).abs() < 1e-20);
        assert!((half_to_f64(0xc400) + 4.0).abs() < f64::EPSILON);
        assert!(half_to_f64(0x7c00).is_infinite());
        assert!(half_to_f64(0x7e00).is_nan());
        assert!(half_to_f64(0x8000).is_sign_negative());
        for h in 0..=u16::MAX {
            let x = half_to_f64(h);
            if x.is_finite() {
                assert_eq!(shortest(x), Wire::Half(h), "half {h:#06x}");
            }
        }
    }
}
