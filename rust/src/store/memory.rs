//! `MemoryStore`: the ordered in-memory store, pure Rust.
//!
//! Records live in a `BTreeMap` keyed by the key, so a prefix listing is a
//! range scan that starts at the prefix and stops at the first key past it.
//! Time is passed in by the caller as monotonic nanoseconds since the
//! store's epoch, which keeps this file deterministic under test.
//!
//! Expiry: a record past its deadline is invisible at once; its memory is
//! reclaimed by an amortised sweep (every operation removes up to
//! `SWEEP_BUDGET` expired records, soonest deadline first, from the expiry
//! index) or when an operation touches it. Each expired record yields exactly
//! one "expire" event.
//!
//! Bounds: with `max_entries` / `max_bytes` set, a write that takes the store
//! over a bound evicts, in this order: expired records, then records with a
//! TTL (soonest-expiring first), then the oldest-written records (lowest
//! revision first). The record just written is never evicted; a single record
//! larger than `max_bytes` is refused. Evictions emit "delete" events.

use std::collections::btree_map::Range;
use std::collections::{BTreeMap, BTreeSet};
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use crate::errors::{Error, Result};
use crate::quote::quote;
use crate::store::entry::{Batch, Entry};
use crate::store::key::{Key, KeyBytes};
use crate::store::watch::{EventKind, RawEvent, Snapshot, WatchQueue};

/// First byte of a stored value: the payload is the codec's encoding.
pub const TAG_ENCODED: u8 = 0;
/// First byte of a stored value: the payload is a `bytes` value, stored as is.
pub const TAG_RAW: u8 = 1;

/// Expired records an operation reclaims in passing, at most.
pub const SWEEP_BUDGET: usize = 32;

/// The condition a write must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// The live record's revision equals this one. `None` is a revision no
    /// record can have (the caller passed something that is not ours).
    Revision(Option<u64>),
    /// No live record exists.
    Absent,
}

/// Optional bounds on what the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: Option<usize>,
    pub max_bytes: Option<usize>,
}

impl Limits {
    fn bounded(self) -> bool {
        self.max_entries.is_some() || self.max_bytes.is_some()
    }
}

/// Counts for `stats()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    pub bytes: usize,
    pub watchers: usize,
}

/// One write of a batch or a single write: what the caller has encoded.
#[derive(Debug)]
pub struct Write {
    pub key: String,
    /// Tag byte followed by the payload.
    pub value: Vec<u8>,
    pub metadata: Vec<(String, String)>,
    /// Time to live in nanoseconds (at least 1), or None.
    pub ttl: Option<u64>,
}

/// What `list` asks for: keys under `prefix` ending with `suffix`, then a page.
#[derive(Debug, Clone, Copy, Default)]
pub struct Listing<'a> {
    pub prefix: &'a str,
    pub suffix: &'a str,
    pub limit: Option<usize>,
    pub offset: usize,
}

/// The first byte string past every key that starts with `prefix`, or None
/// when no such bound exists (an empty prefix, or one of only 0xFF bytes,
/// which UTF-8 never holds). Written into `stack` when it fits, so a
/// listing allocates nothing, else into `heap`.
fn prefix_end<'b>(prefix: &str, stack: &'b mut [u8], heap: &'b mut Vec<u8>) -> Option<&'b [u8]> {
    let bytes = prefix.as_bytes();
    let last = bytes.iter().rposition(|b| *b < u8::MAX)?;
    let end = if last < stack.len() {
        &mut stack[..=last]
    } else {
        heap.extend_from_slice(&bytes[..=last]);
        &mut heap[..]
    };
    end[..last].copy_from_slice(&bytes[..last]);
    end[last] = bytes[last] + 1;
    Some(end)
}

/// The ordered in-memory store. Not thread-safe by itself: the binding wraps
/// it in a mutex.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: BTreeMap<Key, Entry>,
    /// `(deadline, key)` of every record with a TTL, soonest first.
    expiry: BTreeSet<(u64, Box<str>)>,
    /// `revision -> key`, kept only when bounded, for oldest-written eviction.
    written: BTreeMap<u64, Box<str>>,
    limits: Limits,
    bytes: usize,
    /// Store-wide, so a key's revision grows even across delete and re-create.
    last_revision: u64,
    watchers: Vec<Arc<WatchQueue>>,
    next_watch_id: u64,
    /// Watchers whose queue went from empty to non-empty since the last
    /// `take_woken`: the binding wakes their consumers outside the lock.
    woken: Vec<u64>,
}

