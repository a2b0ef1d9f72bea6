//! Subject validation, the subscription trie and its match cache (pure Rust).
//!
//! Subjects are dot-separated tokens. In a pattern `*` matches exactly one
//! token and `>` (last token only) one or more trailing tokens, as in NATS.
//! The trie stores target ids at the node a pattern ends in; a publish walks
//! it once per distinct subject and caches the result until the next
//! subscribe or unsubscribe.

use std::collections::HashMap;

use super::hashing::FoldState;
use crate::errors::{Error, Result};
use crate::quote::quote;

/// Longest subject or pattern accepted, in bytes: bounds trie depth and cache memory.
pub const MAX_SUBJECT_LEN: usize = 4096;

fn check_common(subject: &str, what: &str) -> Result<()> {
    if subject.is_empty() {
        return Err(Error::InvalidTopic(format!("{what} must not be empty")));
    }
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(Error::InvalidTopic(format!(
            "{what} is longer than {MAX_SUBJECT_LEN} bytes"
        )));
    }
    if subject.chars().any(is_space) {
        return Err(Error::InvalidTopic(format!(
            "{what} {} contains whitespace",
            quote(subject)
        )));
    }
    if subject.split('.').any(str::is_empty) {
        return Err(Error::InvalidTopic(format!(
            "{what} {} has an empty token",
            quote(subject)
        )));
    }
    Ok(())
}

/// Whitespace as Python's `str.isspace` (and the twin's `\\s`) sees it: Rust's
/// `char::is_whitespace` plus the ASCII separators U+001C..U+001F.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// One pass over a printable-ASCII subject: true if it is certainly valid.
/// Anything else (false) goes through the full checks, which name the problem.
fn plainly_valid_subject(subject: &[u8]) -> bool {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
        return false;
    }
    let mut len = 0usize;
    let mut first = 0u8;
    let wildcard = |len: usize, first: u8| len == 1 && (first == b'*' || first == b'>');
    for &b in subject {
        if b == b'.' {
            if len == 0 || wildcard(len, first) {
                return false;
            }
            len = 0;
        } else {
            // Control characters, spaces and non-ASCII take the slow path.
            if !(0x21..0x7f).contains(&b) {
                return false;
            }
            if len == 0 {
                first = b;
            }
            len += 1;
        }
    }
    len > 0 && !wildcard(len, first)
}

/// A concrete subject a message is published to: no wildcards.
pub fn validate_subject(subject: &str) -> Result<()> {
    if plainly_valid_subject(subject.as_bytes()) {
        return Ok(());
    }
    check_common(subject, "topic")?;
    if subject.split('.').any(|t| t == "*" || t == ">") {
        return Err(Error::InvalidTopic(format!(
            "topic {} contains a wildcard; wildcards are for subscriptions",
            quote(subject)
        )));
    }
    Ok(())
}

/// A subscription pattern: `*` anywhere as a whole token, `>` only as the last token.
pub fn validate_pattern(pattern: &str) -> Result<()> {
    check_common(pattern, "pattern")?;
    let mut tokens = pattern.split('.').peekable();
    while let Some(token) = tokens.next() {
        if token == ">" && tokens.peek().is_some() {
            return Err(Error::InvalidTopic(format!(
                "pattern {}: '>' must be the last token",
                quote(pattern)
            )));
        }
    }
    Ok(())
}

/// True if `subject` (valid, concrete) matches `pattern` (valid).
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subj = subject.split('.');
    for token in pattern.split('.') {
        if token == ">" {
            return subj.next().is_some();
        }
        match subj.next() {
            Some(s) if token == "*" || token == s => {}
            _ => return false,
        }
    }
    subj.next().is_none()
}

#[derive(Default, Debug)]
struct Node {
    literal: HashMap<Box<str>, Node, FoldState>,
    star: Option<Box<Node>>,
    /// Targets whose pattern ends at this node.
    here: Vec<u64>,
    /// Targets whose pattern is this node's path followed by `>`.
    tail: Vec<u64>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.here.is_empty()
            && self.tail.is_empty()
    }
}

/// Patterns mapped to target ids; `find` lists the ids a subject matches.
#[derive(Default, Debug)]
pub struct Trie {
    root: Node,
}

