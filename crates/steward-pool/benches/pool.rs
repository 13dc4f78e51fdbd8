//! Pool benches (placeholder).
fn main() {}
