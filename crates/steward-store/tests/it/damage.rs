//! Damaged files are reported with position and never overwritten; torn
//! tails are cut; locks are exclusive across processes; a full disk keeps
//! the last good state.

use serde_json::json;
use steward_store::{Error, Position, Severity, Store};

use crate::child::{protocol, spawn};
use crate::{read, temp_store};

fn log_of(path: &std::path::Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".log");
    s.into()
}

#[test]
fn corrupt_snapshot_is_reported_with_line_and_column_and_kept() {
    let (_d, path) = temp_store();
    let text = b"{\n  \"a\": 1,\n  \"b\": tru\n}";
    std::fs::write(&path, text).unwrap();
    let e = Store::open(&path).unwrap_err();
    match &e {
        Error::Corrupt { path: p, at, .. } => {
            assert_eq!(p, &path);
            assert_eq!(*at, Position::Line { line: 3, column: 8 });
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(e.to_string().contains("line 3 column 8"), "{e}");
    assert_eq!(read(&path), text, "the damaged snapshot was modified");
    assert!(
        !log_of(&path).exists(),
        "opening a damaged store created a log"
    );
    let report = steward_store::check(&path).unwrap();
    assert!(!report.is_ok());
    assert_eq!(
        report.problems[0].at,
        Some(Position::Line { line: 3, column: 8 })
    );
}

/// Bytes that are not UTF-8 inside a string are reported at their own line
/// and column (in characters: "é" is one), and the file is kept.
#[test]
fn invalid_utf8_in_a_string_is_reported_where_it_is() {
    let (_d, path) = temp_store();
    let text = b"{\n  \"a\": \"ok\",\n  \"b\": \"caf\xc3\xa9 \xff!\"\n}";
    std::fs::write(&path, text).unwrap();
    let e = Store::open(&path).unwrap_err();
    match &e {
        Error::Corrupt { at, .. } => assert_eq!(
            *at,
            Position::Line {
                line: 3,
                column: 14
            }
        ),
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(e.to_string().contains("invalid UTF-8"), "{e}");
    assert_eq!(read(&path), text);
}

#[test]
fn non_object_snapshots_are_refused() {
    let (_d, path) = temp_store();
    for text in [&b"[1, 2]"[..], b"\"x\"", b"{\"a\": 1} x"] {
        std::fs::write(&path, text).unwrap();
        let e = Store::open(&path).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{text:?}: {e}");
        assert_eq!(read(&path), text);
    }
}

#[test]
fn unrepresentable_keys_and_too_deep_values_are_refused_naming_the_key() {
    let (_d, path) = temp_store();
    let deep = format!("{{\"d\": {}1{}}}", "[".repeat(500), "]".repeat(500));
    for (text, key, line, column) in [
        ("{\n  \"ok\": 1,\n  \"\\ud800\": 2\n}".to_string(), "", 3, 3),
        (deep, "d", 1, 406),
    ] {
        std::fs::write(&path, &text).unwrap();
        let e = Store::open(&path).unwrap_err();
        match &e {
            Error::Unsupported { key: k, at, .. } => {
                assert_eq!(k, key, "{text}");
                assert_eq!(*at, Position::Line { line, column }, "{text}: {e}");
            }
            other => panic!("{text}: expected Unsupported, got {other}"),
        }
        assert_eq!(read(&path), text.as_bytes());
    }
}

/// Writes three batches, then returns the log bytes and the offsets of its frames.
fn three_batch_log(path: &std::path::Path) -> Vec<u8> {
    let s = Store::builder(path)
        .compact_on_close(false)
        .build()
        .unwrap();
    s.upsert_blocking("a", 1).unwrap();
    s.upsert_blocking("b", "x".repeat(50)).unwrap();
    s.upsert_blocking("c", 3).unwrap();
    s.close_blocking().unwrap();
    read(&log_of(path))
}

#[test]
fn corrupt_log_record_in_the_middle_is_an_error_with_offset() {
    let (_d, path) = temp_store();
    let mut log = three_batch_log(&path);
    // Header 32 bytes; first frame: 12-byte header + payload (1+4+1+4+1 = 11).
    let second = 32 + 12 + 11;
    log[second + 20] ^= 0x55; // inside the second frame's payload
    std::fs::write(log_of(&path), &log).unwrap();
    let e = Store::open(&path).unwrap_err();
    match &e {
        Error::Corrupt { path: p, at, .. } => {
            assert_eq!(p, &log_of(&path));
            assert_eq!(*at, Position::Offset(second as u64));
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(
        e.to_string().contains(&format!("byte offset {second}")),
        "{e}"
    );
    assert_eq!(read(&log_of(&path)), log, "the damaged log was modified");
    let report = steward_store::check(&path).unwrap();
    assert_eq!(report.problems[0].at, Some(Position::Offset(second as u64)));
    assert_eq!(report.problems[0].severity, Severity::Error);
}

#[test]
fn torn_tail_is_cut_off_and_the_store_reopens() {
    let (_d, path) = temp_store();
    let log = three_batch_log(&path);
    // Header, then frames of 12 + 11, 12 + 62 and 12 + 11 bytes; the rest of
    // the file is preallocated zeros.
    let end = 32 + 23 + 74 + 23;
    assert!(log[end..].iter().all(|b| *b == 0));
    for cut in 1..=23 {
        // A torn append: the file ends inside the last frame, or (in the
        // preallocated space) the frame's tail never reached the disk, or
        // reached it as garbage.
        let mut zeroed = log.clone();
        zeroed[end - cut..end].fill(0);
        let mut garbage = log.clone();
        garbage[end - cut..end].fill(0xA5);
        for torn in [log[..end - cut].to_vec(), zeroed, garbage] {
            std::fs::write(log_of(&path), &torn).unwrap();
            let report = steward_store::check(&path).unwrap();
            assert!(report.is_ok(), "{report}");
            assert_eq!(read(&log_of(&path)), torn, "check modified the log");
            let s = Store::builder(&path)
                .compact_on_close(false)
                .build()
                .unwrap();
            assert_eq!(s.list_keys(), ["a", "b"], "cut {cut}");
            assert_eq!(s.get("b"), Some(json!("x".repeat(50))));
            s.upsert_blocking("d", 4).unwrap();
            drop(s);
            let s = Store::open(&path).unwrap();
            assert_eq!(
                s.list_keys(),
                ["a", "b", "d"],
                "write after the cut survives"
            );
        }
    }
}

/// A log shorter than its 32-byte header is a creation the crash cut
/// short (the header is written and fsynced before any frame): part of the
/// magic, or zeros the file system extended it with, open as an empty log
/// over the snapshot. Anything else there is refused and kept.
#[test]
fn a_log_cut_short_in_its_header_is_a_torn_creation() {
    let (_d, path) = temp_store();
    for torn in [&b""[..], b"STWD", b"STWDLOG1\x01\x00", &[0u8; 20]] {
        std::fs::write(&path, "{\n  \"a\": 1\n}").unwrap();
        std::fs::write(log_of(&path), torn).unwrap();
        let s = Store::builder(&path)
            .compact_on_close(false)
            .build()
            .unwrap_or_else(|e| panic!("{torn:?}: {e}"));
        assert_eq!(s.list_keys(), ["a"], "{torn:?}");
        s.upsert_blocking("b", 2).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.list_keys(),
            ["a", "b"],
            "{torn:?}: a write after it survives"
        );
        s.close_blocking().unwrap();
    }
    let foreign = b"not a log";
    std::fs::write(log_of(&path), foreign).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(e.to_string().contains("bad magic"), "{e}");
    assert_eq!(read(&log_of(&path)), foreign);
}

#[test]
fn snapshot_rewritten_while_log_has_writes_is_detected() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    s.upsert_blocking("a", 1).unwrap();
    s.compact_blocking().unwrap();
    s.upsert_blocking("b", 2).unwrap();
    drop(s); // log holds "b" on top of the snapshot {"a": 1}
    std::fs::write(&path, "{\n  \"python\": true\n}").unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(
        matches!(e, Error::SnapshotChanged { records: 1, .. }),
        "{e}"
    );
    assert!(!steward_store::check(&path).unwrap().is_ok());
    // After a clean close the log is gone and Python may rewrite freely.
    std::fs::remove_file(log_of(&path)).unwrap();
    let s = Store::open(&path).unwrap();
    assert_eq!(s.list_keys(), ["python"]);
    s.close_blocking().unwrap();
    std::fs::write(&path, "{\n  \"again\": 1\n}").unwrap();
    assert_eq!(Store::open(&path).unwrap().list_keys(), ["again"]);
}

#[test]
fn second_process_gets_locked() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    s.upsert_blocking("a", 1).unwrap();
    let child = spawn("lock", &path, None);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let said = protocol(&text);
    assert!(
        said.iter().any(|l| l.starts_with("locked ")),
        "child said {text:?}"
    );
    assert!(text.contains("memory.json.lock"), "child said {text:?}");
    // In-process too, and check still works while it is held.
    assert!(matches!(Store::open(&path), Err(Error::Locked { .. })));
    assert!(steward_store::check(&path).unwrap().is_clean());
    assert_eq!(steward_store::load(&path).unwrap()["a"], 1);
    s.close_blocking().unwrap();
    let child = spawn("lock", &path, None);
    let out = child.wait_with_output().unwrap();
    assert_eq!(protocol(&String::from_utf8_lossy(&out.stdout)), ["opened"]);
}

#[test]
fn full_disk_is_an_error_and_keeps_the_last_good_state() {
    let (_d, path) = temp_store();
    // A real limit on file size (EFBIG), standing in for ENOSPC: same code path.
    let child = spawn("full", &path, Some(64));
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let acked: Vec<usize> = protocol(&text)
        .into_iter()
        .filter_map(|l| l.strip_prefix("ack "))
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        protocol(&text).iter().any(|l| l.starts_with("error ")),
        "the child never saw an error: {text}"
    );
    assert!(!acked.is_empty(), "{text}");
    let s = Store::open(&path).unwrap();
    for i in &acked {
        assert!(s.contains_key(&format!("k{i}")), "acknowledged k{i} lost");
    }
    let extra: Vec<String> = s
        .list_keys()
        .into_iter()
        .filter(|k| !acked.iter().any(|i| *k == format!("k{i}")))
        .collect();
    assert!(
        extra.is_empty(),
        "unacknowledged writes appeared: {extra:?}\n{text}"
    );
}

#[test]
fn compaction_never_overwrites_a_snapshot_rewritten_while_open() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    s.upsert_blocking("ours", 1).unwrap();
    s.compact_blocking().unwrap();
    s.upsert_blocking("ours_too", 2).unwrap();
    let python = "{\n  \"theirs\": 1\n}";
    std::fs::write(&path, python).unwrap();
    let e = s.compact_blocking().unwrap_err();
    assert!(matches!(e, Error::SnapshotModified { .. }), "{e}");
    assert!(s.close_blocking().is_err());
    assert_eq!(
        read(&path),
        python.as_bytes(),
        "their snapshot was overwritten"
    );
    // Our writes are still in the log; opening reports the conflict.
    let e = Store::open(&path).unwrap_err();
    assert!(
        matches!(e, Error::SnapshotChanged { records: 1, .. }),
        "{e}"
    );
}

