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

    pub fn revision(&self) -> u64 {
        read_u64(&self.blob, 0)
    }

    pub fn deadline(&self) -> Option<u64> {
        Some(read_u64(&self.blob, 8)).filter(|d| *d != 0)
    }

    pub fn expired(&self, now: u64) -> bool {
        self.deadline().is_some_and(|d| d <= now)
    }

    fn meta_len(&self) -> usize {
        read_u32(&self.blob, 16)
    }

    /// Tag byte and payload.
    pub fn value(&self) -> &[u8] {
        &self.blob[HEADER + self.meta_len()..]
    }

    /// The metadata's strings, in order: key, value, key, value...
    fn metadata_strings(&self) -> impl Iterator<Item = &[u8]> {
        let meta = &self.blob[HEADER..HEADER + self.meta_len()];
        let mut at = 0;
        std::iter::from_fn(move || {
            (at < meta.len()).then(|| {
                let len = read_u32(meta, at);
                let s = &meta[at + 4..at + 4 + len];
                at += 4 + len;
                s
            })
        })
    }

    pub fn metadata(&self) -> Vec<(String, String)> {
        // Written from `String`s, so always UTF-8; lossy conversion never alters them.
        let mut strings = self
            .metadata_strings()
            .map(|s| String::from_utf8_lossy(s).into_owned());
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (strings.next(), strings.next()) {
            out.push((k, v));
        }
        out
    }

    /// What `stats()["bytes"]` counts for a record: key, value payload, metadata.
    pub fn bytes(&self, key: &str) -> usize {
        let meta: usize = self.metadata_strings().map(<[u8]>::len).sum();
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
        let plain = Entry::new(1, None, &[], &[0]);
        assert_eq!(
            (plain.deadline(), plain.metadata(), plain.bytes("k")),
            (None, vec![], 1)
        );
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }
}
