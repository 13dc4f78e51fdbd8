//! What the process holds, read from `/proc/self` on Linux (`None`
//! elsewhere): resident memory, threads and open file descriptors.

/// Resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub(crate) fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// The anonymous part of the resident set (heap, stacks), in bytes
/// (`RssAnon`): where a leak shows. The rest of RSS is mostly code and
/// libraries paged in as new paths run.
pub(crate) fn rss_anon_bytes() -> Option<u64> {
    status_kib("RssAnon:").map(|kib| kib * 1024)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Threads of this process (entries of `/proc/self/task`).
pub(crate) fn threads() -> Option<u64> {
    count_entries("/proc/self/task")
}

/// Open file descriptors (entries of `/proc/self/fd`, less the one used to
/// read the directory).
pub(crate) fn fds() -> Option<u64> {
    count_entries("/proc/self/fd").map(|n| n.saturating_sub(1))
}

fn count_entries(dir: &str) -> Option<u64> {
    let entries = std::fs::read_dir(dir).ok()?;
    Some(entries.filter(Result::is_ok).count() as u64)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn readings_are_plausible_on_linux() {
        let rss = super::rss_bytes().expect("VmRSS");
        assert!(rss > 1024 * 1024, "{rss}");
        let anon = super::rss_anon_bytes().expect("RssAnon");
        assert!(anon > 0 && anon < rss, "{anon} of {rss}");
        assert!(super::threads().expect("threads") >= 1);
        assert!(super::fds().expect("fds") >= 1);
    }
}
