//! The `<memory>` element the assistant puts into its prompt.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::json::{self, Style};

/// Whether `key` matches `pattern`, where `*` matches any run of characters
/// (so `*`, `prefix*`, `*suffix`, `*infix*` and exact keys all work as in
/// the Python assistant; `*` may also appear in the middle).
///
/// ```
/// use steward_store::pattern_matches as m;
/// assert!(m("user_*", "user_name") && m("*_name", "user_name") && m("*er_n*", "user_name"));
/// assert!(m("*", "") && !m("user", "user_name"));
/// ```
pub fn pattern_matches(pattern: &str, key: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = key.strip_prefix(first) else {
        return false;
    };
    let middle: Vec<&str> = parts.collect();
    let Some((last, middle)) = middle.split_last() else {
        // No '*': an exact match.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Renders the entries whose key matches any of `patterns` (in store order)
/// as well-formed XML, whatever the keys hold:
///
/// ```text
/// <memory>
/// <item key="user name">Ada &amp; Bob</item>
/// </memory>
/// ```
///
/// Keys go into a `key` attribute, so keys like `my key`, `1abc`, `<a>` or
/// the empty key stay well-formed. String values are their text; other
/// values are JSON as Python's `json.dumps(v, ensure_ascii=False)` writes
/// it. `&`, `<`, `>` and `"` are escaped; tab, newline and carriage return
/// in keys become character references; characters XML 1.0 cannot carry at
/// all (other control characters, U+FFFE, U+FFFF) are written as the text
/// `\uXXXX`.
///
/// ```
/// let mut m = serde_json::Map::new();
/// m.insert("my key".into(), "a < b".into());
/// m.insert("n".into(), serde_json::json!([1, 2]));
/// assert_eq!(
///     steward_store::render_prompt(&m, &["*"]),
///     "<memory>\n<item key=\"my key\">a &lt; b</item>\n<item key=\"n\">[1, 2]</item>\n</memory>"
/// );
/// ```
pub fn render_prompt<P: AsRef<str>>(map: &Map<String, Value>, patterns: &[P]) -> String {
    let mut out = String::from("<memory>\n");
    for (key, value) in map {
        if !patterns.iter().any(|p| pattern_matches(p.as_ref(), key)) {
            continue;
        }
        out.push_str("<item key=\"");
        escape(&mut out, key, true);
        out.push_str("\">");
        match value {
            Value::String(s) => escape(&mut out, s, false),
            other => {
                let mut text = String::new();
                let style = Style {
                    indent: None,
                    ensure_ascii: false,
                };
                json::write_value(&mut text, other, style, 0);
                escape(&mut out, &text, false);
            }
        }
        out.push_str("</item>\n");
    }
    out.push_str("</memory>");
    out
}

fn escape(out: &mut String, s: &str, attribute: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            // Attribute-value normalisation would turn these into spaces.
            '\t' | '\n' | '\r' if attribute => {
                let _ = write!(out, "&#{};", c as u32);
            }
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}
