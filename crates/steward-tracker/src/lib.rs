//! Live resources with RAII handles, totals, budgets and leak reports.
//!
//! This crate is under construction.
//!
//! ```
//! assert_eq!(steward_tracker::NAME, "steward-tracker");
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

/// The crate's name, until the real API lands.
pub const NAME: &str = "steward-tracker";
