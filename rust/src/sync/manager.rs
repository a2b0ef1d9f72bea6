//! The lock table: named locks with leases, fencing tokens and FIFO waiters.
//!
//! Pure Rust, no PyO3, so `cargo test` covers the algorithm. Each name has at
//! most one holder (owner, token, lease deadline on the monotonic clock) and a
//! FIFO queue of waiters. A release, or the expiry of a lease, hands the lock
//! straight to the first waiter: the waiter never races newcomers for it.
//!
//! A reaper thread sleeps until the earliest lease deadline among *contended*
//! names, so an expired lease lets the next waiter in promptly even when
//! nobody calls into the manager. Uncontended names cost the reaper nothing.
//!
//! Waiters are told of their grant through a callback run *after* the table
//! lock is dropped, so a callback may take other locks (the GIL) freely.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::errors::{Error, Result};
use crate::quote::{float_repr, quote};

/// A lock granted to someone: its fencing token and when its lease ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    pub token: u64,
    /// The lease deadline on the monotonic clock.
    pub deadline: Instant,
    /// The same deadline as wall-clock epoch seconds, for users.
    pub expires_at: f64,
}

/// What a waiter learns: its grant, or that the manager closed under it.
pub type Outcome = Result<Grant>;

/// Called once with a waiter's outcome, never with the table locked.
pub type Notify = Box<dyn FnOnce(Outcome) + Send>;

/// Who holds a lock right now, as `holder()` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct HolderInfo {
    pub owner: String,
    pub token: u64,
    pub remaining: Duration,
}

struct Waiter {
    id: u64,
    owner: String,
    ttl: Duration,
    notify: Notify,
}

struct Holder {
    owner: String,
    token: u64,
    deadline: Instant,
}

#[derive(Default)]
struct Entry {
    holder: Option<Holder>,
    waiters: VecDeque<Waiter>,
}

struct Table {
    entries: HashMap<String, Entry>,
    /// Names with at least one waiter: the only ones the reaper watches.
    contended: HashSet<String>,
    /// One counter for every name: tokens strictly increase per name (and
    /// globally), and idle names can be dropped from the table without
    /// forgetting where their tokens were.
    last_token: u64,
    last_waiter: u64,
    closed: bool,
    /// The reaper starts with the first contended name: a manager that never
    /// sees contention never costs a thread.
    reaper_started: bool,
}

struct Shared {
    table: Mutex<Table>,
    /// Wakes the reaper when a name becomes contended or the manager closes.
    wake: Condvar,
}

/// Pending notifications, fired once the table lock is released.
type Fired = Vec<(Notify, Outcome)>;

fn wall_after(ttl: Duration) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    now + ttl.as_secs_f64()
}

impl Table {
    fn check_open(&self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed("the lock manager is closed".into()));
        }
        Ok(())
    }

    fn next_token(&mut self) -> u64 {
        self.last_token += 1;
        self.last_token
    }

    /// Gives `name` to its first waiter, if its holder is gone. Keeps the
    /// contended set and the entry map tidy either way.
    fn hand_over(&mut self, name: &str, now: Instant, fired: &mut Fired) {
        let token = self.last_token + 1;
        let Some(entry) = self.entries.get_mut(name) else {
            return;
        };
        if entry.holder.is_some() {
            return;
        }
        if let Some(w) = entry.waiters.pop_front() {
            let deadline = now + w.ttl;
            entry.holder = Some(Holder {
                owner: w.owner,
                token,
                deadline,
            });
            self.last_token = token;
            fired.push((
                w.notify,
                Ok(Grant {
                    token,
                    deadline,
                    expires_at: wall_after(w.ttl),
                }),
            ));
        }
        let entry = &self.entries[name];
        if entry.waiters.is_empty() {
            self.contended.remove(name);
            if entry.holder.is_none() {
                self.entries.remove(name);
            }
        }
    }

    /// The live holder of `name` with `token`, or `LockLost`.
    fn held(&mut self, name: &str, token: u64, now: Instant) -> Result<&mut Holder> {
        let lost = || {
            Error::LockLost(format!(
                "lock {} (token {token}) is no longer held",
                quote(name)
            ))
        };
        let entry = self.entries.get_mut(name).ok_or_else(lost)?;
        match &mut entry.holder {
            Some(h) if h.token == token && h.deadline > now => Ok(h),
            _ => Err(lost()),
        }
    }

    /// Drops `name`'s holder if its lease has run out.
    fn expire(&mut self, name: &str, now: Instant, fired: &mut Fired) {
        if let Some(entry) = self.entries.get_mut(name) {
            if entry.holder.as_ref().is_some_and(|h| h.deadline <= now) {
                entry.holder = None;
                self.hand_over(name, now, fired);
            }
        }
    }
}

