//! The crate's one error type.

use std::fmt;
use std::path::PathBuf;

/// Where in a file a problem is: a text position in the snapshot, a byte
/// offset in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// 1-based line and column (columns count characters, as Python does).
    Line {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// Byte offset from the start of the file.
    Offset(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line { line, column } => write!(f, "line {line} column {column}"),
            Position::Offset(o) => write!(f, "byte offset {o}"),
        }
    }
}

/// Everything that can go wrong in steward-store.
///
/// A message names the thing (path, key, server) and leaves the cause to
/// [`source()`](std::error::Error::source), so a printed chain (`{:#}` of
/// an `anyhow::Error`) shows each cause once; [`Error::chain`] gives the
/// message with its causes as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call on `path` failed (disk full, permissions, ...).
    #[error("{op} {path}")]
    Io {
        /// What was being done ("writing", "fsync of", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another `Store` in this one) holds the store's lock.
    #[error("store is locked by another process (lock file {path})")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A file is damaged. It was not modified.
    #[error("{path} is corrupt at {at}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where the damage starts.
        at: Position,
        /// What is wrong.
        reason: String,
    },
    /// The snapshot holds something steward cannot keep exactly (a key with a
    /// lone surrogate, nesting deeper than the reader's limit). Refused rather
    /// than silently changed; the file was not modified. (Values such as NaN,
    /// Infinity, wide integers and strings with lone surrogates are kept as
    /// raw JSON instead: see [`raw_json`](crate::raw_json).)
    #[error("{path} at {at}: value of key {key:?} cannot be kept exactly: {reason}")]
    Unsupported {
        /// The snapshot.
        path: PathBuf,
        /// Where the value starts.
        at: Position,
        /// The top-level key holding the value (empty if the problem is in a key).
        key: String,
        /// What the value is.
        reason: String,
    },
    /// The snapshot was rewritten by someone else while the log still holds
    /// writes made on top of the previous snapshot. Nothing was merged or
    /// modified; the user decides which to keep.
    #[error(
        "{snapshot} was changed outside steward while {log} holds {records} unmerged write batch(es); \
         move one of the two files away to choose"
    )]
    SnapshotChanged {
        /// The snapshot.
        snapshot: PathBuf,
        /// The log.
        log: PathBuf,
        /// Write batches in the log.
        records: usize,
    },
    /// Another program rewrote the snapshot while this store had it open.
    /// Compaction refuses to overwrite it; the store's writes stay safe in
    /// its log, and the next open reports the conflict.
    #[error(
        "{snapshot} was rewritten by another program while the store had it open; \
         not overwriting it (the store's writes are kept in its log)"
    )]
    SnapshotModified {
        /// The snapshot.
        snapshot: PathBuf,
    },
    /// A key is longer than [`StoreConfig::max_key_bytes`](crate::StoreConfig::max_key_bytes).
    #[error("key of {len} bytes is larger than the limit of {limit} bytes (starts {prefix:?})")]
    KeyTooLarge {
        /// The key's length in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
        /// The key's first characters.
        prefix: String,
    },
    /// A value, as compact JSON, is larger than
    /// [`StoreConfig::max_value_bytes`](crate::StoreConfig::max_value_bytes).
    #[error("value of key {key:?} is {len} bytes of JSON, larger than the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// The value's length as compact JSON.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A value nests arrays/objects deeper than the store keeps (Python's
    /// own `json` cannot read much deeper either).
    #[error("value of key {key:?} nests deeper than {limit} levels")]
    ValueTooDeep {
        /// The key.
        key: String,
        /// The nesting limit.
        limit: usize,
    },
    /// A write would have created a key beyond the store's cap on keys
    /// ([`StoreConfig::max_keys`](crate::StoreConfig::max_keys),
    /// `RedisConfig::max_keys`): nothing of it was applied. Replacing or
    /// deleting existing keys still works.
    #[error("store {location} holds its limit of {limit} keys: key {key:?} was not created")]
    TooManyKeys {
        /// The store: the snapshot's path, or the Redis store's location.
        location: String,
        /// The key that was not created.
        key: String,
        /// The cap.
        limit: usize,
    },
    /// An async write found the write queue full
    /// ([`StoreConfig::max_queued_writes`](crate::StoreConfig::max_queued_writes)
    /// or `max_queued_bytes`): nothing of it was applied. Await earlier
    /// writes before queueing more.
    #[error(
        "store {path}: {writes} writes ({bytes} bytes) already wait to be written, the limit: \
         write refused, nothing applied"
    )]
    QueueFull {
        /// The snapshot.
        path: PathBuf,
        /// Writes waiting.
        writes: usize,
        /// Their bytes.
        bytes: usize,
    },
    /// A value could not be converted to or from the requested type.
    #[error("value of key {key:?}")]
    Json {
        /// The key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The configuration is not usable.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// The store was closed (by [`Store::close`](crate::Store::close) on any handle).
    #[error("store {path} is closed")]
    Closed {
        /// The snapshot path.
        path: PathBuf,
    },
    /// A Redis URL the client cannot use. The URL is shown without password.
    #[error("bad Redis URL {url}: {reason}")]
    BadUrl {
        /// The URL as `steward_redact::redact_url` shows it: no user info
        /// (so no password, whatever it holds), no query.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The PEM file of `RedisConfig::tls_ca_file` (feature `redis`)
    /// could not be read or holds no usable certificate.
    #[error("Redis TLS CA file {path}: {reason}")]
    RedisCaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The Redis server could not be reached (connecting failed, or the
    /// connection kept failing for the whole retry time). For writes, see
    /// [`Error::RedisWriteNotApplied`] / [`Error::RedisWriteUnknown`].
    #[error("Redis server {server} is unreachable")]
    RedisUnavailable {
        /// `host:port/db`.
        server: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// The Redis server answered a read or command with an error, or with a
    /// reply the store cannot understand.
    #[error("Redis server {server}: {op} of key {key:?} failed")]
    Redis {
        /// `host:port/db`.
        server: String,
        /// What was being done.
        op: &'static str,
        /// The key (empty for whole-namespace operations).
        key: String,
        /// The server's or client's error.
        #[source]
        source: BoxError,
    },
    /// A Redis write certainly did not happen: it never reached the server
    /// (no connection within the retry time) or the server refused it
    /// before changing anything. Safe to retry.
    #[error("Redis server {server}: write of key {key:?} was not applied")]
    RedisWriteNotApplied {
        /// `host:port/db`.
        server: String,
        /// The key (empty for reset).
        key: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// A Redis write was sent but no answer came, and the server stayed
    /// unreachable for the whole retry time: it may or may not have been
    /// applied. Read the key to know.
    #[error(
        "Redis server {server}: write of key {key:?} may or may not have been applied \
         (connection lost before the answer)"
    )]
    RedisWriteUnknown {
        /// `host:port/db`.
        server: String,
        /// The key (empty for reset).
        key: String,
        /// The last connection error.
        #[source]
        source: BoxError,
    },
    /// The Redis store was closed by `close` on one of its handles.
    #[error("Redis store {location} is closed")]
    RedisClosed {
        /// `redis://host:port/db?ns=name`.
        location: String,
    },
    /// A write's log record was written but its fsync failed: the write may
    /// or may not be on disk, and the next open replays it if it is (so a
    /// failed `reset` may still wipe the memory). Not retried: the store is
    /// poisoned (later writes get [`Error::Poisoned`]); reopen it and read
    /// the key to know.
    #[error(
        "fsync of {path} failed after writing the record at byte offset {offset}: \
         the write may or may not have been applied (reopen and read to know)"
    )]
    WriteUnknown {
        /// The log.
        path: PathBuf,
        /// Byte offset of the batch's record in the log.
        offset: u64,
        /// The OS error of the fsync.
        #[source]
        source: std::io::Error,
    },
    /// An earlier fsync of the log failed, so the data on disk is unknown, or
    /// a compaction failed half-way (after its snapshot was replaced); the
    /// store refuses further writes. Reopen it to recover from what is on disk.
    #[error("store {path} refuses writes after a failed fsync or compaction; reopen it")]
    Poisoned {
        /// The log.
        path: PathBuf,
    },
}

