//! A **stand-in** for the realtime model service: a small local WebSocket
//! server that speaks enough of the realtime protocol to drive every code
//! path of an assistant, with no network and no model. It is not the model
//! service and does not pretend to understand speech: its answers are a
//! generated tone, a canned transcript and scripted tool calls. It follows
//! the service's public event reference, with the GA event names by default
//! and the beta names with [`StandinConfig::api`] = [`Api::Beta`]; clients
//! may send either.
//!
//! What it speaks (JSON text events tagged by `type`; every server event
//! carries an `event_id`):
//!
//! - on connect: `session.created`, its `session` with `expires_at` (unix
//!   seconds: the connection's start plus [`StandinConfig::session_limit_ms`],
//!   or the service's default of 60 minutes, 30 with beta names) and the
//!   default turn detection, `server_vad`;
//! - `session.update` → `session.updated` with the whole session; turn
//!   detection is read from `session.audio.input.turn_detection` (GA) or
//!   `session.turn_detection` (beta) and echoed with its defaults filled in;
//!   an invalid one is an `error` (`invalid_value`) and changes nothing;
//! - `input_audio_buffer.append` (base64 PCM16 24 kHz mono) is buffered, up
//!   to [`StandinConfig::max_buffer_bytes`] per connection (beyond it the
//!   audio is refused with an `error` event and counted). With turn
//!   detection `server_vad` or `semantic_vad`, an energy VAD (see below)
//!   listens: `input_audio_buffer.speech_started {audio_start_ms, item_id}`,
//!   after the silence `input_audio_buffer.speech_stopped {audio_end_ms,
//!   item_id}`, then the turn is committed as below and, unless
//!   `create_response` is false, answered. Speech that starts while a
//!   response is in progress (a barge-in) cancels it unless
//!   `interrupt_response` is false (then the next answer waits for it);
//! - `input_audio_buffer.commit` (at least 100 ms, else an `error`
//!   `input_audio_buffer_commit_empty`) → a committed turn:
//!   `input_audio_buffer.committed {previous_item_id, item_id}`, the user
//!   item (`conversation.item.added` and `.done`, or beta
//!   `conversation.item.created`, content `[{type: "input_audio",
//!   transcript}]`),
//!   `conversation.item.input_audio_transcription.completed {item_id,
//!   content_index: 0, transcript}` with the transcript `"user turn N (M
//!   ms)"`; with turn detection on it is answered at once, with turn
//!   detection `null` on the next `response.create`, as the service does;
//! - a response streams: `response.created`, `response.output_item.added`
//!   (an assistant message, `in_progress`), `conversation.item.added`,
//!   `response.content_part.added` (`part.type` `output_audio`, beta
//!   `audio`), `response.output_audio.delta` chunks of a sine tone (half as
//!   long as the committed audio, or [`StandinConfig::reply_audio_ms`])
//!   paced at [`StandinConfig::reply_speed`] × real time,
//!   `response.output_audio.done`, `response.output_audio_transcript.delta`
//!   / `.done`, `response.content_part.done`, `response.output_item.done`,
//!   `conversation.item.done`, a function call when the turn asks for one
//!   (`response.output_item.added`, `conversation.item.added`,
//!   `response.function_call_arguments.delta` / `.done`,
//!   `response.output_item.done`, `conversation.item.done`), then
//!   `response.done {response: {id, status, status_details, output}}`;
//! - `response.create` while a response is in progress → `error`
//!   `conversation_already_has_active_response`;
//! - `response.cancel` → the response in progress stops (no more deltas,
//!   no function call), its transcript is the part spoken so far, and
//!   `response.done` has `status: "cancelled"`, `status_details: {type:
//!   "cancelled", reason: "client_cancelled"}` (`"turn_detected"` for a
//!   barge-in); with none in progress an `error` `response_cancel_not_active`;
//! - `conversation.item.create` of a message, `function_call` or
//!   `function_call_output` → `conversation.item.added` + `.done` (beta
//!   `conversation.item.created`); a user text `remember KEY: VALUE`,
//!   `recall KEY` or `forget KEY` makes the next response call that tool;
//!   a `function_call_output` then `response.create` → a short spoken answer;
//! - `conversation.item.truncate {item_id, content_index, audio_end_ms}` →
//!   `conversation.item.truncated` with the same fields, and the item keeps
//!   only the heard part of its transcript; or an `error` of type
//!   `invalid_request_error`: `item_truncate_invalid_item_id` (unknown
//!   item), `unsupported_content_type` ("Only model output audio messages
//!   can be truncated": not an assistant message with audio),
//!   `invalid_value` (a content index other than 0, or "Audio content of
//!   Xms is already shorter than Yms" when `audio_end_ms` exceeds the
//!   item's audio);
//! - `input_audio_buffer.clear` → `input_audio_buffer.cleared`;
//! - at [`StandinConfig::session_limit_ms`]: an `error` `session_expired`
//!   ("Your session hit the maximum duration of N minutes.") and a normal
//!   close frame (1000).
//!
//! The energy VAD: a 20 ms frame is speech when its RMS is at least
//! `threshold × 0.1` of full scale (default threshold 0.5: RMS ≥ 0.05,
//! about −26 dBFS); `audio_start_ms` includes `prefix_padding_ms` (default
//! 300), speech stops after `silence_duration_ms` (default 500) of
//! non-speech frames, and `audio_end_ms` includes that silence. Both count
//! from the start of the connection's input audio. `semantic_vad` waits
//! 250, 500 or 1000 ms for eagerness `high`, `medium`/`auto`, `low`. While
//! no speech is heard only the last 60 s of input stay buffered; a turn the
//! VAD commits holds the audio from `audio_start_ms` to `audio_end_ms`.
//!
//! Pure-audio turns follow a script so that silence still exercises every
//! tool: with `remember_every = N`, audio turn `n` (from 1) calls
//! `remember {"key": "turn_n"}` when `n % N == 0`, `recall` of that key on
//! the next turn, and `forget` of the previous round's key when
//! `n % N == 2` (N ≥ 3), so at most two `turn_*` keys live at once.
//!
//! **Replay check.** The stand-in keeps the latest conversation so far
//! (updated live by every connection). A new connection that starts with
//! `conversation.item.create` items replays it; when the replay ends (the
//! first other event), the items must equal the last K items of that
//! conversation, and the result is counted in [`StandinStats::replays`],
//! [`StandinStats::replays_matched`] and [`StandinStats::replay_mismatches`]
//! (the first difference is logged at warn). The new conversation then
//! continues from the replayed items. The rules (what a user, assistant or
//! truncated item must look like) are in the `history` module's docs.
//!
//! Limits: messages and frames above [`StandinConfig::max_frame_bytes`]
//! close the connection with code 1009 (counted as refused), at most
//! [`StandinConfig::max_connections`] at once.
//!
//! Faults, for reconnect tests and soak runs: it can drop its connections
//! without a close frame, as a crashed service would, on demand
//! ([`Standin::drop_connections`]) or after every
//! [`StandinConfig::drop_every`] audio turns; corrupt every
//! [`StandinConfig::bad_delta_every`]th audio delta; and freeze each
//! connection after [`StandinConfig::freeze_after_ms`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steward_cli::Error> {
//! use steward_cli::standin::{Standin, StandinConfig};
//!
//! let standin = Standin::start(StandinConfig::default()).await?;
//! assert!(standin.url().starts_with("ws://127.0.0.1:"));
//! assert_eq!(standin.stats().sessions, 0);
//! standin.close().await;
//! # Ok(())
//! # }
//! ```

