//! The `steward` command: run the realtime assistant (against a local
//! stand-in for the model service by default), run the stand-in alone, and
//! inspect, check and repair an assistant's memory file.
//!
//! Exit codes: 0 success, 1 a missing key or a refused copy, 2 bad input, a damaged file or a
//! failed run (with a one-line message on stderr).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use steward_cli::assistant::{Assistant, AssistantConfig, Input};
use steward_cli::standin::{Api, Standin, StandinConfig};
use store_cmd::StoreCommand;

#[cfg(feature = "dhat-heap")]
mod heap;
mod logging;
mod store_cmd;

/// With feature `dhat-heap` (for `cargo xtask soak --heap`), dhat counts
/// every allocation; see `heap.rs`.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// jemalloc for Rust's allocations (feature `jemalloc`, on by default):
/// glibc kept a growing share of what the assistant freed over hours of
/// sessions, even trimmed every minute (#22; figures in ARCHITECTURE.md).
#[cfg(all(feature = "jemalloc", not(feature = "dhat-heap")))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Keeps a realtime assistant's memory healthy.
#[derive(Debug, Parser)]
#[command(name = "steward", version, about, propagate_version = true)]
struct Cli {
    /// Log what happens to stderr (`RUST_LOG` refines it).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the realtime voice assistant: capture, stream, play, run tools,
    /// print a live status line and a final report. Without --url it talks
    /// to a local stand-in for the model service.
    Assistant(Box<AssistantArgs>),
    /// Run the local stand-in for the realtime model service alone (not the
    /// model service: a tone, a canned transcript and scripted tool calls).
    Standin(StandinArgs),
    /// Read and change a memory: a file (`memory.json` and its log) or a
    /// Redis namespace (redis://host:port/db?ns=NAME); copy between them.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Args)]
struct AssistantArgs {
    /// Listen to this WAV file (any rate and channels) instead of the input
    /// device; silence follows once it ends.
    #[arg(long, value_name = "FILE.wav", conflicts_with = "silence")]
    input: Option<PathBuf>,
    /// Listen to generated silence instead of the input device.
    #[arg(long)]
    silence: bool,
    /// Listen to generated talking (bursts of voiced noise between pauses,
    /// often over the answers) instead of the input device.
    #[arg(long, conflicts_with_all = ["input", "silence"])]
    talk: bool,
    /// The realtime service's URL (wss://...); the API key is read from
    /// OPENAI_API_KEY. Default: a local stand-in.
    #[arg(long)]
    url: Option<String>,
    /// The memory the tools use: a file, or a Redis namespace shared with
    /// other assistants (redis://host:port/db?ns=NAME, rediss:// for TLS).
    #[arg(long, value_name = "PATH|URL", default_value = "memory.json")]
    memory: PathBuf,
    /// Most keys the memory may hold (default 100,000): a remember that
    /// would create one more is a tool error the model sees, and nothing
    /// is stored.
    #[arg(long, value_name = "N")]
    max_keys: Option<usize>,
    /// Say this to the model as typed text once the conversation is up
    /// (repeatable; sent in order).
    #[arg(long, value_name = "TEXT")]
    say: Vec<String>,
    /// How long to run (30s, 10m, 1h). Default: until Ctrl-C (or, with
    /// --input, until the file ended and the last answer came).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Split the duration into this many sessions (fresh connections).
    #[arg(long, default_value_t = 1)]
    sessions: u32,
    /// Who ends the user's turn: the service's voice detection (server) or
    /// a commit every --turn (manual).
    #[arg(long, value_enum, default_value_t = TurnMode::Server)]
    turn_detection: TurnMode,
    /// With --turn-detection manual: commit a turn this often.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    turn: Duration,
    /// The longest the service keeps a session (60m on the GA API, 30m on
    /// the beta); sessions are renewed a margin before.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60m")]
    max_session: Duration,
    /// Renew this long before a session would end.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    renew_margin: Duration,
    /// Serve /health (JSON) and /metrics (Prometheus) here, e.g. 127.0.0.1:9898.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Let --http listen on an address other than loopback (it serves
    /// counters and names, never memory contents, to whoever connects).
    #[arg(long, requires = "http")]
    http_allow_remote: bool,
    /// Record RSS every second to DIR/rss.csv and draw DIR/rss.png at the end.
    #[arg(long, value_name = "DIR")]
    soak_dir: Option<PathBuf>,
    /// Also write the final report as JSON here.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    /// Do not play the answers (they are still received and counted).
    #[arg(long)]
    no_playback: bool,
    /// The audio host: default (PipeWire if built in and reachable, then
    /// PulseAudio, then ALSA), alsa, pulseaudio or pipewire.
    #[arg(long, value_name = "HOST", default_value = "default", value_parser = parse_audio_host)]
    audio_host: steward::audio::AudioHost,
    /// No live status line.
    #[arg(long, short)]
    quiet: bool,
    /// Refresh the status (and sample RSS) this often.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    poll: Duration,
    /// Hand memory glibc keeps after it was freed back to the system this
    /// often (malloc_trim; 0s: never).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    trim_every: Duration,
    /// Stand-in only: every Nth audio turn asks to remember something (0: never).
    #[arg(long, value_name = "N", default_value_t = 3)]
    remember_every: u32,
    /// Stand-in only: drop the connection after every Nth audio turn (0:
    /// never), so the run reconnects.
    #[arg(long, value_name = "N", default_value_t = 0)]
    drop_every: u32,
    /// Stand-in only: end each session this long after it started, as the
    /// service does at its maximum (0: never); the assistant renews before.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    standin_session_limit: Duration,
}

/// `--turn-detection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TurnMode {
    /// The service's voice activity detection.
    Server,
    /// Commits every --turn.
    Manual,
}

