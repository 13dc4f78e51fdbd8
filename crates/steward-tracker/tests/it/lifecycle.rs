//! By-id misuse, a tracker dropped under live guards, ids, metadata,
//! subscriptions and the kind limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use steward_tracker::{Error, Event, MAX_KINDS, Tracked, Tracker};

use crate::Events;

#[test]
fn unknown_and_double_release_are_reported_and_never_underflow() {
    let tracker = Tracker::new();
    let events = Events::on(&tracker);
    tracker.track_id("conn-1", "ws", 100).unwrap();
    let _g = tracker.track("ws", 5).unwrap();
    tracker.release_id("conn-1").unwrap();
    let err = tracker.release_id("conn-1").unwrap_err();
    assert!(
        matches!(&err, Error::UnknownId { key } if key == "conn-1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("conn-1"));
    assert!(tracker.release_id("never").is_err());
    assert!(tracker.touch_id("never").is_err());
    assert!(tracker.resize_id("never", 1).is_err());
    assert!(tracker.set_meta_id("never", "k", "v").is_err());
    let t = tracker.totals();
    assert_eq!((t.live_count, t.live_bytes), (1, 5));
    assert_eq!((t.released_count, t.released_bytes), (1, 100));
    assert_eq!(tracker.snapshot().unknown_ids, 5);
    let ops: Vec<String> = events
        .take()
        .into_iter()
        .map(|e| match e {
            Event::UnknownId { op, key } => format!("{op} {key}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ops,
        [
            "release conn-1",
            "release never",
            "touch never",
            "resize never",
            "set_meta never"
        ]
    );
}

#[test]
fn duplicate_key_is_refused_and_changes_nothing() {
    let tracker = Tracker::new();
    let id = tracker.track_id("x", "k", 10).unwrap();
    let err = tracker.track_id("x", "k", 99).unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateId { key } if key == "x"),
        "{err:?}"
    );
    assert_eq!(tracker.totals().live_bytes, 10);
    tracker.resize_id("x", 40).unwrap();
    tracker.set_meta_id("x", "peer", "127.0.0.1").unwrap();
    let snap = tracker.snapshot();
    assert_eq!(snap.largest[0].id, id.get());
    assert_eq!(snap.largest[0].size_bytes, 40);
    assert_eq!(snap.largest[0].metadata["peer"], "127.0.0.1");
    tracker.release_id("x").unwrap();
    // The key can be used again once released.
    tracker.track_id("x", "k", 1).unwrap();
    assert_eq!(tracker.totals().tracked_count, 2);
}

#[test]
fn guards_outliving_the_tracker_release_into_nothing() {
    let tracker = Tracker::new();
    let clone = tracker.clone();
    let mut guards: Vec<Tracked> = (0..100).map(|i| tracker.track("k", i).unwrap()).collect();
    tracker.track_id("key", "k", 1).unwrap();
    let _sub = tracker.subscribe(|_| {});
    drop(tracker);
    // A clone keeps it open.
    assert_eq!(clone.totals().live_count, 101);
    drop(clone);
    for g in &mut guards {
        g.touch();
        g.resize(7).unwrap();
        g.set_meta("after", "close");
        assert_eq!(g.kind(), "k");
    }
    let moved = std::thread::spawn(move || drop(guards));
    moved.join().unwrap();
}

#[test]
fn ids_are_unique_and_guards_carry_name_and_metadata() {
    let a = Tracker::new();
    let b = Tracker::new();
    let ga = a.track("k", 1).unwrap();
    let gb = b.track("k", 1).unwrap();
    assert_ne!(ga.id(), gb.id(), "unique across trackers too");
    assert!(ga.id().to_string().starts_with('#'));
    let g = a
        .track("k", 1)
        .unwrap()
        .with_name("first")
        .with_meta("a", "1");
    g.set_meta("a", "2");
    g.set_meta("b", "3");
    assert_eq!(g.name().as_deref(), Some("first"));
    assert_eq!(g.meta("a").as_deref(), Some("2"));
    assert_eq!(g.meta("zz"), None);
    let info = a
        .stale(std::time::Duration::ZERO)
        .into_iter()
        .find(|r| r.id == g.id().get())
        .unwrap();
    assert_eq!(info.metadata.len(), 2);
    assert_eq!(info.name.as_deref(), Some("first"));
    g.release();
    assert_eq!(a.len(), 1);
    assert!(!a.is_empty());
}

#[test]
fn dropping_a_subscription_unsubscribes_and_callbacks_may_call_the_tracker() {
    let tracker = Tracker::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let inner = tracker.clone();
    let sub = tracker.subscribe(move |_| {
        // Re-entrancy: no tracker lock is held while callbacks run.
        let _ = inner.totals();
        let _ = inner.snapshot();
        seen.fetch_add(1, Ordering::SeqCst);
    });
    assert!(tracker.release_id("nope").is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    drop(sub);
    assert!(tracker.release_id("nope").is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn too_many_kinds_is_an_error_naming_the_kind() {
    let tracker = Tracker::new();
    for i in 0..MAX_KINDS {
        drop(tracker.track(&format!("kind{i}"), 1).unwrap());
    }
    let err = tracker.track("one-too-many", 1).unwrap_err();
    assert!(matches!(err, Error::TooManyKinds { .. }));
    assert!(err.to_string().contains("one-too-many"), "{err}");
    // Known kinds still work.
    drop(tracker.track("kind0", 1).unwrap());
    assert_eq!(tracker.snapshot().kinds.len(), MAX_KINDS);
}

#[test]
fn handles_are_send_and_sync_and_huge_sizes_are_clamped() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Tracker>();
    send_sync::<Tracked>();
    send_sync::<steward_tracker::Snapshot>();
    send_sync::<Error>();

    let tracker = Tracker::new();
    let mut a = tracker.track("big", u64::MAX).unwrap();
    let _b = tracker.track("big", u64::MAX).unwrap();
    assert_eq!(a.size(), steward_tracker::MAX_SIZE);
    let t = tracker.totals();
    assert_eq!(
        t.live_bytes,
        2 * steward_tracker::MAX_SIZE,
        "no wrap-around"
    );
    a.resize(u64::MAX).unwrap();
    tracker.track_id("k", "big", u64::MAX).unwrap();
    tracker.resize_id("k", u64::MAX).unwrap();
    assert_eq!(tracker.totals().live_bytes, 3 * steward_tracker::MAX_SIZE);
}
