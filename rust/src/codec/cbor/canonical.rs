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

/// Reorders the contiguous entries `spans` (in buffer order, ending at the
/// buffer's end) by their key bytes.
pub fn sort_entries(buf: &mut Vec<u8>, spans: &mut [Span]) {
    let Some(first) = spans.first() else {
        return;
    };
    let region = first.start;
    // Already in order is common (sorted input, one entry): skip the copy.
    let sorted = spans
        .windows(2)
        .all(|w| buf[w[0].start..w[0].mid] <= buf[w[1].start..w[1].mid]);
    if sorted {
        return;
    }
    spans.sort_by(|a, b| buf[a.start..a.mid].cmp(&buf[b.start..b.mid]));
    let mut out = Vec::with_capacity(buf.len() - region);
    for s in spans.iter() {
        out.extend_from_slice(&buf[s.start..s.end]);
    }
    buf.truncate(region);
    buf.extend_from_slice(&out);
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
        sort_entries(&mut buf, &mut spans);
        let expected = [
            0xa5, 0x0a, 0x03, 0x18, 0x64, 0x05, 0x20, 0x04, 0x61, 0x62, 0x02, 0x62, 0x61, 0x61,
            0x01,
        ];
        assert_eq!(buf, expected);
    }
}
