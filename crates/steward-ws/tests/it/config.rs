//! The settings as a file holds them: every duration an integer of
//! milliseconds under a `_ms` name, unknown fields refused.

use std::time::Duration;

use serde_json::json;
use steward_ws::{ClientConfig, ReconnectConfig};

#[test]
fn every_duration_is_an_integer_of_milliseconds_under_its_ms_name() {
    let mut config = ClientConfig::default();
    config.url = "ws://127.0.0.1:1/".into();
    config.connect_timeout = Duration::ZERO;
    config.ping_interval = Duration::from_millis(1);
    config.pong_timeout = Duration::from_millis(999);
    // The largest a file can hold.
    config.close_timeout = Duration::from_millis(u64::MAX);
    config.drain_timeout = Duration::from_secs(10);
    config.reconnect.initial_delay = Duration::from_millis(250);
    config.reconnect.max_delay = Duration::from_millis(u64::MAX);
    config.reconnect.healthy_after = Duration::ZERO;

    let json = serde_json::to_value(&config).expect("serialise");
    for (name, ms) in [
        ("connect_timeout_ms", 0),
        ("ping_interval_ms", 1),
        ("pong_timeout_ms", 999),
        ("close_timeout_ms", u64::MAX),
        ("drain_timeout_ms", 10_000),
    ] {
        assert_eq!(json[name], json!(ms), "{name} in {json}");
    }
    for (name, ms) in [
        ("initial_delay_ms", 250),
        ("max_delay_ms", u64::MAX),
        ("healthy_after_ms", 0),
    ] {
        assert_eq!(
            json["reconnect"][name],
            json!(ms),
            "reconnect.{name} in {json}"
        );
    }
    for name in ["connect_timeout", "ping_interval", "close_timeout"] {
        assert!(json.get(name).is_none(), "{name} in {json}");
    }
    let back: ClientConfig = serde_json::from_value(json).expect("deserialise");
    assert_eq!(back, config);
}

#[test]
fn a_duration_is_a_whole_non_negative_integer() {
    for bad in [
        r#"{"ping_interval_ms": 1.5}"#,
        r#"{"ping_interval_ms": -1}"#,
        r#"{"ping_interval_ms": "1000"}"#,
        r#"{"reconnect": {"max_delay_ms": null}}"#,
    ] {
        assert!(
            serde_json::from_str::<ClientConfig>(bad).is_err(),
            "{bad} accepted"
        );
    }
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let err = serde_json::from_str::<ReconnectConfig>(r#"{"max_delay": 5}"#).expect_err("refused");
    assert!(err.to_string().contains("max_delay"), "{err}");
    let err = serde_json::from_str::<ClientConfig>(r#"{"reconnect": {"enable": false}}"#)
        .expect_err("refused");
    assert!(err.to_string().contains("enable"), "{err}");
}
