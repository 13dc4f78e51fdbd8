//! Byte compatibility with real `python3`'s `json.dump(m, f, indent=2)`,
//! both ways.

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::SeedableRng;
use steward_store::Store;

use crate::{jsongen, read, temp_store};

fn python() -> Command {
    let probe = Command::new("python3").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "python3 is required on PATH for the byte-compatibility tests (install it: apt-get install python3)"
    );
    Command::new("python3")
}

pub(crate) fn run_python(script: &str, args: &[&Path]) -> String {
    let out = python()
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python3 failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Python reads each file steward wrote and writes it again: same bytes.
const REDUMP: &str = r#"
import io, json, sys
bad = 0
for path in sys.argv[1:]:
    raw = open(path, "rb").read()
    m = json.loads(raw.decode("utf-8"))
    buf = io.StringIO()
    json.dump(m, buf, indent=2)
    if buf.getvalue().encode("utf-8") != raw:
        bad += 1
        print("MISMATCH", path)
print("checked", len(sys.argv) - 1, "bad", bad)
"#;

#[test]
fn steward_snapshots_equal_python_json_dump() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5757_4152_4400);
    let mut paths: Vec<PathBuf> = Vec::new();
    for i in 0..300 {
        let map = jsongen::map(&mut rng, 0, 12);
        let path = dir.path().join(format!("m{i}.json"));
        steward_store::write_snapshot(&path, &map).unwrap();
        paths.push(path);
    }
    // The store's own compaction writes the same format.
    let (_d, store_path) = temp_store();
    let s = Store::open(&store_path).unwrap();
    for _ in 0..50 {
        let k = jsongen::string(&mut rng);
        s.upsert_blocking(&k, jsongen::value(&mut rng, 0)).unwrap();
    }
    s.close_blocking().unwrap();
    paths.push(store_path);
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let out = run_python(REDUMP, &refs);
    assert!(out.contains("checked 301 bad 0"), "{out}");
}

/// Python generates maps (its own floats, ints, strings) and dumps them.
const GENERATE: &str = r#"
import json, random, sys
random.seed(20261124)
def s():
    out = []
    for _ in range(random.randrange(0, 10)):
        r = random.randrange(6)
        if r == 0: out.append(chr(random.randrange(0, 0x20)))
        elif r == 1: out.append(chr(random.randrange(0xA0, 0xD800)))
        elif r == 2: out.append(chr(random.randrange(0x10000, 0x110000)))
        elif r == 3: out.append(random.choice('"\\/\x7f'))
        else: out.append(chr(random.randrange(0x20, 0x7f)))
    return "".join(out)
def f():
    r = random.randrange(4)
    if r == 0: return random.choice([0.0, -0.0, 1e16, 1e-5, 1e-4, 100.0, 1.5e300, 5e-324, 2.5e-7])
    if r == 1: return random.uniform(-1e6, 1e6)
    if r == 2: return random.uniform(-10, 10) * 10.0 ** random.randrange(-300, 300)
    return float(random.randrange(-10**6, 10**6))
def v(d):
    r = random.randrange(8 if d < 3 else 6)
    if r == 0: return None
    if r == 1: return random.random() < 0.5
    if r == 2: return random.randrange(-2**63, 2**64)
    if r == 3: return f()
    if r == 4: return random.choice([0, -1, 2**63 - 1, -2**63, 2**64 - 1])
    if r == 5: return s()
    if r == 6: return [v(d + 1) for _ in range(random.randrange(4))]
    return {s(): v(d + 1) for _ in range(random.randrange(4))}
for path in sys.argv[1:]:
    with open(path, "w") as fh:
        json.dump({s(): v(0) for _ in range(random.randrange(0, 12))}, fh, indent=2)
"#;

#[test]
fn python_written_files_open_and_compact_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..200)
        .map(|i| dir.path().join(format!("p{i}.json")))
        .collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    run_python(GENERATE, &refs);
    for path in &paths {
        let original = read(path);
        let s = Store::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        s.compact_blocking().unwrap();
        assert_eq!(
            read(path),
            original,
            "{}: steward's rewrite differs from Python's",
            path.display()
        );
        s.close_blocking().unwrap();
        assert_eq!(read(path), original);
    }
}

