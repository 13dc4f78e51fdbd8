//! Shedding queued messages beyond a floor, against a real server that stops
//! reading (outbound) or a session that stops reading (inbound).

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use steward_ws::{Error, Message, ShedFloor, ShutdownMode};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;

use crate::common::*;

/// What a numbered message is: every 10th a protected event, every 10th + 5
/// a realtime audio append (text), the rest binary audio.
fn numbered(seq: u64, binary_len: usize) -> Message {
    match seq % 10 {
        0 => Message::text(format!(
            r#"{{"type":"conversation.item.create","seq":{seq}}}"#
        )),
        5 => Message::text(format!(
            r#"{{"type":"input_audio_buffer.append","seq":{seq},"audio":"AAAAAAAA"}}"#
        )),
        _ => {
            let mut bytes = seq.to_be_bytes().to_vec();
            bytes.resize(binary_len, 7);
            Message::binary(bytes)
        }
    }
}

fn protected(seq: u64) -> bool {
    seq.is_multiple_of(10)
}

fn seq_of(message: &Message) -> u64 {
    match message {
        Message::Text(t) => {
            let v: serde_json::Value = serde_json::from_str(t).expect("json");
            v["seq"].as_u64().expect("seq")
        }
        Message::Binary(b) => u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
    }
}

fn from_wire(m: tungstenite::Message) -> Option<Message> {
    match m {
        tungstenite::Message::Text(t) => Some(Message::text(t.as_str())),
        tungstenite::Message::Binary(b) => Some(Message::binary(b.to_vec())),
        _ => None,
    }
}

