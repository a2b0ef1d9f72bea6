//! Typed CBOR decoding in one pass: CBOR's side of `typed::wire` (its byte
//! tests and definite-length heads, on its untyped decoder), and the entry
//! point, which falls back to the canonical path (`cbor.loads`, then
//! `convert`) for anything but bytes and whenever the one-pass reader gives
//! up. Tags and indefinite-length items are decoded untyped and converted on
//! the spot; a chunked text string in a key's place gives up (it may spell a
//! field name).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::convert::Run;
use super::into_py;
use super::wire::{self, GiveUp, Read, Wire};
use crate::codec::cbor::decode::{with_decoder, Decoder};
use crate::codec::cbor::head::{ARRAY, MAP, NINT, TEXT, UINT};
use crate::codec::gc::GcPause;
use crate::codec::limits::Limits;
use crate::codec::values::with_values;

/// Decodes CBOR `data` (bytes in one pass; anything else, or anything the
/// reader gives up on, through `cbor.loads` and `convert`) into the plan's type.
pub fn decode<'py>(run: &Run<'_>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    if let Ok(bytes) = data.cast::<PyBytes>() {
        let _pause = GcPause::new(py);
        let fast = with_values(|values| {
            with_decoder(py, bytes.as_bytes(), |d| {
                let value = wire::read(d, run, values)?;
                if d.pos != d.data.len() {
                    return Err(GiveUp);
                }
                Ok::<_, GiveUp>(value)
            })
        });
        if let Ok(value) = fast {
            return Ok(value);
        }
    }
    let value = crate::codec::cbor::untyped(py, data, None, Limits::default())?;
    into_py(run.conv(0, &value, 0))
}

/// A definite length: the argument of a head with additional information
/// 0..=27 (indefinite lengths, 31, give None).
fn definite_len(data: &[u8], at: usize) -> Option<(u64, usize)> {
    let ib = *data.get(at)?;
    let ai = ib & 0x1f;
    let be = |n: usize| -> Option<u64> {
        let bytes = data.get(at + 1..at + 1 + n)?;
        Some(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    };
    Some(match ai {
        0..=23 => (u64::from(ai), 1),
        24 => (be(1)?, 2),
        25 => (be(2)?, 3),
        26 => (be(4)?, 5),
        27 => (be(8)?, 9),
        _ => return None,
    })
}

/// An item of major type `major` that is not of indefinite length.
fn is_definite(ib: u8, major: u8) -> bool {
    ib >> 5 == major && ib & 0x1f != 31
}

impl Decoder<'_, '_> {
    /// The item count of the definite-length container starting here
    /// (consumed), refused when longer than the bytes left (`per_item`
    /// bytes at least each).
    fn definite_count(&mut self, per_item: u64) -> Result<usize, GiveUp> {
        let (n, header) = definite_len(self.data, self.pos).ok_or(GiveUp)?;
        self.pos += header;
        let left = (self.data.len() - self.pos) as u64;
        if n.saturating_mul(per_item) > left {
            return Err(GiveUp);
        }
        Ok(n as usize)
    }
}

impl<'a, 'py> Wire<'a, 'py> for Decoder<'a, 'py> {
    /// A tag or an indefinite length may still fit: decoded, then converted.
    const MISMATCH_GIVES_UP: bool = false;

    wire::cursor_fields!();

    #[inline]
    fn is_str(ib: u8) -> bool {
        is_definite(ib, TEXT)
    }

    #[inline]
    fn is_int(ib: u8) -> bool {
        ib >> 5 == UINT || ib >> 5 == NINT
    }

    #[inline]
    fn is_float(ib: u8) -> bool {
        (0xf9..=0xfb).contains(&ib)
    }

    #[inline]
    fn bool_of(ib: u8) -> Option<bool> {
        match ib {
            0xf4 => Some(false),
            0xf5 => Some(true),
            _ => None,
        }
    }

    /// null or undefined.
    #[inline]
    fn is_null(ib: u8) -> bool {
        ib == 0xf6 || ib == 0xf7
    }

    #[inline]
    fn tiny_int(ib: u8) -> Option<i64> {
        (ib <= 0x17).then_some(i64::from(ib))
    }

    #[inline]
    fn is_array(ib: u8) -> bool {
        is_definite(ib, ARRAY)
    }

    #[inline]
    fn is_map(ib: u8) -> bool {
        is_definite(ib, MAP)
    }

    /// None for tags and other simple values.
    fn union_kind(ib: u8) -> Option<usize> {
        Some(match ib >> 5 {
            UINT | NINT => 2,
            2 => 5,
            TEXT => 4,
            ARRAY => 6,
            MAP => 7,
            _ => match ib {
                0xf4 | 0xf5 => 1,
                0xf6 | 0xf7 => 0,
                0xf9..=0xfb => 3,
                _ => return None,
            },
        })
    }

    fn array_len(&mut self) -> Result<usize, GiveUp> {
        self.definite_count(1)
    }

    fn map_len(&mut self) -> Result<usize, GiveUp> {
        self.definite_count(2)
    }

    /// A chunked text string gives up: it may spell a field name.
    fn str_bytes(&mut self) -> Result<Option<&'a [u8]>, GiveUp> {
        let start = self.pos;
        if *self.data.get(start).ok_or(GiveUp)? >> 5 != TEXT {
            return Ok(None);
        }
        let (n, header) = definite_len(self.data, start).ok_or(GiveUp)?;
        let begin = start + header;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| begin.checked_add(n))
            .filter(|&end| end <= self.data.len())
            .ok_or(GiveUp)?;
        self.pos = end;
        let data: &'a [u8] = self.data;
        Ok(Some(&data[begin..end]))
    }

    // Forced inline, as the direct call before `Wire` was: outlined, this
    // shim (and `key`) cost 2% of decoding citm_catalog (callgrind).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn value(&mut self, depth: usize) -> Read<'py> {
        Ok(self.item(depth, false)?)
    }

    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn key(&mut self, depth: usize) -> Read<'py> {
        Ok(Decoder::key(self, depth)?)
    }
}
