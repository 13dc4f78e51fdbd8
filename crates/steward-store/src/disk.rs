//! The store's file I/O seam: every read, write, fsync, rename and removal
//! of the store's files, and the creation of a missing folder for them,
//! goes through a [`Disk`].
//!
//! The store uses [`StdDisk`] (`std::fs`, real fsync). Tests (feature
//! `fault-injection`) give a [`StoreBuilder`](crate::StoreBuilder) another
//! `Disk` to fail a chosen call or to simulate a power loss; the trait is
//! not part of the public API without that feature. One dynamic call per
//! system call is all it costs the real path.
//!
//! Every fsync names its call site ([`Site`], the source location of the
//! store's code that asked for it), so a simulated disk can leave out one
//! fsync and show that a test notices.
// Public for the `fault-injection` feature's re-export; crate-private
// otherwise (the module is private).
#![cfg_attr(not(feature = "fault-injection"), allow(unreachable_pub))]

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Where in the store's code an fsync was asked for.
pub type Site = &'static std::panic::Location<'static>;

/// Permissions and owner a new file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perms {
    /// Unix permission bits, set exactly (the umask does not apply).
    pub mode: u32,
    /// `(uid, gid)` to give the file, if any. Setting another owner needs
    /// root; without it, the attempt fails and the file stays ours (which
    /// is then also the memory's owner, or it could not be written).
    pub owner: Option<(u32, u32)>,
}

impl Perms {
    /// A new memory's files: readable and writable by their owner alone
    /// (memories are personal).
    pub const PRIVATE: Perms = Perms {
        mode: 0o600,
        owner: None,
    };
}

/// What the store reads of a file's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Length in bytes.
    pub len: u64,
    /// Unix permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A held OS lock on the store's lock file; dropping it releases the lock.
pub type LockHold = Box<dyn Send + Sync>;

/// The file operations the store needs. Errors are plain `io::Error`s; the
/// store names the path in its own error.
pub trait Disk: Send + Sync + fmt::Debug {
    /// The whole file (`ErrorKind::NotFound` if it does not exist).
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    /// Creates `path` (or truncates it) for writing, with `perms` set
    /// before any byte is written.
    fn create(&self, path: &Path, perms: Perms) -> std::io::Result<Box<dyn DiskFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn DiskFile>>;
    /// Renames `from` over `to` (atomic; durable once the directory is synced).
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// Removes a file (durable once the directory is synced).
    fn remove(&self, path: &Path) -> std::io::Result<()>;
    /// Whether anything (a file, a folder, a symlink even if dangling) is
    /// at `path`; an error (a folder we may not search) counts as nothing.
    fn exists(&self, path: &Path) -> std::io::Result<bool>;
    /// Creates the folder `path` and its missing parents; each new one's
    /// entry is durable once its parent folder is synced.
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path, site: Site) -> std::io::Result<()>;
    /// The file's metadata (`ErrorKind::NotFound` if it does not exist).
    fn metadata(&self, path: &Path) -> std::io::Result<Meta>;
    /// Takes the exclusive OS lock on `path` (created with `perms` if
    /// missing): `None` if someone else holds it.
    fn lock(&self, path: &Path, perms: Perms) -> std::io::Result<Option<LockHold>>;
}

/// An open file of a [`Disk`].
pub trait DiskFile: Send + fmt::Debug {
    /// Writes all of `bytes` at `offset`.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()>;
    /// Cuts or extends (with zeros) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> std::io::Result<()>;
    /// The file's length.
    fn size(&self) -> std::io::Result<u64>;
    /// `fdatasync`: the file's data (and the size needed to read it) is durable.
    fn sync_data(&mut self, site: Site) -> std::io::Result<()>;
    /// `fsync`: data and metadata are durable.
    fn sync_all(&mut self, site: Site) -> std::io::Result<()>;
}

