//! File names, durable file operations and reading a store's files.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::backend::Entry;
use crate::disk::{Disk, Perms, StdDisk};
use crate::error::{Error, Position, Result};
use crate::json;
use crate::log::{self, Scan, SnapshotId};

/// The files of one store.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub(crate) snapshot: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) lock: PathBuf,
    pub(crate) snapshot_tmp: PathBuf,
    pub(crate) log_tmp: PathBuf,
    /// Expiry times of TTL entries (`{key: [ms since epoch, fingerprint of
    /// the value]}`), beside the snapshot so the snapshot stays a plain
    /// `{key: value}` object.
    pub(crate) ttl: PathBuf,
    pub(crate) ttl_tmp: PathBuf,
    pub(crate) dir: PathBuf,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl Paths {
    /// The files of the store whose snapshot is `snapshot`. A symlinked
    /// snapshot is followed (as Python's `open(path, "w")` would), so the
    /// log, the lock and the renames all happen beside the real file.
    pub(crate) fn new(snapshot: &Path) -> Self {
        let resolved = std::fs::symlink_metadata(snapshot)
            .ok()
            .filter(|m| m.file_type().is_symlink())
            .and_then(|_| std::fs::canonicalize(snapshot).ok());
        let snapshot = resolved.as_deref().unwrap_or(snapshot);
        let dir = match snapshot.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Paths {
            snapshot: snapshot.to_path_buf(),
            log: with_suffix(snapshot, ".log"),
            lock: with_suffix(snapshot, ".lock"),
            snapshot_tmp: with_suffix(snapshot, ".tmp"),
            log_tmp: with_suffix(snapshot, ".log.tmp"),
            ttl: with_suffix(snapshot, ".ttl"),
            ttl_tmp: with_suffix(snapshot, ".ttl.tmp"),
            dir,
        }
    }
}

/// The file's bytes, or `None` if it does not exist (on the real disk).
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    read_optional_on(&StdDisk, path)
}

/// The file's bytes on `disk`, or `None` if it does not exist.
pub(crate) fn read_optional_on(disk: &dyn Disk, path: &Path) -> Result<Option<Vec<u8>>> {
    match disk.read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

/// Whether `path` exists on `disk`.
pub(crate) fn exists(disk: &dyn Disk, path: &Path) -> Result<bool> {
    match disk.metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("reading metadata of", path, e)),
    }
}

/// Makes `dir`'s entries durable; the fsync's site is the caller's.
#[track_caller]
pub(crate) fn sync_dir(disk: &dyn Disk, dir: &Path) -> Result<()> {
    disk.sync_dir(dir, std::panic::Location::caller())
        .map_err(|e| Error::io("fsync of directory", dir, e))
}

/// Creates (or truncates) `path` with `bytes` and fsyncs it (the fsync's
/// site is the caller's), with `perms` set before the first byte. Not yet
/// visible under its final name: the caller renames it.
#[track_caller]
pub(crate) fn write_synced(disk: &dyn Disk, path: &Path, bytes: &[u8], perms: Perms) -> Result<()> {
    let site = std::panic::Location::caller();
    let mut f = disk
        .create(path, perms)
        .map_err(|e| Error::io("creating", path, e))?;
    f.write_at(0, bytes)
        .map_err(|e| Error::io("writing", path, e))?;
    f.sync_all(site).map_err(|e| Error::io("fsync of", path, e))
}

