//! Fixed workloads for the fault-injection and power-loss tests, and the
//! model their outcome is checked against: every acknowledged write is
//! there, an unacknowledged one is either wholly there (only when its
//! outcome was reported unknown) or not at all.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value, json};
use steward_store::{Error, ManualClock, Store};

/// One step of a workload.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Upsert(&'static str, Value),
    Create(&'static str, Value),
    Update(&'static str, Value),
    /// Upsert with a TTL of this many seconds.
    Ttl(&'static str, Value, u64),
    Delete(&'static str),
    Reset,
    Compact,
    Sweep,
    /// Moves the clock on by this many seconds.
    Advance(u64),
    /// Drops the store (no close) and opens it again.
    Reopen,
    /// Closes the store (compacts, removes the log) and opens it again.
    CloseReopen,
    /// Power cut inside the next step, right after the `n`th directory
    /// fsync from now, then reboot and reopen (the power-loss test's own
    /// environment decides what a cut means; elsewhere it is `Reopen`).
    CutAfterDirSync(usize),
    /// The next directory fsync fails (EIO) and does nothing (only the
    /// power-loss test's simulated disk does this; elsewhere a no-op).
    FailNextDirSync,
}

use Step::*;

/// The workloads: writes, TTL writes (one expiring), deletes, reset,
/// compactions, sweeps, reopen, and a compaction cut after its snapshot
/// rename so the next open rolls it forward.
pub(crate) fn workloads() -> Vec<(&'static str, Vec<Step>)> {
    vec![
        (
            "writes and compactions",
            vec![
                Upsert("a", json!(1)),
                Create("b", json!({"x": [1, 2]})),
                Ttl("t1", json!("rain"), 3600),
                Compact,
                Update("a", json!(11)),
                Delete("b"),
                Ttl("t2", json!("sun"), 5),
                // Same value, now permanent: the sidecar's old expiry must go.
                Upsert("t1", json!("rain")),
                Compact,
                Advance(10),
                Upsert("c", json!("after expiry")),
                Sweep,
                Compact,
                Upsert("d", json!(4)),
                CloseReopen,
                Upsert("e", json!(5)),
            ],
        ),
        (
            "reset and roll-forward",
            vec![
                Upsert("a", json!(1)),
                Ttl("t", json!(2), 3600),
                Compact,
                Upsert("b", json!(2)),
                Reset,
                Upsert("c", json!(3)),
                Ttl("t", json!(3), 3600),
                CutAfterDirSync(1),
                Compact,
                Upsert("d", json!(4)),
                Delete("c"),
                Reopen,
                Upsert("e", json!("x".repeat(700))),
                Compact,
            ],
        ),
        (
            "compaction that changes nothing",
            vec![
                Upsert("a", json!(1)),
                Compact,
                Upsert("z", json!(0)),
                Delete("z"),
                // Fails after staging a snapshot identical to the one in force.
                FailNextDirSync,
                Compact,
                Upsert("b", json!(2)),
                Reset,
                Reset,
                Compact,
                Create("c", json!(3)),
                Reopen,
                Update("c", json!(33)),
            ],
        ),
    ]
}

/// One possible state of the memory: entries in order and expiry times.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct State {
    map: Map<String, Value>,
    expires: HashMap<String, u64>,
}

impl State {
    fn live(&self, key: &str, now: u64) -> bool {
        self.map.contains_key(key) && self.expires.get(key).is_none_or(|&t| now < t)
    }

    /// Sets `key`; an expired entry counts as absent (a re-added key goes last).
    fn set(&mut self, key: &str, value: &Value, now: u64, expires_at: Option<u64>) {
        if !self.live(key, now) {
            self.map.shift_remove(key);
        }
        self.map.insert(key.to_string(), value.clone());
        match expires_at {
            Some(at) => self.expires.insert(key.to_string(), at),
            None => self.expires.remove(key),
        };
    }

    fn apply(&mut self, step: &Step, now: u64) {
        match step {
            Upsert(k, v) => self.set(k, v, now, None),
            Create(k, v) if !self.live(k, now) => self.set(k, v, now, None),
            Update(k, v) if self.live(k, now) => self.set(k, v, now, None),
            Ttl(k, v, secs) => self.set(k, v, now, Some(now + secs * 1000)),
            Delete(k) if self.live(k, now) => {
                self.map.shift_remove(*k);
                self.expires.remove(*k);
            }
            Reset => *self = State::default(),
            _ => {}
        }
    }

    /// What reads show at `now`: live entries in order, with ms left.
    pub(crate) fn visible(&self, now: u64) -> Vec<(String, Value, Option<u64>)> {
        self.map
            .iter()
            .filter(|(k, _)| self.live(k, now))
            .map(|(k, v)| (k.clone(), v.clone(), self.expires.get(k).map(|t| t - now)))
            .collect()
    }
}

/// What a store shows.
pub(crate) fn shown(store: &Store) -> Vec<(String, Value, Option<u64>)> {
    store
        .entries_with_ttl()
        .into_iter()
        .map(|e| (e.key, e.value, e.ttl.map(|d| d.as_millis() as u64)))
        .collect()
}

/// The states the memory may be in: one, or two after a write whose
/// outcome is unknown (each later write then fails: the store is poisoned).
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) states: Vec<State>,
    pub(crate) acked: usize,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            states: vec![State::default()],
            acked: 0,
        }
    }
}

