//! Opening a store's files with the lock held: the lock itself, finishing
//! or undoing an interrupted compaction, cutting a torn log tail, and a
//! fresh log when there is none to reuse.

use std::path::Path;

use serde_json::{Map, Value};

use super::compact::{finish_renames, remove_leftovers};
use crate::disk::{Disk, DiskFile, LockHold, Perms};
use crate::error::{Error, Result};
use crate::files::{self, Paths};
use crate::log::{self, SnapshotId};

pub(crate) fn take_lock(disk: &dyn Disk, path: &Path, perms: Perms) -> Result<LockHold> {
    match disk.lock(path, perms) {
        Ok(Some(hold)) => Ok(hold),
        Ok(None) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(Error::io("locking", path, e)),
    }
}

pub(super) struct Opened {
    pub(super) map: Map<String, Value>,
    pub(super) expires: files::Expiries,
    pub(super) log: Box<dyn DiskFile>,
    pub(super) log_len: u64,
    /// The log file's size (frames plus preallocated zeros).
    pub(super) file_len: u64,
    /// The snapshot on disk as loaded.
    pub(super) snapshot: SnapshotId,
}

/// Finishes an interrupted compaction, cuts a torn tail, and opens the log
/// for appending (creating it if needed). Called with the lock held.
pub(super) fn recover(disk: &dyn Disk, paths: &Paths, perms: Perms) -> Result<Opened> {
    let loaded = files::load_files_on(disk, paths)?;
    if loaded.roll_forward {
        tracing::info!(log = %paths.log.display(), "finishing an interrupted compaction");
        finish_renames(disk, paths)?;
    } else {
        remove_leftovers(disk, paths)?;
    }
    let reuse = match &loaded.log {
        Some(l) if !l.stale && !loaded.roll_forward => Some((l.valid_len, l.torn_at, l.file_len)),
        _ => None,
    };
    let Some((valid_len, torn_at, file_len)) = reuse else {
        let log = if loaded.roll_forward {
            open_log(disk, &paths.log)?
        } else {
            new_log(disk, paths, loaded.snapshot_id, perms)?
        };
        return Ok(Opened {
            map: loaded.map,
            expires: loaded.expires,
            file_len: file_size(&*log, &paths.log)?,
            log,
            log_len: log::HEADER_LEN as u64,
            snapshot: loaded.snapshot_id,
        });
    };
    let mut log = open_log(disk, &paths.log)?;
    let mut file_len = file_len;
    if let Some(at) = torn_at {
        tracing::warn!(
            log = %paths.log.display(),
            offset = at,
            cut_bytes = file_len - valid_len,
            "cutting off a torn last record (an unacknowledged write)"
        );
        log.set_len(valid_len)
            .map_err(|e| Error::io("truncating", &paths.log, e))?;
        // Not needed for durability: the next append's fdatasync makes the
        // cut durable too, and a torn tail that comes back is cut again.
        log.sync_all(std::panic::Location::caller())
            .map_err(|e| Error::io("fsync of", &paths.log, e))?;
        file_len = valid_len;
    }
    Ok(Opened {
        map: loaded.map,
        expires: loaded.expires,
        log,
        log_len: valid_len,
        file_len,
        snapshot: loaded.snapshot_id,
    })
}

pub(super) fn file_size(file: &dyn DiskFile, path: &Path) -> Result<u64> {
    file.size()
        .map_err(|e| Error::io("reading metadata of", path, e))
}

/// Zeros written ahead of the frames at a time (see [`Writer::append`]).
pub(super) const PREALLOCATE: u64 = 1 << 20;

pub(super) fn open_log(disk: &dyn Disk, path: &Path) -> Result<Box<dyn DiskFile>> {
    disk.open(path).map_err(|e| Error::io("opening", path, e))
}

/// Writes a fresh log (header only) for `snapshot` through a temporary file
/// and renames it into place, so the log file always has a whole header.
pub(super) fn new_log(
    disk: &dyn Disk,
    paths: &Paths,
    snapshot: SnapshotId,
    perms: Perms,
) -> Result<Box<dyn DiskFile>> {
    // This fsync is not needed for durability: the first append's
    // fdatasync writes the header too, and a log whose header never
    // reached the disk holds nothing and is made again.
    files::write_synced(disk, &paths.log_tmp, &log::encode_header(snapshot), perms)?;
    files::rename(disk, &paths.log_tmp, &paths.log)?;
    files::sync_dir(disk, &paths.dir)?;
    open_log(disk, &paths.log)
}
