//! Replacing everything a memory holds in one step (`steward store copy
//! --force`): checked first, then written as a compaction writes, so an
//! interruption at any moment leaves the old memory or the new one.

use std::collections::HashSet;

use serde_json::Map;

use super::{StoreBuilder, StoreConfig, finish_renames, take_lock};
use crate::backend::Entry;
use crate::error::Result;
use crate::files::{self, Expiries, Paths};
use crate::limits::{encode_value, refusal};

impl StoreBuilder {
    /// Replaces everything the memory holds with `entries`, in their order
    /// (a TTL entry expires its `ttl` from now by the builder's clock), and
    /// returns how many live entries it held before.
    ///
    /// Every entry is checked against the builder's limits (key and value
    /// size, nesting, key count) before any file is touched. Then, holding
    /// the store's lock, the new snapshot, expiry file and an empty log are
    /// written beside the old ones and renamed into place as a compaction
    /// does: a crash or a kill at any moment leaves either the old memory
    /// whole or the new one whole. A damaged memory is refused (never
    /// overwritten), as by [`build`](Self::build).
    ///
    /// ```
    /// use steward_store::{Entry, Store};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("memory.json");
    /// Store::open(&path)?.upsert_blocking("old", 1)?;
    /// let new = [Entry::new("new", 2.into(), None)];
    /// assert_eq!(Store::builder(&path).replace_all(&new)?, 1);
    /// assert_eq!(steward_store::load(&path)?.keys().collect::<Vec<_>>(), ["new"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replace_all(self, entries: &[Entry]) -> Result<usize> {
        let paths = Paths::new(&self.path);
        let span = tracing::info_span!("store_replace", path = %paths.snapshot.display());
        let _g = span.enter();
        self.config
            .check_entries(&paths.snapshot.display().to_string(), entries)?;
        let disk = &*self.disk;
        crate::folder::ensure(disk, &paths.dir)?;
        let perms = files::perms_of(disk, &paths.snapshot)?;
        let _lock = take_lock(disk, &paths.lock, perms)?;
        let before = files::load_files_on(disk, &paths)?;
        if before.roll_forward {
            // The previous compaction's new log goes into place first, so
            // the old memory is whole again if this one is interrupted.
            finish_renames(disk, &paths)?;
        }
        let now = self.clock.now_ms();
        let held = files::with_ttl(before.map, &before.expires, now).len();
        let mut map = Map::new();
        let mut expires = Expiries::new();
        for e in entries {
            map.insert(e.key.clone(), e.value.clone());
            expires.remove(&e.key);
            if let Some(ttl) = e.ttl {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                expires.insert(e.key.clone(), now.saturating_add(ms));
            }
        }
        let had_ttl = files::exists(disk, &paths.ttl)?;
        crate::repair::write_fresh(disk, &paths, &map, &expires, had_ttl, perms)?;
        tracing::info!(held, entries = map.len(), "replaced the memory");
        Ok(held)
    }
}

impl StoreConfig {
    /// Checks `entries` as a whole memory against these limits, without
    /// writing anything: each key and value size and nesting, and no more
    /// distinct keys than [`max_keys`](Self::max_keys). The errors are
    /// those writes get ([`Error::TooManyKeys`](crate::Error::TooManyKeys)
    /// names `location`). A Redis namespace has the same limits by default.
    pub fn check_entries(&self, location: &str, entries: &[Entry]) -> Result<()> {
        self.validate()?;
        let mut keys = HashSet::new();
        for e in entries {
            encode_value(self.max_key_bytes, self.max_value_bytes, &e.key, &e.value)?;
            if keys.insert(e.key.as_str()) && keys.len() > self.max_keys {
                return Err(refusal(location.to_string(), &e.key, self.max_keys));
            }
        }
        Ok(())
    }
}
