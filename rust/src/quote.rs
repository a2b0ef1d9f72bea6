//! Quoting keys and names in messages exactly as Python's `repr()` quotes a str.
//!
//! The pure twins write `f"key {key!r} ..."`; the Rust core builds the same
//! message without an interpreter, so both implementations raise identical
//! text for the same key (Rust's `{:?}` would use double quotes and its own
//! escapes). Pure Rust: the store, router and lock manager use it directly.

use std::fmt::Write;

#[path = "quote_table.rs"]
mod table;

/// `text` as Python's `repr(text)` spells it: single quotes unless the text
/// holds a `'` and no `"`; backslash escapes for the quote, `\\`, `\t`, `\n`,
/// `\r`; `\xhh` / `\uhhhh` / `\Uhhhhhhhh` for what `str.isprintable()` rejects.
pub fn quote(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            ' '..='\u{7e}' => out.push(c),
            c if c.is_ascii() || !printable(c) => escape(&mut out, c),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `value` as Python's `repr(value)` spells a float: the shortest digits
/// that round-trip, `.0` on whole numbers, and an exponent (`1e-05`, `1e+16`)
/// outside 1e-4 .. 1e16.
pub fn float_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{value:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // The value is 0.DIGITS x 10^point, as CPython's float formatting counts it.
    let point = exponent + 1;
    if !(-4 < point && point <= 16) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{rest}e{esign}{:02}", exponent.abs());
    }
    let n = digits.len() as i32;
    if point <= 0 {
        return format!(
            "{sign}0.{}{digits}",
            "0".repeat(point.unsigned_abs() as usize)
        );
    }
    if point >= n {
        return format!("{sign}{digits}{}.0", "0".repeat((point - n) as usize));
    }
    let (whole, frac) = digits.split_at(point as usize);
    format!("{sign}{whole}.{frac}")
}

fn escape(out: &mut String, c: char) {
    let cp = u32::from(c);
    // Writing to a String cannot fail.
    let _ = if cp <= 0xff {
        write!(out, "\\x{cp:02x}")
    } else if cp <= 0xffff {
        write!(out, "\\u{cp:04x}")
    } else {
        write!(out, "\\U{cp:08x}")
    };
}

/// Python's `str.isprintable()` for one non-ASCII character.
fn printable(c: char) -> bool {
    let cp = u32::from(c);
    table::NOT_PRINTABLE
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                std::cmp::Ordering::Less
            } else if lo > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_err()
}

#[cfg(test)]
mod tests {
    use super::{float_repr, quote};

    #[test]
    fn floats_like_python_repr() {
        // Each expected value is what CPython's repr() returns.
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (1e-4, "0.0001"),
            (1.5e-5, "1.5e-05"),
            (1e-5, "1e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.25e16, "1.25e+16"),
            (1e300, "1e+300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (value, expected) in cases {
            assert_eq!(float_repr(value), expected, "{value:e}");
        }
    }

    #[test]
    fn quotes_like_python_repr() {
        // Each expected value is what CPython 3.11's repr() returns.
        let cases = [
            ("a", "'a'"),
            ("", "''"),
            ("it's", "\"it's\""),
            ("say \"hi\"", "'say \"hi\"'"),
            ("both ' and \"", "'both \\' and \"'"),
            ("back\\slash", "'back\\\\slash'"),
            ("tab\tnl\ncr\r", "'tab\\tnl\\ncr\\r'"),
            ("\u{0}\u{1f}\u{7f}", "'\\x00\\x1f\\x7f'"),
            ("caf\u{e9} \u{4e2d}", "'caf\u{e9} \u{4e2d}'"),
            ("nbsp\u{a0}shy\u{ad}", "'nbsp\\xa0shy\\xad'"),
            ("zwsp\u{200b}ls\u{2028}", "'zwsp\\u200bls\\u2028'"),
            ("\u{1f600}", "'\u{1f600}'"),
            ("\u{e0001}\u{10ffff}", "'\\U000e0001\\U0010ffff'"),
        ];
        for (text, expected) in cases {
            assert_eq!(quote(text), expected, "{text:?}");
        }
    }
}
