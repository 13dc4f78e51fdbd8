//! Expiry times of TTL entries, with an index by time so that counting the
//! expired ones costs nothing per read once counted.

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;

/// Expiry times of TTL entries: key to wall-clock ms since the Unix epoch,
/// plus the same pairs ordered by time. Readers holding a shared lock ask
/// [`expired_count`](Self::expired_count) without walking the entries: the
/// count is kept for the last time asked and moved forward from there.
#[derive(Debug, Default)]
pub(crate) struct Expiries {
    at: HashMap<String, u64>,
    by_time: BTreeSet<(u64, String)>,
    /// How many entries expire at or before `Cursor::now`.
    cursor: Mutex<Cursor>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    /// The time last asked about (`None`: never, or the counts were reset).
    now: Option<u64>,
    /// Entries whose time is at or before `now`.
    expired: usize,
}

impl Cursor {
    fn covers(&self, at: u64) -> bool {
        self.now.is_some_and(|now| at <= now)
    }
}

impl Expiries {
    pub(crate) fn new() -> Self {
        Expiries::default()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&u64> {
        self.at.get(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.at.iter()
    }

    /// Sets `key`'s expiry; returns the one it had.
    pub(crate) fn insert(&mut self, key: String, at: u64) -> Option<u64> {
        let old = self.remove(&key);
        let cursor = self.cursor.get_mut();
        if cursor.covers(at) {
            cursor.expired += 1;
        }
        self.by_time.insert((at, key.clone()));
        self.at.insert(key, at);
        old
    }

    /// Removes `key`'s expiry; returns it.
    pub(crate) fn remove(&mut self, key: &str) -> Option<u64> {
        let (key, at) = self.at.remove_entry(key)?;
        self.by_time.remove(&(at, key));
        let cursor = self.cursor.get_mut();
        if cursor.covers(at) {
            cursor.expired -= 1;
        }
        Some(at)
    }

    pub(crate) fn clear(&mut self) {
        self.at.clear();
        self.by_time.clear();
        *self.cursor.get_mut() = Cursor::default();
    }

    /// How many entries have expired at `now` (their time is `<= now`).
    /// Amortized O(1) while the clock moves forward: only entries whose
    /// time passed since the last call are counted; a clock set back
    /// counts again from the start.
    pub(crate) fn expired_count(&self, now: u64) -> usize {
        if self.at.is_empty() {
            return 0;
        }
        let mut c = self.cursor.lock();
        match c.now {
            Some(last) if last == now => {}
            Some(last) if last < now => {
                c.expired += self.expiring_between(last.saturating_add(1), now);
            }
            _ => c.expired = self.expiring_between(0, now),
        }
        c.now = Some(now);
        c.expired
    }

    /// How many entries expire at a time in `from..=to`.
    fn expiring_between(&self, from: u64, to: u64) -> usize {
        self.by_time
            .range((from, String::new())..)
            .take_while(|(at, _)| *at <= to)
            .count()
    }

    /// The keys expired at `now`, soonest first. O(expired).
    pub(crate) fn expired_keys(&self, now: u64) -> impl Iterator<Item = &str> {
        self.by_time
            .iter()
            .take_while(move |(at, _)| *at <= now)
            .map(|(_, k)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count against a plain filter of the entries, as the clock moves
    /// forward and back and entries come and go.
    #[test]
    fn the_count_follows_the_clock_and_the_entries() {
        let mut e = Expiries::new();
        let plain = |e: &Expiries, now: u64| e.iter().filter(|&(_, &t)| t <= now).count();
        for (i, at) in [5u64, 10, 10, 20, 30].into_iter().enumerate() {
            e.insert(format!("k{i}"), at);
        }
        for now in [0, 5, 9, 10, 25, 7, 40, 40] {
            assert_eq!(e.expired_count(now), plain(&e, now), "now {now}");
        }
        e.insert("k0".into(), 100);
        e.insert("new".into(), 1);
        assert_eq!(e.remove("k3"), Some(20));
        assert_eq!(e.expired_count(40), plain(&e, 40));
        assert_eq!(e.expired_keys(40).count(), plain(&e, 40));
        e.clear();
        assert_eq!(e.expired_count(40), 0);
        e.insert("a".into(), 3);
        assert_eq!(e.expired_count(40), 1);
    }
}
