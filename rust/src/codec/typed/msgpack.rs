//! Typed msgpack decoding in one pass: msgpack's side of `typed::wire` (its
//! byte tests and headers, on its untyped decoder), and the entry point,
//! which falls back to the canonical path (decode untyped, then `convert`)
//! whenever the one-pass reader gives up.

use pyo3::prelude::*;

use super::convert::Run;
use super::into_py;
use super::wire::{self, GiveUp, Read, Wire};
use crate::codec::gc::GcPause;
use crate::codec::msgpack::decode::{with_decoder, Decoder};
use crate::codec::values::with_values;

/// Decodes msgpack `data` into the plan's type.
pub fn decode<'py>(run: &Run<'_>, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let _pause = GcPause::new(py);
    let fast = with_values(|values| {
        with_decoder(py, data, |d| {
            let value = wire::read(d, run, values)?;
            d.finish()?;
            Ok::<_, GiveUp>(value)
        })
    });
    if let Ok(value) = fast {
        return Ok(value);
    }
    let value = crate::codec::msgpack::decode(py, data)?;
    into_py(run.conv(0, &value, 0))
}

fn is_int(b: u8) -> bool {
    matches!(b, 0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff)
}

fn is_str(b: u8) -> bool {
    matches!(b, 0xa0..=0xbf | 0xd9..=0xdb)
}

impl Decoder<'_, '_> {
    fn be(&mut self, width: usize) -> Result<usize, GiveUp> {
        let start = self.pos;
        Ok(self.len_field(width, start, "header")?)
    }
}

impl<'a, 'py> Wire<'a, 'py> for Decoder<'a, 'py> {
    /// Every item of another kind is refused by the canonical path too.
    const MISMATCH_GIVES_UP: bool = true;

    wire::cursor_fields!();

    #[inline]
    fn is_str(b: u8) -> bool {
        is_str(b)
    }

    #[inline]
    fn is_int(b: u8) -> bool {
        is_int(b)
    }

    #[inline]
    fn is_float(b: u8) -> bool {
        b == 0xcb || b == 0xca
    }

    #[inline]
    fn bool_of(b: u8) -> Option<bool> {
        match b {
            0xc2 => Some(false),
            0xc3 => Some(true),
            _ => None,
        }
    }

    #[inline]
    fn is_null(b: u8) -> bool {
        b == 0xc0
    }

    #[inline]
    fn tiny_int(b: u8) -> Option<i64> {
        (b <= 0x7f).then_some(i64::from(b))
    }

    #[inline]
    fn is_array(b: u8) -> bool {
        matches!(b, 0x90..=0x9f | 0xdc | 0xdd)
    }

    #[inline]
    fn is_map(b: u8) -> bool {
        matches!(b, 0x80..=0x8f | 0xde | 0xdf)
    }

    /// None for extensions (a timestamp or an `Ext`).
    fn union_kind(b: u8) -> Option<usize> {
        Some(match b {
            0xc0 => 0,
            0xc2 | 0xc3 => 1,
            0xca | 0xcb => 3,
            0xc4..=0xc6 => 5,
            0x90..=0x9f | 0xdc | 0xdd => 6,
            0x80..=0x8f | 0xde | 0xdf => 7,
            _ if is_int(b) => 2,
            _ if is_str(b) => 4,
            _ => return None,
        })
    }

    fn array_len(&mut self) -> Result<usize, GiveUp> {
        let b = *self.data.get(self.pos).ok_or(GiveUp)?;
        self.pos += 1;
        let n = match b {
            0x90..=0x9f => usize::from(b & 0x0f),
            0xdc => self.be(2)?,
            0xdd => self.be(4)?,
            _ => return Err(GiveUp),
        };
        if n > self.left() {
            return Err(GiveUp);
        }
        Ok(n)
    }

    fn map_len(&mut self) -> Result<usize, GiveUp> {
        let b = *self.data.get(self.pos).ok_or(GiveUp)?;
        self.pos += 1;
        let n = match b {
            0x80..=0x8f => usize::from(b & 0x0f),
            0xde => self.be(2)?,
            0xdf => self.be(4)?,
            _ => return Err(GiveUp),
        };
        if n.saturating_mul(2) > self.left() {
            return Err(GiveUp);
        }
        Ok(n)
    }

    fn str_bytes(&mut self) -> Result<Option<&'a [u8]>, GiveUp> {
        let start = self.pos;
        let b = *self.data.get(start).ok_or(GiveUp)?;
        let (n, header) = match b {
            0xa0..=0xbf => (usize::from(b & 0x1f), 1),
            0xd9..=0xdb => {
                self.pos += 1;
                let n = self.be(1 << (b - 0xd9))?;
                self.pos = start;
                (n, 1 + (1 << (b - 0xd9)))
            }
            _ => return Ok(None),
        };
        if header + n > self.data.len() - start {
            return Err(GiveUp);
        }
        self.pos = start + header + n;
        let data: &'a [u8] = self.data;
        Ok(Some(&data[start + header..start + header + n]))
    }

    // Forced inline, as the direct call before `Wire` was: outlined, this
    // shim (and `key`) cost 2% of decoding citm_catalog (callgrind).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn value(&mut self, depth: usize) -> Read<'py> {
        Ok(Decoder::value(self, depth, false)?)
    }

    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn key(&mut self, depth: usize) -> Read<'py> {
        Ok(Decoder::key(self, depth)?)
    }
}
