//! A strict checker of the Prometheus text exposition format (0.0.4).
//!
//! Stricter than scrapers: every sample line is `name{labels} value` (an
//! optional integer timestamp after it), names match
//! `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`, label
//! values escape only `\\`, `\"` and `\n`; `# TYPE` comes once per family
//! and before its samples, `# HELP` at most once, a family's samples stay
//! together, no series twice, values parse as floats, counters are not
//! negative.

use std::collections::{BTreeMap, BTreeSet};

/// A series: metric name and its labels.
pub type SeriesKey = (String, BTreeMap<String, String>);

/// Every series of an exposition with its value.
pub type Series = BTreeMap<SeriesKey, f64>;

const KINDS: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

/// Whether `name` is a valid metric name.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    valid_metric_name(name) && !name.contains(':')
}

/// Checks `text`; returns every series, or the first violation with its
/// line number.
pub fn check_exposition(text: &str) -> Result<Series, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the text does not end with a line feed".into());
    }
    let mut state = State::default();
    for (i, line) in text.lines().enumerate() {
        state
            .line(line)
            .map_err(|e| format!("line {}: {e}: {line:?}", i + 1))?;
    }
    Ok(state.series)
}

#[derive(Default)]
struct State {
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
    /// Families whose samples are over (another family's came after).
    finished: BTreeSet<String>,
    current: Option<String>,
    series: Series,
}

impl State {
    fn line(&mut self, line: &str) -> Result<(), String> {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !valid_metric_name(name) {
                return Err("bad metric name in HELP".into());
            }
            if !self.helps.insert(name.to_owned()) {
                return Err("a second HELP for the family".into());
            }
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            return self.type_line(rest);
        }
        if line.starts_with('#') {
            return Ok(()); // a comment
        }
        if line.trim().is_empty() {
            return Err("an empty line".into());
        }
        self.sample(line)
    }

    fn type_line(&mut self, rest: &str) -> Result<(), String> {
        let (name, kind) = rest.split_once(' ').ok_or("TYPE without a kind")?;
        if !valid_metric_name(name) || !KINDS.contains(&kind) {
            return Err("bad TYPE".into());
        }
        if self
            .types
            .insert(name.to_owned(), kind.to_owned())
            .is_some()
        {
            return Err("a second TYPE for the family".into());
        }
        if self
            .series
            .keys()
            .any(|(n, _)| family_of(n, &self.types) == name)
        {
            return Err("TYPE after samples of its family".into());
        }
        Ok(())
    }

    fn sample(&mut self, line: &str) -> Result<(), String> {
        let (name, labels, value) = parse_sample(line)?;
        let family = family_of(&name, &self.types).to_owned();
        let kind = self
            .types
            .get(&family)
            .ok_or("a sample without a TYPE before it")?;
        if kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err("a negative or NaN counter".into());
        }
        if self.current.as_deref() != Some(family.as_str()) {
            if self.finished.contains(&family) {
                return Err("the family's samples are not together".into());
            }
            if let Some(prev) = self.current.replace(family) {
                self.finished.insert(prev);
            }
        }
        if self.series.insert((name, labels), value).is_some() {
            return Err("a duplicate series".into());
        }
        Ok(())
    }
}

/// The family a sample belongs to: its own name, or for histogram and
/// summary parts (`_bucket`, `_sum`, `_count`) the typed base name.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            )
        {
            return base;
        }
    }
    name
}

fn parse_sample(line: &str) -> Result<(String, BTreeMap<String, String>, f64), String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err("bad metric name".into());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("no single space before the value")?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().unwrap_or_default())?;
    if let Some(ts) = parts.next()
        && ts.parse::<i64>().is_err()
    {
        return Err("a timestamp that is not an integer".into());
    }
    if parts.next().is_some() {
        return Err("text after the value and timestamp".into());
    }
    Ok((name.to_owned(), labels, value))
}

