//! The assistant: a realtime voice session built on the steward facade.
//!
//! [`Assistant::start`] builds a [`Steward`] (memory monitor, store,
//! tracker, playback stream, optional HTTP endpoint), opens a
//! steward-realtime conversation
//! ([`RealtimeSession`](steward::realtime::RealtimeSession)) and runs it until
//! [`AssistantConfig::duration`] passes or [`Assistant::stop`] is called:
//!
//! - audio from the [`Input`] goes up as `input_audio_buffer.append`
//!   (PCM16 24 kHz mono); turns end by the service's voice detection
//!   (default) or, with manual turns, a commit every
//!   [`AssistantConfig::turn_ms`] (and when a WAV input ends);
//! - the model's audio plays through steward-audio; when the user talks
//!   over it, steward-realtime clears playback, cancels and truncates at the
//!   played position (barge-in);
//! - the model's tool calls (`remember`, `recall`, `forget`) run against the
//!   steward-store memory file and are answered;
//! - sessions are renewed before the service ends them, and a lost link is
//!   reconnected, both with the history replayed; user audio is accounted,
//!   so `audio_bytes_captured = sent + dropped + pending` always holds in
//!   the [`Report`];
//! - when the output or input device is lost (unplugged, its module
//!   unloaded), the stream is reopened on the default device and the run
//!   goes on; reopenings are counted ([`Report::audio_reopens`]);
//! - with [`AssistantConfig::sessions`] > 1 the duration is split into that
//!   many conversations (each a fresh connection and history);
//! - every [`AssistantConfig::poll_ms`] it samples RSS, updates the
//!   [`Status`] (and prints it when [`AssistantConfig::status_line`] is
//!   set) and, with [`AssistantConfig::soak_dir`], appends to `rss.csv`;
//!   `rss.png` is drawn at the end.
//!
//! Without [`AssistantConfig::url`] it starts a [`Standin`] in-process (a
//! local stand-in for the model service) and talks to it.
//!
//! Tasks: one session task (spawned by `start`, joined by
//! [`Assistant::wait`]) and steward-realtime's conversation task; audio
//! devices run on steward-audio's own threads. All of them are gone when
//! `wait` returns.

mod devices;
mod input;
mod out;
mod procfs;
mod report;
mod run;
mod soak;
mod tools;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use steward::Steward;
use steward::audio::{AudioConfig, Playback};
use steward::monitor::MonitorConfig;
use steward::realtime::{RealtimeConfig, RealtimeStats};
use steward::store::{Backend, RedisStore, Store};
use steward::tracker::Tracker;
use steward::ws::Client;

pub use out::{print_within, status_lines_dropped};
use tokio::sync::watch;

pub use input::Input;
pub use report::{MemoryGrowth, Report, Status};
pub use tools::ToolCounts;

use crate::Error;
use crate::error::redact_url;
use crate::standin::{Standin, StandinConfig};
use input::Source;

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
    /// local [`Standin`] and talks to it. Serialized without user info or
    /// query (see `steward::redact::redact_url`).
    #[serde(serialize_with = "crate::error::serialize_redacted")]
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
    /// The audio host for capture and playback. Default: PipeWire if
    /// compiled in and reachable, then PulseAudio, then ALSA; the one
    /// chosen is in the health JSON (`audio[].stats.host`).
    pub audio_host: steward::audio::AudioHost,
    /// Play the model's audio. Default true; off, audio is received and
    /// counted but not played.
    pub playback: bool,
    /// The memory the tools use: a file (default `memory.json`), or a
    /// `redis://host:port/db?ns=NAME` URL (also `rediss://`) whose namespace
    /// several assistant processes share. A Redis URL is serialized and
    /// shown without its user info and query.
    #[serde(serialize_with = "serialize_memory")]
    pub memory: PathBuf,
    /// Most keys the memory may hold: a `remember` that would create one
    /// more is a tool error the model sees ("the memory is full"), and
    /// nothing is stored. `None` (the default) keeps the store's own cap
    /// (100,000); 0 is refused.
    pub max_keys: Option<usize>,
    /// Typed user messages sent, in order, once the first conversation is
    /// up (each asks for a response). Default none.
    pub say: Vec<String>,
    /// How long to run; `None` runs until [`Assistant::stop`] (or, for a WAV
    /// input, until it ended and the last answer came).
    #[serde(
        rename = "duration_ms",
        with = "serde_with::As::<Option<serde_with::DurationMilliSeconds<u64>>>"
    )]
    pub duration: Option<Duration>,
    /// Conversations over the duration: above 1 the duration is split and
    /// a fresh conversation (new connection, empty history) opened for each
    /// part. Default 1.
    pub sessions: u32,
    /// With manual turns (`realtime.turn_detection` = manual): commit a
    /// turn this often, in ms. Default 3000.
    pub turn_ms: u32,
    /// Audio per append, in ms. Default 20.
    pub chunk_ms: u32,
    /// Audio kept while the link is down or a session is switched, in ms,
    /// sent once it is back; older audio is dropped (counted). Default 10000.
    pub backlog_ms: u32,
    /// Serve `/health` and `/metrics` here. Default off.
    pub http_addr: Option<SocketAddr>,
    /// Let `http_addr` be other than loopback (see the facade's
    /// `HttpConfig::allow_remote`). Default off.
    pub http_allow_remote: bool,
    /// The memory monitor's settings (interval, thresholds). The assistant
    /// trims glibc's retained memory every 60 s by default (`trim_every`).
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
    /// The conversation: turn detection (server VAD by default), session
    /// renewal, dead-link detection, history bounds. Its instructions and
    /// tools come from `instructions` and the memory tools.
    pub realtime: RealtimeConfig,
    /// Settings of the in-process stand-in (used without `url`).
    pub standin: StandinConfig,
}

