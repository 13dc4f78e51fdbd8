//! Echo, fragments, ping/pong, close codes, dead peers, shutdown, headers.

// The handshake callbacks must return tungstenite's large error response.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use steward_ws::{Error, Event, Message, ShutdownMode};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::common::*;

async fn echo_suite(url: &str) {
    let session = builder(url).connected().await;
    roundtrip(&session, Message::text("hello")).await;
    roundtrip(&session, Message::text("héllo ✓ 音")).await;
    roundtrip(&session, Message::binary(vec![0u8, 1, 2, 255])).await;
    roundtrip(&session, Message::binary(Vec::new())).await;
    roundtrip(&session, Message::binary(payload(3 << 20, 7))).await;
    let big_text = "a".repeat(1 << 20);
    roundtrip(&session, Message::text(big_text.clone())).await;
    let stats = session.stats();
    assert_eq!(stats.messages_sent, 6);
    assert_eq!(stats.messages_received, 6);
    let bytes = (5 + "héllo ✓ 音".len() + 4 + (3 << 20) + (1 << 20)) as u64;
    assert_eq!(stats.bytes_sent, bytes);
    assert_eq!(stats.bytes_received, bytes);
    assert!(stats.connected);
    assert!(session.shutdown(ShutdownMode::Drain).await.is_empty());
    assert!(!session.is_connected());
}

#[tokio::test]
async fn echo_text_and_binary_rust_server() {
    let url = rust_server(echo).await;
    echo_suite(&url).await;
}

#[tokio::test]
async fn echo_text_and_binary_python_peer() {
    let peer = PyPeer::start(&["echo"], 0).await;
    echo_suite(&peer.url()).await;
}

#[tokio::test]
async fn fragmented_messages_are_reassembled_python_peer() {
    let peer = PyPeer::start(&["fragment", "7"], 0).await;
    let session = builder(&peer.url()).connected().await;
    roundtrip(
        &session,
        Message::text("fragmented text message, seven parts"),
    )
    .await;
    roundtrip(&session, Message::binary(payload(100_003, 3))).await;
    assert_eq!(session.stats().messages_received, 2);
}

