//! JSON exactly as Python's `json` module reads and writes it.
//!
//! The writer reproduces `json.dump(m, f, indent=2)` byte for byte
//! (`ensure_ascii` escapes, Python's float `repr`, `",\n"` and `": "`
//! separators, no trailing newline). The reader accepts what Python's
//! `json.load` accepts and reports errors with Python's line and column.
//! Values that `serde_json::Value` cannot hold (NaN, infinities, integers
//! wider than 64 bits, numbers beyond a 64-bit float, strings with lone
//! surrogates) are kept as their exact JSON text in a raw-JSON object (see
//! [`raw_json`]) and written back as that text, so nothing Python wrote is
//! changed.

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

/// Deepest nesting accepted when reading and writing values. Python's own
/// limit is about 1,000 (its recursion limit); this keeps every recursive walk
/// far from the end of a thread's stack.
pub(crate) const MAX_DEPTH: usize = 400;

/// The one key of an object that stands for a JSON value kept as its exact
/// text (see [`raw_json`]).
pub const RAW_JSON_KEY: &str = "$steward::raw_json";

/// The exact JSON text of a value that `serde_json::Value` cannot hold, if
/// `value` is such a raw-JSON object: `{"$steward::raw_json": "NaN"}` reads
/// as `Some("NaN")`. The snapshot reader makes these for `NaN`, `Infinity`,
/// `-Infinity`, integers wider than 64 bits, numbers beyond a 64-bit float
/// and strings holding lone surrogates (the whole string literal, quotes
/// included), and the snapshot writer writes their text back verbatim. An
/// object with that key whose text is not such a value is an ordinary
/// object.
///
/// ```
/// let v = steward_store::raw_value("NaN").unwrap();
/// assert_eq!(steward_store::raw_json(&v), Some("NaN"));
/// assert!(steward_store::raw_value("1").is_none()); // a Value holds 1 itself
/// ```
pub fn raw_json(value: &Value) -> Option<&str> {
    let Value::Object(map) = value else {
        return None;
    };
    if map.len() != 1 {
        return None;
    }
    let text = map.get(RAW_JSON_KEY)?.as_str()?;
    is_raw_text(text).then_some(text)
}

/// The raw-JSON object for `text` (see [`raw_json`]), if `text` is one JSON
/// value that `serde_json::Value` cannot hold; `None` otherwise. This is how
/// a caller writes such a value (say `NaN`) through the store's API.
pub fn raw_value(text: &str) -> Option<Value> {
    is_raw_text(text).then(|| make_raw(text))
}

fn make_raw(text: &str) -> Value {
    let mut m = Map::new();
    m.insert(RAW_JSON_KEY.to_string(), Value::String(text.to_string()));
    Value::Object(m)
}

/// Whether `text` is exactly one scalar JSON value (as Python reads it)
/// that the reader keeps raw.
fn is_raw_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut p = Parser {
        text: bytes,
        pos: 0,
        top_key: None,
    };
    match p.value(0) {
        Ok(Value::Object(m)) => {
            p.pos == bytes.len()
                && m.len() == 1
                && m.get(RAW_JSON_KEY).and_then(Value::as_str) == Some(text)
        }
        _ => false,
    }
}

/// Output style of [`write_value`].
#[derive(Clone, Copy)]
pub(crate) struct Style {
    /// `Some(n)`: Python's `indent=n` layout; `None`: one line with `", "`, `": "`.
    pub(crate) indent: Option<usize>,
    /// Escape every non-ASCII character and U+007F as `\uXXXX`.
    pub(crate) ensure_ascii: bool,
}

/// `json.dump(value, f, indent=2)`.
pub(crate) const PYTHON_INDENT_2: Style = Style {
    indent: Some(2),
    ensure_ascii: true,
};

/// The map as Python's `json.dump(m, f, indent=2)` writes it: the exact bytes
/// of a `memory.json` snapshot.
///
/// ```
/// let mut m = serde_json::Map::new();
/// m.insert("café".into(), serde_json::json!([1e-5, 1e16, 100.0, "😀"]));
/// assert_eq!(
///     steward_store::to_python_json(&m),
///     "{\n  \"caf\\u00e9\": [\n    1e-05,\n    1e+16,\n    100.0,\n    \"\\ud83d\\ude00\"\n  ]\n}"
/// );
/// ```
pub fn to_python_json(map: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(64 + map.len() * 48);
    write_map(&mut out, map, PYTHON_INDENT_2, 0);
    out
}