/// The permissions and owner every file of the memory gets: those of the
/// snapshot (`memory.json`) if it exists, so a private memory's log,
/// expiry file and lock are as private as it is and a compaction run by
/// root keeps its owner. A new memory is private: 0600 (memories are
/// personal; the Python assistant, running as the same user, still reads
/// and writes it).
pub(crate) fn perms_of(disk: &dyn Disk, snapshot: &Path) -> Result<Perms> {
    match disk.metadata(snapshot) {
        Ok(m) => Ok(Perms {
            mode: m.mode,
            owner: Some((m.uid, m.gid)),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Perms::PRIVATE),
        Err(e) => Err(Error::io("reading metadata of", snapshot, e)),
    }
}

pub(crate) fn rename(disk: &dyn Disk, from: &Path, to: &Path) -> Result<()> {
    disk.rename(from, to)
        .map_err(|e| Error::io("renaming into place", to, e))
}

pub(crate) fn remove_if_exists(disk: &dyn Disk, path: &Path) -> Result<bool> {
    match disk.remove(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

/// Writes `map` as Python's `json.dump(map, f, indent=2)` to `path`,
/// durably and atomically: a temporary file beside it is written and
/// fsynced, renamed over `path`, and the directory is fsynced. A crash at any
/// moment leaves either the old file or the new one, never a mix. The file
/// keeps the mode and owner of the one it replaces (a new one is 0600).
///
/// This does not take the store's lock: use it for exports to new files, or
/// [`Store::compact`](crate::Store::compact) for an open store.
pub fn write_snapshot(path: impl AsRef<Path>, map: &Map<String, Value>) -> Result<()> {
    write_snapshot_on(&StdDisk, path.as_ref(), map)
}

/// [`write_snapshot`] on `disk`.
pub(crate) fn write_snapshot_on(
    disk: &dyn Disk,
    path: &Path,
    map: &Map<String, Value>,
) -> Result<()> {
    let paths = Paths::new(path);
    let text = json::to_python_json(map);
    let tmp = &paths.snapshot_tmp;
    let perms = perms_of(disk, &paths.snapshot)?;
    if let Err(e) = write_synced(disk, tmp, text.as_bytes(), perms) {
        let _ = disk.remove(tmp);
        return Err(e);
    }
    rename(disk, tmp, &paths.snapshot)?;
    sync_dir(disk, &paths.dir)
}

/// Parses snapshot bytes, mapping reader errors to `Corrupt`/`Unsupported`.
///
/// An empty (or whitespace-only) file is an empty memory: the Python
/// assistant leaves one when it crashes between truncating `memory.json`
/// and writing it.
pub(crate) fn parse_snapshot(path: &Path, bytes: &[u8]) -> Result<Map<String, Value>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        tracing::warn!(path = %path.display(), "empty snapshot: opening as an empty memory");
        return Ok(Map::new());
    }
    json::parse_object(bytes).map_err(|e| {
        let (line, column) = e.line_column(bytes);
        let at = Position::Line { line, column };
        match e.unsupported_key {
            Some(key) => Error::Unsupported {
                path: path.to_path_buf(),
                at,
                key,
                reason: e.reason,
            },
            None => Error::Corrupt {
                path: path.to_path_buf(),
                at,
                reason: e.reason,
            },
        }
    })
}

/// Parses log bytes, mapping damage to `Corrupt` with the byte offset.
pub(crate) fn parse_log(path: &Path, bytes: &[u8]) -> Result<Scan> {
    log::scan(bytes).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        at: Position::Offset(e.offset),
        reason: e.reason,
    })
}

/// Applies logged operations to a map.
pub(crate) fn apply(map: &mut Map<String, Value>, ops: Vec<log::Op>) {
    apply_ttl(map, &mut Expiries::new(), ops);
}

/// Expiry times of TTL entries: key to wall-clock ms since the Unix epoch.
pub(crate) use crate::expiry::Expiries;

/// Applies logged operations to a map and its expiries.
pub(crate) fn apply_ttl(map: &mut Map<String, Value>, expires: &mut Expiries, ops: Vec<log::Op>) {
    for op in ops {
        match op {
            log::Op::Set(k, v) => {
                expires.remove(&k);
                map.insert(k, v);
            }
            log::Op::Delete(k) => {
                expires.remove(&k);
                map.shift_remove(&k);
            }
            log::Op::Reset => {
                expires.clear();
                map.clear();
            }
            log::Op::Expire(k, at) => {
                if map.contains_key(&k) {
                    expires.insert(k, at);
                }
            }
        }
    }
}

/// Fingerprint of a value in the expiry sidecar: CRC-32 of its compact
/// JSON. An expiry counts only for the value it was written for.
pub(crate) fn value_fingerprint(value: &Value) -> u32 {
    serde_json::to_vec(value).map_or(0, |bytes| crc32fast::hash(&bytes))
}

