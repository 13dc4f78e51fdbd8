//! Tolerant readers for damaged files: every complete entry of a snapshot
//! (or expiry file) and every intact batch of a log, with the byte ranges
//! that could not be read and why. Used by [`repair`](crate::repair).

use serde_json::{Map, Value};

use crate::json;
use crate::log::{self, Op, SnapshotId};

/// A byte range of a file that could not be kept, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    /// First byte.
    pub(crate) from: usize,
    /// One past the last byte.
    pub(crate) to: usize,
    pub(crate) reason: String,
}

/// What a tolerant read of a top-level JSON object found.
#[derive(Debug, Default)]
pub(crate) struct Entries {
    /// The complete entries, in file order (a repeated key keeps its first
    /// place and its last value, as Python's `dict` does).
    pub(crate) map: Map<String, Value>,
    pub(crate) gaps: Vec<Gap>,
}

/// Reads every complete `"key": value` entry of a top-level JSON object,
/// skipping damage: where an entry cannot be read, reading resumes at the
/// next place a top-level entry can start (in Python's `indent=2` layout a
/// line indented by exactly two spaces; otherwise a `"` after a `,` at
/// nesting depth 1). An entry counts as complete once its value is
/// followed by `,` or `}`, or ends the file with a closing quote or
/// bracket (a number at the very end may have been cut short).
pub(crate) fn object(text: &[u8]) -> Entries {
    let mut out = Entries::default();
    let resync = Resync::new(text);
    let mut pos = skip_ws(text, 0);
    if text[pos..].starts_with(&[0xEF, 0xBB, 0xBF]) {
        pos = skip_ws(text, pos + 3);
    }
    if text.get(pos) == Some(&b'{') {
        pos += 1;
    } else if pos < text.len() {
        let next = resync.after(pos, text.len());
        gap(&mut out, text, pos, next, "not a JSON object");
        pos = next;
    }
    let mut in_damage = false;
    loop {
        pos = skip_ws(text, pos);
        // After damage that reached the end, its gap says it all.
        if pos >= text.len() && in_damage {
            return out;
        }
        if pos >= text.len() {
            out.gaps.push(Gap {
                from: text.len(),
                to: text.len(),
                reason: "the file ends before the object's closing '}': it was cut off".into(),
            });
            return out;
        }
        if text[pos] == b'}' {
            let end = skip_ws(text, pos + 1);
            if end < text.len() {
                let next = resync.after(end, text.len());
                gap(
                    &mut out,
                    text,
                    end,
                    next,
                    "extra data after the object's end",
                );
                pos = next;
                in_damage = true;
                continue;
            }
            return out;
        }
        match entry(text, pos) {
            Ok((key, value, end)) => {
                out.map.insert(key, value);
                pos = end;
                in_damage = false;
            }
            Err(e) => {
                let next = resync.after(pos, text.len());
                let (line, column) = json::line_column(text, e.index);
                let reason = format!("line {line} column {column}: {}", e.reason);
                gap(&mut out, text, pos, next, &reason);
                pos = next;
                in_damage = true;
            }
        }
    }
}

fn gap(out: &mut Entries, text: &[u8], from: usize, to: usize, reason: &str) {
    // Whitespace at the edges of a damaged stretch is not lost data.
    let to = (from..to)
        .rev()
        .find(|&i| !text[i].is_ascii_whitespace())
        .map_or(from, |i| i + 1);
    if to > from {
        out.gaps.push(Gap {
            from,
            to,
            reason: reason.to_string(),
        });
    }
}

fn skip_ws(text: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(pos) {
        pos += 1;
    }
    pos
}

/// One complete `"key": value` at `pos` and the position after it (past
/// its `,` if there is one).
fn entry(text: &[u8], pos: usize) -> Result<(String, Value, usize), json::ParseError> {
    let (key, at) = json::key_at(text, pos)?;
    let at = skip_ws(text, at);
    if text.get(at) != Some(&b':') {
        return Err(error(at, "expected ':' delimiter"));
    }
    let start = skip_ws(text, at + 1);
    // One level is the top-level object itself.
    let (value, end) = json::value_at(text, start, 1)?;
    let after = skip_ws(text, end);
    match text.get(after) {
        Some(b',') => Ok((key, value, after + 1)),
        Some(b'}') => Ok((key, value, after)),
        None if self_delimiting(&text[start..end]) => Ok((key, value, after)),
        None => Err(error(
            start,
            "the file ends right after this number: it may be cut short",
        )),
        Some(_) => Err(error(after, "expected ',' delimiter or '}'")),
    }
}

/// Whether a value's text shows its own end (a cut-off number still reads
/// as a number).
fn self_delimiting(value: &[u8]) -> bool {
    value == b"-Infinity" || !matches!(value.first(), Some(b'-' | b'0'..=b'9'))
}

