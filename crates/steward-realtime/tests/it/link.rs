//! One realtime session over a real socket to a scripted server on
//! 127.0.0.1: what the conversation decides for one server-side session
//! never reaches the next.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use steward_realtime::{RealtimeConfig, RealtimeSession};
use steward_ws::ReconnectConfig;
use steward_ws::realtime::encode_audio;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Hang guard: generous, never a timing assertion.
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let guard = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < guard,
            "hang guard: {what} did not happen within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The first link: an answer starts playing, the user speaks over it, and
/// the link drops (no close frame) right behind that `speech_started`, so
/// the barge-in is decided while the link is already gone.
async fn first_link(mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) {
    let created = json!({"type": "session.created", "event_id": "ev_1",
        "session": {"id": "sess_1", "object": "realtime.session", "type": "realtime"}});
    let _ = ws.send(Message::text(created.to_string())).await;
    // The client's session.update: it is configured.
    let _ = ws.next().await;
    let pcm: Vec<u8> = (0..9_600u32).map(|i| (i % 251) as u8).collect();
    let script = [
        json!({"type": "response.created", "event_id": "ev_2",
            "response": {"id": "resp_1", "object": "realtime.response",
                         "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "event_id": "ev_3",
            "response_id": "resp_1", "output_index": 0,
            "item": {"id": "item_1", "object": "realtime.item", "type": "message",
                     "role": "assistant", "status": "in_progress", "content": []}}),
        json!({"type": "response.output_audio.delta", "event_id": "ev_4",
            "response_id": "resp_1", "item_id": "item_1", "output_index": 0,
            "content_index": 0, "delta": encode_audio(&pcm)}),
        json!({"type": "input_audio_buffer.speech_started", "event_id": "ev_5",
            "audio_start_ms": 100, "item_id": "user_1"}),
    ];
    for event in script {
        let _ = ws.feed(Message::text(event.to_string())).await;
    }
    let _ = ws.flush().await;
    // Dropped without a close frame.
}

/// Later links: a fresh server-side session that records the client's
/// event types.
async fn later_link(
    mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    seen: Arc<Mutex<Vec<Value>>>,
) {
    let created = json!({"type": "session.created", "event_id": "ev_9",
        "session": {"id": "sess_2", "object": "realtime.session", "type": "realtime"}});
    let _ = ws.send(Message::text(created.to_string())).await;
    while let Some(Ok(m)) = ws.next().await {
        if let Ok(text) = m.into_text()
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            seen.lock().push(v);
        }
    }
}

async fn scripted_server(seen: Arc<Mutex<Vec<Value>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut links = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            links += 1;
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                continue;
            };
            if links == 1 {
                tokio::spawn(first_link(ws));
            } else {
                tokio::spawn(later_link(ws, seen.clone()));
            }
        }
    });
    format!("ws://{addr}/")
}

fn kind(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barge_in_racing_the_links_loss_sends_nothing_item_scoped_to_the_next_session() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = scripted_server(seen.clone()).await;
    let config = RealtimeConfig::default();
    let mut reconnect = ReconnectConfig::default();
    reconnect.initial_delay = Duration::from_millis(20);
    let client = config
        .client_builder(&url)
        .reconnect(reconnect)
        .build()
        .expect("client");
    let session = RealtimeSession::builder(client)
        .config(config)
        .connect()
        .await
        .expect("connect");
    eventually("the barge-in", || session.stats().barge_ins >= 1).await;
    eventually("the reconnect", || session.stats().replays >= 1).await;
    // User audio after the reconnect: once the server has it, everything
    // queued before it (the queue is in order) has been written.
    session.send_audio(vec![0; 4_800]);
    eventually("audio on the second link", || {
        seen.lock()
            .iter()
            .any(|v| kind(v) == "input_audio_buffer.append")
    })
    .await;
    let stats = session.close().await;
    let seen = seen.lock();
    let kinds: Vec<&str> = seen.iter().map(kind).collect();
    println!("second link got {kinds:?}\n{stats:?}");
    let stale: Vec<&Value> = seen
        .iter()
        .filter(|v| {
            matches!(
                kind(v),
                "conversation.item.truncate" | "conversation.item.delete" | "response.cancel"
            )
        })
        .collect();
    assert!(
        stale.is_empty(),
        "events decided for the first session reached the second: {stale:?}"
    );
    assert_eq!(stats.barge_ins, 1, "{stats:?}");
    assert!(kinds.contains(&"session.update"), "{kinds:?}");
}