#[test]
fn python_keeps_working_on_a_file_steward_wrote() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    s.upsert_blocking("user_name", "Zoë 😀").unwrap();
    s.upsert_blocking("n", 1.5e300).unwrap();
    s.close_blocking().unwrap();
    // The Python assistant's write path: load, change, rewrite in place.
    let script = r#"
import json, sys
p = sys.argv[1]
m = json.load(open(p))
assert m["user_name"] == "Zo\u00eb \U0001F600", m
m["added_by_python"] = [1e-05]
json.dump(m, open(p, "w"), indent=2)
print("ok")
"#;
    assert!(run_python(script, &[&path]).contains("ok"));
    let s = Store::open(&path).unwrap();
    assert_eq!(s.list_keys(), ["user_name", "n", "added_by_python"]);
    assert_eq!(s.get("added_by_python").unwrap()[0], 1e-5);
}

/// What Python's `json.dump` writes but `serde_json::Value` cannot hold:
/// NaN, infinities, integers wider than 64 bits, lone surrogates (also
/// nested). Python writes the file, the store opens it, keeps those values
/// as raw JSON, adds a key and compacts; Python reads the result back equal
/// and it is byte for byte Python's own dump.
#[test]
fn python_nan_infinity_wide_integers_and_lone_surrogates_open_and_round_trip() {
    let (_d, path) = temp_store();
    let writer = r#"
import json, sys
m = {"ok": 1, "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"),
     "big": 2**100, "neg": -2**70, "s": "\ud83d", "nested": {"l": [float("nan"), 2**65, "a\udc00b", 1.5]}}
json.dump(m, open(sys.argv[1], "w"), indent=2)
"#;
    run_python(writer, &[&path]);
    let original = read(&path);
    let s = Store::open(&path).expect("Python's file opens");
    assert_eq!(s.get("ok"), Some(serde_json::json!(1)));
    for (key, raw) in [
        ("nan", "NaN"),
        ("inf", "Infinity"),
        ("ninf", "-Infinity"),
        ("big", "1267650600228229401496703205376"),
        ("neg", "-1180591620717411303424"),
        ("s", "\"\\ud83d\""),
    ] {
        let v = s.get(key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(steward_store::raw_json(&v), Some(raw), "{key}: {v}");
    }
    let nested = s.get("nested").unwrap();
    let list = nested["l"].as_array().unwrap();
    assert_eq!(steward_store::raw_json(&list[0]), Some("NaN"));
    assert_eq!(
        steward_store::raw_json(&list[1]),
        Some("36893488147419103232")
    );
    assert_eq!(steward_store::raw_json(&list[2]), Some("\"a\\udc00b\""));
    assert_eq!(list[3], serde_json::json!(1.5));
    // Such a value can also be written through the API.
    s.upsert_blocking("added", steward_store::raw_value("NaN").unwrap())
        .unwrap();
    s.close_blocking().unwrap();
    let written = read(&path);
    assert_ne!(written, original);
    let checker = r#"
import json, math, sys
m = json.load(open(sys.argv[1]))
want = {"ok": 1, "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"),
        "big": 2**100, "neg": -2**70, "s": "\ud83d", "nested": {"l": [float("nan"), 2**65, "a\udc00b", 1.5]},
        "added": float("nan")}
assert list(m) == list(want), list(m)
for k in ("ok", "inf", "ninf", "big", "neg", "s"):
    assert m[k] == want[k] and type(m[k]) is type(want[k]), (k, m[k])
assert math.isnan(m["nan"]) and math.isnan(m["added"])
l = m["nested"]["l"]
assert math.isnan(l[0]) and l[1:] == [2**65, "a\udc00b", 1.5], l
raw = open(sys.argv[1], "rb").read()
assert json.dumps(m, indent=2).encode() == raw, raw
print("ok")
"#;
    assert_eq!(run_python(checker, &[&path]).trim(), "ok");
    // And it opens again with the same raw values.
    let again = Store::open(&path).unwrap();
    assert_eq!(
        steward_store::raw_json(&again.get("big").unwrap()),
        Some("1267650600228229401496703205376")
    );
}