#[test]
fn crash_between_compaction_renames_is_rolled_forward() {
    let (d, path) = temp_store();
    let log = log_of(&path);
    let log_tmp = d.path().join("memory.json.log.tmp");
    let s = Store::builder(&path)
        .compact_on_close(false)
        .build()
        .unwrap();
    s.upsert_blocking("a", 1).unwrap();
    s.compact_blocking().unwrap();
    s.upsert_blocking("b", 2).unwrap();
    let old_log = read(&log); // names the snapshot {"a": 1} and holds "b"
    s.compact_blocking().unwrap();
    let new_log = read(&log); // names the snapshot {"a": 1, "b": 2}, empty
    drop(s);
    // The state a crash leaves after the snapshot rename but before the log rename.
    std::fs::write(&log, &old_log).unwrap();
    std::fs::write(&log_tmp, &new_log).unwrap();
    let report = steward_store::check(&path).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.keys, 2);
    assert_eq!(steward_store::load(&path).unwrap().len(), 2);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.list_keys(), ["a", "b"]);
    assert!(!log_tmp.exists());
    s.upsert_blocking("c", 3).unwrap();
    drop(s);
    assert_eq!(Store::open(&path).unwrap().list_keys(), ["a", "b", "c"]);
    // Before the snapshot rename, the temporary log names a snapshot that is
    // not there: it is discarded and the old pair stays in force.
    let (_d2, path2) = temp_store();
    std::fs::write(&path2, b"{\n  \"a\": 1\n}").unwrap();
    std::fs::write(log_of(&path2), &old_log).unwrap();
    std::fs::write(_d2.path().join("memory.json.log.tmp"), &new_log).unwrap();
    let s = Store::open(&path2).unwrap();
    assert_eq!(s.list_keys(), ["a", "b"]);
}