mod conversation;
mod history;
mod response;
mod serve;
mod session;
mod tools;
mod vad;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Error;

/// PCM16 mono at 24 kHz: bytes per millisecond.
const BYTES_PER_MS: u64 = 48;
/// How long `close` waits for connections to say goodbye before aborting them.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Which event names the stand-in speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Api {
    /// The GA names (`response.output_audio.delta`, `conversation.item.added`,
    /// `session.audio.input.turn_detection`, ...). The default.
    #[default]
    Ga,
    /// The beta names (`response.audio.delta`, `conversation.item.created`,
    /// `session.turn_detection`, ...).
    Beta,
}

impl std::str::FromStr for Api {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ga" => Ok(Api::Ga),
            "beta" => Ok(Api::Beta),
            _ => Err(format!("{s:?} is not an API version: ga or beta")),
        }
    }
}

/// The stand-in's settings: plain serde data.
///
/// ```
/// let c: steward_cli::standin::StandinConfig =
///     serde_json::from_str(r#"{"reply_audio_ms": 200, "api": "beta"}"#).unwrap();
/// assert_eq!(c.reply_audio_ms, 200);
/// assert_eq!(c.remember_every, 3);
/// assert_eq!(c.api, steward_cli::standin::Api::Beta);
/// assert_eq!(c.reply_speed, 4.0);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StandinConfig {
    /// Where to listen. Default `127.0.0.1:0` (any free port).
    pub addr: SocketAddr,
    /// Length of each spoken answer in ms; `0` (the default) answers an
    /// audio turn with half as much audio as it committed (100 ms to 10 s)
    /// and other responses with 300 ms.
    pub reply_audio_ms: u32,
    /// How fast answers stream, as a multiple of real time: at 4.0 (the
    /// default) a 2 s answer takes 0.5 s to send. `0` sends each response
    /// whole at once.
    pub reply_speed: f64,
    /// Every this many pure-audio turns the model asks to remember
    /// `turn_<n>` (and then recalls and forgets it, see the module docs).
    /// `0` turns the script off. Default 3.
    pub remember_every: u32,
    /// Audio per `response.output_audio.delta`, in ms. Default 100.
    pub delta_ms: u32,
    /// Pitch of the generated tone, in Hz. Default 440.
    pub tone_hz: u32,
    /// Event names: [`Api::Ga`] (the default) or [`Api::Beta`].
    pub api: Api,
    /// End each session this long after it started, as the service does at
    /// its maximum session length: an `error` event `session_expired`, then
    /// a normal close. `0` (the default) never ends a session, though
    /// `session.created` still announces the service's default expiry.
    pub session_limit_ms: u64,
    /// Largest message or frame accepted, in bytes; bigger ones close the
    /// connection with 1009. Default 1 MiB.
    pub max_frame_bytes: usize,
    /// Input audio buffered per connection until a commit, in bytes.
    /// Default 16 MiB (about 5.8 minutes).
    pub max_buffer_bytes: usize,
    /// Connections served at once; more are refused. Default 64.
    pub max_connections: usize,
    /// Drop the connection abruptly (no close frame, as a crashed service
    /// would) right after answering every this many audio turns, counted
    /// over all connections (a renewal does not restart the count), so
    /// that soak runs exercise reconnects. `0` (the default) never drops.
    pub drop_every: u32,
    /// Corrupt every this many audio deltas of a connection, alternately
    /// with an odd number of bytes and with invalid base64. `0` (the
    /// default) never does.
    pub bad_delta_every: u32,
    /// Freeze each connection this long after it opened: nothing more is
    /// read or sent (pings go unanswered) while the socket stays open, as a
    /// hung service would, until the stand-in closes or drops its
    /// connections (or two minutes pass, then it drops it). `0` (the
    /// default) never freezes.
    pub freeze_after_ms: u64,
}