#[tokio::test]
async fn fragments_beyond_the_message_limit_are_refused_python_peer() {
    // 80 KiB in 10 fragments of 8 KiB: each frame fits, the message does not.
    let mut peer = PyPeer::start(&["big", "81920", "10"], 0).await;
    let session = builder(&peer.url())
        .max_message_size(64 * 1024)
        .no_reconnect()
        .connected()
        .await;
    let events = session.events();
    assert!(matches!(next_event(&events).await, Event::Connected { .. }));
    match next_event(&events).await {
        Event::Disconnected {
            reason: Error::MessageTooLarge {
                direction, limit, ..
            },
            ..
        } => {
            assert_eq!(direction, steward_ws::Direction::Incoming);
            assert_eq!(limit, 64 * 1024);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(peer.line().await, "CLOSED 1009");
    assert_eq!(session.stats().oversize_incoming, 1);
}

#[tokio::test]
async fn heartbeat_measures_rtt_rust_server() {
    let url = rust_server(echo).await;
    let session = builder(&url)
        .heartbeat(Duration::from_millis(100), Duration::from_millis(100))
        .connected()
        .await;
    within("two pongs", async {
        while session.stats().pongs_received < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let stats = session.stats();
    assert!(stats.pings_sent >= 2);
    assert!(stats.last_rtt().is_some());
    assert_eq!(stats.dead_peers, 0);
    // Pings are not data: nothing reached the application.
    assert_eq!(session.try_recv(), None);
}

#[tokio::test]
async fn server_pings_are_answered_python_peer() {
    let mut peer = PyPeer::start(&["ping"], 0).await;
    let session = builder(&peer.url()).connected().await;
    assert_eq!(peer.line().await, "PONG");
    roundtrip(&session, Message::text("still fine")).await;
}

#[tokio::test]
async fn peer_close_code_and_reason_are_reported_python_peer() {
    let peer = PyPeer::start(&["close", "4001", "bye now"], 0).await;
    let session = builder(&peer.url()).no_reconnect().connected().await;
    let events = session.events();
    assert!(matches!(next_event(&events).await, Event::Connected { .. }));
    match next_event(&events).await {
        Event::Disconnected {
            reason: Error::ClosedByPeer { code, reason, .. },
            undelivered,
        } => {
            assert_eq!((code, reason.as_str()), (4001, "bye now"));
            assert!(undelivered.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        next_event(&events).await,
        Event::GaveUp {
            attempts: 0,
            last_error: None,
            ..
        }
    ));
    assert!(matches!(next_event(&events).await, Event::Closed));
    assert_eq!(
        within("end of events", events.recv()).await.map(|_| ()),
        None
    );
    let err = session.send("late").await.unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "{err:?}");
    assert_eq!(err.into_message(), Some(Message::text("late")));
}

#[tokio::test]
async fn peer_close_code_is_reported_rust_server() {
    let url = rust_server(|mut ws: ServerWs| async move {
        let frame = tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Away,
            reason: "restarting".into(),
        };
        let _ = ws.close(Some(frame)).await;
        while ws.next().await.is_some() {}
    })
    .await;
    let session = builder(&url).no_reconnect().connected().await;
    let events = session.events();
    next_event(&events).await;
    let Event::Disconnected { reason, .. } = next_event(&events).await else {
        panic!("expected Disconnected")
    };
    assert!(
        matches!(&reason, Error::ClosedByPeer { code: 1001, reason, .. } if reason == "restarting"),
        "{reason:?}"
    );
    assert!(reason.to_string().contains("1001"), "{reason}");
}

#[tokio::test]
async fn our_close_uses_code_1000_python_peer() {
    let mut peer = PyPeer::start(&["echo"], 0).await;
    let session = builder(&peer.url()).connected().await;
    roundtrip(&session, Message::text("one")).await;
    assert!(session.shutdown(ShutdownMode::Drain).await.is_empty());
    assert_eq!(peer.line().await, "CLOSED 1000");
    // The session is over: sends are refused, recv ends, shutdown is idempotent.
    assert!(matches!(
        session.try_send("after"),
        Err(Error::Closed { .. })
    ));
    assert_eq!(within("recv end", session.recv()).await, None);
    assert!(session.shutdown(ShutdownMode::Abandon).await.is_empty());
}

#[tokio::test]
async fn dropping_every_handle_writes_the_queue_and_closes_python_peer() {
    let mut peer = PyPeer::start(&["echo"], 0).await;
    let session = builder(&peer.url()).connected().await;
    let events = session.events();
    for i in 0..20 {
        session.try_send(format!("m{i}")).unwrap();
    }
    drop(session);
    assert_eq!(peer.line().await, "CLOSED 1000");
    // The task stopped: the event stream ends after Closed.
    let mut last = None;
    while let Some(e) = within("events end", events.recv()).await {
        last = Some(e);
    }
    assert!(matches!(last, Some(Event::Closed)), "{last:?}");
}

/// A silent peer is declared dead while we only send; the number of pings
/// sent before it (a logical clock) shows it was found within 2 intervals.
async fn dead_peer_suite(url: &str) {
    let interval = Duration::from_millis(300);
    let session = builder(url)
        .heartbeat(interval, interval)
        .no_reconnect()
        .connected()
        .await;
    let events = session.events();
    assert!(matches!(next_event(&events).await, Event::Connected { .. }));
    let sender = session.clone();
    let sending = tokio::spawn(async move {
        // Only sending, small messages that the kernel buffers accept.
        while sender.send(Message::binary(vec![1u8; 256])).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    match next_event(&events).await {
        Event::Disconnected {
            reason: Error::DeadPeer { timeout, .. },
            ..
        } => assert_eq!(timeout, interval),
        other => panic!("unexpected {other:?}"),
    }
    let stats = session.stats();
    assert_eq!(stats.dead_peers, 1);
    // Declared dead at the deadline of the first ping; the second ping may
    // have been due at that same instant.
    assert!(
        (1..=2).contains(&stats.pings_sent),
        "found within 2 intervals: {stats:?}"
    );
    assert_eq!(stats.pongs_received, 0);
    within("sender stops", sending).await.unwrap();
}

#[tokio::test]
async fn silent_server_is_declared_dead_rust_server() {
    let url = rust_server(|ws: ServerWs| async move {
        // Hold the socket, never read it: no pong, no data.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(ws);
    })
    .await;
    dead_peer_suite(&url).await;
}

#[tokio::test]
async fn silent_server_is_declared_dead_python_peer() {
    let peer = PyPeer::start(&["silent"], 0).await;
    dead_peer_suite(&peer.url()).await;
}

#[tokio::test]
async fn a_busy_peer_is_not_declared_dead() {
    // The server answers slowly but keeps sending data: data counts as life.
    let url = rust_server(|mut ws: ServerWs| async move {
        for i in 0..30u32 {
            if ws
                .send(tungstenite::Message::binary(i.to_be_bytes().to_vec()))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while ws.next().await.is_some() {}
    })
    .await;
    let session = builder(&url)
        .heartbeat(Duration::from_millis(200), Duration::from_millis(200))
        .connected()
        .await;
    for i in 0..30u32 {
        let m = within("data", session.recv()).await.unwrap();
        assert_eq!(m, Message::binary(i.to_be_bytes().to_vec()));
    }
    assert_eq!(session.stats().dead_peers, 0);
}

#[tokio::test]
async fn shutdown_drain_writes_everything_rust_server() {
    let count = Arc::new(AtomicUsize::new(0));
    let (code_tx, mut code_rx) = mpsc::unbounded_channel();
    let seen = count.clone();
    let url = rust_server(move |mut ws: ServerWs| {
        let seen = seen.clone();
        let code_tx = code_tx.clone();
        async move {
            while let Some(Ok(m)) = ws.next().await {
                match m {
                    tungstenite::Message::Close(frame) => {
                        let _ = code_tx.send(frame.map(|f| u16::from(f.code)));
                    }
                    m if m.is_binary() => {
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
        }
    })
    .await;
    let session = builder(&url).connected().await;
    for _ in 0..50 {
        session
            .send(Message::binary(payload(10_000, 2)))
            .await
            .unwrap();
    }
    assert!(session.shutdown(ShutdownMode::Drain).await.is_empty());
    assert_eq!(within("close code", code_rx.recv()).await, Some(Some(1000)));
    assert_eq!(count.load(Ordering::SeqCst), 50);
    assert_eq!(session.stats().messages_sent, 50);
}

#[tokio::test]
async fn shutdown_abandon_hands_back_the_queue_rust_server() {
    // The server never reads, so the queue cannot drain.
    let url = rust_server(|ws: ServerWs| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(ws);
    })
    .await;
    let session = builder(&url)
        .close_timeout(Duration::from_millis(300))
        .outbound_queue(1000, 256 << 20)
        .connected()
        .await;
    let total = 64;
    for i in 0..total {
        let mut m = payload(1 << 20, i as u8);
        m[0] = i as u8;
        session.send(Message::binary(m)).await.unwrap();
    }
    let back = session.shutdown(ShutdownMode::Abandon).await;
    assert!(
        !back.is_empty(),
        "megabytes cannot all fit in socket buffers"
    );
    let sent = session.stats().messages_sent as usize;
    assert_eq!(
        sent + back.len(),
        total,
        "each message is sent or handed back"
    );
    // Handed back in order, the unsent tail.
    for (k, m) in back.iter().enumerate() {
        assert_eq!(m.as_bytes()[0] as usize, sent + k);
    }
}

#[tokio::test]
async fn headers_are_sent_and_never_shown() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let callback = |req: &Request, resp: Response| {
            let auth = req.headers().get("authorization").cloned();
            let _ = tx.send(auth.and_then(|v| v.to_str().ok().map(str::to_owned)));
            Ok(resp)
        };
        let ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
            .await
            .unwrap();
        echo(ws).await;
    });
    let url = format!("ws://user:pw@{addr}/v1?api_key=sk-query-secret");
    let client = builder(&url)
        .bearer_auth("sk-header-secret")
        .header("OpenAI-Beta", "realtime=v1")
        .build()
        .unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains("sk-header-secret"), "{shown}");
    assert!(!shown.contains("sk-query-secret"), "{shown}");
    assert!(shown.contains("Authorization: <redacted>"), "{shown}");
    let session = client.connect().await.unwrap();
    assert_eq!(
        within("header", rx.recv()).await.unwrap().as_deref(),
        Some("Bearer sk-header-secret")
    );
    assert!(!session.url().contains("secret"), "{}", session.url());
    assert!(!format!("{session:?}").contains("secret"));
}

#[tokio::test]
async fn http_refusal_is_reported_without_secrets() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let callback = |_req: &Request, _resp: Response| {
            let mut refusal = tungstenite::handshake::server::ErrorResponse::new(None);
            *refusal.status_mut() = tungstenite::http::StatusCode::UNAUTHORIZED;
            Err(refusal)
        };
        let _ = tokio_tungstenite::accept_hdr_async(tcp, callback).await;
    });
    let err = builder(&format!("ws://{addr}/?key=sk-query-secret"))
        .bearer_auth("sk-header-secret")
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http { status: 401, .. }), "{err:?}");
    assert!(err.is_permanent());
    let text = format!("{err} {err:?}");
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("401"), "{text}");
}

