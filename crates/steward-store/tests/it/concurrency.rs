//! Many threads and many tokio tasks writing at once: every acknowledged
//! write is present, in memory and after reopening.

use std::sync::Arc;

use serde_json::json;
use steward_store::Store;

#[test]
fn threads_and_tasks_write_concurrently() {
    let (_d, path) = crate::temp_store();
    let store = Store::builder(&path)
        .compact_log_bytes(16 << 10)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    s.upsert_blocking(&format!("thread{t}_{i}"), json!({ "t": t, "i": i }))
                        .unwrap();
                }
            })
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..64 {
            let s = store.clone();
            let acked = Arc::clone(&acked);
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    let k = format!("task{t}_{i}");
                    s.upsert(&k, i).await.unwrap();
                    acked.lock().unwrap().push(k);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    for t in threads {
        t.join().unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.writes, 16 * 40 + 64 * 10);
    assert!(stats.batches <= stats.writes);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.len(), 16 * 40 + 64 * 10);
    for k in acked.lock().unwrap().iter() {
        assert!(store.contains_key(k), "{k} lost");
    }
    assert_eq!(store.get("thread15_39"), Some(json!({ "t": 15, "i": 39 })));
}

#[test]
fn concurrent_creates_of_one_key_have_one_winner() {
    let (_d, path) = crate::temp_store();
    let store = Store::open(&path).unwrap();
    let wins: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let store = &store;
                s.spawn(move || usize::from(store.create_blocking("only", t).unwrap()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 1);
}

#[test]
fn load_and_check_see_consistent_state_during_writes_and_compactions() {
    let (_d, path) = crate::temp_store();
    let store = Store::builder(&path)
        .compact_log_bytes(2 << 10)
        .build()
        .unwrap();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..300 {
                store
                    .upsert_blocking(&format!("k{i:03}"), json!({ "i": i }))
                    .unwrap();
            }
        });
        let mut last = 0;
        while !writer.is_finished() {
            // Keys are only added, so what a reader sees never shrinks.
            let map = steward_store::load(&path).unwrap();
            assert!(
                map.len() >= last,
                "load went back from {last} to {}",
                map.len()
            );
            last = map.len();
            let report = steward_store::check(&path).unwrap();
            assert!(report.is_ok(), "{report}");
        }
    });
    assert!(store.stats().compactions > 0);
    assert_eq!(steward_store::load(&path).unwrap().len(), 300);
}

#[test]
fn async_writes_leave_the_runtime_free() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    // One thread only: if a write blocked it (doing the fsync inline),
    // the other task could not run until all writes were done.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (_d, path) = crate::temp_store();
    let store = Store::open(&path).unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = rt.block_on(async {
        let (t, s) = (Arc::clone(&ticks), Arc::clone(&stop));
        let ticker = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                t.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        for i in 0..20 {
            store.upsert("k", i).await.unwrap();
        }
        let seen = ticks.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        ticker.await.unwrap();
        seen
    });
    assert!(
        seen > 0,
        "the runtime's other task never ran during 20 writes"
    );
    assert_eq!(store.get("k"), Some(json!(19)));
}
