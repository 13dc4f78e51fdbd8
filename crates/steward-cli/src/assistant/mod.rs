//! The assistant: a realtime voice session built on the steward facade.
//!
//! [`Assistant::start`] builds a [`Steward`] (memory monitor, store,
//! tracker, session pool, playback stream, optional HTTP endpoint), opens a
//! WebSocket session from a steward-pool pool of steward-ws sessions, and
//! runs the session until [`AssistantConfig::duration`] passes or
//! [`Assistant::stop`] is called:
//!
//! - audio from the [`Input`] goes up as `input_audio_buffer.append`
//!   (PCM16 24 kHz mono, base64) and a turn is committed every
//!   [`AssistantConfig::turn_ms`] (and when a WAV input ends);
//! - audio deltas from the model are played through steward-audio;
//! - the model's tool calls (`remember`, `recall`, `forget`) run against the
//!   steward-store memory file and are answered with
//!   `function_call_output` + `response.create`;
//! - steward-ws reconnects a lost link; audio that could not be delivered
//!   is counted, so `audio_bytes_captured = sent + dropped + pending`
//!   always holds in the [`Report`];
//! - with [`AssistantConfig::sessions`] > 1 the duration is split into that
//!   many sessions (each a fresh connection, a fresh server-side
//!   conversation);
//! - every [`AssistantConfig::poll_ms`] it samples RSS, updates the
//!   [`Status`] (and prints it when [`AssistantConfig::status_line`] is
//!   set) and, with [`AssistantConfig::soak_dir`], appends to `rss.csv`;
//!   `rss.png` is drawn at the end.
//!
//! Without [`AssistantConfig::url`] it starts a [`Standin`] in-process (a
//! local stand-in for the model service) and talks to it.
//!
//! Tasks: one session task (spawned by `start`, joined by
//! [`Assistant::wait`]) and one playback writer task; audio devices run on
//! steward-audio's own threads. All of them are gone when `wait` returns.

mod input;
mod procfs;
mod soak;
mod tools;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steward::Steward;
use steward::audio::{AudioConfig, Playback};
use steward::monitor::{Level, MonitorConfig};
use steward::pool::{Pool, Pooled};
use steward::store::Store;
use steward::tracker::Tracker;
use steward::ws::pool::ClientManager;
use steward::ws::realtime::{
    self, ClientEvent, InputAudioBufferAppend, ServerEvent, SessionConfig, SessionUpdate,
};
use steward::ws::{Client, Event, Events, Message, ReconnectConfig, ShutdownMode};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

pub use input::Input;
pub use tools::ToolCounts;

use crate::Error;
use crate::error::redact_url;
use crate::standin::{Standin, StandinConfig, StandinStats};
use input::{Chunk, Source};

/// PCM16 mono at 24 kHz: bytes per millisecond.
const BYTES_PER_MS: u64 = 48;
/// The realtime API refuses commits of less than 100 ms of audio.
const MIN_COMMIT_BYTES: u64 = 100 * BYTES_PER_MS;
/// Errors kept word for word in the report (the rest are only counted).
const MAX_ERRORS_KEPT: usize = 50;
/// Audio deltas waiting for the playback writer.
const PLAYBACK_CHANNEL: usize = 64;
/// After a WAV input ends with no duration set: how long to wait for the
/// last answers.
const FINISH_GRACE: Duration = Duration::from_secs(10);

