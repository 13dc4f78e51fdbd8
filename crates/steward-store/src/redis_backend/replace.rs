//! Replacing everything a namespace holds in one step (`steward store copy
//! --force` into Redis): checked first, then the reset and every write sent
//! as one script run, which the server applies whole or not at all.

use std::collections::HashSet;

use super::RedisStore;
use super::batch::{Mode, WriteOp};
use crate::backend::Entry;
use crate::error::Result;
use crate::limits::refusal;

impl RedisStore {
    /// Replaces everything the namespace holds with `entries`, in their
    /// order (a TTL entry expires its `ttl` from when the server runs the
    /// replacement), and returns how many live entries it held just before.
    ///
    /// Every entry is checked against this store's limits (key and value
    /// size, nesting, [`RedisConfig::max_keys`](crate::RedisConfig::max_keys))
    /// before anything is sent. Then the reset and all the writes go to the
    /// server as one script run: Redis runs a script whole, so a client
    /// killed or cut off at any moment leaves the old entries or the new
    /// ones, never a mix; other clients see one or the other. The server
    /// serves no one else while it runs, and the whole memory travels in one
    /// request (the server's `client-query-buffer-limit`, 1 GiB by default,
    /// bounds it). Subscribers get [`Change::Reset`](crate::Change::Reset)
    /// then each entry's `Set`.
    ///
    /// Errors: the limits' errors (nothing sent), then those of a write:
    /// [`Error::RedisWriteUnknown`](crate::Error::RedisWriteUnknown) when
    /// the server stayed unreachable after the request may have reached it
    /// (the namespace is then old or new, whole). Should the server refuse
    /// one of the writes while the script runs (a value key of the wrong
    /// type put there by another program), the others stand and this
    /// returns that write's error.
    pub async fn replace_all(&self, entries: &[Entry]) -> Result<usize> {
        self.check_open()?;
        let config = &self.inner.config;
        let mut ops = Vec::with_capacity(entries.len() + 1);
        ops.push(WriteOp {
            mode: Mode::Reset,
            key: String::new(),
            json: Vec::new(),
            ttl_ms: 0,
        });
        let mut keys = HashSet::new();
        for e in entries {
            let json = self.encode(&e.key, &e.value)?;
            if keys.insert(e.key.as_str()) && keys.len() > config.max_keys {
                let location = self.inner.location.clone();
                return Err(refusal(location, &e.key, config.max_keys));
            }
            let ttl_ms = e.ttl.map_or(0, |t| {
                u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
            });
            ops.push(WriteOp {
                mode: Mode::Upsert,
                key: e.key.clone(),
                json,
                ttl_ms,
            });
        }
        let held = self.len().await?;
        let answers = self
            .send_batch(&ops)
            .await
            .map_err(|e| self.batch_error("", &e))?;
        for (op, answer) in ops.iter().zip(answers) {
            self.write_result(&op.key, answer)?;
        }
        tracing::info!(
            location = %self.inner.location,
            held,
            entries = entries.len(),
            "replaced the namespace"
        );
        Ok(held)
    }
}
