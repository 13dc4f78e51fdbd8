//! Open/close cycles leave no thread, file descriptor or memory behind.
//!
//! Run in a child process so the counts are not disturbed by other tests.
//! A cycle opens and closes one stream (capture and playback alternate).
//! 1,000 cycles go through the native PulseAudio client on the server's
//! default devices (the default host: each open connects to the server,
//! each close disconnects and joins the client's threads), 1,000 more
//! through ALSA's `null` device.
//!
//! Memory is judged two ways. The Rust heap's live bytes (the counting
//! allocator in `main.rs`: every allocation of ours, cpal's and the native
//! PulseAudio client's) are exact: a leak of 32 bytes a cycle fails. The
//! resident set size is the backstop for memory the C libraries (ALSA)
//! allocate themselves, and it is not exact: the C allocator keeps freed
//! pages and opens a new arena when a thread finds the others busy, which
//! happens more on a loaded machine (the check once failed at 1.1 MB over
//! 2,000 cycles while the heap was flat). The child runs with one arena,
//! which leaves a leak visible but not that noise.

use std::time::{Duration, Instant};

use steward_audio::{AudioHost, Capture, Playback};

use crate::common::{
    HANG_GUARD, fd_count, require_sound_server, rss_bytes, run_child, thread_count,
};
use crate::live_heap_bytes;

/// The most the resident set may grow over all measured cycles: a leak of
/// 512 bytes a cycle outside the Rust heap exceeds it.
const RSS_GROWTH_LIMIT: u64 = 1024 * 1024;

/// Stretches a phase is cut into for the report.
const STRETCHES: usize = 10;

/// The most the Rust heap's live bytes may grow over all measured cycles
/// (lazily built process-wide state; a leak of 32 bytes a cycle exceeds it).
const HEAP_GROWTH_LIMIT: i64 = 64 * 1024;

/// Runs `cycles` cycles of `run`; returns the resident set growth over
/// each of [`STRETCHES`] stretches (where it grew tells steps from a slope).
fn stretches(cycles: usize, mut run: impl FnMut(usize)) -> Vec<u64> {
    let len = cycles.div_ceil(STRETCHES).max(1);
    let mut growth = Vec::with_capacity(STRETCHES);
    let mut last = rss_bytes();
    for start in (0..cycles).step_by(len) {
        for i in start..(start + len).min(cycles) {
            run(i);
        }
        let now = rss_bytes();
        growth.push(now.saturating_sub(last));
        last = now;
    }
    growth
}

#[test]
fn open_close_cycles_leave_nothing_behind() {
    require_sound_server();
    // One allocator arena: no arena steps in the resident set (a leak
    // still shows).
    run_child(
        "leaks::child_open_close_cycles",
        &[("MALLOC_ARENA_MAX", "1")],
    );
}

/// Waits (up to 3 s) until the thread and descriptor counts stop changing:
/// a closed PulseAudio stream's connection thread ends a moment after
/// close, once the server answered its last request.
fn settle() {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = (thread_count(), fd_count());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = (thread_count(), fd_count());
        if now == last {
            return;
        }
        last = now;
    }
}

fn env_count(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One open/close cycle of one stream: even `i` capture, odd `i` playback,
/// on `host`'s `device` (`None`: its default). Every `read_every`-th cycle
/// also moves audio before closing.
fn cycle(host: AudioHost, device: Option<&str>, i: usize, read_every: usize) {
    let read = i % read_every < 2;
    if i.is_multiple_of(2) {
        let mut b = Capture::builder().host(host);
        if let Some(d) = device {
            b = b.device(d);
        }
        let mut cap = b.build().unwrap();
        assert_eq!(cap.host(), host);
        if read {
            cap.next_chunk_blocking(HANG_GUARD)
                .unwrap()
                .expect("a chunk");
        }
        cap.close().unwrap();
    } else {
        let mut b = Playback::builder().host(host);
        if let Some(d) = device {
            b = b.device(d);
        }
        let pb = b.build().unwrap();
        if read {
            pb.write_blocking(&[0u8; 960], HANG_GUARD).unwrap();
        }
        drop(pb); // Drop must clean up as well as close() does.
    }
}

#[test]
#[ignore = "helper: run in a child process by open_close_cycles_leave_nothing_behind"]
fn child_open_close_cycles() {
    require_sound_server();
    let null_cycles = env_count("STEWARD_AUDIO_NULL_CYCLES", 1_000);
    let pulse_cycles = env_count("STEWARD_AUDIO_PULSE_CYCLES", 1_000);
    let alsa = AudioHost::Alsa;
    let pulse = AudioHost::PulseAudio;
    // Warm-up: the backends load their configuration once per process, the
    // native host opens its shared connection, and the allocator's
    // per-thread arenas fill (each PulseAudio stream's connection thread
    // reads through a 1 MiB buffer).
    for i in 0..40 {
        cycle(alsa, Some("null"), i, 1);
    }
    for i in 0..200 {
        cycle(pulse, None, i, 10);
    }
    settle();
    let (threads, fds, rss, heap) = (thread_count(), fd_count(), rss_bytes(), live_heap_bytes());
    let started = Instant::now();
    let pulse_rss = stretches(pulse_cycles, |i| cycle(pulse, None, i, 50));
    let pulse_time = started.elapsed();
    let started = Instant::now();
    let null_rss = stretches(null_cycles, |i| cycle(alsa, Some("null"), i, 50));
    let null_time = started.elapsed();
    // Joined threads are gone from /proc at once; allow the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (thread_count() > threads || fd_count() > fds) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (threads_after, fds_after, rss_after) = (thread_count(), fd_count(), rss_bytes());
    // After the reactor threads ended: their buffers are freed.
    let heap_after = live_heap_bytes();
    println!(
        "{pulse_cycles} native PulseAudio cycles in {pulse_time:?}, {null_cycles} ALSA null cycles in {null_time:?}; \
         threads {threads}->{threads_after}, fds {fds}->{fds_after}, rss {rss}->{rss_after} \
         (growth per stretch: PulseAudio {:?}, ALSA {:?}), live heap {heap}->{heap_after}",
        pulse_rss, null_rss
    );
    assert_eq!(threads_after, threads, "threads left behind");
    assert_eq!(fds_after, fds, "file descriptors left behind");
    let heap_growth = heap_after - heap;
    assert!(
        heap_growth < HEAP_GROWTH_LIMIT,
        "the Rust heap grew by {heap_growth} bytes over {} cycles",
        pulse_cycles + null_cycles
    );
    let growth = rss_after.saturating_sub(rss);
    assert!(
        growth < RSS_GROWTH_LIMIT,
        "RSS grew by {growth} bytes (per stretch: PulseAudio {:?}, ALSA {:?})",
        pulse_rss,
        null_rss
    );
}
