//! The real sampler: the fast path and `sysinfo` describe the same process.

use steward_monitor::{LimitSource, SampleSource, SystemSource};

const MIB: u64 = 1 << 20;

#[test]
fn fast_path_sample_is_consistent() {
    let mut source = SystemSource::new().expect("system source");
    assert!(source.uses_fast_path(), "Linux has /proc");
    assert_eq!(source.name(), "proc");
    let s = source.sample().expect("sample");
    assert!(s.rss_bytes > MIB, "{s:?}");
    assert!(s.rss_bytes <= s.virtual_bytes, "{s:?}");
    assert!(
        s.limit_bytes > 0 && s.limit_bytes <= s.physical_bytes,
        "{s:?}"
    );
    assert!(s.available_bytes.expect("MemAvailable") <= s.physical_bytes);
    assert!(s.unix_ms > 1_600_000_000_000);
    match s.limit_source {
        LimitSource::Cgroup => {
            let limit = s.cgroup.as_ref().and_then(|c| c.limit_bytes);
            assert_eq!(limit, Some(s.limit_bytes));
        }
        LimitSource::Physical => assert_eq!(s.limit_bytes, s.physical_bytes),
    }
    if let Some(psi) = &s.psi {
        assert!((0.0..=100.0).contains(&psi.some.avg10));
    }
    // Both report the cgroup or both don't.
    assert_eq!(source.cgroup_location().is_some(), s.cgroup.is_some());
}

#[test]
fn fast_path_and_sysinfo_agree() {
    let _rss = crate::rss_lock();
    let mut fast = SystemSource::new().expect("fast");
    let mut slow = SystemSource::sysinfo_only().expect("sysinfo");
    assert!(!slow.uses_fast_path());
    let a = fast.sample().expect("fast sample");
    let b = slow.sample().expect("sysinfo sample");
    let c = fast.sample().expect("fast sample");
    // RSS moves as other threads allocate: b must be near the fast readings.
    let (lo, hi) = (a.rss_bytes.min(c.rss_bytes), a.rss_bytes.max(c.rss_bytes));
    assert!(
        b.rss_bytes + 16 * MIB >= lo && b.rss_bytes <= hi + 16 * MIB,
        "fast {lo}..{hi}, sysinfo {}",
        b.rss_bytes
    );
    assert_eq!(a.physical_bytes, b.physical_bytes);
    assert!(
        b.limit_bytes > 0 && b.limit_bytes <= b.physical_bytes,
        "{b:?}"
    );
    if a.limit_source == LimitSource::Physical && b.limit_source == LimitSource::Physical {
        assert_eq!(a.limit_bytes, b.limit_bytes);
    }
    let m = fast.read_memory().expect("statm");
    let n = slow.read_memory().expect("sysinfo");
    assert!(m.virtual_bytes.abs_diff(n.virtual_bytes) < 256 * MIB);
}

#[test]
fn rss_follows_a_real_allocation() {
    let _rss = crate::rss_lock();
    let mut source = SystemSource::new().expect("fast");
    let before = source.read_memory().expect("rss").rss_bytes;
    let block = vec![7u8; 64 << 20];
    let during = source.read_memory().expect("rss").rss_bytes;
    assert!(during >= before + 48 * MIB, "{before} -> {during}");
    drop(std::hint::black_box(block));
}

#[tokio::test]
async fn monitor_runs_on_either_real_source() {
    for source in [
        SystemSource::new().expect("fast"),
        SystemSource::sysinfo_only().expect("sysinfo"),
    ] {
        let name = source.name().to_owned();
        let monitor = steward_monitor::Monitor::builder()
            .source(source)
            .build()
            .expect("build");
        let report = monitor.check_now().await.expect("check");
        assert!(report.sample.rss_bytes > MIB, "{name}: {report:?}");
        assert!(
            report.sample.limit_bytes >= report.sample.rss_bytes,
            "{name}"
        );
        assert_eq!(monitor.last_sample(), Some(report.sample));
        monitor.shutdown().await;
    }
}
