//! One realtime voice conversation that stays healthy for days: turn
//! detection, barge-in with truncation at the **played** position, session
//! renewal with history replay, reconnects that lose no user audio, and
//! typed server errors, over [steward-ws] links.
//!
//! - **Turn detection**: the service's `server_vad` (default) or
//!   `semantic_vad`, settings passed through; or manual commits
//!   ([`RealtimeSession::commit`]).
//! - **Barge-in**: on `input_audio_buffer.speech_started` (or
//!   [`RealtimeSession::barge_in`] from the caller's own detector) while an
//!   answer plays or is being made, the [`Playout`] is cleared at once, the
//!   response cancelled if in progress, and `conversation.item.truncate`
//!   sent with `audio_end_ms` = the audio of that item **actually played**
//!   (the playout's consumed-frame count, clamped to the audio received). An
//!   answer of which nothing was played is deleted instead. The history
//!   keeps only what was heard. The latency from the onset's arrival to the
//!   first silent sample the playout wrote is measured
//!   ([`RealtimeStats::barge_in_latency`]).
//! - **Renewal**: before `min(expires_at, connected_at + max_session) −
//!   margin`, at a turn boundary, a new session is opened, configured, the
//!   history replayed (`conversation.item.create`), and the audio moved to
//!   it; user audio captured meanwhile is held and sent there.
//! - **Dead links** are found by the heartbeat within
//!   [`RealtimeConfig::dead_link`] (3 s); steward-ws reconnects and the
//!   history is replayed; appends that never reached the socket are sent
//!   again on the new link.
//! - **Bad input** from the service (bad audio deltas, unknown item ids,
//!   events out of order, undecodable text) is counted by kind and skipped;
//!   `error` events are typed by code ([`ServerErrorCode`]).
//!
//! The pure state machine is [`Conversation`]; [`RealtimeSession`] drives
//! it. The playback side is the small [`Playout`] trait, which
//! steward-audio's `Playback` implements with the `audio` feature.
//!
//! ```
//! use steward_realtime::{Conversation, RealtimeEvent};
//! use steward_ws::realtime::ServerEvent;
//!
//! let mut conv = Conversation::new(100, 64 * 1024);
//! let events = [
//!     r#"{"type":"response.created","response":{"id":"r1"}}"#,
//!     r#"{"type":"response.output_item.added","response_id":"r1","item":{"id":"a1","type":"message","role":"assistant"}}"#,
//!     // 1 s of audio (24,000 frames of PCM16) arrives...
//!     &format!(r#"{{"type":"response.output_audio.delta","item_id":"a1","delta":"{}"}}"#,
//!         steward_ws::realtime::encode_pcm16(&vec![0; 24_000])),
//! ];
//! for text in events {
//!     let step = conv.on_server(&ServerEvent::parse(text).unwrap());
//!     if let Some((item, pcm)) = step.play {
//!         conv.written(&item, pcm.len() as u64 / 2, 0); // handed to the playout at position 0
//!     }
//! }
//! // ...and the user talks over it after 250 ms of it was played.
//! let barge = conv.barge_in(6_000);
//! assert!(barge.clear && barge.cancelled);
//! assert_eq!(barge.truncated_ms, Some(250));
//! let sent: Vec<String> = barge.send.iter().map(|e| e.to_json().unwrap()).collect();
//! assert!(sent[0].contains("response.cancel"));
//! assert!(sent[1].contains(r#""audio_end_ms":250"#));
//! # let _ = RealtimeEvent::SpeechStarted;
//! ```
//!
//! [steward-ws]: steward_ws

#![cfg_attr(docsrs, feature(doc_cfg))]

mod bounded;
mod config;
mod conversation;
mod error;
mod history;
mod playout;
mod session;
mod stats;

pub use config::{Api, BYTES_PER_MS, RealtimeConfig, SAMPLE_RATE, TurnDetection};
pub use conversation::{BargeIn, Conversation, RealtimeEvent, Step, TruncationCheck};
pub use error::{Error, ServerError, ServerErrorCode};
pub use history::{History, HistoryItem, heard_prefix};
pub use playout::{ClearedAt, Playout, PlayoutError};
pub use session::{RealtimeSession, RealtimeSessionBuilder, RealtimeStatsHandle};
pub use stats::{LatencySummary, RealtimeStats};