/// A failed fdatasync of a write batch (through the store's I/O seam, a
/// disk that fails the log's fdatasync with EIO: the record is written)
/// is reported as "outcome unknown", never as "not applied": the record
/// can be on disk, and here it is, so the reset the caller saw fail wipes
/// the memory at the next open. The store is poisoned, the fsync not
/// retried.
#[test]
fn failed_fsync_of_a_write_is_reported_as_unknown_and_may_be_applied() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (_d, path) = temp_store();
    for failing in ["reset", "upsert"] {
        let armed = Arc::new(AtomicBool::new(false));
        let disk = crate::faults::failing_log_sync(Arc::clone(&armed));
        let s = Store::builder(&path).disk(Arc::new(disk)).build().unwrap();
        s.upsert_blocking("a", 1).unwrap();
        s.upsert_blocking("b", 2).unwrap();
        armed.store(true, Ordering::SeqCst);
        let e = match failing {
            "reset" => s.reset_blocking().unwrap_err(),
            _ => s.upsert_blocking("c", 3).map(|_| ()).unwrap_err(),
        };
        match &e {
            Error::WriteUnknown {
                path: p, offset, ..
            } => {
                assert_eq!(p, &log_of(&path), "{e}");
                assert!(*offset > 0, "{e}");
            }
            other => panic!("{failing}: expected WriteUnknown, got {other:?}"),
        }
        let shown = e.to_string();
        assert!(
            shown.contains(&log_of(&path).display().to_string())
                && shown.contains("may or may not"),
            "{shown}"
        );
        // Poisoned: no further write, no retried fsync.
        armed.store(false, Ordering::SeqCst);
        assert!(matches!(
            s.upsert_blocking("d", 4),
            Err(Error::Poisoned { .. })
        ));
        drop(s);
        let again = Store::open(&path).unwrap();
        match failing {
            "reset" => assert!(again.is_empty(), "the 'failed' reset was applied"),
            _ => assert_eq!(again.get("c"), Some(serde_json::json!(3))),
        }
        assert!(!again.contains_key("d"));
        again.reset_blocking().unwrap();
        again.close_blocking().unwrap();
    }
}
