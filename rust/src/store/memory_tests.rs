//! Unit tests of `MemoryStore`, with time passed in by hand.

use super::*;
use crate::store::watch::Drained;

fn w(key: &str, value: &[u8], ttl: Option<u64>) -> Write {
    let mut v = vec![TAG_ENCODED];
    v.extend_from_slice(value);
    Write {
        key: key.to_owned(),
        value: v,
        metadata: Vec::new(),
        ttl,
    }
}

fn put(s: &mut MemoryStore, key: &str, value: &[u8], now: u64) -> u64 {
    s.write(w(key, value, None), Condition::Always, now)
        .unwrap()
}

#[test]
fn write_read_delete_round_trip() {
    let mut s = MemoryStore::default();
    let r1 = put(&mut s, "a", b"1", 0);
    let snap = s.read("a", 0).unwrap();
    assert_eq!(snap.value(), [TAG_ENCODED, b'1']);
    assert_eq!(snap.revision(), r1);
    assert!(s.exists("a", 0));
    assert!(s.delete("a", 0));
    assert!(!s.delete("a", 0));
    assert!(s.read("a", 0).is_none());
}

#[test]
fn revisions_only_grow_across_delete_and_recreate() {
    let mut s = MemoryStore::default();
    let r1 = put(&mut s, "a", b"1", 0);
    s.delete("a", 0);
    let r2 = put(&mut s, "a", b"2", 0);
    assert!(r2 > r1);
}

#[test]
fn conditions() {
    let mut s = MemoryStore::default();
    let r1 = s.write(w("a", b"1", None), Condition::Absent, 0).unwrap();
    assert!(matches!(
        s.write(w("a", b"2", None), Condition::Absent, 0),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        s.write(w("a", b"2", None), Condition::Revision(Some(r1 + 7)), 0),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        s.write(w("a", b"2", None), Condition::Revision(None), 0),
        Err(Error::Conflict(_))
    ));
    let r2 = s
        .write(w("a", b"2", None), Condition::Revision(Some(r1)), 0)
        .unwrap();
    assert!(r2 > r1);
    s.delete("a", 0);
    assert!(matches!(
        s.write(w("a", b"3", None), Condition::Revision(Some(r2)), 0),
        Err(Error::Conflict(_))
    ));
}

#[test]
fn expired_records_are_invisible_at_once() {
    let mut s = MemoryStore::default();
    s.write(w("a", b"1", Some(10)), Condition::Always, 0)
        .unwrap();
    assert!(s.read("a", 9).is_some());
    assert!(s.read("a", 10).is_none());
    assert!(!s.exists("a", 10));
    assert!(s.list("", "", None, 0, 10).is_empty());
    // if_revision on an expired key conflicts; if_absent succeeds.
    s.write(w("b", b"1", Some(10)), Condition::Always, 20)
        .unwrap();
    let rb = s.read("b", 20).unwrap().revision();
    assert!(matches!(
        s.write(w("b", b"1", None), Condition::Revision(Some(rb)), 31),
        Err(Error::Conflict(_))
    ));
    assert!(s.write(w("b", b"1", None), Condition::Absent, 31).is_ok());
}

#[test]
fn sweep_reclaims_without_touching() {
    let mut s = MemoryStore::default();
    for i in 0..100 {
        s.write(w(&format!("k{i:03}"), b"x", Some(5)), Condition::Always, 0)
            .unwrap();
    }
    put(&mut s, "keep", b"x", 0);
    // Each operation reclaims a bounded number of expired records.
    assert!(s.exists("keep", 6));
    assert_eq!(s.records.len(), 101 - SWEEP_BUDGET);
    assert_eq!(s.sweep(6, usize::MAX), 100 - SWEEP_BUDGET);
    assert_eq!(s.stats(6).entries, 1);
    assert_eq!(s.stats(6).bytes, 4 + 1);
    assert!(s.expiry.is_empty());
}

