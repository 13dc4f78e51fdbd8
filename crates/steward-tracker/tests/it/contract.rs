//! Promises of the public API that a mutation run (`cargo xtask mutants
//! tracker`) found no test for: each test here failed against at least one
//! surviving mutant.

use std::time::Duration;

use steward_tracker::{Budget, Error, ManualClock, Tracker};

fn invalid(budget: Budget) -> bool {
    matches!(
        Tracker::new().set_budget("k", budget),
        Err(Error::InvalidBudget { .. })
    )
}

#[test]
fn budgets_refuse_the_reserved_maximum_and_accept_soft_equal_to_hard() {
    assert!(invalid(Budget::new().with_hard_bytes(u64::MAX)));
    assert!(invalid(Budget::new().with_soft_bytes(u64::MAX)));
    assert!(invalid(Budget::new().with_hard_count(u64::MAX)));
    assert!(invalid(
        Budget::new().with_soft_bytes(11).with_hard_bytes(10)
    ));
    assert!(!invalid(
        Budget::new().with_soft_bytes(10).with_hard_bytes(10)
    ));
    assert!(!invalid(Budget::new().with_hard_count(u64::MAX - 1)));
}

#[test]
fn a_count_budget_alone_is_enforced() {
    let tracker = Tracker::new();
    tracker
        .set_budget("socket", Budget::new().with_hard_count(2))
        .unwrap();
    let _a = tracker.track("socket", 1 << 20).unwrap();
    let _b = tracker.track("socket", 1 << 20).unwrap();
    let third = tracker.track("socket", 1);
    assert!(
        matches!(
            &third,
            Err(Error::OverBudget {
                unit: "resources",
                ..
            })
        ),
        "{third:?}"
    );
    assert_eq!(tracker.len(), 2);
}

#[test]
fn leaks_are_resources_alive_for_at_least_the_leak_age() {
    let clock = ManualClock::new();
    let tracker = Tracker::builder()
        .clock(clock.clone())
        .leak_after(Duration::from_secs(10))
        .build()
        .unwrap();
    let _g = tracker.track("buf", 1).unwrap();
    clock.advance(Duration::from_millis(9_999));
    assert!(tracker.check_leaks().is_empty());
    clock.advance(Duration::from_millis(1));
    assert_eq!(tracker.check_leaks().len(), 1);
    // Once each.
    assert!(tracker.check_leaks().is_empty());
}

#[test]
fn the_leak_age_can_be_changed_and_switched_off_on_a_live_tracker() {
    let clock = ManualClock::new();
    let tracker = Tracker::builder().clock(clock.clone()).build().unwrap();
    let _old = tracker.track("buf", 1).unwrap();
    clock.advance(Duration::from_secs(60));
    assert!(tracker.check_leaks().is_empty(), "no leak age by default");
    tracker.set_leak_after(Some(Duration::from_secs(30)));
    assert_eq!(tracker.check_leaks().len(), 1);
    let _new = tracker.track("buf", 1).unwrap();
    clock.advance(Duration::from_secs(60));
    tracker.set_leak_after(None);
    assert!(tracker.check_leaks().is_empty());
}

#[test]
fn a_manual_clock_can_be_set_and_moved_back() {
    let clock = ManualClock::new();
    let tracker = Tracker::builder().clock(clock.clone()).build().unwrap();
    clock.set(Duration::from_secs(100));
    let g = tracker.track("buf", 1).unwrap();
    clock.set(Duration::from_secs(130));
    assert_eq!(clock.now(), Duration::from_secs(130));
    assert_eq!(g.age(), Duration::from_secs(30));
    clock.set(Duration::from_secs(50));
    assert_eq!(g.age(), Duration::ZERO, "backwards reads as zero");
}

#[test]
fn snapshots_list_top_n_of_the_largest_and_oldest() {
    let tracker = Tracker::builder().top_n(2).build().unwrap();
    let _guards: Vec<_> = (1..=5).map(|i| tracker.track("buf", i).unwrap()).collect();
    let snap = tracker.snapshot();
    let sizes: Vec<u64> = snap.largest.iter().map(|r| r.size_bytes).collect();
    assert_eq!(sizes, [5, 4]);
    assert_eq!(snap.oldest.len(), 2);
}

#[test]
fn is_empty_follows_what_is_live() {
    let tracker = Tracker::new();
    assert!(tracker.is_empty());
    let g = tracker.track("buf", 1).unwrap();
    assert!(!tracker.is_empty());
    drop(g);
    assert!(tracker.is_empty());
}

#[test]
fn debug_shows_what_is_live_and_never_panics() {
    let tracker = Tracker::new();
    let g = tracker.track("socket", 42).unwrap();
    let shown = format!("{tracker:?}");
    assert!(shown.contains("live: 1"), "{shown}");
    assert!(shown.contains("closed: false"), "{shown}");
    let shown = format!("{g:?}");
    assert!(shown.contains("socket") && shown.contains("42"), "{shown}");
}

#[test]
fn guards_outliving_their_tracker_release_into_nothing() {
    let tracker = Tracker::new();
    tracker
        .set_budget("buf", Budget::new().with_hard_bytes(100))
        .unwrap();
    let mut g = tracker.track("buf", 10).unwrap();
    drop(tracker);
    // The budget belonged to the tracker that is gone: nothing to refuse.
    g.resize(1_000).unwrap();
    assert_eq!(g.size(), 1_000);
    drop(g);
}
