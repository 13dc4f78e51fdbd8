//! The writer: the log and the lock, held by whoever leads a group commit.
//! It decides each write's effect, appends a batch as one fsynced frame,
//! then applies it to the map and tells subscribers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value};

use super::commit::{Kind, Reply, Request, WriteOp};
use super::recovery::PREALLOCATE;
use super::{Shared, keycap};
use crate::disk::{DiskFile, LockHold};
use crate::error::{Error, Result};
use crate::files;
use crate::log::{self, SnapshotId};
use crate::subscribe::Change;

/// The log and lock: only the current leader touches them, and only the
/// leader changes the map.
pub(super) struct Writer {
    pub(super) log: Box<dyn DiskFile>,
    /// End of the last frame: where the next one goes.
    pub(super) log_len: u64,
    /// The file's size: zeros from `log_len` to here.
    pub(super) file_len: u64,
    /// The snapshot this store last read or wrote: compaction refuses to
    /// replace a snapshot someone else rewrote meanwhile.
    pub(super) snapshot: SnapshotId,
    pub(super) next_compact_at: u64,
    pub(super) poisoned: bool,
    /// Held for the thread's life; dropping it releases the lock.
    pub(super) lock: Option<LockHold>,
}

impl Writer {
    /// Processes requests in order; returns `true` once the store is closed.
    pub(super) fn handle(&mut self, shared: &Shared, requests: Vec<Request>) -> bool {
        let mut batch: Vec<(WriteOp, Reply)> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut requests = requests.into_iter();
        while let Some(req) = requests.next() {
            match req.kind {
                Kind::Write(w) => {
                    let cost = w.cost();
                    if !batch.is_empty() && batch_bytes + cost > shared.config.max_batch_bytes {
                        self.commit(shared, std::mem::take(&mut batch));
                        batch_bytes = 0;
                    }
                    batch_bytes += cost;
                    batch.push((w, req.reply));
                }
                Kind::Compact => {
                    self.commit(shared, std::mem::take(&mut batch));
                    batch_bytes = 0;
                    req.reply.complete(self.compact(shared).map(|()| true));
                }
                Kind::Sweep(count) => {
                    self.commit(shared, std::mem::take(&mut batch));
                    batch_bytes = 0;
                    let r = self.sweep(shared).map(|n| {
                        count.store(n, Ordering::Relaxed);
                        true
                    });
                    req.reply.complete(r);
                }
                Kind::Close => {
                    self.commit(shared, std::mem::take(&mut batch));
                    self.close(shared, req.reply, requests.collect());
                    return true;
                }
            }
        }
        self.commit(shared, batch);
        if self.log_len >= self.next_compact_at
            && let Err(e) = self.compact(shared)
        {
            // The log still holds everything; try again after more growth.
            tracing::warn!(error = %e.chain(), "automatic compaction failed");
            self.next_compact_at = self.log_len + shared.config.compact_log_bytes;
        }
        false
    }

    fn close(&mut self, shared: &Shared, reply: Reply, rest: Vec<Request>) {
        let result = if self.poisoned {
            Err(Error::Poisoned {
                path: shared.paths.log.clone(),
            })
        } else if shared.config.compact_on_close {
            self.compact(shared).and_then(|()| {
                // The snapshot holds everything: the empty log can go.
                let disk = &*shared.disk;
                files::remove_if_exists(disk, &shared.paths.log)?;
                // Not needed for durability: should the removal be lost,
                // the empty log that comes back names this snapshot.
                files::sync_dir(disk, &shared.paths.dir)
            })
        } else {
            Ok(())
        };
        let late = {
            let mut q = shared.queue.lock();
            q.closed = true;
            std::mem::take(&mut q.requests)
        };
        // Release the lock before anyone hears the store is closed.
        self.lock = None;
        shared.hub.close();
        let path = &shared.paths.snapshot;
        for r in rest.into_iter().chain(late) {
            r.reply.complete(Err(Error::Closed { path: path.clone() }));
        }
        reply.complete(result.map(|()| true));
    }

