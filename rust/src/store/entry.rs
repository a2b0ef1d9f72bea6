//! `Entry`: one stored record packed into a single allocation.
//!
//! Layout: `[revision u64][deadline u64, 0 = none][metadata length u32]
//! [metadata: (u32 length, UTF-8) pairs][tag byte][payload]`, little-endian.
//! One boxed slice per record keeps the tree's slots small (a key and a fat
//! pointer) and costs one allocator chunk instead of three.

use crate::store::watch::Snapshot;

const HEADER: usize = 8 + 8 + 4;

#[derive(Debug)]
pub struct Entry {
    blob: Box<[u8]>,
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
        let mut blob = Vec::with_capacity(HEADER + meta_len + value.len());
        blob.extend_from_slice(&revision.to_le_bytes());
        blob.extend_from_slice(&deadline.unwrap_or(0).to_le_bytes());
        blob.extend_from_slice(&(meta_len as u32).to_le_bytes());
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

impl<'a> Packed<'a> {
    pub fn revision(self) -> u64 {
        read_u64(self.0, 0)
    }

    pub fn deadline(self) -> Option<u64> {
        Some(read_u64(self.0, 8)).filter(|d| *d != 0)
    }

    pub fn expired(self, now: u64) -> bool {
        self.deadline().is_some_and(|d| d <= now)
    }

    fn meta_len(self) -> usize {
        read_u32(self.0, 16)
    }

    /// Tag byte and payload.
    pub fn value(self) -> &'a [u8] {
        &self.0[HEADER + self.meta_len()..]
    }

    /// The metadata's `(key, value)` pairs, in the order they were written.
    pub fn metadata(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let meta = &self.0[HEADER..HEADER + self.meta_len()];
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
            bytes: Vec::with_capacity(records * (HEADER + 48)),
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
    }
}
