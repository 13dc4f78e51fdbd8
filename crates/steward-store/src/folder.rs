//! The folder a memory lives in: created on open when missing.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::files;

/// Creates `dir` and any missing parents, and fsyncs the parent of each
/// one created, so the new folders survive a power loss along with the
/// files about to be written in them. Nothing to do when it exists.
pub(crate) fn ensure(dir: &Path) -> Result<()> {
    let missing = missing_ancestors(dir);
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the folder", dir, e))?;
    tracing::info!(dir = %dir.display(), "created the memory's folder");
    for created in &missing {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            files::fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// `dir` and its ancestors that do not exist, deepest first.
fn missing_ancestors(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .take_while(|p| std::fs::symlink_metadata(p).is_err())
        .map(Path::to_path_buf)
        .collect()
}
