//! Streams and their durable consumers (pure Rust): the twin of `PythonStreams`.
//!
//! Generic over the stored message `M` and a member's target `T` (both cheap
//! to clone: the binding uses `Arc`s), so `cargo test` runs it without
//! Python. Operations that hand messages out return `Delivery`s; the caller
//! passes them to their targets after releasing its lock, so a target may
//! call back in. Times are given: `now` is monotonic seconds (deadlines),
//! `wall` is epoch seconds (message times, `max_age`, start by time).

use std::collections::HashMap;
use std::sync::Arc;

use super::consumer::{Consumer, Member, Pending};
use super::stream::{Limits, Stream};
use crate::broker::hashing::FoldState;
use crate::broker::subjects::{validate_pattern, validate_subject, Trie};
use crate::errors::{Error, Result};

/// One message handed to one member.
#[derive(Debug, Clone)]
pub struct Delivery<M, T> {
    pub target: T,
    pub message: M,
    pub stream: Arc<str>,
    pub cid: u64,
    pub seq: u64,
    /// Deliveries of this message so far, this one included.
    pub count: u32,
}

/// Where a new consumer starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// Messages stored from now on.
    New,
    /// The oldest retained.
    First,
    /// The first stored at or after this wall-clock time.
    Time(f64),
    /// The first with this sequence or later.
    Sequence(u64),
}

/// What a settle call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    /// Already settled, or an earlier delivery's (stale) nack / term / progress.
    Ignored,
}

/// A durable consumer's counts, for `info`.
#[derive(Debug, Clone, PartialEq)]
pub struct DurableSummary {
    pub name: Box<str>,
    pub pattern: Box<str>,
    pub pending: u64,
    pub unacked: u64,
    pub redelivered: u64,
    pub dead_lettered: u64,
    pub consumers: u64,
}

/// A stream's state, for `info`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSummary {
    pub name: Arc<str>,
    pub subjects: Vec<Box<str>>,
    pub limits: Limits,
    pub messages: u64,
    pub bytes: u64,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub durables: Vec<DurableSummary>,
}

#[derive(Debug)]
pub struct Streams<M, T> {
    by_id: HashMap<u64, Stream<M>, FoldState>,
    names: HashMap<Box<str>, u64>,
    /// Stream subjects -> stream id.
    trie: Trie,
    consumers: HashMap<u64, Consumer<T>, FoldState>,
    /// Member id -> consumer id.
    members: HashMap<u64, u64, FoldState>,
    next_id: u64,
    scratch: Vec<u64>,
}

impl<M, T> Default for Streams<M, T> {
    fn default() -> Self {
        Self {
            by_id: HashMap::default(),
            names: HashMap::new(),
            trie: Trie::default(),
            consumers: HashMap::default(),
            members: HashMap::default(),
            next_id: 1,
            scratch: Vec::new(),
        }
    }
}

/// True if every topic `pattern` matches is also matched by the stream subject `subject`.
pub fn covers(subject: &str, pattern: &str) -> bool {
    let s: Vec<&str> = subject.split('.').collect();
    let p: Vec<&str> = pattern.split('.').collect();
    for (i, token) in s.iter().enumerate() {
        if *token == ">" {
            return p.len() > i;
        }
        let Some(&theirs) = p.get(i) else {
            return false;
        };
        if theirs == ">" || (*token != "*" && (theirs == "*" || theirs != *token)) {
            return false;
        }
    }
    p.len() == s.len()
}

/// True if some topic matches both patterns.
pub fn overlaps(a: &str, b: &str) -> bool {
    let x: Vec<&str> = a.split('.').collect();
    let y: Vec<&str> = b.split('.').collect();
    for i in 0..x.len().max(y.len()) {
        let (tx, ty) = (x.get(i).copied(), y.get(i).copied());
        if tx == Some(">") {
            return ty.is_some();
        }
        if ty == Some(">") {
            return tx.is_some();
        }
        match (tx, ty) {
            (Some(tx), Some(ty)) if tx == ty || tx == "*" || ty == "*" => {}
            _ => return false,
        }
    }
    true
}

impl<M, T> Streams<M, T> {
    /// Every member's target, each once (the garbage collector's view).
    pub fn member_targets(&self) -> impl Iterator<Item = &T> {
        self.consumers
            .values()
            .flat_map(|c| c.members.iter().map(|m| &m.target))
    }
}