/// The assistant's settings: plain serde data (the API key is never
/// serialised). Durations are milliseconds when serialised.
///
/// ```
/// let c: steward_cli::assistant::AssistantConfig =
///     serde_json::from_str(r#"{"input": {"wav": "hello.wav"}, "duration_ms": 30000, "sessions": 3}"#)
///         .unwrap();
/// assert_eq!(c.duration, Some(std::time::Duration::from_secs(30)));
/// assert_eq!(c.memory, std::path::PathBuf::from("memory.json"));
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AssistantConfig {
    /// The realtime service's WebSocket URL. `None` (the default) starts a
    /// local [`Standin`] and talks to it.
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer …` (never logged, never serialised).
    #[serde(skip)]
    pub api_key: Option<String>,
    /// What to listen to. Default: the default input device.
    pub input: Input,
    /// The input device by name (default: the system default).
    pub input_device: Option<String>,
    /// The output device by name (default: the system default).
    pub output_device: Option<String>,
    /// Play the model's audio. Default true; off, audio is received and
    /// counted but not played.
    pub playback: bool,
    /// The memory file the tools use. Default `memory.json`.
    pub memory: PathBuf,
    /// How long to run; `None` runs until [`Assistant::stop`] (or, for a WAV
    /// input, until it ended and the last answer came).
    #[serde(rename = "duration_ms", with = "opt_millis")]
    pub duration: Option<Duration>,
    /// Sessions over the duration: above 1 the duration is split and a
    /// fresh session taken from the pool for each part. Default 1.
    pub sessions: u32,
    /// Commit a turn this often, in ms. Default 3000.
    pub turn_ms: u32,
    /// Audio per append, in ms. Default 20.
    pub chunk_ms: u32,
    /// Audio kept while the link is down, in ms, sent once it is back;
    /// older audio is dropped (counted). Default 2000.
    pub backlog_ms: u32,
    /// Serve `/health` and `/metrics` here. Default off.
    pub http_addr: Option<SocketAddr>,
    /// The memory monitor's settings (interval, thresholds).
    pub monitor: MonitorConfig,
    /// Sample RSS and refresh the status this often, in ms. Default 1000.
    pub poll_ms: u64,
    /// Write `rss.csv` (as it runs) and `rss.png` (at the end) here.
    pub soak_dir: Option<PathBuf>,
    /// Print the status line every poll (`\r`-rewritten on a terminal,
    /// plain lines otherwise). Default off.
    pub status_line: bool,
    /// System instructions sent in `session.update`.
    pub instructions: String,
    /// Settings of the in-process stand-in (used without `url`).
    pub standin: StandinConfig,
}

impl Default for AssistantConfig {
    fn default() -> Self {
        Self {
            url: None,
            api_key: None,
            input: Input::Device,
            input_device: None,
            output_device: None,
            playback: true,
            memory: PathBuf::from("memory.json"),
            duration: None,
            sessions: 1,
            turn_ms: 3000,
            chunk_ms: 20,
            backlog_ms: 2000,
            http_addr: None,
            monitor: MonitorConfig::default(),
            poll_ms: 1000,
            soak_dir: None,
            status_line: false,
            instructions: "You are a helpful voice assistant. Use remember, recall and forget \
                           to keep facts about the user between sessions."
                .into(),
            standin: StandinConfig::default(),
        }
    }
}

impl std::fmt::Debug for AssistantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssistantConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("input", &self.input)
            .field("memory", &self.memory)
            .field("duration", &self.duration)
            .field("sessions", &self.sessions)
            .field("turn_ms", &self.turn_ms)
            .field("http_addr", &self.http_addr)
            .field("soak_dir", &self.soak_dir)
            .finish_non_exhaustive()
    }
}

impl AssistantConfig {
    fn validate(&self) -> Result<(), Error> {
        let bad = |field: &'static str, message: &str| {
            Err(Error::Config {
                field,
                message: message.into(),
            })
        };
        if self.sessions == 0 {
            return bad("sessions", "must be at least 1");
        }
        if self.turn_ms < 100 {
            return bad("turn_ms", "must be at least 100 (the API's shortest turn)");
        }
        if !(5..=1000).contains(&self.chunk_ms) {
            return bad("chunk_ms", "must be between 5 and 1000");
        }
        if self.poll_ms < 10 {
            return bad("poll_ms", "must be at least 10");
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return bad("duration", "must be more than zero");
        }
        Ok(())
    }
}

/// `Option<Duration>` as whole milliseconds.
mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
    }
}

/// The live status: what the one-line status shows. `Display` is the line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// Time since the start, in ms.
    pub elapsed_ms: u64,
    /// Memory pressure level.
    pub level: Level,
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
    /// Sessions in the pool (open) and checked out.
    pub pool_size: usize,
    /// Sessions checked out of the pool.
    pub pool_in_use: usize,
    /// Live tracked resources.
    pub tracker_live: u64,
    /// Bytes of live tracked resources.
    pub tracker_bytes: u64,
    /// Whether the WebSocket link is up.
    pub ws_connected: bool,
    /// Last heartbeat round trip, in µs.
    pub ws_rtt_us: Option<u64>,
    /// Which session this is (from 1).
    pub session: u32,
    /// Reconnects so far.
    pub reconnects: u64,
    /// Playback underruns so far.
    pub underruns: u64,
    /// Audio overflows so far: capture frames dropped, plus playback deltas
    /// dropped because the writer lagged.
    pub overflows: u64,
    /// Committed turns.
    pub turns: u64,
    /// Tool calls.
    pub tool_calls: u64,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rtt = match self.ws_rtt_us {
            Some(us) => format!("{:.1} ms", us as f64 / 1000.0),
            None => "-".into(),
        };
        write!(
            f,
            "[{:>5.0}s] level {} | rss {} | pool {}/{} | tracker {} live {} | ws {} #{} rtt {} reconnects {} | audio under {} over {} | turns {} | tools {}",
            self.elapsed_ms as f64 / 1000.0,
            self.level,
            mib(self.rss_bytes),
            self.pool_in_use,
            self.pool_size,
            self.tracker_live,
            human_bytes(self.tracker_bytes),
            if self.ws_connected { "up" } else { "down" },
            self.session,
            rtt,
            self.reconnects,
            self.underruns,
            self.overflows,
            self.turns,
            self.tool_calls,
        )
    }
}

/// Bytes as KiB below one MiB, MiB above.
fn human_bytes(bytes: u64) -> String {
    if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        mib(bytes)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What a run did, measured: plain serde data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// How long it ran, in ms.
    pub duration_ms: u64,
    /// The service it talked to (without query string).
    pub url: String,
    /// Whether that was the in-process stand-in.
    pub standin: bool,
    /// Committed turns (acknowledged by the service).
    pub turns: u64,
    /// Responses completed (`response.done`).
    pub responses: u64,
    /// Input audio captured, in bytes of PCM16.
    pub audio_bytes_captured: u64,
    /// Input audio handed to the session and not handed back.
    pub audio_bytes_sent: u64,
    /// Input audio that could not be delivered (queue full, link down too
    /// long, handed back undelivered after a disconnect).
    pub audio_bytes_dropped: u64,
    /// Input audio still waiting to be sent when the run ended.
    pub audio_bytes_pending: u64,
    /// Of the dropped audio: what the session shed from its queue under
    /// memory pressure.
    pub audio_bytes_shed: u64,
    /// Output audio received, in bytes of PCM16.
    pub audio_bytes_received: u64,
    /// Output audio handed to the playback stream.
    pub audio_bytes_played: u64,
    /// Output audio dropped because playback lagged (or was off/failed).
    pub audio_bytes_play_dropped: u64,
    /// Tool calls by name.
    pub tool_calls: ToolCounts,
    /// Reconnects (links re-established by steward-ws).
    pub reconnects: u64,
    /// Sessions opened (from the pool).
    pub sessions: u64,
    /// Playback underruns.
    pub underruns: u64,
    /// Audio overflows (capture frames dropped + playback deltas dropped).
    pub overflows: u64,
    /// RSS at the start, in bytes.
    pub rss_start: u64,
    /// RSS at the end, in bytes.
    pub rss_end: u64,
    /// Highest RSS sampled, in bytes.
    pub rss_peak: u64,
    /// RSS samples: (seconds since start, bytes).
    pub rss_samples: Vec<(f64, u64)>,
    /// Samples of the anonymous part of RSS (heap, stacks), where a leak
    /// shows: (seconds since start, bytes). Empty where unknown.
    pub rss_anon_samples: Vec<(f64, u64)>,
    /// Threads of the process at the start (Linux).
    pub threads_start: Option<u64>,
    /// Threads of the process at the end, after everything closed (Linux).
    pub threads_end: Option<u64>,
    /// Open file descriptors at the start (Linux).
    pub fds_start: Option<u64>,
    /// Open file descriptors at the end, after everything closed (Linux).
    pub fds_end: Option<u64>,
    /// `error` events from the service.
    pub server_errors: u64,
    /// The stand-in's counters, when it ran in-process.
    pub standin_stats: Option<StandinStats>,
    /// The final `Steward::health()` snapshot, as JSON.
    pub health: Value,
    /// Errors, word for word (the first few).
    pub errors: Vec<String>,
    /// Errors beyond those kept.
    pub errors_not_kept: u64,
}

impl Report {
    /// Whether the audio books balance: captured = sent + dropped + pending.
    #[must_use]
    pub fn audio_balances(&self) -> bool {
        self.audio_bytes_captured
            == self.audio_bytes_sent + self.audio_bytes_dropped + self.audio_bytes_pending
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        writeln!(
            f,
            "steward assistant: {:.1} s against {}{}",
            self.duration_ms as f64 / 1000.0,
            self.url,
            if self.standin {
                " (local stand-in)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  turns {}, responses {}, sessions {}, reconnects {}",
            self.turns, self.responses, self.sessions, self.reconnects
        )?;
        writeln!(
            f,
            "  audio up: captured {} = sent {} + dropped {} (shed {}) + pending {} bytes",
            self.audio_bytes_captured,
            self.audio_bytes_sent,
            self.audio_bytes_dropped,
            self.audio_bytes_shed,
            self.audio_bytes_pending
        )?;
        writeln!(
            f,
            "  audio down: received {}, played {}, dropped {} bytes; underruns {}, overflows {}",
            self.audio_bytes_received,
            self.audio_bytes_played,
            self.audio_bytes_play_dropped,
            self.underruns,
            self.overflows
        )?;
        let t = &self.tool_calls;
        writeln!(
            f,
            "  tools: remember {}, recall {}, forget {}, failed {}",
            t.remember, t.recall, t.forget, t.failed
        )?;
        writeln!(
            f,
            "  rss: start {}, end {}, peak {}",
            mib(self.rss_start),
            mib(self.rss_end),
            mib(self.rss_peak)
        )?;
        writeln!(
            f,
            "  threads {} -> {}, fds {} -> {}",
            opt(self.threads_start),
            opt(self.threads_end),
            opt(self.fds_start),
            opt(self.fds_end)
        )?;
        write!(
            f,
            "  server errors {}, errors {}",
            self.server_errors,
            self.errors.len() as u64 + self.errors_not_kept
        )?;
        for e in self.errors.iter().take(5) {
            write!(f, "\n    {e}")?;
        }
        Ok(())
    }
}

/// Counters shared between the session task and the handle.
#[derive(Default)]
struct Shared {
    status: Mutex<Status>,
    played: AtomicU64,
    play_dropped: AtomicU64,
    closing: AtomicBool,
}

/// A running assistant. Dropping it without [`wait`](Assistant::wait)
/// stops the session task (the stop is requested; its resources are
/// released as it ends).
pub struct Assistant {
    steward: Steward,
    standin_url: Option<String>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<Report, Error>>,
}

impl std::fmt::Debug for Assistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assistant")
            .field("standin_url", &self.standin_url)
            .field("status", &*self.shared.status.lock())
            .finish_non_exhaustive()
    }
}

impl Assistant {
    /// Starts everything and connects the first session (so a wrong URL or
    /// a missing device is an error here), then runs in a spawned task.
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::Bind`] (stand-in), [`Error::Store`],
    /// [`Error::Audio`], [`Error::Wav`], [`Error::Steward`], [`Error::Pool`]
    /// (first connection), [`Error::Output`] (soak dir).
    pub async fn start(config: AssistantConfig) -> Result<Assistant, Error> {
        config.validate()?;
        let threads_start = procfs::threads();
        let fds_start = procfs::fds();
        let rss_start = procfs::rss_bytes().unwrap_or(0);
        let started = Instant::now();

        let standin = match config.url {
            Some(_) => None,
            None => Some(Standin::start(config.standin.clone()).await?),
        };
        let url = match (&config.url, &standin) {
            (Some(url), _) => url.clone(),
            (None, Some(s)) => s.url(),
            (None, None) => unreachable_url(),
        };
        let standin_url = standin.as_ref().map(Standin::url);

        let store = Store::open(&config.memory).map_err(|source| Error::Store {
            path: config.memory.clone(),
            source,
        })?;
        let source = Source::open(
            &config.input,
            config.chunk_ms,
            config.input_device.as_deref(),
        )?;
        let playback = if config.playback {
            let mut audio = AudioConfig::default();
            audio.output_device.clone_from(&config.output_device);
            let p = Playback::open(&audio).map_err(|source| Error::Audio {
                what: format!(
                    "playback on {}",
                    config
                        .output_device
                        .as_deref()
                        .unwrap_or("the default output")
                ),
                source,
            })?;
            Some(Arc::new(p))
        } else {
            None
        };

        // What can fail for a bad setting comes before anything runs.
        let client = client(&url, config.api_key.as_deref())?;
        let csv = match &config.soak_dir {
            Some(dir) => Some(soak::CsvWriter::create(dir)?),
            None => None,
        };

        let mut steward_config = steward::StewardConfig::default();
        steward_config.monitor = config.monitor.clone();
        steward_config.http_addr = config.http_addr;
        let mut builder = Steward::builder()
            .config(steward_config)
            .store(store.clone())
            .tracker(Tracker::new());
        if let Some(p) = &playback {
            builder = builder.playback("speaker", p);
        }
        if let Some(c) = source.capture() {
            builder = builder.capture("microphone", c);
        }
        let steward = builder.build().map_err(Error::Steward)?;

        let pool = match Pool::builder(ClientManager::new(client))
            .name("realtime-sessions")
            .max_size(1)
            .build()
        {
            Ok(pool) => pool,
            Err(e) => {
                steward.shutdown().await;
                return Err(Error::Pool {
                    url: redact_url(&url),
                    message: e.to_string(),
                });
            }
        };
        steward.add_pool(&pool);

        let shared = Arc::new(Shared::default());
        let (play_tx, player) = match &playback {
            Some(p) => {
                let (tx, rx) = mpsc::channel(PLAYBACK_CHANNEL);
                let task = tokio::spawn(play(Arc::clone(p), rx, Arc::clone(&shared)));
                (Some(tx), Some(task))
            }
            None => (None, None),
        };

        let mut run = Run {
            started,
            url: url.clone(),
            standin,
            store,
            steward: steward.clone(),
            pool,
            source: Some(source),
            playback,
            play_tx,
            player,
            shared: Arc::clone(&shared),
            link: None,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            csv,
            rows: Vec::new(),
            stash: HashMap::new(),
            report: Report {
                url: redact_url(&url),
                rss_start,
                rss_peak: rss_start,
                threads_start,
                fds_start,
                ..Report::default()
            },
            session_index: 0,
            last_error_log: None,
            config,
        };
        let tools = tools::definitions();
        if let Err(e) = run.open_link(&tools).await {
            // Close what was started (monitor, endpoint, streams, stand-in).
            let _ = run.finish().await;
            return Err(e);
        }
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run.run(stop_rx, tools));
        Ok(Assistant {
            steward,
            standin_url,
            shared,
            stop,
            task,
        })
    }

    /// Where the HTTP endpoint listens, when asked for.
    #[must_use]
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.steward.http_addr()
    }

    /// The in-process stand-in's URL, when the assistant started one.
    #[must_use]
    pub fn standin_url(&self) -> Option<String> {
        self.standin_url.clone()
    }

    /// The steward's snapshot of every part, now.
    #[must_use]
    pub fn health(&self) -> steward::Health {
        self.steward.health()
    }

    /// The live status (as of the last poll).
    #[must_use]
    pub fn status(&self) -> Status {
        self.shared.status.lock().clone()
    }

    /// Asks the session to finish early; [`wait`](Self::wait) then returns
    /// the report.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// A cheap handle that can [`stop`](StopHandle::stop) the assistant
    /// from elsewhere (a signal handler) while [`wait`](Self::wait) runs.
    #[must_use]
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Runs to the duration (or [`stop`](Self::stop)), closes everything
    /// (session, pool, audio streams, store, monitor, HTTP endpoint,
    /// stand-in) and returns the report.
    ///
    /// Cancel safety: dropping the future stops the session task as
    /// dropping the assistant does.
    ///
    /// # Errors
    /// [`Error::Task`] if the session task panicked; [`Error::Store`] if the
    /// memory file could not be closed.
    pub async fn wait(self) -> Result<Report, Error> {
        let Assistant {
            steward,
            stop,
            task,
            ..
        } = self;
        // The session task holds the last handle, so that everything the
        // steward owns is gone when it ends.
        drop(steward);
        let result = task.await;
        drop(stop);
        match result {
            Ok(report) => report,
            Err(e) => Err(Error::Task {
                name: "session",
                message: e.to_string(),
            }),
        }
    }
}

