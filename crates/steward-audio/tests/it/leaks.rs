//! Open/close cycles leave no thread, file descriptor or memory behind.
//!
//! Run in a child process so the counts are not disturbed by other tests.
//! A cycle opens and closes one stream (capture and playback alternate).
//! The 1,000 cycles use ALSA's `null` device (not paced, fast); 100 more go
//! through the PulseAudio default devices, whose connection set-up costs
//! tens of milliseconds per stream (1,000 of those would take minutes on a
//! loaded machine).

use std::time::{Duration, Instant};

use steward_audio::{Capture, Playback};

use crate::common::{
    HANG_GUARD, fd_count, require_sound_server, rss_bytes, run_child, thread_count,
};

#[test]
fn open_close_cycles_leave_nothing_behind() {
    require_sound_server();
    run_child("leaks::child_open_close_cycles", &[]);
}

fn env_count(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One open/close cycle of one stream: even `i` capture, odd `i` playback.
/// Every `read_every`-th cycle also moves audio before closing.
fn cycle(device: &str, i: usize, read_every: usize) {
    let read = i % read_every < 2;
    if i.is_multiple_of(2) {
        let mut cap = Capture::builder().device(device).build().unwrap();
        if read {
            cap.next_chunk_blocking(HANG_GUARD)
                .unwrap()
                .expect("a chunk");
        }
        cap.close().unwrap();
    } else {
        let pb = Playback::builder().device(device).build().unwrap();
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
    let pulse_cycles = env_count("STEWARD_AUDIO_PULSE_CYCLES", 100);
    // Warm-up: the backends load their configuration once per process.
    for i in 0..4 {
        cycle("null", i, 1);
        cycle("default", i, 1);
    }
    let (threads, fds, rss) = (thread_count(), fd_count(), rss_bytes());
    let started = Instant::now();
    for i in 0..null_cycles {
        cycle("null", i, 50);
    }
    let null_time = started.elapsed();
    let started = Instant::now();
    for i in 0..pulse_cycles {
        cycle("default", i, 10);
    }
    let pulse_time = started.elapsed();
    // Joined threads are gone from /proc at once; allow the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while thread_count() > threads && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (threads_after, fds_after, rss_after) = (thread_count(), fd_count(), rss_bytes());
    println!(
        "{null_cycles} null cycles in {null_time:?}, {pulse_cycles} PulseAudio cycles in {pulse_time:?}; \
         threads {threads}->{threads_after}, fds {fds}->{fds_after}, rss {rss}->{rss_after}"
    );
    assert_eq!(threads_after, threads, "threads left behind");
    assert_eq!(fds_after, fds, "file descriptors left behind");
    // Allocator caches may keep a little; a leak of even 1 KiB per cycle
    // would exceed this.
    let growth = rss_after.saturating_sub(rss);
    assert!(growth < 1024 * 1024, "RSS grew by {growth} bytes");
}
