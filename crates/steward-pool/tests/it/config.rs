//! The serde form of the configs (durations as `*_ms` integers, unknown
//! fields refused) and the keyed pool's builder checks.

use std::time::Duration;

use serde_json::json;
use steward_pool::{Error, KeyedPool, KeyedPoolConfig, PoolConfig, QueueMode};

use crate::common::KeyedCounting;

/// `PoolConfig::default()` as JSON: the documented defaults, every duration
/// an integer of milliseconds under a name ending in `_ms`.
fn default_pool_json(name: &str, max_size: usize) -> serde_json::Value {
    json!({
        "name": name,
        "max_size": max_size,
        "wait_timeout_ms": 30_000,
        "create_timeout_ms": 30_000,
        "recycle_timeout_ms": 5_000,
        "max_lifetime_ms": 1_800_000,
        "idle_timeout_ms": 600_000,
        "min_idle": 0,
        "reaper_interval_ms": 30_000,
        "health_check": true,
        "recent_window_ms": 0,
        "queue_mode": "lifo",
    })
}

#[test]
fn pool_config_serializes_durations_as_millisecond_integers() {
    let c = PoolConfig::default();
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        default_pool_json("pool", 16)
    );

    let mut c = PoolConfig::default();
    c.wait_timeout = None;
    c.max_lifetime = Some(Duration::from_millis(1_500));
    c.recent_window = Duration::from_secs(2);
    c.queue_mode = QueueMode::Fifo;
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["wait_timeout_ms"], serde_json::Value::Null);
    assert_eq!(json["max_lifetime_ms"], 1_500);
    assert_eq!(json["recent_window_ms"], 2_000);
    let back: PoolConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, c);

    // Missing fields take their defaults; `null` switches a limit off.
    let partial: PoolConfig = serde_json::from_str(
        r#"{"max_size": 3, "idle_timeout_ms": null, "recent_window_ms": 250}"#,
    )
    .unwrap();
    let mut want = PoolConfig::default();
    want.max_size = 3;
    want.idle_timeout = None;
    want.recent_window = Duration::from_millis(250);
    assert_eq!(partial, want);
}

#[test]
fn pool_config_refuses_old_style_durations_and_unknown_fields() {
    for bad in [
        // The old field name and `{"secs", "nanos"}` form.
        r#"{"wait_timeout": {"secs": 30, "nanos": 0}}"#,
        // The new name with the old form.
        r#"{"wait_timeout_ms": {"secs": 30, "nanos": 0}}"#,
        r#"{"recent_window_ms": {"secs": 1, "nanos": 0}}"#,
        // A misspelt setting.
        r#"{"max_sise": 4}"#,
        r#"{"recent_window": 1000}"#,
    ] {
        let got = serde_json::from_str::<PoolConfig>(bad);
        assert!(got.is_err(), "{bad} was accepted: {got:?}");
    }
}

#[test]
fn keyed_pool_config_serializes_like_pool_config() {
    let c = KeyedPoolConfig::default();
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({"per_key": default_pool_json("keyed", 4), "max_total": 64})
    );
    let mut c = KeyedPoolConfig::default();
    c.per_key.reaper_interval = None;
    c.per_key.idle_timeout = Some(Duration::from_millis(10));
    c.max_total = 8;
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(
        json["per_key"]["reaper_interval_ms"],
        serde_json::Value::Null
    );
    assert_eq!(json["per_key"]["idle_timeout_ms"], 10);
    let back: KeyedPoolConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, c);
    let partial: KeyedPoolConfig = serde_json::from_str(r#"{"max_total": 2}"#).unwrap();
    assert_eq!(partial.max_total, 2);
    assert_eq!(partial.per_key, KeyedPoolConfig::default().per_key);

    for bad in [
        r#"{"max_totl": 2}"#,
        r#"{"per_key": {"max_lifetime": {"secs": 60, "nanos": 0}}}"#,
        r#"{"per_key": {"max_lifetime_ms": {"secs": 60, "nanos": 0}}}"#,
    ] {
        let got = serde_json::from_str::<KeyedPoolConfig>(bad);
        assert!(got.is_err(), "{bad} was accepted: {got:?}");
    }
}

#[test]
fn keyed_builder_checks_the_config_once() {
    let m = KeyedCounting::default();
    let bad = KeyedPool::<u32, _>::builder(m.clone())
        .max_total(0)
        .reaper_interval(None)
        .build();
    assert!(matches!(bad, Err(Error::Config { .. })), "{bad:?}");
    let bad = KeyedPool::<u32, _>::builder(m.clone())
        .max_size(2)
        .min_idle(3)
        .reaper_interval(None)
        .build();
    assert!(matches!(bad, Err(Error::Config { .. })), "{bad:?}");
    // As many kept idle as the cap allows is fine.
    let full = KeyedPool::<u32, _>::builder(m.clone())
        .max_size(3)
        .min_idle(3)
        .reaper_interval(None)
        .build();
    assert!(full.is_ok(), "{full:?}");
    // A reaper needs a runtime: no panic outside one.
    let e = KeyedPool::<u32, _>::builder(m.clone()).build().unwrap_err();
    assert!(e.to_string().contains("Tokio runtime"), "{e}");
    // `config` replaces everything set before it.
    let mut config = KeyedPoolConfig::default();
    config.per_key.reaper_interval = None;
    let p = KeyedPool::<u32, _>::builder(m)
        .max_total(0)
        .config(config)
        .build()
        .unwrap();
    assert_eq!(p.stats().max_total, 64);
}