/// Stops an [`Assistant`] from elsewhere (see [`Assistant::stop_handle`]).
#[derive(Clone, Debug)]
pub struct StopHandle(watch::Sender<bool>);

impl StopHandle {
    /// Asks the session to finish early, as [`Assistant::stop`].
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

fn unreachable_url() -> String {
    // `start` always has a URL or a stand-in; keep the type total anyway.
    "ws://127.0.0.1:9/v1/realtime".into()
}

fn client(url: &str, api_key: Option<&str>) -> Result<Client, Error> {
    let reconnect = ReconnectConfig {
        enabled: true,
        max_attempts: Some(30),
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
        ..ReconnectConfig::default()
    };
    let mut builder = Client::builder(url)
        .heartbeat(Duration::from_secs(5), Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(10))
        .reconnect(reconnect);
    if let Some(key) = api_key {
        builder = builder.bearer_auth(key);
    }
    builder.build().map_err(|source| Error::Ws {
        url: redact_url(url),
        source,
    })
}

/// Writes audio deltas to the playback stream; on closing, drops what is
/// left (counted) instead of playing it.
async fn play(playback: Arc<Playback>, mut rx: mpsc::Receiver<Vec<u8>>, shared: Arc<Shared>) {
    let mut failed = false;
    while let Some(pcm) = rx.recv().await {
        if failed || shared.closing.load(Relaxed) {
            shared.play_dropped.fetch_add(pcm.len() as u64, Relaxed);
            continue;
        }
        match playback.write(&pcm).await {
            Ok(()) => {
                shared.played.fetch_add(pcm.len() as u64, Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "playback failed; answers are no longer played");
                shared.play_dropped.fetch_add(pcm.len() as u64, Relaxed);
                failed = true;
            }
        }
    }
}

/// One open session (a pooled connection) and what is known about its
/// server-side conversation.
struct Link {
    session: Pooled<ClientManager>,
    events: Events,
    /// Audio appended since the last commit, on this connection.
    appended: u64,
    /// Responses asked for (commits, `response.create`) and not done yet.
    awaiting: u64,
    /// Appended audio the session shed under memory pressure, already
    /// moved from sent to dropped.
    shed_accounted: u64,
}

/// The session task's state.
struct Run {
    config: AssistantConfig,
    started: Instant,
    url: String,
    standin: Option<Standin>,
    store: Store,
    steward: Steward,
    pool: Pool<ClientManager>,
    source: Option<Source>,
    playback: Option<Arc<Playback>>,
    play_tx: Option<mpsc::Sender<Vec<u8>>>,
    player: Option<tokio::task::JoinHandle<()>>,
    shared: Arc<Shared>,
    link: Option<Link>,
    /// Audio captured while the link was down, oldest first.
    backlog: VecDeque<Vec<u8>>,
    backlog_bytes: u64,
    csv: Option<soak::CsvWriter>,
    rows: Vec<soak::Row>,
    /// Function calls whose name comes only with `response.done`.
    stash: HashMap<String, String>,
    report: Report,
    session_index: u32,
    last_error_log: Option<Instant>,
}

impl Run {
    async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        tools: Vec<Value>,
    ) -> Result<Report, Error> {
        let span = tracing::info_span!("assistant", url = %redact_url(&self.url));
        let _enter = span.enter();
        let mut poll = tokio::time::interval(Duration::from_millis(self.config.poll_ms));
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let turn = Duration::from_millis(u64::from(self.config.turn_ms));
        let mut turns = tokio::time::interval_at(tokio::time::Instant::now() + turn, turn);
        turns.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let deadline = self
            .config
            .duration
            .map(|d| tokio::time::Instant::now() + d);
        let segment = match (self.config.duration, self.config.sessions) {
            (Some(d), n) if n > 1 => Some(d / n),
            _ => None,
        };
        let mut next_cycle = segment.map(|s| tokio::time::Instant::now() + s);
        let mut finish_by: Option<tokio::time::Instant> = None;
        let forever = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);

