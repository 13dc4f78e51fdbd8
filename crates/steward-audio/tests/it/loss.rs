//! Device loss on the real sound server: a null sink or source of the
//! test's own is unloaded under a live stream (a device unplugged). The
//! stream reports `DeviceLost` (no panic, no hang), closes back to the
//! thread and descriptor baseline, and reopens on the new default device,
//! and on its own device once that is back.
//!
//! Each runs in a child process so the counts are its own.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use steward_audio::{AudioHost, Capture, Error, Event, Playback, Stats};

use crate::common::{
    HANG_GUARD, OwnNullDevice, fd_count, require_sound_server, run_child, thread_count, tone,
};

#[test]
fn a_lost_output_device_is_an_event_and_reopening_plays_again() {
    require_sound_server();
    run_child("loss::child_playback_loss", &[]);
}

#[test]
fn a_lost_input_device_is_an_event_and_reopening_records_again() {
    require_sound_server();
    run_child("loss::child_capture_loss", &[]);
}

/// Polls `f` every 10 ms until it returns `Some`; panics after the hang guard.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {HANG_GUARD:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (up to 3 s) until the thread and descriptor counts stop changing
/// (a closed stream's connection thread ends once the server answered).
fn settle() -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = (thread_count(), fd_count());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = (thread_count(), fd_count());
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// Waits for the counts to come back to `baseline` (bounded), then checks.
fn assert_back_to(baseline: (usize, usize)) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while (thread_count(), fd_count()) != baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        (thread_count(), fd_count()),
        baseline,
        "(threads, fds) not back to their baseline"
    );
}

/// Runs `f` on another thread and fails if it does not return within the
/// hang guard (a close that hangs on a dead device).
fn without_hanging<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    let v = rx
        .recv_timeout(HANG_GUARD)
        .unwrap_or_else(|_| panic!("{what} hung for {HANG_GUARD:?}"));
    t.join().expect("the thread panicked");
    v
}

/// The `DeviceLost` event, skipping any stream errors before it.
fn device_lost(next: impl Fn() -> Option<Event>) -> Event {
    wait_for("a DeviceLost event", || {
        while let Some(e) = next() {
            if matches!(e, Event::DeviceLost { .. }) {
                return Some(e);
            }
        }
        None
    })
}

#[test]
#[ignore = "helper: run in a child process by a_lost_output_device_is_an_event_and_reopening_plays_again"]
fn child_playback_loss() {
    require_sound_server();
    let mut sink = OwnNullDevice::sink("lost_out");
    let open = || {
        Playback::builder()
            .host(AudioHost::PulseAudio)
            .device(&sink.name)
            .queue(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    // Warm-up: the shared connection to the server is made once.
    open().close().unwrap();
    let baseline = settle();

    let pb = std::sync::Arc::new(open());
    let audio = tone(440.0, 0.3, 24_000, 5.0);
    assert_eq!(pb.try_write(&audio).unwrap(), audio.len());
    wait_for("playback starts", || {
        (pb.stats().frames_out > 0).then_some(())
    });
    sink.unload();

    let event = device_lost(|| pb.try_next_event());
    println!("{event:?}");
    assert!(
        matches!(&event, Event::DeviceLost { device, .. } if *device == sink.name),
        "{event:?}"
    );
    let stats = pb.stats();
    assert!(stats.device_lost, "{stats:?}");
    assert!(matches!(
        pb.try_write(&audio[..960]),
        Err(Error::DeviceLost { .. })
    ));
    assert!(matches!(
        pb.drain_blocking(HANG_GUARD),
        Err(Error::DeviceLost { .. })
    ));
    let closing = std::sync::Arc::clone(&pb);
    let end: Stats = without_hanging("close after the loss", move || closing.close().unwrap());
    println!("after the loss: {end:?}");
    assert!(end.device_lost);
    assert_back_to(baseline);

    // The caller asks: a new stream on the new default device plays.
    let on_default = pb.reopen_on_default().unwrap();
    assert_ne!(on_default.device(), sink.name);
    on_default
        .write_blocking(&audio[..9_600], HANG_GUARD)
        .unwrap();
    assert!(on_default.drain_blocking(HANG_GUARD).unwrap());
    let s = on_default.close().unwrap();
    assert!(s.frames_out > 0 && !s.device_lost, "{s:?}");
    assert_eq!(s.reopens, 1, "{s:?}");

    // The device comes back: reopening on it plays again.
    sink.reload();
    let again = pb.reopen().unwrap();
    assert_eq!(again.device(), sink.name);
    again.write_blocking(&audio[..9_600], HANG_GUARD).unwrap();
    assert!(again.drain_blocking(HANG_GUARD).unwrap());
    let s = again.close().unwrap();
    assert!(s.frames_out > 0 && !s.device_lost, "{s:?}");
    assert_eq!((s.reopens, pb.stats().reopens), (1, 0), "{s:?}");
    assert_back_to(baseline);
}

#[test]
#[ignore = "helper: run in a child process by a_lost_input_device_is_an_event_and_reopening_records_again"]
fn child_capture_loss() {
    require_sound_server();
    let mut source = OwnNullDevice::source("lost_in");
    let open = || {
        Capture::builder()
            .host(AudioHost::PulseAudio)
            .device(&source.name)
            .build()
            .unwrap()
    };
    open().close().unwrap();
    let baseline = settle();

    let cap = std::sync::Arc::new(open());
    for _ in 0..5 {
        cap.recv_chunk_blocking(HANG_GUARD)
            .unwrap()
            .expect("a chunk");
    }
    source.unload();

    let event = device_lost(|| cap.try_next_event());
    println!("{event:?}");
    assert!(
        matches!(&event, Event::DeviceLost { device, .. } if *device == source.name),
        "{event:?}"
    );
    // Queued chunks still come out, then the loss is reported.
    let err = wait_for("reads report the loss", || cap.try_recv_chunk().err());
    assert!(matches!(err, Error::DeviceLost { .. }), "{err}");
    let closing = std::sync::Arc::clone(&cap);
    let end: Stats = without_hanging("close after the loss", move || closing.close().unwrap());
    assert!(end.device_lost, "{end:?}");
    assert_back_to(baseline);

    let on_default = cap.reopen_on_default().unwrap();
    assert_ne!(on_default.device(), source.name);
    assert!(
        on_default
            .recv_chunk_blocking(HANG_GUARD)
            .unwrap()
            .is_some()
    );
    assert_eq!(on_default.close().unwrap().reopens, 1);

    source.reload();
    let again = cap.reopen().unwrap();
    assert_eq!(again.device(), source.name);
    for _ in 0..3 {
        assert!(again.recv_chunk_blocking(HANG_GUARD).unwrap().is_some());
    }
    let s = again.close().unwrap();
    assert!(s.frames_out > 0 && !s.device_lost, "{s:?}");
    assert_eq!((s.reopens, cap.stats().reopens), (1, 0), "{s:?}");
    assert_back_to(baseline);
}