/// The expiry sidecar's text for `expires` (keys of `map`):
/// `{key: [ms, fingerprint of the value]}`, sorted by key.
pub(crate) fn encode_expiries(map: &Map<String, Value>, expires: &Expiries) -> String {
    let sorted: std::collections::BTreeMap<&String, (u64, u32)> = expires
        .iter()
        .filter_map(|(k, &at)| Some((k, (at, value_fingerprint(map.get(k)?)))))
        .collect();
    serde_json::to_string(&sorted).unwrap_or_else(|_| "{}".into())
}

/// The expiries in sidecar bytes that still belong to `map`: an entry whose
/// key is gone, or whose value is not the one it was written for (someone,
/// say the Python assistant, rewrote the key in `memory.json`), is ignored,
/// so the value stays permanent. `None` if the bytes are not a sidecar.
pub(crate) fn parse_expiries(
    path: &Path,
    bytes: &[u8],
    map: &Map<String, Value>,
) -> Option<Expiries> {
    let parsed: std::collections::BTreeMap<String, Value> = match serde_json::from_slice(bytes) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable expiry file");
            return None;
        }
    };
    let mut out = Expiries::new();
    for (key, entry) in parsed {
        let Some(value) = map.get(&key) else {
            continue;
        };
        let checked = serde_json::from_value::<(u64, u32)>(entry).ok();
        match checked {
            Some((at, fingerprint)) if fingerprint == value_fingerprint(value) => {
                out.insert(key, at);
            }
            Some(_) => tracing::warn!(
                path = %path.display(),
                key = %key,
                "ignoring an expiry written for another value (the key was rewritten in the snapshot); the value stays"
            ),
            None => tracing::warn!(
                path = %path.display(),
                key = %key,
                "ignoring an expiry without a value fingerprint; the value stays"
            ),
        }
    }
    Some(out)
}

/// Reads the expiry sidecar for keys of `map`. A missing or unreadable
/// sidecar means no expiries (the entries stay, permanent).
fn load_expiries(disk: &dyn Disk, paths: &Paths, map: &Map<String, Value>) -> Result<Expiries> {
    let Some(bytes) = read_optional_on(disk, &paths.ttl)? else {
        return Ok(Expiries::new());
    };
    Ok(parse_expiries(&paths.ttl, &bytes, map).unwrap_or_default())
}

/// Everything read from a store's files without changing any of them.
pub(crate) struct Loaded {
    pub(crate) map: Map<String, Value>,
    /// Expiry times of the map's TTL entries.
    pub(crate) expires: Expiries,
    pub(crate) snapshot_id: SnapshotId,
    /// The log, if there is one that extends this snapshot.
    pub(crate) log: Option<LoadedLog>,
    /// The compaction's new log waiting to be renamed into place.
    pub(crate) roll_forward: bool,
}

pub(crate) struct LoadedLog {
    pub(crate) valid_len: u64,
    pub(crate) torn_at: Option<u64>,
    pub(crate) file_len: u64,
    /// Whether the log's header names another snapshot (only allowed when it is empty).
    pub(crate) stale: bool,
}

/// Reads snapshot and log into a map, modifying nothing.
pub(crate) fn load_files(paths: &Paths) -> Result<Loaded> {
    load_files_on(&StdDisk, paths)
}

