//! The cap on the number of keys ([`StoreConfig::max_keys`](crate::StoreConfig::max_keys)):
//! a write that would create a key beyond it is refused, nothing of it
//! applied. A model that invents a new key per remark must not grow the
//! memory (and the snapshot every compaction rewrites) without end.

use super::commit::WriteOp;

/// The keys of one batch as it is decided: the live keys of the map, plus
/// those earlier writes of the batch created, less those they removed.
pub(super) struct KeyCap {
    limit: usize,
    keys: usize,
}

impl KeyCap {
    /// `stale` counts the map's keys whose TTL ran out (they count as
    /// absent); it is called only when this batch could reach the cap.
    pub(super) fn new(
        limit: usize,
        map_len: usize,
        batch_len: usize,
        stale: impl FnOnce() -> usize,
    ) -> Self {
        // Each write adds at most one key: far enough below the cap, the
        // expired entries need not be counted.
        let keys = if map_len.saturating_add(batch_len) <= limit {
            map_len
        } else {
            map_len.saturating_sub(stale())
        };
        KeyCap { limit, keys }
    }

    /// Whether `w`, deciding on a key that `exists` (live) or not, may go
    /// ahead; `false` refuses it.
    pub(super) fn admits(&self, w: &WriteOp, exists: bool) -> bool {
        !creates(w, exists) || self.keys < self.limit
    }

    /// Follows a write that changed the map.
    pub(super) fn applied(&mut self, w: &WriteOp, exists: bool) {
        match w {
            WriteOp::Reset => self.keys = 0,
            WriteOp::Delete(_) => self.keys = self.keys.saturating_sub(1),
            _ if creates(w, exists) => self.keys += 1,
            _ => {}
        }
    }
}

/// Whether `w` adds a key that is not (live) in the store.
fn creates(w: &WriteOp, exists: bool) -> bool {
    !exists
        && matches!(
            w,
            WriteOp::Create(..) | WriteOp::Upsert(..) | WriteOp::UpsertTtl(..)
        )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn upsert(k: &str) -> WriteOp {
        WriteOp::Upsert(k.into(), Value::Null, b"null".to_vec())
    }

    #[test]
    fn counts_expired_keys_only_near_the_cap() {
        let mut counted = false;
        let cap = KeyCap::new(10, 5, 3, || {
            counted = true;
            0
        });
        assert!(!counted);
        assert!(cap.admits(&upsert("a"), false));
        let cap = KeyCap::new(10, 10, 1, || 2);
        assert_eq!(cap.keys, 8);
    }

    #[test]
    fn refuses_only_new_keys_at_the_cap() {
        let mut cap = KeyCap::new(2, 1, 1, || 0);
        assert!(cap.admits(&upsert("a"), false));
        cap.applied(&upsert("a"), false);
        assert!(!cap.admits(&upsert("b"), false));
        assert!(cap.admits(&upsert("a"), true), "replacing is not creating");
        assert!(cap.admits(&WriteOp::Delete("a".into()), true));
        cap.applied(&WriteOp::Delete("a".into()), true);
        assert!(cap.admits(&upsert("b"), false));
        cap.applied(&WriteOp::Reset, true);
        assert_eq!(cap.keys, 0);
    }
}
