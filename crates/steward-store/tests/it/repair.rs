//! `repair`: damaged snapshots (written by real `python3`, cut off at every
//! byte, garbage in the middle and at the end), damaged logs and expiry
//! files are salvaged into a fresh memory; the originals stay unchanged.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};
use steward_store::{Error, Store};

use crate::python::run_python;
use crate::{read, temp_store};

/// Python writes a memory with values `serde_json::Value` cannot hold and
/// prints, as JSON, the byte offset where each entry's value ends.
const WRITE_AND_MEASURE: &str = r#"
import json, sys
m = {
    "user_name": "Ada \u00e9\ud83d\ude00",
    "nan": float("nan"),
    "inf": float("inf"),
    "wide": 123456789012345678901234567890,
    "lone": "x\ud83d",
    "n": 42,
    "list": [1, 2.5, None, True, {"deep": [-1e300]}],
    "obj": {"a": {"b": "c"}, "d": []},
    "neg": -7,
    "empty": {},
}
text = json.dumps(m, indent=2)
open(sys.argv[1], "w").write(text)
ends = []
for i in range(1, len(m) + 1):
    part = json.dumps(dict(list(m.items())[:i]), indent=2)
    ends.append(len(part.encode()) - 2)
print(json.dumps(ends))
"#;

fn keys(map: &Map<String, Value>) -> Vec<String> {
    map.keys().cloned().collect()
}

#[test]
fn a_python_file_cut_at_every_byte_keeps_every_complete_entry() {
    let dir = tempfile::tempdir().unwrap();
    let full_path = dir.path().join("full.json");
    let ends: Vec<usize> =
        serde_json::from_str(&run_python(WRITE_AND_MEASURE, &[&full_path])).unwrap();
    let full = read(&full_path);
    let original = steward_store::load(&full_path).unwrap();
    let order = keys(&original);
    assert_eq!(ends.len(), order.len());
    for cut in 0..=full.len() {
        let case = tempfile::tempdir().unwrap();
        let path = case.path().join("memory.json");
        std::fs::write(&path, &full[..cut]).unwrap();
        let report = steward_store::repair(&path).unwrap();
        let repaired = steward_store::load(&path).unwrap();
        // Certainly complete: the value and the delimiter after it are in.
        let must: Vec<&String> = order
            .iter()
            .zip(&ends)
            .filter(|(_, end)| **end + 2 <= cut)
            .map(|(k, _)| k)
            .collect();
        // At most those whose value text is all there.
        let may = order
            .iter()
            .zip(&ends)
            .filter(|(_, end)| **end <= cut)
            .count();
        assert!(
            repaired.len() >= must.len() && repaired.len() <= may,
            "cut {cut}: kept {:?}",
            keys(&repaired)
        );
        for (k, v) in &repaired {
            assert_eq!(Some(v), original.get(k), "cut {cut}: key {k:?}");
        }
        assert_eq!(report.kept, keys(&repaired), "cut {cut}");
        assert_eq!(order[..repaired.len()], report.kept[..], "cut {cut}: order");
        if report.repaired {
            assert!(!report.lost.is_empty(), "cut {cut}: {report}");
            assert_eq!(read(&report.originals[0]), &full[..cut], "cut {cut}");
        }
        assert!(!steward_store::repair(&path).unwrap().repaired, "cut {cut}");
    }
}

