//! The conversation's bookkeeping of what the service has yet to answer is
//! bounded: a service (or a model) that opens tool calls and never names
//! them, or never confirms what we create, cannot grow it.

use serde_json::json;
use steward_realtime::{Conversation, RealtimeEvent};

use crate::events::{
    audio, feed, function_args_done, item_added, of_kind, response_created, response_done,
};

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

/// Truncations the service never confirms are bounded by count and bytes,
/// each weighing its event id and item id: 64 with 900-byte item ids fit
/// (about 58 KiB of 64 KiB), the next ones with 4 KiB ids push the oldest
/// out, each eviction counted.
#[test]
fn unconfirmed_truncations_weigh_their_ids() {
    let mut conv = Conversation::new(1_000, 64 << 20);
    let mut played = 0;
    let mut truncate = |conv: &mut Conversation, n: usize, id_len: usize| {
        for i in 0..n {
            let item = format!("{i:0>id_len$}");
            let response = format!("r{i}");
            feed(conv, &response_created(Some(&response)));
            feed(conv, &item_added(Some(&response), &item, true));
            let step = feed(conv, &audio(&item, 4_800));
            let (id, pcm) = step.play.expect("audio of an answer is played");
            conv.written(&id, pcm.len() as u64 / 2, played);
            // Half of it played, then the user speaks over it.
            played += 2_400;
            let b = conv.barge_in(played);
            assert_eq!(of_kind(&b.send, "conversation.item.truncate").len(), 1);
            played += 2_400;
            feed(conv, &response_done(Some(&response), "cancelled", &[]));
        }
    };
    truncate(&mut conv, 64, 900);
    assert_eq!(conv.stats().entries_evicted, 0, "{:?}", conv.stats());
    truncate(&mut conv, 4, 4_096);
    let evicted = conv.stats().entries_evicted;
    assert!((4..=16).contains(&evicted), "{evicted} evicted");
}

/// Milliseconds of PCM16 24 kHz mono: 48 bytes each.
#[test]
fn bytes_to_ms_counts_48_bytes_a_millisecond() {
    assert_eq!(Conversation::bytes_to_ms(48_000), 1_000);
    assert_eq!(Conversation::bytes_to_ms(47), 0);
    assert_eq!(Conversation::bytes_to_ms(4_800_000), 100_000);
}

/// Only an assistant message is an answer whose audio is tracked: a message
/// of another role in a response's output (which a service should not send)
/// is neither deleted nor truncated by a barge-in.
#[test]
fn a_user_message_in_a_response_is_not_an_answer() {
    let mut conv = Conversation::new(100, 1 << 20);
    feed(&mut conv, &response_created(Some("r1")));
    let mut added = item_added(Some("r1"), "u1", true);
    added["item"]["role"] = json!("user");
    feed(&mut conv, &added);
    let b = conv.barge_in(0);
    assert!(b.happened, "a response is under way");
    let touched: Vec<_> = of_kind(&b.send, "conversation.item.delete")
        .into_iter()
        .chain(of_kind(&b.send, "conversation.item.truncate"))
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
}

/// Messages we create that the service never confirms are bounded by the
/// bytes of their text (8 MiB): seven of 1 MiB are all kept, each further
/// one makes the oldest go.
#[test]
fn created_items_never_confirmed_are_bounded_by_their_text() {
    let mut conv = Conversation::new(100, 64 * 1024);
    let text = "x".repeat(1 << 20);
    for _ in 0..7 {
        conv.user_text(&text);
    }
    assert_eq!(conv.stats().entries_evicted, 0, "7 MiB fit in 8");
    for _ in 0..3 {
        conv.user_text(&text);
    }
    // Ten of 1 MiB and their ids: the three oldest went.
    assert_eq!(conv.stats().entries_evicted, 3);
}
