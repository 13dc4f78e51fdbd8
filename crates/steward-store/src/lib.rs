//! Crash-safe persistent memory for a realtime assistant.
//!
//! This crate is under construction.
//!
//! ```
//! assert_eq!(steward_store::NAME, "steward-store");
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

/// The crate's name, until the real API lands.
pub const NAME: &str = "steward-store";
