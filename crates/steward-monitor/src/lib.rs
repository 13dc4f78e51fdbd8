//! Process memory pressure levels and cleanup handlers.
//!
//! This crate is under construction.
//!
//! ```
//! assert_eq!(steward_monitor::NAME, "steward-monitor");
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

/// The crate's name, until the real API lands.
pub const NAME: &str = "steward-monitor";
