//! `steward store`: read and change a memory, in a `memory.json` file or in
//! one namespace of a Redis server, through steward-store's backend seam;
//! copy a memory between the two.
//!
//! A LOCATION is a Redis URL (`redis://[user:password@]host[:port][/db]?ns=NAME`,
//! also `rediss://` and `unix://`; the namespace defaults to `default`) or
//! else a path to a memory file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use steward::store::{Backend, BoxFuture, Entry, Map, RedisStore, Store, Value};

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
    /// --force (DST ends equal to SRC; every entry is checked against the
    /// limits first; a file DST is replaced in one step, so it stays whole
    /// if the copy fails or is killed; a Redis DST is emptied first) or --merge
    /// (DST keeps its other entries; SRC's values replace those of the same
    /// keys, which keep their place; SRC's other keys follow in SRC's
    /// order). Exit 1 when refused. A TTL entry keeps the time it has left
    /// (one that runs out during the copy is left out).
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
    /// Salvage a damaged memory: every complete entry of the file, every
    /// intact write of its log and every readable expiry go into a fresh
    /// memory in its place; the damaged files are kept beside it, unchanged,
    /// under a dated name (FILE.damaged-2026-12-06T18-30-00Z). Prints what
    /// was kept and what could not be (byte ranges, reasons). A memory that
    /// is not damaged is left alone. Memory files only.
    Repair {
        /// The memory file.
        file: Location,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
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
        Ok(if steward::store::is_redis_url(s) {
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
    let result = match cmd {
        StoreCommand::Check { file, json } => check(file.file("check")?, json),
        StoreCommand::Compact { file } => compact(file.file("compact")?),
        StoreCommand::Repair { file, json } => repair(file.file("repair")?, json),
        cmd => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(run_async(cmd)),
    };
    result.map_err(with_repair_hint)
}

/// A damaged memory file's error, with the command that salvages it.
fn with_repair_hint(e: anyhow::Error) -> anyhow::Error {
    let Some(path) = e
        .downcast_ref::<steward::store::Error>()
        .and_then(damaged_memory)
    else {
        return e;
    };
    let shown = path.display();
    e.context(format!(
        "{shown} is damaged (`steward store repair {shown}` salvages what can be read)"
    ))
}

/// The memory file (`memory.json`, also for its log or expiry file) a
/// damage error is about.
fn damaged_memory(e: &steward::store::Error) -> Option<PathBuf> {
    use steward::store::Error;
    let path = match e {
        Error::Corrupt { path, .. } | Error::Unsupported { path, .. } => path,
        Error::SnapshotChanged { snapshot, .. } | Error::SnapshotModified { snapshot } => snapshot,
        _ => return None,
    };
    let text = path.to_string_lossy();
    let memory = [".log", ".ttl"]
        .iter()
        .find_map(|suffix| text.strip_suffix(suffix))
        .unwrap_or(&text);
    Some(PathBuf::from(memory))
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
                steward::store::to_python_json(&read_all(&location).await?)
            );
            Ok(Outcome::Done)
        }
        StoreCommand::Copy {
            src,
            dst,
            force,
            merge,
        } => copy(&src, &dst, mode(force, merge)).await,
        StoreCommand::Check { .. } | StoreCommand::Compact { .. } | StoreCommand::Repair { .. } => {
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
    let (entries, _) = read_named(location).await?;
    Ok(entries.into_iter().map(|e| (e.key, e.value)).collect())
}

/// [`read_all`] with the time each TTL entry has left, and the memory's
/// name for messages (a Redis URL without its password).
async fn read_named(location: &Location) -> Result<(Vec<Entry>, String)> {
    match location {
        Location::File(path) => Ok((
            steward::store::load_with_ttl(path)?,
            path.display().to_string(),
        )),
        Location::Redis(_) => {
            let store = open(location).await?;
            let entries = store.entries_with_ttl().await;
            store.close().await?;
            Ok((entries?, store.location()))
        }
    }
}

async fn read_one(location: &Location, key: &str) -> Result<Option<Value>> {
    match location {
        Location::File(path) => Ok(steward::store::load(path)?.remove(key)),
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
    let read_at = Instant::now();
    match (mode, dst) {
        (CopyMode::Force, Location::File(path)) => {
            return replace_file(path, &src_name, entries, read_at);
        }
        (CopyMode::Force, Location::Redis(url)) => {
            return replace_redis(url, &src_name, entries, read_at).await;
        }
        _ => {}
    }
    let store = open(dst).await?;
    let result = copy_into(&*store, &src_name, entries, read_at, mode).await;
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

/// Copies `entries` (read from `src_name` at `read_at`) into `dst`, next
/// to what it holds (`--merge`) or only if it holds nothing (`--force`
/// replaces instead: [`replace_file`], [`replace_redis`]).
async fn copy_into(
    dst: &dyn Backend,
    src_name: &str,
    entries: Vec<Entry>,
    read_at: Instant,
    mode: CopyMode,
) -> Result<Outcome> {
    let dst_name = dst.location();
    if src_name == dst_name {
        bail!("SRC and DST are the same memory ({dst_name})");
    }
    let before = dst.entries_with_ttl().await?;
    if !before.is_empty() && mode == CopyMode::Refuse {
        return Ok(Outcome::Problem(format!(
            "{dst_name} already holds {} entries; pass --force to replace them or --merge to keep them",
            before.len()
        )));
    }
    let mut expected = before;
    // TTL entries keep the time they have left, less the time since SRC
    // was read; one that ran out meanwhile is not written at all.
    let (entries, expired) = time_left(entries, read_at.elapsed());
    let written_at = Instant::now();
    let (new, replaced) = write_entries(dst, &entries).await?;
    merge_into(&mut expected, &entries);
    let after = dst.entries_with_ttl().await?;
    let copied = Copied {
        src_name,
        dst_name: &dst_name,
        entries: &entries,
        expired,
        what: format!("{new} new, {replaced} replaced"),
    };
    Ok(copied.report(&expected, &after, written_at.elapsed()))
}

/// What a copy wrote, for its one-line report.
struct Copied<'a> {
    src_name: &'a str,
    dst_name: &'a str,
    entries: &'a [Entry],
    /// Entries that ran out during the copy (not written).
    expired: usize,
    /// What happened to the destination's entries.
    what: String,
}

impl Copied<'_> {
    /// Checks `after` (the destination read back `elapsed` after writing)
    /// against `expected`, and prints the report line.
    fn report(self, expected: &[Entry], after: &[Entry], elapsed: Duration) -> Outcome {
        let (src_name, dst_name) = (self.src_name, self.dst_name);
        if let Some(problem) = difference(expected, after, elapsed) {
            return Outcome::Problem(format!(
                "copied to {dst_name}, but reading it back {problem}"
            ));
        }
        let mut line = format!(
            "copied {} entries from {src_name} to {dst_name} ({}",
            self.entries.len(),
            self.what
        );
        let with_ttl = self.entries.iter().filter(|e| e.ttl.is_some()).count();
        if with_ttl > 0 {
            line.push_str(&format!(", {with_ttl} with their expiry"));
        }
        if self.expired > 0 {
            line.push_str(&format!(", {} expired during the copy", self.expired));
        }
        println!("{line}); it now holds {} entries", after.len());
        Outcome::Done
    }
}

/// `copy --force` into a memory file: the whole new content is checked
/// against the file store's limits and then replaces the old in one step
/// (the old memory stays whole if anything fails or the copy is killed).
fn replace_file(
    path: &Path,
    src_name: &str,
    entries: Vec<Entry>,
    read_at: Instant,
) -> Result<Outcome> {
    let dst_name = path.display().to_string();
    if src_name == dst_name {
        bail!("SRC and DST are the same memory ({dst_name})");
    }
    let (entries, expired) = time_left(entries, read_at.elapsed());
    let written_at = Instant::now();
    let removed = Store::builder(path).replace_all(&entries)?;
    let after = steward::store::load_with_ttl(path)?;
    let copied = Copied {
        src_name,
        dst_name: &dst_name,
        entries: &entries,
        expired,
        what: format!("replacing all {removed} it held"),
    };
    Ok(copied.report(&entries, &after, written_at.elapsed()))
}

/// `copy --force` into a Redis namespace: the whole new content is checked
/// against the namespace's limits and then replaces the old in one script
/// run on the server (the old entries stay whole if anything fails or the
/// copy is killed).
async fn replace_redis(
    url: &str,
    src_name: &str,
    entries: Vec<Entry>,
    read_at: Instant,
) -> Result<Outcome> {
    let store = RedisStore::builder(url)
        .retry_for(REDIS_RETRY)
        .build()
        .await?;
    let dst_name = store.location().to_string();
    let result = async {
        if src_name == dst_name {
            bail!("SRC and DST are the same memory ({dst_name})");
        }
        let (entries, expired) = time_left(entries, read_at.elapsed());
        let written_at = Instant::now();
        let removed = store.replace_all(&entries).await?;
        let after = store.entries_with_ttl().await?;
        let copied = Copied {
            src_name,
            dst_name: &dst_name,
            entries: &entries,
            expired,
            what: format!("replacing all {removed} it held"),
        };
        Ok(copied.report(&entries, &after, written_at.elapsed()))
    }
    .await;
    let closed = store.close().await;
    let outcome = result?;
    closed?;
    Ok(outcome)
}

/// Writes the entries in order; returns (new, replaced). A file store
/// queues every write at once (in order, one fsync per batch); Redis gets
/// them one after the other, since concurrent requests over a pool could
/// reorder new keys.
async fn write_entries(dst: &dyn Backend, entries: &[Entry]) -> Result<(usize, usize)> {
    let mut results = Vec::with_capacity(entries.len());
    if steward::store::is_redis_url(&dst.location()) {
        for e in entries {
            results.push(write_one(dst, e).await?);
        }
    } else {
        let writes: Vec<_> = entries.iter().map(|e| write_one(dst, e)).collect();
        for w in writes {
            results.push(w.await?);
        }
    }
    let new = results.iter().filter(|n| **n).count();
    Ok((new, results.len() - new))
}

/// Upserts one entry, with its expiry if it has one.
fn write_one<'a>(
    dst: &'a dyn Backend,
    e: &'a Entry,
) -> BoxFuture<'a, steward::store::Result<bool>> {
    match e.ttl {
        Some(ttl) => dst.upsert_with_ttl(&e.key, e.value.clone(), ttl),
        None => dst.upsert(&e.key, e.value.clone()),
    }
}

