//! Integration tests of steward-pool.
