//! The built-in cleanup action: glibc's `malloc_trim(0)`.

/// Whether [`malloc_trim`] does anything on this platform (Linux with glibc).
pub const SUPPORTED: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// Asks glibc to return free heap memory to the OS, in every arena (not only
/// the top of the main heap): free pages inside arenas are released with
/// `madvise(MADV_DONTNEED)`. Returns whether memory was released; always
/// `false` where glibc is not the C library.
///
/// Memory freed by Rust code goes back to glibc's free lists, not the OS; on
/// a long-running process with many mid-sized allocations RSS stays high
/// until this runs.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
#[must_use = "whether memory was released"]
pub fn malloc_trim() -> bool {
    // SAFETY: `malloc_trim` takes a plain integer (the padding to leave at
    // the top of the heap), touches only the allocator's own state under its
    // own locks, and is documented MT-safe by glibc. No pointer crosses the
    // boundary.
    let released = unsafe { libc::malloc_trim(0) };
    released != 0
}

/// Asks the C allocator to return free heap to the OS: a no-op here, glibc
/// is not the C library on this platform.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
#[must_use = "whether memory was released"]
pub fn malloc_trim() -> bool {
    false
}
