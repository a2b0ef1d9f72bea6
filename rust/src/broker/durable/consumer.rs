//! One durable consumer's state (pure Rust): its position, what it handed out, its timers.
//!
//! A message handed out is `Pending` until acked or terminated. While a
//! member holds it, its deadline is when `ack_wait` runs out; once put back
//! (a nack with a delay) it is when the message may go out again. Timers
//! are a min-heap of `(deadline, sequence)` pruned lazily: an entry whose
//! deadline no longer matches its pending message's is stale.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};

use crate::broker::hashing::FoldState;
use crate::broker::subjects;

/// A delivered, unsettled message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pending {
    /// Deliveries so far.
    pub count: u32,
    /// The member holding it; None while it waits to go out again.
    pub member: Option<u64>,
    pub deadline: f64,
    /// A member whose `ack_wait` ran out on it: another one gets it if it can.
    pub avoid: Option<u64>,
}

/// A live subscriber of the consumer.
#[derive(Debug)]
pub struct Member<T> {
    pub mid: u64,
    pub target: T,
    /// Unsettled messages it may hold (0 while it drains).
    pub capacity: usize,
    pub inflight: usize,
}

/// A timer deadline, ordered totally (deadlines are finite).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timer(pub f64, pub u64);

impl Eq for Timer {}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

#[derive(Debug)]
pub struct Consumer<T> {
    pub cid: u64,
    /// The stream it reads.
    pub sid: u64,
    pub name: Box<str>,
    pub pattern: Box<str>,
    /// The filter is the stream's only subject: every message passes.
    pub match_all: bool,
    pub ack_wait: f64,
    /// The next sequence to consider.
    pub cursor: u64,
    pub pending: HashMap<u64, Pending, FoldState>,
    /// Pending sequences due to go out again, oldest first.
    pub ready: VecDeque<u64>,
    pub timers: BinaryHeap<Reverse<Timer>>,
    pub members: Vec<Member<T>>,
    rr: usize,
    pub dead_lettered: u64,
}

impl<T> Consumer<T> {
    pub fn new(
        cid: u64,
        sid: u64,
        name: &str,
        pattern: &str,
        match_all: bool,
        ack_wait: f64,
        cursor: u64,
    ) -> Self {
        Self {
            cid,
            sid,
            name: name.into(),
            pattern: pattern.into(),
            match_all,
            ack_wait,
            cursor,
            pending: HashMap::default(),
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            members: Vec::new(),
            rr: 0,
            dead_lettered: 0,
        }
    }

    pub fn wants(&self, topic: &str) -> bool {
        self.match_all || subjects::matches(&self.pattern, topic)
    }

    /// The index of the next member (round robin) with room, other than `avoid` if
    /// any other has room.
    pub fn free_member(&mut self, avoid: Option<u64>) -> Option<usize> {
        let n = self.members.len();
        let mut fallback = None;
        for k in 0..n {
            let i = (self.rr + k) % n;
            let member = &self.members[i];
            if member.inflight >= member.capacity {
                continue;
            }
            if avoid == Some(member.mid) {
                fallback.get_or_insert(i);
                continue;
            }
            self.rr = (i + 1) % n;
            return Some(i);
        }
        fallback
    }

    /// Remove member `mid`; the turns start over from the first member.
    pub fn remove_member(&mut self, mid: u64) {
        self.members.retain(|m| m.mid != mid);
        self.rr = 0;
    }

    pub fn member_mut(&mut self, mid: u64) -> Option<&mut Member<T>> {
        self.members.iter_mut().find(|m| m.mid == mid)
    }

    /// The member holding a message no longer does (settled, expired, put back).
    pub fn let_go(&mut self, mid: u64) {
        if let Some(member) = self.member_mut(mid) {
            member.inflight = member.inflight.saturating_sub(1);
        }
    }

    pub fn set_timer(&mut self, seq: u64, deadline: f64) {
        self.timers.push(Reverse(Timer(deadline, seq)));
    }

    /// Drop stale timers from the top; the next live deadline, if any.
    // Exact float equality on purpose: a live timer holds the very value its
    // pending message's deadline was set from.
    #[allow(clippy::float_cmp)]
    pub fn next_deadline(&mut self) -> Option<f64> {
        while let Some(Reverse(Timer(deadline, seq))) = self.timers.peek().copied() {
            if self
                .pending
                .get(&seq)
                .is_some_and(|p| p.deadline == deadline)
            {
                return Some(deadline);
            }
            self.timers.pop();
        }
        None
    }

    /// Expire the timers due at `now`: messages whose `ack_wait` ran out, or
    /// whose nack delay is over, become ready. True if any did.
    #[allow(clippy::float_cmp)] // as in `next_deadline`
    pub fn expire(&mut self, now: f64) -> bool {
        let mut freed = false;
        while let Some(Reverse(Timer(deadline, seq))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(pending) = self.pending.get_mut(&seq) else {
                continue;
            };
            if pending.deadline != deadline {
                continue; // replaced by in_progress, or settled and handed out again
            }
            let holder = pending.member.take();
            pending.avoid = holder;
            pending.deadline = 0.0;
            self.ready.push_back(seq);
            if let Some(mid) = holder {
                self.let_go(mid);
            }
            freed = true;
        }
        freed
    }

    /// Unsettled messages delivered more than once.
    pub fn redelivered(&self) -> usize {
        self.pending.values().filter(|p| p.count > 1).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(capacities: &[usize]) -> Consumer<()> {
        let mut c = Consumer::new(1, 1, "d", "a.*", false, 1.0, 1);
        for (i, &capacity) in capacities.iter().enumerate() {
            c.members.push(Member {
                mid: i as u64 + 10,
                target: (),
                capacity,
                inflight: 0,
            });
        }
        c
    }

    #[test]
    fn members_take_turns_and_avoid_is_a_preference() {
        let mut c = consumer(&[1, 1]);
        assert_eq!(c.free_member(None), Some(0));
        c.members[0].inflight = 1;
        assert_eq!(c.free_member(None), Some(1));
        c.members[1].inflight = 1;
        assert_eq!(c.free_member(None), None);
        c.members[0].inflight = 0;
        c.members[1].inflight = 0;
        assert_eq!(c.free_member(Some(10)), Some(1));
        c.members[1].inflight = 1;
        assert_eq!(
            c.free_member(Some(10)),
            Some(0),
            "avoided only if another has room"
        );
    }

    #[test]
    fn expiry_frees_the_holder_and_skips_stale_timers() {
        let mut c = consumer(&[5]);
        c.members[0].inflight = 2;
        for (seq, deadline) in [(1, 2.0), (2, 3.0)] {
            c.pending.insert(
                seq,
                Pending {
                    count: 1,
                    member: Some(10),
                    deadline,
                    avoid: None,
                },
            );
            c.set_timer(seq, deadline);
        }
        // in_progress on 2: a new deadline, the old timer goes stale
        c.pending.get_mut(&2).unwrap().deadline = 9.0;
        c.set_timer(2, 9.0);
        assert!(c.expire(5.0));
        assert_eq!(c.ready, [1]);
        assert_eq!(c.members[0].inflight, 1);
        assert_eq!(c.pending[&1].avoid, Some(10));
        assert_eq!(c.next_deadline(), Some(9.0));
        assert!(c.wants("a.x") && !c.wants("a.x.y"));
    }
}
