//! A 60-second soak: the assistant cycles 6 sessions against the stand-in
//! while RSS (total, anonymous, file-backed, shared) is sampled every
//! second; after the warm-up anonymous RSS may grow by less than
//! [`GROWTH_BOUND`] (see there for the measurements behind that number).
//! `STEWARD_E2E_SOAK_SECS` makes the run longer for a look by hand.

use std::time::{Duration, Instant};

use steward_cli::assistant::{Assistant, Input};
use steward_test_support::procfs;

use crate::common::{HANG_GUARD, child, config, in_child, require_sound_server, runtime};

/// Length of the run (`STEWARD_E2E_SOAK_SECS` overrides it, for a longer
/// look by hand).
fn run_length() -> Duration {
    let secs = std::env::var("STEWARD_E2E_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}
/// Samples before this are the warm-up (allocator arenas, pools, queues
/// reaching their working size).
const WARM_UP: Duration = Duration::from_secs(15);
/// Sessions cycled over the run.
const SESSIONS: u32 = 6;
/// Audio per turn, ms.
const TURN_MS: u32 = 500;
/// Growth of anonymous RSS (heap, stacks: what a leak grows) allowed
/// after the warm-up, in bytes: 1.5 MiB.
///
/// Measured (debug test build, null source input, 500 ms turns, 6 sessions
/// in 60 s, ~110 turns, ~85 of them after the warm-up), growth between the
/// medians of the first and last five samples after 15 s, three runs:
///
/// | run | anonymous | shared memory | total RSS |
/// |---|---|---|---|
/// | 1 | 696 KiB | 1,592 KiB | 2,288 KiB |
/// | 2 | 708 KiB | 1,064 KiB | 1,772 KiB |
/// | 3 | 664 KiB | 1,540 KiB | 2,204 KiB |
///
/// Anonymous growth is steady at ~0.7 MiB; a heap profile of the same run
/// shows the live heap at only ~1 to 1.4 MiB, most of the growth within a
/// session being the playback queue (the stand-in answers with a little
/// more audio than real time when tool calls follow every turn; bounded by
/// the queue, freed at each session end), the rest allocator arenas and
/// thread stacks. The bound is about twice the largest measurement. A leak of one
/// audio buffer per turn adds far more: the committed turn's input (500 ms
/// of PCM16 at 24 kHz = 24,000 bytes) times ~85 turns = ~2.0 MiB on top of
/// the ~0.7 MiB, 2.7 MiB in all; the turn's decoded reply (250 ms = 12,000
/// bytes) gives ~1.0 MiB + 0.7 MiB = 1.7 MiB, still above the bound. A leak
/// of one 20 ms chunk per turn (960 bytes, ~80 KiB in all) is below what
/// RSS can show; the heap profile and the tracker are the tools for that.
///
/// Shared memory is left out of the bound: it is the sound server's
/// shared-memory pool, whose pages are touched in steps as its blocks
/// rotate (1 to 1.6 MiB here), bounded by the pool's size and not our heap.
/// File-backed pages (code) did not grow at all after the warm-up.
const GROWTH_BOUND: i128 = 3 << 19;
/// The largest growth measured without a leak (run 2 above): what a leak
/// must add to before it crosses the bound.
const MEASURED_GROWTH: i128 = 708 << 10;
/// PCM16 at 24 kHz: bytes per ms of audio.
const PCM_BYTES_PER_MS: i128 = 24 * 2;
/// The smallest per-turn leak the bound claims to catch: one turn's decoded
/// reply, half a turn of audio (12,000 bytes).
const REPLY_BYTES: i128 = TURN_MS as i128 / 2 * PCM_BYTES_PER_MS;
/// Turns the growth window must hold for that claim: a reply leaked per turn
/// adds more than the room between [`MEASURED_GROWTH`] and the bound
/// (71 turns; a 60 s run here had 79 in the window, a 50 s run 62).
const MIN_TURNS_IN_WINDOW: i128 = (GROWTH_BOUND - MEASURED_GROWTH) / REPLY_BYTES + 1;

in_child!(soak_60s_rss_stays_flat_after_warm_up => child_soak);

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[test]
#[ignore = "helper: run in a child process by soak_60s_rss_stays_flat_after_warm_up"]
fn child_soak() {
    if !child() {
        return;
    }
    require_sound_server();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (samples, turns_at, report) = rt.block_on(async {
        let mut c = config(dir.path(), Input::Device, Some(run_length()));
        c.sessions = SESSIONS
            * u32::try_from(run_length().as_secs() / 60)
                .unwrap_or(1)
                .max(1);
        c.turn_ms = TURN_MS;
        let started = Instant::now();
        let assistant = Assistant::start(c).await.unwrap();
        let mut samples = Vec::new();
        // Committed turns at each sample (the status as of its last poll).
        let mut turns_at = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while started.elapsed() < run_length() {
            tick.tick().await;
            let total = procfs::rss_bytes().unwrap();
            let parts = procfs::rss_parts().unwrap();
            samples.push((started.elapsed(), total, parts));
            turns_at.push(assistant.status().turns);
        }
        let report = tokio::time::timeout(HANG_GUARD, assistant.wait())
            .await
            .expect("the run ends within the hang guard")
            .unwrap();
        (samples, turns_at, report)
    });
    drop(rt);

    let after: Vec<_> = samples.iter().filter(|s| s.0 >= WARM_UP).collect();
    assert!(
        after.len() >= 30,
        "enough samples after the warm-up: {}",
        samples.len()
    );
    // Growth between the medians of the first and last five samples after
    // the warm-up: one sample caught mid-burst (a reply being decoded)
    // does not count.
    let growth = |get: &dyn Fn(&(Duration, u64, procfs::RssParts)) -> u64| {
        let mut first: Vec<u64> = after[..5].iter().map(|s| get(s)).collect();
        let mut last: Vec<u64> = after[after.len() - 5..].iter().map(|s| get(s)).collect();
        let (a, b) = (median(&mut first), median(&mut last));
        (a, b, i128::from(b) - i128::from(a))
    };
    let total = growth(&|s| s.1);
    let anon = growth(&|s| s.2.anon);
    let file = growth(&|s| s.2.file);
    let shmem = growth(&|s| s.2.shmem);
    let kib = |f: &dyn Fn(&(Duration, u64, procfs::RssParts)) -> u64| {
        samples.iter().map(|s| f(s) / 1024).collect::<Vec<_>>()
    };
    println!(
        "SOAK turns={} sessions={} reconnects={} growth total={total:?} anon={anon:?} \
         file={file:?} shmem={shmem:?}\nSOAK anon_kib={:?}\nSOAK file_kib={:?}\nSOAK shmem_kib={:?}",
        report.turns,
        report.sessions,
        report.reconnects,
        kib(&|s| s.2.anon),
        kib(&|s| s.2.file),
        kib(&|s| s.2.shmem),
    );
    assert!(
        report.sessions >= u64::from(SESSIONS),
        "sessions cycled: {}",
        report.sessions
    );
    // The turns between the two medians the growth compares (the third
    // sample after the warm-up and the third from the end): a leak per turn
    // adds up only over these.
    let skipped = samples.len() - after.len();
    let in_window = turns_at[samples.len() - 3].saturating_sub(turns_at[skipped + 2]);
    println!("SOAK turns_in_window={in_window} (need {MIN_TURNS_IN_WINDOW})");
    assert!(
        i128::from(in_window) >= MIN_TURNS_IN_WINDOW,
        "{in_window} turns in the growth window, the bound assumes at least \
         {MIN_TURNS_IN_WINDOW} (a {REPLY_BYTES}-byte leak per turn must cross it)"
    );
    assert!(
        anon.2 < GROWTH_BOUND,
        "anonymous RSS grew by {} bytes after the warm-up (bound {GROWTH_BOUND})",
        anon.2
    );
}
