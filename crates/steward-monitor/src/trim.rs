//! The built-in cleanup action: glibc's `malloc_trim(0)`; and what the
//! allocator holds (`mallinfo2`), which tells a leak (bytes in use grow)
//! from the allocator keeping freed memory (free bytes grow).

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

/// What glibc's allocator holds over all its arenas, from `mallinfo2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct MallocInfo {
    /// Bytes allocated and not yet freed (`uordblks` + `hblkhd`: in the
    /// arenas and in chunks of their own mapping): the program's heap.
    pub in_use_bytes: u64,
    /// Bytes freed but kept by the allocator in its arenas (`fordblks`), not
    /// returned to the OS; resident where they were touched, until reused or
    /// trimmed ([`malloc_trim`]).
    pub free_bytes: u64,
}

/// What glibc's allocator holds now (`mallinfo2`: walks every arena's free
/// lists under their locks, so sample it no more often than a monitor
/// polls); `None` where glibc is not the C library.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
#[must_use]
pub fn malloc_info() -> Option<MallocInfo> {
    // SAFETY: `mallinfo2` takes nothing and returns a plain struct of
    // integers by value; it reads the allocator's state under its own locks
    // (glibc documents it MT-safe). No pointer crosses the boundary.
    let info = unsafe { libc::mallinfo2() };
    let bytes = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Some(MallocInfo {
        in_use_bytes: bytes(info.uordblks).saturating_add(bytes(info.hblkhd)),
        free_bytes: bytes(info.fordblks),
    })
}

/// What the C allocator holds: unknown here, glibc is not the C library on
/// this platform.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
#[must_use]
pub fn malloc_info() -> Option<MallocInfo> {
    None
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    const BLOCK: usize = 64 << 20;
    const SLACK: u64 = 8 << 20;

    /// 64 MiB held show in use; freed, they leave the in-use count (glibc
    /// keeps or returns them, both fine). Large against what the tests
    /// running beside it allocate and free meanwhile.
    #[test]
    fn malloc_info_sees_a_live_block() {
        let before = super::malloc_info().expect("glibc");
        let block = std::hint::black_box(vec![0_u8; BLOCK]);
        let during = super::malloc_info().expect("glibc");
        assert!(
            during.in_use_bytes >= before.in_use_bytes + BLOCK as u64 - SLACK,
            "{before:?} -> {during:?}"
        );
        drop(block);
        let after = super::malloc_info().expect("glibc");
        assert!(
            after.in_use_bytes + BLOCK as u64 - SLACK <= during.in_use_bytes,
            "{during:?} -> {after:?}"
        );
    }
}
