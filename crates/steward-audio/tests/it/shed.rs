//! Shedding queued audio beyond a floor (memory pressure) on real streams:
//! playback on the sound server's null sink, capture from its source.

use std::sync::Arc;
use std::time::Duration;

use steward_audio::{Capture, Playback};

use crate::common::*;

const RATE: u64 = 24_000;

/// Played frames at the PCM16 rate.
fn played(stats: &steward_audio::Stats) -> u64 {
    let dev = u64::from(stats.format.expect("format").sample_rate);
    stats.frames_out * RATE / dev
}

#[test]
fn playback_shed_keeps_the_newest_floor_and_plays_on() {
    require_sound_server();
    let pb = Playback::builder()
        .queue(Duration::from_secs(10))
        .build()
        .unwrap();
    let audio = tone(440.0, 0.3, 24_000, 4.0);
    assert_eq!(pb.try_write(&audio).unwrap(), audio.len());
    // The newest second stays, all of it in the queue: the queue's older
    // part goes at once, and what already left the queue (the stream
    // thread's staging and the device ring, up to 200 ms each) goes on the
    // stream thread's and the callback's next run.
    let dropped = pb.shed_queued_to(Duration::from_secs(1));
    let stats = pb.stats();
    println!("dropped {dropped}: {stats:?}");
    assert!(dropped > 0);
    assert!(stats.shed_frames <= dropped as u64);
    assert!(
        stats.shed_frames + 2 * RATE / 5 >= dropped as u64,
        "{stats:?}"
    );
    // At most the floor is left, plus what waits for the callback's skip.
    assert!(stats.queued_frames <= RATE + 2 * RATE / 5, "{stats:?}");
    let underruns = stats.underruns;
    // Playback goes on with the newest second and ends normally.
    assert!(pb.drain_blocking(HANG_GUARD).unwrap());
    let end = pb.close().unwrap();
    println!("end: {end:?}");
    assert_eq!(end.frames_in, 4 * RATE);
    // Every written frame was played or shed (resampler edges aside).
    let accounted = played(&end) + end.shed_frames;
    assert!(accounted + RATE / 20 >= 4 * RATE, "{end:?}");
    assert!(
        played(&end) <= 4 * RATE - end.shed_frames + RATE / 20,
        "{end:?}"
    );
    // No underrun storm: the jump ahead is seamless, the end counts once.
    assert!(end.underruns - underruns <= 3, "{end:?}");
}

#[test]
fn playback_shed_to_zero_reaches_past_the_queue() {
    require_sound_server();
    let pb = Playback::builder()
        .queue(Duration::from_secs(10))
        .build()
        .unwrap();
    let audio = tone(440.0, 0.3, 24_000, 4.0);
    assert_eq!(pb.try_write(&audio).unwrap(), audio.len());
    // Let the stream thread fill the device ring: once 50 ms of the audio
    // played, it has refilled the ring from the queue behind each callback,
    // so part of the shed lies past the queue.
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while pb.played_frames() < RATE / 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "playback never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let dropped = pb.shed_queued_to(Duration::ZERO) as u64;
    assert!(pb.drain_blocking(HANG_GUARD).unwrap());
    let end = pb.close().unwrap();
    println!("dropped {dropped}: {end:?}");
    // The stream thread and the callback dropped their share too: the
    // count reaches the request, less at most what a callback played
    // between the request and its next run.
    assert!(end.shed_frames <= dropped, "{end:?}");
    assert!(end.shed_frames + RATE / 10 >= dropped, "{end:?}");
    let accounted = played(&end) + end.shed_frames;
    assert!(accounted + RATE / 20 >= 4 * RATE, "{end:?}");
    // Far less than the four seconds written was heard.
    assert!(played(&end) < 2 * RATE, "{end:?}");
    assert!(end.underruns <= 3, "{end:?}");
}

#[test]
fn capture_shed_from_a_shared_handle_keeps_the_newest_chunks() {
    require_sound_server();
    let cap = Arc::new(
        Capture::builder()
            .queue(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    // Nobody reads for a while: the queue grows past a second.
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while cap.stats().queued_frames < RATE {
        assert!(
            std::time::Instant::now() < deadline,
            "capture never queued a second"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The handler's path: another thread, a shared reference.
    let handler = {
        let cap = Arc::clone(&cap);
        std::thread::spawn(move || cap.shed_queued_to(Duration::from_millis(200)))
    };
    let dropped = handler.join().unwrap() as u64;
    let stats = cap.stats();
    println!("dropped {dropped}: {stats:?}");
    assert!(dropped > 0);
    assert_eq!(stats.shed_frames, dropped);
    // Whole chunks: at most the floor, plus what arrived since.
    let chunk = u64::from(cap.config().chunk_frames);
    assert!(stats.queued_frames <= RATE / 5 + 10 * chunk, "{stats:?}");
    // Reading goes on through the shared handle.
    for _ in 0..5 {
        let c = cap
            .recv_chunk_blocking(HANG_GUARD)
            .unwrap()
            .expect("a chunk");
        assert_eq!(c.len() as u64, chunk * 2);
    }
    assert!(cap.try_recv_chunk().is_ok());
    // The configured floor (500 ms by default) through `shed_queued`.
    assert_eq!(cap.config().shed_floor_ms, 500);
    let _ = cap.shed_queued();
    assert!(cap.stats().queued_frames <= RATE / 2 + 10 * chunk);
    let end = cap.close().unwrap();
    assert!(end.frames_out >= end.shed_frames);
}
