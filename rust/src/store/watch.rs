//! Watch queues: one bounded FIFO of events per watcher, filled by the store
//! under its lock (so every watcher sees changes in the store's order) and
//! drained by the watcher's consumer. Pure Rust, no Python.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
    Expire,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Delete => "delete",
            Self::Expire => "expire",
        }
    }
}

/// A copy of a record taken under the store's lock, decoded later without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Tag byte (`TAG_ENCODED` / `TAG_RAW`) followed by the payload.
    pub value: Vec<u8>,
    pub metadata: Vec<(String, String)>,
    pub revision: u64,
    /// Monotonic nanoseconds since the store's epoch; None for no TTL.
    pub deadline: Option<u64>,
}

/// One change, as queued for a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub kind: EventKind,
    pub key: String,
    /// The new record for `Put`; None otherwise.
    pub record: Option<Snapshot>,
}

#[derive(Debug, Default)]
struct State {
    events: VecDeque<RawEvent>,
    closed: bool,
    /// Set when the consumer fell `capacity` events behind: the queue is
    /// dropped rather than silently losing events in the middle.
    overflowed: bool,
}

/// What `WatchQueue::drain` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    Events(Vec<RawEvent>),
    /// Closed by the consumer (or the store): no more events will come.
    Closed,
    /// The consumer fell behind by `capacity` events and the watch was ended.
    Overflowed(usize),
}

/// A bounded queue of events for one watcher of keys under `prefix`.
#[derive(Debug)]
pub struct WatchQueue {
    pub id: u64,
    pub prefix: String,
    capacity: usize,
    state: Mutex<State>,
    ready: Condvar,
}

impl WatchQueue {
    pub fn new(id: u64, prefix: String, capacity: usize) -> Self {
        Self {
            id,
            prefix,
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave `State` half-updated, so a poisoned
        // lock is still safe to use.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn matches(&self, key: &str) -> bool {
        key.starts_with(self.prefix.as_str())
    }

    /// Queues `event`; true when the queue went from empty to non-empty, the
    /// moment the consumer must be woken. Returns false for a closed queue.
    pub fn push(&self, event: RawEvent) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        if state.events.len() >= self.capacity {
            state.events = VecDeque::new();
            state.overflowed = true;
            state.closed = true;
            drop(state);
            self.ready.notify_all();
            return true;
        }
        let was_empty = state.events.is_empty();
        state.events.push_back(event);
        drop(state);
        if was_empty {
            self.ready.notify_all();
        }
        was_empty
    }

    /// Takes up to `max` queued events (all if None), oldest first.
    pub fn drain(&self, max: Option<usize>) -> Drained {
        let mut state = self.state();
        if state.events.is_empty() {
            if state.overflowed {
                return Drained::Overflowed(self.capacity);
            }
            if state.closed {
                return Drained::Closed;
            }
        }
        let n = max.map_or(state.events.len(), |m| m.min(state.events.len()));
        Drained::Events(state.events.drain(..n).collect())
    }

    /// Blocks until an event is queued, the queue closes, or `timeout` passes;
    /// true if there is something for `drain` to report.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let state = self.state();
        let pending = |s: &mut State| s.events.is_empty() && !s.closed;
        let state = match timeout {
            None => self
                .ready
                .wait_while(state, pending)
                .unwrap_or_else(PoisonError::into_inner),
            Some(t) => {
                self.ready
                    .wait_timeout_while(state, t, pending)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        !state.events.is_empty() || state.closed
    }

    /// Ends the watch: queued events are dropped and waiters wake.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.events = VecDeque::new();
        drop(state);
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    pub fn len(&self) -> usize {
        self.state().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: &str) -> RawEvent {
        RawEvent {
            kind: EventKind::Delete,
            key: key.to_owned(),
            record: None,
        }
    }

    #[test]
    fn push_reports_the_empty_to_nonempty_edge_only() {
        let q = WatchQueue::new(1, String::new(), 10);
        assert!(q.push(ev("a")));
        assert!(!q.push(ev("b")));
        assert_eq!(q.drain(None), Drained::Events(vec![ev("a"), ev("b")]));
        assert!(q.push(ev("c")));
    }

    #[test]
    fn drain_respects_max_and_order() {
        let q = WatchQueue::new(1, String::new(), 10);
        for k in ["a", "b", "c"] {
            q.push(ev(k));
        }
        assert_eq!(q.drain(Some(2)), Drained::Events(vec![ev("a"), ev("b")]));
        assert_eq!(q.drain(Some(2)), Drained::Events(vec![ev("c")]));
        assert_eq!(q.drain(None), Drained::Events(vec![]));
    }

    #[test]
    fn overflow_ends_the_watch() {
        let q = WatchQueue::new(1, String::new(), 2);
        q.push(ev("a"));
        q.push(ev("b"));
        q.push(ev("c"));
        assert_eq!(q.drain(None), Drained::Overflowed(2));
        assert!(!q.push(ev("d")));
        assert!(q.is_closed());
    }

    #[test]
    fn close_wakes_a_waiter() {
        let q = std::sync::Arc::new(WatchQueue::new(1, String::new(), 2));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.wait(None));
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert!(t.join().unwrap());
        assert_eq!(q.drain(None), Drained::Closed);
    }

    #[test]
    fn wait_times_out_when_nothing_comes() {
        let q = WatchQueue::new(1, "p/".into(), 2);
        assert!(!q.wait(Some(Duration::from_millis(5))));
        assert!(q.matches("p/x"));
        assert!(!q.matches("q/x"));
    }
}