impl Model {
    /// Records a write's result: applied if acknowledged, maybe applied
    /// if its outcome is unknown, not applied if it failed otherwise.
    pub(crate) fn record(&mut self, step: &Step, result: &Result<(), Error>, now: u64) {
        match result {
            Ok(()) => {
                self.acked += 1;
                for s in &mut self.states {
                    s.apply(step, now);
                }
            }
            Err(Error::WriteUnknown { .. }) => {
                let mut applied = self.states.clone();
                for s in &mut applied {
                    s.apply(step, now);
                }
                self.states.extend(applied);
                self.states.dedup();
            }
            Err(_) => {}
        }
    }

    /// Checks what `store` shows against the possible states; the error
    /// says what differs.
    pub(crate) fn check(&self, store: &Store, now: u64) -> Result<(), String> {
        let got = shown(store);
        if self.states.iter().any(|s| s.visible(now) == got) {
            return Ok(());
        }
        let want: Vec<_> = self.states.iter().map(|s| brief(&s.visible(now))).collect();
        Err(format!(
            "store shows {}\n  model allows {}",
            brief(&got),
            want.join(" or ")
        ))
    }
}

/// Entries as `key=value(ttl ms)`, long values cut.
fn brief(entries: &[(String, Value, Option<u64>)]) -> String {
    let shown: Vec<String> = entries
        .iter()
        .map(|(k, v, ttl)| {
            let v: String = v.to_string().chars().take(24).collect();
            match ttl {
                Some(ms) => format!("{k}={v}({ms} ms)"),
                None => format!("{k}={v}"),
            }
        })
        .collect();
    format!("{{{}}}", shown.join(", "))
}

/// Runs a workload step on `store`; `Ok(())` if it was acknowledged.
/// Compaction and sweep results are returned too (they change no model
/// state; a sweep's deletes are of entries already invisible).
pub(crate) fn run_step(store: &Store, clock: &ManualClock, step: &Step) -> Result<(), Error> {
    match step {
        Upsert(k, v) => store.upsert_blocking(k, v.clone()).map(drop),
        Create(k, v) => store.create_blocking(k, v.clone()).map(drop),
        Update(k, v) => store.update_blocking(k, v.clone()).map(drop),
        Ttl(k, v, secs) => store
            .upsert_with_ttl_blocking(k, v.clone(), Duration::from_secs(*secs))
            .map(drop),
        Delete(k) => store.delete_blocking(k).map(drop),
        Reset => store.reset_blocking(),
        Compact => store.compact_blocking().map(drop),
        Sweep => store.sweep_expired_blocking().map(drop),
        Advance(secs) => {
            clock.advance(Duration::from_secs(*secs));
            Ok(())
        }
        Reopen | CloseReopen | CutAfterDirSync(_) | FailNextDirSync => Ok(()),
    }
}

/// The clock every workload starts at.
pub(crate) const START_MS: u64 = 1_700_000_000_000;
