//! `Entry`: one stored record packed into a single allocation; `Packed`, a
//! borrowed view that reads its fields in place; `Batch`, copies of several
//! records in one buffer, as a bulk read takes them out from under the lock.
//!
//! Layout: `[flags u8][revision: LEB128][deadline u64, if flags & HAS_DEADLINE]
//! [metadata length: LEB128, if flags & HAS_METADATA][metadata: (u32 length,
//! UTF-8) pairs][tag byte][payload]`, little-endian. One boxed slice per
//! record keeps the tree's slots small (a key and a fat pointer) and costs one
//! allocator chunk instead of three. The header of a plain record (no TTL, no
//! metadata) is four bytes or so, not twenty: with a small value that is one
//! allocator size class down, 16 bytes less per record.

use crate::store::watch::Snapshot;

const HAS_DEADLINE: u8 = 1;
const HAS_METADATA: u8 = 2;

#[derive(Debug, Clone)]
pub struct Entry {
    blob: Box<[u8]>,
}

fn write_leb128(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn leb128_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The number at `*at`, moving `*at` past it.
fn read_leb128(bytes: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

fn read_u32(bytes: &[u8], at: usize) -> usize {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b) as usize
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

impl Entry {
    /// `value` is the tag byte and payload; `deadline` is at least 1 when given.
    /// Metadata strings longer than 4 GiB are not supported (callers' sizes
    /// are bounded far below that by Python's own limits on a dict of str).
    pub fn new(
        revision: u64,
        deadline: Option<u64>,
        metadata: &[(String, String)],
        value: &[u8],
    ) -> Self {
        let meta_len: usize = metadata.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        let header = 1
            + leb128_len(revision)
            + if deadline.is_some() { 8 } else { 0 }
            + if meta_len > 0 {
                leb128_len(meta_len as u64)
            } else {
                0
            };
        // Exactly the record's length, so boxing it needs no reallocation.
        let mut blob = Vec::with_capacity(header + meta_len + value.len());
        let flags = if deadline.is_some() { HAS_DEADLINE } else { 0 }
            | if meta_len > 0 { HAS_METADATA } else { 0 };
        blob.push(flags);
        write_leb128(&mut blob, revision);
        if let Some(d) = deadline {
            blob.extend_from_slice(&d.to_le_bytes());
        }
        if meta_len > 0 {
            write_leb128(&mut blob, meta_len as u64);
        }
        for (k, v) in metadata {
            for s in [k, v] {
                blob.extend_from_slice(&(s.len() as u32).to_le_bytes());
                blob.extend_from_slice(s.as_bytes());
            }
        }
        blob.extend_from_slice(value);
        Self {
            blob: blob.into_boxed_slice(),
        }
    }

    /// The record's fields, read in place.
    pub fn packed(&self) -> Packed<'_> {
        Packed(&self.blob)
    }

    pub fn revision(&self) -> u64 {
        self.packed().revision()
    }

    pub fn deadline(&self) -> Option<u64> {
        self.packed().deadline()
    }

    pub fn expired(&self, now: u64) -> bool {
        self.packed().expired(now)
    }

    /// Tag byte and payload.
    pub fn value(&self) -> &[u8] {
        self.packed().value()
    }

    pub fn metadata(&self) -> Vec<(String, String)> {
        self.packed()
            .metadata()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// What `stats()["bytes"]` counts for a record: key, value payload, metadata.
    pub fn bytes(&self, key: &str) -> usize {
        let meta: usize = self
            .packed()
            .metadata()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        key.len() + self.value().len().saturating_sub(1) + meta
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            value: self.value().to_vec(),
            metadata: self.metadata(),
            revision: self.revision(),
            deadline: self.deadline(),
        }
    }
}

/// A borrowed packed record (an `Entry`'s bytes, or a copy of them in a
/// `Batch`): its fields are read straight from the bytes, with no copy.
#[derive(Debug, Clone, Copy)]
pub struct Packed<'a>(&'a [u8]);

/// Where a packed record's parts are.
struct Header {
    deadline: Option<u64>,
    /// The metadata's bytes are `meta..value`.
    meta: usize,
    /// The tag byte.
    value: usize,
}

impl<'a> Packed<'a> {
    fn flags(self) -> u8 {
        self.0[0]
    }

