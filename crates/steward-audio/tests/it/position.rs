//! Playback position (`played_frames`), the clear generation and the
//! instant a clear reached the callback, on real streams on the null sink.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use steward_audio::{Playback, SampleFormat};

use crate::common::{HANG_GUARD, require_sound_server, tone};

/// Polls `f` every 5 ms until it returns `Some`; panics after the hang guard.
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
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Once drained, every written frame was consumed, exactly: with the
/// resampler (24 kHz written, 48 kHz stereo device, whose flush pads with
/// silence that must not count) and without it.
#[test]
fn played_frames_reach_what_was_written_once_drained() {
    require_sound_server();
    for (rate, channels) in [(48_000, 2), (24_000, 1)] {
        let pb = Playback::builder()
            .device_format(rate, channels, SampleFormat::F32)
            .queue(Duration::from_secs(5))
            .build()
            .unwrap();
        assert_eq!(pb.played_frames(), 0);
        let mut last = 0;
        let mut written = 0_u64;
        // Pieces of odd sizes with pauses between them: each pause flushes
        // the resampler's tail, padded with silence.
        for (i, secs) in [0.3, 0.0123, 0.25, 0.07].into_iter().enumerate() {
            let piece = tone(440.0, 0.3, 24_000, secs);
            written += piece.len() as u64 / 2;
            assert!(pb.write_blocking(&piece, HANG_GUARD).unwrap());
            if i % 2 == 1 {
                assert!(pb.drain_blocking(HANG_GUARD).unwrap());
                let now = pb.played_frames();
                assert_eq!(now, written, "{rate} Hz, piece {i}: {:?}", pb.stats());
            }
            let now = pb.played_frames();
            assert!(now >= last, "went back from {last} to {now}");
            assert!(now <= written, "{now} played of {written} written");
            last = now;
        }
        assert!(pb.drain_blocking(HANG_GUARD).unwrap());
        // Silence follows; it counts nothing.
        let silent = pb.stats().silence_frames;
        wait_for("silence after the drain", || {
            (pb.stats().silence_frames > silent).then_some(())
        });
        let stats = pb.close().unwrap();
        assert_eq!(pb.played_frames(), written, "{rate} Hz: {stats:?}");
        assert_eq!(stats.frames_in, written);
        assert!(stats.silence_frames > 0, "{stats:?}");
        assert_eq!(pb.clear_generation(), 0);
        assert_eq!(pb.last_cleared(), None);
    }
}

#[test]
fn a_clear_reports_when_it_reached_the_callback_and_nothing_old_plays_after() {
    require_sound_server();
    let pb = Playback::builder()
        .device_format(48_000, 2, SampleFormat::F32)
        .queue(Duration::from_secs(10))
        .build()
        .unwrap();
    let audio = tone(440.0, 0.3, 24_000, 5.0);
    assert_eq!(pb.try_write(&audio).unwrap(), audio.len());
    wait_for("playback starts", || {
        (pb.played_frames() > 2_400).then_some(())
    });
    assert_eq!(pb.clear_generation(), 0);
    let before = Instant::now();
    assert!(pb.clear() > 0, "nothing was queued");
    assert_eq!(pb.clear_generation(), 1);
    let cleared = wait_for("the callback applies the clear", || {
        pb.last_cleared().filter(|c| c.generation == 1)
    });
    println!(
        "clear reached the callback after {:?}: {cleared:?}",
        cleared.at - before
    );
    assert!(cleared.at >= before, "{cleared:?}");
    assert!(cleared.played_frames < 5 * 24_000, "{cleared:?}");
    // Nothing written before the clear plays after it: the count stays put
    // while the device goes on with silence.
    let silence = pb.stats().silence_frames;
    wait_for("the device plays on", || {
        (pb.stats().silence_frames > silence + 4_800).then_some(())
    });
    assert_eq!(
        pb.played_frames(),
        cleared.played_frames,
        "{:?}",
        pb.stats()
    );

    // Audio written after the clear counts from there, exactly.
    let piece = tone(300.0, 0.3, 24_000, 0.2);
    assert!(pb.write_blocking(&piece, HANG_GUARD).unwrap());
    assert!(pb.drain_blocking(HANG_GUARD).unwrap());
    assert_eq!(pb.played_frames(), cleared.played_frames + 4_800);

    // A clear with nothing queued still reaches the callback.
    let before = Instant::now();
    assert_eq!(pb.clear(), 0);
    let second = wait_for("the second clear is applied", || {
        pb.last_cleared().filter(|c| c.generation == 2)
    });
    assert!(second.at >= before && second.at > cleared.at, "{second:?}");
    assert_eq!(second.played_frames, cleared.played_frames + 4_800);
    assert_eq!(pb.clear_generation(), 2);
    pb.close().unwrap();
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Many writes, clears and sheds at random moments: the count never goes
/// back and never exceeds what was written, seen from the writing thread
/// and from a thread that samples it all along.
#[test]
fn played_frames_stay_monotonic_and_within_what_was_written_over_write_clear_cycles() {
    require_sound_server();
    let pb = Arc::new(
        Playback::builder()
            .device_format(44_100, 2, SampleFormat::I16)
            .queue(Duration::from_millis(500))
            .build()
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pb, stop) = (Arc::clone(&pb), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut last = 0;
            let mut samples = 0_u64;
            while !stop.load(SeqCst) {
                let now = pb.played_frames();
                assert!(now >= last, "went back from {last} to {now}");
                assert!(now <= pb.stats().frames_in, "{now}: {:?}", pb.stats());
                last = now;
                samples += 1;
                std::thread::sleep(Duration::from_micros(500));
            }
            samples
        })
    };
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let piece = tone(440.0, 0.3, 24_000, 0.2);
    let mut written = 0_u64;
    let mut last = 0;
    let mut clears = 0;
    for _ in 0..150 {
        let frames = rng.below(4_800) as usize + 1;
        pb.write_blocking(&piece[..frames * 2], HANG_GUARD).unwrap();
        written += frames as u64;
        match rng.below(6) {
            0 => {
                pb.clear();
                clears += 1;
            }
            1 => {
                pb.shed_queued_to(Duration::from_millis(rng.below(100)));
            }
            // A random pause lets the callback play on: not a synchronisation.
            2 => std::thread::sleep(Duration::from_millis(rng.below(60))),
            _ => {}
        }
        let now = pb.played_frames();
        assert!(now >= last, "went back from {last} to {now}");
        assert!(now <= written, "{now} played of {written} written");
        last = now;
    }
    assert!(pb.drain_blocking(HANG_GUARD).unwrap());
    stop.store(true, SeqCst);
    let samples = sampler.join().expect("the sampler thread panicked");
    let stats = pb.close().unwrap();
    println!("{samples} samples, {clears} clears: {stats:?}");
    assert_eq!(stats.frames_in, written);
    assert_eq!(pb.clear_generation(), clears);
    let end = pb.played_frames();
    assert!(end >= last && end <= written, "{end} of {written}");
    // Something was played, and the clears dropped something.
    assert!(end > 0 && end < written, "{end} of {written}: {stats:?}");
    assert!(samples > 10, "the sampler barely ran");
}
