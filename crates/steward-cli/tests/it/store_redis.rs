//! `steward store` on Redis URLs and `steward store copy`, against a real
//! redis-server (the store's test fixture) started per test.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::redis_server::RedisServer;
use crate::{python_dump, stderr, stdout, steward};

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples/memory.json")
}

/// A memory with what is easy to lose: order that is not sorted, unicode
/// (escaped by Python), every kind of number Python writes, nesting.
fn tricky() -> Value {
    json!({
        "zeta": "last letter first",
        "café ☕": "𝄞 and é",
        "numbers": [0, -1, 18446744073709551615u64, -9223372036854775808i64,
                    0.1, 1e16, 1e-05, 100.0, -0.0, 1.7976931348623157e308],
        "nested": {"b": [true, false, null, {"deep": [[[]]], "empty": {}}], "a": ""},
        "alpha": "\u{0}\t\"quoted\"\\",
    })
}

fn ok(args: &[&str]) -> String {
    let o = steward(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

fn export(location: &str) -> String {
    ok(&["store", "export", location])
        .trim_end_matches('\n')
        .to_string()
}

#[test]
fn sample_memory_goes_to_redis_and_back_byte_for_byte() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(sample()).unwrap();
    let src = sample().to_string_lossy().into_owned();
    let url = server.url_ns("ada");

    let n = serde_json::from_str::<serde_json::Map<String, Value>>(&original)
        .unwrap()
        .len();
    let out = ok(&["store", "copy", &src, &url]);
    assert!(out.contains(&format!("copied {n} entries")), "{out}");
    assert!(out.contains(&format!("{n} new")), "{out}");
    assert!(out.contains("ns=ada"), "{out}");
    assert_eq!(export(&url), original);
    let keys: Value = serde_json::from_str(&ok(&["store", "list", &url])).unwrap();
    assert_eq!(keys[0], "user_name");
    assert_eq!(keys.as_array().unwrap().len(), n);

    let back = dir.path().join("memory.json");
    let back_s = back.to_string_lossy().into_owned();
    ok(&["store", "copy", &url, &back_s]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), original);
}

#[test]
fn tricky_values_survive_file_redis_file_and_redis_redis() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let original = python_dump(&tricky());
    let src = dir.path().join("in.json");
    std::fs::write(&src, &original).unwrap();
    let src_s = src.to_string_lossy().into_owned();
    let (a, b) = (server.url_ns("a"), server.url_ns("b"));

    ok(&["store", "copy", &src_s, &a]);
    ok(&["store", "copy", &a, &b]);
    assert_eq!(export(&a), original);
    assert_eq!(export(&b), original);
    // Namespaces stay apart: an empty one holds nothing.
    assert_eq!(ok(&["store", "list", &server.url_ns("c")]).trim(), "[]");

    let out = dir.path().join("out.json");
    let out_s = out.to_string_lossy().into_owned();
    ok(&["store", "copy", &b, &out_s]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), original);
    // And file to file.
    let again = dir.path().join("again.json");
    let again_s = again.to_string_lossy().into_owned();
    ok(&["store", "copy", &out_s, &again_s]);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), original);
}

