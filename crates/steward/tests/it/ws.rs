//! A real WebSocket session (against a tokio-tungstenite echo peer on
//! 127.0.0.1) under the wiring: stats in `health()` and `/metrics`, tracked
//! while open, let go once closed.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use steward::tracker::Tracker;
use steward::ws::{Client, Message, ShutdownMode};
use steward::{Steward, WS_SESSION_KIND};

/// Echoes text and binary messages of one connection, then ends.
async fn echo_peer() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                break;
            }
        }
    });
    (format!("ws://{addr}/v1/realtime"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_tracked_and_reported_while_open() {
    let (url, peer) = echo_peer().await;
    let session = Client::builder(url)
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap();
    let tracker = Tracker::new();
    let steward = Steward::builder()
        .tracker(tracker.clone())
        .ws_session("model \"realtime\"", &session)
        .build()
        .unwrap();
    assert_eq!(tracker.kind(WS_SESSION_KIND).unwrap().totals.live_count, 1);

    session.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(30), session.recv())
        .await
        .expect("echo within the hang guard");
    assert_eq!(echoed, Some(Message::text("hello")));

    let h = steward.health();
    assert_eq!(h.ws.len(), 1);
    assert_eq!(h.ws[0].name, "model \"realtime\"");
    assert!(h.ws[0].stats.connected);
    assert_eq!(h.ws[0].stats.messages_sent, 1);
    let metrics = steward.metrics_text();
    assert!(
        metrics.contains("steward_ws_connected{session=\"model \\\"realtime\\\"\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("steward_ws_messages_sent_total{session=\"model \\\"realtime\\\"\"} 1\n")
    );
    let resource = &h.tracker.as_ref().unwrap().largest;
    assert!(
        resource
            .iter()
            .any(|r| r.kind == WS_SESSION_KIND && r.name.as_deref() == Some("model \"realtime\""))
    );

    // Closed: the session leaves the wiring and the tracker.
    let unsent = session.shutdown(ShutdownMode::Drain).await;
    assert!(unsent.is_empty());
    let h = steward.health();
    assert!(h.ws.is_empty());
    assert_eq!(tracker.kind(WS_SESSION_KIND).unwrap().totals.live_count, 0);

    steward.shutdown().await;
    tokio::time::timeout(Duration::from_secs(30), peer)
        .await
        .expect("the peer ends after the close")
        .unwrap();
}
