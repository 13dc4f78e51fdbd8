//! Known bugs of other pools, as regression tests here.

use std::time::Duration;

use steward_pool::{Error, Pool, Pooled};

use crate::common::{Counting, guard};

fn pool(m: &Counting, max: usize) -> Pool<Counting> {
    Pool::builder(m.clone())
        .max_size(max)
        .wait_timeout(None)
        .reaper_interval(None)
        .build()
        .unwrap()
}

/// bb8 #59 / #67: a `get` cancelled while waiting must not leak its slot.
#[tokio::test]
async fn cancelled_get_leaks_no_slot() {
    let m = Counting::new();
    let p = pool(&m, 1);
    let held = p.get().await.unwrap();
    for _ in 0..10 {
        // Polled until it waits, then dropped.
        let r = tokio::time::timeout(Duration::from_millis(1), p.get()).await;
        assert!(r.is_err(), "the pool is full: the get must wait");
    }
    assert_eq!(p.stats().waiters, 0);
    drop(held);
    let again = guard("get after cancelled waiters", p.try_get())
        .await
        .unwrap();
    let stats = p.stats();
    assert_eq!((stats.size, stats.in_use, stats.created), (1, 1, 1));
    drop(again);
}

/// A `get` cancelled inside the manager's `create` gives back both its slot
/// and its reservation of a live place.
#[tokio::test(start_paused = true)]
async fn get_cancelled_during_create_leaks_nothing() {
    let m = Counting::new();
    let p = pool(&m, 1);
    m.set_delay(Duration::from_secs(10));
    let r = tokio::time::timeout(Duration::from_secs(1), p.get()).await;
    assert!(r.is_err(), "create takes 10 s");
    let stats = p.stats();
    assert_eq!((stats.size, stats.in_use, stats.created), (0, 0, 0));
    m.set_delay(Duration::ZERO);
    let o = p
        .try_get()
        .await
        .expect("slot and live place were given back");
    assert_eq!(m.live(), 1);
    drop(o);
}

/// bb8 #167: returning an object wakes a waiting `get`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returned_object_wakes_a_waiter() {
    let m = Counting::new();
    let p = pool(&m, 1);
    let held = p.get().await.unwrap();
    let id = held.id;
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get().await.map(|o| o.id) });
    guard("waiter registers", async {
        while p.stats().waiters == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    drop(held);
    let got = guard("waiter wakes", waiter).await.unwrap().unwrap();
    assert_eq!(got, id, "the waiter got the returned object");
    assert_eq!(p.stats().created, 1);
}

/// deadpool #205 / #380: live objects never exceed `max_size`, also when
/// gets are cancelled while the pool is resized.
#[tokio::test(start_paused = true)]
async fn live_never_exceeds_max_under_cancel_and_resize() {
    let m = Counting::new();
    let p = pool(&m, 4);
    m.tally
        .cap_view
        .store(4, std::sync::atomic::Ordering::SeqCst);
    m.set_delay(Duration::from_millis(5));
    let mut held = Vec::new();
    for round in 0..40u64 {
        // Some gets finish, some are cancelled mid-create or mid-wait.
        let cancel_after = Duration::from_millis(round % 7);
        if let Ok(Ok(o)) = tokio::time::timeout(cancel_after, p.get()).await {
            held.push(o);
        }
        if round % 3 == 0 && !held.is_empty() {
            drop(held.remove(0));
        }
        // Resize between 1 and 4: grow the cap view first, shrink it after.
        let new = 1 + (round as usize * 5) % 4;
        let ord = std::sync::atomic::Ordering::SeqCst;
        if new > m.tally.cap_view.load(ord) {
            m.tally.cap_view.store(new, ord);
            p.resize(new).unwrap();
        } else {
            p.resize(new).unwrap();
            // Objects in use over the new cap are closed when they return.
            held.truncate(new);
            m.tally.cap_view.store(new, ord);
        }
        assert!(
            !m.tally.overflow.load(ord),
            "round {round}: created over the cap"
        );
        assert!(
            m.live() <= new,
            "round {round}: {} live, max {new}",
            m.live()
        );
        assert_eq!(p.stats().size, m.live(), "pool and manager agree");
    }
    drop(held);
    let stats = p.stats();
    assert_eq!(stats.in_use, 0);
    assert_eq!(stats.size, m.live());
}

/// deadpool's own `resize` keeps the permits of a shrink; ours gives them
/// back: after shrinking an empty pool from 4 to 1, a second checkout must
/// find the pool full.
#[tokio::test]
async fn resize_really_shrinks() {
    let m = Counting::new();
    let p = pool(&m, 4);
    p.resize(1).unwrap();
    let one = p.get().await.unwrap();
    assert!(matches!(
        p.try_get().await,
        Err(Error::Full { max_size: 1, .. })
    ));
    drop(one);
    // Growing again works and never overflows: repeat shrink/grow cycles.
    for _ in 0..100 {
        p.resize(8).unwrap();
        p.resize(2).unwrap();
    }
    let a = p.get().await.unwrap();
    let b = p.get().await.unwrap();
    assert!(matches!(
        p.try_get().await,
        Err(Error::Full { max_size: 2, .. })
    ));
    assert_eq!(m.live(), 2);
    drop((a, b));
}

/// Objects in constant use still expire by `max_lifetime`.
#[tokio::test(start_paused = true)]
async fn objects_in_constant_use_still_expire_by_lifetime() {
    let m = Counting::new();
    let lifetime = Duration::from_secs(10);
    let tick = Duration::from_secs(1);
    let p = Pool::builder(m.clone())
        .max_size(1)
        .max_lifetime(Some(lifetime))
        .idle_timeout(None)
        .reaper_interval(Some(tick))
        .build()
        .unwrap();
    for _ in 0..35 {
        let o = p.get().await.unwrap();
        // Expiry is judged by the pool's coarse clock: within one reaper tick.
        let age = Pooled::info(&o).age;
        assert!(age <= lifetime + tick, "handed out {age:?} old");
        // In use the whole time: never idle when the reaper runs.
        tokio::time::sleep(tick).await;
        drop(o);
    }
    let stats = p.stats();
    assert!(stats.created >= 4, "created {}", stats.created);
    assert_eq!(stats.closed.lifetime, stats.created - 1);
    assert_eq!(m.live(), 1);
}
