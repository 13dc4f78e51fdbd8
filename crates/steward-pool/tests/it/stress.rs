//! Many tasks on a multi-thread runtime with random cancellation; the
//! managers' own counters prove the caps.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use rand::RngExt;
use steward_pool::{KeyedPool, Pool, Pooled};

use crate::common::{Counting, KeyedCounting, guard};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_random_cancel_and_resize_never_exceeds_cap() {
    let m = Counting::new();
    m.tally.cap_view.store(6, SeqCst);
    m.set_delay(Duration::from_micros(200));
    let p = Pool::builder(m.clone())
        .max_size(6)
        .wait_timeout(Some(Duration::from_secs(30)))
        .reaper_interval(None)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..24u64 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u32;
            for i in 0..150u64 {
                let (cancel_us, hold, fate) = {
                    let mut r = rand::rng();
                    (
                        r.random_range(0..400u64),
                        r.random_range(0..3u32),
                        r.random_range(0..20u32),
                    )
                };
                let got = tokio::time::timeout(Duration::from_micros(cancel_us), p.get()).await;
                let Ok(Ok(o)) = got else { continue };
                ok += 1;
                for _ in 0..hold {
                    tokio::task::yield_now().await;
                }
                match fate {
                    // Taking gives the place back before the object goes:
                    // it leaves the manager's count first, or a create in
                    // that place would seem to go over the cap.
                    0 => {
                        let mut o = o;
                        o.leave_tally();
                        drop(Pooled::take(o));
                    }
                    1 => Pooled::discard(o),
                    _ => drop(o),
                }
                if (t + i) % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            ok
        }));
    }
    let resizer = {
        let (p, m) = (p.clone(), m.clone());
        tokio::spawn(async move {
            for i in 0..60usize {
                let new = 1 + (i * 7) % 6;
                if new > m.tally.cap_view.load(SeqCst) {
                    m.tally.cap_view.store(new, SeqCst);
                    p.resize(new).unwrap();
                } else {
                    // Over-cap objects in use close on return, and creates
                    // that reserved their place before the shrink finish:
                    // the manager's view only tightens once the pool's live
                    // count (objects plus reservations) is under the cap.
                    p.resize(new).unwrap();
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                    while p.stats().size > new && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_micros(100)).await;
                    }
                    let size = p.stats().size;
                    m.tally.cap_view.store(new.max(size), SeqCst);
                }
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
        })
    };
    let mut total = 0;
    for t in tasks {
        total += guard("stress task", t).await.unwrap();
    }
    guard("resizer", resizer).await.unwrap();
    assert!(total > 0, "some checkouts succeeded");
    assert!(
        !m.tally.overflow.load(SeqCst),
        "a create went over the cap in force"
    );
    assert!(m.tally.max_seen.load(SeqCst) <= 6);
    let stats = p.stats();
    assert_eq!((stats.in_use, stats.waiters), (0, 0), "{stats:?}");
    assert_eq!(stats.size, m.live(), "pool and manager agree");
    assert!(stats.size <= stats.max_size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_keyed_caps_per_key_and_global() {
    let m = KeyedCounting::default();
    *crate::common::lock(&m.create_delay) = Duration::from_micros(200);
    m.total.cap_view.store(5, SeqCst);
    for k in 0..4 {
        m.key_tally(k).cap_view.store(2, SeqCst);
    }
    let p = KeyedPool::builder(m.clone())
        .max_size(2)
        .wait_timeout(Some(Duration::from_secs(30)))
        .reaper_interval(None)
        .max_total(5)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u32;
            for _ in 0..150 {
                let (key, cancel_us, hold) = {
                    let mut r = rand::rng();
                    (
                        r.random_range(0..4u32),
                        r.random_range(0..500u64),
                        r.random_range(0..3u32),
                    )
                };
                let got = tokio::time::timeout(Duration::from_micros(cancel_us), p.get(&key)).await;
                let Ok(Ok(o)) = got else { continue };
                assert_eq!(o.key, key);
                ok += 1;
                for _ in 0..hold {
                    tokio::task::yield_now().await;
                }
                drop(o);
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += guard("keyed stress task", t).await.unwrap();
    }
    assert!(total > 0);
    assert!(!m.total.overflow.load(SeqCst), "global cap exceeded");
    assert!(m.total.max_seen.load(SeqCst) <= 5);
    for k in 0..4 {
        let t = m.key_tally(k);
        assert!(!t.overflow.load(SeqCst), "key {k} cap exceeded");
        assert!(t.max_seen.load(SeqCst) <= 2);
    }
    assert_eq!(p.size(), m.total.live());
    assert_eq!(p.stats().total.in_use, 0);
}