impl Default for StandinConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            reply_audio_ms: 0,
            reply_speed: 4.0,
            remember_every: 3,
            delta_ms: 100,
            tone_hz: 440,
            api: Api::Ga,
            session_limit_ms: 0,
            max_frame_bytes: 1 << 20,
            max_buffer_bytes: 16 << 20,
            max_connections: 64,
            drop_every: 0,
            bad_delta_every: 0,
            freeze_after_ms: 0,
        }
    }
}

impl StandinConfig {
    fn validate(&self) -> Result<(), Error> {
        let check = |ok: bool, field: &'static str, message: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::Config {
                    field,
                    message: message.to_string(),
                })
            }
        };
        check(
            (1..=10_000).contains(&self.delta_ms),
            "delta_ms",
            "must be between 1 and 10000",
        )?;
        check(
            self.reply_audio_ms <= 60_000,
            "reply_audio_ms",
            "must be at most 60000",
        )?;
        check(
            self.reply_speed == 0.0 || (0.01..=1000.0).contains(&self.reply_speed),
            "reply_speed",
            "must be 0 (all at once) or between 0.01 and 1000",
        )?;
        check(
            self.tone_hz > 0 && self.tone_hz < 12_000,
            "tone_hz",
            "must be between 1 and 11999",
        )?;
        check(
            self.max_frame_bytes >= 1024,
            "max_frame_bytes",
            "must be at least 1024",
        )?;
        check(
            self.max_connections > 0,
            "max_connections",
            "must be at least 1",
        )
    }
}