/// Numbers at the edges of the grammar ("1.", "01", "1e", ".5", ...):
/// the store opens a memory holding one exactly when Python's `json.loads`
/// does, reads the same value, and leaves a refused file as it was.
#[test]
fn numbers_open_exactly_when_python_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let numbers = [
        "1.", "1.e5", "01", "-01", "00", "1e", "1e+", "-", ".5", "+1", "0.", "-0", "0", "-0.0",
        "1.5", "1.5e3", "1E+2", "1e-2", "12.25", "-7",
    ];
    let paths: Vec<PathBuf> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let path = dir.path().join(format!("{i}/memory.json"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("{{\"n\": {n}}}")).unwrap();
            path
        })
        .collect();
    let reader = r#"
import json, sys
for path in sys.argv[1:]:
    try:
        print(repr(float(json.load(open(path))["n"])))
    except ValueError:
        print("refused")
"#;
    let args: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let python = run_python(reader, &args);
    assert_eq!(python.lines().count(), numbers.len(), "{python}");
    for ((number, path), said) in numbers.iter().zip(&paths).zip(python.lines()) {
        let before = read(path);
        match (Store::open(path), said) {
            (Err(e), "refused") => {
                assert!(
                    matches!(e, steward_store::Error::Corrupt { .. }),
                    "{number}: {e}"
                );
                assert_eq!(
                    read(path),
                    before,
                    "{number}: a refused file is left as it was"
                );
            }
            (Ok(_), "refused") => panic!("{number}: Python refuses it, the store opened it"),
            (Ok(s), value) => {
                let ours = s.get("n").and_then(|v| v.as_f64());
                assert_eq!(ours, value.parse().ok(), "{number}: Python read {value}");
            }
            (Err(e), value) => panic!("{number}: Python read {value}, the store refused: {e}"),
        }
    }
}

/// `raw_value` takes exactly one JSON value a `Value` cannot hold, and
/// nothing else; `raw_json` recognises only the object `raw_value` makes.
#[test]
fn raw_values_are_only_what_a_value_cannot_hold() {
    for text in ["NaN", "-Infinity", "18446744073709551616", r#""\ud800""#] {
        let v = steward_store::raw_value(text).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(steward_store::raw_json(&v), Some(text));
    }
    for text in [
        "1",
        "1.5",
        r#""plain""#,
        "[1]",
        r#"{"x": 1}"#,
        "{}",
        "NaN NaN",
        "NaN,",
        "",
        "nope",
    ] {
        assert_eq!(steward_store::raw_value(text), None, "{text}");
    }
    let key = steward_store::RAW_JSON_KEY;
    for not_raw in [
        serde_json::json!({ key: "1" }),
        serde_json::json!({ key: "NaN", "x": 1 }),
        serde_json::json!({ key: 5 }),
        serde_json::json!("NaN"),
    ] {
        assert_eq!(steward_store::raw_json(&not_raw), None, "{not_raw}");
    }
}

/// The Python assistant truncates `memory.json`, then writes it; a crash in
/// between leaves an empty file. That opens as an empty memory, and what
/// the store writes is a file Python reads.
#[test]
fn python_crash_after_truncating_leaves_an_empty_memory_that_opens() {
    let (_d, path) = temp_store();
    run_python(
        r#"
import os, sys
f = open(sys.argv[1], "w")
f.flush()
os._exit(0)
"#,
        &[&path],
    );
    assert_eq!(read(&path), b"");
    let s = Store::open(&path).expect("an empty memory.json opens");
    assert!(s.is_empty());
    s.upsert_blocking("user_name", "Ada").unwrap();
    s.close_blocking().unwrap();
    let out = run_python(
        "import json, sys; print(json.load(open(sys.argv[1]))['user_name'])",
        &[&path],
    );
    assert_eq!(out.trim(), "Ada");
}

