//! The `steward` command: run the realtime assistant (against a local
//! stand-in for the model service by default), run the stand-in alone, and
//! inspect, check and repair an assistant's memory file.
//!
//! Exit codes: 0 success, 1 a missing key, 2 bad input, a damaged file or a
//! failed run (with a one-line message on stderr).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use steward_cli::assistant::{Assistant, AssistantConfig, Input};
use steward_cli::standin::{Standin, StandinConfig};
use steward_store::{Map, Store, Value};

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
    Assistant(AssistantArgs),
    /// Run the local stand-in for the realtime model service alone (not the
    /// model service: a tone, a canned transcript and scripted tool calls).
    Standin(StandinArgs),
    /// Read and change a memory file (`memory.json` and its log).
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
    /// The realtime service's URL (wss://...); the API key is read from
    /// OPENAI_API_KEY. Default: a local stand-in.
    #[arg(long)]
    url: Option<String>,
    /// The memory file the tools use.
    #[arg(long, value_name = "PATH", default_value = "memory.json")]
    memory: PathBuf,
    /// How long to run (30s, 10m, 1h). Default: until Ctrl-C (or, with
    /// --input, until the file ended and the last answer came).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Split the duration into this many sessions (fresh connections).
    #[arg(long, default_value_t = 1)]
    sessions: u32,
    /// Commit a turn this often.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    turn: Duration,
    /// Serve /health (JSON) and /metrics (Prometheus) here, e.g. 127.0.0.1:9898.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Record RSS every second to DIR/rss.csv and draw DIR/rss.png at the end.
    #[arg(long, value_name = "DIR")]
    soak_dir: Option<PathBuf>,
    /// Also write the final report as JSON here.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    /// Do not play the answers (they are still received and counted).
    #[arg(long)]
    no_playback: bool,
    /// No live status line.
    #[arg(long, short)]
    quiet: bool,
    /// Refresh the status (and sample RSS) this often.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    poll: Duration,
    /// Stand-in only: every Nth audio turn asks to remember something (0: never).
    #[arg(long, value_name = "N", default_value_t = 3)]
    remember_every: u32,
    /// Stand-in only: drop the connection after every Nth audio turn (0:
    /// never), so the run reconnects.
    #[arg(long, value_name = "N", default_value_t = 0)]
    drop_every: u32,
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
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Print the keys, in insertion order, as a JSON array.
    List {
        /// The memory file.
        file: PathBuf,
    },
    /// Print one value as JSON (exit 1 when the key is missing).
    Get {
        /// The memory file.
        file: PathBuf,
        /// The key.
        key: String,
    },
    /// Set a key to a JSON value; success is printed only once it is durable.
    Set {
        /// The memory file.
        file: PathBuf,
        /// The key.
        key: String,
        /// The value: JSON text, or raw text with `--string`.
        value: String,
        /// Store VALUE as a JSON string, verbatim.
        #[arg(long)]
        string: bool,
    },
    /// Delete a key (exit 1 when the key is missing).
    Delete {
        /// The memory file.
        file: PathBuf,
        /// The key.
        key: String,
    },
    /// Print the whole map as JSON, in order, as the Python assistant writes it.
    Export {
        /// The memory file.
        file: PathBuf,
    },
    /// Verify the snapshot and the log; say what is wrong and where (modifies nothing).
    Check {
        /// The memory file.
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fold the log into a Python-format snapshot (repairs a torn last write).
    Compact {
        /// The memory file.
        file: PathBuf,
    },
}

/// How a command ended, beyond plain success.
enum Outcome {
    Done,
    MissingKey(String),
    Damaged,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli.command) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::MissingKey(key)) => {
            eprintln!("steward: no key {key:?}");
            ExitCode::from(1)
        }
        Ok(Outcome::Damaged) => ExitCode::from(2),
        Err(e) => {
            // One line: the chain of causes joined.
            eprintln!("steward: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(verbose: bool) {
    if !verbose {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(command: Command) -> Result<Outcome> {
    match command {
        Command::Assistant(args) => runtime()?.block_on(assistant(args)),
        Command::Standin(args) => runtime()?.block_on(standin(args)),
        Command::Store(cmd) => store(cmd),
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
    config.duration = args.duration;
    config.sessions = args.sessions;
    config.turn_ms = u32::try_from(args.turn.as_millis()).unwrap_or(u32::MAX);
    config.http_addr = args.http;
    config.soak_dir = args.soak_dir;
    config.playback = !args.no_playback;
    config.status_line = !args.quiet;
    config.poll_ms = u64::try_from(args.poll.as_millis()).unwrap_or(u64::MAX);
    config.standin.remember_every = args.remember_every;
    config.standin.drop_every = args.drop_every;

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
    println!("{report}");
    if let Some(path) = args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    Ok(Outcome::Done)
}

async fn standin(args: StandinArgs) -> Result<Outcome> {
    let mut config = StandinConfig::default();
    config.addr = args.addr;
    config.reply_audio_ms = args.reply_ms;
    config.remember_every = args.remember_every;
    config.drop_every = args.drop_every;
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

fn store(cmd: StoreCommand) -> Result<Outcome> {
    match cmd {
        StoreCommand::List { file } => {
            let keys: Vec<String> = load(&file)?.keys().cloned().collect();
            println!("{}", serde_json::to_string(&keys)?);
            Ok(Outcome::Done)
        }
        StoreCommand::Get { file, key } => match load(&file)?.get(&key) {
            Some(value) => {
                println!("{}", serde_json::to_string_pretty(value)?);
                Ok(Outcome::Done)
            }
            None => Ok(Outcome::MissingKey(key)),
        },
        StoreCommand::Set {
            file,
            key,
            value,
            string,
        } => set(&file, &key, &value, string),
        StoreCommand::Delete { file, key } => {
            let store = open(&file)?;
            let existed = store.delete(&key)?;
            store.close()?;
            if !existed {
                return Ok(Outcome::MissingKey(key));
            }
            println!("deleted {key:?}");
            Ok(Outcome::Done)
        }
        StoreCommand::Export { file } => {
            println!("{}", steward_store::to_python_json(&load(&file)?));
            Ok(Outcome::Done)
        }
        StoreCommand::Check { file, json } => check(&file, json),
        StoreCommand::Compact { file } => {
            let store = open(&file)?;
            store.compact()?;
            let keys = store.len();
            store.close()?;
            println!("{}: compacted, {keys} keys", file.display());
            Ok(Outcome::Done)
        }
    }
}

/// Reads the current contents without taking the lock, so it works while an
/// assistant has the store open.
fn load(file: &PathBuf) -> Result<Map<String, Value>> {
    Ok(steward_store::load(file)?)
}

fn open(file: &PathBuf) -> Result<Store> {
    Ok(Store::open(file)?)
}

fn set(file: &PathBuf, key: &str, text: &str, string: bool) -> Result<Outcome> {
    let value = if string {
        Value::String(text.to_string())
    } else {
        serde_json::from_str(text).with_context(|| {
            format!("VALUE is not JSON ({text:?}); pass --string to store raw text")
        })?
    };
    let store = open(file)?;
    let existed = store.contains_key(key);
    // `upsert` returns only once the write is fsynced; `close` then folds it
    // into the Python-format snapshot.
    store.upsert(key, value)?;
    store.close()?;
    println!("{} {key:?}", if existed { "updated" } else { "created" });
    Ok(Outcome::Done)
}

fn check(file: &PathBuf, json: bool) -> Result<Outcome> {
    let report = steward_store::check(file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    if report.is_ok() {
        Ok(Outcome::Done)
    } else {
        Ok(Outcome::Damaged)
    }
}