impl Default for AssistantConfig {
    fn default() -> Self {
        // glibc's retention of freed memory, returned every minute: the
        // growth a 1 h soak measured was that, not a leak (#22).
        let mut monitor = MonitorConfig::default();
        monitor.trim_every = Some(std::time::Duration::from_secs(60));
        Self {
            url: None,
            api_key: None,
            input: Input::Device,
            input_device: None,
            output_device: None,
            audio_host: steward::audio::AudioHost::Default,
            playback: true,
            memory: PathBuf::from("memory.json"),
            max_keys: None,
            say: Vec::new(),
            duration: None,
            sessions: 1,
            turn_ms: 3000,
            chunk_ms: 20,
            backlog_ms: 10_000,
            http_addr: None,
            http_allow_remote: false,
            monitor,
            poll_ms: 1000,
            soak_dir: None,
            status_line: false,
            instructions: "You are a helpful voice assistant. Use remember, recall and forget \
                           to keep facts about the user between sessions."
                .into(),
            realtime: RealtimeConfig::default(),
            standin: StandinConfig::default(),
        }
    }
}

/// The memory's location fit to be shown: a Redis URL without user info
/// and query, a file path as it is.
pub(crate) fn memory_shown(memory: &Path) -> String {
    let location = memory.to_string_lossy();
    if steward::store::is_redis_url(&location) {
        return redact_url(&location);
    }
    location.into_owned()
}

fn serialize_memory<S: serde::Serializer>(memory: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&memory_shown(memory))
}

/// Opens the memory the tools use, under `max_keys` when given: the
/// backend, and the file store itself when it is one (the steward wires
/// that in).
async fn open_memory(
    memory: &Path,
    max_keys: Option<usize>,
) -> Result<(Arc<dyn Backend>, Option<Store>), Error> {
    let location = memory.to_string_lossy();
    let failed = |source| Error::Store {
        path: PathBuf::from(memory_shown(memory)),
        source,
    };
    if steward::store::is_redis_url(&location) {
        let mut builder = RedisStore::builder(location.as_ref());
        if let Some(n) = max_keys {
            builder = builder.max_keys(n);
        }
        let backend = builder.build().await.map_err(failed)?;
        tracing::info!(memory = %memory_shown(memory), "memory on a Redis namespace");
        return Ok((Arc::new(backend), None));
    }
    let mut builder = Store::builder(memory);
    if let Some(n) = max_keys {
        builder = builder.max_keys(n);
    }
    let store = builder.build().map_err(failed)?;
    Ok((Arc::new(store.clone()), Some(store)))
}

impl std::fmt::Debug for AssistantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssistantConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("input", &self.input)
            .field("memory", &memory_shown(&self.memory))
            .field("max_keys", &self.max_keys)
            .field("duration", &self.duration)
            .field("sessions", &self.sessions)
            .field("turn_ms", &self.turn_ms)
            .field("turn_detection", &self.realtime.turn_detection)
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

