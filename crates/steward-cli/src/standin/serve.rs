//! One connection's I/O: the WebSocket handshake, then a loop that reads
//! client events, sends what the conversation has due (streamed responses
//! on their schedule), and applies the session limit and the faults.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::Shared;
use super::conversation::Conversation;

/// How long a connection may take for its WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a frozen connection is held before it is dropped.
const FROZEN_HOLD: Duration = Duration::from_secs(120);
/// A deadline that never comes (for disabled timers).
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Decrements the active count however a connection ends.
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0
            .counters
            .active_sessions
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(super) async fn serve(
    tcp: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    mut kill: watch::Receiver<u64>,
) {
    let config = &shared.config;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes));
    let handshake = tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config));
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            shared.count(|c| &c.refused_connections);
            tracing::debug!(error = %e, "stand-in: handshake failed");
            return;
        }
        Err(_) => {
            shared.count(|c| &c.refused_connections);
            return;
        }
    };
    let session = shared
        .counters
        .sessions
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    shared.count(|c| &c.active_sessions);
    let _active = Active(Arc::clone(&shared));
    kill.mark_unchanged();
    let span = tracing::info_span!("standin_session", session);
    let _enter = span.enter();
    tracing::debug!("stand-in session opened");

    let started = Instant::now();
    let after = |ms: u64| (ms > 0).then(|| started + Duration::from_millis(ms));
    let expiry = after(config.session_limit_ms);
    let freeze_at = after(config.freeze_after_ms);
    let never = started + NEVER;

    let (mut sink, mut stream) = ws.split();
    let mut conn = Conversation::new(session, Arc::clone(&shared));
    conn.greeting();
    loop {
        let out = conn.poll(Instant::now());
        if !out.is_empty() && send_all(&mut sink, out).await.is_err() {
            break;
        }
        if conn.drop_now {
            shared.count(|c| &c.dropped_connections);
            tracing::info!("stand-in drops the connection (drop_every)");
            break;
        }
        let next = conn.next_due();
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    let frame = CloseFrame { code: CloseCode::Away, reason: "stand-in closing".into() };
                    let _ = sink.send(WsMessage::Close(Some(frame))).await;
                    break;
                }
            }
            _ = kill.changed() => {
                // Abrupt: no close frame, the socket just goes away.
                shared.count(|c| &c.dropped_connections);
                break;
            }
            () = sleep_until(expiry.unwrap_or(never)), if expiry.is_some() => {
                let out = conn.expire();
                if send_all(&mut sink, out).await.is_ok() {
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "session expired".into() };
                    let _ = sink.send(WsMessage::Close(Some(frame))).await;
                }
                tracing::info!("stand-in session expired (session_limit_ms)");
                break;
            }
            () = sleep_until(freeze_at.unwrap_or(never)), if freeze_at.is_some() => {
                shared.count(|c| &c.frozen_connections);
                tracing::info!("stand-in connection frozen (freeze_after_ms)");
                let hold = tokio::time::sleep(FROZEN_HOLD);
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = kill.changed() => shared.count(|c| &c.dropped_connections),
                    () = hold => shared.count(|c| &c.dropped_connections),
                }
                break;
            }
            () = sleep_until(next.unwrap_or(never)), if next.is_some() => {}
            incoming = stream.next() => {
                let Some(incoming) = incoming else { break };
                match incoming {
                    Ok(WsMessage::Text(text)) => conn.handle(text.as_str(), Instant::now()),
                    Ok(WsMessage::Binary(_)) => conn.binary(),
                    Ok(WsMessage::Close(_)) => break,
                    Ok(_) => {} // pings are answered by tungstenite
                    Err(tokio_tungstenite::tungstenite::Error::Capacity(e)) => {
                        shared.count(|c| &c.refused_frames);
                        tracing::warn!(error = %e, "stand-in: oversized message refused");
                        let frame = CloseFrame { code: CloseCode::Size, reason: "message too big".into() };
                        let _ = sink.send(WsMessage::Close(Some(frame))).await;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "stand-in: connection lost");
                        break;
                    }
                }
            }
        }
    }
    conn.end();
    tracing::debug!("stand-in session ended");
}

async fn send_all<S>(sink: &mut S, events: Vec<String>) -> Result<(), ()>
where
    S: futures_util::Sink<WsMessage> + Unpin,
{
    for text in events {
        sink.feed(WsMessage::text(text)).await.map_err(|_| ())?;
    }
    sink.flush().await.map_err(|_| ())
}
