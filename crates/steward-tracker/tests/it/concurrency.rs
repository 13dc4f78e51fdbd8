//! Many threads tracking, resizing and releasing at once: totals are exact
//! after join, ids unique, peaks plausible.

use std::collections::HashSet;
use std::sync::Barrier;

use steward_tracker::{Budget, Tracked, Tracker};

const THREADS: usize = 8;
const OPS: usize = 4_000;

#[test]
fn totals_are_exact_after_concurrent_track_resize_and_drop() {
    let tracker = Tracker::new();
    let barrier = Barrier::new(THREADS);
    let results: Vec<(Vec<Tracked>, Vec<u64>, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let tracker = tracker.clone();
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let kind = ["x", "y", "z"][t % 3];
                    let mut kept = Vec::new();
                    let mut ids = Vec::new();
                    let mut tracked_bytes = 0u64;
                    let mut keyed_live = 0u64;
                    for i in 0..OPS {
                        let size = (t * 1_000 + i) as u64 % 4_096;
                        let mut g = tracker.track(kind, size).unwrap();
                        ids.push(g.id().get());
                        tracked_bytes += size;
                        if i % 3 == 0 {
                            // Grow by 10: counted as tracked bytes too.
                            g.resize(size + 10).unwrap();
                            tracked_bytes += 10;
                        }
                        g.touch();
                        if i % 10 == 0 {
                            kept.push(g);
                        }
                        // Keyed resources, half released again.
                        if i % 7 == 0 {
                            let key = format!("t{t}-{i}");
                            ids.push(tracker.track_id(&key, kind, 1).unwrap().get());
                            tracked_bytes += 1;
                            if i % 14 == 0 {
                                tracker.release_id(&key).unwrap();
                                assert!(tracker.release_id(&key).is_err());
                            } else {
                                keyed_live += 1;
                            }
                        }
                    }
                    (kept, ids, tracked_bytes, keyed_live)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let kept: Vec<&Tracked> = results.iter().flat_map(|r| &r.0).collect();
    let keyed_live: u64 = results.iter().map(|r| r.3).sum();
    let live_count = kept.len() as u64 + keyed_live;
    let live_bytes: u64 = kept.iter().map(|g| g.size()).sum::<u64>() + keyed_live;
    let tracked_bytes: u64 = results.iter().map(|r| r.2).sum();
    let all_ids: Vec<u64> = results.iter().flat_map(|r| r.1.iter().copied()).collect();
    let unique: HashSet<u64> = all_ids.iter().copied().collect();
    assert_eq!(unique.len(), all_ids.len(), "ids are unique");

    let t = tracker.totals();
    assert_eq!(t.live_count, live_count);
    assert_eq!(t.live_bytes, live_bytes);
    assert_eq!(t.tracked_count, all_ids.len() as u64);
    assert_eq!(t.tracked_bytes, tracked_bytes);
    assert_eq!(t.released_count, t.tracked_count - live_count);
    assert!(t.peak_count >= live_count && t.peak_count <= t.tracked_count);
    assert!(t.peak_bytes >= live_bytes && t.peak_bytes <= tracked_bytes);
    assert_eq!(tracker.len() as u64, live_count);
    assert_eq!(tracker.snapshot().unknown_ids, count_double_releases());
    // Per kind sums equal the global figures.
    let kinds = tracker.snapshot().kinds;
    assert_eq!(
        kinds.iter().map(|k| k.totals.live_bytes).sum::<u64>(),
        live_bytes
    );
    assert_eq!(
        kinds.iter().map(|k| k.totals.tracked_count).sum::<u64>(),
        all_ids.len() as u64
    );

    drop(results);
    let t = tracker.totals();
    assert_eq!((t.live_count, t.live_bytes), (keyed_live, keyed_live));
}

/// The double releases the test above makes on purpose.
fn count_double_releases() -> u64 {
    (0..THREADS as u64)
        .map(|_| (0..OPS).filter(|i| i % 14 == 0).count() as u64)
        .sum()
}

#[test]
fn hard_budget_is_never_exceeded_under_contention() {
    let tracker = Tracker::builder()
        .budget(
            "slot",
            Budget::new().with_hard_count(5).with_hard_bytes(4_000),
        )
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let tracker = tracker.clone();
            s.spawn(move || {
                for i in 0..3_000u64 {
                    if let Ok(g) = tracker.track("slot", 500 + i % 500) {
                        let stats = tracker.kind("slot").unwrap();
                        assert!(stats.totals.live_count <= 5);
                        assert!(stats.totals.live_bytes <= 4_000);
                        drop(g);
                    }
                }
            });
        }
    });
    let stats = tracker.kind("slot").unwrap();
    assert!(stats.totals.peak_count <= 5, "{stats:?}");
    assert!(stats.totals.peak_bytes <= 4_000, "{stats:?}");
    assert_eq!((stats.totals.live_count, stats.totals.live_bytes), (0, 0));
}
