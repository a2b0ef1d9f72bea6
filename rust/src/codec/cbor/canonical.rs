//! Deterministic encoding (RFC 8949 section 4.2.1): map entries and set
//! members ordered by the bytewise lexicographic order of their encoded keys.
//!
//! The encoder writes entries in iteration order and remembers where each one
//! lies; `sort_entries` then reorders that region of the buffer in place.

/// One encoded entry inside the output buffer: the key is `start..mid`, the
/// value `mid..end` (for a set member `mid == end`).
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub start: usize,
    pub mid: usize,
    pub end: usize,
}

/// Two distinct Python keys (or set members) that encode to the same bytes,
/// such as `4` and an Enum whose value is 4. Deterministic encoding forbids
/// duplicate keys (RFC 8949 section 4.2.1), and decoders disagree on which
/// duplicate wins, so the canonical encoder refuses them.
#[derive(Debug, PartialEq, Eq)]
pub struct DuplicateKey;

/// Reorders the contiguous entries `spans` (in buffer order, ending at the
/// buffer's end) by their key bytes.
pub fn sort_entries(buf: &mut Vec<u8>, spans: &mut [Span]) -> Result<(), DuplicateKey> {
    let Some(first) = spans.first() else {
        return Ok(());
    };
    let region = first.start;
    // Already in (strict) order is common (sorted input, one entry): skip the copy.
    let sorted = spans
        .windows(2)
        .all(|w| buf[w[0].start..w[0].mid] < buf[w[1].start..w[1].mid]);
    if sorted {
        return Ok(());
    }
    spans.sort_by(|a, b| buf[a.start..a.mid].cmp(&buf[b.start..b.mid]));
    if spans
        .windows(2)
        .any(|w| buf[w[0].start..w[0].mid] == buf[w[1].start..w[1].mid])
    {
        return Err(DuplicateKey);
    }
    let mut out = Vec::with_capacity(buf.len() - region);
    for s in spans.iter() {
        out.extend_from_slice(&buf[s.start..s.end]);
    }
    buf.truncate(region);
    buf.extend_from_slice(&out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_sort_bytewise_not_length_first() {
        // {"aa": 1, "b": 2, 10: 3, -1: 4, 100: 5} written in that order.
        let mut buf = vec![0xa5];
        let entries: [&[u8]; 10] = [
            &[0x62, 0x61, 0x61],
            &[0x01],
            &[0x61, 0x62],
            &[0x02],
            &[0x0a],
            &[0x03],
            &[0x20],
            &[0x04],
            &[0x18, 0x64],
            &[0x05],
        ];
        let mut spans = Vec::new();
        for pair in entries.chunks(2) {
            let start = buf.len();
            buf.extend_from_slice(pair[0]);
            let mid = buf.len();
            buf.extend_from_slice(pair[1]);
            spans.push(Span {
                start,
                mid,
                end: buf.len(),
            });
        }
        assert_eq!(sort_entries(&mut buf, &mut spans), Ok(()));
        let expected = [
            0xa5, 0x0a, 0x03, 0x18, 0x64, 0x05, 0x20, 0x04, 0x61, 0x62, 0x02, 0x62, 0x61, 0x61,
            0x01,
        ];
        assert_eq!(buf, expected);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        // {1: 2, 1: 3} as two distinct source keys that encode alike.
        let mut buf = vec![0xa2, 0x01, 0x02, 0x01, 0x03];
        let mut spans = [
            Span {
                start: 1,
                mid: 2,
                end: 3,
            },
            Span {
                start: 3,
                mid: 4,
                end: 5,
            },
        ];
        assert_eq!(sort_entries(&mut buf, &mut spans), Err(DuplicateKey));
    }
}