impl MemoryStore {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    // ---- reads -------------------------------------------------------------

    /// A copy of the live record under `key` (one allocation).
    pub fn read(&mut self, key: &str, now: u64) -> Option<Entry> {
        self.sweep(now, SWEEP_BUDGET);
        let entry = self.records.get(KeyBytes::of(key))?;
        if entry.expired(now) {
            self.remove(key, EventKind::Expire);
            return None;
        }
        Some(entry.clone())
    }

    pub fn exists(&mut self, key: &str, now: u64) -> bool {
        self.sweep(now, SWEEP_BUDGET);
        self.live_revision(key, now).is_some()
    }

    /// Copies of the live records among `keys`, each tagged with its
    /// position in `keys`, packed into one buffer.
    pub fn read_many<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>, now: u64) -> Batch {
        self.sweep(now, SWEEP_BUDGET);
        let keys = keys.into_iter();
        let mut batch = Batch::with_capacity(keys.size_hint().0);
        // Batches often ask for neighbouring keys in order (the keys of a
        // listing), so the key after the last one found is tried first: when
        // it is the one asked for, that saves a descent from the root.
        let mut cursor = None;
        for (i, key) in keys.enumerate() {
            let want = KeyBytes::of(key);
            let next = cursor
                .as_mut()
                .and_then(|c: &mut Peekable<Range<'_, Key, Entry>>| {
                    c.next_if(|(k, _)| KeyBytes::of(k.as_str()) == want)
                });
            let found = next.or_else(|| {
                let range = self
                    .records
                    .range::<KeyBytes, _>((Bound::Included(want), Bound::Unbounded));
                let c = cursor.insert(range.peekable());
                c.next_if(|(k, _)| KeyBytes::of(k.as_str()) == want)
            });
            if let Some((_, entry)) = found.filter(|(_, e)| !e.expired(now)) {
                batch.push(i, entry);
            }
        }
        batch
    }

    /// Live keys starting with `prefix` and ending with `suffix`, sorted, then
    /// paged by `offset` and `limit`. Only the prefix's range is visited.
    pub fn list(
        &mut self,
        prefix: &str,
        suffix: &str,
        limit: Option<usize>,
        offset: usize,
        now: u64,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let listing = Listing {
            prefix,
            suffix,
            limit,
            offset,
        };
        self.list_each(&listing, now, |k| out.push(k.to_owned()));
        out
    }

    /// Calls `f` with each key `list` would return, in order, borrowed: for
    /// callers that convert them in place.
    pub fn list_each(&mut self, listing: &Listing<'_>, now: u64, mut f: impl FnMut(&str)) {
        self.sweep(now, SWEEP_BUDGET);
        let mut left = listing.limit.unwrap_or(usize::MAX);
        if left == 0 {
            return;
        }
        // When no deadline has passed, no record can be expired: skip reading
        // each record's deadline (it lives in the record's own allocation).
        let any_due = self.next_deadline().is_some_and(|d| d <= now);
        // Both ends of the prefix's range are found once, by two descents of
        // the tree; the walk between them compares no key against the prefix.
        let (prefix, suffix) = (listing.prefix, listing.suffix);
        let mut stack = [0u8; 64];
        let mut heap = Vec::new();
        let end = prefix_end(prefix, &mut stack, &mut heap);
        let start = Bound::Included(KeyBytes::of(prefix));
        let end = end.map_or(Bound::Unbounded, |e| Bound::Excluded(KeyBytes::new(e)));
        let mut skip = listing.offset;
        for (key, entry) in self.records.range::<KeyBytes, _>((start, end)) {
            let key = key.as_str();
            if (!suffix.is_empty() && !key.ends_with(suffix)) || (any_due && entry.expired(now)) {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            f(key);
            left -= 1;
            if left == 0 {
                return;
            }
        }
    }

    pub fn stats(&mut self, now: u64) -> Stats {
        self.sweep(now, usize::MAX);
        self.watchers.retain(|w| !w.is_closed());
        Stats {
            entries: self.records.len(),
            bytes: self.bytes,
            watchers: self.watchers.len(),
        }
    }

    /// The soonest deadline of any record, expired or not.
    pub fn next_deadline(&self) -> Option<u64> {
        self.expiry.first().map(|(d, _)| *d)
    }

    // ---- writes ------------------------------------------------------------

    /// Stores `write` if `cond` holds; returns the new revision.
    pub fn write(&mut self, write: Write, cond: Condition, now: u64) -> Result<u64> {
        self.sweep(now, SWEEP_BUDGET);
        let current = self.live_revision(&write.key, now);
        match (cond, current) {
            (Condition::Always, _) | (Condition::Absent, None) => {}
            (Condition::Absent, Some(_)) => {
                return Err(Error::Conflict(format!(
                    "key {} already exists (if_absent)",
                    quote(write.key.as_str())
                )));
            }
            (Condition::Revision(want), Some(have)) if want == Some(have) => {}
            (Condition::Revision(_), Some(_)) => {
                return Err(Error::Conflict(format!(
                    "key {} has changed since the given revision",
                    quote(write.key.as_str())
                )));
            }
            (Condition::Revision(_), None) => {
                return Err(Error::Conflict(format!(
                    "key {} does not exist (if_revision on a missing, deleted or expired key)",
                    quote(write.key.as_str())
                )));
            }
        }
        self.check_size(&write)?;
        Ok(self.insert(write, now))
    }

    /// Stores every write unconditionally, in order; all-or-nothing on size.
    pub fn write_many(&mut self, writes: Vec<Write>, now: u64) -> Result<Vec<u64>> {
        self.sweep(now, SWEEP_BUDGET);
        for w in &writes {
            self.check_size(w)?;
        }
        let mut revisions = Vec::with_capacity(writes.len());
        for write in writes {
            self.live_revision(&write.key, now);
            revisions.push(self.insert(write, now));
        }
        Ok(revisions)
    }

    /// Deletes `key`; true if a live record was deleted.
    pub fn delete(&mut self, key: &str, now: u64) -> bool {
        self.sweep(now, SWEEP_BUDGET);
        if self.expire_if_due(key, now) {
            return false;
        }
        self.remove(key, EventKind::Delete)
    }

    pub fn delete_many<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>, now: u64) -> usize {
        self.sweep(now, SWEEP_BUDGET);
        keys.into_iter()
            .filter(|key| !self.expire_if_due(key, now) && self.remove(key, EventKind::Delete))
            .count()
    }

    /// Removes up to `budget` expired records; returns how many.
    pub fn sweep(&mut self, now: u64, budget: usize) -> usize {
        let mut removed = 0;
        while removed < budget {
            match self.expiry.first() {
                Some((deadline, key)) if *deadline <= now => {
                    let key = key.clone();
                    self.remove(&key, EventKind::Expire);
                    removed += 1;
                }
                _ => break,
            }
        }
        removed
    }

    // ---- watch -------------------------------------------------------------

    /// A new watcher of keys under `prefix`, holding at most `capacity` unread events.
    pub fn watch(&mut self, prefix: String, capacity: usize) -> Arc<WatchQueue> {
        self.next_watch_id += 1;
        let queue = Arc::new(WatchQueue::new(self.next_watch_id, prefix, capacity));
        self.watchers.retain(|w| !w.is_closed());
        self.watchers.push(queue.clone());
        queue
    }

    /// Ids of the watchers to wake since the last call.
    pub fn take_woken(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.woken)
    }

    // ---- internals ---------------------------------------------------------

    fn check_size(&self, write: &Write) -> Result<()> {
        if let Some(max) = self.limits.max_bytes {
            let size = write.key.len()
                + write.value.len().saturating_sub(1)
                + write
                    .metadata
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
            if size > max {
                return Err(Error::Memory(format!(
                    "a record of {size} bytes cannot fit in a store bounded to {max} bytes"
                )));
            }
        }
        Ok(())
    }

    /// Removes `key` with an "expire" event if it is past its deadline.
    fn expire_if_due(&mut self, key: &str, now: u64) -> bool {
        let due = self
            .records
            .get(KeyBytes::of(key))
            .is_some_and(|e| e.expired(now));
        if due {
            self.remove(key, EventKind::Expire);
        }
        due
    }

    /// The revision of `key`'s live record; an expired one is removed (with
    /// its "expire" event) on the way. One lookup in the common case.
    fn live_revision(&mut self, key: &str, now: u64) -> Option<u64> {
        let entry = self.records.get(KeyBytes::of(key))?;
        if entry.expired(now) {
            self.remove(key, EventKind::Expire);
            return None;
        }
        Some(entry.revision())
    }

    /// Stores `write` as the newest revision of its key, then enforces the
    /// bounds. An overwrite replaces the entry in place: no key allocation.
    fn insert(&mut self, write: Write, now: u64) -> u64 {
        self.last_revision += 1;
        let revision = self.last_revision;
        let deadline = write.ttl.map(|ttl| now.saturating_add(ttl.max(1)).max(1));
        let entry = Entry::new(revision, deadline, &write.metadata, &write.value);
        let key = write.key;
        let new_deadline = entry.deadline();
        self.bytes += entry.bytes(&key);
        let event_record = self.has_watchers_for(&key).then(|| entry.snapshot());
        // The old record's index entries go before the new one's are added:
        // both could be the same `(deadline, key)`.
        match self.records.get_mut(KeyBytes::of(&key)) {
            Some(slot) => {
                let old = std::mem::replace(slot, entry);
                self.forget(&key, &old);
            }
            None => {
                self.records.insert(Key::new(&key), entry);
            }
        }
        if let Some(d) = new_deadline {
            self.expiry.insert((d, Box::from(key.as_str())));
        }
        let bounded = self.limits.bounded();
        if bounded {
            self.written.insert(revision, Box::from(key.as_str()));
        }
        if let Some(record) = event_record {
            self.emit(EventKind::Put, &key, Some(&record));
        }
        if bounded {
            self.enforce_limits(&key, now);
        }
        revision
    }

    /// Drops `key`'s record and emits `kind`; false if there was none.
    fn remove(&mut self, key: &str, kind: EventKind) -> bool {
        match self.records.remove_entry(KeyBytes::of(key)) {
            Some((key, old)) => {
                self.forget(key.as_str(), &old);
                self.emit(kind, key.as_str(), None);
                true
            }
            None => false,
        }
    }

    /// Undoes `old`'s share of the byte count and indexes.
    fn forget(&mut self, key: &str, old: &Entry) {
        self.bytes -= old.bytes(key);
        if let Some(d) = old.deadline() {
            self.expiry.remove(&(d, Box::from(key)));
        }
        if self.limits.bounded() {
            self.written.remove(&old.revision());
        }
    }

    fn over_limits(&self) -> bool {
        self.limits
            .max_entries
            .is_some_and(|m| self.records.len() > m)
            || self.limits.max_bytes.is_some_and(|m| self.bytes > m)
    }

    fn enforce_limits(&mut self, keep: &str, now: u64) {
        while self.over_limits() {
            let victim = self
                .expiry
                .iter()
                .find(|(_, k)| &**k != keep)
                .map(|(d, k)| (*d <= now, k.clone()))
                .or_else(|| {
                    self.written
                        .values()
                        .find(|k| &***k != keep)
                        .map(|k| (false, k.clone()))
                });
            let Some((expired, key)) = victim else { break };
            let kind = if expired {
                EventKind::Expire
            } else {
                EventKind::Delete
            };
            self.remove(&key, kind);
        }
    }

    fn has_watchers_for(&self, key: &str) -> bool {
        self.watchers.iter().any(|w| w.matches(key))
    }

    fn emit(&mut self, kind: EventKind, key: &str, record: Option<&Snapshot>) {
        if self.watchers.is_empty() {
            return;
        }
        let mut closed = false;
        for w in &self.watchers {
            if !w.matches(key) {
                continue;
            }
            let event = RawEvent {
                kind,
                key: key.to_owned(),
                record: record.cloned(),
            };
            if w.push(event) {
                self.woken.push(w.id);
            }
            closed |= w.is_closed();
        }
        if closed {
            self.watchers.retain(|w| !w.is_closed());
        }
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
