//! The tool calls the stand-in's "model" asks for: parsed from text
//! requests, or scripted for pure-audio turns.

use serde_json::{Value, json};

/// A tool call the stand-in's "model" asks for.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum ToolCall {
    Remember { key: String, value: String },
    Recall { key: String },
    Forget { key: String },
}

impl ToolCall {
    pub(super) fn name(&self) -> &'static str {
        match self {
            ToolCall::Remember { .. } => "remember",
            ToolCall::Recall { .. } => "recall",
            ToolCall::Forget { .. } => "forget",
        }
    }

    pub(super) fn arguments(&self) -> Value {
        match self {
            ToolCall::Remember { key, value } => json!({"key": key, "value": value}),
            ToolCall::Recall { key } | ToolCall::Forget { key } => json!({"key": key}),
        }
    }

    /// `remember KEY: VALUE` (or `KEY = VALUE`, or `KEY VALUE`), `recall KEY`,
    /// `forget KEY`; the command word in any case.
    pub(super) fn parse(text: &str) -> Option<ToolCall> {
        let text = text.trim();
        let (verb, rest) = text.split_once(char::is_whitespace)?;
        let rest = rest.trim();
        if rest.is_empty() {
            return None;
        }
        match verb.to_ascii_lowercase().as_str() {
            "remember" => {
                let (key, value) = rest
                    .split_once(':')
                    .or_else(|| rest.split_once('='))
                    .or_else(|| rest.split_once(char::is_whitespace))?;
                let (key, value) = (key.trim(), value.trim());
                (!key.is_empty()).then(|| ToolCall::Remember {
                    key: key.to_string(),
                    value: value.to_string(),
                })
            }
            "recall" => Some(ToolCall::Recall {
                key: rest.to_string(),
            }),
            "forget" => Some(ToolCall::Forget {
                key: rest.to_string(),
            }),
            _ => None,
        }
    }

    /// The scripted call for pure-audio turn `n` (from 1), see the module docs.
    pub(super) fn scripted(n: u64, every: u32) -> Option<ToolCall> {
        let every = u64::from(every);
        if every == 0 || n == 0 {
            return None;
        }
        let phase = n % every;
        if phase == 0 {
            return Some(ToolCall::Remember {
                key: format!("turn_{n}"),
                value: format!("remembered at audio turn {n}"),
            });
        }
        if every >= 2 && phase == 1 && n > every {
            return Some(ToolCall::Recall {
                key: format!("turn_{}", n - 1),
            });
        }
        if every >= 3 && phase == 2 && n > 2 * every {
            return Some(ToolCall::Forget {
                key: format!("turn_{}", n - 2 - every),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_requests_parse() {
        assert_eq!(
            ToolCall::parse("remember favourite_color: blue"),
            Some(ToolCall::Remember {
                key: "favourite_color".into(),
                value: "blue".into()
            })
        );
        assert_eq!(
            ToolCall::parse("Recall favourite_color"),
            Some(ToolCall::Recall {
                key: "favourite_color".into()
            })
        );
        assert_eq!(
            ToolCall::parse("forget  x "),
            Some(ToolCall::Forget { key: "x".into() })
        );
        assert_eq!(ToolCall::parse("remember"), None);
        assert_eq!(ToolCall::parse("hello there"), None);
    }

    #[test]
    fn the_script_keeps_at_most_two_turn_keys() {
        let mut live = std::collections::BTreeSet::new();
        let mut calls = [0_u32; 3];
        for n in 1..=300 {
            match ToolCall::scripted(n, 3) {
                Some(ToolCall::Remember { key, .. }) => {
                    calls[0] += 1;
                    live.insert(key);
                }
                Some(ToolCall::Recall { key }) => {
                    calls[1] += 1;
                    assert!(live.contains(&key), "turn {n} recalls {key}");
                }
                Some(ToolCall::Forget { key }) => {
                    calls[2] += 1;
                    assert!(live.remove(&key), "turn {n} forgets {key}");
                }
                None => {}
            }
            assert!(live.len() <= 2, "turn {n}: {live:?}");
        }
        assert!(calls.iter().all(|&c| c > 90), "{calls:?}");
    }
}
