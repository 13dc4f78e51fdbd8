//! The assistant's tools, run against the memory store: `remember`,
//! `recall`, `forget`. Every call answers the model with a JSON text, errors
//! included, so a bad call never stops the session.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steward::store::Backend;

/// Longest key accepted from the model.
const MAX_KEY_CHARS: usize = 256;

/// Tool calls by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolCounts {
    /// `remember` calls that stored their value.
    pub remember: u64,
    /// `recall` calls answered (found or not).
    pub recall: u64,
    /// `recall` calls that found their key.
    pub recall_found: u64,
    /// `forget` calls answered (deleted or not there).
    pub forget: u64,
    /// Calls that failed: unknown tool, bad arguments, or a store error.
    pub failed: u64,
}

impl ToolCounts {
    /// All calls, failed ones included.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.remember + self.recall + self.forget + self.failed
    }
}

/// The tool definitions sent in `session.update`.
pub(crate) fn definitions() -> Vec<Value> {
    let key = json!({"type": "string", "description": "a short snake_case key"});
    vec![
        json!({
            "type": "function", "name": "remember",
            "description": "Store a fact about the user under a key, for later sessions.",
            "parameters": {"type": "object", "properties": {"key": key, "value": {"type": "string"}}, "required": ["key", "value"]},
        }),
        json!({
            "type": "function", "name": "recall",
            "description": "Read a fact stored with remember.",
            "parameters": {"type": "object", "properties": {"key": key}, "required": ["key"]},
        }),
        json!({
            "type": "function", "name": "forget",
            "description": "Delete a fact stored with remember.",
            "parameters": {"type": "object", "properties": {"key": key}, "required": ["key"]},
        }),
    ]
}

/// Runs one call; returns the output to send back to the model.
pub(crate) async fn run(
    memory: &dyn Backend,
    name: &str,
    arguments: &str,
    counts: &mut ToolCounts,
) -> String {
    match execute(memory, name, arguments).await {
        Ok(output) => {
            match name {
                "remember" => counts.remember += 1,
                "recall" => {
                    counts.recall += 1;
                    if output["found"] == true {
                        counts.recall_found += 1;
                    }
                }
                _ => counts.forget += 1,
            }
            output.to_string()
        }
        Err(message) => {
            counts.failed += 1;
            tracing::warn!(tool = name, %message, "tool call failed");
            json!({"error": message}).to_string()
        }
    }
}

async fn execute(memory: &dyn Backend, name: &str, arguments: &str) -> Result<Value, String> {
    let args: Value =
        serde_json::from_str(arguments).map_err(|_| "the arguments are not JSON".to_string())?;
    let key = args
        .get("key")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.chars().count() <= MAX_KEY_CHARS)
        .ok_or_else(|| format!("`key` must be a string of 1 to {MAX_KEY_CHARS} characters"))?
        .to_string();
    match name {
        "remember" => {
            let value = match args.get("value") {
                Some(Value::Null) | None => return Err("`value` is missing".into()),
                Some(v) => v.clone(),
            };
            // Returns once the write is durable (fsynced, or acknowledged
            // by the Redis server).
            memory
                .upsert(&key, value)
                .await
                .map_err(|e| remember_failed(&key, &e))?;
            tracing::info!(%key, "remembered");
            Ok(json!({"ok": true, "key": key}))
        }
        "recall" => {
            let found = memory
                .get(&key)
                .await
                .map_err(|e| format!("cannot read {key:?}: {}", for_model(&e)))?;
            Ok(match found {
                Some(value) => json!({"key": key, "found": true, "value": value}),
                None => json!({"key": key, "found": false}),
            })
        }
        "forget" => {
            let existed = memory
                .delete(&key)
                .await
                .map_err(|e| format!("cannot delete {key:?}: {}", for_model(&e)))?;
            tracing::info!(%key, existed, "forgotten");
            Ok(json!({"ok": true, "key": key, "existed": existed}))
        }
        other => Err(format!(
            "unknown tool {:?}",
            other.chars().take(64).collect::<String>()
        )),
    }
}

