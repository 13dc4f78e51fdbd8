//! [`StoreConfig`]: a store's limits and compaction settings, plain data.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Settings of a store. Plain data: build one with
/// `StoreConfig::default()` and assign fields, or load it from a config
/// file (a missing setting takes its default; an unknown one is an error,
/// so a misspelt setting is never silently ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Longest key, in UTF-8 bytes. Default 4 KiB.
    pub max_key_bytes: usize,
    /// Largest value, as compact JSON bytes. Default 1 MiB.
    pub max_value_bytes: usize,
    /// The log is compacted into the snapshot once it holds this many bytes
    /// of records. Default 4 MiB.
    pub compact_log_bytes: u64,
    /// Whether [`Store::close`](crate::Store::close) compacts (and removes the log, so only
    /// `memory.json` remains for the Python assistant). Default true.
    pub compact_on_close: bool,
    /// Largest group-commit batch in bytes, counted as the log records its
    /// writes make (a set is its key and JSON value plus 9 bytes): more
    /// waiting writes go into the next batch; a batch that fills it exactly
    /// is still one. A single larger write is a batch of its own. Default
    /// 8 MiB.
    pub max_batch_bytes: usize,
    /// Most keys the store holds: a write that would create one more is
    /// refused with [`Error::TooManyKeys`] and changes nothing (replacing
    /// and deleting keys still work; expired entries do not count). A
    /// memory opened with more keys keeps them. Default 100,000.
    pub max_keys: usize,
    /// Most writes the async write methods may have queued and not yet
    /// taken by the writer: one more is refused with
    /// [`Error::QueueFull`] (nothing applied; await earlier writes).
    /// Blocking writes wait instead. Default 65,536.
    pub max_queued_writes: usize,
    /// Most bytes (log records) those queued writes may hold, the same
    /// way; a lone write of any size passes. Default 64 MiB.
    pub max_queued_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_key_bytes: 4 << 10,
            max_value_bytes: 1 << 20,
            compact_log_bytes: 4 << 20,
            compact_on_close: true,
            max_batch_bytes: 8 << 20,
            max_keys: 100_000,
            max_queued_writes: 1 << 16,
            max_queued_bytes: 64 << 20,
        }
    }
}

/// Log records must fit a u32 length with room to spare.
pub(super) const MAX_LIMIT: usize = 1 << 30;

impl StoreConfig {
    pub(super) fn validate(&self) -> Result<()> {
        if self.max_key_bytes == 0 || self.max_value_bytes == 0 || self.max_batch_bytes == 0 {
            return Err(Error::Config("limits must be at least 1 byte".into()));
        }
        if self.max_keys == 0 || self.max_queued_writes == 0 || self.max_queued_bytes == 0 {
            return Err(Error::Config(
                "max_keys, max_queued_writes and max_queued_bytes must be at least 1".into(),
            ));
        }
        if self.max_key_bytes > MAX_LIMIT
            || self.max_value_bytes > MAX_LIMIT
            || self.max_batch_bytes > MAX_LIMIT
        {
            return Err(Error::Config(format!(
                "key, value and batch limits must be at most {MAX_LIMIT} bytes"
            )));
        }
        Ok(())
    }
}
