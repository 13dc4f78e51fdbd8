//! `repair`: salvages what can be read of a damaged memory into a fresh one,
//! keeping the damaged files beside it under a dated name.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::disk::{Disk, Perms, StdDisk};
use crate::error::{Error, Result};
use crate::files::{self, Expiries, Paths};
use crate::json;
use crate::log::{self, SnapshotId};
use crate::salvage::{self, Gap};
use crate::store::{Clock, SystemClock, rename_staged, take_lock};

/// A stretch of a damaged file that [`repair`] could not keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Lost {
    /// The file (its original name).
    pub file: PathBuf,
    /// First byte of the stretch.
    pub from: u64,
    /// One past its last byte.
    pub to: u64,
    /// Why it could not be kept.
    pub reason: String,
}

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RepairReport {
    /// The snapshot (`memory.json`).
    pub snapshot: PathBuf,
    /// Whether anything was damaged (and so replaced). `false`: the memory
    /// opens as it is; nothing was changed.
    pub repaired: bool,
    /// The keys the memory holds now, in order.
    pub kept: Vec<String>,
    /// What could not be kept, file by file, in file order.
    pub lost: Vec<Lost>,
    /// TTL entries left out because their time had run out.
    pub expired: Vec<String>,
    /// The damaged files, unchanged, under their dated names.
    pub originals: Vec<PathBuf>,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.snapshot.display();
        if !self.repaired {
            return write!(
                f,
                "{name}: nothing damaged, nothing changed ({} keys)",
                self.kept.len()
            );
        }
        writeln!(
            f,
            "{name}: repaired; kept {} keys: {}",
            self.kept.len(),
            keys(&self.kept)
        )?;
        for l in &self.lost {
            writeln!(
                f,
                "could not keep {} bytes {}..{}: {}",
                l.file.display(),
                l.from,
                l.to,
                l.reason
            )?;
        }
        if !self.expired.is_empty() {
            writeln!(
                f,
                "left out {} expired: {}",
                self.expired.len(),
                keys(&self.expired)
            )?;
        }
        let originals: Vec<String> = self
            .originals
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        write!(
            f,
            "the damaged files are kept unchanged as {}",
            originals.join(", ")
        )
    }
}

/// Keys as a JSON array (quoted, escaped).
fn keys(keys: &[String]) -> String {
    serde_json::to_string(keys).unwrap_or_default()
}

/// Salvages a damaged memory: every complete entry of `memory.json` (empty,
/// cut off mid-write, garbage at the end or in the middle), every intact
/// write batch of its log and every readable expiry of its TTL file go into
/// a fresh memory in their place, written as a compaction writes (crash
/// safe at every step). The damaged files are first copied, unchanged,
/// beside it under a dated name (`memory.json.damaged-2026-12-06T18-30-00Z`,
/// and so on for the log and the TTL file). Takes the store's lock.
///
/// A memory that is not damaged (it opens as it is) is left alone:
/// [`RepairReport::repaired`] is `false`.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("memory.json");
/// std::fs::write(&path, "{\n  \"a\": 1,\n  \"b\": tr")?; // cut off mid-write
/// let report = steward_store::repair(&path)?;
/// assert_eq!(report.kept, ["a"]);
/// assert_eq!(std::fs::read(&report.originals[0])?, b"{\n  \"a\": 1,\n  \"b\": tr");
/// assert_eq!(steward_store::load(&path)?["a"], 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn repair(path: impl AsRef<Path>) -> Result<RepairReport> {
    repair_on(&StdDisk, path.as_ref(), SystemClock.now_ms())
}

