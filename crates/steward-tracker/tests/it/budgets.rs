//! Soft budgets emit one event per crossing; hard budgets refuse with a
//! message naming the kind and the sizes.

use steward_tracker::{Budget, Error, Event, Tracker};

use crate::Events;

#[test]
fn soft_budget_emits_once_per_crossing_and_rearms() {
    let tracker = Tracker::builder()
        .budget("buf", Budget::new().with_soft_bytes(1_000))
        .build()
        .unwrap();
    let events = Events::on(&tracker);

    let a = tracker.track("buf", 600).unwrap();
    assert!(events.take().is_empty(), "600 <= 1000: no event");
    let b = tracker.track("buf", 600).unwrap();
    let c = tracker.track("buf", 600).unwrap();
    assert_eq!(
        events.take(),
        vec![Event::SoftBudgetExceeded {
            kind: "buf".into(),
            live_bytes: 1_200,
            soft_bytes: 1_000
        }],
        "one event for the crossing, none while staying above"
    );
    assert!(tracker.kind("buf").unwrap().over_soft_budget);
    drop(c);
    assert!(events.take().is_empty(), "1200 is still above");
    drop(b);
    assert_eq!(
        events.take(),
        vec![Event::SoftBudgetRecovered {
            kind: "buf".into(),
            live_bytes: 600,
            soft_bytes: 1_000
        }]
    );
    // Crossing again (by resizing this time) reports again.
    let mut a = a;
    a.resize(1_001).unwrap();
    assert!(matches!(
        events.take().as_slice(),
        [Event::SoftBudgetExceeded {
            live_bytes: 1_001,
            ..
        }]
    ));
    // Exactly at the budget is within it.
    a.resize(1_000).unwrap();
    assert!(matches!(
        events.take().as_slice(),
        [Event::SoftBudgetRecovered { .. }]
    ));
    // The soft budget never refuses.
    let _big = tracker.track("buf", 1_000_000).unwrap();
}

#[test]
fn hard_byte_budget_refuses_with_kind_and_sizes() {
    let tracker = Tracker::builder()
        .budget("ws_conn", Budget::new().with_hard_bytes(1_000))
        .build()
        .unwrap();
    let _a = tracker.track("ws_conn", 700).unwrap();
    let err = tracker.track("ws_conn", 400).unwrap_err();
    match &err {
        Error::OverBudget {
            kind,
            unit,
            live,
            requested,
            limit,
        } => assert_eq!(
            (kind.as_str(), *unit, *live, *requested, *limit),
            ("ws_conn", "bytes", 700, 400, 1_000)
        ),
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    for needle in ["ws_conn", "700", "400", "1000", "bytes"] {
        assert!(msg.contains(needle), "`{msg}` lacks {needle}");
    }
    // Nothing was accounted for the refused request.
    let stats = tracker.kind("ws_conn").unwrap();
    assert_eq!(stats.totals.live_bytes, 700);
    assert_eq!(stats.totals.tracked_count, 1);
    assert_eq!(stats.rejected, 1);
    // Exactly up to the limit is allowed; other kinds are not limited.
    let _b = tracker.track("ws_conn", 300).unwrap();
    let _c = tracker.track("other", 1 << 40).unwrap();
}

#[test]
fn hard_count_budget_and_resize_refusals() {
    let tracker = Tracker::builder()
        .budget(
            "pool",
            Budget::new().with_hard_count(2).with_hard_bytes(100),
        )
        .build()
        .unwrap();
    let mut a = tracker.track("pool", 10).unwrap();
    let b = tracker.track("pool", 10).unwrap();
    let err = tracker.track("pool", 1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OverBudget {
                unit: "resources",
                live: 2,
                requested: 1,
                limit: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("pool"));
    // Growing past the byte budget is refused and leaves the size alone.
    let err = a.resize(95).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OverBudget {
                unit: "bytes",
                live: 20,
                requested: 85,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(a.size(), 10);
    a.resize(90).unwrap();
    assert_eq!(tracker.kind("pool").unwrap().totals.live_bytes, 100);
    drop(b);
    let _c = tracker.track("pool", 0).unwrap();
    // The by-id API obeys the same budget.
    let err = tracker.track_id("k", "pool", 0).unwrap_err();
    assert!(matches!(err, Error::OverBudget { .. }));
    assert_eq!(tracker.kind("pool").unwrap().rejected, 3);
}

#[test]
fn budgets_can_change_at_runtime_and_bad_ones_are_refused() {
    let tracker = Tracker::new();
    let _a = tracker.track("k", 50).unwrap();
    tracker
        .set_budget("k", Budget::new().with_hard_bytes(60))
        .unwrap();
    assert!(tracker.track("k", 20).is_err());
    tracker.set_budget("k", Budget::new()).unwrap();
    let _b = tracker.track("k", 20).unwrap();
    let err = tracker
        .set_budget("k", Budget::new().with_soft_bytes(10).with_hard_bytes(5))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidBudget { .. }));
    assert!(err.to_string().contains("`k`"), "{err}");
    let err = Tracker::builder()
        .budget("z", Budget::new().with_soft_bytes(10).with_hard_bytes(5))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`z`"), "{err}");
    assert_eq!(
        tracker.kind("k").unwrap().budget,
        Budget::new(),
        "the refused budget did not replace the previous one"
    );
}
