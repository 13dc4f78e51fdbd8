//! The limits both backends hold every write to, so that they refuse the
//! same things with the same errors: key and value size, nesting, and the
//! key cap's refusal.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::json;

/// Checks a key and value against the limits and encodes the value as
/// compact JSON (shared by both backends, so they refuse the same things).
pub(crate) fn encode_value(
    max_key_bytes: usize,
    max_value_bytes: usize,
    key: &str,
    value: &Value,
) -> Result<Vec<u8>> {
    if key.len() > max_key_bytes {
        return Err(Error::KeyTooLarge {
            len: key.len(),
            limit: max_key_bytes,
            prefix: key.chars().take(32).collect(),
        });
    }
    // One level is the snapshot's own top-level object.
    if json::deeper_than(value, json::MAX_DEPTH - 1) {
        return Err(Error::ValueTooDeep {
            key: key.to_string(),
            limit: json::MAX_DEPTH - 1,
        });
    }
    let bytes = serde_json::to_vec(value).map_err(|source| Error::Json {
        key: key.to_string(),
        source,
    })?;
    if bytes.len() > max_value_bytes {
        return Err(Error::ValueTooLarge {
            key: key.to_string(),
            len: bytes.len(),
            limit: max_value_bytes,
        });
    }
    Ok(bytes)
}

/// The error a refused write gets.
pub(crate) fn refusal(location: String, key: &str, limit: usize) -> Error {
    Error::TooManyKeys {
        location,
        key: key.to_string(),
        limit,
    }
}