/// [`repair`] on `disk`, judging expiries at `now_ms`.
pub(crate) fn repair_on(disk: &dyn Disk, path: &Path, now_ms: u64) -> Result<RepairReport> {
    let paths = Paths::new(path);
    let span = tracing::info_span!("store_repair", path = %paths.snapshot.display());
    let _g = span.enter();
    let originals = Originals::read(disk, &paths)?;
    if originals.files.is_empty() {
        return Err(Error::io(
            "repairing",
            &paths.snapshot,
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    let perms = files::perms_of(disk, &paths.snapshot)?;
    let _lock = take_lock(disk, &paths.lock, perms)?;
    // Read again under the lock: the files may have changed meanwhile.
    let originals = Originals::read(disk, &paths)?;
    if let Some(report) = undamaged(disk, &paths, &originals, now_ms)? {
        return Ok(report);
    }
    let mut fresh = salvage_all(&paths, &originals);
    let expired = drop_expired(&mut fresh, now_ms);
    let stamp = utc_stamp(now_ms);
    let kept_as = keep_originals(disk, &paths, &originals, &stamp, perms)?;
    let had_ttl = originals.get(&paths.ttl).is_some();
    write_fresh(disk, &paths, &fresh.map, &fresh.expires, had_ttl, perms)?;
    tracing::warn!(
        kept = fresh.map.len(),
        lost = fresh.lost.len(),
        "repaired a damaged memory; the damaged files are kept beside it"
    );
    Ok(RepairReport {
        snapshot: paths.snapshot.clone(),
        repaired: true,
        kept: fresh.map.keys().cloned().collect(),
        lost: fresh.lost,
        expired,
        originals: kept_as,
    })
}

/// The bytes of every file of the memory that exists.
struct Originals {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Originals {
    fn read(disk: &dyn Disk, paths: &Paths) -> Result<Self> {
        let mut files = Vec::new();
        for p in [
            &paths.snapshot,
            &paths.log,
            &paths.ttl,
            &paths.snapshot_tmp,
            &paths.log_tmp,
            &paths.ttl_tmp,
        ] {
            if let Some(bytes) = files::read_optional_on(disk, p)? {
                files.push((p.clone(), bytes));
            }
        }
        Ok(Originals { files })
    }

    fn get(&self, path: &Path) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.as_slice())
    }
}

/// `Some(report)` when the memory opens as it is and its expiry file reads.
fn undamaged(
    disk: &dyn Disk,
    paths: &Paths,
    originals: &Originals,
    now_ms: u64,
) -> Result<Option<RepairReport>> {
    let loaded = match files::load_files_on(disk, paths) {
        Ok(l) => l,
        Err(e) if e.is_damage() => return Ok(None),
        Err(e) => return Err(e),
    };
    let ttl_readable = originals
        .get(&paths.ttl)
        .is_none_or(|b| serde_json::from_slice::<Value>(b).is_ok());
    if !ttl_readable {
        return Ok(None);
    }
    let kept = files::with_ttl(loaded.map, &loaded.expires, now_ms)
        .into_iter()
        .map(|e| e.key)
        .collect();
    Ok(Some(RepairReport {
        snapshot: paths.snapshot.clone(),
        repaired: false,
        kept,
        lost: Vec::new(),
        expired: Vec::new(),
        originals: Vec::new(),
    }))
}

/// The fresh memory and what could not go into it.
struct Fresh {
    map: Map<String, Value>,
    expires: Expiries,
    lost: Vec<Lost>,
}

fn lost(file: &Path, gaps: Vec<Gap>) -> impl Iterator<Item = Lost> + '_ {
    gaps.into_iter().map(move |g| Lost {
        file: file.to_path_buf(),
        from: g.from as u64,
        to: g.to as u64,
        reason: g.reason,
    })
}

/// Snapshot, then its expiries, then the log's batches, as opening would.
fn salvage_all(paths: &Paths, originals: &Originals) -> Fresh {
    let snapshot_bytes = originals.get(&paths.snapshot);
    let snapshot_id = SnapshotId::of(snapshot_bytes);
    let snap = salvage::object(snapshot_bytes.unwrap_or_default());
    let mut fresh = Fresh {
        map: snap.map,
        expires: Expiries::new(),
        lost: lost(&paths.snapshot, snap.gaps).collect(),
    };
    // A compaction that renamed its snapshot and not yet its log: the log
    // is already in the snapshot, and the expiries wait in the temporary file.
    let roll_forward = originals
        .get(&paths.log_tmp)
        .and_then(|b| log::scan(b).ok())
        .is_some_and(|s| s.torn_at.is_none() && s.snapshot == snapshot_id);
    let ttl_path = if roll_forward {
        &paths.ttl_tmp
    } else {
        &paths.ttl
    };
    if let Some(bytes) = originals.get(ttl_path) {
        fresh.expires = salvage_expiries(ttl_path, bytes, &fresh.map, &mut fresh.lost);
    }
    if roll_forward {
        return fresh;
    }
    if let Some(bytes) = originals.get(&paths.log) {
        apply_log(&paths.log, bytes, snapshot_id, &mut fresh);
    }
    fresh
}

/// The readable expiries of an expiry file that belong to `map`'s values.
fn salvage_expiries(
    path: &Path,
    bytes: &[u8],
    map: &Map<String, Value>,
    lost_out: &mut Vec<Lost>,
) -> Expiries {
    let found = salvage::object(bytes);
    lost_out.extend(lost(path, found.gaps));
    let text = serde_json::to_vec(&Value::Object(found.map)).unwrap_or_default();
    files::parse_expiries(path, &text, map).unwrap_or_default()
}

/// Applies the log's intact batches, unless its header says they were
/// made on another snapshot (someone rewrote `memory.json`): then they
/// stay in the damaged copy only.
fn apply_log(path: &Path, bytes: &[u8], snapshot: SnapshotId, fresh: &mut Fresh) {
    let batches = salvage::log(bytes);
    fresh.lost.extend(lost(path, batches.gaps));
    let foreign = batches.header.is_some_and(|h| h != snapshot);
    if foreign && !batches.frames.is_empty() {
        fresh.lost.push(Lost {
            file: path.to_path_buf(),
            from: log::HEADER_LEN as u64,
            to: bytes.len() as u64,
            reason: format!(
                "{} write batch(es) made on another version of the snapshot (it was \
                 rewritten outside steward); not applied",
                batches.frames.len()
            ),
        });
        return;
    }
    for ops in batches.frames {
        files::apply_ttl(&mut fresh.map, &mut fresh.expires, ops);
    }
}

/// Removes the entries expired at `now_ms`; returns their keys.
fn drop_expired(fresh: &mut Fresh, now_ms: u64) -> Vec<String> {
    let gone: Vec<String> = fresh
        .map
        .keys()
        .filter(|k| fresh.expires.get(k.as_str()).is_some_and(|&t| t <= now_ms))
        .cloned()
        .collect();
    for k in &gone {
        fresh.map.shift_remove(k);
        fresh.expires.remove(k.as_str());
    }
    gone
}

/// Copies every original file, unchanged, to `<name>.damaged-<stamp>`;
/// removes the temporary ones (their copies keep them). Returns the copies.
fn keep_originals(
    disk: &dyn Disk,
    paths: &Paths,
    originals: &Originals,
    stamp: &str,
    perms: Perms,
) -> Result<Vec<PathBuf>> {
    let mut kept_as = Vec::new();
    for (path, bytes) in &originals.files {
        let copy = free_name(disk, path, stamp)?;
        files::write_synced(disk, &copy, bytes, perms)?;
        kept_as.push(copy);
    }
    for tmp in [&paths.snapshot_tmp, &paths.log_tmp, &paths.ttl_tmp] {
        files::remove_if_exists(disk, tmp)?;
    }
    // Not needed for durability: nothing is replaced before write_fresh's
    // own directory fsync, which makes these names durable too; a cut
    // before it leaves the damaged files in place.
    files::sync_dir(disk, &paths.dir)?;
    Ok(kept_as)
}

/// `<path>.damaged-<stamp>`, with `-2`, `-3`, ... if that is taken.
fn free_name(disk: &dyn Disk, path: &Path, stamp: &str) -> Result<PathBuf> {
    let base = format!("{}.damaged-{stamp}", path.display());
    let mut n = 1;
    loop {
        let name = match n {
            1 => PathBuf::from(&base),
            n => PathBuf::from(format!("{base}-{n}")),
        };
        if !files::exists(disk, &name)? {
            return Ok(name);
        }
        n += 1;
    }
}

/// Writes a fresh memory the way a compaction does: snapshot, expiry file
/// and a log naming the new snapshot to temporary files, their names made
/// durable; the snapshot renamed into place (a crash from here on rolls
/// forward on open), then the others, each rename durable before the next
/// ([`rename_staged`]); then the empty log removed, as a clean close
/// leaves it.
/// Called with the store's lock held.
pub(crate) fn write_fresh(
    disk: &dyn Disk,
    paths: &Paths,
    map: &Map<String, Value>,
    expires: &Expiries,
    had_ttl: bool,
    perms: Perms,
) -> Result<()> {
    let text = json::to_python_json(map);
    let id = SnapshotId::of(Some(text.as_bytes()));
    let ttl_text = (had_ttl || !expires.is_empty()).then(|| files::encode_expiries(map, expires));
    files::write_synced(disk, &paths.snapshot_tmp, text.as_bytes(), perms)?;
    match &ttl_text {
        Some(t) => files::write_synced(disk, &paths.ttl_tmp, t.as_bytes(), perms)?,
        // A stale one would be renamed into place with the others.
        None => _ = files::remove_if_exists(disk, &paths.ttl_tmp)?,
    }
    files::write_synced(disk, &paths.log_tmp, &log::encode_header(id), perms)?;
    // The new log's name durable before the snapshot rename (see
    // rename_staged), as a compaction does.
    files::sync_dir(disk, &paths.dir)?;
    rename_staged(disk, paths)?;
    files::remove_if_exists(disk, &paths.log)?;
    // Not needed for durability: should the removal be lost, the empty log
    // that comes back names the fresh snapshot.
    files::sync_dir(disk, &paths.dir)
}

/// `2026-12-06T18-30-00Z` for `ms` since the Unix epoch (UTC; dashes in
/// the time, so the name is a valid file name everywhere).
fn utc_stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_dates() {
        assert_eq!(utc_stamp(0), "1970-01-01T00-00-00Z");
        // 2026-12-06T18:30:00Z
        assert_eq!(utc_stamp(1_796_581_800_000), "2026-12-06T18-30-00Z");
        assert_eq!(utc_stamp(951_782_400_000), "2000-02-29T00-00-00Z");
    }
}
