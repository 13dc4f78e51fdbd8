//! The Python design's lifecycle and the pool's everyday API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use steward_pool::{CloseReason, Error, Pool, Pooled};

use crate::common::{Counting, guard};

fn pool(m: &Counting, max: usize) -> Pool<Counting> {
    Pool::builder(m.clone())
        .max_size(max)
        .reaper_interval(None)
        .build()
        .unwrap()
}

/// Python: `max_size=2`; two `add_connection` calls succeed, the third
/// returns False and nothing is added.
#[tokio::test]
async fn python_lifecycle_max_two_third_add_refused() {
    let m = Counting::new();
    let p = pool(&m, 2);
    p.add(m.make()).unwrap();
    p.add(m.make()).unwrap();
    let refused = p.add(m.make()).unwrap_err();
    assert!(
        matches!(refused.error, Error::Full { max_size: 2, .. }),
        "{refused}"
    );
    assert_eq!(refused.object.id, 2, "the refused object comes back");
    // The message names the pool; the reason is the source, shown once.
    let message = refused.to_string();
    let source = std::error::Error::source(&refused).map(ToString::to_string);
    assert!(
        message.contains(p.name()) && !message.contains("full"),
        "{message}"
    );
    assert!(source.is_some_and(|s| s.contains("is full")));
    drop(refused);
    let stats = p.stats();
    assert_eq!(
        (stats.size, stats.idle, stats.added, stats.created),
        (2, 2, 2, 0)
    );
    assert_eq!(
        m.live(),
        2,
        "nothing added: the third object is gone with the error"
    );
    // The added objects are handed out; no new object is created.
    let a = p.get().await.unwrap();
    let b = p.get().await.unwrap();
    let mut ids = [a.id, b.id];
    ids.sort_unstable();
    assert_eq!(ids, [0, 1]);
    assert_eq!(p.stats().created, 0);
}

/// Python's `add_connection` cleans expired connections before refusing.
#[tokio::test(start_paused = true)]
async fn add_succeeds_once_expired_objects_are_dropped() {
    let m = Counting::new();
    let p = Pool::builder(m.clone())
        .max_size(1)
        .idle_timeout(Some(Duration::from_secs(5)))
        .reaper_interval(None)
        .build()
        .unwrap();
    p.add(m.make()).unwrap();
    assert!(p.add(m.make()).is_err());
    tokio::time::advance(Duration::from_secs(6)).await;
    p.add(m.make()).expect("the expired object makes room");
    let stats = p.stats();
    assert_eq!((stats.size, stats.added, stats.closed.idle), (1, 2, 1));
}

#[tokio::test]
async fn try_get_says_full_at_once() {
    let m = Counting::new();
    let p = pool(&m, 2);
    let a = p.try_get().await.unwrap();
    let b = p.try_get().await.unwrap();
    let e = p.try_get().await.unwrap_err();
    assert!(matches!(e, Error::Full { max_size: 2, .. }));
    assert!(e.to_string().contains("pool"), "{e}");
    drop(a);
    let c = p.try_get().await.unwrap();
    assert_eq!(p.stats().created, 2);
    drop((b, c));
}

