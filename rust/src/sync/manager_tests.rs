use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::*;

const LONG: Duration = Duration::from_secs(30);

#[test]
fn uncontended_acquire_release_and_tokens_increase() {
    let m = LockManager::new();
    let a = m.try_acquire("x", "me", LONG).unwrap().unwrap();
    assert!(m.try_acquire("x", "you", LONG).unwrap().is_none());
    assert_eq!(m.holder("x").unwrap().owner, "me");
    m.release("x", a.token).unwrap();
    assert!(m.holder("x").is_none());
    let b = m.try_acquire("x", "you", LONG).unwrap().unwrap();
    assert!(b.token > a.token);
    // A released lease cannot be released or refreshed again.
    assert!(matches!(m.release("x", a.token), Err(Error::LockLost(_))));
    assert!(matches!(
        m.refresh("x", a.token, LONG),
        Err(Error::LockLost(_))
    ));
    m.refresh("x", b.token, LONG).unwrap();
    m.release("x", b.token).unwrap();
}

#[test]
fn fifo_hand_over_between_threads() {
    let m = Arc::new(LockManager::new());
    let first = m.try_acquire("q", "holder", LONG).unwrap().unwrap();
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for i in 0..4 {
        let m2 = Arc::clone(&m);
        let tx = tx.clone();
        handles.push(thread::spawn(move || {
            let g = m2.acquire("q", &format!("w{i}"), LONG, None).unwrap();
            tx.send(i).unwrap();
            m2.release("q", g.token).unwrap();
        }));
        // Queue them in order.
        while m.waiting("q") < i + 1 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    m.release("q", first.token).unwrap();
    for h in handles {
        h.join().unwrap();
    }
    let order: Vec<usize> = rx.try_iter().collect();
    assert_eq!(order, vec![0, 1, 2, 3]);
}

#[test]
fn wait_zero_and_timeout() {
    let m = LockManager::new();
    let _g = m.try_acquire("t", "a", LONG).unwrap().unwrap();
    let err = m
        .acquire("t", "b", LONG, Some(Duration::from_millis(30)))
        .unwrap_err();
    assert!(matches!(err, Error::LockTimeout(_)));
    assert_eq!(m.waiting("t"), 0, "a timed-out waiter leaves the queue");
}

#[test]
fn expired_lease_hands_over_without_contention_calls() {
    let m = LockManager::new();
    let a = m
        .try_acquire("e", "a", Duration::from_millis(50))
        .unwrap()
        .unwrap();
    let start = Instant::now();
    let b = m.acquire("e", "b", LONG, Some(LONG)).unwrap();
    assert!(b.token > a.token);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(matches!(m.release("e", a.token), Err(Error::LockLost(_))));
    assert!(matches!(
        m.refresh("e", a.token, LONG),
        Err(Error::LockLost(_))
    ));
    m.release("e", b.token).unwrap();
}

#[test]
fn callback_waiters_are_notified_by_the_reaper() {
    let m = LockManager::new();
    let _a = m
        .try_acquire("c", "a", Duration::from_millis(20))
        .unwrap()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let attempt = m
        .acquire_or_queue(
            "c",
            "b",
            LONG,
            Box::new(move |o| tx.send(o.map(|g| g.token)).unwrap()),
        )
        .unwrap();
    assert!(matches!(attempt, Attempt::Queued(_)));
    let token = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(m.holder("c").unwrap().token, token);
}

#[test]
fn cancelled_waiter_is_skipped() {
    let m = LockManager::new();
    let a = m.try_acquire("k", "a", LONG).unwrap().unwrap();
    let called = Arc::new(AtomicUsize::new(0));
    let c2 = Arc::clone(&called);
    let Attempt::Queued(id) = m
        .acquire_or_queue(
            "k",
            "b",
            LONG,
            Box::new(move |_| {
                c2.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap()
    else {
        panic!("should queue");
    };
    assert!(m.cancel("k", id));
    assert!(!m.cancel("k", id));
    m.release("k", a.token).unwrap();
    assert_eq!(called.load(Ordering::SeqCst), 0);
    assert!(m.holder("k").is_none());
}

#[test]
fn close_fails_waiters() {
    let m = LockManager::new();
    let _a = m.try_acquire("z", "a", LONG).unwrap().unwrap();
    let (tx, rx) = mpsc::channel();
    let _ = m
        .acquire_or_queue(
            "z",
            "b",
            LONG,
            Box::new(move |o| tx.send(o.is_err()).unwrap()),
        )
        .unwrap();
    m.close();
    assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap());
    assert!(matches!(
        m.try_acquire("z", "c", LONG),
        Err(Error::Closed(_))
    ));
}

#[test]
fn threads_never_overlap() {
    let m = Arc::new(LockManager::new());
    let inside = Arc::new(AtomicUsize::new(0));
    let count = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (m, inside, count) = (Arc::clone(&m), Arc::clone(&inside), Arc::clone(&count));
            thread::spawn(move || {
                for _ in 0..200 {
                    let g = m.acquire("n", &format!("t{i}"), LONG, None).unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    count.fetch_add(1, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    m.release("n", g.token).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst), 800);
}

#[test]
fn a_grant_is_claimed_from_the_moment_its_waiter_takes_it_up() {
    let m = LockManager::new();
    let short = Duration::from_millis(50);
    let held = m.try_acquire("c", "a", short).unwrap().unwrap();
    let (tx, rx) = mpsc::channel();
    let notify: Notify = Box::new(move |outcome| tx.send(outcome).unwrap());
    let attempt = m.acquire_or_queue("c", "b", short, notify).unwrap();
    assert!(matches!(attempt, Attempt::Queued(_)));
    // The reaper hands the lock over when the holder's lease runs out.
    let grant = rx.recv_timeout(LONG).unwrap().unwrap();
    assert!(grant.token > held.token);
    let claimed = m.claim("c", grant, LONG).unwrap();
    assert_eq!(claimed.token, grant.token);
    assert!(claimed.deadline > grant.deadline);
    assert_eq!(m.holder("c").unwrap().owner, "b");
    m.release("c", claimed.token).unwrap();
}

#[test]
fn a_grant_that_ran_out_before_its_waiter_woke_is_no_grant() {
    let m = LockManager::new();
    let short = Duration::from_millis(50);
    m.try_acquire("s", "a", short).unwrap().unwrap();
    let (tx, rx) = mpsc::channel();
    let notify: Notify = Box::new(move |outcome| tx.send(outcome).unwrap());
    m.acquire_or_queue("s", "b", short, notify).unwrap();
    let grant = rx.recv_timeout(LONG).unwrap().unwrap();
    // The waiter stalls past its own lease before it takes the grant up.
    while Instant::now() < grant.deadline {
        thread::sleep(short);
    }
    assert!(m.claim("s", grant, LONG).is_none());
    assert!(m.holder("s").is_none());
    // Nothing stays behind: the lock is free for the next one.
    m.try_acquire("s", "c", LONG).unwrap().unwrap();
}
