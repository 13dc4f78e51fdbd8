//! Helpers: tones, frequency estimate, and this crate's use of the shared
//! test support (sound server check, /proc counters, child tests).

use std::time::Duration;

pub(crate) use steward_test_support::sound::OwnNullDevice;
use steward_test_support::{child, procfs, sound};

/// Generous hang guard for waits on real-time paced devices.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(10);

/// Fails the test, saying why and how to fix it, when no sound server
/// runs; then installs the callback hooks the allocation test counts with.
pub(crate) fn require_sound_server() {
    sound::require_sound_server();
    crate::install_hooks();
}

/// `secs` of a sine at `freq` Hz, amplitude `amp`, as PCM16LE at `rate`.
pub(crate) fn tone(freq: f64, amp: f64, rate: u32, secs: f64) -> Vec<u8> {
    let n = (f64::from(rate) * secs) as usize;
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n {
        let x = (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() * amp;
        out.extend_from_slice(&((x * 32767.0).round() as i16).to_le_bytes());
    }
    out
}

pub(crate) fn samples(pcm16: &[u8]) -> Vec<i16> {
    pcm16
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Frequency estimate by counting upward zero crossings (with hysteresis)
/// over the samples louder than `floor`.
pub(crate) fn zero_crossing_freq(s: &[i16], rate: u32, floor: i16) -> Option<f64> {
    let first = s
        .iter()
        .position(|x| x.unsigned_abs() > floor.unsigned_abs())?;
    let last = s
        .iter()
        .rposition(|x| x.unsigned_abs() > floor.unsigned_abs())?;
    let s = &s[first..=last];
    let hyst = floor / 2;
    let mut below = s[0] < 0;
    let mut first_cross = None;
    let mut last_cross = 0;
    let mut crossings = 0u32;
    for (i, &x) in s.iter().enumerate() {
        if below && x > hyst {
            below = false;
            crossings += 1;
            first_cross.get_or_insert(i);
            last_cross = i;
        } else if !below && x < -hyst {
            below = true;
        }
    }
    let first_cross = first_cross?;
    if crossings < 3 {
        return None;
    }
    let span = (last_cross - first_cross) as f64 / f64::from(rate);
    Some(f64::from(crossings - 1) / span)
}

/// Median of [`zero_crossing_freq`] over 100 ms windows: robust to a few
/// glitched windows (a dropout on a loaded machine).
pub(crate) fn median_freq(s: &[i16], rate: u32, floor: i16) -> Option<f64> {
    let window = (rate / 10) as usize;
    let mut fs: Vec<f64> = s
        .chunks(window)
        .filter(|w| {
            w.iter()
                .filter(|x| x.unsigned_abs() > floor.unsigned_abs())
                .count()
                > w.len() / 2
        })
        .filter_map(|w| zero_crossing_freq(w, rate, floor))
        .collect();
    if fs.is_empty() {
        return None;
    }
    fs.sort_by(f64::total_cmp);
    Some(fs[fs.len() / 2])
}

pub(crate) fn rms(s: &[i16]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
}

/// This process's threads (0 without `/proc`).
pub(crate) fn thread_count() -> usize {
    procfs::threads().unwrap_or(0)
}

/// This process's open file descriptors (0 without `/proc`).
pub(crate) fn fd_count() -> usize {
    procfs::fds().unwrap_or(0)
}

/// This process's resident set size in bytes (0 without `/proc`).
pub(crate) fn rss_bytes() -> u64 {
    procfs::rss_bytes().unwrap_or(0)
}

/// Runs the ignored test `name` of this binary alone in a child process
/// (with extra environment), so it has the process to itself; fails with its
/// output when it fails, prints it when it passes.
pub(crate) fn run_child(name: &str, env: &[(&str, &str)]) {
    let stdout = child::run_child(name, env).unwrap_or_else(|e| panic!("{e}"));
    println!("{stdout}");
}

/// The host `AudioHost::Default` should pick on the test machine: PipeWire
/// when compiled in and its socket is there, else PulseAudio's native client.
pub(crate) fn native_host() -> steward_audio::AudioHost {
    let pipewire_socket = std::env::var_os("PIPEWIRE_RUNTIME_DIR")
        .or_else(|| std::env::var_os("XDG_RUNTIME_DIR"))
        .map(|d| std::path::PathBuf::from(d).join("pipewire-0"))
        .is_some_and(|p| p.exists());
    if steward_audio::AudioHost::PIPEWIRE_COMPILED && pipewire_socket {
        steward_audio::AudioHost::PipeWire
    } else {
        steward_audio::AudioHost::PulseAudio
    }
}
