//! Parsers against sample contents (cgroup v1, v2, hybrid, none, namespaced)
//! and against the real files of this machine.

use std::path::{Path, PathBuf};

use steward_monitor::parse::{self, CgroupVersion};

const MOUNTINFO_V2: &str = "\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
25 22 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
29 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

const CGROUP_V2: &str = "0::/user.slice/user-1000.slice/session-2.scope\n";

/// A hybrid machine: v1 controllers (memory among them) plus an empty unified tree.
const MOUNTINFO_HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const CGROUP_HYBRID: &str = "\
9:name=systemd:/
4:memory:/process_api/027ff2a9
1:cpu:/
0::/
";

#[test]
fn v2_location() {
    let loc = parse::locate_cgroup(CGROUP_V2, MOUNTINFO_V2).expect("v2 found");
    assert_eq!(loc.version, CgroupVersion::V2);
    assert_eq!(
        loc.dir,
        Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope")
    );
    assert_eq!(loc.limit_file(), "memory.max");
    assert_eq!(loc.usage_file(), "memory.current");
    let dirs = loc.limit_dirs();
    assert_eq!(dirs.len(), 4, "{dirs:?}");
    assert_eq!(
        dirs.last().map(PathBuf::as_path),
        Some(Path::new("/sys/fs/cgroup"))
    );
}

#[test]
fn v1_memory_wins_on_hybrid() {
    let loc = parse::locate_cgroup(CGROUP_HYBRID, MOUNTINFO_HYBRID).expect("v1 found");
    assert_eq!(loc.version, CgroupVersion::V1);
    assert_eq!(
        loc.dir,
        Path::new("/sys/fs/cgroup/memory/process_api/027ff2a9")
    );
    assert_eq!(loc.mount_point, Path::new("/sys/fs/cgroup/memory"));
    assert_eq!(loc.limit_file(), "memory.limit_in_bytes");
}

#[test]
fn no_cgroup_at_all() {
    assert_eq!(parse::locate_cgroup("", ""), None);
    // In a cgroup but nothing mounted (a minimal container).
    assert_eq!(
        parse::locate_cgroup(CGROUP_V2, "22 1 259:1 / / rw - ext4 /dev/root rw\n"),
        None
    );
    // v1 entries without a memory controller, and no unified entry.
    assert_eq!(parse::locate_cgroup("1:cpu:/\n", MOUNTINFO_HYBRID), None);
}

#[test]
fn namespaced_mount_root_is_stripped() {
    // Inside a container: the mount shows /docker/abc at /sys/fs/cgroup/memory.
    let mountinfo = "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
    let inside = parse::locate_cgroup("4:memory:/docker/abc\n", mountinfo).expect("found");
    assert_eq!(inside.dir, Path::new("/sys/fs/cgroup/memory"));
    let nested = parse::locate_cgroup("4:memory:/docker/abc/worker\n", mountinfo).expect("found");
    assert_eq!(nested.dir, Path::new("/sys/fs/cgroup/memory/worker"));
    // A sibling that merely shares the prefix is not inside the mount.
    let sibling = parse::locate_cgroup("4:memory:/docker/abcdef\n", mountinfo).expect("found");
    assert_eq!(sibling.dir, Path::new("/sys/fs/cgroup/memory"));
}

#[test]
fn mountinfo_octal_escapes() {
    let text = "29 25 0:26 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n";
    let mounts = parse::mountinfo_cgroups(text);
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].mount_point, Path::new("/mnt/with space"));
    // Malformed lines are skipped, not fatal.
    assert!(parse::mountinfo_cgroups("garbage\n1 2 3 - cgroup2\n\\\\\n").len() <= 1);
}

#[test]
fn limits_and_bytes() {
    assert_eq!(parse::cgroup_limit("max"), Some(None));
    assert_eq!(parse::cgroup_limit("9223372036854771712"), Some(None));
    assert_eq!(parse::cgroup_limit("2147483648\n"), Some(Some(2 << 30)));
    assert_eq!(parse::cgroup_limit(""), None);
    assert_eq!(parse::cgroup_limit("-1"), None);
    assert_eq!(parse::bytes("12345\n"), Some(12345));
    assert_eq!(parse::bytes("x"), None);
}

