//! The append-only log beside the snapshot.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! header (32 bytes):  magic "STWDLOG1" | flags u32 | snapshot_len u64 |
//!                     snapshot_crc u32 | reserved u32 | header_crc u32
//! frame (one per group-commit batch):
//!                     payload_len u32 | len_check u32 | payload_crc u32 | payload
//! payload:            ops, each: 1 key value (set) | 2 key (delete) | 3 (reset),
//!                     key and value as u32 length + bytes (value: compact JSON)
//! ```
//!
//! The file may be longer than its frames: it is preallocated with zeros so
//! that an fsync after an append need not update the file size. Zeros from
//! some offset to the end are that unused space, not damage.
//!
//! The header names the snapshot the log extends (length and CRC-32 of its
//! bytes), so a snapshot rewritten by someone else is detected. A frame is
//! one batch and is applied all or nothing. `len_check` guards the length
//! itself, so a damaged length in the middle of the log is reported instead
//! of being mistaken for a torn tail.

use serde_json::Value;

use crate::json;

pub(crate) const MAGIC: &[u8; 8] = b"STWDLOG1";
pub(crate) const HEADER_LEN: usize = 32;
pub(crate) const FRAME_HEADER_LEN: usize = 12;
const LEN_CHECK_KEY: u32 = 0x5354_5744;
const FLAG_SNAPSHOT_PRESENT: u32 = 1;

const OP_SET: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_RESET: u8 = 3;
/// `4 key expires_at_ms:u64`: the key (just set) expires at that wall-clock
/// time (ms since the Unix epoch). A later set of the key without it makes
/// the key permanent again.
const OP_EXPIRE: u8 = 4;

/// Identity of the snapshot a log extends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotId {
    pub(crate) present: bool,
    pub(crate) len: u64,
    pub(crate) crc: u32,
}

impl SnapshotId {
    pub(crate) fn of(bytes: Option<&[u8]>) -> Self {
        match bytes {
            None => SnapshotId {
                present: false,
                len: 0,
                crc: 0,
            },
            Some(b) => SnapshotId {
                present: true,
                len: b.len() as u64,
                crc: crc32fast::hash(b),
            },
        }
    }
}

pub(crate) fn encode_header(id: SnapshotId) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    let flags = if id.present { FLAG_SNAPSHOT_PRESENT } else { 0 };
    h[8..12].copy_from_slice(&flags.to_le_bytes());
    h[12..20].copy_from_slice(&id.len.to_le_bytes());
    h[20..24].copy_from_slice(&id.crc.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// One logged operation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Set(String, Value),
    Delete(String),
    Reset,
    Expire(String, u64),
}

/// Appends one `set` op with an already encoded value.
pub(crate) fn encode_set(buf: &mut Vec<u8>, key: &str, value_json: &[u8]) {
    buf.push(OP_SET);
    push_bytes(buf, key.as_bytes());
    push_bytes(buf, value_json);
}

pub(crate) fn encode_delete(buf: &mut Vec<u8>, key: &str) {
    buf.push(OP_DELETE);
    push_bytes(buf, key.as_bytes());
}

pub(crate) fn encode_expire(buf: &mut Vec<u8>, key: &str, at_ms: u64) {
    buf.push(OP_EXPIRE);
    push_bytes(buf, key.as_bytes());
    buf.extend_from_slice(&at_ms.to_le_bytes());
}

pub(crate) fn encode_reset(buf: &mut Vec<u8>) {
    buf.push(OP_RESET);
}

fn push_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    // Sizes are bounded by the configured limits, which are checked to fit in u32.
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// Turns a payload into a frame (header + payload), in place of a fresh Vec.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len ^ LEN_CHECK_KEY).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// What reading a log found.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) snapshot: SnapshotId,
    /// Valid frames, in order, with their ops.
    pub(crate) frames: Vec<Vec<Op>>,
    /// End of the last valid frame: where the next frame goes.
    pub(crate) valid_len: u64,
    /// `Some(offset)`: a torn last frame starts there and must be cut off.
    pub(crate) torn_at: Option<u64>,
}

/// A damaged log: offset and reason.
#[derive(Debug)]
pub(crate) struct LogError {
    pub(crate) offset: u64,
    pub(crate) reason: String,
}

fn err(offset: usize, reason: impl Into<String>) -> LogError {
    LogError {
        offset: offset as u64,
        reason: reason.into(),
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|x| *x == 0)
}
/// Reads a whole log. A torn last frame (the tail of an unacknowledged
/// batch) is reported in `torn_at`; any other damage is an error with the
/// byte offset of the damaged frame.
pub(crate) fn scan(bytes: &[u8]) -> Result<Scan, LogError> {
    if bytes.len() < HEADER_LEN {
        // A log is created with its header in one write and fsynced before
        // any frame is appended: a short header is a torn creation.
        if MAGIC.starts_with(&bytes[..bytes.len().min(8)]) || all_zero(bytes) {
            return Ok(Scan {
                snapshot: SnapshotId::of(None),
                frames: Vec::new(),
                valid_len: 0,
                torn_at: Some(0),
            });
        }
        return Err(err(0, "not a steward log (bad magic)"));
    }
    let snapshot = header(bytes)?;
    let mut frames = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let problem = match frame_at(bytes, at) {
            Ok((payload, end)) => match decode_payload(payload) {
                Ok(ops) => {
                    frames.push(ops);
                    at = end;
                    continue;
                }
                // The checksum matched, so this is not a torn write.
                Err(reason) => return Err(err(at, reason)),
            },
            Err(problem) => problem,
        };
        // Zeros to the end: the preallocated, never-written rest of the log.
        if all_zero(&bytes[at..]) {
            return Ok(Scan {
                snapshot,
                frames,
                valid_len: at as u64,
                torn_at: None,
            });
        }
        // A torn write leaves nothing valid after it; damage followed by a
        // valid frame means acknowledged batches would be lost: refuse.
        if valid_frame_after(bytes, at + 1) {
            return Err(err(at, problem));
        }
        return Ok(torn(snapshot, frames, at));
    }
    Ok(Scan {
        snapshot,
        frames,
        valid_len: at as u64,
        torn_at: None,
    })
}

