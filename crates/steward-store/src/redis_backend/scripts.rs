//! The namespace's key names and the Lua scripts every read and write runs
//! (each script in its own `.lua` file beside this one).

use ::redis::Script;

/// Redis key names of one namespace.
pub(super) struct Keys {
    pub(super) order: String,
    pub(super) seq: String,
    pub(super) value_prefix: String,
    pub(super) op_prefix: String,
    pub(super) channel: String,
    /// The server's own channel for keys that expired in our database
    /// (sent only when its `notify-keyspace-events` includes `Ex`).
    pub(super) expired: String,
}

impl Keys {
    pub(super) fn new(ns: &str, db: u32) -> Keys {
        let base = format!("steward:{{{ns}}}:");
        Keys {
            order: format!("{base}order"),
            seq: format!("{base}seq"),
            value_prefix: format!("{base}v:"),
            op_prefix: format!("{base}op:"),
            channel: format!("{base}changes"),
            expired: format!("__keyevent@{db}__:expired"),
        }
    }

    pub(super) fn value(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.value_prefix.len() + key.len());
        k.extend_from_slice(self.value_prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }
}

/// Shared by both scripts. `note` publishes one change as
/// `<op><key length>:<key><value json>`; `vanished` drops an order entry
/// whose value key expired and publishes that once.
pub(super) const PRELUDE: &str = include_str!("scripts/prelude.lua");

/// Writes: a batch of one or more, applied in order. KEYS: order, seq,
/// record key, then each write's value key. ARGV: channel, value prefix,
/// record ms (0: no record), batch number, most keys (a create beyond it
/// fails with the `TOO_MANY_KEYS` refusal), then per write: mode (c create,
/// u update, s upsert, d delete, r reset), key, value JSON, ttl ms (0:
/// none). Returns one answer per write: 0 unchanged, 1 replaced / deleted /
/// reset, 2 added, or `E<message>` for a write the server refused (each
/// write runs under `pcall`, so one refusal does not stop the others).
///
/// The record is read on every send, the first included: a first send
/// delayed in the network may run after its resend, and must then answer
/// from the record (`<number>:<answers, comma-separated, -1 refused>`, a
/// string reply) rather than apply again. An upsert learns whether the key
/// existed from its own `SET ... GET`: a batch costs the record's GET and
/// SET, and each upsert of an existing key its SET and PUBLISH.
pub(super) const WRITE: &str = include_str!("scripts/write.lua");

/// Reads. KEYS: order, value key. ARGV: channel, value prefix, mode (g get,
/// e entries, t entries with their PTTL, k keys, n count, s sweep), key.
/// Entries whose value expired are dropped from the order index on the way
/// (and published once).
pub(super) const READ: &str = include_str!("scripts/read.lua");

pub(super) static WRITE_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&format!("{PRELUDE}{WRITE}")));
pub(super) static READ_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&format!("{PRELUDE}{READ}")));
