//! Integration tests of the `steward` binary and the `steward_cli`
//! library: real files, real processes, real sockets on 127.0.0.1, the
//! sound server's null devices.

mod assistant;
mod devices;
mod hostile;
mod standin;
mod store_file;
mod store_redis;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
// The real `redis-server` the `redis://` commands run against.
use steward_test_support::redis_server;

fn steward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(args)
        .output()
        .expect("run steward")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn file_in(dir: &tempfile::TempDir) -> (PathBuf, String) {
    let path = dir.path().join("memory.json");
    let s = path.to_string_lossy().into_owned();
    (path, s)
}

fn python_dump(map: &Value) -> String {
    // The format the Python assistant writes: json.dump(m, f, indent=2).
    let out = Command::new("python3")
        .args([
            "-c",
            "import json,sys; sys.stdout.write(json.dumps(json.loads(sys.stdin.read()), indent=2))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(map.to_string().as_bytes())?;
            child.wait_with_output()
        })
        .expect("python3 is needed for the format test");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn set_get_list_delete_round_trip_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, f) = file_in(&dir);

    let o = steward(&["store", "set", &f, "name", "\"Ada\""]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("created"));
    let o = steward(&["store", "set", &f, "note", "café ☕ and 𝄞", "--string"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = steward(&["store", "set", &f, "name", "{\"first\": \"Ada\"}"]);
    assert!(stdout(&o).contains("updated"));

    let o = steward(&["store", "get", &f, "name"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        json!({"first": "Ada"})
    );

    let o = steward(&["store", "list", &f]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        json!(["name", "note"])
    );

    let o = steward(&["store", "get", &f, "missing"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing"));

    let o = steward(&["store", "delete", &f, "name"]);
    assert_eq!(o.status.code(), Some(0));
    let o = steward(&["store", "delete", &f, "name"]);
    assert_eq!(o.status.code(), Some(1));

    // After a set the snapshot alone is what Python would have written.
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert_eq!(on_disk, python_dump(&json!({"note": "café ☕ and 𝄞"})));
}

#[test]
fn bad_json_value_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (path, f) = file_in(&dir);
    let o = steward(&["store", "set", &f, "k", "not json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--string"), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "one-line message");
    assert!(!path.exists());
}

#[test]
fn export_prints_the_python_format_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (path, f) = file_in(&dir);
    let map = json!({"z": 1, "a": [1.5, 1e-05, 1e16], "é": null, "nested": {"b": true}});
    std::fs::write(&path, python_dump(&map)).unwrap();
    let o = steward(&["store", "export", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim_end_matches('\n'), python_dump(&map));
}

#[test]
fn damaged_snapshot_is_reported_with_position_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (path, f) = file_in(&dir);
    let damaged = "{\n  \"a\": 1,\n  \"b\": tru\n}";
    std::fs::write(&path, damaged).unwrap();

    let o = steward(&["store", "check", &f]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("line 3"), "{}", stdout(&o));

    for args in [
        vec!["store", "set", &f, "c", "1"],
        vec!["store", "compact", &f],
        vec!["store", "list", &f],
    ] {
        let o = steward(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains("memory.json") && err.contains("line 3"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged);
}

#[test]
fn check_reports_clean_store_and_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let (_, f) = file_in(&dir);
    assert_eq!(
        steward(&["store", "set", &f, "k", "[1, 2]"]).status.code(),
        Some(0)
    );
    let o = steward(&["store", "check", &f]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("1 keys"), "{}", stdout(&o));
    let o = steward(&["store", "check", &f, "--json"]);
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["keys"], 1);
    assert_eq!(report["problems"], json!([]));
}

#[test]
fn writes_are_refused_while_another_process_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (path, f) = file_in(&dir);
    let held = steward::store::Store::open(&path).unwrap();
    held.upsert_blocking("k", 1).unwrap();

    let o = steward(&["store", "set", &f, "k", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    // Reads work while the store is open elsewhere, and see acknowledged writes.
    let o = steward(&["store", "get", &f, "k"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "1");
    held.close_blocking().unwrap();
    assert_eq!(
        steward(&["store", "set", &f, "k", "2"]).status.code(),
        Some(0)
    );
}

#[test]
fn compact_folds_the_log_into_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (path, f) = file_in(&dir);
    {
        let store = steward::store::Store::builder(&path)
            .compact_on_close(false)
            .build()
            .unwrap();
        store.upsert_blocking("a", 1).unwrap();
        store.upsert_blocking("b", "two").unwrap();
        store.close_blocking().unwrap();
    }
    let o = steward(&["store", "compact", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        python_dump(&json!({"a": 1, "b": "two"}))
    );
    assert!(!log_path(&path).exists() || std::fs::metadata(log_path(&path)).unwrap().len() == 0);
}

fn log_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.log", path.display()))
}

#[test]
fn help_is_everywhere() {
    for args in [
        vec!["--help"],
        vec!["store", "--help"],
        vec!["store", "set", "--help"],
    ] {
        let o = steward(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(stdout(&o).contains("Usage"), "{args:?}");
    }
}
