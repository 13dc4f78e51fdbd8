//! Audio capture and playback that never leak and never block.
//!
//! This crate is under construction.
//!
//! ```
//! assert_eq!(steward_audio::NAME, "steward-audio");
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

/// The crate's name, until the real API lands.
pub const NAME: &str = "steward-audio";
