//! The folder a memory lives in: created on open when missing.

use std::path::{Path, PathBuf};

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::files;

/// Creates `dir` and any missing parents, and fsyncs the parent of each
/// one created, so the new folders survive a power loss along with the
/// files about to be written in them. Nothing to do when it exists.
pub(crate) fn ensure(disk: &dyn Disk, dir: &Path) -> Result<()> {
    let missing = missing_ancestors(disk, dir)?;
    // Deepest first: the last one created is the outermost.
    let Some((outermost, inner)) = missing.split_last() else {
        return Ok(());
    };
    disk.create_dir_all(dir)
        .map_err(|e| Error::io("creating the folder", dir, e))?;
    tracing::info!(dir = %dir.display(), "created the memory's folder");
    // Each inner new folder's entry lives in a folder that is new too:
    // until that one is synced, a power loss may drop the entry and with
    // it everything written below.
    for created in inner {
        if let Some(parent) = created.parent() {
            files::sync_dir(disk, parent)?;
        }
    }
    // The outermost new folder's entry lives in a folder that existed: it
    // is the one the whole new tree hangs from.
    if let Some(parent) = outermost.parent().filter(|p| !p.as_os_str().is_empty()) {
        files::sync_dir(disk, parent)?;
    }
    Ok(())
}

/// `dir` and its ancestors that do not exist, deepest first.
fn missing_ancestors(disk: &dyn Disk, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    for p in dir.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        let exists = disk
            .exists(p)
            .map_err(|e| Error::io("looking for the folder", p, e))?;
        if exists {
            break;
        }
        missing.push(p.to_path_buf());
    }
    Ok(missing)
}
