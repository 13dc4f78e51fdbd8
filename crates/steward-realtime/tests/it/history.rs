//! The history kept for replay: bounds, what was heard, and a replay the
//! service accepts.

use steward_realtime::{Conversation, History, HistoryItem, heard_prefix};
use steward_ws::realtime::ClientEvent;

use crate::events::{self as ev, feed, json_of};

fn call(id: &str) -> HistoryItem {
    HistoryItem::FunctionCall {
        call_id: id.into(),
        name: "recall".into(),
        arguments: "{}".into(),
    }
}

fn output(id: &str) -> HistoryItem {
    HistoryItem::FunctionOutput {
        call_id: id.into(),
        output: "42".into(),
    }
}

fn user(id: &str, text: &str) -> HistoryItem {
    HistoryItem::User {
        item_id: id.into(),
        text: Some(text.into()),
    }
}

/// The service's echo of an item we sent.
fn echo(conv: &mut Conversation, sent: &ClientEvent) {
    feed(
        conv,
        &ev::item_echo(&json_of(sent)["item"], "item_1", false),
    );
}

fn replay_types(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            json_of(e)["item"]["type"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The call drops out of the bound while a user turn sits between it and
/// its output: the output must not be replayed alone (the service refuses
/// an output whose call it does not know).
#[test]
fn a_tool_output_whose_call_was_dropped_is_not_replayed() {
    let mut h = History::new(2, 1 << 20);
    h.push(call("c1"));
    h.push(user("u1", "while you look that up"));
    h.push(output("c1"));
    assert!(h.len() <= 2);
    let types = replay_types(&h.replay());
    assert!(
        !types.contains(&"function_call_output".to_string()),
        "{types:?}"
    );
}

#[test]
fn a_tool_output_for_an_unknown_call_is_not_replayed() {
    let mut conv = Conversation::new(10, 1 << 20);
    let sent = conv.tool_output("c_never_asked", "{}");
    echo(&mut conv, &sent[0]);
    assert!(conv.replay().is_empty(), "{:?}", conv.replay());
}

#[test]
fn a_tool_call_and_its_output_replay_in_order() {
    let mut conv = Conversation::new(10, 1 << 20);
    feed(
        &mut conv,
        &ev::function_args_done("c1", Some("weather"), r#"{"city":"Oslo"}"#),
    );
    let sent = conv.tool_output("c1", r#"{"temp":3}"#);
    assert!(
        conv.history().len() == 1,
        "the output enters the history when the service has it"
    );
    echo(&mut conv, &sent[0]);
    let replay = conv.replay();
    assert_eq!(
        replay_types(&replay),
        ["function_call", "function_call_output"]
    );
    let call = json_of(&replay[0]);
    assert_eq!(call["item"]["name"], "weather");
    assert_eq!(call["item"]["arguments"], r#"{"city":"Oslo"}"#);
    assert_eq!(json_of(&replay[1])["item"]["output"], r#"{"temp":3}"#);
}

#[test]
fn user_turns_replay_in_commit_order_with_their_transcripts() {
    let mut conv = Conversation::new(10, 1 << 20);
    feed(&mut conv, &ev::committed("u1"));
    feed(&mut conv, &ev::committed("u2"));
    feed(&mut conv, &ev::committed("u3"));
    // Transcripts come out of order; u3's never comes.
    feed(&mut conv, &ev::transcription("u2", "second"));
    feed(&mut conv, &ev::transcription("u1", "first"));
    let items: Vec<_> = conv.history().items().cloned().collect();
    assert_eq!(
        items,
        vec![
            user("u1", "first"),
            user("u2", "second"),
            HistoryItem::User {
                item_id: "u3".into(),
                text: None
            }
        ]
    );
    let texts: Vec<String> = conv
        .replay()
        .iter()
        .map(|e| {
            let v = json_of(e);
            assert_eq!(v["item"]["role"], "user");
            assert_eq!(v["item"]["content"][0]["type"], "input_text");
            v["item"]["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        texts,
        ["first", "second"],
        "a turn without text is not replayed"
    );
    assert_eq!(conv.stats().turns, 3);
    // A transcript for a turn we never saw is bad input, counted.
    feed(&mut conv, &ev::transcription("u9", "ghost"));
    assert_eq!(conv.stats().protocol_errors.get("unknown_item"), Some(&1));
}

#[test]
fn both_bounds_hold_and_the_oldest_go_first() {
    let mut h = History::new(100, 64);
    for i in 0..20 {
        h.push(user(&format!("u{i}"), "0123456789"));
    }
    let ids: Vec<String> = h
        .items()
        .map(|i| match i {
            HistoryItem::User { item_id, .. } => item_id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ids,
        ["u16", "u17", "u18", "u19"],
        "13 bytes each, 64 at most"
    );
    assert_eq!(h.dropped(), 16);
    let mut h = History::new(3, 1 << 20);
    for i in 0..10 {
        h.push(user(&format!("u{i}"), "x"));
    }
    assert_eq!(h.len(), 3);
    assert_eq!(h.dropped(), 7);
}

#[test]
fn a_message_id_is_kept_once() {
    let mut h = History::new(10, 1 << 20);
    h.push(user("u1", "a"));
    h.push(user("u1", "b"));
    assert_eq!(h.len(), 1);
    assert_eq!(h.items().next(), Some(&user("u1", "a")));
}

#[test]
fn the_heard_prefix_counts_characters_not_bytes() {
    let t = "ünïcödé wörds änd möré";
    // 22 characters (36 bytes): 14 of them end after "wörds ".
    assert_eq!(heard_prefix(t, 14, 22), "ünïcödé wörds");
    // 11 end inside "wörds": cut back to the word before.
    assert_eq!(heard_prefix(t, 1, 2), "ünïcödé");
    assert_eq!(heard_prefix("日本語 の 文", 1, 2), "日本語");
    assert_eq!(heard_prefix(t, 0, 2), "");
    assert_eq!(heard_prefix(t, 5, 0), "");
    assert_eq!(heard_prefix(t, 3, 2), t);
}

#[test]
fn an_answer_cut_short_replays_the_heard_share_as_output_text() {
    let mut conv = Conversation::new(10, 1 << 20);
    feed(&mut conv, &ev::response_created(Some("r1")));
    feed(&mut conv, &ev::item_added(Some("r1"), "a1", true));
    let step = feed(&mut conv, &ev::audio("a1", 24_000));
    let (item, pcm) = step.play.expect("played");
    conv.written(&item, pcm.len() as u64 / 2, 0);
    feed(
        &mut conv,
        &ev::transcript_delta("a1", "one two three four five six seven eight", false),
    );
    let b = conv.barge_in(6_000);
    assert_eq!(b.truncated_ms, Some(250));
    let replay = conv.replay();
    assert_eq!(replay.len(), 1);
    let v = json_of(&replay[0]);
    assert_eq!(v["item"]["role"], "assistant");
    assert_eq!(v["item"]["content"][0]["type"], "output_text");
    // A quarter of 39 characters is 9: "one two t" cut back to a word.
    assert_eq!(v["item"]["content"][0]["text"], "one two");
    // Audio still coming for it lowers the share that was heard.
    feed(&mut conv, &ev::audio("a1", 24_000));
    let v = json_of(&conv.replay()[0]);
    assert_eq!(v["item"]["content"][0]["text"], "one");
}
