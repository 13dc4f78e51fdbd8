//! Helpers the steward crates' tests share, each with one owner here
//! instead of a copy per crate (a dev-dependency only, never published):
//!
//! - [`child`]: run a test of the current test binary in a child process,
//!   wait for a line it prints, SIGKILL it and start it again;
//! - [`procfs`]: threads, open file descriptors and RSS of this process;
//! - [`prometheus`]: a strict checker of the Prometheus text format;
//! - [`redis_server`]: a real `redis-server` on a free port, killed on drop;
//! - [`sound`]: the sound server check and null devices of a test's own.
//!
//! ```
//! let text = "# TYPE up gauge\nup 1\n";
//! let series = steward_test_support::prometheus::check_exposition(text).unwrap();
//! assert_eq!(series.len(), 1);
//! # #[cfg(target_os = "linux")]
//! assert!(steward_test_support::procfs::threads().unwrap() >= 1);
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod child;
pub mod procfs;
pub mod prometheus;
pub mod redis_server;
pub mod sound;

/// A port on 127.0.0.1 that was free a moment ago (bound, then released),
/// for a server that must come back on the same port after a restart.
///
/// # Errors
/// When no port can be bound on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Lib tests that count threads or file descriptors, or open files or
/// processes, take this lock: under plain `cargo test` they share one
/// process.
#[cfg(test)]
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
