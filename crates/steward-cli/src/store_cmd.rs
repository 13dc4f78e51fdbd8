//! `steward store`: read and change a memory, in a `memory.json` file or in
//! one namespace of a Redis server, through steward-store's backend seam;
//! copy a memory between the two.
//!
//! A LOCATION is a Redis URL (`redis://[user:password@]host[:port][/db]?ns=NAME`,
//! also `rediss://` and `unix://`; the namespace defaults to `default`) or
//! else a path to a memory file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use steward_store::{Backend, Map, RedisStore, Store, Value};

use crate::Outcome;

/// How long a Redis read or write keeps retrying (reconnecting) before the
/// command fails: long enough for a server restart, short for a person.
const REDIS_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Print the keys, in insertion order, as a JSON array.
    List {
        /// The memory file, or a redis://host:port/db?ns=NAME URL.
        location: Location,
    },
    /// Print one value as JSON (exit 1 when the key is missing).
    Get {
        /// The memory file, or a redis://host:port/db?ns=NAME URL.
        location: Location,
        /// The key.
        key: String,
    },
    /// Set a key to a JSON value; success is printed only once it is durable.
    Set {
        /// The memory file, or a redis://host:port/db?ns=NAME URL.
        location: Location,
        /// The key.
        key: String,
        /// The value: JSON text, or raw text with `--string`.
        value: String,
        /// Store VALUE as a JSON string, verbatim.
        #[arg(long)]
        string: bool,
        /// Let the entry expire this long from now (30s, 10m, 1h).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Delete a key (exit 1 when the key is missing).
    Delete {
        /// The memory file, or a redis://host:port/db?ns=NAME URL.
        location: Location,
        /// The key.
        key: String,
    },
    /// Print the whole map as JSON, in order, as the Python assistant writes it.
    Export {
        /// The memory file, or a redis://host:port/db?ns=NAME URL.
        location: Location,
    },
    /// Copy every entry, in order and exactly, from SRC to DST (a memory
    /// file or a Redis URL each). Refuses a DST that has entries unless
    /// --force (DST is emptied first, so it ends equal to SRC) or --merge
    /// (DST keeps its other entries; SRC's values replace those of the same
    /// keys, which keep their place; SRC's other keys follow in SRC's
    /// order). Exit 1 when refused. Entries are copied without expiry.
    Copy {
        /// Where to read: a memory file or a redis://...?ns=NAME URL.
        src: Location,
        /// Where to write: a memory file or a redis://...?ns=NAME URL.
        dst: Location,
        /// Replace whatever DST holds.
        #[arg(long, conflicts_with = "merge")]
        force: bool,
        /// Keep DST's entries, overwriting those SRC also has.
        #[arg(long)]
        merge: bool,
    },
    /// Verify the snapshot and the log; say what is wrong and where (modifies
    /// nothing). Memory files only.
    Check {
        /// The memory file.
        file: Location,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fold the log into a Python-format snapshot (repairs a torn last
    /// write). Memory files only.
    Compact {
        /// The memory file.
        file: Location,
    },
}

/// A memory: a file path or a Redis URL.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    File(PathBuf),
    Redis(String),
}

impl std::str::FromStr for Location {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(if steward_store::is_redis_url(s) {
            Location::Redis(s.to_string())
        } else {
            Location::File(PathBuf::from(s))
        })
    }
}

impl Location {
    /// The memory file, or an error for commands that only work on files.
    fn file(&self, what: &str) -> Result<&Path> {
        match self {
            Location::File(p) => Ok(p),
            Location::Redis(_) => {
                bail!("`steward store {what}` works on memory files only, not on a Redis server")
            }
        }
    }
}

/// Runs one `steward store` command.
pub(crate) fn run(cmd: StoreCommand) -> Result<Outcome> {
    // File-only commands need no runtime.
    match cmd {
        StoreCommand::Check { file, json } => check(file.file("check")?, json),
        StoreCommand::Compact { file } => compact(file.file("compact")?),
        cmd => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(run_async(cmd)),
    }
}

async fn run_async(cmd: StoreCommand) -> Result<Outcome> {
    match cmd {
        StoreCommand::List { location } => {
            let keys: Vec<String> = read_all(&location).await?.keys().cloned().collect();
            println!("{}", serde_json::to_string(&keys)?);
            Ok(Outcome::Done)
        }
        StoreCommand::Get { location, key } => match read_one(&location, &key).await? {
            Some(value) => {
                println!("{}", serde_json::to_string_pretty(&value)?);
                Ok(Outcome::Done)
            }
            None => Ok(Outcome::MissingKey(key)),
        },
        StoreCommand::Set {
            location,
            key,
            value,
            string,
            ttl,
        } => set(&location, &key, &value, string, ttl).await,
        StoreCommand::Delete { location, key } => {
            let store = open(&location).await?;
            let existed = store.delete(&key).await;
            store.close().await?;
            if !existed? {
                return Ok(Outcome::MissingKey(key));
            }
            println!("deleted {key:?}");
            Ok(Outcome::Done)
        }
        StoreCommand::Export { location } => {
            println!(
                "{}",
                steward_store::to_python_json(&read_all(&location).await?)
            );
            Ok(Outcome::Done)
        }
        StoreCommand::Copy {
            src,
            dst,
            force,
            merge,
        } => copy(&src, &dst, mode(force, merge)).await,
        StoreCommand::Check { .. } | StoreCommand::Compact { .. } => {
            bail!("internal: file-only command reached the async runner")
        }
    }
}

