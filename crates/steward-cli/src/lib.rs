//! The library behind the `steward` command: a runnable realtime voice
//! assistant built on the steward facade, and a local **stand-in** for the
//! realtime model service to run it against with no network.
//!
//! - [`standin`]: a small WebSocket server on 127.0.0.1 that speaks enough
//!   of the realtime protocol (GA or beta names) to drive every code path:
//!   session updates, input audio with an energy server VAD or manual
//!   commits, answers streamed in real time (a generated tone, a
//!   transcript, scripted `remember`/`recall`/`forget` tool calls), cancels
//!   and barge-ins, truncation checked as the service does, a session
//!   limit, a check of replayed histories, and faults on demand. It is a
//!   stand-in, not the model service.
//! - [`assistant`]: captures audio (the default input device, a WAV file,
//!   generated silence or generated talking), streams it as PCM16 24 kHz
//!   through a steward-realtime conversation (server VAD turns, barge-in,
//!   renewal and replay), plays the answers through steward-audio, runs the tool calls
//!   against a steward-store `memory.json`, and watches itself through the
//!   facade (`Steward::health`, optional `/metrics` endpoint). With a
//!   duration and several sessions it is a soak run that records RSS over
//!   time (`rss.csv`, `rss.png`).
//!
//! A whole session against the stand-in, with generated talking as input
//! (the stand-in's voice detection ends each turn) and no sound card:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use steward_cli::assistant::{Assistant, AssistantConfig, Input};
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = AssistantConfig::default();
//! config.input = Input::Talk;
//! config.playback = false; // no speaker needed for this example
//! config.memory = dir.path().join("memory.json");
//! config.duration = Some(Duration::from_secs(6));
//! config.standin.remember_every = 1; // every audio turn remembers something
//!
//! let assistant = Assistant::start(config).await?;
//! assert!(assistant.standin_url().is_some()); // it started its own stand-in
//! let report = assistant.wait().await?;
//! assert!(report.turns >= 1);
//! assert!(report.tool_calls.remember >= 1);
//! // A barge-in may cancel a turn's answer before its tool call, so which
//! // turn was remembered varies; that one was is certain.
//! let memory = std::fs::read_to_string(dir.path().join("memory.json"))?;
//! assert!(memory.contains("\"turn_"));
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod assistant;
mod error;
pub mod standin;

pub use error::Error;
