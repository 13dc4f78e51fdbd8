//! The sound server the audio tests play to and record from: a check that
//! one answers, and null devices of a test's own.

use std::process::Command;

/// Fails the test, saying why and how to fix it, when no PulseAudio server
/// answers: the tests need its real-time paced null devices, so they fail
/// rather than skip.
pub fn require_sound_server() {
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
}

/// A null sink or source of a test's own, under a unique name, so other
/// tests' audio does not mix in and unloading it (a device unplugged) does
/// not touch their devices. Unloaded on drop.
pub struct OwnNullDevice {
    module: Option<String>,
    kind: &'static str,
    /// The sink's or source's name.
    pub name: String,
}

impl OwnNullDevice {
    /// `module-null-sink` named `steward_<tag>_<pid>_<n>`.
    pub fn sink(tag: &str) -> Self {
        Self::load("module-null-sink", "sink_name", tag)
    }

    /// `module-null-source` named `steward_<tag>_<pid>_<n>`.
    pub fn source(tag: &str) -> Self {
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
    pub fn monitor(&self) -> String {
        format!("{}.monitor", self.name)
    }

    /// Unloads the module: the device disappears under its streams.
    pub fn unload(&mut self) {
        if let Some(m) = self.module.take() {
            let status = Command::new("pactl")
                .args(["unload-module", &m])
                .status()
                .expect("run pactl");
            assert!(status.success(), "pactl unload-module {m} failed");
        }
    }

    /// Loads the module again under the same name.
    pub fn reload(&mut self) {
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
