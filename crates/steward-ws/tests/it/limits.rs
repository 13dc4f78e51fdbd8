//! Size limits, bounded queues, backpressure.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use steward_ws::{Direction, Error, Event, Message};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;

use crate::common::*;

const MIB: usize = 1 << 20;

#[tokio::test]
async fn oversize_incoming_closes_with_1009_python_peer() {
    let mut peer = PyPeer::start(&["big", &(2 * MIB).to_string()], 0).await;
    let session = builder(&peer.url())
        .max_message_size(MIB)
        .no_reconnect()
        .connected()
        .await;
    let events = session.events();
    next_event(&events).await;
    let Event::Disconnected { reason, .. } = next_event(&events).await else {
        panic!("expected Disconnected")
    };
    assert!(
        matches!(
            reason,
            Error::MessageTooLarge {
                direction: Direction::Incoming,
                limit: MIB,
                ..
            }
        ),
        "{reason:?}"
    );
    let text = reason.to_string();
    assert!(text.contains(&MIB.to_string()), "{text}");
    assert_eq!(peer.line().await, "CLOSED 1009");
}

#[tokio::test]
async fn oversize_incoming_closes_with_1009_rust_server() {
    let (code_tx, mut code_rx) = mpsc::unbounded_channel();
    let url = rust_server(move |mut ws: ServerWs| {
        let code_tx = code_tx.clone();
        async move {
            let big = tungstenite::Message::binary(vec![0u8; 3 * MIB]);
            if ws.send(big).await.is_err() {
                return;
            }
            while let Some(Ok(m)) = ws.next().await {
                if let tungstenite::Message::Close(frame) = m {
                    let _ = code_tx.send(frame.map(|f| u16::from(f.code)));
                }
            }
        }
    })
    .await;
    let session = builder(&url)
        .max_message_size(2 * MIB)
        .no_reconnect()
        .connected()
        .await;
    assert_eq!(within("close", code_rx.recv()).await, Some(Some(1009)));
    assert_eq!(within("recv end", session.recv()).await, None);
    let stats = session.stats();
    assert_eq!(stats.oversize_incoming, 1);
    assert_eq!(stats.messages_received, 0);
}

#[tokio::test]
async fn oversize_outgoing_is_refused_locally_and_the_link_lives_on() {
    let peer = PyPeer::start(&["echo"], 0).await;
    let session = builder(&peer.url()).max_message_size(MIB).connected().await;
    let err = session
        .send(Message::binary(vec![0u8; MIB + 1]))
        .await
        .unwrap_err();
    match &err {
        Error::MessageTooLarge {
            direction: Direction::Outgoing,
            size,
            limit,
            ..
        } => assert_eq!((*size, *limit), (MIB + 1, MIB)),
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&(MIB + 1).to_string()) && text.contains(&MIB.to_string()));
    assert!(
        session
            .try_send(Message::text("y".repeat(MIB + 1)))
            .is_err()
    );
    // Exactly at the limit is fine, and the link is still up.
    roundtrip(&session, Message::binary(vec![9u8; MIB])).await;
    let stats = session.stats();
    assert_eq!(stats.oversize_outgoing, 2);
    assert_eq!(stats.messages_sent, 1);
    assert_eq!(stats.disconnects, 0);
}

fn statm_rss_bytes() -> usize {
    let text = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test]