#[test]
fn copy_refuses_a_non_empty_destination_unless_force_or_merge() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.json");
    std::fs::write(&src, python_dump(&json!({"x": 1, "shared": "new"}))).unwrap();
    let src_s = src.to_string_lossy().into_owned();
    let dst = server.url_ns("busy");
    ok(&["store", "set", &dst, "shared", "\"old\""]);
    ok(&["store", "set", &dst, "mine", "2"]);

    let o = steward(&["store", "copy", &src_s, &dst]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("ns=busy") && err.contains("--force"), "{err}");
    assert_eq!(
        export(&dst),
        python_dump(&json!({"shared": "old", "mine": 2}))
    );

    // --merge: common keys take SRC's value in DST's place; SRC's others follow.
    let out = ok(&["store", "copy", &src_s, &dst, "--merge"]);
    assert!(out.contains("1 new, 1 replaced"), "{out}");
    assert_eq!(
        export(&dst),
        python_dump(&json!({"shared": "new", "mine": 2, "x": 1}))
    );

    // --force: DST ends equal to SRC, in SRC's order.
    let out = ok(&["store", "copy", &src_s, &dst, "--force"]);
    assert!(out.contains("replacing all 3 it held"), "{out}");
    assert_eq!(export(&dst), python_dump(&json!({"x": 1, "shared": "new"})));

    // The same refusal into a file, which is left as it was.
    let file = dir.path().join("dst.json");
    let file_s = file.to_string_lossy().into_owned();
    ok(&["store", "set", &file_s, "k", "1"]);
    let before = std::fs::read_to_string(&file).unwrap();
    let o = steward(&["store", "copy", &dst, &file_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("dst.json"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    let o = steward(&["store", "copy", &file_s, &file_s, "--force"]);
    assert_eq!(o.status.code(), Some(2), "copy onto itself");
}

#[test]
fn set_get_delete_on_redis_with_exit_codes() {
    let server = RedisServer::start();
    let url = server.url_ns("cli");
    assert!(ok(&["store", "set", &url, "name", "\"Ada\""]).contains("created"));
    assert!(ok(&["store", "set", &url, "name", "{\"first\": \"Ada\"}"]).contains("updated"));
    ok(&["store", "set", &url, "note", "café 𝄞", "--string"]);
    ok(&["store", "set", &url, "weather", "\"rain\"", "--ttl", "1h"]);
    let v: Value = serde_json::from_str(&ok(&["store", "get", &url, "name"])).unwrap();
    assert_eq!(v, json!({"first": "Ada"}));
    let v: Value = serde_json::from_str(&ok(&["store", "get", &url, "note"])).unwrap();
    assert_eq!(v, json!("café 𝄞"));
    let ttl = server.command("PTTL steward:{cli}:v:weather");
    let ms: i64 = ttl.trim_start_matches(':').parse().unwrap();
    assert!(ms > 0 && ms <= 3_600_000, "{ttl}");

    let o = steward(&["store", "get", &url, "missing"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing"));
    ok(&["store", "delete", &url, "name"]);
    let o = steward(&["store", "delete", &url, "name"]);
    assert_eq!(o.status.code(), Some(1));
    let keys: Value = serde_json::from_str(&ok(&["store", "list", &url])).unwrap();
    assert_eq!(keys, json!(["note", "weather"]));

    for cmd in ["check", "compact"] {
        let o = steward(&["store", cmd, &url]);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        assert!(stderr(&o).contains("memory files only"), "{}", stderr(&o));
    }
}

#[test]
fn errors_name_the_server_or_the_file() {
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/0?ns=x");
    let o = steward(&["store", "list", &url]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("127.0.0.1:{port}")),
        "{}",
        stderr(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.json");
    let missing_s = missing.to_string_lossy().into_owned();
    let o = steward(&["store", "copy", &missing_s, &url]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nothing.json"), "{}", stderr(&o));

    let o = steward(&["store", "list", "redis://user:secret@127.0.0.1:1/0?ns=x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("secret"), "{}", stderr(&o));
}

#[test]
fn copy_keeps_the_time_a_ttl_entry_has_left() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("memory.json");
    let src_s = src.to_string_lossy().into_owned();
    ok(&["store", "set", &src_s, "name", "\"Ada\""]);
    ok(&[
        "store",
        "set",
        &src_s,
        "weather",
        "\"sunny\"",
        "--ttl",
        "1h",
    ]);
    ok(&["store", "set", &src_s, "gone", "1", "--ttl", "1ms"]);
    // Real time on purpose (the CLI has no clock seam): the 1 ms TTL lapses.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let url = server.url_ns("ttl");

    let out = ok(&["store", "copy", &src_s, &url]);
    assert!(out.contains("copied 2 entries"), "{out}");
    assert!(out.contains("1 with their expiry"), "{out}");
    let pttl = |key: &str| -> i64 {
        let reply = server.command(&format!("PTTL steward:{{ttl}}:v:{key}"));
        reply.trim_start_matches(':').parse().unwrap()
    };
    assert_eq!(pttl("name"), -1, "a permanent entry got an expiry");
    let left = pttl("weather");
    assert!((3_000_000..=3_600_000).contains(&left), "{left} ms left");
    assert_eq!(pttl("gone"), -2, "an expired entry was copied");

    // And back into a file: still a TTL entry, still no longer than before.
    let back = dir.path().join("back.json");
    let back_s = back.to_string_lossy().into_owned();
    ok(&["store", "copy", &url, &back_s]);
    let entries = steward::store::load_with_ttl(&back).unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["name", "weather"]);
    assert_eq!(entries[0].ttl, None);
    let ttl = entries[1].ttl.expect("weather kept its expiry");
    assert!(ttl.as_millis() as i64 <= left, "{ttl:?} > {left} ms");
}

/// Runs `steward assistant` against its local stand-in with the memory on
/// `memory`, saying `text`; returns the JSON report.
fn assistant_saying(dir: &std::path::Path, memory: &str, text: &str, name: &str) -> Value {
    let report = dir.join(format!("{name}.json"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .current_dir(dir)
        .args([
            "assistant",
            "--silence",
            "--no-playback",
            "--duration",
            "4s",
        ])
        .args(["--remember-every", "0", "--memory", memory, "--say", text])
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run steward assistant");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{name}: {stdout}\n{stderr}");
    let report = std::fs::read_to_string(&report).expect("report");
    serde_json::from_str(&report).expect("report JSON")
}

#[test]
fn two_assistants_share_a_redis_memory_one_remembers_the_other_recalls() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url_ns("household");

    let first = assistant_saying(dir.path(), &url, "remember favourite_color: blue", "first");
    assert_eq!(first["tool_calls"]["remember"], 1, "{first}");
    assert_eq!(first["tool_calls"]["failed"], 0, "{first}");
    // Another process, another conversation: the model recalls it.
    let second = assistant_saying(dir.path(), &url, "recall favourite_color", "second");
    assert_eq!(second["tool_calls"]["recall"], 1, "{second}");
    assert_eq!(second["tool_calls"]["recall_found"], 1, "{second}");

    assert_eq!(
        ok(&["store", "get", &url, "favourite_color"]).trim(),
        "\"blue\""
    );
    // Nothing went to a file named after the URL, nor to memory.json.
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files
            .iter()
            .any(|f| f.contains("memory") || f.contains("redis") || f.contains("lock")),
        "no memory file: {files:?}"
    );
    // The health in the report says where the memory lives.
    let memory = first["health"]["memory"].as_str().unwrap_or_default();
    assert!(
        memory.starts_with("redis://") && memory.contains("household"),
        "{memory:?}"
    );
}

#[test]
fn copy_force_to_redis_checks_every_value_before_emptying_it() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let src = crate::store_file::source_with_a_huge_value(&dir);
    let url = server.url_ns("dst");
    ok(&["store", "set", &url, "kept", "1"]);
    crate::store_file::refused_for_the_huge_value(&["store", "copy", &src, &url, "--force"]);
    assert_eq!(ok(&["store", "list", &url]).trim(), r#"["kept"]"#);
}

/// `copy --force` into a Redis namespace killed at random moments: the
/// namespace always holds the old entries or all the new ones, never a
/// mix (the replacement is one script run on the server).
#[test]
fn copy_force_to_redis_killed_mid_copy_leaves_the_old_namespace_or_the_new_one() {
    use rand::RngExt;
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let memory = |name: &str, map: &serde_json::Map<String, Value>| {
        let path = dir.path().join(name);
        steward::store::write_snapshot(&path, map).unwrap();
        path.to_string_lossy().into_owned()
    };
    let old_map = json!({"a": 1, "b": 2, "c": 3}).as_object().unwrap().clone();
    let old = memory("old.json", &old_map);
    let new_map: serde_json::Map<String, Value> = (0..2_000)
        .map(|i| (format!("key{i:05}"), json!(format!("value {i} ......."))))
        .collect();
    let new = memory("new.json", &new_map);
    let url = server.url_ns("dst");
    let mut rng = rand::rng();
    let (mut olds, mut news) = (0, 0);
    for trial in 0..12 {
        ok(&["store", "copy", &old, &url, "--force"]);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["store", "copy", &new, &url, "--force"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The kill's moment, not a synchronisation: anywhere in the copy.
        std::thread::sleep(std::time::Duration::from_micros(
            rng.random_range(0..250_000),
        ));
        let _ = child.kill();
        let _ = child.wait();
        let got: serde_json::Map<String, Value> = serde_json::from_str(&export(&url)).unwrap();
        match got.len() {
            3 => {
                assert_eq!(got, old_map, "trial {trial}");
                olds += 1;
            }
            2_000 => {
                assert_eq!(got, new_map, "trial {trial}");
                news += 1;
            }
            n => panic!("trial {trial}: the namespace holds {n} entries"),
        }
    }
    eprintln!("copy --force into Redis killed 12 times: {olds} old, {news} new");
}
