//! A server killed and restarted; giving up; backoff.

use std::time::Duration;

use steward_ws::{Error, Event, Message, ReconnectConfig};

use crate::common::*;

fn fast_reconnect(max_attempts: Option<u32>) -> ReconnectConfig {
    ReconnectConfig {
        enabled: true,
        max_attempts,
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        multiplier: 2.0,
        jitter: 0.2,
    }
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
    let session = builder(&first.url())
        .reconnect(ReconnectConfig {
            initial_delay: Duration::from_millis(300),
            ..fast_reconnect(None)
        })
        .connected()
        .await;
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
    let policy = ReconnectConfig {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        multiplier: 2.0,
        jitter: 0.5,
        ..ReconnectConfig::default()
    };
    assert_eq!(policy.delay(1, 0.0), Duration::from_millis(100));
    assert_eq!(policy.delay(2, 0.0), Duration::from_millis(200));
    assert_eq!(policy.delay(4, 0.0), Duration::from_millis(800));
    assert_eq!(policy.delay(30, 0.0), Duration::from_secs(2));
    assert_eq!(policy.delay(u32::MAX, 0.0), Duration::from_secs(2));
    assert_eq!(policy.delay(1, 1.0), Duration::from_millis(50));
    assert_eq!(policy.delay(30, 1.0), Duration::from_secs(1));
}