fn error(index: usize, reason: &str) -> json::ParseError {
    json::ParseError {
        index,
        reason: reason.to_string(),
        unsupported_key: None,
    }
}

/// Where a top-level entry may start again after damage: every candidate
/// position, found in one pass over the text.
struct Resync {
    starts: Vec<usize>,
}

impl Resync {
    fn new(text: &[u8]) -> Self {
        let open = text
            .iter()
            .position(|b| *b == b'{')
            .map_or(text.len(), |p| p + 1);
        // Python's `indent=2` layout: top-level keys start lines indented
        // by two spaces, and nothing else does.
        let starts = if text[open..].starts_with(b"\n  \"") {
            (3..text.len())
                .filter(|&i| text[i] == b'"' && &text[i - 3..i] == b"\n  ")
                .collect()
        } else {
            quotes_after_comma_at_depth_one(text)
        };
        Resync { starts }
    }

    /// The first place after `pos` where an entry may start, or `len`.
    fn after(&self, pos: usize, len: usize) -> usize {
        let i = self.starts.partition_point(|&s| s <= pos);
        self.starts.get(i).copied().unwrap_or(len)
    }
}

/// Every `"` after a `,` where a scan from the start of the text (strings
/// and brackets) says one object is open.
fn quotes_after_comma_at_depth_one(t: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut depth = 0i64;
    let mut in_string = false;
    let mut escaped = false;
    let mut after_comma = false;
    for (i, &b) in t.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                if after_comma && depth == 1 {
                    out.push(i);
                }
                in_string = true;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            after_comma = b == b',';
        }
    }
    out
}

/// What a tolerant read of a log found.
#[derive(Debug, Default)]
pub(crate) struct Batches {
    /// The snapshot the header names, if the header is intact.
    pub(crate) header: Option<SnapshotId>,
    /// Every intact batch, in order.
    pub(crate) frames: Vec<Vec<Op>>,
    pub(crate) gaps: Vec<Gap>,
}

/// Reads every intact batch of a log: a damaged frame is skipped up to the
/// next offset where a frame's length check and checksum hold. A damaged
/// header is reported and the frames after it are still read.
pub(crate) fn log(bytes: &[u8]) -> Batches {
    let mut out = Batches::default();
    match log::header(bytes) {
        Ok(id) => out.header = Some(id),
        Err(e) => out.gaps.push(Gap {
            from: 0,
            to: bytes.len().min(log::HEADER_LEN),
            reason: e.reason,
        }),
    }
    let mut at = log::HEADER_LEN;
    while at < bytes.len() {
        let problem = match log::frame_at(bytes, at) {
            Ok((payload, end)) => {
                match log::decode_payload(payload) {
                    Ok(ops) => out.frames.push(ops),
                    Err(reason) => out.gaps.push(Gap {
                        from: at,
                        to: end,
                        reason: format!("write batch with an intact checksum: {reason}"),
                    }),
                }
                at = end;
                continue;
            }
            Err(problem) => problem,
        };
        // Zeros to the end: the preallocated, never-written rest.
        if log::all_zero(&bytes[at..]) {
            break;
        }
        let next = log::next_valid_frame(bytes, at + 1);
        let reason = match next {
            Some(_) => format!("damaged write batch: {problem}"),
            None => format!(
                "torn or damaged last write batch ({problem}); a torn one was never acknowledged"
            ),
        };
        let to = next.unwrap_or(bytes.len());
        out.gaps.push(Gap {
            from: at,
            to,
            reason,
        });
        at = to;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(e: &Entries) -> Vec<&str> {
        e.map.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_damaged_middle_loses_only_its_entry() {
        let text =
            b"{\n  \"a\": 1,\n  \"b\": {\n    \"x\": tru,\n    \"y\": 2\n  },\n  \"c\": NaN\n}";
        let e = object(text);
        assert_eq!(keys(&e), ["a", "c"]);
        assert_eq!(e.gaps.len(), 1, "{:?}", e.gaps);
        assert!(e.gaps[0].reason.contains("line 4"), "{:?}", e.gaps);
    }

    #[test]
    fn one_line_objects_resync_at_depth_one() {
        let e = object(br#"{"a": 1, "b": [1, {"z": x}], "c": "s", "d": 1"#);
        assert_eq!(keys(&e), ["a", "c"]);
        // The last number may be cut short.
        assert_eq!(e.gaps.len(), 2, "{:?}", e.gaps);
    }

    #[test]
    fn garbage_at_the_end_is_a_gap() {
        let e = object(b"{\"a\": \"x\"}\0\0garbage");
        assert_eq!(keys(&e), ["a"]);
        assert_eq!(e.gaps[0].from, 10);
    }
}
