//! Queue groups: each message goes to exactly one member, round robin.
//!
//! A group is identified by its pattern and queue name together (as in NATS).
//! Membership changes only on subscribe / unsubscribe, which also clear the
//! match cache, so a cached `Picker` holds a snapshot of the members and
//! shares the group's counter: the rotation carries on across cache rebuilds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One queue group's members and its rotation counter.
#[derive(Debug)]
pub struct Group<T> {
    /// The id the group is stored under in the trie.
    pub tid: u64,
    pub members: Vec<(u64, Arc<T>)>,
    pub next: Arc<AtomicUsize>,
}

impl<T> Group<T> {
    pub fn new(tid: u64) -> Self {
        Self {
            tid,
            members: Vec::new(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A snapshot for the match cache.
    pub fn picker(&self) -> Picker<T> {
        Picker {
            members: self.members.iter().map(|(_, t)| Arc::clone(t)).collect(),
            next: Arc::clone(&self.next),
        }
    }
}

/// Chooses the member of a group that gets the next message.
#[derive(Debug)]
pub struct Picker<T> {
    members: Vec<Arc<T>>,
    next: Arc<AtomicUsize>,
}

impl<T> Picker<T> {
    /// The next member in rotation (None for an empty group, which is never cached).
    pub fn pick(&self) -> Option<&Arc<T>> {
        if self.members.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.members.len();
        self.members.get(i)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_is_fair_across_snapshots() {
        let mut g: Group<u32> = Group::new(0);
        g.members = vec![(1, Arc::new(1)), (2, Arc::new(2)), (3, Arc::new(3))];
        let p = g.picker();
        let mut counts = [0; 4];
        for _ in 0..30 {
            counts[**p.pick().unwrap() as usize] += 1;
        }
        let p2 = g.picker();
        for _ in 0..3 {
            counts[**p2.pick().unwrap() as usize] += 1;
        }
        assert_eq!(counts, [0, 11, 11, 11]);
        assert!(Group::<u32>::new(1).picker().pick().is_none());
    }
}
