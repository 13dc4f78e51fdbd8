//! The audio callbacks allocate nothing: real streams on real devices,
//! measured by the counting allocator in `main.rs`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use steward_audio::{Capture, Playback, SampleFormat};

use crate::common::{HANG_GUARD, require_sound_server, tone};
use crate::{CALLBACK_ALLOCS, CALLBACKS_SEEN};

#[test]
fn the_counting_allocator_sees_allocations_on_marked_threads() {
    let n = crate::count_allocs_in_self_test(|| {
        let v = std::hint::black_box(vec![1_u8; 64]);
        drop(v);
    });
    assert_eq!(n, 2, "one allocation and one free");
}

#[test]
fn callbacks_allocate_nothing() {
    require_sound_server();
    let seen_before = CALLBACKS_SEEN.load(Relaxed);
    // Every callback path: mixing f32 stereo, i16 mono at the target rate,
    // playback with upmixing, underrun silence, a shed and a barge-in clear.
    let mut cap_f32 = Capture::builder()
        .device_format(48_000, 2, SampleFormat::F32)
        .build()
        .unwrap();
    let mut cap_i16 = Capture::builder()
        .device_format(24_000, 1, SampleFormat::I16)
        .build()
        .unwrap();
    let pb_f32 = Playback::builder()
        .device_format(48_000, 2, SampleFormat::F32)
        .queue(Duration::from_secs(5))
        .build()
        .unwrap();
    let pb_u8 = Playback::builder()
        .device_format(24_000, 1, SampleFormat::U8)
        .build()
        .unwrap();
    let audio = tone(440.0, 0.4, 24_000, 2.0);
    pb_f32.try_write(&audio).unwrap();
    pb_u8.write_blocking(&audio[..24_000], HANG_GUARD).unwrap();
    for _ in 0..10 {
        cap_f32
            .next_chunk_blocking(HANG_GUARD)
            .unwrap()
            .expect("f32 chunk");
        cap_i16
            .next_chunk_blocking(HANG_GUARD)
            .unwrap()
            .expect("i16 chunk");
    }
    // A shed below the ring's content: the callback skips frames of its ring.
    pb_f32.shed_queued_to(Duration::from_millis(50));
    for _ in 0..5 {
        cap_f32
            .next_chunk_blocking(HANG_GUARD)
            .unwrap()
            .expect("f32 chunk");
    }
    pb_f32.clear();
    for _ in 0..5 {
        cap_f32
            .next_chunk_blocking(HANG_GUARD)
            .unwrap()
            .expect("f32 chunk");
    }
    assert!(pb_u8.drain_blocking(HANG_GUARD).unwrap());
    let stats = [
        cap_f32.close().unwrap(),
        cap_i16.close().unwrap(),
        pb_f32.close().unwrap(),
        pb_u8.close().unwrap(),
    ];
    let seen = CALLBACKS_SEEN.load(Relaxed) - seen_before;
    let counted: u64 = stats.iter().map(|s| s.callbacks).sum();
    // The hook really ran on these streams' callbacks.
    assert!(
        seen >= counted.min(40) && counted >= 40,
        "seen {seen}, counted {counted}"
    );
    assert!(
        stats[3].frames_out > 0 && stats[2].cleared_frames > 0 && stats[2].shed_frames > 0,
        "{stats:?}"
    );
    assert_eq!(
        CALLBACK_ALLOCS.load(Relaxed),
        0,
        "an audio callback allocated or freed memory"
    );
}