/// Tests only: [`repair`](crate::repair) through `disk`, judging expiries
/// at `now_ms` (so a simulated power loss can cut it at every step).
#[cfg(feature = "fault-injection")]
pub fn repair_on(disk: &dyn Disk, path: &Path, now_ms: u64) -> crate::Result<crate::RepairReport> {
    crate::repair::repair_on(disk, path, now_ms)
}

/// Tests only: [`write_snapshot`](crate::write_snapshot) through `disk`
/// (so a simulated power loss can cut it at every step).
#[cfg(feature = "fault-injection")]
pub fn write_snapshot_on(
    disk: &dyn Disk,
    path: &Path,
    map: &serde_json::Map<String, serde_json::Value>,
) -> crate::Result<()> {
    crate::files::write_snapshot_on(disk, path, map)
}

/// The real disk: `std::fs` with real fsync.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdDisk;

impl Disk for StdDisk {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn create(&self, path: &Path, perms: Perms) -> std::io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(perms.mode)
            .open(path)?;
        apply_perms(&file, perms)?;
        Ok(Box::new(StdFile(file)))
    }

    fn open(&self, path: &Path) -> std::io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }

    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        Ok(std::fs::symlink_metadata(path).is_ok())
    }

    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn sync_dir(&self, dir: &Path, _site: Site) -> std::io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn metadata(&self, path: &Path) -> std::io::Result<Meta> {
        let m = std::fs::metadata(path)?;
        Ok(Meta {
            len: m.len(),
            mode: m.permissions().mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        })
    }

    fn lock(&self, path: &Path, perms: Perms) -> std::io::Result<Option<LockHold>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(perms.mode)
            .open(path)?;
        // The lock file holds no data: one we cannot re-mode (another
        // user's, from before) is still a good lock.
        if let Err(e) = apply_perms(&file, perms) {
            tracing::debug!(lock = %path.display(), error = %e, "lock file keeps its permissions");
        }
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(LockGuard(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Sets `perms` on an open file: the exact mode (`fchmod`, so the umask
/// does not widen or narrow it), then the owner (`fchown`) if it differs.
/// Only root can give a file away: for anyone else that fails with
/// `EPERM` and the file stays theirs, which is then fine (see [`Perms`]).
fn apply_perms(file: &File, perms: Perms) -> std::io::Result<()> {
    let meta = file.metadata()?;
    if meta.permissions().mode() & 0o7777 != perms.mode {
        file.set_permissions(std::fs::Permissions::from_mode(perms.mode))?;
    }
    let Some((uid, gid)) = perms.owner else {
        return Ok(());
    };
    if (meta.uid(), meta.gid()) == (uid, gid) {
        return Ok(());
    }
    match std::os::unix::fs::fchown(file, Some(uid), Some(gid)) {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            tracing::debug!(uid, gid, error = %e, "not root: a new file keeps our owner");
            Ok(())
        }
        other => other,
    }
}

/// The OS lock, released explicitly on drop: a child process forked
/// elsewhere in this program may briefly hold a copy of the descriptor,
/// and closing ours alone would leave the lock held until it execs.
struct LockGuard(File);

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[derive(Debug)]
struct StdFile(File);

impl DiskFile for StdFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.0.seek(SeekFrom::Start(offset))?;
        self.0.write_all(bytes)
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }

    fn size(&self) -> std::io::Result<u64> {
        self.0.metadata().map(|m| m.len())
    }

    fn sync_data(&mut self, _site: Site) -> std::io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&mut self, _site: Site) -> std::io::Result<()> {
        self.0.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_files_get_the_exact_mode_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o640, 0o666] {
            let path = dir.path().join(format!("f{mode:o}"));
            let site = std::panic::Location::caller();
            let mut f = StdDisk.create(&path, Perms { mode, owner: None }).unwrap();
            f.write_at(0, b"x").unwrap();
            f.sync_all(site).unwrap();
            assert_eq!(StdDisk.metadata(&path).unwrap().mode, mode);
            assert_eq!(std::fs::read(&path).unwrap(), b"x");
        }
    }
}
