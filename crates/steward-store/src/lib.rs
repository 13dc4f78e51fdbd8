//! Crash-safe persistent memory for a realtime assistant, compatible with
//! the Python assistant's `memory.json`.
//!
//! The store keeps the whole map in memory (reads never touch the disk) and
//! makes every write durable before reporting it done: writes are appended as
//! checksummed records to a log beside the snapshot (`memory.json.log`), one
//! fsync per group-commit batch shared by all concurrent writers. The log is
//! compacted into the snapshot by size and on [`Store::close`]; the snapshot
//! is byte-identical to Python's `json.dump(memory, f, indent=2)`, so the
//! Python assistant keeps working on it.
//!
//! Writes are async under their plain names: each queues the write and
//! returns a future resolving once it is durable, and never blocks the
//! runtime (the disk work happens on the store's writer thread). Reads come
//! from memory and need no `.await`.
//!
//! ```
//! use steward_store::Store;
//! use serde_json::json;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("memory.json");
//!
//! let store = Store::open(&path)?;
//! assert!(store.create("user_name", "Ada").await?);
//! assert!(!store.create("user_name", "Bob").await?); // create refuses an existing key
//! store.upsert("coffee_strength", 0.75).await?;
//! store.set_as("reminders", &vec!["call the dentist"]).await?;
//! assert!(!store.update("missing", 1).await?); // a missing key is reported, not an error
//! assert_eq!(store.get("user_name"), Some(json!("Ada")));
//! assert_eq!(store.get_as::<Vec<String>>("reminders")?.unwrap(), ["call the dentist"]);
//! assert_eq!(store.list_keys(), ["user_name", "coffee_strength", "reminders"]);
//! assert_eq!(
//!     store.render_prompt(&["user_*"]),
//!     "<memory>\n<item key=\"user_name\">Ada</item>\n</memory>"
//! );
//! store.close().await?; // compacts: memory.json alone holds everything
//!
//! assert_eq!(
//!     std::fs::read_to_string(&path)?,
//!     "{\n  \"user_name\": \"Ada\",\n  \"coffee_strength\": 0.75,\n  \"reminders\": [\n    \"call the dentist\"\n  ]\n}"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Threads outside an async runtime use the `_blocking` form of each write
//! (`upsert_blocking`, `close_blocking`, ...), which waits on the calling
//! thread until the write is durable:
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("memory.json");
//! # steward_store::Store::open(&path)?.upsert_blocking("user_name", "Ada")?;
//! let store = steward_store::Store::open(&path)?;
//! store.upsert_blocking("last_topic", "jazz")?;
//! assert_eq!(store.len(), 2);
//! store.close_blocking()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Backends
//!
//! [`Backend`] is the seam both backends implement with the same
//! semantics (insertion order, `create` refusing an existing key, TTL
//! entries, subscriptions, `render_prompt`; typed access in
//! [`BackendExt`]): the file [`Store`] above, and — with feature `redis` —
//! `RedisStore`, one namespace of a shared Redis server for several
//! assistant processes and machines (see its module docs for the layout in
//! Redis and what a lost connection reports). [`open_backend`] picks one by
//! location: a `redis://host:port/db?ns=alice` URL or a path.
//!
//! ```
//! use std::time::Duration;
//! use steward_store::{Backend, BackendExt, Change};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let dir = tempfile::tempdir()?;
//! let memory = dir.path().join("memory.json");
//! let store: Box<dyn Backend> = steward_store::open_backend(memory.to_str().unwrap()).await?;
//! let mut changes = store.subscribe("user_*").await?;
//! store.set_as("user_name", "Ada").await?;
//! store.upsert_with_ttl("weather", "rain".into(), Duration::from_secs(600)).await?;
//! assert_eq!(store.get_as::<String>("user_name").await?.as_deref(), Some("Ada"));
//! assert_eq!(changes.next().await, Some(("user_name".into(), Change::Set("Ada".into()))));
//! store.close().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # TTL entries
//!
//! [`Store::upsert_with_ttl`] writes an entry that expires; once expired it
//! is invisible to every read at once. The file store keeps the expiry
//! (wall-clock ms, from its [`Clock`]) as a log record and, after a
//! compaction, in `memory.json.ttl` (`{key: [ms, fingerprint]}`, the CRC-32
//! of the value it was written for) beside the snapshot:
//! `memory.json` stays the plain `{key: value}` object the Python assistant
//! reads (it sees a TTL entry as ordinary until a compaction after expiry
//! drops it). Should the key be rewritten in `memory.json` meanwhile (the
//! Python assistant, a hand edit), the fingerprint no longer matches and
//! the expiry is ignored: the new value stays. Expired entries are removed for good by
//! [`Store::sweep_expired`] (the steward facade's monitor cleanup is the
//! place to call it) or by compaction. Redis expires entries natively.
//!
//! # Subscriptions
//!
//! [`Store::subscribe`] / [`Backend::subscribe`] give a [`Subscription`]:
//! `(key, Change)` for the keys matching a pattern, each change once, in
//! commit order, through a bounded buffer that counts what it had to drop.
//! On Redis the changes of every process sharing the namespace arrive.
//!
//! # Files
//!
//! For a snapshot `memory.json`: `memory.json.log` (the log, removed by a
//! clean close), `memory.json.ttl` (expiries of TTL entries, only once
//! there were some), `memory.json.lock` (holds the OS lock; a second opener
//! gets [`Error::Locked`]), and briefly `memory.json.tmp` /
//! `memory.json.log.tmp` during compaction. [`check`] verifies all of them
//! without modifying anything. Every file the store creates gets the mode
//! and owner of `memory.json` (the owner only when run as root: nobody else
//! can give a file away); a new memory's files are 0600, whatever the umask.
//!
//! # Values `serde_json` cannot hold
//!
//! Python's `json.dump` also writes `NaN`, `Infinity`, `-Infinity`,
//! integers wider than 64 bits and strings with lone surrogates. The store
//! opens such files and keeps each such value as its exact JSON text in a
//! raw-JSON object (see [`raw_json`] and [`raw_value`]), which the snapshot
//! writer writes back verbatim: Python reads back what it wrote.
//!
//! # Damage
//!
//! A damaged snapshot is reported with its line and column, a damaged log
//! record with its byte offset; neither is ever overwritten. A torn last
//! log record (a write that was never acknowledged) is cut off on open. An
//! empty `memory.json` (what the Python assistant leaves when it crashes
//! between truncating the file and writing it) opens as an empty memory; a
//! cut-off one is a [`Error::Corrupt`] naming the file, line and column,
//! and stays untouched until a person moves it away, fixes it, or runs
//! [`repair`]: every complete entry of the snapshot, every intact write
//! batch of the log and every readable expiry go into a fresh memory, the
//! damaged files are kept beside it under a dated name, and the
//! [`RepairReport`] lists what was kept and which byte ranges were not.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod check;
mod disk;
mod error;
mod expiry;
mod files;
mod folder;
mod json;
mod limits;
mod log;
mod open;
mod prompt;
#[cfg(feature = "redis")]
mod redis_backend;
mod repair;
mod salvage;
mod store;
mod subscribe;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use backend::{Backend, BackendExt, BoxFuture, Entry};
pub use check::{CheckReport, Problem, Severity, check};
#[cfg(feature = "fault-injection")]
pub use disk::{
    Disk, DiskFile, LockHold, Meta, Perms, Site, StdDisk, repair_on, write_snapshot_on,
};
pub use error::{BoxError, Error, Position, Result};
pub use files::{load, load_with_ttl, write_snapshot};
pub use json::{RAW_JSON_KEY, raw_json, raw_value, to_python_json};
pub use open::{is_redis_url, open_backend};
pub use prompt::{pattern_matches, render_prompt};
#[cfg(feature = "redis")]
pub use redis_backend::{
    RedisBuilder, RedisConfig, RedisConnection, RedisManager, RedisStats, RedisStore,
};
pub use repair::{Lost, RepairReport, repair};
pub use serde_json::{Map, Value};
pub use store::{
    Clock, ManualClock, Stats, Store, StoreBuilder, StoreConfig, SystemClock, WriteFuture,
};
pub use subscribe::{
    Change, DEFAULT_SUBSCRIPTION_BYTES, DEFAULT_SUBSCRIPTION_CAPACITY, Subscription,
    SubscriptionStats,
};

/// The crate's name.
pub const NAME: &str = "steward-store";
