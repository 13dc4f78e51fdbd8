//! The pool's wait-time histogram on `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use steward::Steward;
use steward::pool::Pool;
use steward_test_support::prometheus::{Series, check_exposition};

use crate::common::Buffers;

/// One series' value, by name and labels.
fn value(series: &Series, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    series.get(&(name.to_owned(), labels)).copied()
}

/// A wired pool whose second checkout waited out its 250 ms timeout (paused
/// time: exactly 250 ms) exports the wait as a Prometheus histogram:
/// cumulative buckets up to `+Inf`, `_sum` in seconds and `_count`, all
/// weighted like the pool's own buckets (the first wait is timed and
/// counts for 8).
#[tokio::test(start_paused = true)]
async fn a_wired_pool_that_waited_exports_its_wait_histogram() {
    let steward = Steward::builder().build().unwrap();
    let pool = Pool::builder(Buffers)
        .name("db")
        .max_size(1)
        .wait_timeout(Some(Duration::from_millis(250)))
        .reaper_interval(None)
        .build()
        .unwrap();
    steward.add_pool(&pool);
    let held = pool.get().await.unwrap();
    assert!(pool.get().await.is_err(), "the second checkout times out");

    let series = check_exposition(&steward.metrics_text()).unwrap();
    let name = "steward_pool_wait_seconds";
    let bucket = format!("{name}_bucket");
    let at = |le: &str| value(&series, &bucket, &[("pool", "db"), ("le", le)]);
    assert_eq!(at("0.1"), Some(0.0), "250 ms is above the 100 ms bound");
    assert_eq!(at("1"), Some(8.0));
    assert_eq!(at("60"), Some(8.0), "buckets are cumulative");
    assert_eq!(at("+Inf"), Some(8.0));
    let count = value(&series, &format!("{name}_count"), &[("pool", "db")]);
    assert_eq!(count, Some(8.0));
    let sum = value(&series, &format!("{name}_sum"), &[("pool", "db")]).unwrap();
    assert!((2.0..=2.1).contains(&sum), "8 waits of 250 ms: {sum}");
    let waits = value(&series, "steward_pool_waits_total", &[("pool", "db")]);
    assert_eq!(waits, Some(1.0));
    drop(held);
    steward.shutdown().await;
}