/// Declares the stats (plain serde data) and their atomic counters at once.
macro_rules! stats {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// The stand-in's counters: plain serde data.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        #[non_exhaustive]
        pub struct StandinStats {
            $( $(#[$doc])* pub $name: u64, )*
        }

        #[derive(Default)]
        struct Counters {
            $( $name: AtomicU64, )*
        }

        impl Counters {
            fn snapshot(&self) -> StandinStats {
                StandinStats {
                    $( $name: self.$name.load(Relaxed), )*
                }
            }
        }
    };
}

stats! {
    /// WebSocket sessions accepted so far.
    sessions,
    /// Sessions open now.
    active_sessions,
    /// Connections refused (too many at once, or a failed handshake).
    refused_connections,
    /// Committed turns (audio commits, by the client or the VAD).
    turns,
    /// Responses ended (`response.done`, completed or cancelled).
    responses,
    /// Text requests received (`remember …`, `recall …`, `forget …`).
    text_requests,
    /// Input audio received, in bytes of PCM16.
    audio_bytes_in,
    /// Input audio refused because the connection's buffer was full.
    audio_bytes_refused,
    /// Output audio sent, in bytes of PCM16.
    audio_bytes_out,
    /// Audio delta events sent.
    audio_deltas,
    /// Audio deltas corrupted on purpose (`bad_delta_every`).
    bad_deltas,
    /// Function calls asked for.
    function_calls,
    /// Function call outputs received.
    function_outputs,
    /// Messages or frames over the limit (the connection was closed with 1009).
    refused_frames,
    /// `error` events sent (bad JSON, unknown events, empty commits, …).
    errors_sent,
    /// Connections dropped on purpose (`drop_every`, `drop_connections`,
    /// the end of a freeze).
    dropped_connections,
    /// `input_audio_buffer.speech_started` events sent (server VAD).
    speech_started,
    /// Speech that started while a response was in progress.
    barge_ins,
    /// Responses cancelled (by `response.cancel` or a barge-in).
    cancels,
    /// `conversation.item.truncate` events accepted.
    truncations_ok,
    /// `conversation.item.truncate` events refused with an `error`.
    truncations_rejected,
    /// Items removed by `conversation.item.delete`.
    items_deleted,
    /// Sessions ended at `session_limit_ms` with `session_expired`.
    sessions_expired,
    /// Connections frozen (`freeze_after_ms`).
    frozen_connections,
    /// New connections that replayed a history (see the module docs).
    replays,
    /// Replays equal to the conversation so far.
    replays_matched,
    /// Items replayed, over all replays.
    replayed_items,
    /// Replays that differed from the conversation so far.
    replay_mismatches,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// What a stand-in's connections share.
struct Shared {
    config: StandinConfig,
    counters: Counters,
    /// The latest conversation so far, for the replay check.
    latest: Mutex<history::Latest>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn count(&self, counter: impl Fn(&Counters) -> &AtomicU64) {
        counter(&self.counters).fetch_add(1, Relaxed);
    }

    fn add(&self, counter: impl Fn(&Counters) -> &AtomicU64, n: u64) {
        counter(&self.counters).fetch_add(n, Relaxed);
    }
}

/// A running stand-in server. Dropping it stops accepting and closes its
/// connections in the background; [`close`](Standin::close) does the same
/// and waits.
#[derive(Debug)]
pub struct Standin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    kill: watch::Sender<u64>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Standin {
    /// Binds `config.addr` and starts serving on the current tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad setting, [`Error::Bind`] when the address
    /// cannot be bound.
    pub async fn start(config: StandinConfig) -> Result<Standin, Error> {
        config.validate()?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
        let shared = Arc::new(Shared {
            config,
            counters: Counters::default(),
            latest: Mutex::new(history::Latest::default()),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (kill, kill_rx) = watch::channel(0_u64);
        tracing::info!(%addr, api = ?shared.config.api, "stand-in realtime server listening (a local stand-in, not the model service)");
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            shutdown_rx,
            kill_rx,
        ));
        Ok(Standin {
            addr,
            shared,
            shutdown,
            kill,
            task: Mutex::new(Some(task)),
        })
    }

    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to connect to: `ws://127.0.0.1:PORT/v1/realtime`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> StandinStats {
        self.shared.counters.snapshot()
    }

    /// Drops every open connection at once, without a close handshake (as a
    /// crashed or restarted service would), and keeps accepting new ones.
    /// For reconnect tests and soak runs.
    pub fn drop_connections(&self) {
        self.kill.send_modify(|generation| *generation += 1);
        tracing::info!(addr = %self.addr, "stand-in dropped its connections");
    }

    /// Stops accepting, closes every connection with code 1001 (going
    /// away), and waits for them (a few seconds at most). Cancel safe: the
    /// stop is requested on the first poll.
    pub async fn close(self) {
        let _ = self.shutdown.send(true);
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        tracing::info!(addr = %self.addr, stats = ?self.shared.counters.snapshot(), "stand-in closed");
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    kill: watch::Receiver<u64>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                if connections.len() >= shared.config.max_connections {
                    shared.count(|c| &c.refused_connections);
                    tracing::warn!(%peer, "stand-in: too many connections, refused");
                    continue;
                }
                let _ = tcp.set_nodelay(true);
                connections.spawn(serve::serve(
                    tcp,
                    Arc::clone(&shared),
                    shutdown.clone(),
                    kill.clone(),
                ));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Connections see the shutdown themselves; give them a moment to say
    // goodbye, then abort the rest.
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(CLOSE_GRACE, all_done).await.is_err() {
        connections.shutdown().await;
    }
}