impl<M: Clone, T: Clone> Streams<M, T> {
    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// True once any stream exists.
    pub fn is_active(&self) -> bool {
        !self.by_id.is_empty()
    }

    // --- streams --------------------------------------------------------------

    /// Create or update stream `name`; true if created. `subjects` must be valid
    /// patterns, none overlapping another stream's.
    pub fn add_stream(
        &mut self,
        name: &str,
        subjects: &[&str],
        limits: Limits,
        wall: f64,
    ) -> Result<bool> {
        for subject in subjects {
            validate_pattern(subject)?;
        }
        for other in self.by_id.values() {
            if &*other.name == name {
                continue;
            }
            for mine in subjects {
                if let Some(theirs) = other.subjects.iter().find(|t| overlaps(mine, t)) {
                    return Err(Error::Invalid(format!(
                        "stream subject '{mine}' overlaps '{theirs}' of stream '{}'",
                        other.name
                    )));
                }
            }
        }
        let subjects: Vec<Box<str>> = subjects.iter().map(|s| (*s).into()).collect();
        let (sid, created) = if let Some(&sid) = self.names.get(name) {
            (sid, false)
        } else {
            let sid = self.fresh_id();
            self.by_id
                .insert(sid, Stream::new(sid, name, subjects.clone()));
            self.names.insert(name.into(), sid);
            (sid, true)
        };
        let Some(stream) = self.by_id.get_mut(&sid) else {
            return Err(Error::NotFound(format!("no stream '{name}'")));
        };
        for subject in &stream.subjects {
            self.trie.remove(subject, sid);
        }
        stream.subjects = subjects;
        for subject in &stream.subjects {
            self.trie.insert(subject, sid);
        }
        stream.limits = limits;
        stream.evict(wall);
        let only = (stream.subjects.len() == 1).then(|| stream.subjects[0].clone());
        for cid in &stream.consumers {
            if let Some(consumer) = self.consumers.get_mut(cid) {
                consumer.match_all = only.as_deref() == Some(&*consumer.pattern);
            }
        }
        Ok(created)
    }

    pub fn delete_stream(&mut self, name: &str) -> bool {
        let Some(sid) = self.names.remove(name) else {
            return false;
        };
        let Some(stream) = self.by_id.remove(&sid) else {
            return false;
        };
        for subject in &stream.subjects {
            self.trie.remove(subject, sid);
        }
        for cid in stream.consumers {
            self.drop_consumer(cid);
        }
        true
    }

    /// The stream whose subjects cover `pattern`.
    pub fn stream_for(&self, pattern: &str) -> Option<Arc<str>> {
        self.by_id
            .values()
            .find(|s| s.subjects.iter().any(|subject| covers(subject, pattern)))
            .map(|s| Arc::clone(&s.name))
    }

    // --- publishing -------------------------------------------------------------

    /// Keep `message` in every stream `topic` matches and hand it out; returns how
    /// many streams kept it.
    pub fn store(
        &mut self,
        message: &M,
        topic: &str,
        size: u64,
        now: f64,
        wall: f64,
        out: &mut Vec<Delivery<M, T>>,
    ) -> Result<usize> {
        let mut found = std::mem::take(&mut self.scratch);
        found.clear();
        self.trie.find(topic, &mut found);
        if found.is_empty() {
            self.scratch = found;
            return Ok(0);
        }
        validate_subject(topic)?;
        for &sid in &found {
            let Some(stream) = self.by_id.get_mut(&sid) else {
                continue;
            };
            stream.push(message.clone(), topic, size, wall);
            for &cid in &stream.consumers {
                let Some(consumer) = self.consumers.get_mut(&cid) else {
                    continue;
                };
                if !consumer.members.is_empty() && consumer.wants(topic) {
                    pump(consumer, stream, now, out);
                }
            }
        }
        let n = found.len();
        self.scratch = found;
        Ok(n)
    }

    // --- consumers ----------------------------------------------------------------