/// Garbage over the middle of one entry and after the end: every other
/// entry is kept, and Python reads the repaired file.
#[test]
fn garbage_in_the_middle_and_at_the_end_loses_only_what_it_covers() {
    let (dir, path) = temp_store();
    let ends: Vec<usize> = serde_json::from_str(&run_python(WRITE_AND_MEASURE, &[&path])).unwrap();
    let original = steward_store::load(&path).unwrap();
    let mut bytes = read(&path);
    // Damage the value of "list" (the 7th entry) from its middle on.
    let start = ends[5] + 10;
    bytes[start..start + 6].copy_from_slice(b"\0\x07}}]]");
    bytes.extend_from_slice(b"\n\0\0\0 garbage after the end");
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(Store::open(&path), Err(Error::Corrupt { .. })));

    let report = steward_store::repair(&path).unwrap();
    let mut want = original.clone();
    want.shift_remove("list");
    assert_eq!(steward_store::load(&path).unwrap(), want, "{report}");
    assert_eq!(report.lost.len(), 2, "{report}");
    assert!(report.lost[0].from <= start as u64 && report.lost[0].to > start as u64);
    assert_eq!(report.lost[1].to, bytes.len() as u64);
    assert_eq!(read(&report.originals[0]), bytes);
    let name = report.originals[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("memory.json.damaged-20"), "{name}");
    assert!(name.ends_with('Z'), "{name}");
    // Python reads what was kept, NaN and wide integers included.
    let out = run_python(
        "import json, sys; m = json.load(open(sys.argv[1])); print(sorted(m), m['wide'], m['nan'])",
        &[&path],
    );
    assert!(out.contains("123456789012345678901234567890 nan"), "{out}");
    drop(dir);
}

/// A log with a damaged batch in the middle (the store refuses to open it):
/// every other batch is kept, the damaged one's bytes are named.
#[test]
fn a_damaged_log_batch_loses_only_that_batch() {
    let (_d, path) = temp_store();
    std::fs::write(&path, "{\n  \"base\": 1\n}").unwrap();
    let s = Store::builder(&path)
        .compact_on_close(false)
        .build()
        .unwrap();
    s.upsert_blocking("first", 1).unwrap();
    s.upsert_blocking("second", "two").unwrap();
    s.upsert_blocking("third", json!([3])).unwrap();
    s.delete_blocking("base").unwrap();
    let log = s.log_path().to_path_buf();
    drop(s);
    let mut bytes = read(&log);
    let at = find(&bytes, b"second");
    bytes[at] ^= 0xFF;
    std::fs::write(&log, &bytes).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");

    let report = steward_store::repair(&path).unwrap();
    assert_eq!(report.kept, ["first", "third"], "{report}");
    assert_eq!(report.lost.len(), 1, "{report}");
    assert_eq!(report.lost[0].file, log);
    assert!(report.lost[0].from < at as u64 && at as u64 <= report.lost[0].to);
    let copies: Vec<&Path> = report.originals.iter().map(|p| p.as_path()).collect();
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert_eq!(read(copies[1]), bytes, "the damaged log is kept unchanged");
    assert!(!log.exists(), "the fresh memory is all in memory.json");
    let s = Store::open(&path).unwrap();
    assert_eq!(s.list_keys(), ["first", "third"]);
}

/// An expiry file with garbage over one entry: the readable expiry still
/// holds, the unreadable one's value stays, permanent.
#[test]
fn a_damaged_expiry_file_keeps_the_readable_expiries() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    s.upsert_with_ttl_blocking("a", 1, Duration::from_secs(3600))
        .unwrap();
    s.upsert_with_ttl_blocking("b", 2, Duration::from_secs(3600))
        .unwrap();
    s.close_blocking().unwrap();
    let ttl = path.with_extension("json.ttl");
    let mut bytes = read(&ttl);
    let at = find(&bytes, b"\"b\"");
    bytes[at + 1] = b'\n';
    std::fs::write(&ttl, &bytes).unwrap();

    let report = steward_store::repair(&path).unwrap();
    assert!(report.repaired, "{report}");
    assert_eq!(report.kept, ["a", "b"]);
    assert_eq!(report.lost.len(), 1, "{report}");
    assert_eq!(report.lost[0].file, ttl);
    let entries = steward_store::load_with_ttl(&path).unwrap();
    assert!(entries[0].ttl.is_some(), "{entries:?}");
    assert!(entries[1].ttl.is_none(), "{entries:?}");
}

#[test]
fn repair_refuses_a_memory_someone_has_open_and_changes_nothing() {
    let (_d, path) = temp_store();
    std::fs::write(&path, "{}").unwrap();
    let s = Store::open(&path).unwrap();
    std::fs::write(&path, "{\"a\": 1").unwrap();
    let e = steward_store::repair(&path).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    assert_eq!(read(&path), b"{\"a\": 1");
    drop(s);
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle")
}
