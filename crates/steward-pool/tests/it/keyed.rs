//! Keyed pools: per-key and global caps, eviction, empty sub-pools dropped.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use steward_pool::{CloseReason, Error, KeyedPool};

use crate::common::{KeyedCounting, guard};

fn keyed(m: &KeyedCounting, per_key: usize, total: usize) -> KeyedPool<u32, KeyedCounting> {
    KeyedPool::builder(m.clone())
        .name("urls")
        .max_size(per_key)
        .wait_timeout(Some(Duration::from_secs(30)))
        .reaper_interval(None)
        .max_total(total)
        .build()
        .unwrap()
}

#[tokio::test]
async fn per_key_cap_and_global_eviction() {
    let m = KeyedCounting::default();
    let p = keyed(&m, 2, 3);
    let a1 = p.get(&1).await.unwrap();
    let a2 = p.get(&1).await.unwrap();
    assert!(matches!(
        p.try_get(&1).await,
        Err(Error::Full { max_size: 2, .. })
    ));
    drop((a1, a2)); // two idle objects of key 1
    let b1 = p.get(&2).await.unwrap();
    assert_eq!(p.size(), 3);
    // Global cap reached: an idle object of key 1 is closed to make room.
    let b2 = p.get(&2).await.unwrap();
    assert_eq!(b2.key, 2);
    let stats = p.stats();
    assert_eq!(stats.total.closed.evicted, 1, "{stats:?}");
    assert_eq!(stats.total.size, 3);
    assert_eq!(m.total.live(), 3);
    assert_eq!(m.key_tally(1).live(), 1);
    drop((b1, b2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_waiter_gets_room_when_another_key_returns() {
    let m = KeyedCounting::default();
    let p = keyed(&m, 2, 2);
    let a1 = p.get(&1).await.unwrap();
    let a2 = p.get(&1).await.unwrap();
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get(&2).await.map(|o| o.key) });
    // Whether the waiter registers before the return (then the returned
    // object is closed for it) or after (then it evicts the idle one), it
    // gets room for key 2. The pause only makes the first order the likely
    // one (a keyed pool does not count its global waiters): not a
    // synchronisation, both orders pass.
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(a1);
    let key = guard("waiter", waiter).await.unwrap().unwrap();
    assert_eq!(key, 2);
    assert!(m.total.max_seen.load(SeqCst) <= 2);
    drop(a2);
}

#[tokio::test]
async fn empty_sub_pools_are_dropped_with_their_counters_kept() {
    let m = KeyedCounting::default();
    let p = keyed(&m, 2, 4);
    for key in 0..3 {
        drop(p.get(&key).await.unwrap());
    }
    assert_eq!(p.keys(), 3);
    let held = p.get(&0).await.unwrap();
    assert_eq!(p.retain(|k, _| *k == 0), 2);
    assert_eq!(p.keys(), 1, "keys 1 and 2 had nothing left");
    let stats = p.stats();
    assert_eq!((stats.total.created, stats.total.closed.removed), (3, 2));
    assert_eq!(stats.per_key.len(), 1);
    assert_eq!(stats.total.closed.total(), 2, "the two removed");
    drop(held);
    assert_eq!(p.shrink_to_min_idle(), 1);
    assert_eq!(p.keys(), 0);
    assert_eq!(
        p.stats().total.created,
        3,
        "counters of dropped sub-pools are kept"
    );
    p.close();
    assert!(matches!(p.get(&9).await, Err(Error::Closed { .. })));
}

/// The keyed total adds up its sub-pools counter by counter, and a
/// `ClosedCounts::total` adds up its reasons (each figure worked out by
/// hand from the steps below).
#[tokio::test]
async fn the_total_adds_up_the_keys_counter_by_counter() {
    let m = KeyedCounting::default();
    let p = keyed(&m, 3, 6);
    // Key 1: two created; one returned and handed out again (recycled),
    // one discarded (broken).
    let a = p.get(&1).await.unwrap();
    let b = p.get(&1).await.unwrap();
    drop(a);
    steward_pool::Pooled::discard(b);
    let a = p.get(&1).await.unwrap();
    // Key 2: three created; one taken out of the pool for good, two
    // returned and then removed by `retain`.
    let c = p.get(&2).await.unwrap();
    let d = p.get(&2).await.unwrap();
    let e = p.get(&2).await.unwrap();
    let taken = steward_pool::Pooled::take(c);
    drop((d, e));
    assert_eq!(p.retain(|key, _| *key != 2), 2);
    // Key 3: one created, in use.
    let f = p.get(&3).await.unwrap();

    let total = p.stats().total;
    assert_eq!(total.created, 6, "{total:?}");
    assert_eq!(total.recycled, 1, "{total:?}");
    assert_eq!(total.taken, 1, "{total:?}");
    assert_eq!(total.closed.broken, 1, "{total:?}");
    assert_eq!(total.closed.removed, 2, "{total:?}");
    assert_eq!(total.closed.total(), 3, "{total:?}");
    assert_eq!(
        (total.size, total.in_use, total.idle),
        (2, 2, 0),
        "{total:?}"
    );
    drop((a, f, taken));

    // Closing closes the two returned objects: every reason adds in.
    p.close();
    let closed = p.stats().total.closed;
    assert_eq!((closed.closed, closed.total()), (2, 5), "{closed:?}");
}

/// Every counter of a key reaches the keyed total, each close reason and
/// the wait histogram's last bucket included (figures worked out by hand
/// from the steps; the first wait of each sub-pool is one the histogram
/// samples, with weight 8).
#[tokio::test(start_paused = true)]
async fn every_counter_of_a_key_reaches_the_total() {
    let m = KeyedCounting::default();
    let p = KeyedPool::builder(m.clone())
        .max_size(1)
        .max_total(16)
        .wait_timeout(Some(Duration::from_secs(120)))
        .idle_timeout(Some(Duration::from_secs(60)))
        .max_lifetime(Some(Duration::from_secs(600)))
        .health_check(false)
        .reaper_interval(None)
        .build()
        .unwrap();
    // Key 1: returned, then shrunk away.
    drop(p.get(&1).await.unwrap());
    assert_eq!(p.shrink_to_min_idle(), 1);
    // Key 2: the create fails.
    m.fail_creates.store(true, SeqCst);
    assert!(matches!(p.get(&2).await, Err(Error::Create { .. })));
    m.fail_creates.store(false, SeqCst);
    // Key 3: a waiter gets the object after 90 s (beyond the histogram's
    // last bound, 60 s); the object is then idle from t = 90 s.
    let held = p.get(&3).await.unwrap();
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get(&3).await.map(drop) });
    tokio::time::sleep(Duration::from_secs(90)).await;
    drop(held);
    guard("waiter", waiter).await.unwrap().unwrap();
    // Key 4 (made at t = 90 s): a second checkout gives up after 120 s.
    let held4 = p.get(&4).await.unwrap();
    assert!(matches!(p.get(&4).await, Err(Error::WaitTimeout { .. })));
    // t = 210 s: key 3's object has been idle 120 s.
    assert_eq!(p.reap_idle(), 1);
    // t = 810 s: key 4's object, 720 s old, is closed as it comes back
    // (a reaper pass, with nothing idle to close, advanced the coarse clock
    // returns read).
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(p.reap_idle(), 0);
    drop(held4);
    assert_eq!(p.stats().total.closed.lifetime, 1, "closed on return");
    // Key 5: one waiter, still waiting when the stats are read.
    let held5 = p.get(&5).await.unwrap();
    let p3 = p.clone();
    let waiting = tokio::spawn(async move { p3.get(&5).await.map(drop) });
    while p.stats().total.waiters == 0 {
        tokio::task::yield_now().await;
    }

    let total = p.stats().total;
    let closed = total.closed;
    assert_eq!(
        (closed.shrink, closed.idle, closed.lifetime, closed.total()),
        (1, 1, 1, 3),
        "{total:?}"
    );
    assert_eq!((total.created, total.recycled), (4, 1), "{total:?}");
    assert_eq!(total.create_errors, 1, "{total:?}");
    assert_eq!(
        (total.waiters, total.size, total.in_use),
        (1, 1, 1),
        "{total:?}"
    );
    // Waits: key 3's (90 s), key 4's (120 s, timed out), key 5's (going on).
    assert_eq!((total.wait_count, total.wait_timeouts), (3, 1), "{total:?}");
    let last = total.wait_time.last().map(|b| b.count);
    assert_eq!(last, Some(16), "two sampled waits past 60 s: {total:?}");
    assert_eq!(
        total.wait_time_sum,
        Duration::from_secs(8 * 210),
        "{total:?}"
    );
    drop(held5);
    guard("waiting", waiting).await.unwrap().unwrap();
    // Each close reached the keyed manager with its key and reason.
    let closes = m.closes.lock().unwrap().clone();
    assert_eq!(
        closes,
        [
            (1, CloseReason::Shrink),
            (3, CloseReason::IdleTimeout),
            (4, CloseReason::Lifetime)
        ]
    );
}