        loop {
            if let Some(by) = finish_by
                && (self.responses_settled() || tokio::time::Instant::now() >= by)
            {
                break;
            }
            let link_events = self.link.as_ref().map(|l| l.events.clone());
            let link_session = self.link.as_ref().map(|l| (*l.session).clone());
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        tracing::info!("stop requested");
                        break;
                    }
                }
                () = tokio::time::sleep_until(deadline.unwrap_or(forever)) => {
                    tracing::info!("duration reached");
                    break;
                }
                () = tokio::time::sleep_until(next_cycle.unwrap_or(forever)) => {
                    next_cycle = segment.map(|s| tokio::time::Instant::now() + s);
                    if self.session_index < self.config.sessions {
                        self.cycle(&tools).await;
                    }
                }
                _ = poll.tick() => self.poll(&tools).await,
                _ = turns.tick() => self.commit(),
                chunk = next_chunk(&mut self.source) => {
                    match chunk {
                        Ok(Chunk::Audio(pcm)) => self.audio(pcm),
                        Ok(Chunk::End) => {
                            self.commit();
                            if deadline.is_none() {
                                // Nothing more to say: wait for the answers, then end.
                                finish_by = Some(tokio::time::Instant::now() + FINISH_GRACE);
                                if let Some(source) = self.source.take() {
                                    off_runtime(move || source.close()).await;
                                }
                            }
                        }
                        Err(e) => {
                            self.error(format!("input: {e}"));
                            if let Some(source) = self.source.take() {
                                off_runtime(move || source.close()).await;
                            }
                        }
                    }
                }
                event = next_event(link_events) => self.link_event(event),
                message = next_message(link_session) => self.server_message(message).await,
            }
        }
        self.finish().await
    }

    /// True once no answer is outstanding (nothing queued to be played
    /// either): the end of a WAV-driven run.
    fn responses_settled(&self) -> bool {
        let Some(link) = &self.link else { return true };
        link.awaiting == 0 && self.stash.is_empty()
    }

    // -- the link ---------------------------------------------------------

    /// Takes a session from the pool and puts it under the wiring.
    async fn open_link(&mut self, _tools: &[Value]) -> Result<(), Error> {
        let session = self.pool.get().await.map_err(|e| Error::Pool {
            url: redact_url(&self.url),
            message: e.to_string(),
        })?;
        self.session_index += 1;
        self.report.sessions += 1;
        self.steward
            .add_ws_session(&format!("realtime-{}", self.session_index), &session);
        let events = session.events();
        tracing::info!(session = self.session_index, "session open");
        self.link = Some(Link {
            session,
            events,
            appended: 0,
            awaiting: 0,
            shed_accounted: 0,
        });
        Ok(())
    }

    /// Closes the link: queued messages are written (bounded by the drain
    /// timeout); any handed back are accounted for.
    async fn close_link(&mut self) {
        self.account_shed();
        let Some(link) = self.link.take() else { return };
        let unsent = link.session.shutdown(ShutdownMode::Drain).await;
        self.undelivered(&unsent);
        // Whatever else the session reported before closing.
        while let Some(event) = link.events.try_recv() {
            if let Event::Disconnected { undelivered, .. } | Event::GaveUp { undelivered, .. } =
                &event
            {
                self.undelivered(undelivered);
            }
        }
        Pooled::discard(link.session);
    }

    /// A new session for the next part of the run.
    async fn cycle(&mut self, tools: &[Value]) {
        tracing::info!(from = self.session_index, "cycling the session");
        self.close_link().await;
        if let Err(e) = self.open_link(tools).await {
            self.error(e.to_string());
        }
    }

    fn link_event(&mut self, event: Option<Event>) {
        let Some(event) = event else {
            // The session is gone for good.
            self.link = None;
            return;
        };
        match event {
            Event::Connected { connection } if connection > 1 => {
                self.report.reconnects += 1;
                tracing::info!(connection, "reconnected");
                if let Some(link) = &mut self.link {
                    // A new connection is a new conversation at the service.
                    link.appended = 0;
                    link.awaiting = 0;
                }
                self.stash.clear();
            }
            Event::Disconnected {
                reason,
                undelivered,
            } => {
                tracing::warn!(error = %reason, undelivered = undelivered.len(), "link lost");
                self.undelivered(&undelivered);
            }
            Event::GaveUp {
                attempts,
                undelivered,
                ..
            } => {
                self.error(format!("gave up reconnecting after {attempts} attempts"));
                self.undelivered(&undelivered);
                if let Some(link) = self.link.take() {
                    Pooled::discard(link.session);
                }
            }
            Event::Closed => {
                if let Some(link) = self.link.take() {
                    Pooled::discard(link.session);
                }
            }
            _ => {}
        }
    }

    /// Moves appended audio the session shed at `Critical` (never written)
    /// from sent to dropped. Appends are the only outbound audio, and each
    /// is `{"type":"input_audio_buffer.append","audio":"…"}` around whole
    /// base64 quanta (chunks are multiples of 3 bytes), so the PCM bytes
    /// follow from the shed message and byte counts.
    fn account_shed(&mut self) {
        let Some(link) = &mut self.link else { return };
        let stats = link.session.stats();
        let overhead = stats.shed_outbound_messages * append_overhead();
        let pcm = stats.shed_outbound_bytes.saturating_sub(overhead) / 4 * 3;
        let new = pcm.saturating_sub(link.shed_accounted);
        if new == 0 {
            return;
        }
        link.shed_accounted = pcm;
        self.report.audio_bytes_sent = self.report.audio_bytes_sent.saturating_sub(new);
        self.report.audio_bytes_dropped += new;
        self.report.audio_bytes_shed += new;
    }

    /// Accounts appended audio handed back by the session as dropped.
    fn undelivered(&mut self, messages: &[Message]) {
        let bytes: u64 = messages.iter().filter_map(append_audio_bytes).sum();
        self.report.audio_bytes_sent = self.report.audio_bytes_sent.saturating_sub(bytes);
        self.report.audio_bytes_dropped += bytes;
    }

    fn connected(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.session.is_connected())
    }

    // -- audio up -----------------------------------------------------------

    fn audio(&mut self, pcm: Vec<u8>) {
        self.report.audio_bytes_captured += pcm.len() as u64;
        self.backlog_bytes += pcm.len() as u64;
        self.backlog.push_back(pcm);
        if self.connected() {
            self.flush_backlog();
        }
        // Bound what waits for the link: drop the oldest.
        let max = u64::from(self.config.backlog_ms) * BYTES_PER_MS;
        while self.backlog_bytes > max {
            let Some(old) = self.backlog.pop_front() else {
                break;
            };
            self.backlog_bytes -= old.len() as u64;
            self.report.audio_bytes_dropped += old.len() as u64;
        }
    }

    fn flush_backlog(&mut self) {
        let Some(link) = &mut self.link else { return };
        while let Some(pcm) = self.backlog.pop_front() {
            let n = pcm.len() as u64;
            let event = ClientEvent::InputAudioBufferAppend(InputAudioBufferAppend {
                audio: realtime::encode_audio(&pcm),
                ..InputAudioBufferAppend::default()
            });
            let Ok(message) = event.to_message() else {
                self.backlog_bytes -= n;
                self.report.audio_bytes_dropped += n;
                continue;
            };
            match link.session.try_send(message) {
                Ok(()) => {
                    self.backlog_bytes -= n;
                    self.report.audio_bytes_sent += n;
                    link.appended += n;
                }
                Err(steward::ws::Error::Full { .. }) => {
                    // Keep it for the next round; the queue is the limit.
                    self.backlog.push_front(pcm);
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "append refused");
                    self.backlog_bytes -= n;
                    self.report.audio_bytes_dropped += n;
                }
            }
        }
    }

    fn commit(&mut self) {
        let Some(link) = &mut self.link else { return };
        if link.appended < MIN_COMMIT_BYTES || !link.session.is_connected() {
            return;
        }
        // Turn detection is off (see configure_session): commit, then ask
        // for the answer, as the service expects.
        let commit = json!({"type": "input_audio_buffer.commit"}).to_string();
        if let Err(e) = link.session.try_send(Message::text(commit)) {
            tracing::debug!(error = %e, "commit not sent");
            return;
        }
        link.appended = 0;
        match ClientEvent::response_create()
            .to_message()
            .and_then(|m| link.session.try_send(m))
        {
            Ok(()) => link.awaiting += 1,
            Err(e) => tracing::debug!(error = %e, "response.create not sent"),
        }
    }

    // -- from the service -----------------------------------------------------

    async fn server_message(&mut self, message: Option<Message>) {
        let Some(message) = message else { return };
        let event = match ServerEvent::from_message(&message) {
            Ok(event) => event,
            Err(e) => {
                self.error(format!("undecodable event from the service: {e}"));
                return;
            }
        };
        if let Some(delta) = event.audio_delta() {
            match realtime::decode_audio(&delta.delta) {
                Ok(pcm) => self.audio_down(pcm),
                Err(e) => self.error(format!("bad audio delta: {e}")),
            }
            return;
        }
        match event {
            ServerEvent::SessionCreated(_) => self.configure_session(),
            ServerEvent::FunctionCallArgumentsDone(call) => match call.name {
                Some(name) => self.call_tool(&call.call_id, &name, &call.arguments).await,
                None => {
                    self.stash.insert(call.call_id, call.arguments);
                }
            },
            ServerEvent::ResponseDone(done) => {
                self.report.responses += 1;
                if let Some(link) = &mut self.link {
                    link.awaiting = link.awaiting.saturating_sub(1);
                }
                self.stashed_calls(&done.response).await;
            }
            ServerEvent::Error(e) => {
                self.report.server_errors += 1;
                // An empty commit right after a reconnect is expected.
                tracing::debug!(code = ?e.error.code, message = %e.error.message, "service error event");
                if e.error.code.as_deref() == Some("input_audio_buffer_commit_empty") {
                    if let Some(link) = &mut self.link {
                        link.awaiting = link.awaiting.saturating_sub(1);
                    }
                } else {
                    self.error(format!("service: {}", e.error.message));
                }
            }
            ServerEvent::Other(v)
                if v.get("type").and_then(Value::as_str)
                    == Some("input_audio_buffer.committed") =>
            {
                self.report.turns += 1;
            }
            _ => {}
        }
    }

    fn configure_session(&mut self) {
        let Some(link) = &self.link else { return };
        let mut extra = serde_json::Map::new();
        // Turns are committed by the assistant, not by server-side VAD.
        extra.insert(
            "audio".into(),
            json!({
                "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": null},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}},
            }),
        );
        let update = ClientEvent::SessionUpdate(SessionUpdate {
            session: SessionConfig {
                kind: Some("realtime".into()),
                instructions: Some(self.config.instructions.clone()),
                tools: Some(tools::definitions()),
                extra,
                ..SessionConfig::default()
            },
            ..SessionUpdate::default()
        });
        match update.to_message() {
            Ok(m) => {
                if let Err(e) = link.session.try_send(m) {
                    self.error(format!("session.update not sent: {e}"));
                }
            }
            Err(e) => self.error(format!("session.update: {e}")),
        }
    }

    fn audio_down(&mut self, pcm: Vec<u8>) {
        let n = pcm.len() as u64;
        self.report.audio_bytes_received += n;
        let Some(tx) = &self.play_tx else {
            self.shared.play_dropped.fetch_add(n, Relaxed);
            return;
        };
        if tx.try_send(pcm).is_err() {
            self.shared.play_dropped.fetch_add(n, Relaxed);
        }
    }

    async fn stashed_calls(&mut self, response: &Value) {
        if self.stash.is_empty() {
            return;
        }
        let Some(output) = response.get("output").and_then(Value::as_array) else {
            return;
        };
        for item in output {
            let (Some(call_id), Some(name)) = (
                item.get("call_id").and_then(Value::as_str),
                item.get("name").and_then(Value::as_str),
            ) else {
                continue;
            };
            if let Some(arguments) = self.stash.remove(call_id) {
                self.call_tool(call_id, name, &arguments).await;
            }
        }
    }

    async fn call_tool(&mut self, call_id: &str, name: &str, arguments: &str) {
        let output = tools::run(&self.store, name, arguments, &mut self.report.tool_calls).await;
        let Some(link) = &mut self.link else { return };
        let answer = [
            ClientEvent::function_call_output(call_id, output),
            ClientEvent::response_create(),
        ];
        let mut failed = None;
        for event in answer {
            if let Err(e) = event.to_message().and_then(|m| link.session.try_send(m)) {
                failed = Some(e);
                break;
            }
        }
        match failed {
            None => link.awaiting += 1,
            Some(e) => self.error(format!("tool answer not sent: {e}")),
        }
    }

    // -- housekeeping -------------------------------------------------------

    async fn poll(&mut self, tools: &[Value]) {
        if self.link.is_none() {
            // The last session gave up or closed: take a fresh one.
            if let Err(e) = self.open_link(tools).await {
                self.error(e.to_string());
            }
        }
        if self.connected() && !self.backlog.is_empty() {
            self.flush_backlog();
        }
        self.account_shed();
        let health = self.steward.health();
        let rss = procfs::rss_bytes()
            .or_else(|| health.sample.as_ref().map(|s| s.rss_bytes))
            .unwrap_or(0);
        let elapsed = self.started.elapsed();
        let seconds = elapsed.as_secs_f64();
        self.report.rss_peak = self.report.rss_peak.max(rss);
        // The report's sample lists are made from the rows at the end.
        let anon = procfs::rss_anon_bytes();
        let row = soak::Row {
            seconds,
            rss_bytes: rss,
            level: health.level,
            session: self.session_index,
            rss_anon_bytes: anon.unwrap_or(0),
        };
        if let Some(csv) = &mut self.csv
            && let Err(e) = csv.push(&row)
        {
            self.error(e.to_string());
            self.csv = None;
        }
        self.rows.push(row);

        let pool = self.pool.metrics();
        let (underruns, _) = self.audio_stats();
        let overflows = self.overflows();
        let link_stats = self.link.as_ref().map(|l| l.session.stats());
        let status = Status {
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            level: health.level,
            rss_bytes: rss,
            pool_size: pool.size,
            pool_in_use: pool.in_use,
            tracker_live: health.tracker.as_ref().map_or(0, |t| t.totals.live_count),
            tracker_bytes: health.tracker.as_ref().map_or(0, |t| t.totals.live_bytes),
            ws_connected: link_stats.as_ref().is_some_and(|s| s.connected),
            ws_rtt_us: link_stats.as_ref().and_then(|s| s.last_rtt_us),
            session: self.session_index,
            reconnects: self.report.reconnects,
            underruns,
            overflows,
            turns: self.report.turns,
            tool_calls: self.report.tool_calls.total(),
        };
        if self.config.status_line {
            print_status(&status);
        }
        *self.shared.status.lock() = status;
    }

    /// (underruns, frames played) of the playback stream.
    fn audio_stats(&self) -> (u64, u64) {
        self.playback.as_ref().map_or((0, 0), |p| {
            let s = p.stats();
            (s.underruns, s.frames_out)
        })
    }

    fn overflows(&self) -> u64 {
        let capture = self.source.as_ref().map_or(0, Source::overflow_frames);
        // Playback: deltas dropped because the writer lagged, in frames.
        capture + self.shared.play_dropped.load(Relaxed) / 2
    }

    fn error(&mut self, message: String) {
        // Rate-limit the log, keep the first few word for word.
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1))
        {
            tracing::warn!(%message, "assistant error");
            self.last_error_log = Some(now);
        }
        if self.report.errors.len() < MAX_ERRORS_KEPT {
            self.report.errors.push(message);
        } else {
            self.report.errors_not_kept += 1;
        }
    }

    /// Closes everything in order and completes the report.
    async fn finish(mut self) -> Result<Report, Error> {
        if self.config.status_line {
            finish_status_line();
        }
        self.close_link().await;
        self.pool.close();
        self.report.audio_bytes_pending = self.backlog_bytes;
        self.backlog.clear();

        // Playback: stop feeding it, let the writer end, then let what is
        // queued play out briefly before closing the stream.
        self.shared.closing.store(true, Relaxed);
        drop(self.play_tx.take());
        if let Some(player) = self.player.take() {
            let _ = player.await;
        }
        let (underruns, _) = self.audio_stats();
        self.report.underruns = underruns;
        self.report.overflows = self.overflows();
        if let Some(playback) = self.playback.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), playback.drain()).await;
            if let Some(Err(e)) = off_runtime(move || playback.close()).await {
                self.error(format!("playback close: {e}"));
            }
        }
        if let Some(source) = self.source.take() {
            off_runtime(move || source.close()).await;
        }
        self.report.audio_bytes_played = self.shared.played.load(Relaxed);
        self.report.audio_bytes_play_dropped = self.shared.play_dropped.load(Relaxed);

        self.report.health = serde_json::to_value(self.steward.health()).unwrap_or(Value::Null);
        self.steward.shutdown().await;
        let closed = self.store.close_async().await;
        if let Some(standin) = self.standin.take() {
            self.report.standin = true;
            self.report.standin_stats = Some(standin.stats());
            standin.close().await;
        }
        self.report.duration_ms =
            u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let rss_end = procfs::rss_bytes().unwrap_or(0);
        self.report.rss_end = rss_end;
        self.report.rss_peak = self.report.rss_peak.max(rss_end);

        self.report.rss_samples = self.rows.iter().map(|r| (r.seconds, r.rss_bytes)).collect();
        self.report.rss_anon_samples = self
            .rows
            .iter()
            .filter(|r| r.rss_anon_bytes > 0)
            .map(|r| (r.seconds, r.rss_anon_bytes))
            .collect();
        if let Some(dir) = &self.config.soak_dir {
            let title = format!(
                "steward assistant: RSS over {:.0} s, {} sessions",
                self.report.duration_ms as f64 / 1000.0,
                self.report.sessions
            );
            let rows = std::mem::take(&mut self.rows);
            let path = dir.join("rss.png");
            match off_runtime(move || soak::plot(&path, &rows, &title)).await {
                Some(Ok(())) => {}
                Some(Err(e)) => self.error(e.to_string()),
                None => self.error("the plot thread panicked".into()),
            }
        }
        let mut report = std::mem::take(&mut self.report);
        let memory = self.config.memory.clone();
        // Every handle goes here (steward, store, pool, streams), so the
        // end counts see only what outlives the assistant.
        drop(self);
        report.threads_end = procfs::threads();
        report.fds_end = procfs::fds();
        closed.map_err(|source| Error::Store {
            path: memory,
            source,
        })?;
        Ok(report)
    }
}

