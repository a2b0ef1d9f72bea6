//! A subscriber's bounded queue (pure Rust): what a publish leaves for the delivery task.
//!
//! `push` never waits. Past `max` items it drops and counts (drop policy) or
//! keeps the item and reports `over` so the publisher can wait for room
//! (block policy). `take` hands the task everything queued at once, and marks
//! the queue idle when there is nothing, so the next push knows to wake it.

use std::collections::VecDeque;

/// What one push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pushed {
    pub accepted: bool,
    /// The delivery task was idle: wake it.
    pub wake: bool,
    /// Block policy and the queue is past its bound: the publisher should wait for room.
    pub over: bool,
}

#[derive(Debug)]
pub struct Bounded<T> {
    items: VecDeque<T>,
    max: usize,
    drop_when_full: bool,
    idle: bool,
    closed: bool,
    dropped: u64,
}

impl<T> Bounded<T> {
    pub fn new(max: usize, drop_when_full: bool) -> Self {
        Self {
            items: VecDeque::new(),
            max: max.max(1),
            drop_when_full,
            idle: true,
            closed: false,
            dropped: 0,
        }
    }

    pub fn push(&mut self, item: T) -> Pushed {
        if self.closed {
            return Pushed::default();
        }
        let full = self.items.len() >= self.max;
        if full && self.drop_when_full {
            self.dropped += 1;
            return Pushed::default();
        }
        self.items.push_back(item);
        let wake = self.idle;
        self.idle = false;
        Pushed {
            accepted: true,
            wake,
            over: full,
        }
    }

    /// Everything queued, oldest first; an empty result marks the queue idle.
    pub fn take(&mut self) -> Vec<T> {
        if self.items.is_empty() {
            self.idle = true;
            return Vec::new();
        }
        self.items.drain(..).collect()
    }

    /// Refuse further pushes; `discard` also forgets what is queued.
    pub fn close(&mut self, discard: bool) {
        self.closed = true;
        if discard {
            self.items.clear();
        }
    }

    /// What is queued, oldest first (the garbage collector's view).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    /// Everything queued, leaving the queue empty and its state as it was (to drop
    /// outside a lock).
    pub fn take_items(&mut self) -> std::collections::VecDeque<T> {
        std::mem::take(&mut self.items)
    }

    pub fn over(&self) -> bool {
        self.items.len() > self.max
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_policy_counts() {
        let mut q = Bounded::new(2, true);
        assert!(q.push(1).wake);
        assert!(!q.push(2).wake);
        assert!(!q.push(3).accepted);
        assert_eq!(q.dropped(), 1);
        assert_eq!(q.take(), vec![1, 2]);
        assert!(q.take().is_empty());
        assert!(q.push(4).wake, "idle after an empty take");
    }

    #[test]
    fn block_policy_keeps_and_reports_over() {
        let mut q = Bounded::new(1, false);
        q.push(1);
        let p = q.push(2);
        assert!(p.accepted && p.over);
        assert!(q.over());
        q.close(false);
        assert!(!q.push(3).accepted);
        assert_eq!(q.take(), vec![1, 2]);
        q.close(true);
        assert!(q.is_empty() && q.is_closed());
    }

    #[test]
    fn iter_and_take_items_see_what_is_queued() {
        let mut q = Bounded::new(4, false);
        q.push(1);
        q.push(2);
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(q.take_items(), [1, 2]);
        assert!(q.is_empty());
        assert!(!q.push(3).wake, "still busy: take_items is not a take");
    }
}
