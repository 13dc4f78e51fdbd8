//! `check`: verifies a store's files without modifying them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Map;

use crate::error::{Error, Position, Result};
use crate::files::{self, Paths};
use crate::log::{self, SnapshotId};

/// How bad a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// Opening the store fails until a person repairs or removes the file.
    Error,
    /// Opening repairs it on its own (a torn last log record, left-over
    /// temporary files, an interrupted compaction).
    Repairable,
}

/// One thing wrong with a store's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// Where in the file, when known.
    pub at: Option<Position>,
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Repairable => "repairable",
        };
        write!(f, "{sev}: {}", self.file.display())?;
        if let Some(at) = self.at {
            write!(f, " at {at}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// The snapshot.
    pub snapshot: PathBuf,
    /// Whether the snapshot exists.
    pub snapshot_exists: bool,
    /// The log.
    pub log: PathBuf,
    /// Whether the log exists.
    pub log_exists: bool,
    /// Keys after replaying the log (0 when a file is unreadable).
    pub keys: usize,
    /// Valid write batches in the log.
    pub log_batches: usize,
    /// Everything found wrong, worst first.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// True when opening would succeed (possibly after repairing something).
    pub fn is_ok(&self) -> bool {
        !self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    /// True when nothing at all is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        write!(
            f,
            "{}: {} keys, {} log batch(es), {}",
            self.snapshot.display(),
            self.keys,
            self.log_batches,
            if self.is_clean() {
                "ok"
            } else if self.is_ok() {
                "repairable on open"
            } else {
                "DAMAGED"
            }
        )
    }
}

fn problem(file: &Path, at: Option<Position>, severity: Severity, message: String) -> Problem {
    Problem {
        file: file.to_path_buf(),
        at,
        severity,
        message,
    }
}

fn from_error(e: &Error, fallback: &Path) -> Problem {
    match e {
        Error::Corrupt { path, at, reason } => {
            problem(path, Some(*at), Severity::Error, reason.clone())
        }
        Error::Unsupported {
            path,
            at,
            key,
            reason,
        } => problem(
            path,
            Some(*at),
            Severity::Error,
            format!("value of key {key:?} cannot be kept exactly: {reason}"),
        ),
        other => problem(fallback, None, Severity::Error, other.to_string()),
    }
}

/// Verifies the snapshot `path` and its log without modifying anything and
/// without taking the lock (so it works while another process has the
/// store open; a write in progress there may show as a torn tail).
///
/// Every problem names its file and position (line and column in the
/// snapshot, byte offset in the log). `Err` only for I/O failures.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("memory.json");
/// std::fs::write(&path, "{\n  \"a\": 1,\n}")?;
/// let report = steward_store::check(&path)?;
/// assert!(!report.is_ok());
/// assert_eq!(
///     report.problems[0].at,
///     Some(steward_store::Position::Line { line: 3, column: 1 })
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check(path: impl AsRef<Path>) -> Result<CheckReport> {
    let paths = Paths::new(path.as_ref());
    files::stable_read(&paths, || check_once(&paths))
}

fn check_once(paths: &Paths) -> Result<CheckReport> {
    let mut report = CheckReport {
        snapshot: paths.snapshot.clone(),
        snapshot_exists: false,
        log: paths.log.clone(),
        log_exists: false,
        keys: 0,
        log_batches: 0,
        problems: Vec::new(),
    };
    let snapshot = files::read_optional(&paths.snapshot)?;
    report.snapshot_exists = snapshot.is_some();
    let snapshot_id = SnapshotId::of(snapshot.as_deref());
    let mut map = Map::new();
    if let Some(bytes) = &snapshot {
        match files::parse_snapshot(&paths.snapshot, bytes) {
            Ok(m) => map = m,
            Err(e) => report.problems.push(from_error(&e, &paths.snapshot)),
        }
    }
    let snapshot_ok = report.problems.is_empty();
    let mut roll_forward = false;
    if let Some(tmp) = files::read_optional(&paths.log_tmp)? {
        roll_forward =
            log::scan(&tmp).is_ok_and(|s| s.torn_at.is_none() && s.snapshot == snapshot_id);
        let message = if roll_forward {
            "a compaction was interrupted after writing the snapshot; opening finishes it"
        } else {
            "left-over temporary log from an interrupted compaction; opening removes it"
        };
        report.problems.push(problem(
            &paths.log_tmp,
            None,
            Severity::Repairable,
            message.into(),
        ));
    }
    if files::read_optional(&paths.snapshot_tmp)?.is_some() {
        report.problems.push(problem(
            &paths.snapshot_tmp,
            None,
            Severity::Repairable,
            "left-over temporary snapshot from an interrupted write; opening removes it".into(),
        ));
    }
    if let Some(bytes) = files::read_optional(&paths.log)? {
        report.log_exists = true;
        check_log(
            paths,
            &bytes,
            snapshot_id,
            roll_forward,
            &mut map,
            &mut report,
        );
    }
    if snapshot_ok {
        report.keys = map.len();
    }
    report
        .problems
        .sort_by_key(|p| p.severity == Severity::Repairable);
    Ok(report)
}

fn check_log(
    paths: &Paths,
    bytes: &[u8],
    snapshot_id: SnapshotId,
    roll_forward: bool,
    map: &mut Map<String, serde_json::Value>,
    report: &mut CheckReport,
) {
    let scan = match files::parse_log(&paths.log, bytes) {
        Ok(s) => s,
        Err(e) => {
            report.problems.push(from_error(&e, &paths.log));
            return;
        }
    };
    if roll_forward {
        // The snapshot already holds this log's writes.
        return;
    }
    if let Some(at) = scan.torn_at {
        report.problems.push(problem(
            &paths.log,
            Some(Position::Offset(at)),
            Severity::Repairable,
            format!(
                "torn last record ({} bytes of an unacknowledged write); opening cuts it off",
                bytes.len() as u64 - at
            ),
        ));
    }
    let header_ok = scan.valid_len >= log::HEADER_LEN as u64;
    if header_ok && scan.snapshot != snapshot_id && !scan.frames.is_empty() {
        let e = Error::SnapshotChanged {
            snapshot: paths.snapshot.clone(),
            log: paths.log.clone(),
            records: scan.frames.len(),
        };
        report
            .problems
            .push(problem(&paths.log, None, Severity::Error, e.to_string()));
        return;
    }
    report.log_batches = scan.frames.len();
    for ops in scan.frames {
        files::apply(map, ops);
    }
}
