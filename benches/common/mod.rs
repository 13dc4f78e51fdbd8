//! Shared by the steward-store benches.

use serde_json::Value;

/// Writes `extra` (summary entries that are not criterion timings) as
/// `target/bench/extra/<file>`, where `cargo xtask bench` merges them into
/// the summary.
pub(crate) fn write_extra(file: &str, extra: Vec<Value>) {
    let dir = std::env::var_os("STEWARD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target/bench"))
        .join("extra");
    if std::fs::create_dir_all(&dir).is_ok() {
        let text = serde_json::to_string_pretty(&Value::Array(extra)).unwrap_or_default();
        let _ = std::fs::write(dir.join(file), text);
    }
}