    /// The id of durable `name` of stream `stream`, created at `start` if new. An
    /// existing one keeps its position and takes the new `ack_wait`; another filter
    /// pattern is an error.
    pub fn consumer(
        &mut self,
        stream: &str,
        name: &str,
        pattern: &str,
        ack_wait: f64,
        start: Start,
    ) -> Result<u64> {
        let sid = *self
            .names
            .get(stream)
            .ok_or_else(|| Error::NotFound(format!("no stream '{stream}'")))?;
        let existing = self.by_id.get(&sid).and_then(|s| {
            s.consumers
                .iter()
                .copied()
                .find(|cid| self.consumers.get(cid).is_some_and(|c| &*c.name == name))
        });
        if let Some(cid) = existing {
            if let Some(c) = self.consumers.get_mut(&cid) {
                if &*c.pattern != pattern {
                    return Err(Error::Invalid(format!(
                        "durable '{name}' of stream '{stream}' filters '{}', not '{pattern}': use \
                         another durable name, or delete it first",
                        c.pattern
                    )));
                }
                c.ack_wait = ack_wait;
            }
            return Ok(cid);
        }
        let cid = self.fresh_id();
        let Some(s) = self.by_id.get_mut(&sid) else {
            return Err(Error::NotFound(format!("no stream '{stream}'")));
        };
        let cursor = match start {
            Start::New => s.last() + 1,
            Start::First => s.first(),
            Start::Sequence(seq) => seq.max(s.first()),
            Start::Time(t) => s.first_since(t),
        };
        let match_all = s.subjects.len() == 1 && &*s.subjects[0] == pattern;
        s.consumers.push(cid);
        self.consumers.insert(
            cid,
            Consumer::new(cid, sid, name, pattern, match_all, ack_wait, cursor),
        );
        Ok(cid)
    }

    pub fn delete_consumer(&mut self, stream: &str, name: &str) -> bool {
        let Some(&sid) = self.names.get(stream) else {
            return false;
        };
        let found = self.by_id.get(&sid).and_then(|s| {
            s.consumers
                .iter()
                .copied()
                .find(|cid| self.consumers.get(cid).is_some_and(|c| &*c.name == name))
        });
        match found {
            Some(cid) => {
                self.drop_consumer(cid);
                true
            }
            None => false,
        }
    }

    fn drop_consumer(&mut self, cid: u64) {
        if let Some(consumer) = self.consumers.remove(&cid) {
            for member in &consumer.members {
                self.members.remove(&member.mid);
            }
            if let Some(stream) = self.by_id.get_mut(&consumer.sid) {
                stream.consumers.retain(|&c| c != cid);
            }
        }
    }

    /// Add a member to consumer `cid` with room for `capacity` unsettled messages.
    pub fn attach(
        &mut self,
        cid: u64,
        target: T,
        capacity: usize,
        now: f64,
        wall: f64,
        out: &mut Vec<Delivery<M, T>>,
    ) -> Result<u64> {
        let mid = self.fresh_id();
        let consumer = self
            .consumers
            .get_mut(&cid)
            .ok_or_else(|| Error::NotFound("the durable subscription was deleted".into()))?;
        consumer.members.push(Member {
            mid,
            target,
            capacity,
            inflight: 0,
        });
        self.members.insert(mid, cid);
        self.pump_consumer(cid, now, wall, out);
        Ok(mid)
    }

    /// Hand member `mid` nothing more (it drains before `detach`).
    pub fn pause(&mut self, mid: u64) {
        let Some(&cid) = self.members.get(&mid) else {
            return;
        };
        if let Some(member) = self.consumers.get_mut(&cid).and_then(|c| c.member_mut(mid)) {
            member.capacity = 0;
        }
    }

    /// Remove member `mid`; what it still holds goes out again at once.
    pub fn detach(&mut self, mid: u64, now: f64, wall: f64, out: &mut Vec<Delivery<M, T>>) {
        let Some(cid) = self.members.remove(&mid) else {
            return;
        };
        let Some(consumer) = self.consumers.get_mut(&cid) else {
            return;
        };
        consumer.remove_member(mid);
        let mut held: Vec<u64> = consumer
            .pending
            .iter()
            .filter(|(_, p)| p.member == Some(mid))
            .map(|(&seq, _)| seq)
            .collect();
        held.sort_unstable();
        for seq in held {
            if let Some(p) = consumer.pending.get_mut(&seq) {
                p.member = None;
                p.deadline = 0.0;
                consumer.ready.push_back(seq);
            }
        }
        if !consumer.members.is_empty() {
            self.pump_consumer(cid, now, wall, out);
        }
    }

