//! Cross-crate end-to-end tests for steward live in `tests/e2e/` (one test
//! binary); this library holds their own helper, tested here (the helpers
//! shared with the crates' tests are in `steward-test-support`):
//!
//! - [`wav`]: a speech-like PCM16 WAV file to feed the assistant.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("speech.wav");
//! steward_tests::wav::write_speech(&path, 24_000, 0.1).unwrap();
//! assert!(std::fs::metadata(&path).unwrap().len() > 44);
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod wav;
