//! Integration tests of steward-monitor: parsers against sample and real
//! kernel files, the level state machine (property tests), the monitor task
//! with a scripted source, real memory freed under real pressure, and the
//! leak trend (estimator, injected leaks, a real growing heap).

// Tests tweak one or two fields of a default config at a time.
#![allow(clippy::field_reassign_with_default)]

mod config;
mod levels;
mod monitor;
mod parsing;
mod real_memory;
mod system;
mod trend;

/// Tests that assert on this process's RSS take this lock, so that under
/// plain `cargo test` (one process, tests on parallel threads) they do not
/// measure each other's allocations. Poisoning is ignored: a failed test
/// must not fail the others.
pub(crate) fn rss_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
