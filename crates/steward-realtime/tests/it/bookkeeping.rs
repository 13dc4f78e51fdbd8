//! The conversation's bookkeeping of what the service has yet to answer is
//! bounded: a service (or a model) that opens tool calls and never names
//! them, or never confirms what we create, cannot grow it.

use serde_json::json;
use steward_realtime::{Conversation, RealtimeEvent};

use crate::events::{feed, function_args_done, response_done};

#[test]
fn tool_calls_that_never_get_a_name_are_forgotten_oldest_first() {
    let mut conv = Conversation::new(100, 64 * 1024);
    let arguments = json!({"value": "x".repeat(1 << 20)}).to_string();
    for i in 0..100 {
        feed(
            &mut conv,
            &function_args_done(&format!("call_{i}"), None, &arguments),
        );
    }
    // 1 MiB each against a 32 MiB bound: the oldest went.
    let evicted = conv.stats().entries_evicted;
    assert!((68..=70).contains(&evicted), "{evicted} evicted");
    // The newest is still answered when its name comes...
    let step = feed(
        &mut conv,
        &response_done(
            Some("r1"),
            "completed",
            &[("call_99".into(), "remember".into())],
        ),
    );
    match step.notice {
        Some(RealtimeEvent::ToolCall {
            call_id,
            arguments: a,
            ..
        }) => {
            assert_eq!((call_id.as_str(), a.len()), ("call_99", arguments.len()));
        }
        other => panic!("expected the tool call, got {other:?}"),
    }
    // ...the oldest is not.
    let step = feed(
        &mut conv,
        &response_done(
            Some("r2"),
            "completed",
            &[("call_0".into(), "remember".into())],
        ),
    );
    assert!(
        !matches!(step.notice, Some(RealtimeEvent::ToolCall { .. })),
        "{:?}",
        step.notice
    );
}

#[test]
fn many_small_calls_are_bounded_by_count() {
    let mut conv = Conversation::new(100, 64 * 1024);
    for i in 0..1_000 {
        feed(&mut conv, &function_args_done(&format!("c{i}"), None, "{}"));
    }
    assert_eq!(conv.stats().entries_evicted, 1_000 - 64);
}