    /// Validates a batch against the map, writes it as one frame, fsyncs,
    /// then applies it and answers every writer.
    fn commit(&mut self, shared: &Shared, batch: Vec<(WriteOp, Reply)>) {
        if batch.is_empty() {
            return;
        }
        if self.poisoned {
            for (_, slot) in batch {
                slot.complete(Err(Error::Poisoned {
                    path: shared.paths.log.clone(),
                }));
            }
            return;
        }
        let now = shared.clock.now_ms();
        let (payload, effects) = self.encode_batch(shared, &batch, now);
        let (batch, effects) = refuse_beyond_cap(shared, batch, effects);
        if !payload.is_empty()
            && let Err(e) = self.append(shared, &payload)
        {
            shared
                .counters
                .failed_batches
                .fetch_add(1, Ordering::Relaxed);
            if matches!(e, Error::WriteUnknown { .. }) {
                tracing::error!(error = %e.chain(), writes = batch.len(), "write batch fsync failed; outcome unknown, store poisoned");
            } else {
                tracing::error!(error = %e.chain(), writes = batch.len(), "write batch failed; nothing applied");
            }
            for (_, slot) in batch {
                slot.complete(Err(e.duplicate()));
            }
            return;
        }
        let c = &shared.counters;
        let applied = effects.iter().filter(|e| e.changed).count() as u64;
        c.writes.fetch_add(applied, Ordering::Relaxed);
        c.unchanged
            .fetch_add(batch.len() as u64 - applied, Ordering::Relaxed);
        c.largest_batch
            .fetch_max(batch.len() as u64, Ordering::Relaxed);
        let mut replies = Vec::with_capacity(batch.len());
        let watched = !shared.hub.is_empty();
        let mut changes = Vec::new();
        {
            let mut map = shared.map.write();
            let mut expires = shared.expires.write();
            for ((w, slot), effect) in batch.into_iter().zip(effects) {
                if watched && effect.revive {
                    changes.push((w.key().to_string(), Change::Expired));
                }
                if watched && effect.changed {
                    changes.push(change_of(&w));
                }
                // Upsert answers "was the key new"; the others "did it change".
                let answer =
                    apply_write(&mut map, &mut expires, w, effect).unwrap_or(effect.changed);
                replies.push((slot, answer));
            }
        }
        // Published before the writers hear back: a writer that then tells
        // another task "go look" cannot overtake its own change.
        shared.hub.publish(&changes);
        for (slot, answer) in replies {
            slot.complete(Ok(answer));
        }
    }

    /// Decides each write's effect (against the map plus earlier writes of
    /// this batch, expired entries counting as absent at `now`) and
    /// encodes the effective ones. Re-adding an expired key is logged as a
    /// delete then a set, so replay puts it last as the map does.
    fn encode_batch(
        &self,
        shared: &Shared,
        batch: &[(WriteOp, Reply)],
        now: u64,
    ) -> (Vec<u8>, Vec<Effect>) {
        let map = shared.map.read();
        let expires = shared.expires.read();
        let mut overlay: HashMap<&str, bool> = HashMap::new();
        let mut reset = false;
        let mut payload = Vec::new();
        let mut effects = Vec::with_capacity(batch.len());
        let mut cap = keycap::KeyCap::new(shared.config.max_keys, map.len(), batch.len(), || {
            expires.expired_count(now)
        });
        for (w, _) in batch {
            let key = w.key();
            let in_map = !reset && !overlay.contains_key(key) && map.contains_key(key);
            let stale = in_map && expires.get(key).is_some_and(|&t| now >= t);
            let exists = match overlay.get(key) {
                Some(&e) => e,
                None => in_map && !stale,
            };
            let mut effect = Effect::default();
            if !cap.admits(w, exists) {
                effect.refused = true;
                effects.push(effect);
                continue;
            }
            let set = |payload: &mut Vec<u8>, effect: &mut Effect, j: &[u8]| {
                if stale {
                    log::encode_delete(payload, key);
                    effect.revive = true;
                }
                log::encode_set(payload, key, j);
                effect.changed = true;
            };
            match w {
                WriteOp::Create(_, _, j) if !exists => set(&mut payload, &mut effect, j),
                WriteOp::Update(_, _, j) if exists => set(&mut payload, &mut effect, j),
                WriteOp::Upsert(_, _, j) => set(&mut payload, &mut effect, j),
                WriteOp::UpsertTtl(_, _, j, ttl) => {
                    set(&mut payload, &mut effect, j);
                    let at = now.saturating_add(*ttl);
                    log::encode_expire(&mut payload, key, at);
                    effect.expires_at = Some(at);
                }
                WriteOp::Delete(_) if exists => {
                    log::encode_delete(&mut payload, key);
                    effect.changed = true;
                }
                WriteOp::Reset => {
                    log::encode_reset(&mut payload);
                    overlay.clear();
                    reset = true;
                    effect.changed = true;
                }
                _ => {}
            }
            if effect.changed && !matches!(w, WriteOp::Reset) {
                overlay.insert(key, !matches!(w, WriteOp::Delete(_)));
            }
            if effect.changed {
                cap.applied(w, exists);
            }
            effects.push(effect);
        }
        (payload, effects)
    }