    fn header(self) -> Header {
        let bytes = self.0;
        let mut at = 1;
        read_leb128(bytes, &mut at); // the revision
        let deadline = (self.flags() & HAS_DEADLINE != 0).then(|| {
            at += 8;
            read_u64(bytes, at - 8)
        });
        let meta_len = if self.flags() & HAS_METADATA != 0 {
            read_leb128(bytes, &mut at) as usize
        } else {
            0
        };
        Header {
            deadline,
            meta: at,
            value: at + meta_len,
        }
    }

    pub fn revision(self) -> u64 {
        read_leb128(self.0, &mut 1)
    }

    pub fn deadline(self) -> Option<u64> {
        if self.flags() & HAS_DEADLINE == 0 {
            return None;
        }
        self.header().deadline
    }

    pub fn expired(self, now: u64) -> bool {
        self.deadline().is_some_and(|d| d <= now)
    }

    /// Tag byte and payload.
    pub fn value(self) -> &'a [u8] {
        &self.0[self.header().value..]
    }

    /// The metadata's `(key, value)` pairs, in the order they were written.
    pub fn metadata(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let header = self.header();
        let meta = &self.0[header.meta..header.value];
        let mut at = 0;
        let mut next = move || {
            (at < meta.len()).then(|| {
                let len = read_u32(meta, at);
                let s = &meta[at + 4..at + 4 + len];
                at += 4 + len;
                // Written from `String`s (see `Entry::new`), so always UTF-8.
                std::str::from_utf8(s).unwrap_or_default()
            })
        };
        std::iter::from_fn(move || Some((next()?, next()?)))
    }
}

/// Packed copies of several records in one buffer: what a bulk read takes
/// under the store's lock and decodes after releasing it. Two allocations
/// per batch instead of two or three per record.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    /// `(tag, end in bytes)` per record; a record starts where the previous ends.
    items: Vec<(usize, usize)>,
}

impl Batch {
    pub fn with_capacity(records: usize) -> Self {
        Self {
            // Room for that many small records before the first regrowth.
            bytes: Vec::with_capacity(records * 64),
            items: Vec::with_capacity(records),
        }
    }

    /// Appends a copy of `entry`, labelled with the caller's `tag`.
    pub fn push(&mut self, tag: usize, entry: &Entry) {
        self.bytes.extend_from_slice(&entry.blob);
        self.items.push((tag, self.bytes.len()));
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each record with its tag, in the order pushed.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Packed<'_>)> {
        let mut start = 0;
        self.items.iter().map(move |&(tag, end)| {
            let packed = Packed(&self.bytes[start..end]);
            start = end;
            (tag, packed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_every_field() {
        let meta = vec![
            ("a".to_owned(), "bc".to_owned()),
            ("é".to_owned(), String::new()),
        ];
        let e = Entry::new(7, Some(99), &meta, &[1, 2, 3]);
        assert_eq!(e.revision(), 7);
        assert_eq!(e.deadline(), Some(99));
        assert!(e.expired(99) && !e.expired(98));
        assert_eq!(e.value(), &[1, 2, 3]);
        assert_eq!(e.metadata(), meta);
        assert_eq!(e.bytes("key"), 3 + 2 + 1 + 2 + 2);
        let mut batch = Batch::with_capacity(1);
        batch.push(4, &e);
        batch.push(5, &Entry::new(8, None, &[], &[9]));
        let got: Vec<_> = batch
            .iter()
            .map(|(tag, p)| (tag, p.revision(), p.deadline(), p.value().to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![(4, 7, Some(99), vec![1, 2, 3]), (5, 8, None, vec![9])]
        );
        let pairs: Vec<_> = batch.iter().next().unwrap().1.metadata().collect();
        assert_eq!(pairs, vec![("a", "bc"), ("é", "")]);
        let plain = Entry::new(1, None, &[], &[0]);
        assert_eq!(
            (plain.deadline(), plain.metadata(), plain.bytes("k")),
            (None, vec![], 1)
        );
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        for rev in [0, 1, 127, 128, 300, 1 << 40, u64::MAX] {
            let e = Entry::new(rev, Some(rev | 1), &meta, b"xy");
            assert_eq!(
                (e.revision(), e.deadline(), e.value()),
                (rev, Some(rev | 1), &b"xy"[..])
            );
            assert_eq!(e.metadata(), meta);
            // Metadata: two pairs, 8 bytes of lengths each, 5 bytes of text.
            assert_eq!(e.blob.len(), 1 + leb128_len(rev) + 8 + 1 + 21 + 2);
            let plain = Entry::new(rev, None, &[], b"v");
            assert_eq!(plain.blob.len(), 1 + leb128_len(rev) + 1);
            assert_eq!((plain.revision(), plain.deadline()), (rev, None));
        }
    }
}