#[tokio::test(start_paused = true)]
async fn get_times_out_and_counts_it() {
    let m = Counting::new();
    let p = Pool::builder(m.clone())
        .max_size(1)
        .wait_timeout(Some(Duration::from_millis(250)))
        .reaper_interval(None)
        .build()
        .unwrap();
    let held = p.get().await.unwrap();
    let e = p.get().await.unwrap_err();
    assert!(matches!(e, Error::WaitTimeout { .. }), "{e}");
    let stats = p.stats();
    assert_eq!((stats.wait_count, stats.wait_timeouts), (1, 1));
    // 250 ms falls in the (100 ms, 1 s] bucket; the first wait is always
    // timed and counts for the 8 waits it samples.
    let bucket = stats
        .wait_time
        .iter()
        .find(|b| b.le == Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(bucket.count, 8);
    // The sum is weighted like the buckets: 8 times a wait of at least the
    // 250 ms timeout and within its bucket's bound.
    let sum = stats.wait_time_sum;
    let bounds = Duration::from_millis(8 * 250)..=Duration::from_secs(8);
    assert!(bounds.contains(&sum), "{sum:?}");
    drop(held);
}

#[tokio::test]
async fn broken_objects_are_replaced_by_the_health_check() {
    let m = Counting::new();
    let p = pool(&m, 2);
    let o = p.get().await.unwrap();
    let id = o.id;
    drop(o);
    m.break_id(id);
    let o = p.get().await.unwrap();
    assert_ne!(o.id, id, "the broken object was not handed out");
    let stats = p.stats();
    assert_eq!((stats.closed.broken, stats.created, stats.size), (1, 2, 1));
    assert_eq!(m.reasons(), vec![CloseReason::Broken]);
    drop(o);
}

#[tokio::test]
async fn create_errors_come_back_typed() {
    let m = Counting::new();
    m.fail_creates.store(true, SeqCst);
    // One place: a failed create that kept it would leave none.
    let p = pool(&m, 1);
    match p.get().await {
        Err(Error::Create { source, .. }) => assert_eq!(source.0, u64::MAX),
        other => panic!("expected a create error, got {:?}", other.map(|_| ())),
    }
    let stats = p.stats();
    assert_eq!((stats.create_errors, stats.size, stats.in_use), (1, 0, 0));
    m.fail_creates.store(false, SeqCst);
    assert!(p.try_get().await.is_ok(), "a failed create leaks no slot");
}

#[tokio::test(start_paused = true)]
async fn create_timeout_is_reported() {
    let m = Counting::new();
    m.set_delay(Duration::from_secs(60));
    let p = Pool::builder(m.clone())
        .max_size(1)
        .create_timeout(Some(Duration::from_secs(2)))
        .reaper_interval(None)
        .build()
        .unwrap();
    let e = p.get().await.unwrap_err();
    assert!(matches!(e, Error::CreateTimeout { .. }), "{e}");
    assert_eq!(p.stats().in_use, 0);
}

#[tokio::test]
async fn take_detaches_and_discard_closes() {
    let m = Counting::new();
    let p = pool(&m, 1);
    let o = p.get().await.unwrap();
    let obj = Pooled::take(o);
    assert_eq!(p.stats().size, 0, "taken objects leave the pool");
    assert_eq!(m.live(), 1, "but stay alive with the caller");
    drop(obj);
    let o = p.get().await.unwrap();
    Pooled::discard(o);
    let stats = p.stats();
    assert_eq!((stats.taken, stats.closed.broken, stats.size), (1, 1, 0));
    assert!(
        m.reasons() == vec![CloseReason::Broken],
        "take does not call the close hook"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_wakes_waiters_and_closes_everything() {
    let m = Counting::new();
    let p = Pool::builder(m.clone())
        .max_size(2)
        .wait_timeout(None)
        .reaper_interval(None)
        .build()
        .unwrap();
    let held = p.get().await.unwrap();
    drop(p.get().await.unwrap()); // one idle
    let busy = p.get().await.unwrap();
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get().await.map(|_| ()) });
    guard("waiter registers", async {
        while p.stats().waiters == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    p.close();
    let r = guard("waiter finishes", waiter).await.unwrap();
    assert!(
        matches!(r, Err(Error::Closed { .. })),
        "close wakes the waiter with Closed"
    );
    assert_eq!(m.live(), 2, "the idle object was closed at once");
    drop(busy);
    assert!(matches!(p.get().await, Err(Error::Closed { .. })));
    assert!(matches!(p.try_get().await, Err(Error::Closed { .. })));
    assert!(p.add(m.make()).is_err());
    drop(held);
    let stats = p.stats();
    assert_eq!((stats.size, stats.max_size), (0, 0));
    assert_eq!(m.live(), 0, "objects in use are closed when they come back");
    assert!(p.resize(4).is_err(), "a closed pool stays closed");
}

/// deadpool #445: `retain` while other threads read the status must not
/// deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_while_others_read_stats() {
    let m = Counting::new();
    let p = pool(&m, 8);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(SeqCst) {
                    n += p.stats().size as u64;
                }
                n
            })
        })
        .collect();
    let mut removed = 0;
    for round in 0..200 {
        let held: Vec<_> = futures_lite(&p, 4).await;
        drop(held);
        removed += p.retain(|o, _| (o.id + round) % 3 != 0);
    }
    stop.store(true, SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    let stats = p.stats();
    assert_eq!(stats.closed.removed, removed as u64);
    assert!(removed > 0);
    assert_eq!(stats.size, m.live());
}

async fn futures_lite(p: &Pool<Counting>, n: usize) -> Vec<Pooled<Counting>> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(p.get().await.unwrap());
    }
    v
}

#[tokio::test]
async fn stats_serialize() {
    let m = Counting::new();
    let p = pool(&m, 3);
    drop(p.get().await.unwrap());
    let json = serde_json::to_value(p.stats()).unwrap();
    assert_eq!(json["size"], 1);
    assert_eq!(json["created"], 1);
    assert_eq!(json["closed"]["lifetime"], 0);
    let back: steward_pool::Stats = serde_json::from_value(json).unwrap();
    assert_eq!(back, p.stats());
}