#[test]
fn psi_contents() {
    let text = "some avg10=12.34 avg60=5.00 avg300=1.25 total=987654\n\
                full avg10=3.21 avg60=1.00 avg300=0.50 total=12345\n";
    let psi = parse::psi(text).expect("parsed");
    assert_eq!(psi.some.avg10, 12.34);
    assert_eq!(psi.some.avg300, 1.25);
    assert_eq!(psi.some.total_us, 987_654);
    let full = psi.full.expect("full line");
    assert_eq!(full.avg60, 1.0);
    // Old kernels have no `full` line for cpu-style files.
    let only_some = parse::psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").expect("some");
    assert!(only_some.full.is_none());
    // Broken contents.
    assert!(parse::psi("").is_none());
    assert!(parse::psi("some avg10=abc avg60=0 avg300=0 total=0\n").is_none());
    assert!(parse::psi("some avg10=150.0 avg60=0 avg300=0 total=0\n").is_none());
}

#[test]
fn meminfo_statm_auxv() {
    let m =
        parse::meminfo("MemTotal:       24684220 kB\nMemFree: 1 kB\nMemAvailable:   24272388 kB\n");
    assert_eq!(m.total_bytes, Some(24_684_220 * 1024));
    assert_eq!(m.available_bytes, Some(24_272_388 * 1024));
    assert_eq!(parse::meminfo("MemTotal: lots kB\n").total_bytes, None);
    let statm = parse::statm("1 2").expect("two fields are enough");
    assert_eq!(
        (statm.size_pages, statm.resident_pages, statm.shared_pages),
        (1, 2, None)
    );
    let full = parse::statm("100 50 20 1 0 40 0\n").expect("statm");
    assert_eq!(full.anon_pages(), Some(30));
    // More shared than resident cannot happen, and does not underflow.
    assert_eq!(parse::statm("1 2 9").and_then(|s| s.anon_pages()), Some(0));
    assert_eq!(parse::statm("1 2 x").and_then(|s| s.anon_pages()), None);
    assert_eq!(parse::statm("1"), None);
    let word = std::mem::size_of::<usize>();
    let mut auxv = Vec::new();
    for (k, v) in [(33usize, 0xdead_usize), (6, 16384), (0, 0)] {
        auxv.extend_from_slice(&k.to_ne_bytes());
        auxv.extend_from_slice(&v.to_ne_bytes());
    }
    assert_eq!(parse::auxv_page_size(&auxv), Some(16384));
    assert_eq!(parse::auxv_page_size(&auxv[..2 * word]), None);
    assert_eq!(parse::auxv_page_size(&[]), None);
}

/// Writes a file, creating its folder.
fn put(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[test]
fn v2_tree_on_disk_takes_the_smallest_ancestor_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("cg");
    put(&root.join("app/memory.max"), "1048576000\n");
    put(&root.join("app/worker/memory.max"), "max\n");
    put(&root.join("app/worker/memory.current"), "123456\n");
    let mountinfo = format!(
        "29 25 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw\n",
        root.display()
    );
    let loc = parse::locate_cgroup("0::/app/worker\n", &mountinfo).expect("found");
    assert_eq!(loc.dir, root.join("app/worker"));
    let mem = steward_monitor::read_cgroup_memory(&loc).expect("readable");
    assert_eq!(mem.version, CgroupVersion::V2);
    assert_eq!(mem.limit_bytes, Some(1_048_576_000));
    assert_eq!(mem.usage_bytes, Some(123_456));
}

#[test]
fn v1_tree_on_disk_unlimited_and_limited() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("memory");
    put(&root.join("memory.limit_in_bytes"), "9223372036854771712\n");
    put(&root.join("docker/x/memory.limit_in_bytes"), "536870912\n");
    put(&root.join("docker/x/memory.usage_in_bytes"), "4096\n");
    put(
        &root.join("free/memory.limit_in_bytes"),
        "9223372036854771712\n",
    );
    let mountinfo = format!(
        "35 31 0:32 / {} rw - cgroup cgroup rw,memory\n",
        root.display()
    );
    let loc = parse::locate_cgroup("4:memory:/docker/x\n", &mountinfo).expect("found");
    let mem = steward_monitor::read_cgroup_memory(&loc).expect("readable");
    assert_eq!(mem.limit_bytes, Some(512 << 20));
    assert_eq!(mem.usage_bytes, Some(4096));
    let loc = parse::locate_cgroup("4:memory:/free\n", &mountinfo).expect("found");
    let mem = steward_monitor::read_cgroup_memory(&loc).expect("readable");
    assert_eq!(mem.limit_bytes, None, "unlimited all the way up");
    assert_eq!(mem.usage_bytes, None, "no usage file there");
    // A v2 tree without the memory controller has no memory.max: no cgroup.
    let empty = tmp.path().join("unified");
    put(&empty.join("app/cgroup.procs"), "");
    let mountinfo = format!("41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n", empty.display());
    let loc = parse::locate_cgroup("0::/app\n", &mountinfo).expect("found");
    assert!(steward_monitor::read_cgroup_memory(&loc).is_none());
}

