//! Memory pressure during a session: with thresholds below any real RSS
//! the process is under pressure from the first sample, and the wiring's
//! cleanup shows in `health()` while the session runs. Once at `Moderate`
//! only, once straight at `Critical`.

use std::time::Duration;

use steward::Health;
use steward::monitor::Level;
use steward_cli::assistant::{Assistant, Input};

use crate::common::{
    HANG_GUARD, config, eventually, eventually_ok, require_sound_server, runtime, speech_wav,
};

/// Runs a session with one-byte thresholds (`Critical` too when
/// `critical`), sampled every 50 ms, until `done` holds for `health()`;
/// then checks what every level shares and returns the last snapshot.
fn session_under_pressure(critical: bool, what: &str, done: impl Fn(&Health) -> bool) -> Health {
    require_sound_server();
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path(), 20.0);
    runtime().block_on(async {
        let mut c = config(dir.path(), Input::Wav(wav), Some(Duration::from_secs(60)));
        c.monitor.interval = Duration::from_millis(50);
        // At `Critical`, a round again on every check.
        c.monitor.critical_renotify = Duration::from_millis(1);
        c.monitor.thresholds.moderate.fraction = None;
        c.monitor.thresholds.moderate.bytes = Some(1);
        c.monitor.thresholds.critical.fraction = None;
        c.monitor.thresholds.critical.bytes = critical.then_some(1);
        let assistant = Assistant::start(c).await.unwrap();

        // Something to compact: a remembered key in the store's log.
        eventually("a tool call in a turn", || {
            assistant.health().store.is_some_and(|s| s.stats.writes > 0)
        })
        .await;
        eventually_ok(what, || {
            let h = assistant.health();
            let compacted = h.cleanup.store_compactions > 0
                && h.store.as_ref().is_some_and(|s| s.stats.compactions > 0);
            if compacted && h.cleanup.stale_reports > 0 && done(&h) {
                Ok(())
            } else {
                Err(format!("{:?}, store {:?}", h.cleanup, h.store))
            }
        })
        .await;
        let h = assistant.health();
        let m = &h.monitor;
        assert_eq!(
            m.handler_failures + m.handler_panics + m.handler_timeouts,
            0,
            "every cleanup handler ran cleanly: {m:?}"
        );
        assert_eq!(h.cleanup.store_compaction_failures, 0);
        assert!(m.samples > 0 && m.notifications > 0);
        assert!(h.running, "the monitor task runs");

        // The session goes on under pressure and ends cleanly.
        assistant.stop();
        let report = tokio::time::timeout(HANG_GUARD, assistant.wait())
            .await
            .expect("wait within the hang guard")
            .unwrap();
        assert!(report.turns > 0);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        h
    })
}

#[test]
fn moderate_pressure_during_a_session_compacts_and_reports_only() {
    let h = session_under_pressure(false, "a moderate round that compacted", |h| {
        h.cleanup.moderate_rounds > 0
    });
    assert_eq!(h.level, Level::Moderate);
    // The critical-only steps did not run.
    let c = &h.cleanup;
    assert_eq!(c.critical_rounds, 0);
    assert_eq!((c.malloc_trims, c.pool_objects_shrunk), (0, 0));
    assert_eq!(c.audio_shed_frames + c.ws_shed_messages, 0, "{c:?}");
}

#[test]
fn critical_pressure_during_a_session_trims_and_sheds() {
    // Straight to `Critical`: its rounds run the moderate handlers too
    // (compaction, stale report) and count as critical rounds. The
    // session's pool holds its one session checked out, so there is
    // nothing idle to reap or shrink; queued playback audio beyond its
    // floor is shed instead, and freed heap goes back to the OS.
    let h = session_under_pressure(true, "critical rounds that trimmed and shed", |h| {
        let c = &h.cleanup;
        c.critical_rounds > 0 && c.malloc_trims > 0 && c.audio_shed_frames + c.ws_shed_messages > 0
    });
    assert_eq!(h.level, Level::Critical);
}