/// A crash mid-write leaves a cut-off file: an error naming the file, line
/// and column, from open, `load` and `check`, and the file is never changed.
#[test]
fn python_crash_mid_write_leaves_a_cut_off_file_that_is_refused_not_overwritten() {
    let (_d, path) = temp_store();
    run_python(
        r#"
import json, os, sys
text = json.dumps({"user_name": "Ada", "reminders": ["dentist", "milk"], "n": 3}, indent=2)
f = open(sys.argv[1], "w")
f.write(text[:len(text) // 2])
f.flush()
os._exit(0)
"#,
        &[&path],
    );
    let cut = read(&path);
    let e = Store::open(&path).unwrap_err();
    match &e {
        steward_store::Error::Corrupt { path: p, at, .. } => {
            assert_eq!(p, &path);
            assert!(
                matches!(at, steward_store::Position::Line { line: 4, .. }),
                "{e}"
            );
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let shown = e.to_string();
    assert!(
        shown.contains(&path.display().to_string()) && shown.contains("line 4"),
        "{shown}"
    );
    assert!(steward_store::load(&path).is_err());
    assert!(!steward_store::check(&path).unwrap().is_ok());
    assert_eq!(read(&path), cut, "a damaged memory.json is never changed");
}

/// A key set with a TTL, then rewritten permanently by the Python assistant
/// in `memory.json`: the expiry in the sidecar belongs to the old value, so
/// the new value neither expires nor is deleted by the next compaction. A
/// TTL entry Python left alone still expires.
#[test]
fn python_rewriting_a_ttl_key_makes_it_permanent() {
    use std::sync::Arc;
    use std::time::Duration;

    let (_d, path) = temp_store();
    let t0 = 1_700_000_000_000;
    let clock = steward_store::ManualClock::new(t0);
    let open = || {
        Store::builder(&path)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap()
    };
    let s = open();
    s.upsert_blocking("name", "Ada").unwrap();
    s.upsert_with_ttl_blocking("weather", "rain", Duration::from_secs(5))
        .unwrap();
    s.upsert_with_ttl_blocking("news", "quiet", Duration::from_secs(5))
        .unwrap();
    s.close_blocking().unwrap(); // the expiries are now in the sidecar
    run_python(
        r#"
import json, sys
m = json.load(open(sys.argv[1]))
m["weather"] = "sunny, for good"
json.dump(m, open(sys.argv[1], "w"), indent=2)
"#,
        &[&path],
    );
    let s = open();
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        s.get("weather"),
        Some(serde_json::json!("sunny, for good")),
        "the value Python wrote does not expire"
    );
    assert_eq!(s.get("news"), None, "the untouched TTL entry expires");
    assert!(
        s.entries_with_ttl()
            .iter()
            .all(|e| e.ttl.is_none() && e.key != "news")
    );
    s.close_blocking().unwrap(); // compacts
    let out = run_python(
        "import json, sys; m = json.load(open(sys.argv[1])); print(json.dumps(m, sort_keys=True))",
        &[&path],
    );
    assert_eq!(
        out.trim(),
        r#"{"name": "Ada", "weather": "sunny, for good"}"#
    );
    // And still there after another open, compaction and expiry time.
    let s = open();
    clock.advance(Duration::from_secs(3600));
    s.compact_blocking().unwrap();
    assert_eq!(s.get("weather"), Some(serde_json::json!("sunny, for good")));
}

/// `Store::to_python_json` is the file's bytes (Python's `indent=2`), and a
/// file that escapes `/` as `\/` (JSON allows it; some writers do) opens
/// with the plain character.
#[test]
fn to_python_json_is_the_file_and_an_escaped_slash_reads_plain() {
    let (_d, path) = temp_store();
    std::fs::write(&path, "{\n  \"url\": \"https:\\/\\/example.org\\/a\"\n}").unwrap();
    let s = Store::open(&path).unwrap();
    assert_eq!(
        s.get("url").unwrap(),
        serde_json::json!("https://example.org/a")
    );
    s.upsert_blocking("n", serde_json::json!([1, {"b": null}]))
        .unwrap();
    let text = s.to_python_json();
    s.close_blocking().unwrap();
    assert_eq!(
        text,
        "{\n  \"url\": \"https://example.org/a\",\n  \"n\": [\n    1,\n    {\n      \"b\": null\n    }\n  ]\n}"
    );
}
