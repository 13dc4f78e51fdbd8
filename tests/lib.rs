//! Cross-crate end-to-end tests for steward live in `tests/e2e/`; this
//! library holds their shared helpers.
//!
//! ```
//! assert!(steward_tests::facade_has_store());
//! ```

/// Whether the facade was built with the store (it always is here).
pub fn facade_has_store() -> bool {
    steward::store::NAME == "steward-store"
}