fn to_wire(m: Message) -> tungstenite::Message {
    match m {
        Message::Text(t) => tungstenite::Message::text(t),
        Message::Binary(b) => tungstenite::Message::binary(b),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_shed_against_a_server_that_stops_reading() {
    const KEEP: usize = 8;
    const AFTER: u64 = 20;
    let (resume_tx, resume_rx) = mpsc::unbounded_channel::<()>();
    let resume_rx = std::sync::Arc::new(tokio::sync::Mutex::new(resume_rx));
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(u64, usize)>();
    let (close_tx, close_rx) = mpsc::unbounded_channel::<Option<u16>>();
    let url = rust_server(move |mut ws: ServerWs| {
        let resume_rx = resume_rx.clone();
        let seen_tx = seen_tx.clone();
        let close_tx = close_tx.clone();
        async move {
            // Not a byte read until the test says so: the queue fills up.
            resume_rx.lock().await.recv().await;
            while let Some(Ok(m)) = ws.next().await {
                if let tungstenite::Message::Close(frame) = &m {
                    let _ = close_tx.send(frame.as_ref().map(|f| u16::from(f.code)));
                }
                if let Some(message) = from_wire(m) {
                    let _ = seen_tx.send((seq_of(&message), message.len()));
                }
            }
        }
    })
    .await;
    let session = builder(&url)
        .outbound_queue(64, 64 << 20)
        .no_reconnect()
        .connected()
        .await;

    // Fill the socket buffers, then the queue (64 messages).
    let mut sent: Vec<Message> = Vec::new();
    within("the outbound queue fills", async {
        let mut seq = 0;
        loop {
            match session.try_send(numbered(seq, 16 * 1024)) {
                Ok(()) => {
                    sent.push(numbered(seq, 16 * 1024));
                    seq += 1;
                }
                Err(Error::Full { .. }) => {
                    // Full, and staying full: the socket took all it will take.
                    // A poll, paced, in the hang guard: an early end under load
                    // only leaves the writer moving older messages during the
                    // shed, which the counts below account for.
                    let written = session.stats().messages_sent;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let now = session.stats();
                    if now.outbound_queued_messages == 64 && now.messages_sent == written {
                        break;
                    }
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    })
    .await;

    eprintln!("queue full after {} messages", sent.len());
    let floor = ShedFloor::new(KEEP, 1 << 30);
    let shed = within("shed", session.shed_queued_to(&floor)).await;
    eprintln!("{shed:?}");
    assert!(shed.outbound_messages > 0, "{shed:?}");
    assert_eq!(shed.inbound_messages, 0);
    let stats = session.stats();
    assert_eq!(stats.shed_outbound_messages, shed.outbound_messages);
    assert_eq!(stats.shed_outbound_bytes, shed.outbound_bytes);
    // Room again: more messages queue without waiting.
    let first_after = sent.len() as u64;
    for seq in first_after..first_after + AFTER {
        within("send after shed", session.send(numbered(seq, 16 * 1024)))
            .await
            .expect("send after shed");
        sent.push(numbered(seq, 16 * 1024));
    }
    resume_tx.send(()).expect("server waits");
    let unsent = within("drain", session.shutdown(ShutdownMode::Drain)).await;
    assert!(unsent.is_empty(), "{} unsent", unsent.len());

    let mut received = Vec::new();
    while let Some(seen) = within("server saw everything", seen_rx.recv()).await {
        received.push(seen);
        if seen.0 == first_after + AFTER - 1 {
            break;
        }
    }
    let seqs: Vec<u64> = received.iter().map(|r| r.0).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "order kept: {seqs:?}");
    let got: BTreeSet<u64> = seqs.iter().copied().collect();
    let missing: Vec<u64> = (0..first_after + AFTER)
        .filter(|s| !got.contains(s))
        .collect();
    assert_eq!(missing.len() as u64, shed.outbound_messages);
    let missing_bytes: u64 = missing.iter().map(|&s| sent[s as usize].len() as u64).sum();
    assert_eq!(missing_bytes, shed.outbound_bytes);
    assert!(
        missing.iter().all(|&s| !protected(s)),
        "protected events never dropped"
    );
    assert!(
        missing.iter().all(|&s| s < first_after),
        "nothing sent after the shed is dropped"
    );
    // What stayed of the queue is its newest audio: exactly the floor's worth
    // of sheddable messages after the last dropped one.
    let last_dropped = *missing.last().expect("something dropped");
    let kept_audio = (last_dropped + 1..first_after)
        .filter(|&s| !protected(s))
        .count();
    assert_eq!(kept_audio, KEEP);

    // The close frame went out as usual.
    let mut close_rx = close_rx;
    assert_eq!(within("close", close_rx.recv()).await, Some(Some(1000)));
    assert_eq!(session.stats().connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_shed_keeps_the_newest_audio_and_every_event() {
    const FIRST: u64 = 300;
    const MORE: u64 = 30;
    let (more_tx, more_rx) = mpsc::unbounded_channel::<()>();
    let more_rx = std::sync::Arc::new(tokio::sync::Mutex::new(more_rx));
    let url = rust_server(move |mut ws: ServerWs| {
        let more_rx = more_rx.clone();
        async move {
            for seq in 0..FIRST {
                if ws.send(to_wire(numbered(seq, 1000))).await.is_err() {
                    return;
                }
            }
            more_rx.lock().await.recv().await;
            for seq in FIRST..FIRST + MORE {
                if ws.send(to_wire(numbered(seq, 1000))).await.is_err() {
                    return;
                }
            }
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
    let session = builder(&url).connected().await;
    within("everything queued inbound", async {
        while session.stats().messages_received < FIRST {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let floor = ShedFloor::new(1000, 10 * 1000);
    let shed = within("shed", session.shed_queued_to(&floor)).await;
    // 270 audio messages (240 binary of 1000 bytes, 30 short appends): the
    // newest that fit in 10 000 bytes stay.
    assert!(shed.inbound_messages > 0, "{shed:?}");
    assert_eq!(shed.outbound_messages, 0);
    let stats = session.stats();
    assert_eq!(stats.shed_inbound_messages, shed.inbound_messages);
    assert_eq!(stats.shed_inbound_bytes, shed.inbound_bytes);
    assert_eq!(
        stats.inbound_queued_messages,
        FIRST - shed.inbound_messages,
        "the tickets of dropped messages are given back"
    );

    more_tx.send(()).expect("server waits");
    let mut seqs = Vec::new();
    let mut kept_bytes = 0;
    while seqs.len() < (FIRST + MORE - shed.inbound_messages) as usize {
        let m = within("recv", session.recv()).await.expect("open");
        let seq = seq_of(&m);
        if seq < FIRST && !protected(seq) {
            kept_bytes += m.len();
        }
        seqs.push(seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "order kept: {seqs:?}");
    for seq in (0..FIRST + MORE).filter(|&s| protected(s) || s >= FIRST) {
        assert!(seqs.contains(&seq), "{seq} kept");
    }
    assert!(kept_bytes <= floor.keep_bytes, "{kept_bytes}");
    // Kept audio is a run of the newest: no hole between kept ones.
    let kept_audio: Vec<u64> = seqs
        .iter()
        .copied()
        .filter(|&s| s < FIRST && !protected(s))
        .collect();
    let oldest_kept = kept_audio[0];
    assert_eq!(
        kept_audio,
        (oldest_kept..FIRST)
            .filter(|&s| !protected(s))
            .collect::<Vec<_>>()
    );
    session.shutdown(ShutdownMode::Abandon).await;
}

#[tokio::test]
async fn shed_on_a_closed_session_is_a_no_op() {
    let url = rust_server(echo).await;
    let session = builder(&url).connected().await;
    roundtrip(&session, Message::text("hi")).await;
    session.shutdown(ShutdownMode::Drain).await;
    let shed = within("shed", session.shed_queued()).await;
    assert_eq!(shed.messages(), 0);
}

/// While the link is down and the session waits to reconnect, a shed
/// drops queued audio; the next link gets what stayed, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_while_reconnecting_then_the_new_link_gets_the_rest() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<u64>();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let url = rust_server(move |mut ws: ServerWs| {
        let seen_tx = seen_tx.clone();
        let n = connections.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                // The first link dies at once.
                let _ = ws.close(None).await;
                return;
            }
            while let Some(Ok(m)) = ws.next().await {
                if let Some(message) = from_wire(m) {
                    let _ = seen_tx.send(seq_of(&message));
                }
            }
        }
    })
    .await;
    let mut policy = steward_ws::ReconnectConfig::default();
    // Long enough to queue and shed while waiting; the wait is not a
    // timing assertion, the shed is answered during it.
    policy.initial_delay = Duration::from_secs(2);
    policy.jitter = 0.0;
    let session = builder(&url).reconnect(policy).connected().await;
    let events = session.events();
    loop {
        if let steward_ws::Event::Reconnecting { .. } = next_event(&events).await {
            break;
        }
    }
    for seq in 1..=20 {
        session.try_send(numbered(seq, 100)).expect("room");
    }
    let shed = within("shed", session.shed_queued_to(&ShedFloor::new(4, 1 << 20))).await;
    // 20 messages, 2 protected (10, 20): 18 audio, the newest 4 stay.
    assert_eq!(shed.outbound_messages, 14);
    assert_eq!(session.stats().outbound_queued_messages, 6);
    let mut got = Vec::new();
    while got.len() < 6 {
        got.push(
            within("the new link", seen_rx.recv())
                .await
                .expect("server"),
        );
    }
    assert_eq!(got, vec![10, 16, 17, 18, 19, 20]);
    session.shutdown(ShutdownMode::Drain).await;
}