/// Appends `value` in the given style.
pub(crate) fn write_value(out: &mut String, value: &Value, style: Style, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s, style.ensure_ascii),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separator(out, style, level + 1, i == 0);
                write_value(out, item, style, level + 1);
            }
            close(out, style, level, ']');
        }
        Value::Object(map) => match raw_json(value) {
            Some(text) => out.push_str(text),
            None => write_map(out, map, style, level),
        },
    }
}

fn write_map(out: &mut String, map: &Map<String, Value>, style: Style, level: usize) {
    if map.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        separator(out, style, level + 1, i == 0);
        write_str(out, k, style.ensure_ascii);
        out.push_str(": ");
        write_value(out, v, style, level + 1);
    }
    close(out, style, level, '}');
}

/// What goes before an item: Python's item separator and indentation.
fn separator(out: &mut String, style: Style, level: usize, first: bool) {
    match style.indent {
        Some(n) => {
            if !first {
                out.push(',');
            }
            out.push('\n');
            push_spaces(out, n * level);
        }
        None if !first => out.push_str(", "),
        None => {}
    }
}

fn close(out: &mut String, style: Style, level: usize, bracket: char) {
    if let Some(n) = style.indent {
        out.push('\n');
        push_spaces(out, n * level);
    }
    out.push(bracket);
}

fn push_spaces(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        out.push_str(&python_float_repr(f));
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in positional
/// form when the decimal exponent is in `-4..16`, else `d.ddde±XX`.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if f.is_sign_negative() {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
        return out;
    }
    // Position of the decimal point after the first digit count.
    let point = exp + 1;
    if point <= 0 {
        out.push_str("0.");
        push_zeros(&mut out, point.unsigned_abs() as usize);
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.push_str(&digits);
            push_zeros(&mut out, point - digits.len());
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

fn push_zeros(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n('0', n));
}

/// A JSON string literal as Python writes it.
pub(crate) fn write_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) >= 0x7f => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether `value` nests arrays/objects more than `levels` deep. Recurses
/// at most `levels` times, whatever the value.
pub(crate) fn deeper_than(value: &Value, levels: usize) -> bool {
    match value {
        Value::Array(items) => levels == 0 || items.iter().any(|v| deeper_than(v, levels - 1)),
        Value::Object(map) => levels == 0 || map.values().any(|v| deeper_than(v, levels - 1)),
        _ => false,
    }
}

/// A reader error: where, what, and whether it is damage or unsupported content.
#[derive(Debug)]
pub(crate) struct ParseError {
    /// Byte index of the problem.
    pub(crate) index: usize,
    pub(crate) reason: String,
    /// `Some(key)`: the text is valid JSON but not representable exactly.
    pub(crate) unsupported_key: Option<String>,
}

impl ParseError {
    /// Python's (line, column) for the byte index in `text`.
    pub(crate) fn line_column(&self, text: &[u8]) -> (usize, usize) {
        line_column(text, self.index)
    }
}

/// 1-based line and column (in characters, like Python) of byte `index`.
pub(crate) fn line_column(text: &[u8], index: usize) -> (usize, usize) {
    let index = index.min(text.len());
    let before = &text[..index];
    let line = 1 + before.iter().filter(|b| **b == b'\n').count();
    let start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let line_text = &before[start..];
    // Count characters, not bytes: UTF-8 continuation bytes are not new characters.
    let column = 1 + line_text.iter().filter(|b| (**b & 0xC0) != 0x80).count();
    (line, column)
}

/// Parses a whole document that must be a JSON object (a snapshot).
pub(crate) fn parse_object(text: &[u8]) -> Result<Map<String, Value>, ParseError> {
    let mut p = Parser {
        text,
        pos: 0,
        top_key: None,
    };
    if text.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(p.error("unexpected UTF-8 byte order mark"));
    }
    p.skip_ws();
    if p.peek() != Some(b'{') {
        if p.peek().is_none() {
            return Err(p.error("empty file: expected a JSON object"));
        }
        return Err(p.error("the snapshot must be a JSON object ({...})"));
    }
    let map = p.object(0, true)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.error("extra data after the JSON object"));
    }
    Ok(map)
}