#[test]
fn list_filters_then_pages_in_order() {
    let mut s = MemoryStore::default();
    for k in ["b/2.json", "a/1", "b/1.json", "b/3.txt", "c", "b/"] {
        put(&mut s, k, b"v", 0);
    }
    assert_eq!(
        s.list("b/", "", None, 0, 0),
        vec!["b/", "b/1.json", "b/2.json", "b/3.txt"]
    );
    assert_eq!(
        s.list("b/", ".json", None, 0, 0),
        vec!["b/1.json", "b/2.json"]
    );
    assert_eq!(s.list("b/", ".json", Some(1), 1, 0), vec!["b/2.json"]);
    assert_eq!(s.list("", "", Some(0), 0, 0), Vec::<String>::new());
    assert_eq!(s.list("zz", "", None, 0, 0), Vec::<String>::new());
}

#[test]
fn list_range_ends_exactly_after_the_prefix() {
    let mut s = MemoryStore::default();
    for k in [
        "é", "é/1", "éa", "ê", "e", "f", "\u{7f}", "\u{7f}x", "\u{80}",
    ] {
        put(&mut s, k, b"v", 0);
    }
    assert_eq!(s.list("é", "", None, 0, 0), vec!["é", "é/1", "éa"]);
    assert_eq!(s.list("e", "", None, 0, 0), vec!["e"]);
    assert_eq!(s.list("\u{7f}", "", None, 0, 0), vec!["\u{7f}", "\u{7f}x"]);
    assert_eq!(s.list("\u{10ffff}", "", None, 0, 0), Vec::<String>::new());
    let (mut stack, mut heap) = ([0u8; 4], Vec::new());
    assert_eq!(
        prefix_end("a\u{7f}", &mut stack, &mut heap),
        Some(&b"a\x80"[..])
    );
    assert_eq!(prefix_end("", &mut stack, &mut heap), None);
    let long = "abcdefgh";
    assert_eq!(
        prefix_end(long, &mut stack, &mut heap),
        Some(&b"abcdefgi"[..])
    );
}

#[test]
fn byte_accounting_follows_overwrites_and_metadata() {
    let mut s = MemoryStore::default();
    let mut write = w("key", b"12345", None);
    write.metadata = vec![("ab".into(), "cde".into())];
    s.write(write, Condition::Always, 0).unwrap();
    assert_eq!(s.stats(0).bytes, 3 + 5 + 5);
    put(&mut s, "key", b"1", 0);
    assert_eq!(s.stats(0).bytes, 3 + 1);
    s.delete("key", 0);
    assert_eq!(
        s.stats(0),
        Stats {
            entries: 0,
            bytes: 0,
            watchers: 0
        }
    );
}

#[test]
fn eviction_order_ttl_first_then_oldest_written() {
    let mut s = MemoryStore::new(Limits {
        max_entries: Some(3),
        max_bytes: None,
    });
    put(&mut s, "old", b"v", 0);
    s.write(w("late", b"v", Some(100)), Condition::Always, 0)
        .unwrap();
    s.write(w("soon", b"v", Some(50)), Condition::Always, 0)
        .unwrap();
    put(&mut s, "new", b"v", 0);
    assert_eq!(s.list("", "", None, 0, 1), vec!["late", "new", "old"]);
    put(&mut s, "newer", b"v", 0);
    assert_eq!(s.list("", "", None, 0, 1), vec!["new", "newer", "old"]);
    put(&mut s, "newest", b"v", 0);
    assert_eq!(s.list("", "", None, 0, 1), vec!["new", "newer", "newest"]);
}

