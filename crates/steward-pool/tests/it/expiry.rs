//! Idle timeout, lifetime, min_idle and the reaper, under paused time.

use std::time::Duration;

use steward_pool::{Error, Pool, Pooled};

use crate::common::Counting;

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn reaper_closes_idle_objects_but_keeps_min_idle() {
    let m = Counting::new();
    let p = Pool::builder(m.clone())
        .max_size(4)
        .min_idle(1)
        .idle_timeout(Some(Duration::from_secs(60)))
        .max_lifetime(None)
        .reaper_interval(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let held: Vec<_> = [
        p.get().await.unwrap(),
        p.get().await.unwrap(),
        p.get().await.unwrap(),
    ]
    .into();
    drop(held);
    assert_eq!(p.stats().idle, 3);
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(p.stats().idle, 3, "not idle long enough yet");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let stats = p.stats();
    assert_eq!((stats.idle, stats.closed.idle), (1, 2), "{stats:?}");
    assert_eq!(m.live(), 1);
}

#[tokio::test(start_paused = true)]
async fn reaper_tops_up_to_min_idle_and_replaces_expired() {
    let m = Counting::new();
    let p = Pool::builder(m.clone())
        .max_size(4)
        .min_idle(2)
        .max_lifetime(Some(Duration::from_secs(100)))
        .reaper_interval(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    assert_eq!(p.stats().size, 0);
    tokio::time::sleep(Duration::from_secs(11)).await;
    let stats = p.stats();
    assert_eq!((stats.idle, stats.created), (2, 2));
    // Lifetime expiry closes them; the same pass makes new ones.
    tokio::time::sleep(Duration::from_secs(100)).await;
    let stats = p.stats();
    assert_eq!(
        (stats.idle, stats.created, stats.closed.lifetime),
        (2, 4, 2)
    );
    // Pre-created objects are handed out without creating more.
    let a = p.get().await.unwrap();
    let b = p.get().await.unwrap();
    assert_eq!(p.stats().created, 4);
    drop((a, b));
}

#[tokio::test(start_paused = true)]
async fn reaper_stops_when_last_handle_dropped() {
    let m = Counting::new();
    let before = alive_tasks();
    let p = Pool::builder(m.clone())
        .max_size(2)
        .min_idle(1)
        .reaper_interval(Some(Duration::from_secs(1)))
        .build()
        .unwrap();
    assert_eq!(alive_tasks(), before + 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(m.live(), 1, "the reaper made the min_idle object");
    let clone = p.clone();
    drop(p);
    assert_eq!(alive_tasks(), before + 1, "a handle is still alive");
    drop(clone);
    settle(before).await;
    assert_eq!(alive_tasks(), before, "no task left behind");
    assert_eq!(m.live(), 0, "idle objects closed with the pool");
    assert_eq!(m.reasons(), vec![steward_pool::CloseReason::Closed]);
}

#[tokio::test(start_paused = true)]
async fn close_stops_the_reaper() {
    let before = alive_tasks();
    let p = Pool::builder(Counting::new())
        .reaper_interval(Some(Duration::from_secs(1)))
        .build()
        .unwrap();
    assert_eq!(alive_tasks(), before + 1);
    p.close();
    settle(before).await;
    assert_eq!(alive_tasks(), before);
}

#[tokio::test(start_paused = true)]
async fn recent_window_skips_the_health_check() {
    let m = Counting::new();
    let p = Pool::builder(m.clone())
        .max_size(1)
        .recent_window(Duration::from_secs(5))
        .reaper_interval(None)
        .build()
        .unwrap();
    drop(p.get().await.unwrap());
    let o = p.get().await.unwrap();
    assert_eq!(o.uses, 0, "used within the window: no check");
    drop(o);
    tokio::time::advance(Duration::from_secs(6)).await;
    let o = p.get().await.unwrap();
    assert_eq!(o.uses, 1, "idle longer than the window: checked");
    drop(o);
}

#[tokio::test(start_paused = true)]
async fn shrink_to_min_idle_and_reap_report_counts() {
    let m = Counting::new();
    let p = Pool::builder(m.clone())
        .max_size(6)
        .min_idle(2)
        .idle_timeout(Some(Duration::from_secs(30)))
        .reaper_interval(None)
        .build()
        .unwrap();
    let held: Vec<_> = futures(&p, 6).await;
    let first = Pooled::info(&held[0]);
    assert_eq!(first.age, Duration::ZERO);
    drop(held);
    assert_eq!(p.shrink_to_min_idle(), 4);
    assert_eq!(p.stats().idle, 2);
    assert_eq!(p.shrink_to_min_idle(), 0);
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(p.reap_idle(), 0, "min_idle is kept even when idle-expired");
    assert_eq!(p.stats().closed.shrink, 4);
}

/// A pool without a reaper.
fn sized(m: &Counting, max_size: usize, min_idle: usize) -> Pool<Counting> {
    Pool::builder(m.clone())
        .max_size(max_size)
        .min_idle(min_idle)
        .reaper_interval(None)
        .build()
        .unwrap()
}

/// `top_up` says how many objects it made: up to `min_idle` idle, then
/// none.
#[tokio::test]
async fn top_up_reports_the_objects_it_made() {
    let m = Counting::new();
    let p = sized(&m, 4, 3);
    let held = p.get().await.unwrap();
    drop(held);
    assert_eq!(p.top_up().await.unwrap(), 2, "one was idle already");
    assert_eq!((p.stats().idle, m.live()), (3, 3));
    assert_eq!(p.top_up().await.unwrap(), 0);
}

/// `resize` refuses 0 and anything below `min_idle`, changing nothing, and
/// takes `min_idle` itself.
#[tokio::test]
async fn resize_refuses_zero_and_below_min_idle() {
    let m = Counting::new();
    let p = sized(&m, 4, 2);
    for bad in [0, 1] {
        let e = p.resize(bad).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        assert!(e.to_string().contains("min_idle is 2"), "{e}");
        assert_eq!(p.stats().max_size, 4, "a refused resize changes nothing");
    }
    p.resize(2).unwrap();
    assert_eq!(p.stats().max_size, 2);
    // Without min_idle, 0 is still no size.
    let q = sized(&m, 2, 0);
    assert!(matches!(q.resize(0), Err(Error::Config { .. })));
    q.resize(1).unwrap();
    assert_eq!(q.stats().max_size, 1);
}

async fn futures(p: &Pool<Counting>, n: usize) -> Vec<Pooled<Counting>> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(p.get().await.unwrap());
    }
    v
}

/// Lets the runtime finish aborted tasks (bounded).
async fn settle(target: usize) {
    for _ in 0..1000 {
        if alive_tasks() <= target {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Idle time counts from an object's return, not from its creation:
/// held for 100 s and back for 10 s, an object is not idle past a 60 s
/// timeout; 70 s after its return it is. (Returns read the coarse clock,
/// which the reaper's passes advance: exact within one reaper interval.)
#[tokio::test(start_paused = true)]
async fn idle_time_counts_from_the_return() {
    let p = Pool::builder(Counting::new())
        .max_size(1)
        .idle_timeout(Some(Duration::from_secs(60)))
        .max_lifetime(None)
        .health_check(false)
        .reaper_interval(Some(Duration::from_secs(5)))
        .build()
        .unwrap();
    let held = p.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(100)).await;
    drop(held);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(p.stats().closed.idle, 0, "back for 10 s only");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(p.stats().closed.idle, 1, "idle for 70 s");
}

/// The health check is skipped for an object back within `recent_window`,
/// counted from its return: held for 30 s and back for 2 s, it is handed
/// out again unchecked. The return reads the coarse clock, which the
/// create of a second object advanced just before.
#[tokio::test(start_paused = true)]
async fn the_recent_window_counts_from_the_return() {
    let p = Pool::builder(Counting::new())
        .max_size(2)
        .health_check(true)
        .recent_window(Duration::from_secs(10))
        .idle_timeout(None)
        .max_lifetime(None)
        .reaper_interval(None)
        .build()
        .unwrap();
    let first = p.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(29)).await;
    let second = p.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let id = first.id;
    drop(first);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = p.get().await.unwrap();
    assert_eq!((again.id, again.uses), (id, 0), "back 1 s ago: unchecked");
    drop((again, second));
}