#[derive(Debug, Args)]
struct StandinArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8765")]
    addr: SocketAddr,
    /// Length of each answer in ms (0: half the committed audio).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    reply_ms: u32,
    /// Every Nth audio turn asks to remember something (0: never).
    #[arg(long, value_name = "N", default_value_t = 3)]
    remember_every: u32,
    /// Drop each connection after every Nth audio turn (0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    drop_every: u32,
    /// End each session this long after it started (30s, 10m), as the
    /// service does at its maximum session length.
    #[arg(long, value_parser = humantime::parse_duration)]
    session_limit: Option<Duration>,
    /// Event names: ga or beta.
    #[arg(long, default_value = "ga")]
    api: Api,
    /// Stream answers at this multiple of real time (0: each at once).
    #[arg(long, default_value_t = 4.0)]
    speed: f64,
    /// Corrupt every Nth audio delta (0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    bad_delta_every: u32,
}

/// How long the final report may wait for a stdout nobody reads.
const STDOUT_PATIENCE: Duration = Duration::from_secs(5);

/// How a command ended, beyond plain success.
enum Outcome {
    Done,
    MissingKey(String),
    Damaged,
    /// Refused or found wrong (exit 1), with the message to print.
    Problem(String),
}

fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    let _heap = heap::start_from_env();
    let cli = Cli::parse();
    logging::init(cli.verbose);
    match run(cli.command) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::MissingKey(key)) => {
            eprintln!("steward: no key {key:?}");
            ExitCode::from(1)
        }
        Ok(Outcome::Damaged) => ExitCode::from(2),
        Ok(Outcome::Problem(message)) => {
            eprintln!("steward: {message}");
            ExitCode::from(1)
        }
        Err(e) => {
            // One line: the chain of causes joined.
            eprintln!("steward: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<Outcome> {
    match command {
        Command::Assistant(args) => runtime()?.block_on(assistant(*args)),
        Command::Standin(args) => runtime()?.block_on(standin(args)),
        Command::Store(cmd) => store_cmd::run(cmd),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("steward-rt")
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves on Ctrl-C or (Unix) SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn assistant(args: AssistantArgs) -> Result<Outcome> {
    let mut config = AssistantConfig::default();
    config.input = match (args.input, args.silence) {
        (Some(path), _) => Input::Wav(path),
        (None, true) => Input::Silence,
        (None, false) => Input::Device,
    };
    if args.talk {
        config.input = Input::Talk;
    }
    if args.url.is_some() {
        // Read here, handed over, never printed.
        config.api_key = std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        if config.api_key.is_none() {
            eprintln!("steward: OPENAI_API_KEY is not set; connecting without a key");
        }
    }
    config.url = args.url;
    config.memory = args.memory;
    config.max_keys = args.max_keys;
    config.say = args.say;
    config.duration = args.duration;
    config.sessions = args.sessions;
    config.turn_ms = u32::try_from(args.turn.as_millis()).unwrap_or(u32::MAX);
    if args.turn_detection == TurnMode::Manual {
        config.realtime.turn_detection = steward::realtime::TurnDetection::Manual;
    }
    config.realtime.max_session = args.max_session;
    config.realtime.renew_margin = args.renew_margin;
    config.http_addr = args.http;
    config.http_allow_remote = args.http_allow_remote;
    config.soak_dir = args.soak_dir;
    config.playback = !args.no_playback;
    config.audio_host = args.audio_host;
    config.status_line = !args.quiet;
    config.poll_ms = u64::try_from(args.poll.as_millis()).unwrap_or(u64::MAX);
    config.monitor.trim_every = Some(args.trim_every).filter(|d| !d.is_zero());
    config.standin.remember_every = args.remember_every;
    config.standin.drop_every = args.drop_every;
    config.standin.session_limit_ms =
        u64::try_from(args.standin_session_limit.as_millis()).unwrap_or(u64::MAX);

    let assistant = Assistant::start(config).await?;
    if let Some(url) = assistant.standin_url() {
        eprintln!("steward: talking to the local stand-in for the model service at {url}");
    }
    if let Some(addr) = assistant.http_addr() {
        eprintln!("steward: serving http://{addr}/health and http://{addr}/metrics");
    }
    let stop = assistant.stop_handle();
    let signals = tokio::spawn(async move {
        interrupted().await;
        stop.stop();
    });
    let report = assistant.wait().await;
    signals.abort();
    let report = report?;
    // The file first: stdout may be a pipe nobody reads.
    if let Some(path) = args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if !steward_cli::assistant::print_within(format!("{report}\n"), STDOUT_PATIENCE) {
        eprintln!("steward: stdout is not being read; the report was not printed");
    }
    Ok(Outcome::Done)
}

async fn standin(args: StandinArgs) -> Result<Outcome> {
    let mut config = StandinConfig::default();
    config.addr = args.addr;
    config.reply_audio_ms = args.reply_ms;
    config.remember_every = args.remember_every;
    config.drop_every = args.drop_every;
    config.session_limit_ms = args
        .session_limit
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    config.api = args.api;
    config.reply_speed = args.speed;
    config.bad_delta_every = args.bad_delta_every;
    let standin = Standin::start(config).await?;
    println!(
        "stand-in realtime server (a local stand-in, not the model service) on {}",
        standin.url()
    );
    interrupted().await;
    let stats = standin.stats();
    standin.close().await;
    println!("{}", serde_json::to_string_pretty(&stats)?);
    Ok(Outcome::Done)
}

/// `--audio-host`: the names steward-audio's `AudioHost` parses.
fn parse_audio_host(s: &str) -> Result<steward::audio::AudioHost, String> {
    s.parse().map_err(|e: steward::audio::Error| e.to_string())
}
