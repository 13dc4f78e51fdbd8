//! Open/close cycles leave no thread, file descriptor or memory behind.
//!
//! Run in a child process so the counts are not disturbed by other tests.
//! A cycle opens and closes one stream (capture and playback alternate).
//! 1,000 cycles go through the native PulseAudio client on the server's
//! default devices (the default host: each open connects to the server,
//! each close disconnects and joins the client's threads), 1,000 more
//! through ALSA's `null` device.

use std::time::{Duration, Instant};

use steward_audio::{AudioHost, Capture, Playback};

use crate::common::{
    HANG_GUARD, fd_count, require_sound_server, rss_bytes, run_child, thread_count,
};

#[test]
fn open_close_cycles_leave_nothing_behind() {
    require_sound_server();
    run_child("leaks::child_open_close_cycles", &[]);
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
    let (threads, fds, rss) = (thread_count(), fd_count(), rss_bytes());
    let started = Instant::now();
    for i in 0..pulse_cycles {
        cycle(pulse, None, i, 50);
    }
    let pulse_time = started.elapsed();
    let started = Instant::now();
    for i in 0..null_cycles {
        cycle(alsa, Some("null"), i, 50);
    }
    let null_time = started.elapsed();
    // Joined threads are gone from /proc at once; allow the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (thread_count() > threads || fd_count() > fds) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (threads_after, fds_after, rss_after) = (thread_count(), fd_count(), rss_bytes());
    println!(
        "{pulse_cycles} native PulseAudio cycles in {pulse_time:?}, {null_cycles} ALSA null cycles in {null_time:?}; \
         threads {threads}->{threads_after}, fds {fds}->{fds_after}, rss {rss}->{rss_after}"
    );
    assert_eq!(threads_after, threads, "threads left behind");
    assert_eq!(fds_after, fds, "file descriptors left behind");
    // Allocator caches may keep a little; a leak of even 1 KiB per cycle
    // would exceed this.
    let growth = rss_after.saturating_sub(rss);
    assert!(growth < 1024 * 1024, "RSS grew by {growth} bytes");
}
