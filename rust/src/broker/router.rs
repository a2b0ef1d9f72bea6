//! Subscriptions, queue groups and the match cache over the trie (pure Rust).
//!
//! Generic over the target type so `cargo test` runs it without Python.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::groups::{Group, Picker};
use super::hashing::FoldState;
use super::subjects::{validate_pattern, validate_subject, Trie};
use crate::errors::{Error, Result};

/// Distinct subjects kept in the match cache; past this the cache starts over,
/// so memory stays bounded whatever subjects are published.
pub const CACHE_MAX: usize = 8192;

/// What one subject matches: every plain subscriber, and one picker per queue group.
#[derive(Debug)]
pub struct Matched<T> {
    pub plain: Vec<Arc<T>>,
    pub groups: Vec<Picker<T>>,
}

#[derive(Debug)]
struct Sub {
    pattern: Box<str>,
    queue: Option<Box<str>>,
}

type GroupKey = (Box<str>, Box<str>);

/// Cache keys are already hashes (Python's cached `str` hash from the binding,
/// FNV-1a otherwise): hashing them again would only cost time.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One cached subject per hash. Two subjects whose 64-bit hashes collide just
/// take turns in the slot (a hit always compares the text), so the cache
/// needs no bucket list and a miss costs one allocation less.
type Cache<T> = HashMap<u64, (Box<str>, Arc<Matched<T>>), BuildHasherDefault<PassThrough>>;

/// FNV-1a, the cache hash when the caller has none.
pub fn subject_hash(subject: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in subject.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The routing table of one broker.
#[derive(Debug)]
pub struct Router<T> {
    trie: Trie,
    subs: HashMap<u64, (Sub, Arc<T>), FoldState>,
    groups: HashMap<GroupKey, Group<T>>,
    group_of_tid: HashMap<u64, GroupKey, FoldState>,
    cache: Cache<T>,
    next_id: u64,
    /// Reused by every trie walk, so a cache miss allocates only what it keeps.
    scratch: Vec<u64>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            trie: Trie::default(),
            subs: HashMap::default(),
            groups: HashMap::new(),
            group_of_tid: HashMap::default(),
            cache: Cache::default(),
            next_id: 1,
            scratch: Vec::new(),
        }
    }
}

