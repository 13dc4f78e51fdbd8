//! The wiring's settings as a file holds them: every duration an integer of
//! milliseconds under a `_ms` name, unknown fields refused.

use std::time::Duration;

use serde_json::json;
use steward::{HttpConfig, StewardConfig};

#[test]
fn every_duration_is_an_integer_of_milliseconds_under_its_ms_name() {
    let mut config = StewardConfig::default();
    // The largest a file can hold.
    config.stale_after = Duration::from_millis(u64::MAX);
    config.monitor.interval = Duration::from_millis(500);
    config.http.header_read_timeout = Duration::ZERO;
    config.http.read_timeout = Duration::from_millis(1);
    config.http.write_timeout = Duration::from_millis(2_001);
    config.http.max_connection_age = Duration::from_millis(u64::MAX);

    let json = serde_json::to_value(&config).expect("serialise");
    assert_eq!(json["stale_after_ms"], json!(u64::MAX), "{json}");
    assert_eq!(json["monitor"]["interval_ms"], json!(500), "{json}");
    for (name, ms) in [
        ("header_read_timeout_ms", 0),
        ("read_timeout_ms", 1),
        ("write_timeout_ms", 2_001),
        ("max_connection_age_ms", u64::MAX),
    ] {
        assert_eq!(json["http"][name], json!(ms), "http.{name} in {json}");
    }
    assert!(json.get("stale_after").is_none(), "{json}");
    let back: StewardConfig = serde_json::from_value(json).expect("deserialise");
    assert_eq!(back, config);

    let defaults = serde_json::to_value(HttpConfig::default()).expect("serialise");
    assert_eq!(defaults["max_connection_age_ms"], json!(600_000));
    assert_eq!(defaults["read_timeout_ms"], json!(30_000));
}

#[test]
fn a_duration_is_a_whole_non_negative_integer() {
    for bad in [
        r#"{"stale_after_ms": 1.5}"#,
        r#"{"stale_after_ms": -1}"#,
        r#"{"http": {"read_timeout_ms": "1000"}}"#,
        r#"{"http": {"write_timeout_ms": null}}"#,
    ] {
        assert!(
            serde_json::from_str::<StewardConfig>(bad).is_err(),
            "{bad} accepted"
        );
    }
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let err = serde_json::from_str::<StewardConfig>(r#"{"stale_after": 5}"#).expect_err("refused");
    assert!(err.to_string().contains("stale_after"), "{err}");
    let err = serde_json::from_str::<HttpConfig>(r#"{"max_connection": 5}"#).expect_err("refused");
    assert!(err.to_string().contains("max_connection"), "{err}");
    let err = serde_json::from_str::<StewardConfig>(r#"{"monitor": {"intervall_ms": 5}}"#)
        .expect_err("refused");
    assert!(err.to_string().contains("intervall_ms"), "{err}");
}