#[test]
fn max_bytes_evicts_and_refuses_oversized_records() {
    let mut s = MemoryStore::new(Limits {
        max_entries: None,
        max_bytes: Some(10),
    });
    put(&mut s, "a", b"1234", 0); // 5 bytes
    put(&mut s, "b", b"1234", 0); // 10 bytes
    put(&mut s, "c", b"1234", 0); // evicts a
    assert_eq!(s.list("", "", None, 0, 0), vec!["b", "c"]);
    assert!(s.stats(0).bytes <= 10);
    assert!(matches!(
        s.write(w("d", b"0123456789", None), Condition::Always, 0),
        Err(Error::Memory(_))
    ));
    assert_eq!(s.list("", "", None, 0, 0), vec!["b", "c"]);
}

#[test]
fn watch_sees_put_delete_expire_in_order() {
    let mut s = MemoryStore::default();
    let q = s.watch("p/".into(), 100);
    let r = put(&mut s, "p/a", b"1", 0);
    put(&mut s, "other", b"1", 0);
    s.delete("p/a", 0);
    s.write(w("p/t", b"1", Some(5)), Condition::Always, 0)
        .unwrap();
    s.sweep(10, usize::MAX);
    assert_eq!(s.take_woken(), vec![q.id]);
    let Drained::Events(events) = q.drain(None) else {
        panic!("expected events")
    };
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.key.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Put, "p/a"),
            (EventKind::Delete, "p/a"),
            (EventKind::Put, "p/t"),
            (EventKind::Expire, "p/t"),
        ]
    );
    assert_eq!(events[0].record.as_ref().unwrap().revision, r);
    q.close();
    put(&mut s, "p/b", b"1", 0);
    assert_eq!(s.stats(0).watchers, 0);
}

#[test]
fn write_many_is_all_or_nothing_on_size() {
    let mut s = MemoryStore::new(Limits {
        max_entries: None,
        max_bytes: Some(8),
    });
    let refused = s.write_many(vec![w("a", b"1", None), w("b", b"123456789", None)], 0);
    assert!(refused.is_err());
    assert_eq!(s.stats(0).entries, 0);
    let revs = s
        .write_many(vec![w("a", b"1", None), w("b", b"2", None)], 0)
        .unwrap();
    assert!(revs[1] > revs[0]);
    assert_eq!(s.delete_many(["a", "b", "zz"], 0), 2);
}

#[test]
fn read_many_keeps_order_and_skips_missing() {
    let mut s = MemoryStore::default();
    put(&mut s, "a", b"1", 0);
    put(&mut s, "b", b"2", 0);
    s.write(w("c", b"3", Some(1)), Condition::Always, 0)
        .unwrap();
    let got: Vec<_> = s
        .read_many(["b", "zz", "a", "c"], 5)
        .iter()
        .map(|(k, p)| (k, p.value().to_vec()))
        .collect();
    assert_eq!(
        got,
        vec![(0, vec![TAG_ENCODED, b'2']), (2, vec![TAG_ENCODED, b'1'])]
    );
}

#[test]
fn read_many_finds_keys_in_any_order_and_repeated() {
    let mut s = MemoryStore::default();
    for k in ["a", "b", "c", "d", "e"] {
        put(&mut s, k, k.as_bytes(), 0);
    }
    let asked = ["a", "b", "c", "c", "zz", "d", "a", "e", "bb", "b", "e", "0"];
    let got: Vec<_> = s
        .read_many(asked, 0)
        .iter()
        .map(|(i, p)| (i, p.value()[1]))
        .collect();
    let want: Vec<_> = asked
        .iter()
        .enumerate()
        .filter(|(_, k)| k.len() == 1 && k.as_bytes()[0].is_ascii_lowercase())
        .map(|(i, k)| (i, k.as_bytes()[0]))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn overwrite_with_the_same_deadline_keeps_the_expiry_index() {
    let mut s = MemoryStore::default();
    s.write(w("k", b"1", Some(10)), Condition::Always, 0)
        .unwrap();
    s.write(w("k", b"2", Some(5)), Condition::Always, 5)
        .unwrap();
    assert_eq!(s.next_deadline(), Some(10));
    assert_eq!(s.sweep(10, usize::MAX), 1);
    assert_eq!(s.stats(10).entries, 0);
}