    /// Removes the entries expired at `now` durably (delete records), tells
    /// subscribers, and returns how many.
    fn sweep(&mut self, shared: &Shared) -> Result<u64> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: shared.paths.log.clone(),
            });
        }
        let now = shared.clock.now_ms();
        let doomed: Vec<String> = {
            let expires = shared.expires.read();
            expires
                .iter()
                .filter(|&(_, &t)| now >= t)
                .map(|(k, _)| k.clone())
                .collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut payload = Vec::new();
        for k in &doomed {
            log::encode_delete(&mut payload, k);
        }
        self.append(shared, &payload)?;
        self.drop_entries(shared, &doomed);
        Ok(doomed.len() as u64)
    }

    /// Drops expired entries from memory and publishes `Expired` for each.
    pub(super) fn drop_entries(&self, shared: &Shared, doomed: &[String]) {
        {
            let mut map = shared.map.write();
            let mut expires = shared.expires.write();
            for k in doomed {
                map.shift_remove(k);
                expires.remove(k);
            }
        }
        shared
            .counters
            .expired
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        let changes: Vec<(String, Change)> = doomed
            .iter()
            .map(|k| (k.clone(), Change::Expired))
            .collect();
        shared.hub.publish(&changes);
    }

    /// Appends one frame and fsyncs it (`fdatasync`). The file is kept
    /// preallocated with zeros ahead of the frames, so that fsync has no
    /// file size to update, which makes it cheaper. On a failed write the
    /// file is cut back so the next batch does not follow garbage; on a
    /// failed fsync the store stops accepting writes (the page cache can no
    /// longer be trusted to match the disk).
    pub(super) fn append(&mut self, shared: &Shared, payload: &[u8]) -> Result<()> {
        let path = &shared.paths.log;
        let frame = log::frame(payload);
        let end = self.log_len + frame.len() as u64;
        // A huge frame is simply appended: no point zero-filling for it.
        if end > self.file_len && frame.len() as u64 <= PREALLOCATE / 2 {
            self.preallocate(path, end + PREALLOCATE);
        }
        if let Err(e) = self.log.write_at(self.log_len, &frame) {
            if self.log.set_len(self.log_len).is_err() {
                self.poisoned = true;
            }
            self.file_len = self.log_len;
            return Err(Error::io("appending to", path, e));
        }
        if let Err(source) = self.log.sync_data(std::panic::Location::caller()) {
            // The record was written: it may be on disk or not, and a
            // retried fsync could report success for pages the kernel has
            // already dropped. Never retried; the next open replays the
            // record if it is there.
            self.poisoned = true;
            return Err(Error::WriteUnknown {
                path: path.to_path_buf(),
                offset: self.log_len,
                source,
            });
        }
        self.log_len = end;
        self.file_len = self.file_len.max(end);
        let c = &shared.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.log_bytes.store(self.log_len, Ordering::Relaxed);
        Ok(())
    }

    /// Best effort: extends the file with zeros up to `to` and fsyncs it.
    /// On failure (a full disk) the extension is undone and appends simply
    /// grow the file.
    fn preallocate(&mut self, path: &Path, to: u64) {
        let zeros = vec![0u8; (to - self.file_len) as usize];
        // This fsync is not needed for durability, only for speed: each
        // append's fdatasync then has no file size to update.
        let done = self
            .log
            .write_at(self.file_len, &zeros)
            .and_then(|()| self.log.sync_all(std::panic::Location::caller()));
        match done {
            Ok(()) => self.file_len = to,
            Err(e) => {
                tracing::debug!(log = %path.display(), error = %e, "could not preallocate the log");
                let _ = self.log.set_len(self.file_len);
            }
        }
    }
}

