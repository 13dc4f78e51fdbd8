//! The heap profile of `cargo xtask soak --heap` (feature `dhat-heap`,
//! never in default builds): dhat is the global allocator, and the profiler
//! starts only once the warm-up is over and stops (writing its profile)
//! just before the run ends, before anything is closed: what is live then
//! was allocated after the warm-up and not freed while the run went on.
//! That is the growth, by allocation site; the task runner lists it.
//! (Written at exit instead, the profile would miss whatever the run holds
//! until its teardown, a growing buffer of the run's own included.)
//!
//! dhat rather than jemalloc's profiling: pure Rust (no C build, no `jeprof`
//! and its Perl to read the dumps), its JSON is read by the task runner
//! with the JSON parser it has, and it names allocation sites with Rust
//! frames. Its cost (a backtrace per allocation) is paid only after the
//! warm-up. Blocks allocated before the profiler started are not seen,
//! also when they are freed later.
//!
//! Set by the task runner: `STEWARD_DHAT_FILE` (where the profile goes),
//! `STEWARD_DHAT_AFTER_S` (seconds after start to begin; default 0) and
//! `STEWARD_DHAT_UNTIL_S` (seconds after start to stop and write; default:
//! at exit).

use std::sync::Mutex;
use std::time::Duration;

/// The profiler's state; running, it is written when taken and dropped.
static PROFILER: Mutex<State> = Mutex::new(State::NotStarted);

enum State {
    NotStarted,
    Running(dhat::Profiler),
    Written,
}

/// Stops the profiler if it runs, which writes its profile; false if it
/// never started.
fn write() -> bool {
    let mut state = PROFILER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // dhat writes the file as it drops and says where on stderr.
    match std::mem::replace(&mut *state, State::Written) {
        State::NotStarted => {
            *state = State::NotStarted;
            false
        }
        State::Running(profiler) => {
            drop(profiler);
            true
        }
        State::Written => true,
    }
}

/// Writes the profile when dropped (at the end of `main`).
pub(crate) struct HeapProfile;

impl Drop for HeapProfile {
    fn drop(&mut self) {
        if !write() {
            eprintln!("steward: the heap profiler never started (the run ended first)");
        }
    }
}

/// Seconds from the environment variable `name`, if set to a number.
fn seconds(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// Starts the profiler after `STEWARD_DHAT_AFTER_S` seconds on a thread
/// of its own, writing to `STEWARD_DHAT_FILE` (default `dhat-heap.json`)
/// at `STEWARD_DHAT_UNTIL_S` or at exit.
pub(crate) fn start_from_env() -> HeapProfile {
    let file = std::env::var_os("STEWARD_DHAT_FILE").unwrap_or_else(|| "dhat-heap.json".into());
    let after = seconds("STEWARD_DHAT_AFTER_S").unwrap_or(Duration::ZERO);
    let until = seconds("STEWARD_DHAT_UNTIL_S");
    let spawned = std::thread::Builder::new()
        .name("heap-profile".into())
        .spawn(move || {
            std::thread::sleep(after);
            let profiler = dhat::Profiler::builder().file_name(file).build();
            tracing::info!(?after, "heap profiler started");
            *PROFILER
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = State::Running(profiler);
            let Some(until) = until else { return };
            std::thread::sleep(until.saturating_sub(after));
            write();
            tracing::info!(?until, "heap profile written");
        });
    if let Err(error) = spawned {
        eprintln!("steward: the heap profiler cannot start: {error}");
    }
    HeapProfile
}
