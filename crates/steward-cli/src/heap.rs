//! The heap profile of `cargo xtask soak --heap` (feature `dhat-heap`,
//! never in default builds): dhat is the global allocator, and the profiler
//! starts only once the warm-up is over, so that what is live when it
//! writes its profile at exit was allocated after the warm-up and never
//! freed. That is the growth, by allocation site; the task runner lists it.
//!
//! dhat rather than jemalloc's profiling: pure Rust (no C build, no `jeprof`
//! and its Perl to read the dumps), its JSON is read by the task runner
//! with the JSON parser it has, and it names allocation sites with Rust
//! frames. Its cost (a backtrace per allocation) is paid only after the
//! warm-up. Blocks allocated before the profiler started are not seen,
//! also when they are freed later.
//!
//! Set by the task runner: `STEWARD_DHAT_FILE` (where the profile goes) and
//! `STEWARD_DHAT_AFTER_S` (seconds after start to begin; default 0).

use std::sync::Mutex;
use std::time::Duration;

/// The running profiler, written when taken and dropped at exit.
static PROFILER: Mutex<Option<dhat::Profiler>> = Mutex::new(None);

/// Writes the profile when dropped (at the end of `main`).
pub(crate) struct HeapProfile;

impl Drop for HeapProfile {
    fn drop(&mut self) {
        let profiler = PROFILER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match profiler {
            // dhat writes the file as it drops and says where on stderr.
            Some(profiler) => drop(profiler),
            None => eprintln!("steward: the heap profiler never started (the run ended first)"),
        }
    }
}

/// Starts the profiler after `STEWARD_DHAT_AFTER_S` seconds on a thread
/// of its own, writing to `STEWARD_DHAT_FILE` (default `dhat-heap.json`).
pub(crate) fn start_from_env() -> HeapProfile {
    let file = std::env::var_os("STEWARD_DHAT_FILE").unwrap_or_else(|| "dhat-heap.json".into());
    let after = std::env::var("STEWARD_DHAT_AFTER_S")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::ZERO, Duration::from_secs_f64);
    let spawned = std::thread::Builder::new()
        .name("heap-profile".into())
        .spawn(move || {
            std::thread::sleep(after);
            let profiler = dhat::Profiler::builder().file_name(file).build();
            tracing::info!(?after, "heap profiler started");
            *PROFILER
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(profiler);
        });
    if let Err(error) = spawned {
        eprintln!("steward: the heap profiler cannot start: {error}");
    }
    HeapProfile
}