/// What the session task shares with the handle.
#[derive(Default)]
struct Shared {
    status: Mutex<Status>,
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
    /// [`Error::Audio`], [`Error::Wav`], [`Error::Steward`],
    /// [`Error::Realtime`] (first connection), [`Error::Output`] (soak dir).
    pub async fn start(config: AssistantConfig) -> Result<Assistant, Error> {
        config.validate()?;
        out::start();
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

        let (store, file_store) = open_memory(&config.memory, config.max_keys).await?;
        let source = Source::open(
            &config.input,
            config.chunk_ms,
            config.input_device.as_deref(),
            config.audio_host,
        )?;
        let playback = if config.playback {
            let mut audio = AudioConfig::default();
            audio.output_device.clone_from(&config.output_device);
            audio.host = config.audio_host;
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
        if let Some(p) = &playback {
            tracing::info!(device = p.device(), host = %p.host(), "playing to the output device");
        }

        // What can fail for a bad setting comes before anything runs.
        let mut realtime = config.realtime.clone();
        realtime
            .instructions
            .get_or_insert_with(|| config.instructions.clone());
        if realtime.tools.is_empty() {
            realtime.tools = tools::definitions();
        }
        realtime.held_audio_ms = u64::from(config.backlog_ms);
        realtime.validate().map_err(|e| Error::Config {
            field: "realtime",
            message: e.to_string(),
        })?;
        let client = client(&realtime, &url, config.api_key.as_deref())?;
        let csv = match &config.soak_dir {
            Some(dir) => Some(soak::CsvWriter::create(dir)?),
            None => None,
        };

        let mut steward_config = steward::StewardConfig::default();
        steward_config.monitor = config.monitor.clone();
        steward_config.http_addr = config.http_addr;
        steward_config.http.allow_remote = config.http_allow_remote;
        let mut builder = Steward::builder()
            .config(steward_config)
            .tracker(Tracker::new());
        // Under pressure the file store's log is compacted and its expired
        // entries swept; a Redis namespace gets the sweep.
        builder = match file_store {
            Some(file) => builder.store(file),
            None => builder.backend(Arc::clone(&store)),
        };
        if let Some(p) = &playback {
            builder = builder.playback(devices::SPEAKER, p);
        }
        if let Some(c) = source.capture() {
            builder = builder.capture(devices::MICROPHONE, c);
        }
        let steward = builder.build().map_err(Error::Steward)?;

        let shared = Arc::new(Shared::default());
        let mut run = run::Run {
            config,
            realtime,
            started,
            url: url.clone(),
            standin,
            store,
            steward: steward.clone(),
            client,
            source: Some(source),
            lost_capture: None,
            playback: playback.map(|p| Arc::new(devices::Speaker::new(p))),
            shared: Arc::clone(&shared),
            rt: None,
            closed: RealtimeStats::default(),
            orphan_audio: 0,
            tool_outputs: 0,
            commits: 0,
            csv,
            rows: soak::Rows::new(soak::Rows::MAX),
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
            flaps_seen: 0,
        };
        if let Err(e) = run.open().await {
            // Close what was started (monitor, endpoint, streams, stand-in).
            let _ = run.finish().await;
            return Err(e);
        }
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run.run(stop_rx));
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

fn client(realtime: &RealtimeConfig, url: &str, api_key: Option<&str>) -> Result<Client, Error> {
    let mut builder = realtime.client_builder(url);
    if let Some(key) = api_key {
        builder = builder.bearer_auth(key);
    }
    builder.build().map_err(|source| Error::Ws {
        url: redact_url(url),
        source,
    })
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

/// Through the stdout thread: a stdout nobody reads never stalls the
/// session (lines are dropped and counted instead).
fn print_status(status: &Status) {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        out::status(format!("\r{status}\x1b[K"));
    } else {
        out::status(format!("{status}\n"));
    }
}

fn finish_status_line() {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        out::status("\n".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn duration_is_whole_milliseconds_or_null() {
        let mut config = AssistantConfig {
            duration: Some(Duration::from_millis(u64::MAX)),
            ..AssistantConfig::default()
        };
        let json = serde_json::to_value(&config).expect("json");
        assert_eq!(json["duration_ms"], serde_json::json!(u64::MAX));
        let back: AssistantConfig = serde_json::from_value(json).expect("back");
        assert_eq!(back.duration, config.duration);
        config.duration = None;
        let json = serde_json::to_value(&config).expect("json");
        assert!(json["duration_ms"].is_null(), "{json}");
        let back: AssistantConfig = serde_json::from_value(json).expect("back");
        assert_eq!(back.duration, None);
        let absent: AssistantConfig = serde_json::from_str("{}").expect("absent");
        assert_eq!(absent.duration, None);
        let set: AssistantConfig = serde_json::from_str(r#"{"duration_ms": 30000}"#).expect("set");
        assert_eq!(set.duration, Some(Duration::from_secs(30)));
        assert!(serde_json::from_str::<AssistantConfig>(r#"{"duration_ms": 1.5}"#).is_err());
        // The monitor's settings inside refuse a misspelt one too.
        let err = serde_json::from_str::<AssistantConfig>(r#"{"monitor": {"trim_evry_ms": 1}}"#)
            .expect_err("refused");
        assert!(err.to_string().contains("trim_evry_ms"), "{err}");
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
            growth_bytes_per_hour: Some(3 << 19),
            growing: true,
            ..Status::default()
        };
        let line = status.to_string();
        for part in [
            "level none",
            "rss 20.0 MiB growth +1.50 MiB/h GROWING",
            "pool 1/1",
            "ws up #2 rtt 1.5 ms",
            "turns 7",
            "tools 3",
        ] {
            assert!(line.contains(part), "{part:?} in {line}");
        }
        assert!(!line.contains('\n'));
        let quiet = Status {
            growth_bytes_per_hour: Some(-2048),
            ..Status::default()
        };
        assert!(quiet.to_string().contains("growth -2.0 KiB/h |"), "{quiet}");
        assert!(Status::default().to_string().contains("growth - |"));
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
