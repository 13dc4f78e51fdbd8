//! Robust WebSocket sessions for realtime model APIs, on tokio-tungstenite.
//!
//! A realtime voice assistant keeps one WebSocket open for up to an hour,
//! streaming audio up and deltas down. This crate keeps such a session alive
//! on a flaky network:
//!
//! - **Heartbeat**: a ping every `ping_interval`; a peer that sends no frame
//!   of any kind within `pong_timeout` after a ping is declared dead, so a
//!   silent peer is found within 2× the interval even while we only send.
//!   RTT is measured from the pongs.
//! - **Reconnect** with exponential backoff, jitter and a cap on attempts.
//!   A link lost before it was up for `healthy_after` is a failure (a
//!   *flap*, counted in [`Stats::flaps`] and logged): a server that accepts
//!   and drops at once sees the backoff grow and the cap apply.
//!   The application sees [`Event`]s; messages queued but never written when
//!   a link died come back in [`Event::Disconnected`] — never dropped silently.
//! - **Limits with explicit defaults** ([`ClientConfig`]): messages up to
//!   16 MiB either way (bigger incoming ones close the link with 1009, bigger
//!   outgoing ones are refused before queueing), bounded outbound queue
//!   (`send` waits, `try_send` says [`Error::Full`]) and bounded inbound
//!   delivery (the socket is not read while the application lags).
//! - **Close handshake** with code 1000 and a timeout; [`Session::shutdown`]
//!   drains or abandons the queue.
//! - **Shedding under memory pressure**: [`Session::shed_queued`] drops
//!   queued audio beyond a floor ([`ShedFloor`]), oldest first, both ways,
//!   counted in [`Stats`]; other messages and control frames stay.
//! - **Stats** as a plain [`Stats`] struct.
//! - A **realtime-API event codec** in [`realtime`], with PCM16 ↔ base64 helpers.
//! - With the `pool` feature, steward-pool managers that pool sessions keyed by URL.
//!
//! Defaults ([`ClientConfig::default`]): ping every 15 s, peer dead after
//! 10 s without an answer, connect timeout 10 s, close timeout 5 s, drain
//! timeout 10 s, messages and frames up to 16 MiB, outbound and inbound
//! queues of 1024 messages / 32 MiB each, 256 events, reconnect up to 10
//! attempts from 250 ms doubling to 30 s with 20 % jitter, a link lost
//! within 5 s counted as a failed attempt.
//!
//! `ws://` and `wss://` (rustls; system roots with the default `native-roots`
//! feature, Mozilla roots with `webpki-roots`, plus any root given to the
//! builder). Headers such as `Authorization` are never logged nor
//! serialized, and URLs are shown as `steward_redact::redact_url` shows them
//! (no user info, no query string) in logs, spans, errors, `Debug` and a
//! serialized [`ClientConfig`].
//!
//! ```
//! use std::time::Duration;
//! use steward_ws::{Client, Event, Message, ShutdownMode};
//!
//! # async fn echo_server() -> String {
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let addr = listener.local_addr().unwrap();
//! #     tokio::spawn(async move {
//! #         use futures_util::{SinkExt, StreamExt};
//! #         let (tcp, _) = listener.accept().await.unwrap();
//! #         let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
//! #         while let Some(Ok(m)) = ws.next().await {
//! #             if m.is_text() || m.is_binary() { ws.send(m).await.unwrap(); }
//! #         }
//! #     });
//! #     format!("ws://{addr}/v1/realtime?model=demo")
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steward_ws::Error> {
//! let url = echo_server().await; // any ws:// or wss:// URL
//! let client = Client::builder(url)
//!     .bearer_auth("sk-secret") // never logged
//!     .heartbeat(Duration::from_secs(15), Duration::from_secs(10))
//!     .build()?;
//! let session = client.connect().await?;
//! let events = session.events();
//! assert!(matches!(events.recv().await, Some(Event::Connected { connection: 1 })));
//!
//! session.send(r#"{"type":"response.create"}"#).await?; // waits if the queue is full
//! assert_eq!(session.recv().await, Some(Message::text(r#"{"type":"response.create"}"#)));
//!
//! let unsent = session.shutdown(ShutdownMode::Drain).await; // close code 1000
//! assert!(unsent.is_empty());
//! assert_eq!(session.stats().messages_sent, 1);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod connect;
mod error;
mod event;
mod events;
pub mod mailbox;
mod message;
#[cfg(feature = "pool")]
pub mod pool;
pub mod realtime;
mod session;
mod shed;
mod tls;

pub use client::{Client, ClientBuilder};
pub use config::{ClientConfig, ReconnectConfig};
pub use error::{BoxError, Direction, Error};
pub use event::Event;
pub use events::Events;
pub use message::{Message, ShutdownMode};
pub use session::{Session, Stats, WeakSession};
pub use shed::{Shed, ShedFloor, Sheddable};