/// Under the global cap with nothing idle to evict, a checkout of another
/// key waits; an object closed under the first key wakes it at once (not
/// at its timeout), and the cap is never exceeded.
#[tokio::test(start_paused = true)]
async fn a_place_freed_under_the_global_cap_wakes_its_waiter_at_once() {
    let m = KeyedCounting::default();
    let p = keyed(&m, 2, 2);
    let a = p.get(&1).await.unwrap();
    let b = p.get(&2).await.unwrap();
    let p2 = p.clone();
    let waiter = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        p2.get(&3).await.map(|o| (o.key, started.elapsed()))
    });
    tokio::task::yield_now().await;
    assert_eq!(p.size(), 2, "the cap holds while the waiter waits");
    steward_pool::Pooled::discard(a);
    let (key, waited) = guard("waiter", waiter).await.unwrap().unwrap();
    assert_eq!((key, waited), (3, Duration::ZERO));
    assert!(m.total.max_seen.load(SeqCst) <= 2);
    drop(b);
}

/// A checkout that times out under the global cap gives its key's place
/// back: with one place per key, the key can be checked out later.
#[tokio::test(start_paused = true)]
async fn a_key_that_timed_out_under_the_global_cap_keeps_its_place() {
    let m = KeyedCounting::default();
    let p = KeyedPool::builder(m.clone())
        .max_size(1)
        .max_total(1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .reaper_interval(None)
        .build()
        .unwrap();
    let a = p.get(&1).await.unwrap();
    assert!(matches!(p.get(&2).await, Err(Error::WaitTimeout { .. })));
    drop(a);
    let b = p.get(&2).await.expect("key 2's place was given back");
    assert_eq!(b.key, 2);
}

/// Dropping the last handle of a keyed pool ends its reaper at once, not
/// at the reaper's next tick.
#[tokio::test(start_paused = true)]
async fn the_keyed_reaper_ends_with_the_last_handle() {
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    let p = KeyedPool::builder(KeyedCounting::default())
        .max_size(1)
        .max_total(4)
        .reaper_interval(Some(Duration::from_secs(3600)))
        .build()
        .unwrap();
    assert_eq!(tasks(), before + 1);
    drop(p);
    for _ in 0..100 {
        if tasks() == before {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(tasks(), before, "the reaper outlived its pool");
}

/// The keyed reaper closes idle objects under every key, and an empty
/// sub-pool then goes; `reap_idle` does the same on demand; a weak handle
/// upgrades while the pool lives and not after.
#[tokio::test(start_paused = true)]
async fn the_keyed_reaper_and_reap_idle_close_idle_objects_under_every_key() {
    let m = KeyedCounting::default();
    let p = KeyedPool::builder(m.clone())
        .max_size(2)
        .max_total(8)
        .idle_timeout(Some(Duration::from_secs(60)))
        .max_lifetime(None)
        .reaper_interval(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let weak = p.downgrade();
    assert!(weak.upgrade().is_some(), "the pool is alive");
    drop((p.get(&1).await.unwrap(), p.get(&2).await.unwrap()));
    assert_eq!(p.stats().total.idle, 2);
    tokio::time::sleep(Duration::from_secs(75)).await;
    let stats = p.stats();
    assert_eq!(stats.total.closed.idle, 2, "{stats:?}");
    assert_eq!((m.total.live(), p.keys()), (0, 0), "{stats:?}");

    // On demand, without waiting for the reaper's pass.
    drop(p.get(&3).await.unwrap());
    assert_eq!(p.reap_idle(), 0, "not idle long enough yet");
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(p.reap_idle(), 1);
    assert_eq!(m.total.live(), 0);

    drop(p);
    assert!(weak.upgrade().is_none(), "the pool is gone");
}

/// An object taken out can be added back under a key: it is counted and
/// handed out again without a create.
#[tokio::test]
async fn an_added_object_is_counted_and_handed_out() {
    let m = KeyedCounting::default();
    let p = keyed(&m, 2, 4);
    let taken = steward_pool::Pooled::take(p.get(&1).await.unwrap());
    assert!(p.add(&1, taken).is_ok());
    let stats = p.stats().total;
    assert_eq!(
        (stats.added, stats.idle, stats.created),
        (1, 1, 1),
        "{stats:?}"
    );
    let again = p.get(&1).await.unwrap();
    assert_eq!(p.stats().total.created, 1, "reused, not created");
    drop(again);
}

/// `Debug` of a keyed pool, its builder and a weak handle names the pool
/// and says whether it lives.
#[tokio::test]
async fn debug_of_a_keyed_pool_names_it_and_its_state() {
    let builder = KeyedPool::builder(KeyedCounting::default())
        .name("urls")
        .max_size(1)
        .reaper_interval(None);
    assert!(format!("{builder:?}").contains("urls"), "{builder:?}");
    let p = builder.build().unwrap();
    let held = p.get(&7).await.unwrap();
    assert!(format!("{p:?}").contains("urls"), "{p:?}");
    let weak = p.downgrade();
    assert!(format!("{weak:?}").contains("alive: true"), "{weak:?}");
    drop((held, p));
    assert!(format!("{weak:?}").contains("alive: false"), "{weak:?}");
}