/// A boxed error source (keeps third-party error types out of signatures).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The message followed by each cause, joined by `": "`: one line for a
    /// log or a person.
    ///
    /// ```
    /// let e = steward_store::Store::open("/proc/no-such-dir/memory.json").unwrap_err();
    /// assert!(e.chain().starts_with("creating the folder /proc/no-such-dir: "), "{}", e.chain());
    /// ```
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    /// Whether this error says a file is damaged (corrupt, unsupported
    /// content or a snapshot/log conflict): the user must look at the file.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. }
                | Error::Unsupported { .. }
                | Error::SnapshotChanged { .. }
                | Error::SnapshotModified { .. }
        )
    }

    /// Duplicates an error for several waiters of one failed batch.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::WriteUnknown {
                path,
                offset,
                source,
            } => Error::WriteUnknown {
                path: path.clone(),
                offset: *offset,
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Poisoned { path } => Error::Poisoned { path: path.clone() },
            Error::Closed { path } => Error::Closed { path: path.clone() },
            other => Error::Config(other.to_string()),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// How often `needle` occurs in `text`.
    fn count(text: &str, needle: &str) -> usize {
        text.matches(needle).count()
    }

    /// Every variant that keeps a cause as `#[source]` leaves its text to
    /// the chain: printed link by link, the cause shows once.
    #[test]
    fn a_chain_shows_each_cause_once() {
        let cause = "the distinctive cause";
        let io = || std::io::Error::other(cause);
        let boxed = || -> BoxError { Box::new(io()) };
        let json = serde_json::from_str::<u8>("\"the distinctive cause\"").unwrap_err();
        let json_text = json.to_string();
        let path = PathBuf::from("/m/memory.json");
        let server = "127.0.0.1:6379/0".to_string();
        let key = "k".to_string();
        let wrapped = [
            Error::io("writing", &path, io()),
            Error::WriteUnknown {
                path: path.clone(),
                offset: 7,
                source: io(),
            },
            Error::RedisUnavailable {
                server: server.clone(),
                source: boxed(),
            },
            Error::Redis {
                server: server.clone(),
                op: "read",
                key: key.clone(),
                source: boxed(),
            },
            Error::RedisWriteNotApplied {
                server: server.clone(),
                key: key.clone(),
                source: boxed(),
            },
            Error::RedisWriteUnknown {
                server,
                key: key.clone(),
                source: boxed(),
            },
        ];
        for e in wrapped {
            assert_eq!(count(&e.to_string(), cause), 0, "{e}");
            assert_eq!(count(&e.chain(), cause), 1, "{}", e.chain());
        }
        let e = Error::Json { key, source: json };
        assert_eq!(count(&e.to_string(), &json_text), 0, "{e}");
        assert_eq!(count(&e.chain(), &json_text), 1, "{}", e.chain());
    }

    /// A real IO error under a store error: a file where the store's
    /// folder should be.
    #[test]
    fn an_io_error_under_a_store_error_is_printed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-folder");
        std::fs::write(&file, b"").expect("write");
        let e = crate::Store::open(file.join("memory.json")).expect_err("a file is no folder");
        let source = std::error::Error::source(&e).expect("the OS error is the source");
        let os = source.to_string();
        assert!(!e.to_string().contains(&os), "{e}");
        assert_eq!(count(&e.chain(), &os), 1, "{}", e.chain());
        assert!(e.chain().contains("not-a-folder"), "{}", e.chain());
    }
}
