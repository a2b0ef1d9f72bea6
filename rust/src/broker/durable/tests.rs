//! The durable core's rules, without Python: `M` is a u32 payload, `T` a member name.

use super::stream::Limits;
use super::streams::{covers, overlaps, Delivery, Settled, Start, Streams};

type Core = Streams<u32, &'static str>;
type Out = Vec<Delivery<u32, &'static str>>;

fn core_with_stream(limits: Limits) -> Core {
    let mut core = Core::default();
    core.add_stream("s", &["orders.>"], limits, 0.0).unwrap();
    core
}

fn publish(core: &mut Core, n: u32, now: f64) -> Out {
    let mut out = Vec::new();
    for i in 0..n {
        core.store(&i, "orders.new", 1, now, now, &mut out).unwrap();
    }
    out
}

fn seen(out: &Out) -> Vec<(&'static str, u32, u32)> {
    out.iter().map(|d| (d.target, d.message, d.count)).collect()
}

#[test]
fn members_share_in_turn_within_their_capacity() {
    let mut core = core_with_stream(Limits::default());
    let cid = core
        .consumer("s", "d", "orders.>", 10.0, Start::New)
        .unwrap();
    let mut out = Vec::new();
    core.attach(cid, "a", 2, 0.0, 0.0, &mut out).unwrap();
    core.attach(cid, "b", 2, 0.0, 0.0, &mut out).unwrap();
    let out = publish(&mut core, 6, 0.0);
    assert_eq!(
        seen(&out),
        [("a", 0, 1), ("b", 1, 1), ("a", 2, 1), ("b", 3, 1)],
        "four go out, two wait for room"
    );
    let mut more = Vec::new();
    assert_eq!(
        core.ack(cid, out[0].seq, 0.0, 0.0, &mut more),
        Settled::Done
    );
    assert_eq!(seen(&more), [("a", 4, 1)]);
    assert_eq!(
        core.ack(cid, out[0].seq, 0.0, 0.0, &mut more),
        Settled::Ignored,
        "ack twice"
    );
    let info = core.info(0.0);
    assert_eq!(info[0].durables[0].pending, 1);
    assert_eq!(info[0].durables[0].unacked, 4);
}

#[test]
fn the_filter_and_start_positions() {
    let mut core = core_with_stream(Limits::default());
    let mut out = Vec::new();
    for (i, topic) in ["orders.eu", "orders.us", "orders.eu"].iter().enumerate() {
        core.store(&(i as u32), topic, 1, 0.0, i as f64, &mut out)
            .unwrap();
    }
    let first = core
        .consumer("s", "f", "orders.eu", 1.0, Start::First)
        .unwrap();
    let time = core
        .consumer("s", "t", "orders.>", 1.0, Start::Time(1.0))
        .unwrap();
    let seq = core
        .consumer("s", "q", "orders.>", 1.0, Start::Sequence(3))
        .unwrap();
    let new = core
        .consumer("s", "n", "orders.>", 1.0, Start::New)
        .unwrap();
    for (cid, name) in [(first, "f"), (time, "t"), (seq, "q"), (new, "n")] {
        core.attach(cid, name, 10, 0.0, 0.0, &mut out).unwrap();
    }
    let by = |name| {
        out.iter()
            .filter(|d| d.target == name)
            .map(|d| d.message)
            .collect::<Vec<_>>()
    };
    assert_eq!(by("f"), [0, 2]);
    assert_eq!(by("t"), [1, 2]);
    assert_eq!(by("q"), [2]);
    assert!(by("n").is_empty());
    assert!(core
        .consumer("s", "f", "orders.us", 1.0, Start::New)
        .is_err());
}

#[test]
fn nack_delays_and_ack_wait_redelivers_to_another_member() {
    let mut core = core_with_stream(Limits::default());
    let cid = core
        .consumer("s", "d", "orders.>", 5.0, Start::New)
        .unwrap();
    let mut out = Vec::new();
    core.attach(cid, "a", 1, 0.0, 0.0, &mut out).unwrap();
    let first = publish(&mut core, 1, 0.0);
    assert_eq!(seen(&first), [("a", 0, 1)]);
    let d = &first[0];
    let mut out = Vec::new();
    assert_eq!(
        core.nack(cid, d.seq, 1, 2.0, false, 1.0, 1.0, &mut out),
        Settled::Done
    );
    assert!(out.is_empty());
    assert_eq!(core.tick(cid, 1.5, 1.5, &mut out), Some(1.5));
    assert_eq!(core.tick(cid, 3.0, 3.0, &mut out), Some(5.0));
    assert_eq!(seen(&out), [("a", 0, 2)]);
    // A stale nack (of delivery 1) is ignored.
    assert_eq!(
        core.nack(cid, d.seq, 1, 0.0, false, 3.0, 3.0, &mut Vec::new()),
        Settled::Ignored
    );
    // "a" hangs: after ack_wait the message goes to "b", not back to "a".
    let mut out = Vec::new();
    core.attach(cid, "b", 1, 3.0, 3.0, &mut out).unwrap();
    assert!(out.is_empty());
    core.tick(cid, 8.5, 8.5, &mut out);
    assert_eq!(seen(&out), [("b", 0, 3)]);
    // The late ack of delivery 2 still acks it; b's ack is then a no-op.
    assert_eq!(
        core.ack(cid, d.seq, 9.0, 9.0, &mut Vec::new()),
        Settled::Done
    );
    assert_eq!(
        core.ack(cid, d.seq, 9.0, 9.0, &mut Vec::new()),
        Settled::Ignored
    );
    assert_eq!(core.info(9.0)[0].durables[0].unacked, 0);
}

