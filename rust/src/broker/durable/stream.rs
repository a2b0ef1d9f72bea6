//! One stream's messages (pure Rust): numbered by sequence, evicted by its limits.
//!
//! Sequences are contiguous from `first` to `last`, so a message is found by
//! index. Limits evict the oldest first; the newest message always survives
//! the count and byte limits (whatever its size), not the age limit.

use std::collections::VecDeque;
use std::sync::Arc;

/// Retention limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Seconds a message is kept.
    pub max_age: Option<f64>,
    pub max_count: Option<u64>,
    pub max_bytes: Option<u64>,
}

/// One stored message.
#[derive(Debug)]
pub struct Entry<M> {
    pub message: M,
    pub topic: Box<str>,
    /// What it counts for against `max_bytes`.
    pub size: u64,
    /// Wall-clock seconds when it was stored.
    pub time: f64,
}

#[derive(Debug)]
pub struct Stream<M> {
    pub sid: u64,
    pub name: Arc<str>,
    pub subjects: Vec<Box<str>>,
    pub limits: Limits,
    entries: VecDeque<Entry<M>>,
    /// The oldest sequence held (`last + 1` when empty).
    first: u64,
    /// The last sequence assigned.
    last: u64,
    bytes: u64,
    /// The ids of its durable consumers.
    pub consumers: Vec<u64>,
}

impl<M> Stream<M> {
    pub fn new(sid: u64, name: &str, subjects: Vec<Box<str>>) -> Self {
        Self {
            sid,
            name: name.into(),
            subjects,
            limits: Limits::default(),
            entries: VecDeque::new(),
            first: 1,
            last: 0,
            bytes: 0,
            consumers: Vec::new(),
        }
    }

    /// Keep `message`; returns its sequence. Evicts what the limits no longer allow.
    pub fn push(&mut self, message: M, topic: &str, size: u64, wall: f64) -> u64 {
        self.last += 1;
        self.entries.push_back(Entry {
            message,
            topic: topic.into(),
            size,
            time: wall,
        });
        self.bytes += size;
        self.evict(wall);
        self.last
    }

    /// Drop the oldest messages past the limits (`wall` is now, for the age limit).
    pub fn evict(&mut self, wall: f64) {
        let Limits {
            max_age,
            max_count,
            max_bytes,
        } = self.limits;
        while self.entries.len() > 1
            && (max_count.is_some_and(|m| self.entries.len() as u64 > m)
                || max_bytes.is_some_and(|m| self.bytes > m))
        {
            self.drop_first();
        }
        if let Some(age) = max_age {
            let horizon = wall - age;
            while self.entries.front().is_some_and(|e| e.time < horizon) {
                self.drop_first();
            }
        }
    }

    fn drop_first(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.bytes -= entry.size;
            self.first += 1;
        }
    }

    pub fn get(&self, seq: u64) -> Option<&Entry<M>> {
        if seq < self.first {
            return None;
        }
        self.entries.get(usize::try_from(seq - self.first).ok()?)
    }

    pub fn first(&self) -> u64 {
        self.first
    }

    pub fn last(&self) -> u64 {
        self.last
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The first sequence stored at or after wall-clock `time` (`last + 1` if none).
    pub fn first_since(&self, time: f64) -> u64 {
        self.entries
            .iter()
            .position(|e| e.time >= time)
            .map_or(self.last + 1, |i| self.first + i as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(limits: Limits) -> Stream<u32> {
        let mut s = Stream::new(1, "s", vec!["a.>".into()]);
        s.limits = limits;
        s
    }

    #[test]
    fn count_limit_keeps_the_newest() {
        let mut s = stream(Limits {
            max_count: Some(3),
            ..Limits::default()
        });
        for i in 0..5 {
            s.push(i, "a.b", 1, 0.0);
        }
        assert_eq!((s.first(), s.last(), s.len()), (3, 5, 3));
        assert!(s.get(2).is_none());
        assert_eq!(s.get(3).map(|e| e.message), Some(2));
        assert_eq!(s.get(5).map(|e| e.message), Some(4));
        assert!(s.get(6).is_none());
    }

    #[test]
    fn byte_limit_never_drops_the_newest() {
        let mut s = stream(Limits {
            max_bytes: Some(10),
            ..Limits::default()
        });
        s.push(1, "a.b", 4, 0.0);
        s.push(2, "a.b", 4, 0.0);
        assert_eq!(s.len(), 2);
        s.push(3, "a.b", 50, 0.0);
        assert_eq!((s.len(), s.bytes(), s.first()), (1, 50, 3));
    }

    #[test]
    fn age_limit_expires_everything_old() {
        let mut s = stream(Limits {
            max_age: Some(1.0),
            ..Limits::default()
        });
        s.push(1, "a.b", 1, 10.0);
        s.push(2, "a.b", 1, 10.5);
        s.evict(11.2);
        assert_eq!(s.first(), 2);
        s.evict(20.0);
        assert!(s.is_empty());
        assert_eq!((s.first(), s.last()), (3, 2));
    }

    #[test]
    fn first_since_finds_by_time() {
        let mut s = stream(Limits::default());
        for (i, t) in [1.0, 2.0, 3.0].into_iter().enumerate() {
            s.push(i as u32, "a.b", 1, t);
        }
        assert_eq!(s.first_since(1.5), 2);
        assert_eq!(s.first_since(0.0), 1);
        assert_eq!(s.first_since(9.0), 4);
    }
}
