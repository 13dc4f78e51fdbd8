//! `steward store` on memory files: a missing folder, `repair`, `copy --force`.

use super::{file_in, stderr, stdout, steward};

#[test]
fn a_missing_folder_is_created_and_an_impossible_one_named_with_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("not/yet/memory.json");
    let n = nested.to_string_lossy().into_owned();
    let o = steward(&["store", "set", &n, "k", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&steward(&["store", "get", &n, "k"])).trim(), "1");

    let (file, f) = file_in(&dir);
    std::fs::write(&file, "{}").unwrap();
    let under_file = format!("{f}/sub/memory.json");
    let o = steward(&["store", "set", &under_file, "k", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!("steward: creating the folder {f}/sub: Not a directory (os error 20)\n")
    );
}

/// The Python assistant dies half-way through writing its memory: `check`
/// and every command name `steward store repair`, which keeps every
/// complete entry and the damaged file beside it, unchanged.
#[test]
fn a_python_crash_mid_write_is_repaired_by_steward_store_repair() {
    let dir = tempfile::tempdir().unwrap();
    let (path, f) = file_in(&dir);
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            r#"
import json, os, sys
text = json.dumps({"user_name": "Ada", "city": "Paris", "nan": float("nan"), "reminders": ["dentist", "milk"]}, indent=2)
f = open(sys.argv[1], "w")
f.write(text[:text.index("milk")])
f.flush()
os._exit(0)
"#,
            &f,
        ])
        .output()
        .expect("python3 is needed for this test");
    assert!(out.status.success());
    let damaged = std::fs::read(&path).unwrap();
    let hint = format!("steward store repair {f}");

    let o = steward(&["store", "check", &f]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains(&hint), "{}", stdout(&o));
    let o = steward(&["store", "get", &f, "city"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(&hint), "{}", stderr(&o));

    let o = steward(&["store", "repair", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(r#"kept 3 keys: ["user_name","city","nan"]"#),
        "{text}"
    );
    assert!(
        text.contains(&format!("could not keep {f} bytes ")),
        "{text}"
    );
    assert_eq!(
        stdout(&steward(&["store", "get", &f, "city"])).trim(),
        "\"Paris\""
    );
    let copies: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".damaged-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read(&copies[0]).unwrap(), damaged);
    let o = steward(&["store", "repair", &f]);
    assert!(stdout(&o).contains("nothing damaged"), "{}", stdout(&o));
}

#[test]
fn the_assistant_names_repair_for_a_damaged_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (path, f) = file_in(&dir);
    std::fs::write(&path, "{\n  \"a\": 1,\n  \"b\": tru").unwrap();
    let o = steward(&[
        "assistant",
        "--memory",
        &f,
        "--silence",
        "--no-playback",
        "--quiet",
        "--duration",
        "1s",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains(&format!("steward store repair {f}")), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

/// A memory file of three entries, written fresh (no log, no expiry file).
fn three_entries(path: &std::path::Path) -> Vec<u8> {
    for extra in [".log", ".ttl"] {
        let _ = std::fs::remove_file(format!("{}{extra}", path.display()));
    }
    let text = "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}";
    std::fs::write(path, text).unwrap();
    text.as_bytes().to_vec()
}

#[test]
fn copy_force_checks_every_value_before_touching_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_with_a_huge_value(&dir);
    let (dst, d) = file_in(&dir);
    let before = three_entries(&dst);
    refused_for_the_huge_value(&["store", "copy", &src, &d, "--force"]);
    assert_eq!(std::fs::read(&dst).unwrap(), before);
    assert!(!std::path::Path::new(&format!("{d}.log")).exists());
    assert_eq!(
        stdout(&steward(&["store", "list", &d])).trim(),
        r#"["a","b","c"]"#
    );
}

/// `copy --force` killed at random moments: the destination is always the
/// old memory whole or the new one whole, and always opens.
#[test]
fn copy_force_killed_mid_copy_leaves_the_old_memory_or_the_new_one() {
    use rand::RngExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.json");
    let mut map = serde_json::Map::new();
    for i in 0..20_000 {
        map.insert(
            format!("key{i:05}"),
            serde_json::json!(format!("value {i} .......")),
        );
    }
    steward::store::write_snapshot(&src, &map).unwrap();
    let (dst, d) = file_in(&dir);
    let s = src.to_string_lossy().into_owned();
    let mut rng = rand::rng();
    let (mut old, mut new) = (0, 0);
    for trial in 0..20 {
        three_entries(&dst);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["store", "copy", &s, &d, "--force"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The kill's moment, not a synchronisation: anywhere in the copy.
        std::thread::sleep(std::time::Duration::from_micros(
            rng.random_range(0..120_000),
        ));
        let _ = child.kill();
        let _ = child.wait();
        let got = steward::store::Store::open(&dst)
            .unwrap_or_else(|e| panic!("trial {trial}: {}", e.chain()))
            .to_map();
        match got.len() {
            3 => old += 1,
            20_000 => {
                assert_eq!(got, map, "trial {trial}");
                new += 1;
            }
            n => panic!("trial {trial}: the destination holds {n} entries"),
        }
    }
    eprintln!("copy --force killed 20 times: {old} old, {new} new");
}

/// A memory file beside the others holding a 2 MiB value under "huge"
/// (over the store's 1 MiB limit); its path.
pub(crate) fn source_with_a_huge_value(dir: &tempfile::TempDir) -> String {
    let src = dir.path().join("src.json");
    let big = "x".repeat(2 << 20);
    std::fs::write(&src, format!("{{\n  \"ok\": 1,\n  \"huge\": \"{big}\"\n}}")).unwrap();
    src.to_string_lossy().into_owned()
}

/// Runs `args`: exit 2, naming the key "huge" and the limit.
pub(crate) fn refused_for_the_huge_value(args: &[&str]) {
    let o = steward(args);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("\"huge\"") && err.contains("larger than the limit"),
        "{err}"
    );
}
