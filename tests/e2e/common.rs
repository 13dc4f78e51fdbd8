//! Shared pieces: the child-process wrapper, a runtime, configs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use steward_cli::assistant::{AssistantConfig, Input};
pub(crate) use steward_test_support::sound::require_sound_server;

/// Generous guard against hangs on a loaded 2-core machine.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(60);

/// Declares `#[test] fn $name` that runs the ignored `$child` test of the
/// same module in a child process, and fails with its output.
macro_rules! in_child {
    ($name:ident => $child:ident) => {
        #[test]
        fn $name() {
            let module = module_path!()
                .split_once("::")
                .map_or(module_path!(), |(_, m)| m);
            let child = format!("{module}::{}", stringify!($child));
            match steward_test_support::child::run_child(&child, &[]) {
                Ok(out) => println!("{out}"),
                Err(e) => panic!("{e}"),
            }
        }
    };
}
pub(crate) use in_child;

/// Whether this process runs a child test; the `child_*` tests return at
/// once otherwise (so `cargo test -- --ignored` does not run them bare).
pub(crate) fn child() -> bool {
    steward_test_support::child::is_child()
}

/// The runtime the assistant runs on: two workers like the CLI on this
/// machine's two cores.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Polls `done` every 20 ms; panics after [`HANG_GUARD`].
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {HANG_GUARD:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms until it is `Ok`; panics after [`HANG_GUARD`]
/// with its last complaint.
pub(crate) async fn eventually_ok(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        let Err(why) = check() else { return };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {HANG_GUARD:?} waiting for {what}: {why}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A speech-like PCM16 24 kHz mono WAV of `secs` seconds in `dir`.
pub(crate) fn speech_wav(dir: &Path, secs: f64) -> PathBuf {
    let path = dir.join("speech.wav");
    steward_tests::wav::write_speech(&path, 24_000, secs).expect("write the WAV");
    path
}

/// An assistant config for tests: `input`, memory in `dir`, half-second
/// turns, the status refreshed every 100 ms (not printed), runs until
/// `duration` (or `stop`; `None`: until a WAV input ended and was answered).
pub(crate) fn config(dir: &Path, input: Input, duration: Option<Duration>) -> AssistantConfig {
    let mut c = AssistantConfig::default();
    c.input = input;
    c.memory = dir.join("memory.json");
    c.duration = duration;
    c.turn_ms = 500;
    c.realtime.turn_detection = steward::realtime::TurnDetection::Manual;
    c.poll_ms = 100;
    c.status_line = false;
    c
}