async fn slow_reader_keeps_queue_and_memory_bounded_rust_server() {
    const OFFERED: usize = 200;
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let url = rust_server(move |mut ws: ServerWs| {
        let counter = counter.clone();
        async move {
            for i in 0..OFFERED {
                let mut m = vec![0u8; MIB];
                m[..4].copy_from_slice(&(i as u32).to_be_bytes());
                if ws.send(tungstenite::Message::binary(m)).await.is_err() {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
            }
            while ws.next().await.is_some() {}
        }
    })
    .await;
    let rss_before = statm_rss_bytes();
    let session = builder(&url).inbound_queue(4, 4 * MIB).connected().await;
    // Not reading: wait until the server cannot push any more (a paced
    // poll in the hang guard; an early end only makes the bounds below
    // easier to meet, never fails them).
    within("server blocked", async {
        let mut last = usize::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = sent.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
    })
    .await;
    let stats = session.stats();
    let pushed = sent.load(Ordering::SeqCst);
    assert!(stats.inbound_queued_messages <= 4, "{stats:?}");
    assert!(stats.inbound_queued_bytes <= 4 * MIB as u64, "{stats:?}");
    assert!(stats.messages_received <= 4, "{stats:?}");
    assert!(
        pushed < OFFERED / 2,
        "TCP pushed back on the server: {pushed} of {OFFERED} sent"
    );
    let grown = statm_rss_bytes().saturating_sub(rss_before);
    assert!(
        grown < 128 * MIB,
        "memory grew by {} MiB while {} MiB were offered",
        grown / MIB,
        OFFERED
    );
    // Nothing is lost: reading now yields every message, in order, and the
    // heartbeat did not mistake the pause for a dead peer.
    for i in 0..OFFERED {
        let m = within("message", session.recv()).await.unwrap();
        assert_eq!(m.len(), MIB);
        assert_eq!(&m.as_bytes()[..4], &(i as u32).to_be_bytes());
    }
    assert_eq!(session.stats().dead_peers, 0);
}

#[tokio::test]
async fn slow_reader_is_not_declared_dead_python_peer() {
    let peer = PyPeer::start(&["echo"], 0).await;
    let interval = Duration::from_millis(200);
    let session = builder(&peer.url())
        .heartbeat(interval, interval)
        .inbound_queue(2, MIB)
        .connected()
        .await;
    for i in 0..10u8 {
        session.send(Message::binary(vec![i; 1000])).await.unwrap();
    }
    // Several heartbeat periods without reading (real time on purpose: the
    // heartbeat runs on the real clock).
    tokio::time::sleep(interval * 5).await;
    for i in 0..10u8 {
        assert_eq!(
            within("echo", session.recv()).await,
            Some(Message::binary(vec![i; 1000]))
        );
    }
    assert_eq!(session.stats().dead_peers, 0);
    assert_eq!(session.stats().disconnects, 0);
}

#[tokio::test]
async fn full_outbound_queue_says_full_and_send_waits_python_peer() {
    // The peer stops reading: our writes block, the queue fills.
    let peer = PyPeer::start(&["silent"], 0).await;
    let session = builder(&peer.url())
        .outbound_queue(4, 64 * MIB)
        .connected()
        .await;
    let mut queued = 0;
    let full = within("queue fills", async {
        loop {
            match session.try_send(Message::binary(vec![7u8; MIB])) {
                Ok(()) => queued += 1,
                Err(e) => break e,
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        matches!(
            full,
            Error::Full {
                limit_messages: 4,
                ..
            }
        ),
        "{full:?}"
    );
    assert!(full.to_string().contains("full"), "{full}");
    assert_eq!(
        full.into_message().map(|m| m.len()),
        Some(MIB),
        "message handed back"
    );
    let stats = session.stats();
    assert!(stats.outbound_queued_messages <= 4, "{stats:?}");
    assert!(queued >= 4, "{queued}");
    // `send` waits (backpressure) instead of failing.
    let blocked = tokio::time::timeout(
        Duration::from_millis(300),
        session.send(Message::binary(vec![1u8; MIB])),
    )
    .await;
    assert!(blocked.is_err(), "send must wait while the queue is full");
}

#[tokio::test]
async fn byte_limit_bounds_the_outbound_queue_python_peer() {
    let peer = PyPeer::start(&["silent"], 0).await;
    let session = builder(&peer.url())
        .outbound_queue(10_000, 2 * MIB)
        .connected()
        .await;
    let full = within("queue fills", async {
        loop {
            if let Err(e) = session.try_send(Message::binary(vec![3u8; 256 * 1024])) {
                break e;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(matches!(full, Error::Full { .. }), "{full:?}");
    assert!(session.stats().outbound_queued_bytes <= 2 * MIB as u64);
}
