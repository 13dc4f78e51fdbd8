//! The `steward` command: inspect, check and repair an assistant's memory file.
//!
//! Exit codes: 0 success, 1 a missing key, 2 bad input or a damaged file
//! (with a one-line message on stderr).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
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
    /// Read and change a memory file (`memory.json` and its log).
    #[command(subcommand)]
    Store(StoreCommand),
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
    let Command::Store(cmd) = command;
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
