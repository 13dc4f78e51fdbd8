//! The settings as a file holds them: every duration an integer of
//! milliseconds under a `_ms` name, unknown fields refused.

use std::time::Duration;

use serde_json::json;
use steward_realtime::RealtimeConfig;

#[test]
fn every_duration_is_an_integer_of_milliseconds_under_its_ms_name() {
    let mut config = RealtimeConfig::default();
    config.max_session = Duration::from_millis(u64::MAX);
    config.renew_margin = Duration::ZERO;
    config.dead_link = Duration::from_millis(3_001);
    let json = serde_json::to_value(&config).expect("serialise");
    assert_eq!(json["max_session_ms"], json!(u64::MAX), "{json}");
    assert_eq!(json["renew_margin_ms"], json!(0), "{json}");
    assert_eq!(json["dead_link_ms"], json!(3_001), "{json}");
    for name in ["max_session", "renew_margin", "dead_link"] {
        assert!(json.get(name).is_none(), "{name} in {json}");
    }
    let back: RealtimeConfig = serde_json::from_value(json).expect("deserialise");
    assert_eq!(back, config);

    let defaults = serde_json::to_value(RealtimeConfig::default()).expect("serialise");
    assert_eq!(defaults["max_session_ms"], json!(3_600_000));
    assert_eq!(defaults["renew_margin_ms"], json!(300_000));
    assert_eq!(defaults["dead_link_ms"], json!(3_000));
}

#[test]
fn a_duration_is_a_whole_non_negative_integer() {
    for bad in [
        r#"{"dead_link_ms": 1.5}"#,
        r#"{"dead_link_ms": -1}"#,
        r#"{"max_session_ms": "1000"}"#,
        r#"{"renew_margin_ms": null}"#,
    ] {
        assert!(
            serde_json::from_str::<RealtimeConfig>(bad).is_err(),
            "{bad} accepted"
        );
    }
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let err =
        serde_json::from_str::<RealtimeConfig>(r#"{"dead_link": 3000}"#).expect_err("refused");
    assert!(err.to_string().contains("dead_link"), "{err}");
}