/// The snapshot named by the log's header (at least [`HEADER_LEN`] bytes).
pub(crate) fn header(bytes: &[u8]) -> Result<SnapshotId, LogError> {
    if bytes.len() < HEADER_LEN {
        return Err(err(0, "log header cut short"));
    }
    if &bytes[..8] != MAGIC {
        return Err(err(0, "not a steward log (bad magic)"));
    }
    if crc32fast::hash(&bytes[..28]) != u32_at(bytes, 28) {
        return Err(err(0, "log header checksum mismatch"));
    }
    Ok(SnapshotId {
        present: u32_at(bytes, 8) & FLAG_SNAPSHOT_PRESENT != 0,
        len: u64_at(bytes, 12),
        crc: u32_at(bytes, 20),
    })
}

/// The verified payload of the frame at `at` and the frame's end.
pub(crate) fn frame_at(bytes: &[u8], at: usize) -> Result<(&[u8], usize), &'static str> {
    let rest = &bytes[at..];
    if rest.len() < FRAME_HEADER_LEN {
        return Err("frame header cut short");
    }
    let len = u32_at(rest, 0);
    if u32_at(rest, 4) != !len ^ LEN_CHECK_KEY {
        return Err("frame length check mismatch");
    }
    let end = FRAME_HEADER_LEN + len as usize;
    if end > rest.len() {
        return Err("frame reaches past the end of the file");
    }
    let payload = &rest[FRAME_HEADER_LEN..end];
    if crc32fast::hash(payload) != u32_at(rest, 8) {
        return Err("frame checksum mismatch");
    }
    Ok((payload, at + end))
}

/// Whether any offset from `from` on starts a frame whose length check and
/// checksum both hold.
fn valid_frame_after(bytes: &[u8], from: usize) -> bool {
    next_valid_frame(bytes, from).is_some()
}

/// The first offset from `from` on that starts a frame whose length check
/// and checksum both hold.
pub(crate) fn next_valid_frame(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(FRAME_HEADER_LEN - 1)).find(|&at| {
        let len = u32_at(bytes, at);
        u32_at(bytes, at + 4) == !len ^ LEN_CHECK_KEY && frame_at(bytes, at).is_ok()
    })
}

fn torn(snapshot: SnapshotId, frames: Vec<Vec<Op>>, at: usize) -> Scan {
    Scan {
        snapshot,
        frames,
        valid_len: at as u64,
        torn_at: Some(at as u64),
    }
}

fn take<'a>(p: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if p.len() < n {
        return Err("frame payload ends inside an operation".into());
    }
    let (head, tail) = p.split_at(n);
    *p = tail;
    Ok(head)
}

fn take_bytes<'a>(p: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = take(p, 4)?;
    let len = u32_at(len, 0) as usize;
    take(p, len)
}

fn take_str(p: &mut &[u8]) -> Result<String, String> {
    let b = take_bytes(p)?;
    String::from_utf8(b.to_vec()).map_err(|_| "key is not UTF-8".to_string())
}

pub(crate) fn decode_payload(mut p: &[u8]) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    while !p.is_empty() {
        let op = take(&mut p, 1)?[0];
        match op {
            OP_SET => {
                let key = take_str(&mut p)?;
                let value = take_bytes(&mut p)?;
                let value = json::parse_value(value)
                    .map_err(|e| format!("value of key {key:?} is not valid JSON: {}", e.reason))?;
                ops.push(Op::Set(key, value));
            }
            OP_DELETE => ops.push(Op::Delete(take_str(&mut p)?)),
            OP_RESET => ops.push(Op::Reset),
            OP_EXPIRE => {
                let key = take_str(&mut p)?;
                let at = take(&mut p, 8)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(at);
                ops.push(Op::Expire(key, u64::from_le_bytes(b)));
            }
            other => return Err(format!("unknown operation code {other}")),
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(frames: &[&[u8]]) -> Vec<u8> {
        let mut b = encode_header(SnapshotId::of(None)).to_vec();
        for f in frames {
            b.extend(frame(f));
        }
        b
    }

    #[test]
    fn torn_and_corrupt_are_told_apart() {
        let mut p1 = Vec::new();
        encode_set(&mut p1, "a", b"1");
        let mut p2 = Vec::new();
        encode_delete(&mut p2, "a");
        let good = log_with(&[&p1, &p2]);
        let s = scan(&good).unwrap();
        assert_eq!(s.frames.len(), 2);
        assert_eq!(s.torn_at, None);
        // Every truncation is at most a torn tail, never an error.
        for cut in HEADER_LEN..good.len() {
            let s = scan(&good[..cut]).unwrap();
            assert!(s.frames.len() <= 2, "cut {cut}");
        }
        // A damaged last frame is a torn tail.
        let mut tail = good.clone();
        let last = tail.len() - 1;
        tail[last] ^= 0xFF;
        assert_eq!(scan(&tail).unwrap().frames.len(), 1);
        // A flipped byte in the first frame is an error at its offset.
        let mut bad = good.clone();
        bad[HEADER_LEN + FRAME_HEADER_LEN + 2] ^= 0xFF;
        let e = scan(&bad).unwrap_err();
        assert_eq!(e.offset, HEADER_LEN as u64);
    }
}