/// Why `remember` failed, for the model: a full memory says what to do.
fn remember_failed(key: &str, e: &steward::store::Error) -> String {
    match e {
        steward::store::Error::TooManyKeys { limit, .. } => format!(
            "cannot store {key:?}: the memory is full ({limit} keys); \
             forget a key or store under an existing one"
        ),
        e => format!("cannot store {key:?}: {}", for_model(e)),
    }
}

/// A store error as the model may see it: absolute paths (where this
/// machine keeps the memory) shortened to their file names.
fn for_model(e: &steward::store::Error) -> String {
    strip_dirs(&e.chain())
}

/// Each absolute path in `text` (a word starting with `/`, after an opening
/// quote or bracket) loses its directories.
fn strip_dirs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('/') {
        let boundary = rest[..start]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || "\"'`([{<=:".contains(c));
        let end = rest[start..]
            .find(|c: char| c.is_whitespace() || "\"'`)]}>,;".contains(c))
            .map_or(rest.len(), |n| start + n);
        if boundary {
            let word = &rest[start..end];
            let name = word.rsplit('/').next().unwrap_or_default();
            out.push_str(&rest[..start]);
            out.push_str(name);
        } else {
            out.push_str(&rest[..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward::store::Store;

    #[tokio::test]
    async fn remember_recall_forget_against_a_real_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("memory.json")).expect("store");
        let mut counts = ToolCounts::default();
        let out = run(
            &store,
            "remember",
            r#"{"key":"color","value":"blue"}"#,
            &mut counts,
        )
        .await;
        assert!(out.contains("\"ok\":true"), "{out}");
        let out = run(&store, "recall", r#"{"key":"color"}"#, &mut counts).await;
        assert!(out.contains("blue"), "{out}");
        let out = run(&store, "forget", r#"{"key":"color"}"#, &mut counts).await;
        assert!(out.contains("\"existed\":true"), "{out}");
        let out = run(&store, "recall", r#"{"key":"color"}"#, &mut counts).await;
        assert!(out.contains("\"found\":false"), "{out}");
        for (name, args) in [
            ("launch", "{}"),
            ("remember", "nope"),
            ("recall", r#"{"key":""}"#),
        ] {
            let out = run(&store, name, args, &mut counts).await;
            assert!(out.contains("error"), "{out}");
        }
        assert_eq!(
            counts,
            ToolCounts {
                remember: 1,
                recall: 2,
                recall_found: 1,
                forget: 1,
                failed: 3
            }
        );
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_full_memory_is_a_tool_error_the_model_sees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::builder(dir.path().join("memory.json"))
            .max_keys(2)
            .build()
            .expect("store");
        let mut counts = ToolCounts::default();
        for key in ["a", "b"] {
            let args = format!(r#"{{"key":"{key}","value":"x"}}"#);
            let out = run(&store, "remember", &args, &mut counts).await;
            assert!(out.contains("\"ok\":true"), "{out}");
        }
        let out = run(
            &store,
            "remember",
            r#"{"key":"c","value":"x"}"#,
            &mut counts,
        )
        .await;
        let answer: Value = serde_json::from_str(&out).expect("JSON");
        let error = answer["error"].as_str().expect("an error for the model");
        assert!(
            error.contains("\"c\"") && error.contains("full (2 keys)"),
            "{error}"
        );
        // Replacing a fact still works; nothing of "c" was stored.
        let out = run(
            &store,
            "remember",
            r#"{"key":"a","value":"y"}"#,
            &mut counts,
        )
        .await;
        assert!(out.contains("\"ok\":true"), "{out}");
        assert_eq!(store.get("c"), None);
        assert_eq!((counts.remember, counts.failed), (3, 1));
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_store_error_reaches_the_model_without_absolute_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("memory.json")).expect("store");
        store.close().await.expect("close");
        let mut counts = ToolCounts::default();
        let out = run(
            &store,
            "remember",
            r#"{"key":"color","value":"blue"}"#,
            &mut counts,
        )
        .await;
        assert!(
            out.contains("error") && out.contains("memory.json"),
            "{out}"
        );
        let dir = dir.path().to_string_lossy().into_owned();
        assert!(!out.contains(&dir), "{out}");
        assert_eq!(counts.failed, 1);
        assert_eq!(
            strip_dirs("store /a/b/memory.json is closed (\"/c/d\") 1/2"),
            "store memory.json is closed (\"d\") 1/2"
        );
    }
}