/// Opens a memory for writing: a file store (taking its lock) or a Redis
/// namespace.
async fn open(location: &Location) -> Result<Box<dyn Backend>> {
    match location {
        Location::File(path) => Ok(Box::new(Store::open(path)?)),
        Location::Redis(url) => {
            let store = RedisStore::builder(url.as_str())
                .retry_for(REDIS_RETRY)
                .build()
                .await?;
            Ok(Box::new(store))
        }
    }
}

/// The whole memory, in order. A file is read without taking its lock, so
/// this works while an assistant has it open.
async fn read_all(location: &Location) -> Result<Map<String, Value>> {
    Ok(read_named(location).await?.0)
}

/// [`read_all`] and the memory's name for messages (a Redis URL without
/// its password).
async fn read_named(location: &Location) -> Result<(Map<String, Value>, String)> {
    match location {
        Location::File(path) => Ok((steward_store::load(path)?, path.display().to_string())),
        Location::Redis(_) => {
            let store = open(location).await?;
            let entries = store.entries().await;
            store.close().await?;
            Ok((entries?.into_iter().collect(), store.location()))
        }
    }
}

async fn read_one(location: &Location, key: &str) -> Result<Option<Value>> {
    match location {
        Location::File(path) => Ok(steward_store::load(path)?.remove(key)),
        Location::Redis(_) => {
            let store = open(location).await?;
            let value = store.get(key).await;
            store.close().await?;
            Ok(value?)
        }
    }
}

async fn set(
    location: &Location,
    key: &str,
    text: &str,
    string: bool,
    ttl: Option<Duration>,
) -> Result<Outcome> {
    let value = if string {
        Value::String(text.to_string())
    } else {
        serde_json::from_str(text).with_context(|| {
            format!("VALUE is not JSON ({text:?}); pass --string to store raw text")
        })?
    };
    let store = open(location).await?;
    // The write resolves only once it is durable (fsynced log, or
    // acknowledged by Redis); closing a file store then folds it into the
    // Python-format snapshot.
    let created = match ttl {
        Some(ttl) => store.upsert_with_ttl(key, value, ttl).await,
        None => store.upsert(key, value).await,
    };
    let closed = store.close().await;
    let created = created?;
    closed?;
    println!("{} {key:?}", if created { "created" } else { "updated" });
    Ok(Outcome::Done)
}

/// What `copy` does with a destination that has entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyMode {
    /// Refuse it.
    Refuse,
    /// Empty it first.
    Force,
    /// Keep its entries, overwrite the common keys.
    Merge,
}

fn mode(force: bool, merge: bool) -> CopyMode {
    match (force, merge) {
        (true, _) => CopyMode::Force,
        (false, true) => CopyMode::Merge,
        (false, false) => CopyMode::Refuse,
    }
}

/// Copies every entry of `src` to `dst`, in order, then re-reads `dst` and
/// checks it holds exactly what it should.
async fn copy(src: &Location, dst: &Location, mode: CopyMode) -> Result<Outcome> {
    if let Location::File(path) = src
        && !path.exists()
    {
        bail!("{}: no such memory file", path.display());
    }
    if same_file(src, dst) {
        bail!("SRC and DST are the same memory");
    }
    let (entries, src_name) = read_named(src).await?;
    let entries: Vec<(String, Value)> = entries.into_iter().collect();
    let store = open(dst).await?;
    let result = copy_into(&*store, &src_name, &entries, mode).await;
    let closed = store.close().await;
    let outcome = result?;
    closed?;
    Ok(outcome)
}