impl Trie {
    /// Add `id` under `pattern` (already validated).
    pub fn insert(&mut self, pattern: &str, id: u64) {
        let mut node = &mut self.root;
        for token in pattern.split('.') {
            match token {
                ">" => {
                    node.tail.push(id);
                    return;
                }
                "*" => node = node.star.get_or_insert_with(Box::default),
                lit => node = node.literal.entry(lit.into()).or_default(),
            }
        }
        node.here.push(id);
    }

    /// Remove `id` from under `pattern`, pruning nodes left empty. True if it was there.
    pub fn remove(&mut self, pattern: &str, id: u64) -> bool {
        let tokens: Vec<&str> = pattern.split('.').collect();
        Self::remove_at(&mut self.root, &tokens, id)
    }

    fn remove_at(node: &mut Node, tokens: &[&str], id: u64) -> bool {
        let Some((first, rest)) = tokens.split_first() else {
            return take(&mut node.here, id);
        };
        match *first {
            ">" => take(&mut node.tail, id),
            "*" => {
                let Some(child) = node.star.as_deref_mut() else {
                    return false;
                };
                let found = Self::remove_at(child, rest, id);
                if child.is_empty() {
                    node.star = None;
                }
                found
            }
            lit => {
                let Some(child) = node.literal.get_mut(lit) else {
                    return false;
                };
                let found = Self::remove_at(child, rest, id);
                if child.is_empty() {
                    node.literal.remove(lit);
                }
                found
            }
        }
    }

    /// The ids whose patterns match `subject` (a valid concrete subject), appended to `out`.
    pub fn find(&self, subject: &str, out: &mut Vec<u64>) {
        // The split iterator is the cursor: cloning it to branch costs no allocation.
        Self::find_at(&self.root, subject.split('.'), out);
    }

    fn find_at(node: &Node, mut rest: std::str::Split<'_, char>, out: &mut Vec<u64>) {
        let Some(first) = rest.next() else {
            out.extend_from_slice(&node.here);
            return;
        };
        // `>` needs at least one more token, which `first` is.
        out.extend_from_slice(&node.tail);
        if let Some(child) = node.literal.get(first) {
            Self::find_at(child, rest.clone(), out);
        }
        if let Some(child) = node.star.as_deref() {
            Self::find_at(child, rest, out);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }
}

fn take(ids: &mut Vec<u64>, id: u64) -> bool {
    match ids.iter().position(|&x| x == id) {
        Some(i) => {
            // `remove`, not `swap_remove`: subscribers keep their subscription order.
            ids.remove(i);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(trie: &Trie, subject: &str) -> Vec<u64> {
        let mut out = Vec::new();
        trie.find(subject, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn validation() {
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "a.*",
            "a.>",
            "a b",
            ">",
            "*",
            "a\u{1c}b",
            "a\u{3000}",
        ] {
            assert!(validate_subject(bad).is_err(), "{bad}");
        }
        for bad in ["", "a..b", "a.>.b", ">.a", "a. b"] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
        for good in [
            "a",
            "a.b",
            "a-b.c_d",
            "a*b",
            "*a.>b",
            "a\u{1}b",
            "caf\u{e9}",
        ] {
            assert!(validate_subject(good).is_ok(), "{good}");
        }
        for good in ["*", ">", "a.*.c", "a.>", "*.*.>"] {
            assert!(validate_pattern(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn wildcard_semantics() {
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(!matches("a.*", "a"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "x"));
        assert!(matches("*.b.>", "a.b.c.d"));
        assert!(!matches("a.b", "a.bc"));
    }

    #[test]
    fn trie_agrees_with_matches() {
        let patterns = [
            "a", "a.b", "a.*", "a.>", "*.b", ">", "*.*.c", "a.b.>", "x.y",
        ];
        let mut trie = Trie::default();
        for (i, p) in patterns.iter().enumerate() {
            trie.insert(p, i as u64);
        }
        for subject in ["a", "a.b", "a.b.c", "x.y", "q.b", "z.z.c", "a.c"] {
            let expected: Vec<u64> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| matches(p, subject))
                .map(|(i, _)| i as u64)
                .collect();
            assert_eq!(found(&trie, subject), expected, "{subject}");
        }
        for (i, p) in patterns.iter().enumerate() {
            assert!(trie.remove(p, i as u64));
            assert!(!trie.remove(p, i as u64));
        }
        assert!(trie.is_empty());
    }
}