/// The entries with `elapsed` taken off every TTL, and how many it used up
/// (those are left out).
fn time_left(entries: Vec<Entry>, elapsed: Duration) -> (Vec<Entry>, usize) {
    let read = entries.len();
    let left: Vec<Entry> = entries
        .into_iter()
        .filter_map(|mut e| {
            if let Some(ttl) = e.ttl {
                e.ttl = Some(ttl.checked_sub(elapsed).filter(|t| !t.is_zero())?);
            }
            Some(e)
        })
        .collect();
    let expired = read - left.len();
    (left, expired)
}

/// What an upsert of each entry does to `into`: replaced in place (value
/// and expiry), or added last.
fn merge_into(into: &mut Vec<Entry>, entries: &[Entry]) {
    let mut at: std::collections::HashMap<String, usize> = into
        .iter()
        .enumerate()
        .map(|(i, e)| (e.key.clone(), i))
        .collect();
    for e in entries {
        match at.get(&e.key) {
            Some(&i) => into[i] = e.clone(),
            None => {
                at.insert(e.key.clone(), into.len());
                into.push(e.clone());
            }
        }
    }
}

/// The first difference between what should be and what is, in words,
/// read back `elapsed` after writing: a TTL entry must still have one, no
/// longer than expected; one whose time may have run out since is not
/// compared.
fn difference(expected: &[Entry], actual: &[Entry], elapsed: Duration) -> Option<String> {
    let may_be_gone = |e: &Entry| e.ttl.is_some_and(|t| t <= elapsed);
    let gone: std::collections::HashSet<&str> = expected
        .iter()
        .filter(|e| may_be_gone(e))
        .map(|e| e.key.as_str())
        .collect();
    let expected: Vec<&Entry> = expected.iter().filter(|e| !may_be_gone(e)).collect();
    let actual: Vec<&Entry> = actual
        .iter()
        .filter(|e| !gone.contains(e.key.as_str()))
        .collect();
    for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
        if e.key != a.key {
            return Some(format!(
                "has key {:?} at position {i} where {:?} should be",
                a.key, e.key
            ));
        }
        if e.value != a.value {
            return Some(format!("has a different value for key {:?}", e.key));
        }
        match (e.ttl, a.ttl) {
            (None, None) => {}
            (Some(want), Some(got)) if got <= want => {}
            (None, Some(_)) => return Some(format!("has an expiry on key {:?}", e.key)),
            (Some(_), None) => return Some(format!("has no expiry on key {:?}", e.key)),
            (Some(want), Some(got)) => {
                return Some(format!(
                    "gives key {:?} {got:?} to live instead of at most {want:?}",
                    e.key
                ));
            }
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
    store.compact_blocking()?;
    let keys = store.len();
    store.close_blocking()?;
    println!("{}: compacted, {keys} keys", file.display());
    Ok(Outcome::Done)
}

fn check(file: &Path, json: bool) -> Result<Outcome> {
    let report = steward::store::check(file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    if report.is_ok() {
        return Ok(Outcome::Done);
    }
    if !json {
        let shown = file.display();
        println!("to salvage what can be read: steward store repair {shown}");
    }
    Ok(Outcome::Damaged)
}

fn repair(file: &Path, json: bool) -> Result<Outcome> {
    let report = steward::store::repair(file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn e(k: &str, v: Value) -> Entry {
        Entry::new(k, v, None)
    }

    fn t(k: &str, v: Value, ms: u64) -> Entry {
        Entry::new(k, v, Some(Duration::from_millis(ms)))
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
        let none = Duration::ZERO;
        assert_eq!(difference(&a, &a, none), None);
        let b = vec![e("a", json!(1)), e("b", json!(2.0))];
        assert!(difference(&a, &b, none).unwrap().contains("\"b\""));
        let c = vec![e("b", json!(2)), e("a", json!(1))];
        assert!(difference(&a, &c, none).unwrap().contains("position 0"));
        assert!(
            difference(&a, &a[..1], none)
                .unwrap()
                .contains("1 entries instead of 2")
        );
    }

    #[test]
    fn difference_checks_expiries() {
        let want = vec![
            e("a", json!(1)),
            t("b", json!(2), 60_000),
            t("c", json!(3), 5),
        ];
        let ms = Duration::from_millis;
        // Less time left is fine; c may have expired after 10 ms.
        let got = vec![e("a", json!(1)), t("b", json!(2), 59_000)];
        assert_eq!(difference(&want, &got, ms(10)), None);
        // ... but not after 1 ms.
        assert!(difference(&want, &got, ms(1)).is_some());
        let permanent = vec![e("a", json!(1)), e("b", json!(2))];
        assert!(
            difference(&want, &permanent, ms(10))
                .unwrap()
                .contains("no expiry")
        );
        let longer = vec![e("a", json!(1)), t("b", json!(2), 61_000)];
        assert!(
            difference(&want, &longer, ms(10))
                .unwrap()
                .contains("at most")
        );
        let extra = vec![t("a", json!(1), 5), t("b", json!(2), 59_000)];
        assert!(
            difference(&want, &extra, ms(10))
                .unwrap()
                .contains("has an expiry")
        );
    }

    #[test]
    fn time_left_drops_what_ran_out() {
        let ms = Duration::from_millis;
        let (left, expired) = time_left(
            vec![
                e("a", json!(1)),
                t("b", json!(2), 100),
                t("c", json!(3), 10),
            ],
            ms(10),
        );
        assert_eq!(left, vec![e("a", json!(1)), t("b", json!(2), 90)]);
        assert_eq!(expired, 1);
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
