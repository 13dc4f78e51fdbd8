//! A server killed and restarted; giving up; backoff; a flapping server.

use std::time::Duration;

use steward_ws::{Error, Event, Message, ReconnectConfig};

use crate::common::*;

fn fast_reconnect(max_attempts: Option<u32>) -> ReconnectConfig {
    reconnect_policy(max_attempts, 50, 400, Duration::from_secs(5))
}

#[tokio::test]
async fn killed_and_restarted_server_reconnects_and_hands_back_python_peer() {
    // The first server stops reading, so messages pile up in our queue; then
    // it is killed (SIGKILL) and a new one starts on the same port.
    let first = PyPeer::start(&["silent"], 0).await;
    let port = first.port;
    let session = builder(&first.url())
        .outbound_queue(16, 64 << 20)
        .reconnect(fast_reconnect(None))
        .connected()
        .await;
    let events = session.events();
    assert!(matches!(
        next_event(&events).await,
        Event::Connected { connection: 1 }
    ));

    let total = 48usize;
    let mut accepted = 0usize;
    while accepted < total {
        let mut m = payload(1 << 20, accepted as u8);
        m[..4].copy_from_slice(&(accepted as u32).to_be_bytes());
        match session.try_send(Message::binary(m)) {
            Ok(()) => accepted += 1,
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(accepted > 0);
    first.kill().await;

    let (reason, undelivered) = match next_event(&events).await {
        Event::Disconnected {
            reason,
            undelivered,
        } => (reason, undelivered),
        other => panic!("unexpected {other:?}"),
    };
    assert!(
        matches!(reason, Error::ConnectionLost { .. } | Error::Io { .. }),
        "{reason:?}"
    );
    assert!(
        !undelivered.is_empty(),
        "the silent server left messages queued"
    );
    // What came back is the unsent tail, in order.
    let first_back = u32::from_be_bytes(undelivered[0].as_bytes()[..4].try_into().unwrap());
    for (k, m) in undelivered.iter().enumerate() {
        let seq = u32::from_be_bytes(m.as_bytes()[..4].try_into().unwrap());
        assert_eq!(seq, first_back + k as u32);
    }
    let sent_before = session.stats().messages_sent as usize;
    assert_eq!(first_back as usize, sent_before);
    assert_eq!(
        sent_before + undelivered.len(),
        accepted,
        "sent or handed back, nothing lost"
    );

    // Restart on the same port; the session finds it.
    let _second = PyPeer::start(&["echo"], port).await;
    let mut attempts = Vec::new();
    loop {
        match next_event(&events).await {
            Event::Reconnecting { attempt, delay } => {
                assert!(delay <= Duration::from_millis(400));
                attempts.push(attempt);
            }
            Event::Connected { connection } => {
                assert_eq!(connection, 2);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(attempts.first(), Some(&1));
    assert!(
        attempts.windows(2).all(|w| w[1] == w[0] + 1),
        "{attempts:?}"
    );
    roundtrip(&session, Message::text("after the restart")).await;
    let stats = session.stats();
    assert_eq!(stats.reconnects, 1);
    assert_eq!(stats.disconnects, 1);
    assert_eq!(stats.connections, 2);
}

#[tokio::test]
async fn gives_up_after_the_attempt_cap_python_peer() {
    let peer = PyPeer::start(&["echo"], 0).await;
    let session = builder(&peer.url())
        .reconnect(fast_reconnect(Some(3)))
        .connected()
        .await;
    let events = session.events();
    next_event(&events).await;
    peer.kill().await;
    assert!(matches!(
        next_event(&events).await,
        Event::Disconnected { .. }
    ));
    for n in 1..=3 {
        match next_event(&events).await {
            Event::Reconnecting { attempt, .. } => assert_eq!(attempt, n),
            other => panic!("unexpected {other:?}"),
        }
    }
    match next_event(&events).await {
        Event::GaveUp {
            attempts,
            last_error,
            undelivered,
        } => {
            assert_eq!(attempts, 3);
            assert!(
                matches!(last_error, Some(Error::Connect { .. })),
                "{last_error:?}"
            );
            assert!(undelivered.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(next_event(&events).await, Event::Closed));
    let err = session.send("too late").await.unwrap_err();
    assert_eq!(err.into_message(), Some(Message::text("too late")));
    assert_eq!(within("recv end", session.recv()).await, None);
}

#[tokio::test]
async fn messages_sent_while_reconnecting_go_out_on_the_new_link_python_peer() {
    let first = PyPeer::start(&["echo"], 0).await;
    let port = first.port;
    let mut policy = fast_reconnect(None);
    policy.initial_delay = Duration::from_millis(300);
    let session = builder(&first.url()).reconnect(policy).connected().await;
    let events = session.events();
    next_event(&events).await;
    first.kill().await;
    assert!(matches!(
        next_event(&events).await,
        Event::Disconnected { .. }
    ));
    // Down: sends queue up for the next connection.
    session.send("queued while down").await.unwrap();
    let _second = PyPeer::start(&["echo"], port).await;
    loop {
        if let Event::Connected { .. } = next_event(&events).await {
            break;
        }
    }
    assert_eq!(
        within("echo", session.recv()).await,
        Some(Message::text("queued while down"))
    );
}

#[test]
fn backoff_grows_is_capped_and_jittered() {
    let mut policy = ReconnectConfig::default();
    policy.initial_delay = Duration::from_millis(100);
    policy.max_delay = Duration::from_secs(2);
    policy.multiplier = 2.0;
    policy.jitter = 0.5;
    assert_eq!(policy.delay(1, 0.0), Duration::from_millis(100));
    assert_eq!(policy.delay(2, 0.0), Duration::from_millis(200));
    assert_eq!(policy.delay(4, 0.0), Duration::from_millis(800));
    assert_eq!(policy.delay(30, 0.0), Duration::from_secs(2));
    assert_eq!(policy.delay(u32::MAX, 0.0), Duration::from_secs(2));
    assert_eq!(policy.delay(1, 1.0), Duration::from_millis(50));
    assert_eq!(policy.delay(30, 1.0), Duration::from_secs(1));
}

/// A server that completes the handshake and drops the connection at once;
/// counts the connections it accepted.
async fn flapping_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = accepted.clone();
    let url = rust_server(move |ws| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move { drop(ws) }
    })
    .await;
    (url, accepted)
}

fn flapping_policy(max_attempts: Option<u32>) -> ReconnectConfig {
    reconnect_policy(max_attempts, 40, 800, Duration::from_secs(2))
}

#[tokio::test]
async fn a_flapping_server_is_backed_off_and_given_up_on() {
    let (url, accepted) = flapping_server().await;
    let session = builder(&url)
        .reconnect(flapping_policy(Some(5)))
        .connected()
        .await;
    let events = session.events();
    // Every link comes up and is lost at once; the attempt count goes on
    // instead of starting at 1 after each connect, so the cap applies.
    let mut attempts = Vec::new();
    let gave_up = loop {
        match next_event(&events).await {
            Event::Reconnecting { attempt, .. } => attempts.push(attempt),
            Event::GaveUp { attempts, .. } => break attempts,
            Event::Connected { .. } | Event::Disconnected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(attempts, vec![1, 2, 3, 4, 5]);
    assert_eq!(gave_up, 5);
    assert!(matches!(next_event(&events).await, Event::Closed));
    let stats = session.stats();
    assert!(stats.flaps >= 5, "{stats:?}");
    assert_eq!(
        stats.flaps, stats.disconnects,
        "every lost link was a flap: {stats:?}"
    );
    // The first connection and at most one per attempt.
    let accepted = accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(accepted <= 6, "{accepted} connections");
}

#[tokio::test]
async fn a_flapping_server_sees_the_backoff_grow() {
    let (url, accepted) = flapping_server().await;
    let policy = flapping_policy(None);
    let started = std::time::Instant::now();
    let session = builder(&url).reconnect(policy.clone()).connected().await;
    // Real time on purpose: the backoff runs on the real clock. The bound
    // below uses the time that really passed (more on a loaded machine).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = accepted.load(std::sync::atomic::Ordering::Relaxed);
    let window = started.elapsed();
    session.shutdown(steward_ws::ShutdownMode::Abandon).await;
    // The most connections the window can hold: the first, then one per
    // attempt whose shortest delays (full jitter) fit in it. A backoff that
    // started again at 1 after each connect would make ~70.
    let mut bound = 1u64;
    let mut spent = Duration::ZERO;
    for attempt in 1.. {
        spent += policy.delay(attempt, 1.0);
        if spent > window {
            break;
        }
        bound += 1;
    }
    assert!(
        seen <= bound,
        "{seen} connections in {window:?}, at most {bound} with a growing backoff"
    );
    assert!(seen >= 2, "it reconnected at all: {seen}");
    assert!(session.stats().flaps >= 1);
}

/// A message meant for one link never reaches the next one: the server
/// behind a reconnect is a new server-side session that does not know the
/// ids the message names (a truncate of an item of the old session).
#[tokio::test]
async fn a_message_for_a_lost_link_is_refused_not_sent_on_the_next() {
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<(u64, String)>();
    let links = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let url = rust_server(move |mut ws| {
        let link = links.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let tx = tx.clone();
        async move {
            use futures_util::StreamExt;
            while let Some(Ok(m)) = ws.next().await {
                if let Ok(text) = m.into_text() {
                    let _ = tx.send((link, text.to_string()));
                }
                // The first link is lost after its first message.
                if link == 1 {
                    return;
                }
            }
        }
    })
    .await;
    let session = builder(&url)
        .reconnect(fast_reconnect(None))
        .connected()
        .await;
    let events = session.events();
    assert!(matches!(
        next_event(&events).await,
        Event::Connected { connection: 1 }
    ));
    assert_eq!(session.connection(), Some(1));
    session.try_send_on(1, "for link 1").unwrap();
    assert_eq!(
        within("first message", seen.recv()).await,
        Some((1, "for link 1".to_string()))
    );
    assert!(matches!(
        next_event(&events).await,
        Event::Disconnected { .. }
    ));

    // Decided for link 1 after it went: refused and handed back, both ways.
    let refused = session.try_send_on(1, "stale").unwrap_err();
    assert!(
        refused.to_string().contains("link 1") && refused.to_string().contains(&url),
        "{refused}"
    );
    assert_eq!(refused.into_message(), Some(Message::text("stale")));
    let refused = session.send_on(1, "stale too").await.unwrap_err();
    assert!(matches!(refused, Error::LinkGone { connection: 1, .. }));
    // Unscoped messages still queue for the next link.
    session.send("queued while down").await.unwrap();

    let connection = loop {
        if let Event::Connected { connection } = next_event(&events).await {
            break connection;
        }
    };
    assert_eq!(connection, 2);
    assert_eq!(session.connection(), Some(2));
    assert!(session.try_send_on(1, "still stale").is_err());
    session.send_on(2, "for link 2").await.unwrap();
    let mut second = Vec::new();
    while second.len() < 2 {
        second.push(within("second link", seen.recv()).await.unwrap());
    }
    assert_eq!(
        second,
        vec![
            (2, "queued while down".to_string()),
            (2, "for link 2".to_string())
        ]
    );
    assert_eq!(session.stats().link_gone, 3);
}