#[test]
fn progress_release_term_and_detach() {
    let mut core = core_with_stream(Limits::default());
    let cid = core
        .consumer("s", "d", "orders.>", 1.0, Start::New)
        .unwrap();
    let mut out = Vec::new();
    let a = core.attach(cid, "a", 3, 0.0, 0.0, &mut out).unwrap();
    let out = publish(&mut core, 3, 0.0);
    let (one, two, three) = (&out[0], &out[1], &out[2]);
    assert_eq!(core.progress(cid, one.seq, 1, 0.9), Settled::Done);
    let mut again = Vec::new();
    core.tick(cid, 1.5, 1.5, &mut again);
    let msgs: Vec<u32> = again.iter().map(|d| d.message).collect();
    assert_eq!(msgs, [1, 2], "the one in progress stayed");
    // A release hands back a delivery never started, uncounted.
    let (two, three) = (
        again.iter().find(|d| d.seq == two.seq).unwrap().clone(),
        again.iter().find(|d| d.seq == three.seq).unwrap().clone(),
    );
    let mut out = Vec::new();
    core.nack(cid, two.seq, 2, 0.0, true, 1.5, 1.5, &mut out);
    assert_eq!(seen(&out), [("a", 1, 2)]);
    assert_eq!(
        core.term(cid, three.seq, 1, true, 1.5, 1.5, &mut Vec::new()),
        Settled::Ignored,
        "stale"
    );
    assert_eq!(
        core.term(cid, three.seq, 2, true, 1.5, 1.5, &mut Vec::new()),
        Settled::Done
    );
    let b_out = &mut Vec::new();
    core.attach(cid, "b", 5, 1.5, 1.5, b_out).unwrap();
    core.detach(a, 1.6, 1.6, b_out);
    let mut msgs: Vec<u32> = b_out.iter().map(|d| d.message).collect();
    msgs.sort_unstable();
    assert_eq!(msgs, [0, 1], "what a held goes to b at once");
    let info = core.info(1.6);
    assert_eq!(info[0].durables[0].dead_lettered, 1);
    assert_eq!(info[0].durables[0].consumers, 1);
}

#[test]
fn eviction_drops_waiting_redeliveries() {
    let mut core = core_with_stream(Limits {
        max_count: Some(2),
        ..Limits::default()
    });
    let cid = core
        .consumer("s", "d", "orders.>", 1.0, Start::New)
        .unwrap();
    let mut out = Vec::new();
    core.attach(cid, "a", 1, 0.0, 0.0, &mut out).unwrap();
    let first = publish(&mut core, 1, 0.0);
    core.nack(cid, first[0].seq, 1, 10.0, false, 0.0, 0.0, &mut out);
    publish(&mut core, 3, 0.0); // evicts message 0 while it waits
    let mut out = Vec::new();
    core.tick(cid, 20.0, 20.0, &mut out);
    let msgs: Vec<u32> = out.iter().map(|d| d.message).collect();
    assert_eq!(
        msgs,
        [1],
        "the evicted one is gone; the next retained comes instead"
    );
}

#[test]
fn streams_refuse_overlaps_and_cover_patterns() {
    let mut core = core_with_stream(Limits::default());
    assert!(core
        .add_stream("t", &["orders.eu"], Limits::default(), 0.0)
        .is_err());
    assert!(core
        .add_stream("t", &["invoices.*"], Limits::default(), 0.0)
        .unwrap());
    assert_eq!(core.stream_for("orders.*.x").as_deref(), Some("s"));
    assert_eq!(core.stream_for("invoices.a").as_deref(), Some("t"));
    assert_eq!(core.stream_for("invoices.>"), None);
    assert!(core.delete_stream("t"));
    assert!(!core.delete_stream("t"));
    assert!(covers("a.>", "a.b.*") && covers("a.*", "a.b") && covers("*.b", "*.b"));
    assert!(!covers("a.*", "a.>") && !covers("a.b", "a.*") && !covers("a.>", "a"));
    assert!(overlaps("a.*", "*.b") && overlaps("a.>", "a.b.c") && overlaps(">", "x"));
    assert!(!overlaps("a.*", "a.b.c") && !overlaps("a.>", "a") && !overlaps("a.b", "a.c"));
}

#[test]
fn member_targets_lists_each_member_once() {
    let mut core = core_with_stream(Limits::default());
    let cid = core
        .consumer("s", "d", "orders.>", 10.0, Start::New)
        .unwrap();
    let other = core
        .consumer("s", "e", "orders.>", 10.0, Start::New)
        .unwrap();
    let mut out = Vec::new();
    core.attach(cid, "a", 2, 0.0, 0.0, &mut out).unwrap();
    let mid = core.attach(cid, "b", 2, 0.0, 0.0, &mut out).unwrap();
    core.attach(other, "c", 2, 0.0, 0.0, &mut out).unwrap();
    let mut seen: Vec<&str> = core.member_targets().copied().collect();
    seen.sort_unstable();
    assert_eq!(seen, ["a", "b", "c"]);
    core.detach(mid, 0.0, 0.0, &mut out);
    let mut seen: Vec<&str> = core.member_targets().copied().collect();
    seen.sort_unstable();
    assert_eq!(seen, ["a", "c"]);
}
