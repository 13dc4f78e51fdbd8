//! This process's threads, open file descriptors and resident memory, read
//! from `/proc/self` (Linux; `None` elsewhere).

use std::path::Path;

fn count_entries(dir: &str) -> Option<usize> {
    Some(std::fs::read_dir(Path::new(dir)).ok()?.count())
}

/// Threads of this process (`/proc/self/task`).
pub fn threads() -> Option<usize> {
    count_entries("/proc/self/task")
}

/// Open file descriptors of this process (`/proc/self/fd`; the directory
/// handle used to list it is counted too, consistently every time).
pub fn fds() -> Option<usize> {
    count_entries("/proc/self/fd")
}

/// Open file descriptors with what they point to (for failure messages);
/// sockets with their `/proc/net` line (protocol, addresses, state).
pub fn fd_targets() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let sockets = socket_lines();
    let mut out: Vec<String> = dir
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            let detail = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|inode| sockets.iter().find(|(i, _)| i == inode))
                .map(|(_, line)| format!(" ({line})"))
                .unwrap_or_default();
            format!("{} -> {target}{detail}", e.file_name().to_string_lossy())
        })
        .collect();
    out.sort();
    out
}

/// `(inode, "proto: line")` of every socket in `/proc/self/net`.
fn socket_lines() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (proto, inode_col) in [
        ("tcp", 9),
        ("tcp6", 9),
        ("udp", 9),
        ("udp6", 9),
        ("unix", 6),
    ] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/self/net/{proto}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if let Some(inode) = cols.get(inode_col) {
                out.push(((*inode).to_owned(), format!("{proto}: {}", cols.join(" "))));
            }
        }
    }
    out
}

/// Thread names of this process (for failure messages).
pub fn thread_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .flatten()
        .map(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".into())
        })
        .collect();
    out.sort();
    out
}

/// Resident set size in bytes (`VmRSS` of `/proc/self/status`, so no page
/// size is assumed).
pub fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// The resident set split by kind, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssParts {
    /// Anonymous memory: heap, thread stacks, anonymous mappings. What a
    /// leak grows.
    pub anon: u64,
    /// File-backed pages: the binary's and libraries' code and data, paged
    /// in as code paths run for the first time.
    pub file: u64,
    /// Shared memory (e.g. a sound server's shared-memory pools).
    pub shmem: u64,
}

/// `RssAnon`, `RssFile` and `RssShmem` of `/proc/self/status`.
pub fn rss_parts() -> Option<RssParts> {
    Some(RssParts {
        anon: status_kib("RssAnon:")? * 1024,
        file: status_kib("RssFile:")? * 1024,
        shmem: status_kib("RssShmem:")? * 1024,
    })
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Alone in a child process: no other test's threads or files come
    /// and go while it counts.
    #[test]
    fn counts_follow_real_threads_files_and_memory() {
        let _serial = crate::serial();
        crate::child::run_child("procfs::tests::helper_counts", &[]).unwrap();
    }

    #[test]
    #[ignore = "helper: run in a child process by the test above"]
    fn helper_counts() {
        if !crate::child::is_child() {
            return;
        }
        let threads_before = threads().unwrap();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            up_tx.send(()).unwrap();
            stop_rx.recv().ok();
        });
        up_rx.recv().unwrap();
        assert!(threads().unwrap() > threads_before);
        stop_tx.send(()).unwrap();
        t.join().unwrap();

        let fds_before = fds().unwrap();
        let file = tempfile::tempfile().unwrap();
        assert_eq!(fds().unwrap(), fds_before + 1);
        drop(file);
        assert_eq!(fds().unwrap(), fds_before);
        assert!(!fd_targets().is_empty());
        assert!(!thread_names().is_empty());

        let rss_before = rss_bytes().unwrap();
        let anon_before = rss_parts().unwrap().anon;
        let big = vec![1_u8; 64 << 20];
        let rss_after = rss_bytes().unwrap();
        let parts = rss_parts().unwrap();
        assert!(
            rss_after >= rss_before + (32 << 20),
            "{rss_before} -> {rss_after}"
        );
        assert!(parts.anon >= anon_before + (32 << 20), "{parts:?}");
        assert!(parts.anon + parts.file + parts.shmem >= rss_after - (1 << 20));
        drop(big);
    }
}