    // --- settling ------------------------------------------------------------------

    /// Done with the message: an ack of any of its deliveries counts.
    pub fn ack(
        &mut self,
        cid: u64,
        seq: u64,
        now: f64,
        wall: f64,
        out: &mut Vec<Delivery<M, T>>,
    ) -> Settled {
        self.finish(cid, seq, None, false, now, wall, out)
    }

    /// Never redeliver; `dead` counts it as dead-lettered. Only the current delivery counts.
    #[allow(clippy::too_many_arguments)]
    pub fn term(
        &mut self,
        cid: u64,
        seq: u64,
        count: u32,
        dead: bool,
        now: f64,
        wall: f64,
        out: &mut Vec<Delivery<M, T>>,
    ) -> Settled {
        self.finish(cid, seq, Some(count), dead, now, wall, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        cid: u64,
        seq: u64,
        count: Option<u32>,
        dead: bool,
        now: f64,
        wall: f64,
        out: &mut Vec<Delivery<M, T>>,
    ) -> Settled {
        let Some(consumer) = self.consumers.get_mut(&cid) else {
            return Settled::Ignored;
        };
        let Some(pending) = consumer.pending.get(&seq).copied() else {
            return Settled::Ignored;
        };
        if count.is_some_and(|c| c != pending.count) {
            return Settled::Ignored;
        }
        consumer.pending.remove(&seq);
        if dead {
            consumer.dead_lettered += 1;
        }
        if let Some(mid) = pending.member {
            consumer.let_go(mid);
            self.pump_consumer(cid, now, wall, out);
        }
        Settled::Done
    }

    /// Put the current delivery back, to go out again after `delay` seconds (0: at once).
    /// `uncount` (a release of a message never started) takes the delivery back too.
    #[allow(clippy::too_many_arguments)]
    pub fn nack(
        &mut self,
        cid: u64,
        seq: u64,
        count: u32,
        delay: f64,
        uncount: bool,
        now: f64,
        wall: f64,
        out: &mut Vec<Delivery<M, T>>,
    ) -> Settled {
        let Some(consumer) = self.consumers.get_mut(&cid) else {
            return Settled::Ignored;
        };
        let Some(pending) = consumer.pending.get_mut(&seq) else {
            return Settled::Ignored;
        };
        if pending.count != count {
            return Settled::Ignored;
        }
        let Some(mid) = pending.member.take() else {
            return Settled::Ignored;
        };
        if uncount {
            pending.count -= 1;
        }
        if delay > 0.0 {
            pending.deadline = now + delay;
            let deadline = pending.deadline;
            consumer.set_timer(seq, deadline);
        } else {
            pending.deadline = 0.0;
            consumer.ready.push_back(seq);
        }
        consumer.let_go(mid);
        self.pump_consumer(cid, now, wall, out);
        Settled::Done
    }

    /// The current delivery is still being worked on: restart its `ack_wait`.
    pub fn progress(&mut self, cid: u64, seq: u64, count: u32, now: f64) -> Settled {
        let Some(consumer) = self.consumers.get_mut(&cid) else {
            return Settled::Ignored;
        };
        let ack_wait = consumer.ack_wait;
        let Some(pending) = consumer.pending.get_mut(&seq) else {
            return Settled::Ignored;
        };
        if pending.count != count || pending.member.is_none() {
            return Settled::Ignored;
        }
        pending.deadline = now + ack_wait;
        let deadline = pending.deadline;
        consumer.set_timer(seq, deadline);
        Settled::Done
    }

    // --- timers ------------------------------------------------------------------------

    /// Expire consumer `cid`'s due timers, hand out what that frees, and return the
    /// seconds until its next timer (None: none, or no such consumer).
    pub fn tick(
        &mut self,
        cid: u64,
        now: f64,
        wall: f64,
        out: &mut Vec<Delivery<M, T>>,
    ) -> Option<f64> {
        let consumer = self.consumers.get_mut(&cid)?;
        if consumer.expire(now) && !consumer.members.is_empty() {
            self.pump_consumer(cid, now, wall, out);
        }
        let consumer = self.consumers.get_mut(&cid)?;
        consumer.next_deadline().map(|d| (d - now).max(0.0))
    }

    fn pump_consumer(&mut self, cid: u64, now: f64, wall: f64, out: &mut Vec<Delivery<M, T>>) {
        let Some(consumer) = self.consumers.get_mut(&cid) else {
            return;
        };
        let Some(stream) = self.by_id.get_mut(&consumer.sid) else {
            return;
        };
        if stream.limits.max_age.is_some() {
            stream.evict(wall);
        }
        pump(consumer, stream, now, out);
    }

    // --- looking -------------------------------------------------------------------------

    /// Every stream and its durables' counts.
    pub fn info(&mut self, wall: f64) -> Vec<StreamSummary> {
        let mut out = Vec::with_capacity(self.by_id.len());
        for stream in self.by_id.values_mut() {
            stream.evict(wall);
            let mut durables = Vec::with_capacity(stream.consumers.len());
            for cid in &stream.consumers {
                let Some(c) = self.consumers.get(cid) else {
                    continue;
                };
                let cursor = c.cursor.max(stream.first());
                let waiting = if c.match_all {
                    stream.last() + 1 - cursor
                } else {
                    (cursor..=stream.last())
                        .filter(|&seq| stream.get(seq).is_some_and(|e| c.wants(&e.topic)))
                        .count() as u64
                };
                durables.push(DurableSummary {
                    name: c.name.clone(),
                    pattern: c.pattern.clone(),
                    pending: waiting,
                    unacked: c.pending.len() as u64,
                    redelivered: c.redelivered() as u64,
                    dead_lettered: c.dead_lettered,
                    consumers: c.members.len() as u64,
                });
            }
            out.push(StreamSummary {
                name: Arc::clone(&stream.name),
                subjects: stream.subjects.clone(),
                limits: stream.limits,
                messages: stream.len() as u64,
                bytes: stream.bytes(),
                first_sequence: stream.first(),
                last_sequence: stream.last(),
                durables,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Give members with room the next messages: ready redeliveries first, then new ones.
fn pump<M: Clone, T: Clone>(
    consumer: &mut Consumer<T>,
    stream: &Stream<M>,
    now: f64,
    out: &mut Vec<Delivery<M, T>>,
) {
    loop {
        // The next message: a redelivery, or the next new one the filter passes.
        let mut next: Option<(u64, Option<u64>)> = None;
        while let Some(seq) = consumer.ready.pop_front() {
            match consumer.pending.get(&seq) {
                Some(p) if p.member.is_none() => {
                    if stream.get(seq).is_some() {
                        next = Some((seq, p.avoid));
                        break;
                    }
                    consumer.pending.remove(&seq); // evicted by a limit meanwhile
                }
                _ => {} // settled (a late ack) or already out again
            }
        }
        let from_ready = next.is_some();
        if next.is_none() {
            let mut cursor = consumer.cursor.max(stream.first());
            while cursor <= stream.last() {
                if stream.get(cursor).is_some_and(|e| consumer.wants(&e.topic)) {
                    next = Some((cursor, None));
                    break;
                }
                cursor += 1;
            }
            consumer.cursor = cursor; // at the candidate, not past it
        }
        let Some((seq, avoid)) = next else {
            return;
        };
        let Some(index) = consumer.free_member(avoid) else {
            if from_ready {
                consumer.ready.push_front(seq);
            }
            return;
        };
        if !from_ready {
            consumer.cursor = seq + 1;
        }
        let Some(entry) = stream.get(seq) else {
            continue;
        };
        let deadline = now + consumer.ack_wait;
        let member = &mut consumer.members[index];
        member.inflight += 1;
        let mid = member.mid;
        let target = member.target.clone();
        let pending = consumer.pending.entry(seq).or_insert(Pending {
            count: 0,
            member: None,
            deadline: 0.0,
            avoid: None,
        });
        pending.count += 1;
        pending.member = Some(mid);
        pending.deadline = deadline;
        pending.avoid = None;
        let count = pending.count;
        consumer.set_timer(seq, deadline);
        out.push(Delivery {
            target,
            message: entry.message.clone(),
            stream: Arc::clone(&stream.name),
            cid: consumer.cid,
            seq,
            count,
        });
    }
}
