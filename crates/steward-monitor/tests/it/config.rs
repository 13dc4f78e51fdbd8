//! The settings as a file holds them: every duration an integer of
//! milliseconds under a `_ms` name, unknown fields refused.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use steward_monitor::{MonitorConfig, TrendConfig};

/// Every duration field of the monitor's settings, by its serialized name.
fn durations(config: &MonitorConfig) -> Vec<(&'static str, Duration)> {
    vec![
        ("interval_ms", config.interval),
        ("cooldown_ms", config.cooldown),
        ("critical_renotify_ms", config.critical_renotify),
        ("handler_timeout_ms", config.handler_timeout),
    ]
}

fn trend_durations(trend: &TrendConfig) -> Vec<(&'static str, Duration)> {
    vec![
        ("warmup_ms", trend.warmup),
        ("window_ms", trend.window),
        ("growing_for_ms", trend.growing_for),
        ("clear_for_ms", trend.clear_for),
    ]
}

#[test]
fn every_duration_is_an_integer_of_milliseconds_under_its_ms_name() {
    let mut config = MonitorConfig::default();
    config.interval = Duration::from_millis(1);
    config.cooldown = Duration::ZERO;
    // The largest a file can hold.
    config.critical_renotify = Duration::from_millis(u64::MAX);
    config.handler_timeout = Duration::from_millis(5_001);
    config.trim_every = Some(Duration::from_secs(60));
    config.trend.warmup = Duration::from_millis(7);
    config.trend.window = Duration::from_secs(1800);
    config.trend.growing_for = Duration::from_millis(u64::MAX);
    config.trend.clear_for = Duration::ZERO;

    let json = serde_json::to_value(&config).expect("serialise");
    for (name, value) in durations(&config) {
        let ms = u64::try_from(value.as_millis()).expect("within u64");
        assert_eq!(json[name], json!(ms), "{name} in {json}");
    }
    for (name, value) in trend_durations(&config.trend) {
        let ms = u64::try_from(value.as_millis()).expect("within u64");
        assert_eq!(json["trend"][name], json!(ms), "trend.{name} in {json}");
    }
    assert_eq!(json["trim_every_ms"], json!(60_000));
    assert_eq!(json["critical_renotify_ms"], json!(u64::MAX));
    // No field is left under its Rust name.
    for name in ["interval", "cooldown", "trim_every", "critical_renotify"] {
        assert!(json.get(name).is_none(), "{name} in {json}");
    }
    let back: MonitorConfig = serde_json::from_value(json).expect("deserialise");
    assert_eq!(back, config);
}

#[test]
fn trim_every_is_absent_or_null_for_never() {
    let mut config = MonitorConfig::default();
    config.trim_every = None;
    let json = serde_json::to_value(&config).expect("serialise");
    assert_eq!(json["trim_every_ms"], Value::Null);
    assert_eq!(
        serde_json::from_value::<MonitorConfig>(json).expect("back"),
        config
    );
    let absent: MonitorConfig = serde_json::from_str("{}").expect("absent");
    assert_eq!(absent.trim_every, None);
    let null: MonitorConfig = serde_json::from_str(r#"{"trim_every_ms": null}"#).expect("null");
    assert_eq!(null.trim_every, None);
    let set: MonitorConfig = serde_json::from_str(r#"{"trim_every_ms": 250}"#).expect("set");
    assert_eq!(set.trim_every, Some(Duration::from_millis(250)));
}

#[test]
fn a_duration_is_a_whole_non_negative_integer() {
    for bad in [
        r#"{"interval_ms": 1.5}"#,
        r#"{"interval_ms": -1}"#,
        r#"{"interval_ms": "1000"}"#,
        r#"{"interval_ms": null}"#,
        r#"{"trim_every_ms": 2.5}"#,
        r#"{"trend": {"window_ms": -5}}"#,
    ] {
        assert!(
            serde_json::from_str::<MonitorConfig>(bad).is_err(),
            "{bad} accepted"
        );
    }
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let err =
        serde_json::from_str::<MonitorConfig>(r#"{"interval_msec": 5}"#).expect_err("refused");
    assert!(err.to_string().contains("interval_msec"), "{err}");
    let err = serde_json::from_str::<TrendConfig>(r#"{"window": 5}"#).expect_err("refused");
    assert!(err.to_string().contains("window"), "{err}");
    let err = serde_json::from_str::<MonitorConfig>(r#"{"trend": {"enable": false}}"#)
        .expect_err("refused");
    assert!(err.to_string().contains("enable"), "{err}");
}

/// Durations no file can hold, set in code: a sub-millisecond rest is
/// rounded to the nearest millisecond, and one beyond `u64::MAX` ms cannot
/// be written (an error, not a wrong number). Everything a file can hold
/// reads and writes back unchanged (the property test below).
#[test]
fn durations_no_file_can_hold_are_rounded_or_refused() {
    let mut config = MonitorConfig::default();
    config.interval = Duration::from_micros(1_499);
    config.cooldown = Duration::from_micros(1_500);
    let json = serde_json::to_value(&config).expect("serialise");
    assert_eq!(json["interval_ms"], json!(1));
    assert_eq!(json["cooldown_ms"], json!(2));
    config.cooldown = Duration::MAX;
    assert!(serde_json::to_value(&config).is_err());
}

proptest! {
    /// Whatever a file holds (any integer of milliseconds) is written back
    /// as the same integer, so a config read and shown again is unchanged.
    #[test]
    fn any_millisecond_count_reads_and_writes_back_unchanged(ms in any::<u64>(), opt in any::<Option<u64>>()) {
        let text = json!({"interval_ms": ms, "trim_every_ms": opt, "trend": {"clear_for_ms": ms}});
        let config: MonitorConfig = serde_json::from_value(text).expect("read");
        prop_assert_eq!(config.interval, Duration::from_millis(ms));
        prop_assert_eq!(config.trim_every, opt.map(Duration::from_millis));
        let back = serde_json::to_value(&config).expect("write");
        prop_assert_eq!(&back["interval_ms"], &json!(ms));
        prop_assert_eq!(&back["trim_every_ms"], &json!(opt));
        prop_assert_eq!(&back["trend"]["clear_for_ms"], &json!(ms));
    }
}