#[test]
fn real_files_of_this_machine() {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!parse::proc_cgroup(&cgroup).is_empty(), "{cgroup}");
    if let Some(loc) = parse::locate_cgroup(&cgroup, &mountinfo) {
        assert!(loc.dir.starts_with(&loc.mount_point), "{loc:?}");
        assert!(loc.dir.is_dir(), "{loc:?} does not exist");
        if let Some(mem) = steward_monitor::read_cgroup_memory(&loc) {
            // The leaf's own limit is never below the smallest one found.
            let leaf = std::fs::read_to_string(loc.dir.join(loc.limit_file()))
                .ok()
                .and_then(|t| parse::cgroup_limit(&t));
            if let (Some(Some(leaf)), Some(min)) = (leaf, mem.limit_bytes) {
                assert!(min <= leaf);
            }
        }
    }
    let meminfo = parse::meminfo(&std::fs::read_to_string("/proc/meminfo").expect("meminfo"));
    let total = meminfo.total_bytes.expect("MemTotal");
    assert!(total > 64 << 20);
    assert!(meminfo.available_bytes.expect("MemAvailable") <= total);
    if let Ok(text) = std::fs::read_to_string("/proc/pressure/memory") {
        let psi = parse::psi(&text).expect("the kernel's PSI format parses");
        assert!((0.0..=100.0).contains(&psi.some.avg10));
    }
    // Page size from auxv, checked against VmRSS in /proc/self/status.
    let page =
        parse::auxv_page_size(&std::fs::read("/proc/self/auxv").expect("auxv")).expect("AT_PAGESZ");
    assert!(page >= 4096 && page.is_power_of_two());
    let statm = parse::statm(&std::fs::read_to_string("/proc/self/statm").expect("statm"))
        .expect("statm parses");
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let vm_rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    let from_statm = statm.resident_pages * page;
    let from_status = vm_rss_kib * 1024;
    // Two reads a moment apart in a process with other threads: close, not equal.
    let diff = from_statm.abs_diff(from_status);
    assert!(
        diff < from_status / 4 + (8 << 20),
        "{from_statm} vs {from_status}"
    );
}

mod props {
    use proptest::prelude::*;
    use steward_monitor::parse;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
        ))]

        /// No parser panics on any text, and what they return is in range.
        #[test]
        fn prop_parsers_take_any_text(text in "(?s).{0,300}", bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse::statm(&text);
            let _ = parse::meminfo(&text);
            let _ = parse::bytes(&text);
            if let Some(Some(limit)) = parse::cgroup_limit(&text) {
                prop_assert!(limit < 1 << 60);
            }
            if let Some(psi) = parse::psi(&text) {
                prop_assert!((0.0..=100.0).contains(&psi.some.avg10));
            }
            for e in parse::proc_cgroup(&text) {
                prop_assert!(e.path.starts_with('/'));
            }
            let _ = parse::mountinfo_cgroups(&text);
            let _ = parse::locate_cgroup(&text, &text);
            if let Some(page) = parse::auxv_page_size(&bytes) {
                prop_assert!(page.is_power_of_two());
            }
        }

        /// PSI text written from numbers parses back to the same numbers.
        #[test]
        fn prop_psi_round_trip(
            some in (0u32..10_000, 0u32..10_000, 0u32..10_000, any::<u64>()),
            full in prop::option::of((0u32..10_000, 0u32..10_000, 0u32..10_000, any::<u64>())),
        ) {
            let line = |kind: &str, (a, b, c, t): (u32, u32, u32, u64)| {
                format!(
                    "{kind} avg10={}.{:02} avg60={}.{:02} avg300={}.{:02} total={t}\n",
                    a / 100, a % 100, b / 100, b % 100, c / 100, c % 100
                )
            };
            let mut text = line("some", some);
            if let Some(f) = full {
                text.push_str(&line("full", f));
            }
            let psi = parse::psi(&text).expect("well-formed");
            let close = |x: f64, hundredths: u32| (x - f64::from(hundredths) / 100.0).abs() < 1e-9;
            prop_assert!(close(psi.some.avg10, some.0) && close(psi.some.avg60, some.1) && close(psi.some.avg300, some.2));
            prop_assert_eq!(psi.some.total_us, some.3);
            prop_assert_eq!(psi.full.is_some(), full.is_some());
            if let (Some(p), Some(f)) = (psi.full, full) {
                prop_assert!(close(p.avg10, f.0));
                prop_assert_eq!(p.total_us, f.3);
            }
        }
    }
}