#[test]
fn wait_times_serialize_as_integer_microseconds() {
    let mut stats = steward_pool::Stats::default();
    stats.wait_time_sum = Duration::from_micros(1_234_567);
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["wait_time_sum_us"], 1_234_567);
    // The 100 µs bucket keeps its bound; the last one has none.
    assert_eq!(json["wait_time"][0]["le_us"], 100);
    assert_eq!(json["wait_time"][7]["le_us"], serde_json::Value::Null);
    assert_eq!(stats.wait_time[0].le, Some(Duration::from_micros(100)));
    let back: steward_pool::Stats = serde_json::from_value(json).unwrap();
    assert_eq!(back, stats);
    // The sum may be missing (older snapshots); a float is refused.
    let mut json = serde_json::to_value(&stats).unwrap();
    json.as_object_mut().unwrap().remove("wait_time_sum_us");
    let back: steward_pool::Stats = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back.wait_time_sum, Duration::ZERO);
    json["wait_time_sum_us"] = serde_json::json!(1.5);
    assert!(serde_json::from_value::<steward_pool::Stats>(json).is_err());
}

#[test]
fn config_round_trips_and_is_checked() {
    let c = steward_pool::PoolConfig::default();
    let json = serde_json::to_string(&c).unwrap();
    let back: steward_pool::PoolConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    let partial: steward_pool::PoolConfig = serde_json::from_str(r#"{"max_size": 3}"#).unwrap();
    assert_eq!(partial.max_size, 3);
    let bad = Pool::builder(Counting::new())
        .max_size(0)
        .reaper_interval(None)
        .build();
    assert!(matches!(bad, Err(Error::Config { .. })));
    let bad = Pool::builder(Counting::new())
        .max_size(2)
        .min_idle(3)
        .reaper_interval(None)
        .build();
    assert!(matches!(bad, Err(Error::Config { .. })));
    // A reaper needs a runtime: no panic outside one.
    let e = Pool::builder(Counting::new()).build().unwrap_err();
    assert!(e.to_string().contains("Tokio runtime"), "{e}");
}

/// A create that fails while a checkout waits for a place is reported as
/// the create error, not as a closed pool.
#[tokio::test(start_paused = true)]
async fn a_create_error_met_while_waiting_is_reported_as_such() {
    let m = Counting::new();
    let p = pool(&m, 1);
    let held = p.get().await.unwrap();
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get().await.map(drop) });
    tokio::task::yield_now().await;
    m.fail_creates.store(true, SeqCst);
    Pooled::discard(held);
    match guard("waiter", waiter).await.unwrap() {
        Err(Error::Create { .. }) => {}
        other => panic!("expected a create error, got {other:?}"),
    }
}

/// A checkout cancelled during its health check closes the object being
/// checked (as broken) and frees its place.
#[tokio::test(start_paused = true)]
async fn a_checkout_cancelled_in_its_health_check_closes_the_object() {
    let m = Counting::new();
    let p = pool(&m, 1);
    drop(p.get().await.unwrap());
    *m.recycle_delay.lock().unwrap() = Duration::from_secs(10);
    let cancelled = tokio::time::timeout(Duration::from_secs(1), p.get()).await;
    assert!(cancelled.is_err(), "the health check takes 10 s");
    assert_eq!(m.reasons(), vec![CloseReason::Broken]);
    assert_eq!((p.stats().size, m.live()), (0, 0));
    // The same for an object that came in by `add` (checked on the way
    // out of the pool's own queue).
    p.add(m.make()).unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(1), p.get()).await;
    assert!(cancelled.is_err(), "the health check takes 10 s");
    assert_eq!(m.reasons(), vec![CloseReason::Broken; 2]);
    assert_eq!((p.stats().size, m.live()), (0, 0));
    *m.recycle_delay.lock().unwrap() = Duration::ZERO;
    assert!(p.try_get().await.is_ok(), "its place is free again");
}

/// `Debug` names the pool and says whether a weak handle's pool lives; a
/// weak handle upgrades only while it does; a refusal names its pool.
#[tokio::test]
async fn debug_and_weak_handles_name_the_pool_and_its_state() {
    let m = Counting::new();
    let builder = Pool::builder(m.clone()).name("db").reaper_interval(None);
    assert!(format!("{builder:?}").contains("db"), "{builder:?}");
    let p = builder.max_size(1).build().unwrap();
    assert!(format!("{p:?}").contains("db"), "{p:?}");
    assert_eq!((p.name(), p.is_closed()), ("db", false));
    let weak = p.downgrade();
    assert!(format!("{weak:?}").contains("alive: true"), "{weak:?}");
    let upgraded = weak.upgrade().expect("the pool lives");
    assert_eq!(upgraded.stats().max_size, 1);
    drop(upgraded);
    let held = p.get().await.unwrap();
    assert!(format!("{held:?}").starts_with("Pooled"), "{held:?}");
    let refused = p.add(m.make()).unwrap_err();
    assert!(refused.to_string().contains("`db`"), "{refused}");
    assert!(format!("{refused:?}").contains("Full"), "{refused:?}");
    p.close();
    assert!(p.is_closed());
    drop((held, p));
    assert!(weak.upgrade().is_none(), "the pool is gone");
    assert!(format!("{weak:?}").contains("alive: false"), "{weak:?}");
}