/// The change a durable write makes, for subscribers.
pub(super) fn change_of(w: &WriteOp) -> (String, Change) {
    match w {
        WriteOp::Create(k, v, _)
        | WriteOp::Update(k, v, _)
        | WriteOp::Upsert(k, v, _)
        | WriteOp::UpsertTtl(k, v, ..) => (k.clone(), Change::Set(v.clone())),
        WriteOp::Delete(k) => (k.clone(), Change::Deleted),
        WriteOp::Reset => (String::new(), Change::Reset),
    }
}

/// What one write does, decided before it is logged.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Effect {
    /// It changes the map.
    changed: bool,
    /// It re-adds a key whose entry had expired (removed first, goes last).
    revive: bool,
    /// Its new expiry time (TTL upsert).
    expires_at: Option<u64>,
    /// Refused by the key cap: nothing of it is applied.
    refused: bool,
}

/// Answers the writes the key cap refused and returns the rest (their
/// effects are empty, so the batch's payload does not hold them).
pub(super) fn refuse_beyond_cap(
    shared: &Shared,
    batch: Vec<(WriteOp, Reply)>,
    effects: Vec<Effect>,
) -> (Vec<(WriteOp, Reply)>, Vec<Effect>) {
    if effects.iter().all(|e| !e.refused) {
        return (batch, effects);
    }
    let (mut writes, mut kept) = (Vec::new(), Vec::new());
    let mut refused = 0u64;
    let limit = shared.config.max_keys;
    for ((w, reply), effect) in batch.into_iter().zip(effects) {
        if effect.refused {
            refused += 1;
            let location = shared.paths.snapshot.display().to_string();
            reply.complete(Err(crate::limits::refusal(location, w.key(), limit)));
        } else {
            writes.push((w, reply));
            kept.push(effect);
        }
    }
    let total = shared
        .counters
        .keys_refused
        .fetch_add(refused, Ordering::Relaxed)
        + refused;
    tracing::warn!(
        refused,
        total,
        limit = shared.config.max_keys,
        "writes refused: they would create keys beyond the store's key cap"
    );
    (writes, kept)
}

/// Applies one durable write; returns the caller's answer if it differs
/// from `changed` (upsert answers "was it new").
pub(super) fn apply_write(
    map: &mut Map<String, Value>,
    expires: &mut files::Expiries,
    w: WriteOp,
    effect: Effect,
) -> Option<bool> {
    if !effect.changed {
        return None;
    }
    if effect.revive {
        map.shift_remove(w.key());
    }
    match w {
        WriteOp::Create(k, v, _) | WriteOp::Update(k, v, _) => {
            expires.remove(&k);
            map.insert(k, v);
            None
        }
        WriteOp::Upsert(k, v, _) => {
            expires.remove(&k);
            Some(map.insert(k, v).is_none())
        }
        WriteOp::UpsertTtl(k, v, _, _) => {
            if let Some(at) = effect.expires_at {
                expires.insert(k.clone(), at);
            }
            Some(map.insert(k, v).is_none())
        }
        WriteOp::Delete(k) => {
            expires.remove(&k);
            map.shift_remove(&k);
            None
        }
        WriteOp::Reset => {
            expires.clear();
            map.clear();
            None
        }
    }
}
