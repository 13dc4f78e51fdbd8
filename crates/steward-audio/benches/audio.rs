//! Conversion benches (placeholder: the criterion group lands in the next commit).
fn main() {}
