//! A subscriber that reads nothing while large values are written: its
//! buffer is bounded in bytes as well as in changes, the overflow is
//! counted in the stats it sees, and it gets changes again once it reads.

use serde_json::{Value, json};
use steward_store::{Change, DEFAULT_SUBSCRIPTION_BYTES, Store};

use crate::temp_store;

/// A JSON string of `len` bytes as compact JSON, told apart by `i`.
fn big(i: usize, len: usize) -> Value {
    let mut s = format!("{i:04}");
    s.push_str(&"x".repeat(len - 2 - s.len()));
    Value::String(s)
}

#[test]
fn a_subscriber_that_reads_nothing_holds_at_most_its_bytes() {
    let (_dir, path) = temp_store();
    let store = Store::open(&path).unwrap();
    let mut default = store.subscribe("*");
    let mut tight = store.subscribe("*");
    tight.set_max_bytes(1_000);
    let value_len = 1_000_000;
    let writes = 30;
    for i in 0..writes {
        store.upsert_blocking("big", big(i, value_len)).unwrap();
    }
    // Each change counts its key and its value: 1,000,003 bytes, so 16
    // of them fit the default 16 MiB and the other 14 are dropped.
    let each = value_len + "big".len();
    let fit = DEFAULT_SUBSCRIPTION_BYTES / each;
    assert_eq!(fit, 16);
    let s = default.stats();
    assert_eq!(
        (
            s.queued,
            s.dropped,
            s.dropped_over_bytes,
            s.dropped_over_count
        ),
        (fit, (writes - fit) as u64, (writes - fit) as u64, 0),
        "{s:?}"
    );
    assert_eq!(s.queued_bytes, fit * each);
    assert!(s.peak_queued_bytes <= DEFAULT_SUBSCRIPTION_BYTES, "{s:?}");
    assert_eq!(s.dropped_bytes, ((writes - fit) * each) as u64);
    assert_eq!(default.dropped(), s.dropped);

    // A value larger than the bound still reaches a consumer that keeps
    // up: the first one passed alone, the rest were dropped.
    let t = tight.stats();
    assert_eq!(
        (t.queued, t.dropped_over_bytes),
        (1, writes as u64 - 1),
        "{t:?}"
    );
    assert_eq!(
        tight.try_next(),
        Some(("big".into(), Change::Set(big(0, value_len))))
    );

    // The kept changes are the oldest, in order; then the buffer is empty
    // and takes changes again.
    for i in 0..fit {
        assert_eq!(
            default.try_next(),
            Some(("big".into(), Change::Set(big(i, value_len))))
        );
    }
    assert_eq!(default.try_next(), None);
    store.upsert_blocking("small", json!(1)).unwrap();
    assert_eq!(
        default.try_next(),
        Some(("small".into(), Change::Set(json!(1))))
    );
    assert_eq!(
        tight.try_next(),
        Some(("small".into(), Change::Set(json!(1))))
    );
    let s = default.stats();
    assert_eq!(
        (s.delivered, s.queued, s.queued_bytes),
        (fit as u64 + 1, 0, 0),
        "{s:?}"
    );
}

#[test]
fn small_changes_still_stop_at_the_count() {
    let (_dir, path) = temp_store();
    let store = Store::open(&path).unwrap();
    let sub = store.subscribe_with_capacity("k*", 3);
    for i in 0..5 {
        store.upsert_blocking(&format!("k{i}"), i).unwrap();
    }
    store.upsert_blocking("other", 0).unwrap();
    let s = sub.stats();
    assert_eq!(
        (
            s.queued,
            s.dropped_over_count,
            s.dropped_over_bytes,
            s.dropped
        ),
        (3, 2, 0, 2),
        "{s:?}"
    );
}
