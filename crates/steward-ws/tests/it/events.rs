//! A full event queue: an event reader that stalls while the link is lost,
//! flaps and is given up on still gets every lifecycle event, with the
//! undelivered messages; only `Reconnecting` is dropped, and counted.

use std::time::Duration;

use steward_ws::{Event, Message, ReconnectConfig, Session};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::common::*;

fn policy(max_attempts: u32) -> ReconnectConfig {
    reconnect_policy(Some(max_attempts), 20, 100, Duration::from_secs(5))
}

/// A server for one connection: it completes the handshake, stops
/// listening (every reconnect is refused), never reads, and drops the
/// connection when told.
async fn one_silent_link() -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (drop_it, dropped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        drop(listener);
        let ws = tokio_tungstenite::accept_async(tcp).await;
        let _ = dropped.await;
        drop(ws);
    });
    (format!("ws://{addr}/"), drop_it)
}

/// Sends 1 MiB messages with backpressure until the session refuses one;
/// returns how many it took (the refused one comes back in the error).
async fn send_until_closed(session: Session) -> usize {
    let mut taken = 0;
    loop {
        let message = Message::binary(payload(1 << 20, taken as u8));
        if session.send(message).await.is_err() {
            return taken;
        }
        taken += 1;
    }
}

/// Every event, read only once the session has ended (`recv` says `None`
/// once the session is over and its inbound queue empty).
async fn events_after_the_end(session: &Session) -> Vec<Event> {
    assert_eq!(within("the session's end", session.recv()).await, None);
    let events = session.events();
    let mut all = Vec::new();
    while let Some(e) = within("an event", events.recv()).await {
        all.push(e);
    }
    all
}

fn undelivered(event: &Event) -> Option<&[Message]> {
    match event {
        Event::Disconnected { undelivered, .. } | Event::GaveUp { undelivered, .. } => {
            Some(undelivered)
        }
        _ => None,
    }
}

/// Room for two events only; nobody reads them while the link is lost and
/// the session gives up.
async fn stalled_reader_over_a_lost_link(event_bytes: usize) -> (Vec<Event>, usize, Session) {
    let (url, drop_link) = one_silent_link().await;
    let session = builder(&url)
        .outbound_queue(16, 64 << 20)
        .event_queue(2, event_bytes)
        .reconnect(policy(3))
        .connected()
        .await;
    let sender = tokio::spawn(send_until_closed(session.clone()));
    // The queue fills and stays full: the socket took what it could.
    within("a full queue", async {
        while session.stats().outbound_queued_messages < 16 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    drop_link.send(()).unwrap();
    let taken = within("the sender's end", sender).await.unwrap();
    let events = events_after_the_end(&session).await;
    (events, taken, session)
}

#[tokio::test]
async fn a_stalled_reader_still_gets_the_loss_the_give_up_and_their_messages() {
    let (events, taken, session) = stalled_reader_over_a_lost_link(256 << 20).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::Connected { .. } => "connected",
            Event::Disconnected { .. } => "disconnected",
            Event::Reconnecting { .. } => "reconnecting",
            Event::GaveUp { .. } => "gave_up",
            Event::Closed => "closed",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["connected", "disconnected", "gave_up", "closed"],
        "every lifecycle event, in order; the Reconnecting ones dropped"
    );
    let stats = session.stats();
    let Event::GaveUp { attempts, .. } = &events[2] else {
        unreachable!()
    };
    assert_eq!(
        stats.events_dropped,
        u64::from(*attempts),
        "one Reconnecting per attempt: {stats:?}"
    );
    let lost_link = undelivered(&events[1]).unwrap();
    let given_up = undelivered(&events[2]).unwrap();
    assert!(
        !lost_link.is_empty(),
        "the silent link left messages queued"
    );
    assert!(!given_up.is_empty(), "messages queued while reconnecting");
    // Each message the session took was written or handed back.
    assert_eq!(
        stats.messages_sent as usize + lost_link.len() + given_up.len(),
        taken,
        "sent or handed back, nothing lost: {stats:?}"
    );
    assert_eq!(stats.undelivered_dropped_messages, 0);
}

#[tokio::test]
async fn undelivered_messages_beyond_the_byte_bound_are_dropped_and_counted() {
    let (events, _, session) = stalled_reader_over_a_lost_link(2 << 20).await;
    let held: usize = events
        .iter()
        .filter_map(undelivered)
        .flatten()
        .map(Message::len)
        .sum();
    assert!(held <= 2 << 20, "{held} bytes held by unread events");
    let stats = session.stats();
    assert!(stats.undelivered_dropped_messages > 0, "{stats:?}");
    assert!(
        events.iter().any(|e| matches!(e, Event::GaveUp { .. })),
        "the events stay, only old messages go"
    );
    assert!(matches!(events.last(), Some(Event::Closed)));
}

/// A server that completes the handshake and drops the connection at once.
async fn flapping_server() -> String {
    rust_server(|ws| async move { drop(ws) }).await
}

#[tokio::test]
async fn a_flapping_link_under_a_stalled_reader_folds_losses_and_drops_nothing_else() {
    let url = flapping_server().await;
    let session = builder(&url)
        .event_queue(3, 64 << 20)
        .reconnect(policy(4))
        .connected()
        .await;
    let events = events_after_the_end(&session).await;
    let stats = session.stats();
    let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count() as u64;
    let connected = count(|e| matches!(e, Event::Connected { .. }));
    let disconnected = count(|e| matches!(e, Event::Disconnected { .. }));
    assert!(stats.disconnects >= 4, "{stats:?}");
    assert!(stats.events_coalesced >= 1, "{stats:?}");
    // A fold takes one loss and the connection before it, nothing else.
    assert_eq!(disconnected + stats.events_coalesced, stats.disconnects);
    assert_eq!(connected + stats.events_coalesced, stats.connections);
    assert!(matches!(events[0], Event::Connected { connection: 1 }));
    let n = events.len();
    assert!(matches!(events[n - 2], Event::GaveUp { attempts: 4, .. }));
    assert!(matches!(events[n - 1], Event::Closed));
    assert!(n <= 3 + 3, "{n} events queued with room for 3");
}
