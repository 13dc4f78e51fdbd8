//! A session whose handles are all gone: it drains for at most its drain
//! timeout and never reconnects, whatever its link does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use steward_ws::{Event, Message, ReconnectConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::common::*;

/// A server that completes handshakes and then never reads (the sockets are
/// held, so a client's writes stall); counts TCP connections. Aborting the
/// task kills it: the listener and every connection go.
async fn silent_server() -> (String, JoinHandle<()>, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Relaxed);
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                held.push(ws);
            }
        }
    });
    (format!("ws://{addr}/"), task, accepted)
}

fn forever() -> ReconnectConfig {
    reconnect_policy(None, 20, 100, Duration::from_secs(5))
}

/// Queues more than the sockets can take (the server never reads).
fn fill(session: &steward_ws::Session) {
    for seed in 0..24 {
        // Full: what is queued is enough.
        if session
            .try_send(Message::binary(payload(1 << 20, seed)))
            .is_err()
        {
            break;
        }
    }
}

/// The events up to the end of the session; the stream then ends, so the
/// I/O task is gone.
async fn until_closed(events: &steward_ws::Events) -> Vec<Event> {
    let mut seen = Vec::new();
    within("the session to end", async {
        loop {
            match events.recv().await.expect("Closed before the stream ends") {
                Event::Closed => break,
                event => seen.push(event),
            }
        }
    })
    .await;
    assert!(
        within("the event stream to end", events.recv())
            .await
            .is_none(),
        "nothing after Closed"
    );
    seen
}

#[tokio::test]
async fn a_dropped_session_whose_link_dies_does_not_reconnect() {
    let (url, server, accepted) = silent_server().await;
    let session = builder(&url)
        .reconnect(forever())
        // Long: the link's death, not the drain's end, stops this one.
        .drain_timeout(Duration::from_secs(600))
        .connected()
        .await;
    let events = session.events();
    let weak = session.downgrade();
    fill(&session);
    assert!(session.stats().outbound_queued_messages > 0);
    drop(session);
    assert!(!weak.is_alive() && weak.upgrade().is_none());

    // The server dies under the stalled writes.
    server.abort();
    let _ = server.await;
    let seen = until_closed(&events).await;
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Reconnecting { .. })),
        "no reconnecting without an owner: {seen:?}"
    );
    assert!(weak.is_closed());
    assert_eq!(accepted.load(Relaxed), 1);
}

#[tokio::test]
async fn a_dropped_session_on_a_link_that_never_drains_ends_after_the_drain_timeout() {
    let (url, server, accepted) = silent_server().await;
    let session = builder(&url)
        .reconnect(forever())
        .drain_timeout(Duration::from_millis(300))
        .connected()
        .await;
    let events = session.events();
    fill(&session);
    drop(session);
    // The heartbeat (30 s) never declares this link dead within the guard:
    // only the drain's bound ends it.
    let seen = until_closed(&events).await;
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Reconnecting { .. })),
        "{seen:?}"
    );
    assert_eq!(accepted.load(Relaxed), 1);
    server.abort();
}
