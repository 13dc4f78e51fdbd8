//! Memory pressure during a session: with thresholds below any real RSS
//! the process is at `Critical` from the first sample, and the wiring's
//! cleanup shows in `health()` while the session runs.

use std::time::Duration;

use steward::monitor::Level;
use steward_cli::assistant::{Assistant, Input};

use crate::common::{
    HANG_GUARD, config, eventually, eventually_ok, require_sound_server, runtime, speech_wav,
};

#[test]
fn pressure_during_a_session_runs_the_wiring() {
    require_sound_server();
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path(), 20.0);
    runtime().block_on(async {
        let mut c = config(dir.path(), Input::Wav(wav), Some(Duration::from_secs(60)));
        // Thresholds of one byte: moderate and critical at once; sampled
        // every 50 ms; a critical round again on every check.
        c.monitor.interval = Duration::from_millis(50);
        c.monitor.critical_renotify = Duration::from_millis(1);
        c.monitor.thresholds.moderate.fraction = None;
        c.monitor.thresholds.moderate.bytes = Some(1);
        c.monitor.thresholds.critical.fraction = None;
        c.monitor.thresholds.critical.bytes = Some(1);
        let assistant = Assistant::start(c).await.unwrap();

        // Something to compact: a remembered key in the store's log.
        eventually("a tool call in a turn", || {
            assistant.health().store.is_some_and(|s| s.stats.writes > 0)
        })
        .await;
        // Straight to `Critical`: its rounds run the moderate handlers too
        // (compaction, stale report) and are counted as critical rounds.
        // The session's pool holds its one session checked out, so there
        // is nothing idle to reap or shrink; queued playback audio beyond
        // its floor is shed instead.
        eventually_ok(
            "critical rounds that compacted, reported, trimmed and shed",
            || {
                let h = assistant.health();
                let c = &h.cleanup;
                let json = serde_json::to_value(c).unwrap_or_default();
                let shed = json["audio_shed_frames"].as_u64().unwrap_or(0)
                    + json["ws_shed_messages"].as_u64().unwrap_or(0);
                let done = c.critical_rounds > 0
                    && c.store_compactions > 0
                    && c.stale_reports > 0
                    && c.malloc_trims > 0
                    && shed > 0
                    && h.store.as_ref().is_some_and(|s| s.stats.compactions > 0);
                if done {
                    Ok(())
                } else {
                    Err(format!("{c:?}, store {:?}", h.store))
                }
            },
        )
        .await;
        let h = assistant.health();
        assert_eq!(h.level, Level::Critical);
        assert_eq!(
            h.monitor.handler_failures + h.monitor.handler_panics + h.monitor.handler_timeouts,
            0,
            "every cleanup handler ran cleanly: {:?}",
            h.monitor
        );
        assert_eq!(h.cleanup.store_compaction_failures, 0);
        assert!(h.monitor.samples > 0 && h.monitor.notifications > 0);
        // The session still runs under pressure.
        assert!(h.running, "the monitor task runs");

        assistant.stop();
        let report = tokio::time::timeout(HANG_GUARD, assistant.wait())
            .await
            .expect("wait within the hang guard")
            .unwrap();
        println!("{}", serde_json::to_string_pretty(&report.health).unwrap());
        assert!(report.turns > 0);
    });
}
