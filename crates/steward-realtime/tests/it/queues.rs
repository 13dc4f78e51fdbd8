//! The queues between the application and the session task, against a
//! server on 127.0.0.1: user audio and text (tool outputs, user messages)
//! waiting in the command queue are bounded in bytes, and an application that does not read its events still gets
//! every `SessionReady` and `LinkLost`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use steward_realtime::{BYTES_PER_MS, RealtimeConfig, RealtimeEvent, RealtimeSession};
use steward_ws::ReconnectConfig;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::link::eventually;

type ServerWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn created(ws: &mut ServerWs, n: u64) {
    let created = json!({"type": "session.created", "event_id": format!("ev_c{n}"),
        "session": {"id": format!("sess_{n}"), "object": "realtime.session", "type": "realtime"}});
    let _ = ws.send(Message::text(created.to_string())).await;
}

/// Link 1 sends `chatter` speech events and drops (no close frame); later
/// links stay up, reading. Counts the links.
async fn server(chatter: usize) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let links = Arc::new(AtomicU64::new(0));
    let counter = links.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Relaxed) + 1;
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                continue;
            };
            tokio::spawn(async move {
                created(&mut ws, n).await;
                if n == 1 {
                    for i in 0..chatter {
                        let kind = if i % 2 == 0 { "started" } else { "stopped" };
                        let e = json!({"type": format!("input_audio_buffer.speech_{kind}"),
                            "event_id": format!("ev_{i}"), "audio_start_ms": 0,
                            "audio_end_ms": 0, "item_id": format!("u_{i}")});
                        let _ = ws.feed(Message::text(e.to_string())).await;
                    }
                    let _ = ws.flush().await;
                    return;
                }
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (format!("ws://{addr}/"), links)
}

async fn connect(url: &str, config: RealtimeConfig) -> RealtimeSession {
    let mut reconnect = ReconnectConfig::default();
    reconnect.initial_delay = Duration::from_millis(20);
    let client = config
        .client_builder(url)
        .reconnect(reconnect)
        .build()
        .expect("client");
    RealtimeSession::builder(client)
        .config(config)
        .connect()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stalls_still_gets_every_session_ready_and_link_lost() {
    let (url, links) = server(400).await;
    let mut config = RealtimeConfig::default();
    config.event_queue = 8;
    let session = connect(&url, config).await;
    // Nothing is read until the link was lost and the session is back.
    eventually("the reconnect", || session.stats().replays >= 1).await;
    assert!(links.load(Relaxed) >= 2);
    let events: Vec<RealtimeEvent> = std::iter::from_fn(|| session.try_next_event()).collect();
    let stats = session.close().await;
    let lifecycle: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            RealtimeEvent::SessionReady { reason, .. } => Some(format!("ready:{reason}")),
            RealtimeEvent::LinkLost { .. } => Some("lost".into()),
            _ => None,
        })
        .collect();
    assert_eq!(
        lifecycle,
        ["ready:start", "lost", "ready:reconnect"],
        "{events:?}"
    );
    assert!(events.len() <= 8, "{} events kept", events.len());
    assert!(
        stats.events_dropped > 0,
        "the chatter overflowed: {stats:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn user_audio_waiting_for_the_task_is_bounded_in_bytes() {
    let (url, _) = server(0).await;
    let mut config = RealtimeConfig::default();
    config.held_audio_ms = 1_000;
    let session = connect(&url, config).await;
    // The task cannot run while this test does not yield: every chunk
    // waits in the command queue.
    let chunk = (500 * BYTES_PER_MS) as usize;
    for _ in 0..10 {
        session.send_audio(vec![0; chunk]);
    }
    let stats = session.stats();
    assert_eq!(
        stats.audio_dropped_bytes,
        8 * chunk as u64,
        "one second of audio waits, the rest is refused: {stats:?}"
    );
    let stats = session.close().await;
    assert_eq!(stats.audio_in_bytes, 10 * chunk as u64, "{stats:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn text_waiting_for_the_task_is_bounded_in_bytes_and_refusals_are_counted() {
    let (url, _) = server(0).await;
    let mut config = RealtimeConfig::default();
    config.text_queue_bytes = 1_000;
    let session = connect(&url, config).await;
    // The task cannot run while this test does not yield (a send into a
    // queue with room is ready at once): every text waits in the queue.
    let output = "o".repeat(398);
    let mut results = Vec::new();
    for i in 0..6 {
        results.push(session.tool_output(format!("c{i}"), output.clone()).await);
    }
    results.push(session.user_text("t".repeat(300)).await);
    let refused: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Err(e @ steward_realtime::Error::QueueFull { .. }) => Some(e.to_string()),
            Err(e) => panic!("not a queue refusal: {e}"),
            Ok(()) => None,
        })
        .collect();
    // 400 bytes each (call id and output): two fit in 1,000.
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "{refused:?}"
    );
    assert_eq!(refused.len(), 5);
    assert!(
        refused[0].contains("tool output of 400 bytes")
            && refused[0].contains("800 bytes of text wait")
            && refused[0].contains("limit 1000"),
        "{}",
        refused[0]
    );
    assert!(
        refused[4].contains("user message of 300 bytes"),
        "{}",
        refused[4]
    );
    assert_eq!(session.stats().texts_refused, 5);
    // Once the task took them (history answers after every earlier
    // command), the bytes are given back: a text as large as the whole
    // bound passes alone.
    session.history().await.expect("history");
    session
        .user_text("t".repeat(5_000))
        .await
        .expect("a lone text of any size passes");
    let stats = session.close().await;
    assert_eq!(stats.texts_refused, 5, "{stats:?}");
}
