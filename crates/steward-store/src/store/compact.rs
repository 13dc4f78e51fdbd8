//! Compaction: the whole map into a new snapshot beside the old one, an
//! empty log naming it, then the renames in the one order a crash at any
//! moment survives (shared with recovery, which finishes an interrupted
//! compaction, and with repair and `replace_all`, which write the same
//! files).

use std::sync::atomic::Ordering;

use super::Shared;
use super::recovery::open_log;
use super::writer::Writer;
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::files::{self, Paths};
use crate::json;
use crate::log::{self, SnapshotId};

/// Puts staged files into place: the snapshot rename, made durable, then
/// [`finish_renames`]. The caller staged the snapshot, the expiry file (or
/// none: then no temporary one may be left) and the new log, and made
/// their names durable before this: a file system may reorder directory
/// changes, and a new snapshot without its new log beside it turns the
/// old log's records into a conflict at the next open. From the snapshot
/// rename on, opening the memory finishes the job.
pub(crate) fn rename_staged(disk: &dyn Disk, paths: &Paths) -> Result<()> {
    files::rename(disk, &paths.snapshot_tmp, &paths.snapshot)?;
    files::sync_dir(disk, &paths.dir)?;
    finish_renames(disk, paths)
}

/// The renames after a compaction's snapshot rename: the expiry file,
/// then the log, each made durable before the next. The log's rename must
/// come last: once it is durable, nothing tells a later open that a
/// compaction was under way, so an expiry file still waiting would be
/// forgotten (TTL entries made permanent, or an old expiry applied).
pub(super) fn finish_renames(disk: &dyn Disk, paths: &Paths) -> Result<()> {
    if files::exists(disk, &paths.ttl_tmp)? {
        files::rename(disk, &paths.ttl_tmp, &paths.ttl)?;
        files::sync_dir(disk, &paths.dir)?;
    }
    files::rename(disk, &paths.log_tmp, &paths.log)?;
    files::sync_dir(disk, &paths.dir)
}

/// Removes the temporary files of a compaction that did not get to its
/// snapshot rename, durably: a temporary log that came back after a power
/// loss could name the snapshot in force (a compaction that changed
/// nothing) and would then be rolled forward over the writes logged since.
pub(super) fn remove_leftovers(disk: &dyn Disk, paths: &Paths) -> Result<()> {
    let mut removed = false;
    for tmp in [&paths.log_tmp, &paths.ttl_tmp, &paths.snapshot_tmp] {
        removed |= files::remove_if_exists(disk, tmp)?;
    }
    if removed {
        files::sync_dir(disk, &paths.dir)?;
    }
    Ok(())
}

impl Writer {
    /// Snapshot to a temporary file (fsync), new empty log naming it to a
    /// temporary file (fsync), rename the snapshot (fsync dir), then the
    /// expiry file and the log (see [`finish_renames`]). A crash before the
    /// snapshot rename keeps the old pair; after it, opening finds the new
    /// log waiting and finishes the job. Every file gets the snapshot's
    /// mode and owner ([`files::perms_of`]).
    pub(super) fn compact(&mut self, shared: &Shared) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: shared.paths.log.clone(),
            });
        }
        let span = tracing::debug_span!("store_compact", log_bytes = self.log_len);
        let _g = span.enter();
        let p = &shared.paths;
        let disk = &*shared.disk;
        // Someone (the Python assistant?) rewrote the snapshot while we had
        // it open: replacing it would silently drop their change.
        let on_disk = SnapshotId::of(files::read_optional_on(disk, &p.snapshot)?.as_deref());
        if on_disk != self.snapshot {
            return Err(Error::SnapshotModified {
                snapshot: p.snapshot.clone(),
            });
        }
        // Expired entries do not go into the snapshot (Python would see them).
        let now = shared.clock.now_ms();
        let doomed: Vec<String> = shared
            .expires
            .read()
            .iter()
            .filter(|&(_, &t)| now >= t)
            .map(|(k, _)| k.clone())
            .collect();
        if !doomed.is_empty() {
            self.drop_entries(shared, &doomed);
        }
        let text = json::to_python_json(&shared.map.read());
        let id = SnapshotId::of(Some(text.as_bytes()));
        // The expiries go beside the snapshot; the sidecar is rewritten (or
        // emptied) whenever there is one, so it always matches the snapshot.
        // Each expiry carries its value's fingerprint: should someone rewrite
        // the key in the snapshot, the expiry no longer applies to it.
        let ttl_text = {
            let map = shared.map.read();
            let expires = shared.expires.read();
            let keep = !expires.is_empty() || files::exists(disk, &p.ttl)?;
            keep.then(|| files::encode_expiries(&map, &expires))
        };
        let perms = files::perms_of(disk, &p.snapshot)?;
        let staged = files::write_synced(disk, &p.snapshot_tmp, text.as_bytes(), perms)
            .and_then(|()| match &ttl_text {
                Some(t) => files::write_synced(disk, &p.ttl_tmp, t.as_bytes(), perms),
                None => Ok(()),
            })
            .and_then(|()| files::write_synced(disk, &p.log_tmp, &log::encode_header(id), perms))
            // The new log's name must be durable before the snapshot rename
            // can be: a file system may reorder directory changes, and a new
            // snapshot without its new log beside it turns the old log's
            // records into a conflict (SnapshotChanged) at the next open.
            .and_then(|()| files::sync_dir(disk, &p.dir));
        if let Err(e) = staged {
            self.discard_staged(shared);
            return Err(e);
        }
        // From the snapshot rename on, the next open replays the new log,
        // not the one this writer holds: a write appended to the old one
        // now would be acknowledged and then dropped. So any failure from
        // here on stops all writes; the next open finishes the compaction.
        if let Err(e) = self.swap_in(shared, id) {
            self.poisoned = true;
            tracing::error!(error = %e.chain(), "compaction failed after its snapshot rename; store poisoned, reopen it to finish the compaction");
            return Err(e);
        }
        self.log_len = log::HEADER_LEN as u64;
        self.file_len = self.log_len;
        self.next_compact_at = shared.config.compact_log_bytes;
        let c = &shared.counters;
        c.compactions.fetch_add(1, Ordering::Relaxed);
        c.log_bytes.store(self.log_len, Ordering::Relaxed);
        c.snapshot_bytes.store(text.len() as u64, Ordering::Relaxed);
        tracing::debug!(snapshot_bytes = text.len(), "compacted");
        Ok(())
    }

    /// The staged files' renames and the switch to the new log.
    fn swap_in(&mut self, shared: &Shared, id: SnapshotId) -> Result<()> {
        let (p, disk) = (&shared.paths, &*shared.disk);
        // Set first: a failure after the snapshot rename poisons the
        // writer, and the snapshot on disk may be the new one already.
        self.snapshot = id;
        rename_staged(disk, p)?;
        self.log = open_log(disk, &p.log)?;
        Ok(())
    }

    /// Removes a failed compaction's temporary files, durably (see
    /// [`remove_leftovers`]); if that fails too, writes stop.
    fn discard_staged(&mut self, shared: &Shared) {
        if let Err(e) = remove_leftovers(&*shared.disk, &shared.paths) {
            self.poisoned = true;
            tracing::error!(error = %e.chain(), "could not remove a failed compaction's files; store poisoned");
        }
    }
}
