//! A small insertion-ordered map bounded in entries and in bytes, for the
//! conversation's bookkeeping of what the service has yet to answer: a
//! model or a service that opens calls and never finishes them cannot grow
//! it. The oldest entries go first, counted; an entry larger than the
//! byte bound is kept alone.

use std::collections::VecDeque;

#[derive(Debug)]
pub(crate) struct BoundedMap<V> {
    /// (key, value, bytes), oldest first. A linear search: a few hundred
    /// entries at most.
    entries: VecDeque<(String, V, usize)>,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    /// Evicting since the map last had room (one warning per burst).
    overflowing: bool,
}

/// What an insert evicted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evicted {
    /// Entries dropped, oldest first.
    pub(crate) entries: u64,
    /// The first eviction since the map last had room.
    pub(crate) first_in_burst: bool,
}

impl<V> BoundedMap<V> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            max_entries: max_entries.max(1),
            max_bytes,
            bytes: 0,
            overflowing: false,
        }
    }

    /// Inserts (replacing an entry of the same key) an entry of `size`
    /// bytes, evicting the oldest while the bounds are exceeded.
    pub(crate) fn insert(&mut self, key: String, value: V, size: usize) -> Evicted {
        self.remove(&key);
        let mut evicted = Evicted::default();
        while !self.entries.is_empty()
            && (self.entries.len() >= self.max_entries || self.bytes + size > self.max_bytes)
        {
            if let Some((_, _, n)) = self.entries.pop_front() {
                self.bytes -= n;
                evicted.entries += 1;
            }
        }
        self.bytes += size;
        self.entries.push_back((key, value, size));
        if evicted.entries > 0 && !self.overflowing {
            self.overflowing = true;
            evicted.first_in_burst = true;
        }
        evicted
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let at = self.entries.iter().position(|(k, ..)| k == key)?;
        let (_, value, n) = self.entries.remove(at)?;
        self.bytes -= n;
        if self.entries.len() <= self.max_entries / 2 {
            self.overflowing = false;
        }
        Some(value)
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let bytes = &mut self.bytes;
        self.entries.retain(|(_, v, n)| {
            let kept = keep(v);
            if !kept {
                *bytes -= *n;
            }
            kept
        });
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.overflowing = false;
    }

    #[cfg(test)]
    fn keys(&self) -> Vec<&str> {
        self.entries.iter().map(|(k, ..)| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_first_by_count_and_by_bytes() {
        let mut m = BoundedMap::new(3, 100);
        for k in ["a", "b", "c"] {
            assert_eq!(m.insert(k.into(), (), 10), Evicted::default());
        }
        let e = m.insert("d".into(), (), 10);
        assert_eq!((e.entries, e.first_in_burst), (1, true));
        assert_eq!(m.keys(), ["b", "c", "d"]);
        assert!(!m.insert("e".into(), (), 10).first_in_burst);
        // By bytes: 75 more leaves room for one of the 10-byte ones.
        let e = m.insert("big".into(), (), 85);
        assert_eq!(e.entries, 2);
        assert_eq!(m.keys(), ["e", "big"]);
        // Larger than the bound: kept alone.
        m.insert("huge".into(), (), 500);
        assert_eq!(m.keys(), ["huge"]);
        assert_eq!(m.remove("huge"), Some(()));
        assert_eq!(m.bytes, 0);
    }

    #[test]
    fn replacing_a_key_moves_it_last_and_evicts_nothing() {
        let mut m = BoundedMap::new(2, 100);
        m.insert("a".into(), 1, 1);
        m.insert("b".into(), 2, 1);
        assert_eq!(m.insert("a".into(), 3, 1), Evicted::default());
        assert_eq!(m.keys(), ["b", "a"]);
        m.retain(|v| *v != 2);
        assert_eq!((m.keys(), m.bytes), (vec!["a"], 1));
    }
}
