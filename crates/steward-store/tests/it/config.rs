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