impl<T> Router<T> {
    /// Every live subscription's value, each once (the garbage collector's view:
    /// the groups and the match cache hold only clones of these).
    pub fn entries(&self) -> impl Iterator<Item = &Arc<T>> {
        self.subs.values().map(|(_, entry)| entry)
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Subscribe `target` to `pattern`, in queue group `queue` if given; returns its id.
    pub fn subscribe(&mut self, pattern: &str, queue: Option<&str>, target: Arc<T>) -> Result<u64> {
        validate_pattern(pattern)?;
        if queue.is_some_and(|q| q.is_empty() || q.chars().any(char::is_whitespace)) {
            return Err(Error::InvalidTopic(
                "queue names must be non-empty and without whitespace".into(),
            ));
        }
        let sid = self.fresh_id();
        match queue {
            None => self.trie.insert(pattern, sid),
            Some(q) => {
                let key: GroupKey = (pattern.into(), q.into());
                if !self.groups.contains_key(&key) {
                    let tid = self.fresh_id();
                    self.trie.insert(pattern, tid);
                    self.group_of_tid.insert(tid, key.clone());
                    self.groups.insert(key.clone(), Group::new(tid));
                }
                if let Some(group) = self.groups.get_mut(&key) {
                    group.members.push((sid, Arc::clone(&target)));
                }
            }
        }
        let sub = Sub {
            pattern: pattern.into(),
            queue: queue.map(Into::into),
        };
        self.subs.insert(sid, (sub, target));
        self.clear_cache();
        Ok(sid)
    }

    /// Remove subscription `sid`; returns its target, or None if it was not there.
    pub fn unsubscribe(&mut self, sid: u64) -> Option<Arc<T>> {
        let (sub, target) = self.subs.remove(&sid)?;
        match sub.queue {
            None => {
                self.trie.remove(&sub.pattern, sid);
            }
            Some(q) => {
                let key: GroupKey = (sub.pattern.clone(), q);
                if let Some(group) = self.groups.get_mut(&key) {
                    group.members.retain(|(id, _)| *id != sid);
                    if group.members.is_empty() {
                        let tid = group.tid;
                        self.trie.remove(&sub.pattern, tid);
                        self.group_of_tid.remove(&tid);
                        self.groups.remove(&key);
                    }
                }
            }
        }
        self.clear_cache();
        Some(target)
    }

    fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// What `subject` matches: from the cache, or by walking the trie once.
    pub fn lookup(&mut self, subject: &str) -> Result<Arc<Matched<T>>> {
        self.lookup_hashed(subject_hash(subject), subject)
    }

    /// `lookup` with the subject's hash given; one router must always use the same hash.
    pub fn lookup_hashed(&mut self, hash: u64, subject: &str) -> Result<Arc<Matched<T>>> {
        if let Some((key, hit)) = self.cache.get(&hash) {
            if **key == *subject {
                return Ok(Arc::clone(hit));
            }
        }
        // Only valid subjects reach the cache, so a hit needs no validation.
        validate_subject(subject)?;
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        self.trie.find(subject, &mut ids);
        let mut plain = Vec::with_capacity(ids.len());
        let mut groups = Vec::new();
        for &id in &ids {
            if let Some((_, target)) = self.subs.get(&id) {
                plain.push(Arc::clone(target));
            } else if let Some(group) = self.group_of_tid.get(&id).and_then(|k| self.groups.get(k))
            {
                groups.push(group.picker());
            }
        }
        self.scratch = ids;
        let found = Arc::new(Matched { plain, groups });
        if self.cache.len() >= CACHE_MAX {
            self.clear_cache();
        }
        self.cache
            .insert(hash, (subject.into(), Arc::clone(&found)));
        Ok(found)
    }

    /// Every target that one publish to `subject` reaches, groups resolved.
    pub fn targets(&mut self, subject: &str) -> Result<Vec<Arc<T>>> {
        let m = self.lookup(subject)?;
        let mut out: Vec<Arc<T>> = m.plain.clone();
        out.extend(m.groups.iter().filter_map(|p| p.pick().cloned()));
        Ok(out)
    }

    /// Number of live subscriptions.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Distinct subjects currently cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Drop every subscription.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_groups() {
        let mut r: Router<&'static str> = Router::default();
        r.subscribe("a.*", None, Arc::new("p1")).unwrap();
        let g1 = r.subscribe("a.>", Some("q"), Arc::new("g1")).unwrap();
        r.subscribe("a.>", Some("q"), Arc::new("g2")).unwrap();
        r.subscribe("a.*", Some("q"), Arc::new("h1")).unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut t: Vec<&str> = r.targets("a.b").unwrap().iter().map(|a| **a).collect();
            t.sort_unstable();
            seen.push(t);
        }
        assert_eq!(seen[0], ["g1", "h1", "p1"]);
        assert_eq!(seen[1], ["g2", "h1", "p1"]);
        assert_eq!(seen[2], ["g1", "h1", "p1"]);
        assert_eq!(r.cached(), 1);
        assert!(r.unsubscribe(g1).is_some());
        assert!(r.unsubscribe(g1).is_none());
        assert_eq!(r.cached(), 0);
        let t: Vec<&str> = r.targets("a.b.c").unwrap().iter().map(|a| **a).collect();
        assert_eq!(t, ["g2"]);
        assert!(r.targets("a.*").is_err());
        assert!(r.subscribe("a.>.b", None, Arc::new("x")).is_err());
        assert!(r.subscribe("a", Some(""), Arc::new("x")).is_err());
    }

    #[test]
    fn colliding_hashes_keep_subjects_apart() {
        let mut r: Router<u8> = Router::default();
        r.subscribe("a", None, Arc::new(1)).unwrap();
        r.subscribe("b", None, Arc::new(2)).unwrap();
        assert_eq!(*r.lookup_hashed(7, "a").unwrap().plain[0], 1);
        assert_eq!(*r.lookup_hashed(7, "b").unwrap().plain[0], 2);
        assert_eq!(*r.lookup_hashed(7, "a").unwrap().plain[0], 1);
        assert_eq!(r.cached(), 1, "colliding subjects take turns in one slot");
        assert_eq!(*r.lookup_hashed(8, "b").unwrap().plain[0], 2);
        assert_eq!(r.cached(), 2);
    }

    #[test]
    fn cache_is_bounded() {
        let mut r: Router<u8> = Router::default();
        r.subscribe(">", None, Arc::new(0)).unwrap();
        for i in 0..(CACHE_MAX + 10) {
            assert_eq!(r.targets(&format!("s.{i}")).unwrap().len(), 1);
        }
        assert!(r.cached() <= CACHE_MAX);
    }

    #[test]
    fn entries_lists_each_live_subscription_once() {
        let mut r: Router<&'static str> = Router::default();
        r.subscribe("a.*", None, Arc::new("p")).unwrap();
        let g = r.subscribe("a.*", Some("q"), Arc::new("g")).unwrap();
        r.targets("a.b").unwrap(); // the cache and the group hold clones too
        let mut seen: Vec<&str> = r.entries().map(|e| **e).collect();
        seen.sort_unstable();
        assert_eq!(seen, ["g", "p"]);
        r.unsubscribe(g);
        assert_eq!(r.entries().map(|e| **e).collect::<Vec<_>>(), ["p"]);
    }
}
