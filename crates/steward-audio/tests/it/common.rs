//! Helpers: sound-server check, tones, frequency estimate, /proc counters,
//! running a helper test in a child process.

use std::process::Command;
use std::time::Duration;

/// Generous hang guard for waits on real-time paced devices.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(10);

/// Fails the test, saying why and how to fix it, when no sound server runs.
pub(crate) fn require_sound_server() {
    let out = Command::new("pactl").arg("info").output();
    let ok = matches!(&out, Ok(o) if o.status.success());
    assert!(
        ok,
        "no PulseAudio server reachable ({}): these tests need real-time paced null devices; \
         run `bash scripts/setup.sh` (or `cargo xtask setup`) to install and start one",
        match &out {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => format!("cannot run pactl: {e}"),
        }
    );
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

pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

pub(crate) fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Resident set size in bytes (from /proc/self/statm, 4 KiB pages).
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Runs the ignored test `name` of this binary alone in a child process
/// (with extra environment), so it has the process to itself; fails with its
/// output when it fails.
pub(crate) fn run_child(name: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child test {name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // A filter that matched nothing would "pass": make sure it ran.
    assert!(
        stdout.contains("1 passed"),
        "child test {name} did not run:\n{stdout}\n{stderr}"
    );
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

/// A null sink or source of a test's own, under a unique name, so other
/// tests' audio does not mix in and unloading it (a device unplugged) does
/// not touch their devices. Unloaded on drop.
pub(crate) struct OwnNullDevice {
    module: Option<String>,
    kind: &'static str,
    /// The sink's or source's name.
    pub(crate) name: String,
}

impl OwnNullDevice {
    /// `module-null-sink` named `steward_<tag>_<pid>_<n>`.
    pub(crate) fn sink(tag: &str) -> Self {
        Self::load("module-null-sink", "sink_name", tag)
    }

    /// `module-null-source` named `steward_<tag>_<pid>_<n>`.
    pub(crate) fn source(tag: &str) -> Self {
        Self::load("module-null-source", "source_name", tag)
    }

    fn load(kind: &'static str, arg: &str, tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("steward_{tag}_{}_{n}", std::process::id());
        let mut dev = Self {
            module: None,
            kind,
            name,
        };
        dev.module = Some(dev.load_module(arg));
        dev
    }

    fn load_module(&self, arg: &str) -> String {
        let out = Command::new("pactl")
            .args(["load-module", self.kind, &format!("{arg}={}", self.name)])
            .output()
            .expect("run pactl");
        assert!(
            out.status.success(),
            "pactl load-module {} failed: {}",
            self.kind,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The sink's monitor source (what is played on it, recorded).
    pub(crate) fn monitor(&self) -> String {
        format!("{}.monitor", self.name)
    }

    /// Unloads the module: the device disappears under its streams.
    pub(crate) fn unload(&mut self) {
        if let Some(m) = self.module.take() {
            let status = Command::new("pactl")
                .args(["unload-module", &m])
                .status()
                .expect("run pactl");
            assert!(status.success(), "pactl unload-module {m} failed");
        }
    }

    /// Loads the module again under the same name.
    pub(crate) fn reload(&mut self) {
        assert!(self.module.is_none(), "still loaded");
        let arg = if self.kind == "module-null-sink" {
            "sink_name"
        } else {
            "source_name"
        };
        self.module = Some(self.load_module(arg));
    }
}

impl Drop for OwnNullDevice {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            let _ = Command::new("pactl").args(["unload-module", &m]).status();
        }
    }
}