fn fire(fired: Fired) {
    for (notify, outcome) in fired {
        notify(outcome);
    }
}

/// Either the lock at once, or a place in the queue.
pub enum Attempt {
    Granted(Grant),
    Queued(u64),
}

/// A thread's place in a queue: where its outcome lands.
pub struct Ticket {
    pub name: String,
    pub id: u64,
    slot: Arc<Slot>,
}

#[derive(Default)]
struct Slot {
    outcome: Mutex<Option<Outcome>>,
    ready: Condvar,
}

impl Ticket {
    /// Waits up to `timeout` (forever when None) for the outcome.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        let mut guard = self
            .slot
            .outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(outcome) = guard.take() {
                return Some(outcome);
            }
            match deadline {
                None => {
                    guard = self
                        .slot
                        .ready
                        .wait(guard)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    guard = self
                        .slot
                        .ready
                        .wait_timeout(guard, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}

/// The lock manager. Cheap to share behind an `Arc`; closing fails all waiters.
pub struct LockManager {
    shared: Arc<Shared>,
}

impl Default for LockManager {
    fn default() -> Self {
        Self::new()
    }
}

impl LockManager {
    /// An empty manager; its reaper thread starts on first contention.
    pub fn new() -> Self {
        let shared = Arc::new(Shared {
            table: Mutex::new(Table {
                entries: HashMap::new(),
                contended: HashSet::new(),
                last_token: 0,
                last_waiter: 0,
                closed: false,
                reaper_started: false,
            }),
            wake: Condvar::new(),
        });
        Self { shared }
    }

    fn start_reaper(&self, t: &mut Table) {
        if t.reaper_started {
            return;
        }
        t.reaper_started = true;
        let for_reaper = Arc::clone(&self.shared);
        // Detached on purpose: it exits by itself once the manager closes, and
        // joining it from a drop could wait on a callback that wants the GIL.
        thread::Builder::new()
            .name("microstd-sync-reaper".into())
            .spawn(move || reap(&for_reaper))
            .expect("spawning the lock reaper thread");
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.shared
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock if it is free (or its lease has expired) and nobody queues for it.
    pub fn try_acquire(&self, name: &str, owner: &str, ttl: Duration) -> Result<Option<Grant>> {
        let mut fired = Fired::new();
        let result = {
            let mut t = self.table();
            t.check_open()?;
            let now = Instant::now();
            t.expire(name, now, &mut fired);
            Self::take_if_free(&mut t, name, owner, ttl, now)
        };
        fire(fired);
        Ok(result)
    }

    fn take_if_free(
        t: &mut Table,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: Instant,
    ) -> Option<Grant> {
        if let Some(entry) = t.entries.get(name) {
            if entry.holder.is_some() || !entry.waiters.is_empty() {
                return None;
            }
        }
        let token = t.next_token();
        let deadline = now + ttl;
        t.entries.entry(name.to_owned()).or_default().holder = Some(Holder {
            owner: owner.to_owned(),
            token,
            deadline,
        });
        Some(Grant {
            token,
            deadline,
            expires_at: wall_after(ttl),
        })
    }

    /// The lock now if free, else a place at the back of the queue; `notify`
    /// is called once, later, with the outcome (it is dropped unused when the
    /// lock is granted at once).
    pub fn acquire_or_queue(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        notify: Notify,
    ) -> Result<Attempt> {
        let mut fired = Fired::new();
        let result = {
            let mut t = self.table();
            t.check_open()?;
            let now = Instant::now();
            t.expire(name, now, &mut fired);
            if let Some(g) = Self::take_if_free(&mut t, name, owner, ttl, now) {
                Attempt::Granted(g)
            } else {
                t.last_waiter += 1;
                let id = t.last_waiter;
                let entry = t.entries.entry(name.to_owned()).or_default();
                entry.waiters.push_back(Waiter {
                    id,
                    owner: owner.to_owned(),
                    ttl,
                    notify,
                });
                if t.contended.insert(name.to_owned()) {
                    self.start_reaper(&mut t);
                    self.shared.wake.notify_one();
                }
                Attempt::Queued(id)
            }
        };
        fire(fired);
        Ok(result)
    }

    /// Like `acquire_or_queue`, for a thread that will block on the ticket.
    pub fn acquire_or_ticket(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<std::result::Result<Grant, Ticket>> {
        let slot = Arc::new(Slot::default());
        let target = Arc::clone(&slot);
        let notify: Notify = Box::new(move |outcome| {
            *target
                .outcome
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(outcome);
            target.ready.notify_one();
        });
        Ok(match self.acquire_or_queue(name, owner, ttl, notify)? {
            Attempt::Granted(g) => Ok(g),
            Attempt::Queued(id) => Err(Ticket {
                name: name.to_owned(),
                id,
                slot,
            }),
        })
    }

    /// Leaves the queue. True if the waiter was still queued (it will never be
    /// notified); false if its outcome was already decided and is on its way.
    pub fn cancel(&self, name: &str, waiter: u64) -> bool {
        let mut fired = Fired::new();
        let removed = {
            let mut t = self.table();
            let Some(entry) = t.entries.get_mut(name) else {
                return false;
            };
            let Some(pos) = entry.waiters.iter().position(|w| w.id == waiter) else {
                return false;
            };
            entry.waiters.remove(pos);
            // The holder may have expired while this waiter sat first in line.
            t.expire(name, Instant::now(), &mut fired);
            t.hand_over(name, Instant::now(), &mut fired);
            true
        };
        fire(fired);
        removed
    }

    /// Gives up a ticket: None if it left the queue, else the outcome that
    /// was already decided for it (the caller then owns that grant).
    pub fn cancel_ticket(&self, ticket: &Ticket) -> Option<Outcome> {
        if self.cancel(&ticket.name, ticket.id) {
            return None;
        }
        // Decided under the table lock; the notification lands right after.
        ticket.wait(None)
    }

    /// Takes up a grant that was handed to a waiter while it was not running:
    /// the lease restarts from now, so its expiry counts from the moment the
    /// waiter gets it. None if the grant ran out first (it may be someone
    /// else's by now): the waiter has to queue again.
    pub fn claim(&self, name: &str, grant: Grant, ttl: Duration) -> Option<Grant> {
        self.refresh(name, grant.token, ttl).ok()
    }

    /// Blocks until granted, or `LockTimeout` after `wait` (None: forever).
    pub fn acquire(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        wait: Option<Duration>,
    ) -> Result<Grant> {
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            let ticket = match self.acquire_or_ticket(name, owner, ttl)? {
                Ok(g) => return Ok(g),
                Err(ticket) => ticket,
            };
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let outcome = match ticket.wait(left) {
                Some(outcome) => outcome,
                None => match self.cancel_ticket(&ticket) {
                    Some(outcome) => outcome,
                    None => return Err(timeout(name, wait.map_or(0.0, |w| w.as_secs_f64()))),
                },
            };
            if let Some(g) = self.claim(name, outcome?, ttl) {
                return Ok(g);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(timeout(name, wait.map_or(0.0, |w| w.as_secs_f64())));
            }
        }
    }

    /// Ends a lease; the next waiter gets the lock at once.
    pub fn release(&self, name: &str, token: u64) -> Result<()> {
        let mut fired = Fired::new();
        {
            let mut t = self.table();
            let now = Instant::now();
            let outcome = t.held(name, token, now).map(|_| ());
            if outcome.is_err() {
                // A late holder still tidies up its own expired lease.
                t.expire(name, now, &mut fired);
                drop(t);
                fire(fired);
                return outcome;
            }
            if let Some(entry) = t.entries.get_mut(name) {
                entry.holder = None;
            }
            t.hand_over(name, now, &mut fired);
        }
        fire(fired);
        Ok(())
    }

    /// Extends a live lease to `ttl` from now.
    pub fn refresh(&self, name: &str, token: u64, ttl: Duration) -> Result<Grant> {
        let mut fired = Fired::new();
        let result = {
            let mut t = self.table();
            let now = Instant::now();
            match t.held(name, token, now) {
                Ok(h) => {
                    h.deadline = now + ttl;
                    Ok(Grant {
                        token,
                        deadline: h.deadline,
                        expires_at: wall_after(ttl),
                    })
                }
                Err(e) => {
                    t.expire(name, now, &mut fired);
                    Err(e)
                }
            }
        };
        fire(fired);
        result
    }

    /// Who holds `name` now (an expired lease counts as free).
    pub fn holder(&self, name: &str) -> Option<HolderInfo> {
        let t = self.table();
        let now = Instant::now();
        let h = t.entries.get(name)?.holder.as_ref()?;
        (h.deadline > now).then(|| HolderInfo {
            owner: h.owner.clone(),
            token: h.token,
            remaining: h.deadline - now,
        })
    }

    /// Number of waiters queued for `name`.
    pub fn waiting(&self, name: &str) -> usize {
        self.table()
            .entries
            .get(name)
            .map_or(0, |e| e.waiters.len())
    }

    /// Closes the manager: every waiter gets `Closed`, every lease is lost.
    pub fn close(&self) {
        let mut fired = Fired::new();
        {
            let mut t = self.table();
            if t.closed {
                return;
            }
            t.closed = true;
            for (_, entry) in t.entries.drain() {
                for w in entry.waiters {
                    fired.push((
                        w.notify,
                        Err(Error::Closed("the lock manager was closed".into())),
                    ));
                }
            }
            t.contended.clear();
        }
        self.shared.wake.notify_all();
        fire(fired);
    }

    pub fn is_closed(&self) -> bool {
        self.table().closed
    }
}

impl Drop for LockManager {
    fn drop(&mut self) {
        self.close();
    }
}

/// The `LockTimeout` error for a wait that ran out (`wait` in seconds, as given).
pub fn timeout(name: &str, wait: f64) -> Error {
    if wait == 0.0 {
        return Error::LockTimeout(format!("lock {} is held", quote(name)));
    }
    Error::LockTimeout(format!(
        "lock {} not acquired within {}s",
        quote(name),
        float_repr(wait)
    ))
}

/// The reaper: hands expired leases of contended names to their waiters.
fn reap(shared: &Shared) {
    let mut t = shared.table.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if t.closed {
            return;
        }
        let now = Instant::now();
        let mut fired = Fired::new();
        let mut next: Option<Instant> = None;
        let names: Vec<String> = t.contended.iter().cloned().collect();
        for name in &names {
            t.expire(name, now, &mut fired);
            if let Some(h) = t.entries.get(name).and_then(|e| e.holder.as_ref()) {
                next = Some(next.map_or(h.deadline, |n| n.min(h.deadline)));
            }
        }
        if !fired.is_empty() {
            drop(t);
            fire(fired);
            t = shared.table.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        t = match next {
            None => shared.wake.wait(t).unwrap_or_else(PoisonError::into_inner),
            Some(deadline) => {
                shared
                    .wake
                    .wait_timeout(t, deadline.saturating_duration_since(now))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
