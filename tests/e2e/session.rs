//! A whole session against the in-process stand-in: audio both ways, a
//! `remember` tool call in `memory.json`, and nothing left behind.

use steward_cli::assistant::{Assistant, Input};
use steward_test_support::procfs;

use crate::common::{
    HANG_GUARD, child, config, eventually, in_child, require_sound_server, runtime, speech_wav,
};

fn warm_up_audio() {
    let mut capture = steward::audio::Capture::builder()
        .build()
        .expect("the default capture device (the null source)");
    let _ = capture.next_chunk_blocking(HANG_GUARD);
    capture.close().expect("close the capture stream");
    let playback = steward::audio::Playback::builder()
        .build()
        .expect("the default playback device (the null sink)");
    let _ = playback.write_blocking(&[0_u8; 960], HANG_GUARD);
    drop(playback);
}

in_child!(whole_session_moves_audio_both_ways_remembers_and_leaves_nothing => child_whole_session);

#[test]
#[ignore = "helper: run in a child process by whole_session_moves_audio_both_ways_remembers_and_leaves_nothing"]
fn child_whole_session() {
    if !child() {
        return;
    }
    require_sound_server();
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path(), 3.0);
    let memory = dir.path().join("memory.json");

    // Warm-up of what is set up once per process and kept for its life, so
    // that it does not count as left behind by the session: the audio
    // backends load their configuration (open and close one stream each
    // way), tokio's signal registry opens a socket pair with the first
    // runtime that has a signal driver, and the stdout writer starts.
    warm_up_audio();
    drop(runtime());
    // The assistant's stdout writer: one thread for the process's life.
    let _ = steward_cli::assistant::print_within(String::new(), std::time::Duration::from_secs(1));
    // The baseline is taken before the runtime exists: after it is dropped
    // (which joins its workers and its blocking pool) nothing the session
    // started may remain.
    let threads_before = procfs::threads().unwrap();
    let fds_before = procfs::fds().unwrap();
    let rt = runtime();
    let report = rt.block_on(async {
        // No duration: the session ends once the WAV ended and was answered.
        let mut c = config(dir.path(), Input::Wav(wav), None);
        // Every second audio turn remembers `turn_<n>` (and the next one
        // recalls it).
        c.standin.remember_every = 2;
        let assistant = Assistant::start(c).await.unwrap();
        let report = tokio::time::timeout(HANG_GUARD, assistant.wait())
            .await
            .expect("the session ends within the hang guard")
            .unwrap();
        // No task of the assistant, the stand-in, the steward or the
        // endpoint outlives `wait`.
        let runtime = tokio::runtime::Handle::current();
        eventually("every task to end", || {
            runtime.metrics().num_alive_tasks() == 0
        })
        .await;
        report
    });
    // Counted by the assistant inside the running runtime: it runs its
    // blocking work on short-lived threads of its own, so no slack for the
    // runtime's blocking pool is needed even before the runtime goes.
    assert_eq!(
        report.threads_end, report.threads_start,
        "threads in the runtime"
    );
    assert_eq!(
        report.fds_end, report.fds_start,
        "descriptors in the runtime"
    );
    drop(rt);
    println!("{}", serde_json::to_string_pretty(&report).unwrap());

    // Audio both ways.
    assert!(report.audio_bytes_sent > 0, "audio sent");
    assert!(report.audio_bytes_received > 0, "audio deltas received");
    assert!(
        report.audio_bytes_played > 0,
        "audio played on the null sink"
    );
    assert!(
        report.tool_calls.remember > 0,
        "the model asked to remember"
    );
    let standin = report
        .standin_stats
        .as_ref()
        .expect("the in-process stand-in's counters");
    assert!(standin.audio_bytes_in > 0, "the stand-in got audio");
    assert!(standin.audio_deltas > 0, "the stand-in sent audio deltas");
    assert!(
        report.audio_balances(),
        "captured = sent + dropped + pending"
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    // The remembered key is in memory.json, through the store's reader and
    // as the plain JSON object the Python assistant reads.
    let check = steward::store::check(&memory).unwrap();
    assert!(check.is_ok(), "{check:?}");
    let map = steward::store::load(&memory).unwrap();
    let key = map
        .keys()
        .find(|k| k.starts_with("turn_"))
        .unwrap_or_else(|| panic!("a remembered turn_ key in {map:?}"))
        .clone();
    let plain: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&memory).unwrap()).unwrap();
    assert!(plain.is_object(), "a JSON object: {plain}");
    assert_eq!(plain[&key], map[&key], "{key} in the plain file");

    // Nothing left behind: every resource released, threads and
    // descriptors back to the baseline.
    let live = &report.health["tracker"]["totals"]["live_count"];
    assert_eq!(live.as_u64(), Some(0), "{}", report.health["tracker"]);
    assert_eq!(
        procfs::threads().unwrap(),
        threads_before,
        "threads: {:?}",
        procfs::thread_names()
    );
    assert_eq!(
        procfs::fds().unwrap(),
        fds_before,
        "descriptors: {:?}",
        procfs::fd_targets()
    );
}