/// Parses one whole JSON value (a log record's value).
pub(crate) fn parse_value(text: &[u8]) -> Result<Value, ParseError> {
    let mut p = Parser {
        text,
        pos: 0,
        top_key: None,
    };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.error("extra data after the JSON value"));
    }
    Ok(v)
}

/// Reads one value starting at byte `pos` of `text` (`depth` levels
/// already open around it), for a tolerant reader that resumes after
/// damage. Returns the value and the position after it.
pub(crate) fn value_at(
    text: &[u8],
    pos: usize,
    depth: usize,
) -> Result<(Value, usize), ParseError> {
    let mut p = Parser {
        text,
        pos,
        top_key: None,
    };
    let v = p.value(depth)?;
    Ok((v, p.pos))
}

/// Reads an object key (a string literal) starting at byte `pos` of
/// `text`. Returns it and the position after its closing quote.
pub(crate) fn key_at(text: &[u8], pos: usize) -> Result<(String, usize), ParseError> {
    let mut p = Parser {
        text,
        pos,
        top_key: None,
    };
    if p.peek() != Some(b'"') {
        return Err(p.error("expected a property name enclosed in double quotes"));
    }
    let k = p.string()?;
    Ok((k, p.pos))
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    /// The top-level key whose value is being read, for error messages.
    top_key: Option<String>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn error(&self, reason: impl Into<String>) -> ParseError {
        self.error_at(self.pos, reason)
    }

    fn error_at(&self, index: usize, reason: impl Into<String>) -> ParseError {
        ParseError {
            index,
            reason: reason.into(),
            unsupported_key: None,
        }
    }

    fn unsupported(&self, index: usize, reason: impl Into<String>) -> ParseError {
        ParseError {
            index,
            reason: reason.into(),
            unsupported_key: Some(self.top_key.clone().unwrap_or_default()),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected {what}")))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        match self.peek() {
            Some(b'{') => Ok(Value::Object(self.object(depth, false)?)),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                let start = self.pos;
                let (s, lone) = self.string_lossy()?;
                if lone {
                    return Ok(self.raw_from(start));
                }
                Ok(Value::String(s))
            }
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'N' | b'I' | b'-') if self.at_constant().is_some() => {
                let start = self.pos;
                self.pos += self.at_constant().unwrap_or(0);
                Ok(self.raw_from(start))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    /// Length of Python's `NaN`, `Infinity` or `-Infinity` at the position.
    fn at_constant(&self) -> Option<usize> {
        let rest = &self.text[self.pos..];
        [&b"NaN"[..], b"Infinity", b"-Infinity"]
            .into_iter()
            .find(|c| rest.starts_with(c))
            .map(<[u8]>::len)
    }

    /// The raw-JSON object for the text from `start` to the position.
    fn raw_from(&self, start: usize) -> Value {
        // Every raw value is ASCII or a string literal already checked as UTF-8.
        make_raw(&String::from_utf8_lossy(&self.text[start..self.pos]))
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, ParseError> {
        if self.text[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, ParseError> {
        if depth >= MAX_DEPTH {
            return Err(
                self.unsupported(self.pos, format!("nesting deeper than {MAX_DEPTH} levels"))
            );
        }
        Ok(depth + 1)
    }

    fn object(&mut self, depth: usize, top: bool) -> Result<Map<String, Value>, ParseError> {
        let depth = self.enter(depth)?;
        self.pos += 1; // '{'
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(map);
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a property name enclosed in double quotes"));
            }
            if top {
                // A problem in the key itself names no key.
                self.top_key = None;
            }
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':', "':' delimiter")?;
            self.skip_ws();
            if top {
                self.top_key = Some(key.clone());
            }
            let value = self.value(depth)?;
            // Like a Python dict: a repeated key keeps its first place and its last value.
            map.insert(key, value);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    if top {
                        self.top_key = None;
                    }
                    return Ok(map);
                }
                _ => return Err(self.error("expected ',' delimiter or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        let depth = self.enter(depth)?;
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' delimiter or ']'")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error_at(start, "expected a value")),
        }
        let mut float = false;
        // Like Python: "1." or "1e" end the number before the dot / e, and
        // the leftover is then "extra data" or a missing delimiter.
        if self.peek() == Some(b'.') && self.text.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            float = true;
            self.pos += 1;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            let mut look = self.pos + 1;
            if let Some(b'+' | b'-') = self.text.get(look) {
                look += 1;
            }
            if self.text.get(look).is_some_and(u8::is_ascii_digit) {
                float = true;
                self.pos = look;
                self.digits();
            }
        }
        // The slice is ASCII by construction.
        let literal = std::str::from_utf8(&self.text[start..self.pos]).unwrap_or("");
        if float {
            let f: f64 = literal
                .parse()
                .map_err(|_| self.error_at(start, "invalid number"))?;
            if !f.is_finite() {
                // Python reads it as infinity; kept as written.
                return Ok(self.raw_from(start));
            }
            return Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| self.error_at(start, "invalid number"));
        }
        if let Ok(i) = literal.parse::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        if let Ok(u) = literal.parse::<u64>() {
            return Ok(Value::Number(u.into()));
        }
        // Wider than 64 bits: kept as written (Python's int is unbounded).
        Ok(self.raw_from(start))
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let Some(chunk) = self.text.get(self.pos..self.pos + 4) else {
            return Err(self.error("invalid \\uXXXX escape"));
        };
        let mut v = 0u32;
        for b in chunk {
            let d = (*b as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid \\uXXXX escape"))?;
            v = v * 16 + d;
        }
        self.pos += 4;
        Ok(v)
    }

    /// A string that must be representable: an object key.
    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let (s, lone) = self.string_lossy()?;
        if lone {
            return Err(self.unsupported(start, "lone surrogate \\u escape in a key"));
        }
        Ok(s)
    }

    /// A string literal; `true` if it holds a lone surrogate (replaced by
    /// U+FFFD in the returned text).
    fn string_lossy(&mut self) -> Result<(String, bool), ParseError> {
        let start = self.pos;
        let mut lone = false;
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            // Copy the run of plain bytes in one go.
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            let run = &self.text[run_start..self.pos];
            match std::str::from_utf8(run) {
                Ok(s) => out.push_str(s),
                Err(e) => {
                    return Err(self.error_at(run_start + e.valid_up_to(), "invalid UTF-8"));
                }
            }
            match self.peek() {
                None => return Err(self.error_at(start, "unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((out, lone));
                }
                Some(b'\\') => lone |= self.escape(&mut out)?,
                Some(_) => return Err(self.error("invalid control character in string")),
            }
        }
    }

    /// One escape; `true` if it was a lone surrogate.
    fn escape(&mut self, out: &mut String) -> Result<bool, ParseError> {
        let at = self.pos;
        self.pos += 1; // backslash
        let Some(c) = self.peek() else {
            return Err(self.error_at(at, "unterminated string"));
        };
        self.pos += 1;
        let simple = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(at, out),
            _ => return Err(self.error_at(at, "invalid \\escape")),
        };
        out.push(simple);
        Ok(false)
    }

    fn unicode_escape(&mut self, at: usize, out: &mut String) -> Result<bool, ParseError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            // A high surrogate must be followed by a low one to make one character.
            if self.text[self.pos..].starts_with(b"\\u") {
                let save = self.pos;
                self.pos += 2;
                let second = self.hex4()?;
                if (0xDC00..0xE000).contains(&second) {
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    self.pos = save;
                    out.push(char::REPLACEMENT_CHARACTER);
                    return Ok(true);
                }
            } else {
                out.push(char::REPLACEMENT_CHARACTER);
                return Ok(true);
            }
        } else if (0xDC00..0xE000).contains(&first) {
            out.push(char::REPLACEMENT_CHARACTER);
            return Ok(true);
        } else {
            first
        };
        let c = char::from_u32(code).ok_or_else(|| self.error_at(at, "invalid \\u escape"))?;
        out.push(c);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        for (f, s) in [
            (1e-5, "1e-05"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (100.0, "100.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (0.0001, "0.0001"),
            (0.1, "0.1"),
            (1e15, "1000000000000000.0"),
            (123456789012345.67, "123456789012345.67"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-2.5e-7, "-2.5e-07"),
            (0.75, "0.75"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(python_float_repr(f), s, "{f:e}");
        }
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column(b"ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx".as_bytes(), 2), (1, 2));
    }
}
