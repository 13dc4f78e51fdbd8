//! Keyed pools: per-key and global caps, eviction, empty sub-pools dropped.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use steward_pool::{Error, KeyedPool};

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
    let metrics = p.metrics();
    assert_eq!(metrics.total.closed.evicted, 1, "{metrics:?}");
    assert_eq!(metrics.total.size, 3);
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
    let metrics = p.metrics();
    assert_eq!(
        (metrics.total.created, metrics.total.closed.removed),
        (3, 2)
    );
    assert_eq!(metrics.per_key.len(), 1);
    drop(held);
    assert_eq!(p.shrink_to_min_idle(), 1);
    assert_eq!(p.keys(), 0);
    assert_eq!(
        p.metrics().total.created,
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

    let total = p.metrics().total;
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
    let closed = p.metrics().total.closed;
    assert_eq!((closed.closed, closed.total()), (2, 5), "{closed:?}");
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
    assert_eq!(p.metrics().total.idle, 2);
    tokio::time::sleep(Duration::from_secs(75)).await;
    let metrics = p.metrics();
    assert_eq!(metrics.total.closed.idle, 2, "{metrics:?}");
    assert_eq!((m.total.live(), p.keys()), (0, 0), "{metrics:?}");

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
    let metrics = p.metrics().total;
    assert_eq!(
        (metrics.added, metrics.idle, metrics.created),
        (1, 1, 1),
        "{metrics:?}"
    );
    let again = p.get(&1).await.unwrap();
    assert_eq!(p.metrics().total.created, 1, "reused, not created");
    drop(again);
}