/// Runs a blocking call (joining a device thread, drawing a PNG) on a
/// short-lived thread of its own, so no runtime blocking-pool thread lingers
/// afterwards. `None` if it panicked.
async fn off_runtime<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("steward-close".into())
        .spawn(move || {
            let _ = tx.send(f());
        });
    let handle = spawned.ok()?;
    let result = rx.await.ok();
    // It has sent its result: joining is immediate.
    let _ = handle.join();
    result
}

async fn next_chunk(source: &mut Option<Source>) -> Result<Chunk, Error> {
    match source {
        Some(source) => source.next().await,
        None => std::future::pending().await,
    }
}

async fn next_event(events: Option<Events>) -> Option<Event> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_message(session: Option<steward::ws::Session>) -> Option<Message> {
    match session {
        Some(session) => session.recv().await,
        None => std::future::pending().await,
    }
}

/// Bytes of an `input_audio_buffer.append` message around its audio.
fn append_overhead() -> u64 {
    let empty = ClientEvent::InputAudioBufferAppend(InputAudioBufferAppend::default());
    empty.to_json().map_or(0, |j| j.len() as u64)
}

/// Audio bytes (PCM16) carried by an `input_audio_buffer.append` message.
fn append_audio_bytes(message: &Message) -> Option<u64> {
    let text = message.as_text()?;
    if !text.contains("input_audio_buffer.append") {
        return None;
    }
    match ClientEvent::parse(text).ok()? {
        ClientEvent::InputAudioBufferAppend(a) => realtime::decode_audio(&a.audio)
            .ok()
            .map(|b| b.len() as u64),
        _ => None,
    }
}

