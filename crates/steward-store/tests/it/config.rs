//! The configs as a user writes them: unknown settings are refused,
//! missing ones take their defaults, durations are `*_ms` integers.

use std::time::Duration;

use serde_json::json;
use steward_store::{RedisConfig, StoreConfig};

#[test]
fn a_store_config_refuses_an_unknown_setting() {
    let e = serde_json::from_value::<StoreConfig>(json!({"max_keyz": 10})).unwrap_err();
    assert!(e.to_string().contains("unknown field `max_keyz`"), "{e}");
    let c: StoreConfig = serde_json::from_value(json!({"max_keys": 10})).unwrap();
    let mut want = StoreConfig::default();
    want.max_keys = 10;
    assert_eq!(c, want, "a missing setting takes its default");
    let again: StoreConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
    assert_eq!(again, c);
}

#[test]
fn a_redis_config_has_its_durations_in_ms_and_refuses_an_unknown_setting() {
    let shown = serde_json::to_value(RedisConfig::default()).unwrap();
    assert_eq!(shown["retry_for_ms"], json!(10_000));
    assert_eq!(shown["response_timeout_ms"], json!(5_000));
    assert_eq!(shown["connect_timeout_ms"], json!(5_000));
    assert!(shown.get("retry_for").is_none(), "{shown}");

    let c: RedisConfig = serde_json::from_value(json!({"retry_for_ms": 250})).unwrap();
    assert_eq!(c.retry_for, Duration::from_millis(250));
    assert_eq!(c.connect_timeout, RedisConfig::default().connect_timeout);
    let e = serde_json::from_value::<RedisConfig>(json!({"retry_for": 250})).unwrap_err();
    assert!(e.to_string().contains("unknown field `retry_for`"), "{e}");
}

/// Every limit must be at least 1, and the byte limits at most 1 GiB (a log
/// record's length must fit): each bound refused alone, the edges taken.
#[test]
fn each_limit_is_checked_alone_at_its_bounds() {
    type Set = fn(&mut StoreConfig, usize);
    let limits: [(&str, Set, bool); 6] = [
        ("max_key_bytes", |c, n| c.max_key_bytes = n, true),
        ("max_value_bytes", |c, n| c.max_value_bytes = n, true),
        ("max_batch_bytes", |c, n| c.max_batch_bytes = n, true),
        ("max_keys", |c, n| c.max_keys = n, false),
        ("max_queued_writes", |c, n| c.max_queued_writes = n, false),
        ("max_queued_bytes", |c, n| c.max_queued_bytes = n, false),
    ];
    let dir = tempfile::tempdir().unwrap();
    let build = |name: &str, set: Set, n: usize| {
        let mut c = StoreConfig::default();
        set(&mut c, n);
        let path = dir.path().join(format!("{name}-{n}/memory.json"));
        steward_store::Store::builder(path).config(c).build()
    };
    for (name, set, in_bytes) in limits {
        let e = build(name, set, 0).unwrap_err();
        assert!(
            matches!(e, steward_store::Error::Config(_)),
            "{name} = 0: {e}"
        );
        build(name, set, 1).unwrap_or_else(|e| panic!("{name} = 1: {e}"));
        if in_bytes {
            let gib = 1 << 30;
            build(name, set, gib).unwrap_or_else(|e| panic!("{name} = 1 GiB: {e}"));
            let e = build(name, set, gib + 1).unwrap_err();
            assert!(e.to_string().contains("at most"), "{name} over 1 GiB: {e}");
        }
    }
}
