//! Watches this process under real memory pressure: allocates 32 MiB at a
//! time until the monitor reports `Critical`, lets a cleanup handler free it
//! all (plus `malloc_trim`), and prints every event as JSON until the level is
//! back to `None`.
//!
//! `cargo run -p steward-monitor --example pressure`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_monitor::{Level, Monitor, MonitorConfig, SystemSource};

const STEP: usize = 32 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut probe = SystemSource::new()?;
    let start = probe.read_memory()?.rss_bytes;
    println!("rss at start: {} MiB", start >> 20);

    // Thresholds in absolute bytes, relative to where we start.
    let mut config = MonitorConfig::default();
    config.interval = Duration::from_millis(100);
    config.cooldown = Duration::from_millis(500);
    config.malloc_trim = true;
    // Byte criteria in place of the default fractions of the limit.
    let thresholds = &mut config.thresholds;
    thresholds.moderate.fraction = None;
    thresholds.moderate.bytes = Some(start + (64 << 20));
    thresholds.critical.fraction = None;
    thresholds.critical.bytes = Some(start + (128 << 20));
    let monitor = Monitor::builder().config(config).build()?;

    let held: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let for_handler = Arc::clone(&held);
    monitor.on(Level::Critical, 0, "drop-ballast", move |_ctx| {
        let held = Arc::clone(&for_handler);
        async move {
            let mut held = held.lock().map_err(|_| "ballast lock poisoned")?;
            let freed = held.iter().map(Vec::len).sum::<usize>();
            held.clear();
            held.shrink_to_fit();
            Ok(freed as u64)
        }
    })?;

    let mut events = monitor.subscribe();
    let mut level = monitor.watch_level();
    while *level.borrow() < Level::Critical {
        if let Ok(mut held) = held.lock() {
            held.push(vec![1u8; STEP]);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    level.wait_for(|l| *l == Level::None).await?;
    while let Ok(event) = events.try_recv() {
        println!("{}", serde_json::to_string(&event)?);
    }
    println!("rss at end: {} MiB", probe.read_memory()?.rss_bytes >> 20);
    println!("{}", serde_json::to_string_pretty(&monitor.stats())?);
    monitor.shutdown().await;
    Ok(())
}