/// [`load_files`] on `disk`.
pub(crate) fn load_files_on(disk: &dyn Disk, paths: &Paths) -> Result<Loaded> {
    let snapshot_bytes = read_optional_on(disk, &paths.snapshot)?;
    let snapshot_id = SnapshotId::of(snapshot_bytes.as_deref());
    let mut map = match &snapshot_bytes {
        Some(b) => parse_snapshot(&paths.snapshot, b)?,
        None => Map::new(),
    };
    let mut expires = load_expiries(disk, paths, &map)?;
    // A compaction that renamed its snapshot but not yet its new log: the
    // new (empty) log names exactly this snapshot, which already holds
    // everything the old log had.
    let mut roll_forward = false;
    if let Some(tmp) = read_optional_on(disk, &paths.log_tmp)?
        && let Ok(scan) = log::scan(&tmp)
    {
        roll_forward = scan.torn_at.is_none() && scan.snapshot == snapshot_id;
    }
    if roll_forward {
        // The compaction's expiry file may still wait beside it.
        if let Some(b) = read_optional_on(disk, &paths.ttl_tmp)?
            && let Some(p) = parse_expiries(&paths.ttl_tmp, &b, &map)
        {
            expires = p;
        }
        return Ok(Loaded {
            map,
            expires,
            snapshot_id,
            log: None,
            roll_forward,
        });
    }
    let Some(bytes) = read_optional_on(disk, &paths.log)? else {
        return Ok(Loaded {
            map,
            expires,
            snapshot_id,
            log: None,
            roll_forward,
        });
    };
    let scan = parse_log(&paths.log, &bytes)?;
    let header_ok = scan.valid_len >= log::HEADER_LEN as u64;
    let stale = header_ok && scan.snapshot != snapshot_id;
    if stale && !scan.frames.is_empty() {
        return Err(Error::SnapshotChanged {
            snapshot: paths.snapshot.clone(),
            log: paths.log.clone(),
            records: scan.frames.len(),
        });
    }
    for ops in scan.frames {
        apply_ttl(&mut map, &mut expires, ops);
    }
    Ok(Loaded {
        map,
        expires,
        snapshot_id,
        log: Some(LoadedLog {
            valid_len: scan.valid_len,
            torn_at: scan.torn_at,
            file_len: bytes.len() as u64,
            stale: stale || !header_ok,
        }),
        roll_forward,
    })
}

/// Reads a store's current contents (snapshot plus log) without taking its
/// lock and without modifying any file, so it works while another process
/// has the store open (it re-reads if a compaction there swaps the files
/// meanwhile). A torn last log record is ignored, as opening would, and
/// TTL entries that expired (by the system clock) are left out, as every
/// read of an open store leaves them out.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("memory.json");
/// std::fs::write(&path, "{\n  \"a\": 1\n}")?;
/// let map = steward_store::load(&path)?;
/// assert_eq!(map["a"], 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load(path: impl AsRef<Path>) -> Result<Map<String, Value>> {
    Ok(load_with_ttl(path)?
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect())
}

/// [`load`], keeping the time each TTL entry has left (by the system
/// clock): what copying a memory needs so that its TTL entries stay TTL
/// entries.
pub fn load_with_ttl(path: impl AsRef<Path>) -> Result<Vec<Entry>> {
    let paths = Paths::new(path.as_ref());
    let loaded = stable_read(&paths, || load_files(&paths))?;
    let now = crate::store::Clock::now_ms(&crate::store::SystemClock);
    Ok(with_ttl(loaded.map, &loaded.expires, now))
}

/// The `entries` (a map's, in order) still live at `now` (ms since the
/// Unix epoch), with the time left of those that expire.
pub(crate) fn with_ttl(
    entries: impl IntoIterator<Item = (String, Value)>,
    expires: &Expiries,
    now: u64,
) -> Vec<Entry> {
    entries
        .into_iter()
        .filter_map(|(key, value)| {
            let ttl = match expires.get(&key) {
                None => None,
                Some(&at) if at <= now => return None,
                Some(&at) => Some(std::time::Duration::from_millis(at - now)),
            };
            Some(Entry { key, value, ttl })
        })
        .collect()
}

/// Runs a read of the store's files again (up to a few times) if the
/// snapshot changed while it ran: a compaction in another process may swap
/// the files between the reads of snapshot and log.
pub(crate) fn stable_read<T>(paths: &Paths, read: impl Fn() -> Result<T>) -> Result<T> {
    let mut attempts = 0;
    loop {
        let before = SnapshotId::of(read_optional(&paths.snapshot)?.as_deref());
        let result = read();
        let after = SnapshotId::of(read_optional(&paths.snapshot)?.as_deref());
        attempts += 1;
        if before == after || attempts >= 5 {
            return result;
        }
    }
}