/// Parses `a="x",b="y"}` and returns the text after the brace.
fn parse_labels<'a>(
    mut inner: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    if let Some(after) = inner.strip_prefix('}') {
        return Ok(after);
    }
    loop {
        let (label, after) = inner.split_once("=\"").ok_or("no label=\"value\"")?;
        if !valid_label_name(label) {
            return Err(format!("bad label name {label:?}"));
        }
        let (value, after) = unescape_until_quote(after)?;
        if labels.insert(label.to_owned(), value).is_some() {
            return Err(format!("label {label:?} twice"));
        }
        if let Some(more) = after.strip_prefix(',') {
            inner = more;
        } else if let Some(tail) = after.strip_prefix('}') {
            return Ok(tail);
        } else {
            return Err("text after a label value".into());
        }
    }
}

/// A label value up to its closing quote, unescaped; and the text after it.
fn unescape_until_quote(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('\\') => value.push('\\'),
                Some('"') => value.push('"'),
                Some('n') => value.push('\n'),
                other => return Err(format!("bad escape \\{other:?} in a label value")),
            },
            '"' => return Ok((value, &text[i + 1..])),
            '\n' => return Err("a raw line feed in a label value".into()),
            c => value.push(c),
        }
    }
    Err("an unclosed label value".into())
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        v => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# HELP steward_up 1 while up.
# TYPE steward_up gauge
steward_up 1
# TYPE steward_pool_objects gauge
steward_pool_objects{pool=\"we\\\"ird\\\\pool\\nname\",state=\"idle\"} 2
steward_pool_objects{pool=\"a\",state=\"idle\"} 0.5 1700000000000
# TYPE steward_x_total counter
steward_x_total +Inf
# a comment
# TYPE rpc summary
rpc{quantile=\"0.5\"} 1e-3
rpc_sum 4
rpc_count 2
# TYPE none_labels untyped
none_labels{} NaN
";

    #[test]
    fn a_good_exposition_passes_with_every_series() {
        let series = check_exposition(GOOD).unwrap();
        assert_eq!(series.len(), 8);
        let weird: BTreeMap<String, String> = [
            ("pool".to_owned(), "we\"ird\\pool\nname".to_owned()),
            ("state".to_owned(), "idle".to_owned()),
        ]
        .into();
        assert_eq!(series[&("steward_pool_objects".to_owned(), weird)], 2.0);
        assert_eq!(series[&("rpc_sum".to_owned(), BTreeMap::new())], 4.0);
        assert!(check_exposition("").unwrap().is_empty());
    }

    #[test]
    fn every_violation_is_caught() {
        let bad = [
            ("no final line feed", "# TYPE a gauge\na 1"),
            ("no TYPE", "a 1\n"),
            (
                "TYPE after samples",
                "# TYPE h_count gauge\nh_count 1\n# TYPE h summary\n",
            ),
            ("TYPE twice", "# TYPE a gauge\n# TYPE a gauge\na 1\n"),
            (
                "HELP twice",
                "# HELP a x\n# HELP a y\n# TYPE a gauge\na 1\n",
            ),
            ("bad kind", "# TYPE a meter\na 1\n"),
            ("bad name", "# TYPE 1a gauge\n1a 1\n"),
            ("bad name char", "# TYPE a gauge\na-b 1\n"),
            ("bad label name", "# TYPE a gauge\na{x:y=\"1\"} 1\n"),
            ("bad escape", "# TYPE a gauge\na{x=\"\\t\"} 1\n"),
            ("unclosed value", "# TYPE a gauge\na{x=\"1} 1\n"),
            ("unquoted value", "# TYPE a gauge\na{x=1} 1\n"),
            ("label twice", "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n"),
            (
                "duplicate series",
                "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
            ),
            ("bad value", "# TYPE a gauge\na one\n"),
            ("no value", "# TYPE a gauge\na\n"),
            ("two spaces", "# TYPE a gauge\na  1\n"),
            ("bad timestamp", "# TYPE a gauge\na 1 soon\n"),
            ("trailing text", "# TYPE a gauge\na 1 2 3\n"),
            ("negative counter", "# TYPE a_total counter\na_total -1\n"),
            ("NaN counter", "# TYPE a_total counter\na_total NaN\n"),
            ("empty line", "# TYPE a gauge\n\na 1\n"),
            (
                "split family",
                "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"2\"} 1\n",
            ),
        ];
        for (what, text) in bad {
            assert!(check_exposition(text).is_err(), "{what}: {text:?} passed");
        }
    }
}