#[tokio::test]
async fn bad_configuration_is_named() {
    let err = builder("http://127.0.0.1:1/").build().unwrap_err();
    assert!(err.to_string().contains("ws://"), "{err}");
    let err = builder("ws://127.0.0.1:1/")
        .heartbeat(Duration::from_secs(1), Duration::from_secs(5))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("pong_timeout"), "{err}");
    let err = builder("ws://127.0.0.1:1/")
        .header("Bad Header", "x")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("Bad Header"), "{err}");
    let err = builder("ws://127.0.0.1:1/")
        .header("Authorization", "Bearer sk-x\nsecret")
        .build()
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("secret"), "{err:?}");
}

#[tokio::test]
async fn connect_timeout_is_reported() {
    // A listener that never completes the WebSocket handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (_tcp, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let err = builder(&format!("ws://{addr}/"))
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ConnectTimeout { .. }), "{err:?}");
    hold.abort();
}

#[test]
fn config_is_plain_serde_data_with_explicit_units() {
    let mut config = steward_ws::ClientConfig::default();
    config.url = "wss://example.test/v1".into();
    config.headers = vec![("Authorization".into(), "Bearer sk-1".into())];
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["ping_interval_ms"], 15_000);
    assert_eq!(json["pong_timeout_ms"], 10_000);
    assert_eq!(json["max_message_size"], 16 << 20);
    assert_eq!(json["reconnect"]["max_attempts"], 10);
    // Credentials never leave in serialized form: the header comes back
    // redacted, everything else as it was.
    assert!(!json.to_string().contains("sk-1"), "{json}");
    let mut back: steward_ws::ClientConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back.headers[0].0, "Authorization");
    assert_ne!(back.headers[0].1, "Bearer sk-1");
    back.headers.clone_from(&config.headers);
    assert_eq!(back, config);
    // A file may name only the URL; unknown keys are refused by name.
    let minimal: steward_ws::ClientConfig =
        serde_json::from_str(r#"{"url":"ws://127.0.0.1:1/"}"#).unwrap();
    assert_eq!(minimal.max_frame_size, 16 << 20);
    let err =
        serde_json::from_str::<steward_ws::ClientConfig>(r#"{"ping_intervl_ms":1}"#).unwrap_err();
    assert!(err.to_string().contains("ping_intervl_ms"), "{err}");
    assert!(!format!("{config:?}").contains("sk-1"));
}