fn same_file(a: &Location, b: &Location) -> bool {
    let (Location::File(a), Location::File(b)) = (a, b) else {
        return false;
    };
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

async fn copy_into(
    dst: &dyn Backend,
    src_name: &str,
    entries: &[(String, Value)],
    mode: CopyMode,
) -> Result<Outcome> {
    let dst_name = dst.location();
    if src_name == dst_name {
        bail!("SRC and DST are the same memory ({dst_name})");
    }
    let before = dst.entries().await?;
    if !before.is_empty() && mode == CopyMode::Refuse {
        return Ok(Outcome::Problem(format!(
            "{dst_name} already holds {} entries; pass --force to replace them or --merge to keep them",
            before.len()
        )));
    }
    let mut expected = before.clone();
    let mut removed = 0;
    if mode == CopyMode::Force && !before.is_empty() {
        dst.reset().await?;
        removed = before.len();
        expected.clear();
    }
    let (new, replaced) = write_entries(dst, entries).await?;
    merge_into(&mut expected, entries);
    let after = dst.entries().await?;
    if let Some(problem) = difference(&expected, &after) {
        return Ok(Outcome::Problem(format!(
            "copied to {dst_name}, but reading it back {problem}"
        )));
    }
    let mut line = format!(
        "copied {} entries from {src_name} to {dst_name} ({new} new, {replaced} replaced",
        entries.len()
    );
    if removed > 0 {
        line.push_str(&format!(", {removed} removed first"));
    }
    println!("{line}); it now holds {} entries", after.len());
    Ok(Outcome::Done)
}

/// Writes the entries in order; returns (new, replaced). A file store
/// queues every write at once (in order, one fsync per batch); Redis gets
/// them one after the other, since concurrent requests over a pool could
/// reorder new keys.
async fn write_entries(dst: &dyn Backend, entries: &[(String, Value)]) -> Result<(usize, usize)> {
    let mut results = Vec::with_capacity(entries.len());
    if steward_store::is_redis_url(&dst.location()) {
        for (k, v) in entries {
            results.push(dst.upsert(k, v.clone()).await?);
        }
    } else {
        let writes: Vec<_> = entries
            .iter()
            .map(|(k, v)| dst.upsert(k, v.clone()))
            .collect();
        for w in writes {
            results.push(w.await?);
        }
    }
    let new = results.iter().filter(|n| **n).count();
    Ok((new, results.len() - new))
}

/// What an upsert of each entry does to `into`: replaced in place, or added last.
fn merge_into(into: &mut Vec<(String, Value)>, entries: &[(String, Value)]) {
    let mut at: std::collections::HashMap<String, usize> = into
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.clone(), i))
        .collect();
    for (k, v) in entries {
        match at.get(k) {
            Some(&i) => into[i].1 = v.clone(),
            None => {
                at.insert(k.clone(), into.len());
                into.push((k.clone(), v.clone()));
            }
        }
    }
}

/// The first difference between what should be and what is, in words.
fn difference(expected: &[(String, Value)], actual: &[(String, Value)]) -> Option<String> {
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        if e.0 != a.0 {
            return Some(format!(
                "has key {:?} at position {i} where {:?} should be",
                a.0, e.0
            ));
        }
        if e.1 != a.1 {
            return Some(format!("has a different value for key {:?}", e.0));
        }
    }
    if expected.len() != actual.len() {
        return Some(format!(
            "has {} entries instead of {}",
            actual.len(),
            expected.len()
        ));
    }
    None
}

fn compact(file: &Path) -> Result<Outcome> {
    let store = Store::open(file)?;
    store.compact()?;
    let keys = store.len();
    store.close()?;
    println!("{}: compacted, {keys} keys", file.display());
    Ok(Outcome::Done)
}

fn check(file: &Path, json: bool) -> Result<Outcome> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn e(k: &str, v: Value) -> (String, Value) {
        (k.to_string(), v)
    }

    #[test]
    fn merge_replaces_in_place_and_appends_in_order() {
        let mut into = vec![e("a", json!(1)), e("b", json!(2))];
        merge_into(&mut into, &[e("c", json!(3)), e("a", json!("one"))]);
        assert_eq!(
            into,
            vec![e("a", json!("one")), e("b", json!(2)), e("c", json!(3))]
        );
    }

    #[test]
    fn difference_names_the_first_mismatch() {
        let a = vec![e("a", json!(1)), e("b", json!(2))];
        assert_eq!(difference(&a, &a), None);
        let b = vec![e("a", json!(1)), e("b", json!(2.0))];
        assert!(difference(&a, &b).unwrap().contains("\"b\""));
        let c = vec![e("b", json!(2)), e("a", json!(1))];
        assert!(difference(&a, &c).unwrap().contains("position 0"));
        assert!(
            difference(&a, &a[..1])
                .unwrap()
                .contains("1 entries instead of 2")
        );
    }

    #[test]
    fn locations_are_redis_urls_or_paths() {
        assert!(matches!(
            "redis://127.0.0.1:6379/0?ns=a".parse::<Location>(),
            Ok(Location::Redis(_))
        ));
        assert!(matches!(
            "memory.json".parse::<Location>(),
            Ok(Location::File(_))
        ));
        let redis: Location = "redis://h/0".parse().unwrap();
        assert!(redis.file("check").is_err());
    }
}
