//! The barge-in scenarios of the issue, one by one.

use steward_realtime::{BargeIn, Conversation, HistoryItem};
use steward_ws::realtime::encode_audio;

use crate::events::{self as ev, feed, frames, of_kind};

/// A conversation with response `r1` and its answer item `a1` started.
fn answering() -> Conversation {
    let mut conv = Conversation::new(100, 1 << 20);
    feed(&mut conv, &ev::response_created(Some("r1")));
    feed(&mut conv, &ev::item_added(Some("r1"), "a1", true));
    conv
}

/// Feeds `ms` of audio of `item` in 100 ms deltas; what the conversation
/// asks to play is written to a playout that has not played yet.
fn stream(conv: &mut Conversation, item: &str, ms: u64) {
    let mut left = frames(ms);
    while left > 0 {
        let n = left.min(2_400);
        left -= n;
        let step = feed(conv, &ev::audio(item, n));
        let (id, pcm) = step.play.expect("audio of an answer is played");
        assert_eq!(id, item);
        conv.written(&id, pcm.len() as u64 / 2, 0);
    }
}

/// The truncations sent, as (item, audio_end_ms).
fn truncations(b: &BargeIn) -> Vec<(String, u64)> {
    of_kind(&b.send, "conversation.item.truncate")
        .iter()
        .map(|v| {
            (
                v["item_id"].as_str().unwrap_or_default().to_string(),
                v["audio_end_ms"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

fn assistant_text(conv: &Conversation, id: &str) -> Option<String> {
    conv.history().items().find_map(|h| match h {
        HistoryItem::Assistant { item_id, .. } if item_id == id => h.replay_text(),
        _ => None,
    })
}

/// The peers' bug: a truncation at the wall-clock time since the answer
/// started (9100 ms) when only 2650 ms of it had arrived, which the service
/// refuses ("Audio content of 2650ms is already shorter than 9100ms") and
/// the session stays silent. Here the position handed in says 9100 ms, far
/// beyond anything written, and the item's played share is still clamped to
/// the 2650 ms it had.
#[test]
fn a_position_far_beyond_the_audio_received_is_clamped() {
    let mut conv = answering();
    stream(&mut conv, "a1", 2650);
    feed(
        &mut conv,
        &ev::transcript_delta("a1", "all of the first answer", false),
    );
    let b = conv.barge_in(frames(9100));
    assert!(b.happened && b.cancelled, "{b:?}");
    assert!(!b.clear, "nothing was waiting to be played");
    for (item, end) in truncations(&b) {
        assert_eq!(item, "a1");
        assert!(
            end <= 2650,
            "Audio content of 2650ms is already shorter than {end}ms"
        );
    }
    assert_eq!(
        assistant_text(&conv, "a1").as_deref(),
        Some("all of the first answer"),
        "all that arrived was heard"
    );
}

/// Of 9100 ms received, 2650 ms were played when the user spoke: the
/// truncation says 2650, not what arrived.
#[test]
fn the_truncation_is_the_played_share_not_the_received_audio() {
    let mut conv = answering();
    stream(&mut conv, "a1", 9100);
    let b = conv.barge_in(frames(2650));
    assert!(b.clear && b.cancelled && b.happened);
    assert_eq!(truncations(&b), vec![("a1".to_string(), 2650)]);
    assert_eq!(b.truncated_ms, Some(2650));
    assert_eq!(conv.stats().truncations_sent, 1);
    assert_eq!(conv.stats().cancels_sent, 1);
}

#[test]
fn nothing_played_sends_no_truncation_and_deletes_the_answer() {
    let mut conv = answering();
    stream(&mut conv, "a1", 1000);
    feed(&mut conv, &ev::transcript_delta("a1", "never heard", false));
    let b = conv.barge_in(0);
    assert!(b.clear && b.cancelled && b.happened);
    assert!(truncations(&b).is_empty(), "{:?}", b.send);
    assert_eq!(b.truncated_ms, None);
    let deletes = of_kind(&b.send, "conversation.item.delete");
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["item_id"], "a1");
    assert_eq!(assistant_text(&conv, "a1"), None, "it leaves the history");
    assert_eq!(conv.stats().items_deleted, 1);
    // Text of the deleted answer still in flight is no fault of the service.
    feed(&mut conv, &ev::transcript_delta("a1", " more", false));
    assert_eq!(conv.stats().protocol_errors_total(), 0);
}

#[test]
fn nothing_playing_and_no_response_sends_nothing() {
    let mut conv = Conversation::new(100, 1 << 20);
    let b = conv.barge_in(0);
    assert_eq!(b, BargeIn::default());
    assert_eq!(conv.stats().speech_onsets, 1);
    assert_eq!(conv.stats().barge_ins, 0);
}

#[test]
fn a_barge_in_after_the_answer_finished_playing_sends_nothing() {
    let mut conv = answering();
    stream(&mut conv, "a1", 1500);
    feed(&mut conv, &ev::response_done(Some("r1"), "completed", &[]));
    feed(&mut conv, &ev::transcript_done("a1", "the whole answer"));
    let b = conv.barge_in(frames(1500));
    assert!(!b.happened && !b.clear && !b.cancelled);
    assert!(b.send.is_empty(), "{:?}", b.send);
    assert_eq!(conv.stats().barge_ins, 0);
    assert_eq!(
        assistant_text(&conv, "a1").as_deref(),
        Some("the whole answer")
    );
}

/// The answer is still being made and all that arrived was played (the
/// playout caught up with the network): the service holds more of it than
/// was heard, so it is truncated at what was played.
#[test]
fn an_answer_still_coming_is_truncated_even_when_all_that_arrived_was_played() {
    let mut conv = answering();
    stream(&mut conv, "a1", 800);
    let b = conv.barge_in(frames(800));
    assert!(b.happened && b.cancelled && !b.clear);
    assert_eq!(truncations(&b), vec![("a1".to_string(), 800)]);
}

#[test]
fn after_renewal_items_of_the_old_session_are_not_truncated() {
    let mut conv = answering();
    stream(&mut conv, "a1", 2000);
    feed(
        &mut conv,
        &ev::transcript_delta("a1", "one two three four", false),
    );
    feed(&mut conv, &ev::response_done(Some("r1"), "completed", &[]));
    conv.new_session();
    assert!(conv.at_turn_boundary());
    // The new session answers too; its audio queues behind the old one's.
    feed(&mut conv, &ev::response_created(Some("r2")));
    feed(&mut conv, &ev::item_added(Some("r2"), "b1", true));
    stream(&mut conv, "b1", 500);
    // The user speaks 1000 ms into a1: a1 is cut, b1 never played.
    let b = conv.barge_in(frames(1000));
    assert!(b.clear && b.cancelled);
    let cancels = of_kind(&b.send, "response.cancel");
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0]["response_id"], "r2");
    assert!(
        truncations(&b).is_empty(),
        "a1 belongs to the old session: {:?}",
        b.send
    );
    let deletes = of_kind(&b.send, "conversation.item.delete");
    assert_eq!(deletes.len(), 1, "{:?}", b.send);
    assert_eq!(deletes[0]["item_id"], "b1");
    // The history keeps what was heard of a1: half of its audio.
    assert_eq!(assistant_text(&conv, "a1").as_deref(), Some("one two"));
    assert_eq!(assistant_text(&conv, "b1"), None);
}

#[test]
fn an_odd_length_delta_is_skipped_and_the_next_valid_one_plays() {
    let mut conv = answering();
    let odd = encode_audio(&[1, 2, 3]);
    let step = feed(&mut conv, &ev::audio_delta_b64("a1", &odd, false));
    assert!(step.play.is_none());
    let step = feed(&mut conv, &ev::audio_delta_b64("a1", "!!not base64", true));
    assert!(step.play.is_none());
    let step = feed(&mut conv, &ev::audio("a1", 480));
    assert_eq!(step.play, Some(("a1".to_string(), ev::pcm(480))));
    let s = conv.stats();
    assert_eq!(s.protocol_errors.get("bad_audio_delta"), Some(&2));
    assert_eq!(s.protocol_errors_total(), 2);
    assert_eq!(s.audio_received_bytes, 960);
}

/// An empty delta must not reach the driver's play queue: a playout takes
/// 0 bytes of it, and the queue would wait behind it for good.
#[test]
fn an_empty_delta_is_not_handed_to_play() {
    let mut conv = answering();
    let step = feed(&mut conv, &ev::audio_delta_b64("a1", "", false));
    assert!(step.play.is_none());
    let step = feed(&mut conv, &ev::audio("a1", 240));
    assert!(step.play.is_some());
    assert_eq!(conv.stats().protocol_errors_total(), 0);
}

#[test]
fn audio_after_the_barge_in_is_discarded() {
    let mut conv = answering();
    stream(&mut conv, "a1", 1000);
    let b = conv.barge_in(frames(300));
    assert_eq!(truncations(&b), vec![("a1".to_string(), 300)]);
    // The cancel crosses more audio on the way.
    let step = feed(&mut conv, &ev::audio("a1", 2400));
    assert!(step.play.is_none());
    assert_eq!(conv.stats().audio_discarded_bytes, 4800);
    feed(&mut conv, &ev::response_done(Some("r1"), "cancelled", &[]));
    assert_eq!(conv.stats().responses_cancelled, 1);
    assert!(conv.at_turn_boundary());
    // A second onset sends nothing more.
    let again = conv.barge_in(frames(300));
    assert!(again.send.is_empty(), "{:?}", again.send);
    assert_eq!(conv.stats().truncations_sent, 1);
}

/// Two answer items whose audio the service interleaved: each is truncated
/// at its own played share, not at the distance from its first frame.
#[test]
fn interleaved_items_are_truncated_at_their_own_played_share() {
    let mut conv = answering();
    feed(&mut conv, &ev::item_added(Some("r1"), "a2", true));
    stream(&mut conv, "a1", 100);
    stream(&mut conv, "a2", 100);
    stream(&mut conv, "a1", 100);
    // 150 ms played: all of a1's first 100 ms and half of a2.
    let b = conv.barge_in(frames(150));
    let mut t = truncations(&b);
    t.sort();
    assert_eq!(t, vec![("a1".to_string(), 100), ("a2".to_string(), 50)]);
}

#[test]
fn errors_answering_a_truncation_count_as_rejected_once() {
    let mut conv = answering();
    stream(&mut conv, "a1", 1000);
    let b = conv.barge_in(frames(500));
    let sent = of_kind(&b.send, "conversation.item.truncate");
    let id = sent[0]["event_id"]
        .as_str()
        .expect("an event id")
        .to_string();
    feed(
        &mut conv,
        &ev::error(Some("invalid_value"), "bad truncate", Some(&id)),
    );
    assert_eq!(conv.stats().truncations_rejected, 1);
    feed(
        &mut conv,
        &ev::error(Some("invalid_value"), "bad truncate", Some(&id)),
    );
    assert_eq!(conv.stats().truncations_rejected, 1, "answered already");
    // The service's own words count even without an event id.
    feed(
        &mut conv,
        &ev::error(Some("invalid_value"), ev::TOO_SHORT, None),
    );
    assert_eq!(conv.stats().truncations_rejected, 2);
    assert_eq!(conv.stats().server_errors.get("invalid_value"), Some(&3));
}

#[test]
fn a_confirmed_truncation_is_no_longer_pending() {
    let mut conv = answering();
    stream(&mut conv, "a1", 1000);
    let b = conv.barge_in(frames(400));
    let id = of_kind(&b.send, "conversation.item.truncate")[0]["event_id"]
        .as_str()
        .expect("an event id")
        .to_string();
    feed(&mut conv, &ev::truncated("a1", 400));
    feed(
        &mut conv,
        &ev::error(Some("invalid_value"), "late", Some(&id)),
    );
    assert_eq!(conv.stats().truncations_rejected, 0);
}

#[test]
fn session_expired_is_flagged_and_a_new_session_is_a_turn_boundary() {
    let mut conv = answering();
    feed(&mut conv, &ev::speech_started());
    assert!(!conv.at_turn_boundary());
    let step = feed(
        &mut conv,
        &ev::error(
            Some("session_expired"),
            "Your session hit the maximum duration",
            None,
        ),
    );
    assert!(step.expired);
    conv.new_session();
    assert!(conv.at_turn_boundary() && !conv.responding() && !conv.speaking());
}

/// The check handed back with a truncation says how much more of the item
/// played until the clear took effect, and never less than was sent.
#[test]
fn a_truncation_check_measures_what_played_until_the_clear() {
    let mut conv = answering();
    stream(&mut conv, "a1", 1000);
    // 400.5 ms played when the onset arrives: audio_end_ms is 400.
    let b = conv.barge_in(frames(400) + 12);
    assert_eq!(truncations(&b), vec![("a1".to_string(), 400)]);
    let [check] = b.checks.as_slice() else {
        panic!("one check per truncation: {b:?}");
    };
    assert_eq!(check.sent_frames(), frames(400));
    // The callback running at the onset finished its 20 ms buffer first.
    assert_eq!(check.heard_frames(frames(420) + 12), frames(420) + 12);
    // Nothing after the item's own audio counts.
    assert_eq!(check.heard_frames(frames(5000)), frames(1000));
}

/// A barge-in that truncates nothing hands back no check.
#[test]
fn no_truncation_no_check() {
    let mut conv = answering();
    stream(&mut conv, "a1", 500);
    let b = conv.barge_in(0);
    assert!(truncations(&b).is_empty(), "{b:?}");
    assert!(b.checks.is_empty(), "{b:?}");
}

/// Writes `ms` of `a1`'s audio at the playout position `played_now`.
fn write_at(conv: &mut Conversation, ms: u64, played_now: u64) {
    let step = feed(conv, &ev::audio("a1", frames(ms)));
    let (id, pcm) = step.play.expect("audio of an answer is played");
    conv.written(&id, pcm.len() as u64 / 2, played_now);
}

/// Audio written after the playout ran dry starts where the playout is: a
/// barge-in right then truncates at the audio played before, counting
/// neither the silence in between nor the audio just written.
#[test]
fn audio_written_after_the_playout_ran_dry_is_not_counted_as_played() {
    let mut conv = answering();
    // 100 ms written when the playout is at 100 ms (other audio before).
    write_at(&mut conv, 100, frames(100));
    // It played, the playout ran dry and went on; at 240 s (a position
    // whose frames are the first run's start times its length) 100 ms more.
    let now = frames(100) * frames(100);
    write_at(&mut conv, 100, now);
    let b = conv.barge_in(now);
    assert!(b.happened, "{b:?}");
    assert_eq!(truncations(&b), [("a1".to_string(), 100)]);
}