fn print_status(status: &Status) {
    use std::io::{IsTerminal, Write};
    let mut out = std::io::stdout();
    if out.is_terminal() {
        let _ = write!(out, "\r{status}\x1b[K");
    } else {
        let _ = writeln!(out, "{status}");
    }
    let _ = out.flush();
}

fn finish_status_line() {
    use std::io::{IsTerminal, Write};
    let mut out = std::io::stdout();
    if out.is_terminal() {
        let _ = writeln!(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shed_appends_convert_back_to_their_pcm_bytes() {
        // What account_shed assumes: message bytes minus the fixed overhead
        // are whole base64 quanta of the chunk.
        for ms in [5_u64, 20, 40, 100] {
            let pcm = vec![7_u8; (ms * BYTES_PER_MS) as usize];
            let event = ClientEvent::InputAudioBufferAppend(InputAudioBufferAppend {
                audio: realtime::encode_audio(&pcm),
                ..InputAudioBufferAppend::default()
            });
            let len = event.to_json().expect("json").len() as u64;
            let messages = 3;
            let back = (messages * len - messages * append_overhead()) / 4 * 3;
            assert_eq!(back, messages * pcm.len() as u64, "{ms} ms");
            let message = event.to_message().expect("message");
            assert_eq!(append_audio_bytes(&message), Some(pcm.len() as u64));
        }
    }

    #[test]
    fn the_api_key_is_neither_serialised_nor_shown() {
        let config = AssistantConfig {
            api_key: Some("sk-very-secret".into()),
            url: Some("wss://service.example/v1/realtime?model=x&key=also-secret".into()),
            ..AssistantConfig::default()
        };
        let json = serde_json::to_string(&config).expect("json");
        assert!(!json.contains("sk-very-secret"));
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("sk-very-secret") && !shown.contains("also-secret"),
            "{shown}"
        );
        let back: AssistantConfig = serde_json::from_str(&json).expect("back");
        assert_eq!(back.api_key, None);
        assert_eq!(back.turn_ms, config.turn_ms);
    }

    #[test]
    fn the_status_line_names_every_part() {
        let status = Status {
            elapsed_ms: 12_000,
            rss_bytes: 20 * 1024 * 1024,
            pool_size: 1,
            pool_in_use: 1,
            ws_connected: true,
            ws_rtt_us: Some(1500),
            session: 2,
            turns: 7,
            tool_calls: 3,
            ..Status::default()
        };
        let line = status.to_string();
        for part in [
            "level none",
            "rss 20.0 MiB",
            "pool 1/1",
            "ws up #2 rtt 1.5 ms",
            "turns 7",
            "tools 3",
        ] {
            assert!(line.contains(part), "{part:?} in {line}");
        }
        assert!(!line.contains('\n'));
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let config = AssistantConfig {
            sessions: 0,
            ..AssistantConfig::default()
        };
        assert!(
            config
                .validate()
                .expect_err("sessions")
                .to_string()
                .contains("sessions")
        );
        let config = AssistantConfig {
            turn_ms: 10,
            ..AssistantConfig::default()
        };
        assert!(
            config
                .validate()
                .expect_err("turn")
                .to_string()
                .contains("turn_ms")
        );
    }
}
