//! Integration tests of the steward facade.
