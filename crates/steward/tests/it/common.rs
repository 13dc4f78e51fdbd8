//! Shared helpers: a real pool manager and configs with low thresholds.

use std::convert::Infallible;
use std::time::Duration;

use steward::StewardConfig;
use steward::monitor::MonitorConfig;
use steward::pool::Manager;

/// Makes 4 KiB buffers: real heap objects.
pub(crate) struct Buffers;

impl Manager for Buffers {
    type Object = Vec<u8>;
    type Error = Infallible;

    async fn create(&self) -> Result<Vec<u8>, Infallible> {
        Ok(vec![7; 4096])
    }
}

/// Thresholds below any real RSS: this process is always at `Moderate`
/// (and at `Critical` too when `critical` is set). Background sampling
/// every `interval`.
pub(crate) fn pressure(critical: bool, interval: Duration) -> StewardConfig {
    let mut monitor = MonitorConfig::default();
    monitor.interval = interval;
    monitor.critical_renotify = Duration::from_millis(1);
    monitor.thresholds.moderate.fraction = None;
    monitor.thresholds.moderate.bytes = Some(1);
    monitor.thresholds.critical.fraction = None;
    monitor.thresholds.critical.bytes = critical.then_some(1);
    let mut config = StewardConfig::default();
    config.monitor = monitor;
    config.stale_after = Duration::ZERO;
    config
}

/// Polls `done` every 20 ms; panics after a generous hang guard.
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
