//! Code that runs in a child process: the test binary re-executes itself
//! with `STEWARD_STORE_CHILD` set and only this test selected.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use serde_json::json;
use steward_store::{Error, Store};
use steward_test_support::child::{command, command_in_shell};

const ENV: &str = "STEWARD_STORE_CHILD";

/// The protocol lines a child printed (without their `@`).
pub(crate) fn protocol(text: &str) -> Vec<&str> {
    text.lines().filter_map(|l| l.strip_prefix('@')).collect()
}

/// Starts this test binary as a child running `mode` on `path`.
pub(crate) fn spawn(mode: &str, path: &Path, limit_file_kib: Option<u64>) -> Child {
    let name = "child::child_process_entry";
    let spec = format!("{mode}:{}", path.display());
    let env = [(ENV, spec.as_str())];
    let cmd = match limit_file_kib {
        // A real file-size limit: writes past it fail like a full disk.
        // SIGXFSZ is ignored so the write returns an error instead of killing.
        Some(kib) => command_in_shell(&format!("ulimit -f {kib}; trap '' XFSZ"), name, &env),
        None => command(name, &env),
    };
    cmd.expect("the test binary's path")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// The key and value of write `i` of writer thread `t` in crash mode.
pub(crate) fn crash_key(t: usize, i: usize) -> String {
    format!("t{t}_{}", i % 20)
}

pub(crate) fn unique_key(t: usize, i: usize) -> String {
    format!("u{t}_{i}")
}

/// One protocol line, `@`-prefixed and on a line of its own: the test
/// harness prints its own text on the same stdout.
fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "\n@{line}");
    let _ = o.flush();
}

#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var(ENV) else {
        return; // an ordinary test run: nothing to do
    };
    let (mode, path) = spec.split_once(':').expect("mode:path");
    let path = PathBuf::from(path);
    match mode {
        m if m.starts_with("crash=") => crash_writer(&path, m[6..].parse().expect("base")),
        "lock" => match Store::open(&path) {
            Err(Error::Locked { path }) => out(&format!("locked {}", path.display())),
            Err(e) => out(&format!("error {e}")),
            Ok(_) => out("opened"),
        },
        "full" => fill_until_error(&path),
        m if m.starts_with("redis-writer=") => {
            redis_writer(&spec[mode.len() + 1..], m[13..].parse().expect("id"))
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// Acknowledged writes from three threads, forever (until SIGKILL). Each
/// "ack" line is printed only after the write returned Ok.
/// Write numbers start at `base`, so they grow across child processes.
fn crash_writer(path: &Path, base: usize) {
    let store = match Store::builder(path).compact_log_bytes(4 << 10).build() {
        Ok(s) => s,
        Err(e) => {
            out(&format!("open-error {e}"));
            return;
        }
    };
    out("ready");
    std::thread::scope(|s| {
        for t in 0..3 {
            let store = store.clone();
            s.spawn(move || {
                for i in base.. {
                    let pad = "p".repeat(i % 90);
                    store
                        .upsert_blocking(&crash_key(t, i), json!({ "i": i, "pad": pad }))
                        .expect("upsert");
                    if i.is_multiple_of(7) {
                        store.create_blocking(&unique_key(t, i), i).expect("create");
                    }
                    out(&format!("ack {t} {i}"));
                }
            });
        }
    });
}

fn fill_until_error(path: &Path) {
    let store = Store::builder(path)
        .compact_log_bytes(1 << 40)
        .build()
        .expect("open");
    for i in 0..100_000usize {
        match store.upsert_blocking(&format!("k{i}"), "v".repeat(200)) {
            Ok(_) => out(&format!("ack {i}")),
            Err(e) => {
                out(&format!("error {e}"));
                // The failed write left no trace in memory.
                assert!(store.get(&format!("k{i}")).is_none());
                return;
            }
        }
    }
    out("never failed");
}

/// Keys and create races of the many-process Redis test.
pub(crate) const REDIS_KEYS_PER_CHILD: usize = 40;
pub(crate) const REDIS_RACES: usize = 20;
/// Concurrent writers in each Redis child.
pub(crate) const REDIS_WRITERS_PER_CHILD: usize = 8;

/// One of several processes writing one Redis namespace (`url` carries
/// `?ns=`): upserts its own keys, and races the others to `create` shared
/// ones, printing "won j" for each race it won.
fn redis_writer(url: &str, id: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Odd children send one batch at a time, so their eight writers'
        // writes queue and go together.
        let store = steward_store::RedisStore::builder(url)
            .pool_size(4)
            .batches_in_flight(1 + id % 2 * 3)
            .build()
            .await
            .expect("open redis");
        out("ready");
        let writers: Vec<_> = (0..REDIS_WRITERS_PER_CHILD)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in (w..REDIS_KEYS_PER_CHILD).step_by(REDIS_WRITERS_PER_CHILD) {
                        store
                            .upsert(&format!("p{id}_{i}"), json!({ "id": id, "i": i }))
                            .await
                            .expect("upsert");
                        if i < REDIS_RACES
                            && store
                                .create(&format!("race_{i}"), id)
                                .await
                                .expect("create")
                        {
                            out(&format!("won {i}"));
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.expect("writer task");
        }
        let stats = store.stats();
        out(&format!(
            "batches {} {}",
            stats.writes + stats.unchanged,
            stats.batches
        ));
        out("done");
    });
}
