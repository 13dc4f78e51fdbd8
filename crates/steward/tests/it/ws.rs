//! A real WebSocket session (against a tokio-tungstenite echo peer on
//! 127.0.0.1) under the wiring: stats in `health()` and `/metrics`, tracked
//! while open, let go once closed.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use steward::tracker::Tracker;
use steward::ws::{Client, Message, Session, ShutdownMode};
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

/// A connected session under a steward with a tracker, as `name`.
async fn wired(client: steward::ws::ClientBuilder, name: &str) -> (Session, Tracker, Steward) {
    let session = client.build().unwrap().connect().await.unwrap();
    let tracker = Tracker::new();
    let steward = Steward::builder()
        .tracker(tracker.clone())
        .ws_session(name, &session)
        .build()
        .unwrap();
    (session, tracker, steward)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_tracked_and_reported_while_open() {
    let (url, peer) = echo_peer().await;
    let (session, tracker, steward) = wired(Client::builder(url), "model \"realtime\"").await;
    assert_eq!(tracker.kind(WS_SESSION_KIND).unwrap().totals.live_count, 1);

    session.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(30), session.recv())
        .await
        .expect("echo within the hang guard");
    assert_eq!(echoed, Some(Message::text("hello")));
    // The send is counted once its flush returns, which the echo can beat
    // on a loaded machine: wait for the count, not for the echo.
    tokio::time::timeout(Duration::from_secs(30), async {
        while steward
            .health()
            .ws
            .first()
            .is_none_or(|w| w.stats.messages_sent == 0)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the send counted within the hang guard");

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
    // Every overflow counter of the session is exported, at 0 here.
    for family in [
        "steward_ws_events_dropped_total",
        "steward_ws_events_coalesced_total",
        "steward_ws_undelivered_dropped_messages_total",
        "steward_ws_undelivered_dropped_bytes_total",
        "steward_ws_link_gone_total",
    ] {
        assert!(
            metrics.contains(&format!(
                "{family}{{session=\"model \\\"realtime\\\"\"}} 0\n"
            )),
            "{family}: {metrics}"
        );
    }
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

/// An echo server that can be killed: its links are cut and every later
/// connection is closed at once, counted.
struct KillableServer {
    url: String,
    kill: tokio::sync::watch::Sender<bool>,
    attempts_after_kill: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

async fn killable_server() -> KillableServer {
    use std::sync::atomic::Ordering::Relaxed;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (kill, killed) = tokio::sync::watch::channel(false);
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = attempts.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if *killed.borrow() {
                counter.fetch_add(1, Relaxed);
                continue;
            }
            let mut killed = killed.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                tokio::select! {
                    () = async { while let Some(Ok(_)) = ws.next().await {} } => {}
                    _ = killed.wait_for(|k| *k) => {}
                }
            });
        }
    });
    KillableServer {
        url: format!("ws://{addr}/v1/realtime"),
        kill,
        attempts_after_kill: attempts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_its_owner_dropped_ends_under_the_wiring() {
    use std::sync::atomic::Ordering::Relaxed;
    let server = killable_server().await;
    let mut reconnect = steward::ws::ReconnectConfig::default();
    reconnect.max_attempts = None;
    reconnect.initial_delay = Duration::from_millis(20);
    reconnect.max_delay = Duration::from_millis(100);
    let (session, tracker, steward) =
        wired(Client::builder(&server.url).reconnect(reconnect), "model").await;
    let later = session.clone();
    steward.add_ws_session("model again", &later);
    assert_eq!(steward.health().ws.len(), 2);
    let events = session.events();

    // Every user handle goes, then the server dies.
    drop((session, later));
    server.kill.send_replace(true);
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.recv().await {
            assert!(
                !matches!(event, steward::ws::Event::Reconnecting { .. }),
                "reconnecting with no owner"
            );
        }
    })
    .await
    .expect("the session's task ends within the hang guard");
    assert!(steward.health().ws.is_empty());
    assert_eq!(tracker.kind(WS_SESSION_KIND).unwrap().totals.live_count, 0);

    // No connection attempt comes later (a few backoff periods; only
    // letting time pass can show that nothing happens).
    let attempts = server.attempts_after_kill.load(Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.attempts_after_kill.load(Relaxed), attempts);
    assert_eq!(attempts, 0, "no reconnect attempt at all");
    steward.shutdown().await;
}
